"""Every canned query in sql/ on a small hand-made lake with known answers."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from pipeline.lake.parquet import ParquetSink
from pipeline.lake.query import QueryError, parameters, run_query
from pipeline.model.schemas import Alert, iso_utc
from tests.builders import START_MS, card_batch, counters_batch, small_topology, step_batch
from tests.conftest import ROOT

SQL = ROOT / "sql"


def alert(
    kind: str,
    entity: str,
    t: float,
    status: str = "firing",
    root: str | None = None,
    end: float | None = None,
    evidence: dict | None = None,
) -> Alert:
    return Alert(
        kind=kind,
        entity=entity,
        status=status,
        starts_at=iso_utc(START_MS + int(t * 1000)),
        ends_at=iso_utc(START_MS + int(end * 1000)) if end is not None else None,
        severity="critical",
        summary=f"{entity} {kind}",
        root_cause=root,
        evidence=evidence or {},
    )


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("lake")
    sink = ParquetSink(root, topology=small_topology())
    offset = 0
    # a job of 8 ranks on node0000; rank 5 always 20 % slower; a 6 s stall between steps 4 and 5
    for i, t in enumerate([0, 1, 2, 3, 4, 10, 11, 12, 13, 14]):
        compute = [1.0] * 8
        compute[5] = 1.2
        sink.add_batch("cp.telemetry.step", 0, offset, step_batch("node0000", "j", t, list(range(8)), i, compute))
        offset += 1
    # leaf000 port 1 (node0001-nic0~leaf000) gains 2 CRC errors a second
    for t in range(11):
        crc = np.zeros(6, np.int64)
        crc[1] = 2 * t
        sink.add_batch("cp.telemetry.port", 0, offset, counters_batch("leaf000", t, 6, crc=crc))
        offset += 1
    # 2 nodes x 8 cards x 10 ticks of card samples; node0001 card 1 hot, with an XID at t = 5
    for t in range(10):
        for node in ("node0000", "node0001"):
            b = card_batch(node, t, errors=[(1, 79)] if (node == "node0001" and t == 5) else [])
            b.columns["temp_c"][1] = 80.0 + t if node == "node0001" else 60.0
            sink.add_batch("cp.telemetry.card", 0, offset, b)
            offset += 1
    root_alert = alert(
        "switch_down", "leaf000", 100, evidence={"blast_radius": {"cards": 4, "nodes": 4, "links": 6, "jobs": ["j"]}}
    )
    alerts = [
        root_alert,
        alert("link_down", "leaf000~spine000", 100, root=root_alert.id),
        alert("card_failed", "node0001-card1", 50, evidence={"blast_radius": {"cards": 1, "jobs": ["j"]}}),
        alert("switch_down", "leaf000", 100, "resolved", end=160),
        alert("link_down", "leaf000~spine000", 100, "resolved", root=root_alert.id, end=170),
    ]
    for i, a in enumerate(alerts):
        sink.add_alert("cp.alerts", 0, i, a)
    sink.flush_all()
    return root


def query(lake: Path, name: str, **params: str) -> list[dict]:
    return json.loads(run_query(lake, str(SQL / f"{name}.sql"), params, "json").text)


def test_every_query_file_has_a_header_with_question_parameters_and_columns() -> None:
    files = sorted(p for p in SQL.glob("*.sql") if not p.name.endswith("views.sql"))
    assert len(files) == 9
    for path in files:
        text = path.read_text()
        assert text.startswith("-- Question:"), path.name
        assert "-- Columns:" in text, path.name
        used = set(
            __import__("re").findall(
                r"\$(\w+)", "\n".join(line for line in text.splitlines() if not line.startswith("--"))
            )
        )
        assert used == set(parameters(text)), path.name


def test_top_stragglers(lake: Path) -> None:
    [top, *_] = query(lake, "top_stragglers", limit="3")
    assert (top["job"], top["position"], top["node"], top["card"], top["rank"], top["steps"]) == (
        "j",
        1,
        "node0000",
        5,
        5,
        10,
    )
    assert top["median_relative_compute"] == 1.2


def test_link_health(lake: Path) -> None:
    [worst, *_] = query(lake, "link_health")
    assert (worst["switch"], worst["link"], worst["rail"], worst["crc_errors"], worst["seconds"]) == (
        "leaf000",
        "node0001-nic0~leaf000",
        0,
        20,
        10,
    )
    assert worst["errors_per_s"] == 2.0 and worst["rank_in_switch"] == 1


def test_fault_timeline(lake: Path) -> None:
    rows = query(lake, "fault_timeline")
    assert [(r["kind"], r["duration_s"], r["is_root_cause"], r["root_cause_entity"]) for r in rows] == [
        ("card_failed", None, True, None),
        ("link_down", 70.0, False, "leaf000"),
        ("switch_down", 60.0, True, None),
    ]
    assert query(lake, "fault_timeline", start="2026-01-01T00:01:00Z") == rows[1:]


def test_blast_radius(lake: Path) -> None:
    rows = query(lake, "blast_radius")
    assert [(r["kind"], r["consequences"], r["consequence_kinds"], r["cards"], r["jobs"]) for r in rows] == [
        ("switch_down", 1, "link_down", 4, "j"),
        ("card_failed", 0, None, 1, "j"),
    ]


def test_job_goodput(lake: Path) -> None:
    [job] = query(lake, "job_goodput")
    assert (job["job"], job["ranks"], job["steps"], job["median_step_interval_s"], job["wall_s"]) == (
        "j",
        8,
        10,
        1.0,
        14.0,
    )
    assert (job["stall_s"], job["straggler_s"], job["goodput"]) == (5.0, 2.0, 0.5)


def test_card_history_shows_samples_and_error_events(lake: Path) -> None:
    rows = query(lake, "card_history", card="node0001-card1", at="2026-01-01T00:00:05Z", window_s="2")
    assert [r["temp_c"] for r in rows] == [83.0, 84.0, 85.0, 86.0, 87.0]
    assert [r["error_codes"] for r in rows] == [None, None, "79", None, None]


def test_link_history_gives_increments(lake: Path) -> None:
    rows = query(lake, "link_history", link="node0001-nic0~leaf000", at="2026-01-01T00:00:05Z", window_s="2")
    assert [(r["switch"], r["crc_errors"]) for r in rows] == [("leaf000", 2)] * 5


def test_fleet_failure_rates(lake: Path) -> None:
    rows = query(lake, "fleet_failure_rates")
    assert {r["kind"]: r["incidents"] for r in rows} == {"switch_down": 1, "card_failed": 1}
    assert rows[0]["per_1000_card_hours"] == round(1000 / (160 / 3600), 3)


def test_parameters_are_checked_and_formats_work(lake: Path) -> None:
    with pytest.raises(QueryError, match=r"missing parameter \$card"):
        run_query(lake, str(SQL / "card_history.sql"), {"at": "2026-01-01T00:00:05Z"})
    with pytest.raises(QueryError, match="unknown parameter"):
        run_query(lake, str(SQL / "job_goodput.sql"), {"colour": "red"})
    csv = run_query(lake, "top_stragglers.sql", {"limit": "1"}, "csv").text  # found in sql/ by name
    assert csv.splitlines()[0].startswith("job,position,node,card,rank")
    assert "(1 rows)" in run_query(lake, "select count(*) as n from step where rank = 5").text


def test_a_corrupt_file_is_reported_and_skipped(lake: Path, tmp_path: Path) -> None:
    copy = tmp_path / "lake"
    shutil.copytree(lake, copy)
    [step_file] = list((copy / "step").rglob("*.parquet"))
    truncated = step_file.with_name("cp.telemetry.step+1+00000000000000000000.parquet")
    truncated.write_bytes(step_file.read_bytes()[:300])
    result = run_query(copy, "select count(*) as n from step")
    assert result.rows == [(80,)] and result.skipped_files == [str(truncated)]


@pytest.mark.skipif(
    shutil.which("duckdb", path=str(ROOT / ".venv" / "bin")) is None and shutil.which("duckdb") is None,
    reason="the duckdb CLI is not installed (PyPI duckdb-cli, a test dependency)",
)
def test_views_work_from_the_plain_duckdb_cli(lake: Path) -> None:
    cli = shutil.which("duckdb", path=str(ROOT / ".venv" / "bin")) or shutil.which("duckdb")
    done = subprocess.run(
        [
            cli,
            "-csv",
            "-c",
            f"SET VARIABLE clusterpulse_data = '{lake}'",
            "-c",
            ".read sql/views.sql",
            "-c",
            "select count(*) as n from card",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["n", "160"]
