-- Question: which links have the highest error rates, ranked within each switch and rail?
-- Rates come from the monotonic counters: their increase / seconds between the first and last
-- sample, per port. The increase is last - first; where a counter went backwards at either end of the
-- range (a reset: the switch rebooted or its counters were cleared) it is the sum of the per-sample
-- increments instead, a reset counting from zero. A reset hidden from both ends (the counter started
-- the range at its minimum and ended it above its earlier values) makes that port's rate an undercount.
-- A window longer than $rollup_after_s reads the rollups `clusterpulse compact` writes up to the
-- end of the last hour that has one (per minute, port_1m; over $hourly_after_s per hour, port_1h:
-- whole minutes or hours at the window's start), and raw samples after it.
-- Parameters:
--   $start: first sample time, UTC (default: 1970-01-01)
--   $end: end of the range, UTC, exclusive (default: 2100-01-01)
--   $limit: links to return (default: 20)
--   $rollup_after_s: longer windows read rollups where they exist (default: 21600)
--   $hourly_after_s: longer windows read hourly rollups (default: 259200)
-- Columns: switch, rail, link, errors_per_s, crc_errors, symbol_errors, fec_corrected, drops,
--   seconds, up_share, rank_in_switch, rank_in_rail

-- set first, so that the scans below take them as constants and skip the files outside them
set variable link_health_span = epoch(cast($end as timestamptz)) - epoch(cast($start as timestamptz));

set variable link_health_raw_from = greatest(cast($start as timestamptz), coalesce((
    select max(ts) + interval 1 hour from port_1h
    where getvariable('link_health_span') > cast($rollup_after_s as double)
      and ts >= date_trunc('hour', cast($start as timestamptz)) and ts < cast($end as timestamptz)
), cast($start as timestamptz)));

with

rolled as (
    select * from port_1h
    where getvariable('link_health_span') > cast($hourly_after_s as double) and link is not null
      and ts >= date_trunc('hour', cast($start as timestamptz)) and ts < getvariable('link_health_raw_from')
    union all by name
    select * from port_1m
    where getvariable('link_health_span') <= cast($hourly_after_s as double) and link is not null
      and ts >= cast($start as timestamptz) and ts < getvariable('link_health_raw_from')
),

raw_port as not materialized (
    select * from port
    where ts >= getvariable('link_health_raw_from') and ts < cast($end as timestamptz) and link is not null
),

samples as (
    select switch, port, link, rail, ts, crc_errors, symbol_errors, fec_corrected, drops, oper_up
    from raw_port
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
        min(ts) as first_ts,
        max(ts) as last_ts,
        count(*) as samples,
        count(*) filter (where oper_up = 1) as up_samples
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
    from raw_port
    semi join (select switch, port from per_port where not monotonic) as reset using (switch, port)
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

raw_counted as (
    select
        p.switch, p.port, p.link, p.rail, p.first_ts, p.last_ts, p.samples, p.up_samples,
        coalesce(r.crc_errors, p.crc_errors) as crc_errors,
        coalesce(r.symbol_errors, p.symbol_errors) as symbol_errors,
        coalesce(r.fec_corrected, p.fec_corrected) as fec_corrected,
        coalesce(r.drops, p.drops) as drops
    from per_port as p
    left join reset_ports as r using (switch, port)
),

rolled_counted as (
    select
        switch, port, any_value(link) as link, any_value(rail) as rail,
        min(first_ts) as first_ts, max(last_ts) as last_ts, sum(samples) as samples, sum(up_samples) as up_samples,
        sum(crc_errors_increase) as crc_errors, sum(symbol_errors_increase) as symbol_errors,
        sum(fec_corrected_increase) as fec_corrected, sum(drops_increase) as drops
    from rolled
    group by switch, port
),

counted as (
    select
        switch, port, any_value(link) as link, any_value(rail) as rail,
        epoch(max(last_ts)) - epoch(min(first_ts)) as seconds,
        sum(up_samples) / sum(samples) as up_share,
        cast(sum(crc_errors) as ubigint) as crc_errors,
        cast(sum(symbol_errors) as ubigint) as symbol_errors,
        cast(sum(fec_corrected) as ubigint) as fec_corrected,
        cast(sum(drops) as ubigint) as drops
    from (select * from raw_counted union all by name select * from rolled_counted)
    group by switch, port
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
