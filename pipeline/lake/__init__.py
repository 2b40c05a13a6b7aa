"""The Parquet lake: its datasets and directories, the sink, compaction, the SQL views and queries."""
