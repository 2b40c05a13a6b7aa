"""Run SQL over the Parquet lake with the views of `sql/views.sql` loaded."""

from __future__ import annotations

from pathlib import Path

import duckdb

VIEWS = Path(__file__).resolve().parent.parent / "sql" / "views.sql"


class QueryError(RuntimeError):
    """A query that could not run; the message says why."""


def connect(data_dir: str | Path) -> tuple[duckdb.DuckDBPyConnection, list[str]]:
    """A connection with every view whose dataset has files; also the names of skipped views."""
    con = duckdb.connect()
    con.execute("SET VARIABLE clusterpulse_data = ?", [str(data_dir)])
    skipped = []
    text = "\n".join(line for line in VIEWS.read_text().splitlines() if not line.strip().startswith("--"))
    for statement in text.split(";"):
        sql = statement.strip()
        if not sql:
            continue
        try:
            con.execute(sql)
        except duckdb.IOException as exc:
            if "No files found" not in str(exc):
                raise
            skipped.append(sql.split()[4])  # create or replace view NAME
    return con, skipped


def run_query(data_dir: str | Path, sql_or_file: str) -> str:
    """Result of one query as a printable table."""
    path = Path(sql_or_file)
    sql = path.read_text() if sql_or_file.endswith(".sql") and path.is_file() else sql_or_file
    con, skipped = connect(data_dir)
    try:
        return str(con.sql(sql))
    except duckdb.Error as exc:
        hint = f" (no data yet for: {', '.join(skipped)})" if skipped else ""
        raise QueryError(f"{exc}{hint}") from None
