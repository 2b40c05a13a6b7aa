-- Question: for each root-cause alert, how far did it reach: grouped consequences, cards, nodes,
-- links and jobs affected?
-- Parameters:
--   $start: first alert time, UTC (default: 1970-01-01)
--   $end: end of the range, UTC, exclusive (default: 2100-01-01)
-- Columns: starts_at, kind, entity, consequences, consequence_kinds, cards, nodes, links, jobs, summary

with

firing as (
    select id, kind, entity, starts_at, root_cause, evidence, summary
    from alerts
    where status = 'firing'
),

roots as (
    select * from firing
    where root_cause is null and starts_at >= cast($start as timestamptz) and starts_at < cast($end as timestamptz)
),

consequences as (
    select root_cause as id, count(distinct id) as consequences, string_agg(distinct kind, ', ') as consequence_kinds
    from firing
    where root_cause is not null
    group by root_cause
),

final as (
    select
        r.starts_at, r.kind, r.entity,
        coalesce(c.consequences, 0) as consequences,
        c.consequence_kinds,
        cast(json_extract(r.evidence, '$.blast_radius.cards') as integer) as cards,
        cast(json_extract(r.evidence, '$.blast_radius.nodes') as integer) as nodes,
        cast(json_extract(r.evidence, '$.blast_radius.links') as integer) as links,
        array_to_string(cast(json_extract(r.evidence, '$.blast_radius.jobs') as varchar[]), ', ') as jobs,
        r.summary
    from roots as r
    left join consequences as c using (id)
)

select * from final order by consequences desc, cards desc nulls last, starts_at
