-- Question: which ranks compute slowest relative to their job, per job, in a time range?
-- A rank's relative compute is its compute time divided by the median across the job's ranks
-- for the same step; a checkpoint or a slow input pipeline slows every rank and cancels out.
-- Parameters:
--   $start: first sample time, UTC (default: 1970-01-01)
--   $end: end of the range, UTC, exclusive (default: 2100-01-01)
--   $job: one job, or % for all (default: %)
--   $limit: ranks per job (default: 10)
-- Columns: job, position, node, card, rank, steps, median_relative_compute, p90_relative_compute,
--   median_compute_s, median_wait_s

with

steps as (
    select job, step, node, card, rank, cast(compute_s as double) as compute_s, cast(wait_s as double) as wait_s
    from step
    where ts >= cast($start as timestamptz) and ts < cast($end as timestamptz) and job like $job
),

step_medians as (
    select job, step, median(compute_s) as step_median
    from steps
    group by job, step
),

relative as (
    select s.job, s.node, s.card, s.rank, s.compute_s, s.wait_s, s.compute_s / m.step_median as relative_compute
    from steps as s
    join step_medians as m using (job, step)
    where m.step_median > 0
),

per_rank as (
    select
        job, node, card, rank,
        count(*) as steps,
        median(relative_compute) as median_relative_compute,
        quantile_cont(relative_compute, 0.9) as p90_relative_compute,
        median(compute_s) as median_compute_s,
        median(wait_s) as median_wait_s
    from relative
    group by job, node, card, rank
),

final as (
    select
        job,
        row_number() over (partition by job order by median_relative_compute desc, rank) as position,
        node, card, rank, steps,
        round(median_relative_compute, 4) as median_relative_compute,
        round(p90_relative_compute, 4) as p90_relative_compute,
        round(median_compute_s, 4) as median_compute_s,
        round(median_wait_s, 4) as median_wait_s
    from per_rank
    qualify position <= cast($limit as integer)
)

select * from final order by job, position
