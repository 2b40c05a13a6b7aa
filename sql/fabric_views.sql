-- Views over the fabric's dimension tables, written by `clusterpulse topology export` (read them after
-- sql/views.sql, once a topology was exported into the lake; `clusterpulse query` loads both):
--   devices: a row per host and switch with its tier (0 host, 1 leaf, 2 spine, 3 core, null: no host below)
--   fabric_links: a row per link with both ends (device, port) and their tiers

create or replace view devices as
select * from read_parquet(coalesce(getvariable('clusterpulse_data'), 'data') || '/devices/**/*.parquet',
                           hive_partitioning = true, union_by_name = true);

create or replace view fabric_links as
select * from read_parquet(coalesce(getvariable('clusterpulse_data'), 'data') || '/fabric_links/**/*.parquet',
                           hive_partitioning = true, union_by_name = true);
