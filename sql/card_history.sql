-- Question: what did one card report around a moment (e.g. an alert's starts_at)?
-- Parameters:
--   $card: the card, e.g. node0154-card3 (required)
--   $at: the moment, UTC (required)
--   $window_s: seconds before and after (default: 60)
-- Columns: ts, util, sm_clock_mhz, power_w, temp_c, mem_used_mib, ecc_sbe, ecc_dbe, pcie_replay,
--   link_errors, error_codes (a row with only error_codes: the card sent an error event, no sample)

with

target as (
    select
        split_part($card, '-card', 1) as node,
        cast(split_part($card, '-card', 2) as integer) as card,
        cast($at as timestamptz) - to_seconds(cast($window_s as double)) as first_ts,
        cast($at as timestamptz) + to_seconds(cast($window_s as double)) as last_ts
),

samples as (
    select c.*
    from card as c, target as t
    where c.node = t.node and c.card = t.card and c.ts between t.first_ts and t.last_ts
),

events as (
    select e.ts, string_agg(cast(e.code as varchar), ',') as error_codes
    from card_events as e, target as t
    where e.node = t.node and e.card = t.card and e.ts between t.first_ts and t.last_ts
    group by e.ts
),

final as (
    select coalesce(s.ts, e.ts) as ts, round(s.util, 2) as util, round(s.sm_clock_mhz, 1) as sm_clock_mhz,
           round(s.power_w, 1) as power_w, round(s.temp_c, 2) as temp_c, round(s.mem_used_mib) as mem_used_mib, s.ecc_sbe, s.ecc_dbe,
           s.pcie_replay, s.link_errors, e.error_codes
    from samples as s
    full outer join events as e using (ts)
)

select * from final order by ts
