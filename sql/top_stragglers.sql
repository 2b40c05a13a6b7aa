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
    select job, step, node, card, rank, compute_s, wait_s
    from step
    where ts >= cast($start as timestamptz) and ts < cast($end as timestamptz) and job like $job
),

relative as (
    select job, node, card, rank, compute_s, wait_s,
           compute_s / median(compute_s) over (partition by job, step) as relative_compute
    from steps
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
    where relative_compute is not null and isfinite(relative_compute)
    group by job, node, card, rank
),

final as (
    select
        job,
        row_number() over (partition by job order by median_relative_compute desc, rank) as position,
        node, card, rank, steps,
        round(cast(median_relative_compute as double), 4) as median_relative_compute,
        round(cast(p90_relative_compute as double), 4) as p90_relative_compute,
        round(cast(median_compute_s as double), 4) as median_compute_s,
        round(cast(median_wait_s as double), 4) as median_wait_s
    from per_rank
    qualify position <= cast($limit as integer)
)

select * from final order by job, position
