-- Question: what did one link's switch ports report around a moment, as per-sample increments?
-- Both ends of a fabric link report; `switch` tells which end a row comes from.
-- Parameters:
--   $link: the link, e.g. node0154-nic3~leaf124 or leaf099~spine017 (required)
--   $at: the moment, UTC (required)
--   $window_s: seconds before and after (default: 60)
-- Columns: ts, switch, port, oper_up, rx_gbps, crc_errors, symbol_errors, fec_corrected, drops,
--   pfc_pause, carrier_transitions (all but oper_up and rx_gbps are increments since the last sample;
--   a counter that went backwards was reset, e.g. the switch rebooted: its increment is its new value,
--   counted from zero, and rx_gbps is empty there)

with

samples as (
    select switch, port, ts, oper_up, rx_bytes, crc_errors, symbol_errors, fec_corrected, drops, pfc_pause,
           carrier_transitions
    from port
    where link = $link
      and ts between cast($at as timestamptz) - to_seconds(cast($window_s as double)) - interval 1 second
                 and cast($at as timestamptz) + to_seconds(cast($window_s as double))
),

increments as (
    select
        ts, switch, port, oper_up,
        case when rx_bytes >= lag(rx_bytes) over w
             then (rx_bytes - lag(rx_bytes) over w) * 8 / 1e9 / nullif(epoch(ts) - epoch(lag(ts) over w), 0)
        end as rx_gbps,
        case when crc_errors >= lag(crc_errors) over w then crc_errors - lag(crc_errors) over w
             when lag(crc_errors) over w is not null then crc_errors end as crc_errors,
        case when symbol_errors >= lag(symbol_errors) over w then symbol_errors - lag(symbol_errors) over w
             when lag(symbol_errors) over w is not null then symbol_errors end as symbol_errors,
        case when fec_corrected >= lag(fec_corrected) over w then fec_corrected - lag(fec_corrected) over w
             when lag(fec_corrected) over w is not null then fec_corrected end as fec_corrected,
        case when drops >= lag(drops) over w then drops - lag(drops) over w
             when lag(drops) over w is not null then drops end as drops,
        case when pfc_pause >= lag(pfc_pause) over w then pfc_pause - lag(pfc_pause) over w
             when lag(pfc_pause) over w is not null then pfc_pause end as pfc_pause,
        case when carrier_transitions >= lag(carrier_transitions) over w then carrier_transitions - lag(carrier_transitions) over w
             when lag(carrier_transitions) over w is not null then carrier_transitions end as carrier_transitions
    from samples
    window w as (partition by switch, port order by ts)
),

final as (
    select * from increments
    where ts >= cast($at as timestamptz) - to_seconds(cast($window_s as double))
)

select * from final order by ts, switch
