"""Per-minute rollups written by compaction, the canned query reading them for long windows, and
retention."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb

from pipeline.lake.compact import expire, roll_up
from pipeline.lake.parquet import ParquetSink
from tests.builders import START_MS, card_batch
from tests.unit.lake.test_query_answers import lake, query  # noqa: F401 (fixture)

LATER = START_MS / 1000 + 10 * 3600  # ten hours after the fixture's hour


def test_link_health_over_a_long_window_reads_the_rollup_and_gives_the_raw_answer(lake: Path, tmp_path: Path) -> None:  # noqa: F811
    raw = query(lake, "link_health", limit="1000")
    rolled = tmp_path / "lake"
    shutil.copytree(lake, rolled)
    written = roll_up(rolled, older_than_s=3600, now=LATER)
    names = sorted(p.split("/")[0] for p in written)
    assert names == ["card_1h", "card_1m", "port_1h", "port_1m", "step_1h", "step_1m"]
    shutil.rmtree(rolled / "port")  # the answer now comes from the rollups alone
    assert query(rolled, "link_health", limit="1000") == raw  # the whole lake: port_1h
    assert query(rolled, "link_health", limit="1000", hourly_after_s="1e12") == raw  # port_1m
    short = query(rolled, "link_health", limit="1000", rollup_after_s="1e12")  # a window this short reads raw
    assert short == []


def test_rollup_counts_a_counter_across_a_reset_and_from_the_previous_hour(tmp_path: Path) -> None:
    sink = ParquetSink(tmp_path)
    errors = {0: 5, 3598: 100, 3599: 110, 3600: 115, 3601: 3, 3660: 13}  # second -> ecc_sbe; reset at 3601
    for offset, (second, count) in enumerate(errors.items()):
        batch = card_batch("node0001", second, cards=[0])
        batch.columns["ecc_sbe"][:] = count
        sink.add_batch("cp.telemetry.card", 0, offset, batch)
    sink.flush_all()
    roll_up(tmp_path, older_than_s=0, now=LATER)
    got = duckdb.execute(
        f"select samples, ecc_sbe_increase from read_parquet('{tmp_path}/card_1m/**/*.parquet') order by ts"
    ).fetchall()
    # hour 0: 5 (nothing before it), 100, 110; hour 1: 115 (5 more than hour 0's last), reset to 3, 13
    assert got == [(1, 0), (2, 95 + 10), (2, 5 + 3), (1, 10)]


def test_a_rollup_is_rewritten_when_its_hour_gets_late_files(tmp_path: Path) -> None:
    sink = ParquetSink(tmp_path)
    sink.add_batch("cp.telemetry.card", 0, 0, card_batch("node0001", 10))
    sink.flush_all()
    assert len(roll_up(tmp_path, older_than_s=0, now=LATER)) == 2  # card_1m, card_1h
    assert roll_up(tmp_path, older_than_s=0, now=LATER) == []  # up to date
    sink.add_batch("cp.telemetry.card", 1, 0, card_batch("node0002", 20))
    sink.flush_all()
    again, hourly = roll_up(tmp_path, older_than_s=0, now=LATER)
    nodes = duckdb.execute(f"select distinct node from read_parquet('{tmp_path / again}') order by node").fetchall()
    assert nodes == [("node0001",), ("node0002",)]


def test_retention_removes_old_hours_of_the_datasets_named_and_nothing_else(tmp_path: Path) -> None:
    sink = ParquetSink(tmp_path)
    sink.add_batch("cp.telemetry.card", 0, 0, card_batch("node0001", 10))  # hour 0
    sink.add_batch("cp.telemetry.card", 0, 1, card_batch("node0001", 7200))  # hour 2
    sink.flush_all()
    roll_up(tmp_path, older_than_s=0, now=LATER)
    foreign = tmp_path / "card" / "date=2026-01-01" / "hour=00" / "notes.txt"
    foreign.write_text("an operator's file")
    hour_end_0 = START_MS / 1000 + 3600
    removed = expire(tmp_path, {"card": 2 * 3600}, now=hour_end_0 + 2 * 3600 + 1)  # hour 0 is 2 h past, hour 2 not
    assert [(r.dataset, r.hour, r.files) for r in removed] == [("card", "date=2026-01-01/hour=00", 1)]
    assert foreign.is_file()  # not ours: kept, and so is its folder
    assert list((tmp_path / "card" / "date=2026-01-01" / "hour=02").glob("*.parquet"))
    assert len(list((tmp_path / "card_1m").glob("date=*/hour=*/*.parquet"))) == 2  # its own retention


def test_top_stragglers_over_a_long_window_ranks_from_the_rollup(lake: Path, tmp_path: Path) -> None:  # noqa: F811
    raw = query(lake, "top_stragglers")
    rolled = tmp_path / "lake"
    shutil.copytree(lake, rolled)
    roll_up(rolled, older_than_s=3600, now=LATER)
    shutil.rmtree(rolled / "step")  # the answer now comes from the rollups alone
    got = query(rolled, "top_stragglers", hourly_after_s="1e12")  # step_1m
    assert query(rolled, "top_stragglers") == got  # step_1h: here one hour, one minute: the same means
    keys = ("job", "node", "card", "rank", "steps")  # means order close ranks differently from medians
    assert sorted(tuple(r[k] for k in keys) for r in got) == sorted(tuple(r[k] for k in keys) for r in raw)
    slow = next(r for r in got if (r["job"], r["rank"]) == ("steady", 2))
    assert slow["position"] == 1 and slow["median_relative_compute"] > 1.05  # per-minute means: still the slowest
    assert query(rolled, "top_stragglers", rollup_after_s="1e12") == []  # a short window reads raw steps
