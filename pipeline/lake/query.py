"""Run SQL over the Parquet lake with the views of `sql/views.sql` loaded.

Canned queries in `sql/` declare their parameters in the header::

    -- Parameters:
    --   $start: first sample time, UTC (default: 1970-01-01)
    --   $job: the job (required)

`run_query` binds `--param k=v` values (strings; the SQL casts them) and the defaults, and
refuses a missing required parameter with its description. A file DuckDB cannot read (truncated,
corrupt) is reported and left out instead of failing the query.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq

from pipeline.lake import views as lake_views
from pipeline.lake.store import LakeStore
from pipeline.lake.views import SQL_DIR, view_sql

VIEWS = lake_views.VIEWS_FILE
FABRIC_VIEWS = lake_views.FABRIC_VIEWS_FILE  # the dimension tables of `clusterpulse topology export`
DATASETS = lake_views.TELEMETRY_VIEWS + lake_views.ROLLUP_VIEWS + lake_views.FABRIC_VIEWS
FORMATS = ("table", "csv", "json")
_PARAM_LINE = re.compile(r"^--\s+\$(\w+)\s*:\s*(.*?)\s*(?:\(default:\s*(.*?)\))?\s*$")
_PARAM_USE = re.compile(r"\$(\w+)")


class QueryError(RuntimeError):
    """A query that could not run; the message says why."""


@dataclass
class Parameter:
    name: str
    description: str
    default: str | None


@dataclass
class QueryResult:
    columns: list[str]
    rows: list[tuple]
    text: str
    skipped_files: list[str]
    empty_views: list[str]  # datasets without files: their views are empty
    views_used: list[str]  # the dataset views the query names


def parameters(sql: str) -> dict[str, Parameter]:
    """Parameters declared in a query's header comment."""
    found: dict[str, Parameter] = {}
    for line in sql.splitlines():
        m = _PARAM_LINE.match(line.strip())
        if m:
            found[m.group(1)] = Parameter(m.group(1), m.group(2), m.group(3))
    return found


def _statements(text: str) -> list[str]:
    code = "\n".join(line for line in text.splitlines() if not line.strip().startswith("--"))
    return [s.strip() for s in code.split(";") if s.strip()]


def _files(data_dir: str | Path, dataset: str) -> list[str]:
    store = LakeStore(data_dir)
    return [store.url(f.path) for f in store.files(dataset, ".parquet")]


def unreadable_files(data_dir: str | Path) -> list[str]:
    """Lake files whose Parquet footer cannot be read (truncated, corrupt, not Parquet)."""
    store = LakeStore(data_dir)
    bad = []
    for dataset in DATASETS:
        for f in store.files(dataset, ".parquet"):
            try:
                pq.read_metadata(f.path, filesystem=store.fs)
            except Exception:  # noqa: BLE001 - pyarrow raises several types for damaged files
                bad.append(store.url(f.path))
    return bad


def connect(data_dir: str | Path, exclude: list[str] | None = None) -> tuple[duckdb.DuckDBPyConnection, list[str]]:
    """A connection with a view per dataset (`sql/views.sql`, `sql/fabric_views.sql`); also the
    datasets that have no files yet (their views are empty, with the dataset's columns).

    Without `exclude` the views are exactly those files (globs); with it, each view reads an
    explicit list of files without the excluded ones. A lake in an object store is read through
    its filesystem (`LakeStore.duckdb`).
    """
    store = LakeStore(data_dir)
    con = store.duckdb()
    con.execute("SET VARIABLE clusterpulse_data = ?", [store.uri if not store.local else str(data_dir)])
    if exclude is None:
        for statement in _statements(VIEWS.read_text()) + _statements(FABRIC_VIEWS.read_text()):
            con.execute(statement)
        return con, [view for view in DATASETS if not store.is_dir(view)]
    empty, excluded = [], set(exclude)
    for view in DATASETS:
        files = [f for f in _files(data_dir, view) if f not in excluded]
        listed = ", ".join("'" + f.replace("'", "''") + "'" for f in files)  # views cannot take parameters
        con.execute(view_sql(view, f"[{listed}]" if files else ""))
        if not files:
            empty.append(view)
    return con, empty


def bind(sql: str, given: dict[str, str]) -> dict[str, str]:
    """Values for every `$name` the SQL uses: given, else declared default; else an error."""
    declared = parameters(sql)
    used = list(dict.fromkeys(_PARAM_USE.findall("\n".join(_statements(sql)))))
    unknown = sorted(set(given) - set(used))
    if unknown:
        raise QueryError(f"unknown parameter(s) {', '.join(unknown)}; this query takes: {', '.join(used) or 'none'}")
    values = {}
    for name in used:
        if name in given:
            values[name] = given[name]
        elif name in declared and (default := declared[name].default) is not None:
            values[name] = default
        else:
            why = declared[name].description if name in declared else "no description"
            raise QueryError(f"missing parameter ${name} ({why}); pass --param {name}=VALUE")
    return values


def run_query(
    data_dir: str | Path, sql_or_file: str, params: dict[str, str] | None = None, fmt: str = "table"
) -> QueryResult:
    """Run one query (an .sql file or SQL text) and format its result."""
    if fmt not in FORMATS:
        raise QueryError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", sql_or_file.strip()):
        if not (SQL_DIR / f"{sql_or_file.strip()}.sql").is_file():
            canned = ", ".join(sorted(p.stem for p in SQL_DIR.glob("*.sql") if not p.stem.endswith("views")))
            raise QueryError(f"no canned query named {sql_or_file!r}; there are: {canned}")
        sql_or_file = sql_or_file.strip() + ".sql"
    path = Path(sql_or_file)
    if sql_or_file.endswith(".sql"):
        if not path.is_file() and (SQL_DIR / path.name).is_file():
            path = SQL_DIR / path.name
        if not path.is_file():
            raise QueryError(f"no such query file {sql_or_file!r}")
        try:
            sql = path.read_text()
        except UnicodeDecodeError:
            raise QueryError(f"query file {sql_or_file!r} is not text (expected SQL)") from None
        except OSError as exc:
            raise QueryError(f"cannot read query file {sql_or_file!r}: {exc.strerror}") from None
    else:
        sql = sql_or_file
    values = bind(sql, params or {})
    statements = _statements(sql)
    if not statements:
        raise QueryError("no SQL statement to run")
    skipped: list[str] = []
    empty: list[str] = []
    try:
        con, empty = connect(data_dir)
        columns, rows = _execute(con, statements, values)
    except duckdb.Error as exc:
        if ".parquet" not in str(exc):
            raise QueryError(_explain(exc)) from None
        skipped = unreadable_files(data_dir)
        if not skipped:
            raise QueryError(_explain(exc)) from None
        con, empty = connect(data_dir, exclude=skipped)
        try:
            columns, rows = _execute(con, statements, values)
        except duckdb.Error as again:
            raise QueryError(_explain(again)) from None
    used = [view for view in DATASETS if re.search(rf"\b{view}\b", "\n".join(statements), re.IGNORECASE)]
    return QueryResult(columns, rows, _format(columns, rows, fmt), skipped, empty, used)


def _execute(con: duckdb.DuckDBPyConnection, statements: list[str], values: dict[str, str]) -> tuple[list, list]:
    for statement in statements[:-1]:
        con.execute(statement, _used(statement, values))
    last = statements[-1]
    cur = con.execute(last, _used(last, values))
    columns = [d[0] for d in cur.description] if cur.description else []
    return columns, cur.fetchall()


def _used(statement: str, values: dict[str, str]) -> dict[str, str] | None:
    names = set(_PARAM_USE.findall(statement))
    return {k: v for k, v in values.items() if k in names} or None


def _explain(exc: Exception) -> str:
    """DuckDB's message on one line (its caret line dropped)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip() and set(line.strip()) != {"^"}]
    return "; ".join(lines).replace("^", "").strip()


def _format(columns: list[str], rows: list[tuple], fmt: str) -> str:
    if fmt == "json":
        return json.dumps([dict(zip(columns, row)) for row in rows], default=str, indent=1)
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(columns)
        writer.writerows(rows)
        return out.getvalue()
    return _table(columns, rows)


def _table(columns: list[str], rows: list[tuple], limit: int = 200) -> str:
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.6g}"
        return "NULL" if v is None else str(v)

    shown = [[cell(v) for v in row] for row in rows[:limit]]
    widths = [max([len(c)] + [len(r[i]) for r in shown]) for i, c in enumerate(columns)]
    line = "  ".join(c.ljust(w) for c, w in zip(columns, widths))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in shown]
    more = f" (first {limit} shown)" if len(rows) > limit else ""
    out.append(f"({len(rows)} rows{more})")
    return "\n".join(out)
