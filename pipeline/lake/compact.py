"""Compaction: merge a closed hour's many small files of a dataset into one sorted file.

A worker writes a file per partition per flush (thousands an hour at 10,240 cards); DuckDB pays
for each file it opens. `clusterpulse compact` rewrites every hour older than `--older-than`
(default 2 h, well after its offsets were committed) into `compacted-<n>.parquet`, sorted by
entity, sub-entity and time, then deletes the small files. The compacted file lists its sources in
its metadata, so a run interrupted between writing and deleting finishes the deletion next time
(until then a reader may count those rows twice). Late files for an hour are merged with the
hour's compacted file on the next run.

After an hour of `card`, `port` or `step` is compacted (or when a compacted hour has no rollup
yet), its per-minute rollup is written (`pipeline.lake.rollup`). Retention (`lake.retention`:
dataset -> how long to keep) removes the Parquet files of hours that ended longer ago than that, and
the hour's folder once it is empty: nothing else in the lake is touched.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq

from pipeline.lake import rollup
from pipeline.lake.datasets import ORDER
from pipeline.lake.dirs import duckdb_connection

SOURCES_KEY = "clusterpulse.sources"


@dataclass
class Compacted:
    dataset: str
    hour: str
    files_in: int
    rows: int
    bytes_before: int
    bytes_after: int


def _hour_start(folder: Path) -> datetime:
    date = folder.parent.name.split("=", 1)[1]
    hour = int(folder.name.split("=", 1)[1])
    return datetime.fromisoformat(f"{date}T{hour:02d}:00:00+00:00").replace(tzinfo=UTC)


def _closed_hours(dataset_dir: Path, older_than_s: float, now: float) -> Iterator[tuple[Path, datetime]]:
    """(folder, start) of each hour of a dataset that ended at least `older_than_s` before `now`."""
    for folder in sorted(dataset_dir.glob("date=*/hour=*")):
        start = _hour_start(folder)
        if now - (start.timestamp() + 3600) >= older_than_s:
            yield folder, start


def _finish_interrupted(folder: Path) -> None:
    for done in folder.glob("compacted-*.parquet"):
        meta = pq.read_metadata(done).metadata or {}
        for name in json.loads(meta.get(SOURCES_KEY.encode(), b"[]")):
            leftover = folder / name
            if leftover.exists() and leftover != done:
                leftover.unlink()


@dataclass
class Removed:
    dataset: str
    hour: str
    files: int
    bytes: int


def _hour_folder(dataset_dir: Path, start: datetime) -> Path:
    return dataset_dir / f"date={start:%Y-%m-%d}" / f"hour={start.hour:02d}"


def roll_up(root: str | Path, older_than_s: float = 7200, now: float | None = None) -> list[Path]:
    """Write the 1m and 1h rollups of every closed hour of card, port and step whose rollups are
    missing or older than its raw files; return the files written."""
    root = Path(root)
    now = time.time() if now is None else now
    written = []
    for source, (minutely, hourly) in rollup.BY_SOURCE.items():
        for folder, start in _closed_hours(root / source, older_than_s, now):
            if not rollup.stale((minutely, hourly), folder, root):
                continue
            previous = _hour_folder(root / source, start - timedelta(hours=1))
            out = rollup.write_rollup(minutely, folder, start, previous, root)
            if out is not None:
                written += [out, rollup.write_hourly(hourly, out, root)]
    return written


def expire(root: str | Path, retention_s: dict[str, float], now: float | None = None) -> list[Removed]:
    """Remove the Parquet files of every hour of a dataset in `retention_s` that ended longer ago
    than its retention, and the hour's (and date's) folder once empty."""
    root = Path(root)
    now = time.time() if now is None else now
    removed = []
    for dataset, keep_s in retention_s.items():
        for folder, _ in _closed_hours(root / dataset, keep_s, now):
            files = sorted(folder.glob("*.parquet"))
            size = sum(f.stat().st_size for f in files)
            for f in files:
                f.unlink()
            for empty in (folder, folder.parent):
                try:
                    empty.rmdir()  # only when empty: whatever else is there stays
                except OSError:
                    break
            if files:
                removed.append(Removed(dataset, f"{folder.parent.name}/{folder.name}", len(files), size))
    return removed


def compact(root: str | Path, older_than_s: float = 7200, now: float | None = None) -> list[Compacted]:
    """Compact every hour of every dataset under `root` that ended at least `older_than_s` ago."""
    root = Path(root)
    now = time.time() if now is None else now
    out = []
    for dataset, order in ORDER.items():
        for folder, _ in _closed_hours(root / dataset, older_than_s, now):
            _finish_interrupted(folder)
            small = sorted(f for f in folder.glob("*.parquet") if not f.name.startswith("compacted-"))
            if not small:
                continue
            previous = sorted(folder.glob("compacted-*.parquet"))
            sources = previous + small
            if len(sources) == 1:
                continue
            number = 1 + max((int(p.stem.split("-")[1]) for p in previous), default=0)
            final = folder / f"compacted-{number:04d}.parquet"
            tmp = folder / f".{final.name}.tmp"
            names = json.dumps([p.name for p in sources]).replace("'", "''")
            listed = ", ".join("'" + str(p).replace("'", "''") + "'" for p in sources)
            con = duckdb_connection()
            con.execute(f"""copy (select * from read_parquet([{listed}], union_by_name = true,
                                                    hive_partitioning = false)
                                  order by {order})
                            to '{str(tmp).replace("'", "''")}'
                            (format parquet, compression zstd, row_group_size 131072, parquet_version v2,
                             kv_metadata {{'{SOURCES_KEY}': '{names}'}})""")
            counted = con.execute(
                f"select count(*) from read_parquet('{str(tmp).replace(chr(39), chr(39) * 2)}')"
            ).fetchone()
            assert counted is not None  # count(*) always returns one row
            rows = counted[0]
            con.close()
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
            before = sum(p.stat().st_size for p in sources)
            os.replace(tmp, final)
            for p in sources:
                p.unlink()
            out.append(
                Compacted(
                    dataset, f"{folder.parent.name}/{folder.name}", len(sources), rows, before, final.stat().st_size
                )
            )
    return out
