"""`clusterpulse compact` end to end: compacts, writes the rollups, then removes what is past the
retention the settings give (the rollup of an hour is written before its raw files go)."""

from __future__ import annotations

from pathlib import Path

from pipeline.lake.parquet import ParquetSink
from tests.builders import card_batch
from tests.conftest import run_cli


def old_lake(root: Path) -> Path:
    sink = ParquetSink(root)
    for i in range(3):  # three flushes: three files in 2026-01-01 hour 00 to compact
        sink.add_batch("cp.telemetry.card", 0, i, card_batch("node0001", i))
        sink.flush_all()
    return root


def test_compact_rolls_up_then_removes_hours_past_their_retention(tmp_path: Path) -> None:
    lake = old_lake(tmp_path / "lake")
    done = run_cli("compact", "--data", str(lake), env={"CLUSTERPULSE_LAKE__RETENTION": '{"card": "30d"}'})
    assert done.returncode == 0, done.stderr
    assert "card date=2026-01-01/hour=00: 3 files -> 1, 24 rows" in done.stdout
    assert "card_1m date=2026-01-01/hour=00: rolled up" in done.stdout
    assert "card date=2026-01-01/hour=00: past its retention, 1 files removed" in done.stdout
    assert not (lake / "card").exists() or not list((lake / "card").glob("**/*.parquet"))
    assert list((lake / "card_1m").glob("date=2026-01-01/hour=00/rollup.parquet"))
    rows = run_cli("query", "select sum(samples) as n from card_1m", "--data", str(lake), "--format", "csv")
    assert rows.stdout.split() == ["n", "24"], rows.stderr


def test_a_retention_for_no_dataset_is_one_line(tmp_path: Path) -> None:
    lake = old_lake(tmp_path / "lake")
    done = run_cli("compact", "--data", str(lake), env={"CLUSTERPULSE_LAKE__RETENTION": '{"cards": "7d"}'})
    assert done.returncode == 2 and "lake.retention names no dataset cards" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert len(list((lake / "card").glob("**/*.parquet"))) == 3  # nothing was done
