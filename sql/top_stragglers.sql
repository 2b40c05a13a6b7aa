-- Question: which ranks compute slowest relative to their job, per job, in a time range?
-- A rank's relative compute is its compute time divided by the median across the job's ranks
-- for the same step; a checkpoint or a slow input pipeline slows every rank and cancels out.
-- A window longer than $rollup_after_s reads the rollups `clusterpulse compact` writes up to the
-- end of the last hour that has one (per minute, step_1m; over $hourly_after_s per hour, step_1h),
-- and raw steps after it; the medians are then over each rank's per-minute (per-hour) means, the
-- raw steps averaged the same way.
-- Parameters:
--   $start: first sample time, UTC (default: 1970-01-01)
--   $end: end of the range, UTC, exclusive (default: 2100-01-01)
--   $job: one job, or % for all (default: %)
--   $limit: ranks per job (default: 10)
--   $rollup_after_s: longer windows read rollups where they exist (default: 21600)
--   $hourly_after_s: longer windows read hourly rollups (default: 259200)
-- Columns: job, position, node, card, rank, steps, median_relative_compute, p90_relative_compute,
--   median_compute_s, median_wait_s

-- set first, so that the scans below take them as constants and skip the files outside them
set variable top_stragglers_span = epoch(cast($end as timestamptz)) - epoch(cast($start as timestamptz));

set variable top_stragglers_raw_from = greatest(cast($start as timestamptz), coalesce((
    select max(ts) + interval 1 hour from step_1h
    where getvariable('top_stragglers_span') > cast($rollup_after_s as double)
      and ts >= date_trunc('hour', cast($start as timestamptz)) and ts < cast($end as timestamptz)
), cast($start as timestamptz)));

-- per-minute (per-hour) means once rollups are read, so that the two weigh alike
set variable top_stragglers_bucketed = getvariable('top_stragglers_raw_from') > cast($start as timestamptz);

set variable top_stragglers_hourly = getvariable('top_stragglers_span') > cast($hourly_after_s as double);

with

steps as (
    select ts, job, step, node, card, rank, compute_s, wait_s
    from step
    where ts >= getvariable('top_stragglers_raw_from') and ts < cast($end as timestamptz) and job like $job
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
    where relative_compute is not null and isfinite(relative_compute) and not getvariable('top_stragglers_bucketed')
    group by job, node, card, rank
),

minutes as (
    select job, node, card, rank, count(*) as steps, avg(relative_compute) as relative_compute,
           avg(compute_s) as compute_s, avg(wait_s) as wait_s
    from relative
    where relative_compute is not null and isfinite(relative_compute) and getvariable('top_stragglers_bucketed')
    group by job, node, card, rank,
             time_bucket(if(getvariable('top_stragglers_hourly'), interval 1 hour, interval 1 minute), ts)
    union all
    select job, node, card, rank, samples as steps, relative_compute_mean as relative_compute,
           compute_s_mean as compute_s, wait_s_mean as wait_s
    from step_1h
    where getvariable('top_stragglers_hourly') and job like $job
      and ts >= date_trunc('hour', cast($start as timestamptz)) and ts < getvariable('top_stragglers_raw_from')
      and relative_compute_mean is not null and isfinite(relative_compute_mean)
    union all
    select job, node, card, rank, samples as steps, relative_compute_mean as relative_compute,
           compute_s_mean as compute_s, wait_s_mean as wait_s
    from step_1m
    where not getvariable('top_stragglers_hourly') and job like $job
      and ts >= cast($start as timestamptz) and ts < getvariable('top_stragglers_raw_from')
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
