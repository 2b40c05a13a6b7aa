-- Question: how much of each job's time went to useful steps, and how much was lost to stalls
-- (no step finished) and to stragglers (every rank waiting for the slowest)?
-- Definitions, per job over the range:
--   wall_s        time between the first and the last step seen
--   stall_s       sum of gaps between consecutive steps beyond 3 x the job's median step interval
--   straggler_s   sum over steps of (slowest rank's compute - median rank's compute)
--   goodput       1 - (stall_s + straggler_s) / wall_s
-- Parameters:
--   $start: first sample time, UTC (default: 1970-01-01)
--   $end: end of the range, UTC, exclusive (default: 2100-01-01)
-- Columns: job, ranks, steps, median_step_interval_s, wall_s, stall_s, straggler_s, goodput

with

steps as (
    select job, step, ts, rank, cast(compute_s as double) as compute_s
    from step
    where ts >= cast($start as timestamptz) and ts < cast($end as timestamptz)
),

per_step as (
    select job, step, min(ts) as ts, count(*) as ranks,
           max(compute_s) - median(compute_s) as straggler_s
    from steps
    group by job, step
),

intervals as (
    select *, epoch(ts) - epoch(lag(ts) over (partition by job order by step)) as interval_s
    from per_step
),

per_job as (
    select job, max(ranks) as ranks, count(*) as steps,
           median(interval_s) as median_step_interval_s,
           epoch(max(ts)) - epoch(min(ts)) as wall_s,
           sum(straggler_s) as straggler_s
    from intervals
    group by job
),

stalls as (
    select i.job, sum(i.interval_s - j.median_step_interval_s) as stall_s
    from intervals as i
    join per_job as j using (job)
    where i.interval_s > 3 * j.median_step_interval_s
    group by i.job
),

final as (
    select
        j.job, j.ranks, j.steps,
        round(j.median_step_interval_s, 3) as median_step_interval_s,
        j.wall_s,
        round(coalesce(s.stall_s, 0), 1) as stall_s,
        round(j.straggler_s, 1) as straggler_s,
        round(1 - (coalesce(s.stall_s, 0) + j.straggler_s) / nullif(j.wall_s, 0), 4) as goodput
    from per_job as j
    left join stalls as s using (job)
)

select * from final order by goodput nulls last, job
