import json
import shutil
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from pipeline.lake.compact import SOURCES_KEY, compact
from pipeline.lake.parquet import ParquetSink
from tests.builders import card_batch

NOW = 1_767_225_600 + 10 * 3600  # ten hours after the data's hour


def lake(tmp_path: Path, files: int = 6) -> Path:
    sink = ParquetSink(tmp_path)
    for i in range(files):
        sink.add_batch("cp.telemetry.card", i % 3, i, card_batch(f"node000{(5 - i) % 8}", i))
        sink.flush_all()
    return tmp_path


def rows(root: Path) -> list[tuple]:
    return duckdb.execute(
        f"select node, card, ts, util from read_parquet('{root}/card/**/*.parquet') order by node, card, ts"
    ).fetchall()


def folder(root: Path) -> Path:
    return root / "card" / "date=2026-01-01" / "hour=00"


def test_compaction_keeps_every_row_in_one_sorted_file(tmp_path: Path) -> None:
    root = lake(tmp_path)
    before = rows(root)
    [done] = compact(root, older_than_s=3600, now=NOW)
    assert (done.dataset, done.files_in, done.rows) == ("card", 6, 48)
    assert [p.name for p in folder(root).iterdir()] == ["compacted-0001.parquet"]
    assert rows(root) == before
    nodes = pq.read_table(folder(root) / "compacted-0001.parquet").column("node").to_pylist()
    assert nodes == sorted(nodes)


def test_recent_hours_are_left_alone(tmp_path: Path) -> None:
    root = lake(tmp_path)
    assert compact(root, older_than_s=3600, now=1_767_225_600 + 3600) == []
    assert len(list(folder(root).iterdir())) == 6


def test_an_interrupted_run_is_finished_and_late_files_are_merged(tmp_path: Path) -> None:
    root = lake(tmp_path)
    keep = tmp_path / "copy"
    shutil.copytree(folder(root), keep)
    compact(root, older_than_s=3600, now=NOW)
    leftover = sorted(keep.iterdir())[0]  # as if the run died before deleting this source
    shutil.copy(leftover, folder(root) / leftover.name)
    sources = json.loads(pq.read_metadata(folder(root) / "compacted-0001.parquet").metadata[SOURCES_KEY.encode()])
    assert leftover.name in sources
    late = ParquetSink(tmp_path)
    late.add_batch("cp.telemetry.card", 9, 100, card_batch("node0007", 30))
    late.flush_all()
    [done] = compact(root, older_than_s=3600, now=NOW)
    assert done.files_in == 2 and done.rows == 56  # the leftover was deleted, not counted twice
    assert [p.name for p in folder(root).iterdir()] == ["compacted-0002.parquet"]
