-- Question: what failed, when, for how long, and what was a consequence of what, in a time range?
-- Parameters:
--   $start: first alert time, UTC (default: 1970-01-01)
--   $end: end of the range, UTC, exclusive (default: 2100-01-01)
-- Columns: starts_at, ends_at, duration_s, kind, entity, severity, is_root_cause, root_cause_kind,
--   root_cause_entity, summary

with

states as (
    select id, kind, entity, status, starts_at, ends_at, severity, root_cause, summary
    from alerts
),

firing as (
    select * from states
    where status = 'firing' and starts_at >= cast($start as timestamptz) and starts_at < cast($end as timestamptz)
),

resolved as (
    select id, ends_at from states where status = 'resolved'
),

with_end as (
    select f.*, r.ends_at as resolved_at
    from firing as f
    asof left join resolved as r on f.id = r.id and r.ends_at >= f.starts_at
),

causes as (
    select distinct on (id) id, kind, entity from states where status = 'firing'
),

final as (
    select
        w.starts_at,
        w.resolved_at as ends_at,
        epoch(w.resolved_at) - epoch(w.starts_at) as duration_s,
        w.kind, w.entity, w.severity,
        w.root_cause is null as is_root_cause,
        c.kind as root_cause_kind,
        c.entity as root_cause_entity,
        w.summary
    from with_end as w
    left join causes as c on c.id = w.root_cause
)

select * from final order by starts_at, kind, entity
