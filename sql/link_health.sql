-- Question: which links have the highest error rates, ranked within each switch and rail?
-- Rates come from the monotonic counters: (last - first) / seconds between them, per port. A
-- counter reset (switch reboot) in the range makes that port's rate an undercount.
-- Parameters:
--   $start: first sample time, UTC (default: 1970-01-01)
--   $end: end of the range, UTC, exclusive (default: 2100-01-01)
--   $limit: links to return (default: 20)
-- Columns: switch, rail, link, errors_per_s, crc_errors, symbol_errors, fec_corrected, drops,
--   seconds, up_share, rank_in_switch, rank_in_rail

with

samples as (
    select switch, port, link, rail, ts, crc_errors, symbol_errors, fec_corrected, drops, oper_up
    from port
    where ts >= cast($start as timestamptz) and ts < cast($end as timestamptz) and link is not null
),

per_port as (
    select
        switch, port,
        any_value(link) as link,
        any_value(rail) as rail,
        max(crc_errors) - min(crc_errors) as crc_errors,
        max(symbol_errors) - min(symbol_errors) as symbol_errors,
        max(fec_corrected) - min(fec_corrected) as fec_corrected,
        max(drops) - min(drops) as drops,
        epoch(max(ts)) - epoch(min(ts)) as seconds,
        avg(oper_up) as up_share
    from samples
    group by switch, port
),

rated as (
    select *, (crc_errors + symbol_errors) / nullif(seconds, 0) as errors_per_s
    from per_port
),

final as (
    select
        switch, rail, link,
        round(errors_per_s, 4) as errors_per_s,
        crc_errors, symbol_errors, fec_corrected, drops, seconds,
        round(up_share, 4) as up_share,
        rank() over (partition by switch order by errors_per_s desc nulls last) as rank_in_switch,
        rank() over (partition by rail order by errors_per_s desc nulls last) as rank_in_rail
    from rated
)

select * from final
order by errors_per_s desc nulls last, link
limit cast($limit as integer)
