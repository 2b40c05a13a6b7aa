-- Question: which ranks compute slowest relative to their job, per job, in a time range?
-- A rank's relative compute is its compute time divided by the median across the job's ranks
-- for the same step; a checkpoint or a slow input pipeline slows every rank and cancels out.
-- A window longer than $rollup_after_s reads the per-minute rollup (step_1m, written by
-- `clusterpulse compact`) for the hours that have one; the medians are then over each rank's
-- per-minute means (raw steps of the hours without a rollup are averaged per minute the same way).
-- Parameters:
--   $start: first sample time, UTC (default: 1970-01-01)
--   $end: end of the range, UTC, exclusive (default: 2100-01-01)
--   $job: one job, or % for all (default: %)
--   $limit: ranks per job (default: 10)
--   $rollup_after_s: longer windows read rollups where they exist (default: 21600)
-- Columns: job, position, node, card, rank, steps, median_relative_compute, p90_relative_compute,
--   median_compute_s, median_wait_s

with

rolled_hours as (
    select distinct date, hour
    from step_1m
    where epoch(cast($end as timestamptz)) - epoch(cast($start as timestamptz)) > cast($rollup_after_s as double)
      and minute >= cast($start as timestamptz) and minute < cast($end as timestamptz) and job like $job
),

use_rollups as (
    select exists (select 1 from rolled_hours) as yes
),

steps as (
    select ts, job, step, node, card, rank, compute_s, wait_s
    from step
    where ts >= cast($start as timestamptz) and ts < cast($end as timestamptz) and job like $job
      and not exists (select 1 from rolled_hours as r where r.date = step.date and r.hour = step.hour)
),

relative as (
    select ts, job, node, card, rank, compute_s, wait_s,
           compute_s / median(compute_s) over (partition by job, step) as relative_compute
    from steps
),

per_rank_raw as (
    select
        job, node, card, rank,
        count(*) as steps,
        median(relative_compute) as median_relative_compute,
        quantile_cont(relative_compute, 0.9) as p90_relative_compute,
        median(compute_s) as median_compute_s,
        median(wait_s) as median_wait_s
    from relative
    where relative_compute is not null and isfinite(relative_compute) and not (select yes from use_rollups)
    group by job, node, card, rank
),

minutes as (
    select job, node, card, rank, count(*) as steps, avg(relative_compute) as relative_compute,
           avg(compute_s) as compute_s, avg(wait_s) as wait_s
    from relative
    where relative_compute is not null and isfinite(relative_compute) and (select yes from use_rollups)
    group by job, node, card, rank, time_bucket(interval 1 minute, ts)
    union all
    select job, node, card, rank, samples as steps, relative_compute_mean as relative_compute,
           compute_s_mean as compute_s, wait_s_mean as wait_s
    from step_1m
    semi join rolled_hours using (date, hour)
    where minute >= cast($start as timestamptz) and minute < cast($end as timestamptz) and job like $job
      and relative_compute_mean is not null and isfinite(relative_compute_mean)
),

per_rank as (
    select * from per_rank_raw
    union all
    select
        job, node, card, rank,
        sum(steps) as steps,
        median(relative_compute) as median_relative_compute,
        quantile_cont(relative_compute, 0.9) as p90_relative_compute,
        median(compute_s) as median_compute_s,
        median(wait_s) as median_wait_s
    from minutes
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
