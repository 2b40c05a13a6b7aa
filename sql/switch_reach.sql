-- Question: what hangs below a switch: its links to hosts (each host port) and to the tier below,
-- from the fabric's dimension tables (`clusterpulse topology export`)?
-- Parameters:
--   $switch: the switch's name as the fabric names it (case-insensitive)
-- Columns: switch, tier, neighbour, neighbour_kind, neighbour_tier, switch_port, neighbour_port, link

with

ends as (
    select link, a_device as device, a_port as port, a_tier as tier, b_device as other, b_port as other_port,
           b_tier as other_tier
    from fabric_links
    union all
    select link, b_device, b_port, b_tier, a_device, a_port, a_tier
    from fabric_links
),

final as (
    select
        e.device as switch, e.tier, e.other as neighbour, d.kind as neighbour_kind, e.other_tier as neighbour_tier,
        e.port as switch_port, e.other_port as neighbour_port, e.link
    from ends as e
    join devices as d on d.device = e.other
    where lower(e.device) = lower($switch) and coalesce(e.other_tier, 99) < coalesce(e.tier, 99)
)

select * from final
order by neighbour_tier, neighbour, neighbour_port
