-- Question: how often does each kind of failure happen, per 1,000 card-hours of telemetry?
-- Card-hours count card samples times the sampling period. Only root causes count (a grouped
-- consequence is the same incident).
-- Parameters:
--   $start: first sample time, UTC (default: 1970-01-01)
--   $end: end of the range, UTC, exclusive (default: 2100-01-01)
--   $tick_s: sampling period of card telemetry, seconds (default: 1)
-- Columns: kind, incidents, card_hours, per_1000_card_hours

with

exposure as (
    select count(*) * cast($tick_s as double) / 3600 as card_hours
    from card
    where ts >= cast($start as timestamptz) and ts < cast($end as timestamptz)
),

incidents as (
    select kind, count(*) as incidents
    from alerts
    where status = 'firing' and root_cause is null
      and starts_at >= cast($start as timestamptz) and starts_at < cast($end as timestamptz)
    group by kind
),

final as (
    select i.kind, i.incidents, round(e.card_hours, 2) as card_hours,
           round(1000 * i.incidents / nullif(e.card_hours, 0), 3) as per_1000_card_hours
    from incidents as i, exposure as e
)

select * from final order by per_1000_card_hours desc, kind
