-- Question: what did one link's switch ports report around a moment, as per-sample increments?
-- Both ends of a fabric link report; `switch` tells which end a row comes from.
-- Parameters:
--   $link: the link, e.g. node0154-nic3~leaf124 or leaf099~spine017 (required)
--   $at: the moment, UTC (required)
--   $window_s: seconds before and after (default: 60)
-- Columns: ts, switch, port, oper_up, rx_gbps, crc_errors, symbol_errors, fec_corrected, drops,
--   pfc_pause, carrier_transitions (all but oper_up and rx_gbps are increments since the last sample)

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
        switch, port, ts, oper_up,
        (rx_bytes - lag(rx_bytes) over w) * 8 / 1e9
            / nullif(epoch(ts) - epoch(lag(ts) over w), 0) as rx_gbps,
        crc_errors - lag(crc_errors) over w as crc_errors,
        symbol_errors - lag(symbol_errors) over w as symbol_errors,
        fec_corrected - lag(fec_corrected) over w as fec_corrected,
        drops - lag(drops) over w as drops,
        pfc_pause - lag(pfc_pause) over w as pfc_pause,
        carrier_transitions - lag(carrier_transitions) over w as carrier_transitions
    from samples
    window w as (partition by switch, port order by ts)
),

final as (
    select * from increments
    where ts >= cast($at as timestamptz) - to_seconds(cast($window_s as double))
)

select * from final order by ts, switch
