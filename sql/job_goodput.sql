-- Question: how much of each job's time went to useful steps, and how much was lost to stalls
-- (no step finished) and to stragglers (every rank waiting for the slowest)?
-- Each job is measured against the window: from its first step to the window's end, which is $end,
-- or the fleet's last sample (the newest ts of card, step or port telemetry) if that is earlier. A
-- job that stops finishing steps (a failed card, a hang) while the fleet keeps reporting is stalled
-- from its last step to the window's end.
-- Definitions, per job over the range:
--   wall_s        time from the job's first step to the window's end
--   stall_s       sum of gaps beyond 3 x the job's median step interval, each minus one median
--                 interval; the gaps are those between consecutive steps and the one from the last
--                 step to the window's end
--   straggler_s   sum over steps of (slowest rank's compute - median rank's compute)
--   goodput       1 - (stall_s + straggler_s) / wall_s
--   (a job with a single step has no median interval: its stall_s is 0)
-- Parameters:
--   $start: first sample time, UTC (default: 1970-01-01)
--   $end: end of the range, UTC, exclusive; the window's end unless the fleet's last sample is earlier (default: 2100-01-01)
-- Columns: job, ranks, steps, median_step_interval_s, wall_s, stall_s, straggler_s, goodput,
--   last_step_at (the job's last step), window_end

with

steps as (
    select job, step, ts, rank, cast(compute_s as double) as compute_s
    from step
    where ts >= cast($start as timestamptz) and ts < cast($end as timestamptz)
),

fleet as (
    select max(ts) as last_ts
    from (select max(ts) as ts from card
          union all select max(ts) from step
          union all select max(ts) from port)
),

scope as (
    select least(cast($end as timestamptz), last_ts) as window_end from fleet
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
           min(ts) as first_ts, max(ts) as last_ts,
           sum(straggler_s) as straggler_s
    from intervals
    group by job
),

gaps as (
    select job, interval_s as gap_s from intervals where interval_s is not null
    union all
    select j.job, epoch(s.window_end) - epoch(j.last_ts) as gap_s from per_job as j, scope as s
),

stalls as (
    select g.job, sum(g.gap_s - j.median_step_interval_s) as stall_s
    from gaps as g
    join per_job as j using (job)
    where g.gap_s > 3 * j.median_step_interval_s
    group by g.job
),

final as (
    select
        j.job, j.ranks, j.steps,
        round(j.median_step_interval_s, 3) as median_step_interval_s,
        round(epoch(sc.window_end) - epoch(j.first_ts), 3) as wall_s,
        round(coalesce(s.stall_s, 0), 1) as stall_s,
        round(j.straggler_s, 1) as straggler_s,
        round(1 - (coalesce(s.stall_s, 0) + j.straggler_s) / nullif(epoch(sc.window_end) - epoch(j.first_ts), 0), 4)
            as goodput,
        j.last_ts as last_step_at,
        sc.window_end
    from per_job as j
    cross join scope as sc
    left join stalls as s using (job)
)

select * from final order by goodput nulls last, job
