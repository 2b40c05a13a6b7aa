-- Question: which links have the highest error rates, ranked within each switch and rail?
-- Rates come from the monotonic counters: their increase / seconds between the first and last
-- sample, per port. The increase is last - first; where a counter went backwards at either end of the
-- range (a reset: the switch rebooted or its counters were cleared) it is the sum of the per-sample
-- increments instead, a reset counting from zero. A reset hidden from both ends (the counter started
-- the range at its minimum and ended it above its earlier values) makes that port's rate an undercount.
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
        -- monotonic at both ends: first = min and last = max for every counter (then max - min = last - first)
        arg_min([crc_errors, symbol_errors, fec_corrected, drops], ts)
            = [min(crc_errors), min(symbol_errors), min(fec_corrected), min(drops)]
        and arg_max([crc_errors, symbol_errors, fec_corrected, drops], ts)
            = [max(crc_errors), max(symbol_errors), max(fec_corrected), max(drops)] as monotonic,
        epoch(max(ts)) - epoch(min(ts)) as seconds,
        avg((oper_up = 1)::int) as up_share
    from samples
    group by switch, port
),

-- ports with a reset (rare): per-sample increments; a counter that went backwards restarted from zero
reset_increments as (
    select
        switch, port,
        lag(ts) over w is not null as has_previous,
        case when crc_errors >= lag(crc_errors) over w then crc_errors - lag(crc_errors) over w
             else crc_errors end as crc_errors,
        case when symbol_errors >= lag(symbol_errors) over w then symbol_errors - lag(symbol_errors) over w
             else symbol_errors end as symbol_errors,
        case when fec_corrected >= lag(fec_corrected) over w then fec_corrected - lag(fec_corrected) over w
             else fec_corrected end as fec_corrected,
        case when drops >= lag(drops) over w then drops - lag(drops) over w else drops end as drops
    from port
    semi join (select switch, port from per_port where not monotonic) as reset using (switch, port)
    where ts >= cast($start as timestamptz) and ts < cast($end as timestamptz) and link is not null
    window w as (partition by switch, port order by ts)
),

reset_ports as (
    select switch, port,
           sum(crc_errors) as crc_errors, sum(symbol_errors) as symbol_errors,
           sum(fec_corrected) as fec_corrected, sum(drops) as drops
    from reset_increments
    where has_previous
    group by switch, port
),

counted as (
    select
        p.switch, p.port, p.link, p.rail, p.seconds, p.up_share,
        cast(coalesce(r.crc_errors, p.crc_errors) as ubigint) as crc_errors,
        cast(coalesce(r.symbol_errors, p.symbol_errors) as ubigint) as symbol_errors,
        cast(coalesce(r.fec_corrected, p.fec_corrected) as ubigint) as fec_corrected,
        cast(coalesce(r.drops, p.drops) as ubigint) as drops
    from per_port as p
    left join reset_ports as r using (switch, port)
),

rated as (
    select *, (crc_errors + symbol_errors) / nullif(seconds, 0) as errors_per_s
    from counted
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
