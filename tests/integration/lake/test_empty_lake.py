"""A dataset without files is an empty view with the dataset's columns, in `clusterpulse query`,
`clusterpulse sql` and plain DuckDB; every canned query runs on an empty lake; the views are
generated from the schemas the writers use."""

from __future__ import annotations

import csv
import io
import re
import shutil
import subprocess
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from pipeline.lake import views as lake_views
from pipeline.lake.compact import roll_up
from pipeline.lake.dimensions import SCHEMAS as DIMENSION_SCHEMAS
from pipeline.lake.dimensions import fabric_of_topology, write_dimensions
from pipeline.lake.parquet import ParquetSink, dataset_schema
from pipeline.lake.query import DATASETS, connect, parameters, run_query
from pipeline.lake.rollup import ROLLUPS
from pipeline.model.schemas import Alert, iso_utc
from producers.adapters.nccl_log import CollectiveTimeout
from producers.adapters.steps import timeout_batches
from tests.builders import START_MS, card_batch, counters_batch, small_topology, step_batch
from tests.conftest import ROOT, run_cli

SQL = ROOT / "sql"
CANNED = sorted(p for p in SQL.glob("*.sql") if not p.name.endswith("views.sql"))
REQUIRED = {
    "card": "node0001-card1",
    "at": "2026-01-01T00:00:05Z",
    "link": "node0001-nic0~leaf000",
    "switch": "leaf000",
}
DUCKDB_CLI = shutil.which("duckdb", path=str(ROOT / ".venv" / "bin")) or shutil.which("duckdb")
needs_duckdb_cli = pytest.mark.skipif(DUCKDB_CLI is None, reason="the duckdb CLI is not installed (PyPI duckdb-cli)")


def write_every_dataset(root: Path, card_events: bool = True) -> Path:
    """A lake with files in every dataset (card_events only if asked), written by the real writers;
    no alert has a root cause, so that column holds only nulls."""
    sink = ParquetSink(root, topology=small_topology())
    for t in range(3):
        sink.add_batch("cp.telemetry.card", 0, t, card_batch("node0001", t, errors=[(1, 79)] if card_events else []))
        sink.add_batch("cp.telemetry.step", 0, t, step_batch("node0000", "j", t, list(range(8)), t, 1.0))
        sink.add_batch("cp.telemetry.port", 0, t, counters_batch("leaf000", t, 6))
    timeout = CollectiveTimeout("j", 3, 1580, 600.06, START_MS, "ALLREDUCE")  # a step message's timeouts
    sink.add_batch("cp.telemetry.step", 0, 3, timeout_batches([timeout], small_topology())[0])
    sink.add_alert(
        "cp.alerts",
        0,
        0,
        Alert(
            kind="card_failed",
            entity="node0001-card1",
            status="firing",
            starts_at=iso_utc(START_MS),
            ends_at=None,
            severity="critical",
            summary="lost",
            root_cause=None,
            evidence={},
        ),
    )
    from datetime import UTC, datetime, timedelta

    from pipeline.model.matchers import Matcher
    from pipeline.notify.silences import Silence

    start = datetime.fromtimestamp(START_MS / 1000, UTC)
    silence = Silence.new([Matcher.parse("node=node0001")], start, start + timedelta(hours=1), "ops", "swap", start)
    sink.add_silence("cp.silences", 0, 0, silence.to_dict(start))
    sink.flush_all()
    roll_up(root, older_than_s=0, now=START_MS / 1000 + 10 * 3600)  # card_1m, port_1m, step_1m
    fabric, names = fabric_of_topology(small_topology())
    write_dimensions(fabric, root, names)
    return root


@pytest.fixture(scope="module")
def full_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_every_dataset(tmp_path_factory.mktemp("full"))


def columns_of(con: duckdb.DuckDBPyConnection, view: str) -> list[tuple[str, str]]:
    return [(row[0], row[1]) for row in con.execute(f"describe {view}").fetchall()]


def declared_columns(sql: str) -> list[str]:
    """The names after `-- Columns:` in a query's header (continued on indented comment lines),
    without the parenthesized notes."""
    header = sql.split("-- Columns:", 1)[1]
    lines = [header.splitlines()[0]]
    for line in header.splitlines()[1:]:
        if not line.startswith("--   "):
            break
        lines.append(line[2:])
    text = " ".join(lines)
    while "(" in text:
        text = re.sub(r"\([^()]*\)", "", text)
    return [name.strip() for name in text.split(",") if name.strip()]


def test_the_view_files_are_generated_from_the_current_schemas() -> None:
    for path, text in lake_views.rendered_files().items():
        assert path.read_text() == text, f"{path.name} is stale: run .venv/bin/python -m pipeline.lake.views"


def test_the_writers_write_the_schemas_the_views_are_made_from(full_lake: Path) -> None:
    for dataset in DATASETS:
        rollups = {r.name: r.schema() for r in ROLLUPS}
        expected = DIMENSION_SCHEMAS.get(dataset) or rollups.get(dataset) or dataset_schema(dataset)
        for path in (full_lake / dataset).rglob("*.parquet"):
            assert pq.read_schema(path).remove_metadata() == expected, path


def test_every_view_of_an_empty_lake_is_empty_with_the_columns_of_a_full_one(full_lake: Path, tmp_path: Path) -> None:
    full, none_empty = connect(full_lake)
    empty, all_empty = connect(tmp_path)
    assert none_empty == [] and all_empty == list(DATASETS)
    for view in DATASETS:
        assert columns_of(empty, view) == columns_of(full, view), view
        assert empty.execute(f"select count(*) from {view}").fetchone() == (0,)
        assert full.execute(f"select count(*) from {view}").fetchone()[0] > 0


@pytest.mark.parametrize("path", CANNED, ids=[p.stem for p in CANNED])
def test_every_canned_query_answers_an_empty_lake_with_no_rows_and_its_declared_columns(
    path: Path, tmp_path: Path
) -> None:
    sql = path.read_text()
    required = {name: REQUIRED[name] for name, p in parameters(sql).items() if p.default is None}
    result = run_query(tmp_path, str(path), required)
    assert result.rows == []
    assert result.columns == declared_columns(sql)


def test_the_readme_card_history_example_works_on_a_lake_without_error_events(tmp_path: Path) -> None:
    lake = write_every_dataset(tmp_path / "lake", card_events=False)
    assert not (lake / "card_events").exists()
    result = run_cli(
        "query",
        "sql/card_history.sql",
        "--param",
        "card=node0001-card1",
        "--param",
        "at=2026-01-01T00:00:01Z",
        "--data",
        str(lake),
        "--format",
        "csv",
    )
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["ts"][:19] for r in rows] == ["2026-01-01 00:00:00", "2026-01-01 00:00:01", "2026-01-01 00:00:02"]
    assert {r["error_codes"] for r in rows} == {""}


def test_a_corrupt_file_left_out_leaves_its_view_empty_with_its_columns(full_lake: Path, tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    shutil.copytree(full_lake, lake)
    [events] = list((lake / "card_events").rglob("*.parquet"))
    events.write_bytes(events.read_bytes()[:100])
    result = run_query(lake, "select * from card_events")
    assert result.skipped_files == [str(events)] and result.rows == []
    assert result.columns == [name for name, _ in columns_of(connect(full_lake)[0], "card_events")]


def plain_duckdb(query: str, data: str | None = None, cwd: Path = ROOT) -> list[list[str]]:
    """Rows of `query` (CSV) from the duckdb CLI after `SET VARIABLE clusterpulse_data = data` (if
    given) and `.read` of sql/views.sql and sql/fabric_views.sql."""
    args = [DUCKDB_CLI, "-csv", "-noheader"]
    if data is not None:
        args += ["-c", f"SET VARIABLE clusterpulse_data = '{data}'"]
    for command in (f".read {SQL / 'views.sql'}", f".read {SQL / 'fabric_views.sql'}", query):
        args += ["-c", command]
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and not done.stderr, done.stderr
    return list(csv.reader(io.StringIO(done.stdout)))


@needs_duckdb_cli
def test_plain_duckdb_gives_typed_empty_views_for_a_lake_without_files(full_lake: Path, tmp_path: Path) -> None:
    full, _ = connect(full_lake)
    for view in DATASETS:
        described = plain_duckdb(f"select column_name, column_type from (describe {view})", str(tmp_path))
        assert described == [[name, kind] for name, kind in columns_of(full, view)], view
        assert plain_duckdb(f"select count(*) from {view}", str(tmp_path)) == [["0"]]


@needs_duckdb_cli
def test_plain_duckdb_reads_the_newest_run_of_a_data_directory(full_lake: Path, tmp_path: Path) -> None:
    """As the README's recipe: `SET VARIABLE clusterpulse_data = 'data'` (or nothing, from the
    directory holding data/) reads the newest run, as `clusterpulse query --data data` does."""
    older, newer = tmp_path / "data" / "run-20260101T000000Z-a", tmp_path / "data" / "run-20260102T000000Z-b"
    shutil.copytree(full_lake, older)
    newer.mkdir()
    for run in (older, newer):
        (run / "_lake.json").write_text("{}\n")
    (newer / "card").mkdir()
    shutil.copytree(full_lake / "alerts", newer / "alerts")
    count = "select count(*) from card_events union all select count(*) from alerts"
    assert plain_duckdb(count, cwd=tmp_path) == [["0"], ["1"]]  # the newer run has no error events
    assert plain_duckdb(count, "data", cwd=tmp_path) == [["0"], ["1"]]
    assert plain_duckdb(count, f"data/{older.name}", cwd=tmp_path) == [["3"], ["1"]]
