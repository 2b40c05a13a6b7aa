"""Verbs over the Parquet lake: query, sql, compact."""

from __future__ import annotations

import argparse
from typing import Any

from pipeline.cli.common import UsageError, new_verb, plural, say
from pipeline.settings import Settings


def add_parsers(sub: Any) -> None:
    p = new_verb(
        sub,
        "query",
        "run SQL over the Parquet lake with the views of sql/views.sql",
        "clusterpulse query fault_timeline\n"
        "clusterpulse query sql/card_history.sql --param card=node0005-card2 "
        "--param at=2026-01-01T00:00:20Z\n"
        'clusterpulse query "SELECT kind, entity, status FROM alerts ORDER BY ts" --format csv',
        settings=("data_dir",),
    )
    p.add_argument("sql", help="a canned query's name (fault_timeline), a .sql file, or an SQL string")
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a query parameter (see the query's header); repeatable",
    )
    p.add_argument("--format", default="table", choices=["table", "csv", "json"])
    p.set_defaults(handler=cmd_query)

    p = new_verb(
        sub,
        "sql",
        "an interactive SQL session over the lake with the views loaded",
        "clusterpulse sql --data data      # then: .tables, SELECT * FROM alerts;, .quit",
        settings=("data_dir",),
    )
    p.set_defaults(handler=cmd_sql)

    p = new_verb(
        sub,
        "compact",
        "merge each closed hour's small Parquet files into one sorted file, write its per-minute rollups, "
        "and remove hours past their retention (setting lake.retention)",
        "clusterpulse compact --data /lake --older-than 7200",
        settings=("data_dir",),
    )
    p.add_argument("--older-than", type=float, default=7200, help="only hours that ended this many seconds ago")
    p.set_defaults(handler=cmd_compact)


def _lake(settings: Settings) -> str:
    """The lake to read: the data directory, or its newest run; a UsageError if there is none."""
    from pathlib import Path

    from pipeline.lake.dirs import resolve_lake

    if "://" not in settings.data_dir and not Path(settings.data_dir).is_dir():
        raise UsageError(
            f"no lake at {settings.data_dir} (no such directory): give the lake with --data, "
            "or write one with `clusterpulse run`"
        )
    lake = resolve_lake(settings.data_dir)
    if lake.note:
        say(lake.note)
    return lake.path


def _say_if_no_data(result: Any) -> None:
    """One line when no telemetry dataset has files and every view the query reads is empty (a wrong
    --data, or a run that has not flushed yet); a lake of the fabric's dimension tables alone is
    not empty for a query of them."""
    from pipeline.lake.views import TELEMETRY_VIEWS

    if result.views_used and set(result.empty_views) >= set(TELEMETRY_VIEWS) | set(result.views_used):
        say(
            "clusterpulse: no Parquet data in this lake yet (every view is empty): give the lake with --data, "
            "or wait for the worker's first flush"
        )


def cmd_query(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.lake.query import QueryError, run_query

    params = {}
    for item in args.param:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise UsageError(f"--param wants NAME=VALUE, got {item!r}")
        params[name.lstrip("$")] = value
    try:
        result = run_query(_lake(settings), args.sql, params, args.format)
    except QueryError as exc:
        raise UsageError(str(exc)) from None
    for path in result.skipped_files:
        say(f"clusterpulse: skipped unreadable file {path}")
    _say_if_no_data(result)
    print(result.text, flush=True)
    return 0


def cmd_compact(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.lake.compact import compact, expire, roll_up
    from pipeline.lake.datasets import NAMES
    from pipeline.lake.rollup import NAMES as ROLLUPS

    unknown = sorted(set(settings.lake.retention) - set(NAMES + ROLLUPS))
    if unknown:
        known = ", ".join(NAMES + ROLLUPS)
        raise UsageError(f"lake.retention names no dataset {', '.join(unknown)} (datasets: {known})")
    lake = _lake(settings)
    done = compact(lake, args.older_than)
    for c in done:
        print(
            f"{c.dataset} {c.hour}: {c.files_in} files -> 1, {c.rows:,} rows, "
            f"{c.bytes_before / 1e6:,.1f} MB -> {c.bytes_after / 1e6:,.1f} MB"
        )
    rolled = roll_up(lake, args.older_than) if settings.lake.rollups else []
    for path in rolled:
        name, date, hour = path.split("/")[:3]
        print(f"{name} {date}/{hour}: rolled up")
    # an hour is removed only once it is past --older-than too, so its rollup is written first
    keep = {name: max(s, args.older_than) for name, s in settings.lake.retention_s().items()}
    removed = expire(lake, keep)
    for r in removed:
        print(f"{r.dataset} {r.hour}: past its retention, {r.files} files removed ({r.bytes / 1e6:,.1f} MB)")
    say(
        f"compacted {plural(len(done), 'dataset hour')}, rolled up {plural(len(rolled), 'hour')}, "
        f"removed {plural(len(removed), 'dataset hour')} past retention"
    )
    return 0


SQL_HELP = """.tables          the views (card, card_events, step, step_timeouts, port, alerts; devices, fabric_links)
.schema VIEW     a view's columns
.read FILE       run the statements of an .sql file
.help            this text
.quit            leave (also .exit, Ctrl-D)
Statements end with ';'."""


def cmd_sql(args: argparse.Namespace, settings: Settings) -> int:
    """A small REPL: statements end with ';', dot commands as in the duckdb CLI. The `duckdb` CLI
    works too: duckdb -cmd "SET VARIABLE clusterpulse_data = 'data'" -cmd ".read sql/views.sql" (the
    newest run in data/, like --data data)."""
    from pipeline.lake.query import DATASETS, connect

    lake = _lake(settings)
    con, empty = connect(lake)
    print(
        f"views over {lake}: {', '.join(DATASETS)}"
        + (f" (empty: {', '.join(empty)})" if empty else "")
        + ". End statements with ';'; .help, .quit."
    )
    buffer = ""
    while True:
        try:
            line = input("clusterpulse> " if not buffer else "         ...> ")
        except (EOFError, KeyboardInterrupt):
            print()
            return 0
        if not buffer and line.strip().startswith("."):
            if dot_command(con, line.strip()) == "quit":
                return 0
            continue
        buffer += line + "\n"
        if not buffer.rstrip().endswith(";"):
            continue
        _run(con, buffer)
        buffer = ""


def dot_command(con: Any, line: str) -> str | None:
    """Run one `.command` of the SQL session; 'quit' to leave."""
    from pathlib import Path

    word, _, rest = line.partition(" ")
    rest = rest.strip()
    if word in (".quit", ".exit", ".q"):
        return "quit"
    if word == ".tables":
        _run(con, "SELECT table_name AS name FROM information_schema.tables ORDER BY 1")
    elif word == ".schema" and rest:
        _run(con, f"DESCRIBE {rest.rstrip(';')}")
    elif word == ".read" and rest:
        try:
            _run(con, Path(rest).read_text())
        except OSError as exc:
            print(f"error: cannot read {rest}: {exc.strerror}")
    elif word == ".help":
        print(SQL_HELP)
    else:
        print(f"error: unknown command {line!r}; .help lists them")
    return None


def _run(con: Any, sql: str) -> None:
    import duckdb

    from pipeline.lake.query import _format

    try:
        cur = con.execute(sql)
        if cur.description:
            print(_format([d[0] for d in cur.description], cur.fetchall(), "table"))
    except duckdb.Error as exc:
        print(f"error: {exc}")
