-- Views over the ClusterPulse Parquet lake, one per dataset.
-- From the repository root:   duckdb -c ".read sql/views.sql" -c "SELECT count(*) FROM card"
-- Another lake directory:     SET VARIABLE clusterpulse_data = '/path/to/data'; then .read sql/views.sql
-- `clusterpulse query` loads these views for you (a view whose dataset has no files yet is skipped).
-- Columns: see docs/topics.md; every dataset adds ts (event time, UTC), date and hour (Hive partitions)
-- and _offset (the Kafka offset the row came from).

create or replace view card as
select * from read_parquet(coalesce(getvariable('clusterpulse_data'), 'data') || '/card/**/*.parquet',
                           hive_partitioning = true, union_by_name = true);

create or replace view card_events as
select * from read_parquet(coalesce(getvariable('clusterpulse_data'), 'data') || '/card_events/**/*.parquet',
                           hive_partitioning = true, union_by_name = true);

create or replace view step as
select * from read_parquet(coalesce(getvariable('clusterpulse_data'), 'data') || '/step/**/*.parquet',
                           hive_partitioning = true, union_by_name = true);

create or replace view port as
select * from read_parquet(coalesce(getvariable('clusterpulse_data'), 'data') || '/port/**/*.parquet',
                           hive_partitioning = true, union_by_name = true);

create or replace view alerts as
select * from read_parquet(coalesce(getvariable('clusterpulse_data'), 'data') || '/alerts/**/*.parquet',
                           hive_partitioning = true, union_by_name = true);
