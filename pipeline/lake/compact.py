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
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq

from pipeline.lake import rollup
from pipeline.lake.datasets import ORDER
from pipeline.lake.store import LakeStore

SOURCES_KEY = "clusterpulse.sources"


@dataclass
class Compacted:
    dataset: str
    hour: str
    files_in: int
    rows: int
    bytes_before: int
    bytes_after: int


def _hour_start(hour: str) -> datetime:
    """The start of an hour folder `date=YYYY-MM-DD/hour=HH`."""
    date_part, hour_part = hour.split("/")
    date = date_part.split("=", 1)[1]
    number = int(hour_part.split("=", 1)[1])
    return datetime.fromisoformat(f"{date}T{number:02d}:00:00+00:00").replace(tzinfo=UTC)


def _hour(start: datetime) -> str:
    return f"date={start:%Y-%m-%d}/hour={start.hour:02d}"


def _closed_hours(store: LakeStore, dataset: str, older_than_s: float, now: float) -> Iterator[tuple[str, datetime]]:
    """(`date=.../hour=...`, start) of each hour of a dataset that ended at least `older_than_s` before `now`."""
    for date in store.folders(dataset):
        if not date.rsplit("/", 1)[-1].startswith("date="):
            continue
        for folder in store.folders(date):
            hour = folder[len(dataset) + 1 :]
            if not hour.rsplit("/", 1)[-1].startswith("hour="):
                continue
            start = _hour_start(hour)
            if now - (start.timestamp() + 3600) >= older_than_s:
                yield hour, start


def _finish_interrupted(store: LakeStore, folder: str) -> None:
    files = store.files(folder, ".parquet")
    names = {f.name for f in files}
    for done in (f for f in files if f.name.startswith("compacted-")):
        meta = pq.read_metadata(done.path, filesystem=store.fs).metadata or {}
        for name in json.loads(meta.get(SOURCES_KEY.encode(), b"[]")):
            if name in names and name != done.name:
                store.delete(store.path(folder, name))


@dataclass
class Removed:
    dataset: str
    hour: str
    files: int
    bytes: int


def roll_up(root: str | Path, older_than_s: float = 7200, now: float | None = None) -> list[str]:
    """Write the 1m and 1h rollups of every closed hour of card, port and step whose rollups are
    missing or older than its raw files; return the files written (relative to the lake)."""
    store = LakeStore(root)
    now = time.time() if now is None else now
    written = []
    for source, (minutely, hourly) in rollup.BY_SOURCE.items():
        for hour, start in _closed_hours(store, source, older_than_s, now):
            if not rollup.stale(store, (minutely, hourly), hour):
                continue
            out = rollup.write_rollup(store, minutely, hour, start, _hour(start - timedelta(hours=1)))
            if out is not None:
                written += [out, rollup.write_hourly(store, hourly, minutely, hour)]
    return written


def expire(root: str | Path, retention_s: dict[str, float], now: float | None = None) -> list[Removed]:
    """Remove the Parquet files of every hour of a dataset in `retention_s` that ended longer ago
    than its retention, and the hour's (and date's) folder once empty."""
    store = LakeStore(root)
    now = time.time() if now is None else now
    removed = []
    for dataset, keep_s in retention_s.items():
        for hour, _ in _closed_hours(store, dataset, keep_s, now):
            files = store.files(f"{dataset}/{hour}", ".parquet")
            for f in files:
                store.delete(f.path)
            store.remove_empty_folders(f"{dataset}/{hour}", levels=2)
            if files:
                removed.append(Removed(dataset, hour, len(files), sum(f.size for f in files)))
    return removed


def compact(root: str | Path, older_than_s: float = 7200, now: float | None = None) -> list[Compacted]:
    """Compact every hour of every dataset of the lake at `root` (a directory or an object store
    URI) that ended at least `older_than_s` ago."""
    store = LakeStore(root)
    now = time.time() if now is None else now
    out = []
    for dataset, order in ORDER.items():
        for hour, _ in _closed_hours(store, dataset, older_than_s, now):
            folder = f"{dataset}/{hour}"
            _finish_interrupted(store, folder)
            files = store.files(folder, ".parquet")
            small = [f for f in files if not f.name.startswith("compacted-")]
            if not small:
                continue
            previous = [f for f in files if f.name.startswith("compacted-")]
            sources = previous + small
            if len(sources) == 1:
                continue
            number = 1 + max((int(f.name[: -len(".parquet")].split("-")[1]) for f in previous), default=0)
            final = f"{folder}/compacted-{number:04d}.parquet"
            staged = store.staging_file(final)
            names = json.dumps([f.name for f in sources]).replace("'", "''")
            listed = ", ".join("'" + store.url(f.path).replace("'", "''") + "'" for f in sources)
            con = store.duckdb()
            try:
                con.execute(f"""copy (select * from read_parquet([{listed}], union_by_name = true,
                                                        hive_partitioning = false)
                                      order by {order})
                                to '{str(staged).replace("'", "''")}'
                                (format parquet, compression zstd, row_group_size 131072, parquet_version v2,
                                 kv_metadata {{'{SOURCES_KEY}': '{names}'}})""")
                counted = con.execute(
                    f"select count(*) from read_parquet('{str(staged).replace(chr(39), chr(39) * 2)}')"
                ).fetchone()
            except BaseException:
                staged.unlink(missing_ok=True)
                raise
            finally:
                con.close()
            assert counted is not None  # count(*) always returns one row
            size = store.publish(staged, final)
            for f in sources:
                store.delete(f.path)
            out.append(Compacted(dataset, hour, len(sources), counted[0], sum(f.size for f in sources), size))
    return out
