"""Benchmark: one hour of the default 10,240-card cluster into the lake, then time every canned query.

    .venv/bin/python -m bench.lake [--seconds 3600] [--data /tmp/clusterpulse-bench-lake] [--keep]
                                   [--compact] [--week-of-rollups]

Writes the lake as a worker at real time would (12 partitions, a flush every 10 s), then runs each
query in sql/ three times and reports the best time, plus bytes per sample on disk. `--compact`
first compacts the hour and writes its rollups (timed, with their size); `--week-of-rollups` then
copies the hour's rollups to the 167 hours after it (times shifted) and times the long-window
queries over that week of rollups (the raw hour stays as it is).
Goals (docs/benchmarks.md): each query < 2 s; one card's hour < 200 ms.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path

import duckdb
from kafka.partitioner.default import murmur2

from pipeline.eval.evaluate import OfflineCore
from pipeline.lake.compact import compact, roll_up
from pipeline.lake.parquet import ParquetSink
from pipeline.lake.query import QueryError, run_query
from pipeline.model.schemas import decode_batch
from pipeline.settings import Settings, load_settings
from producers.scenario import Scenario, parse_scenario
from producers.simulator import Simulator


def partition_of(key: str, partitions: int) -> int:
    """Kafka's default partition for a key (kafka-python and the Java client agree)."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


def build_lake(
    scenario: Scenario, root: str | Path, settings: Settings, flush_every_ticks: int = 10, partitions: int = 12
) -> dict[str, int]:
    topo = scenario.topology
    sink = ParquetSink(root, flush_rows=10**9, flush_seconds=10**9, topology=topo)
    core = OfflineCore(topo, settings)
    offsets: dict[tuple[str, int], int] = {}
    alerts = 0
    prefix = settings.topic_prefix

    def add_alerts(found: list) -> None:
        nonlocal alerts
        for alert in found:
            key = (f"{prefix}.alerts", partition_of(alert.id, min(3, partitions)))
            offset = offsets.get(key, -1) + 1
            offsets[key] = offset
            sink.add_alert(*key, offset, alert)
            alerts += 1

    for tick, (ts_ms, messages) in enumerate(Simulator(scenario).ticks()):
        for message in messages:
            key = (f"{prefix}.{message.topic.suffix}", partition_of(message.key, partitions))
            offset = offsets.get(key, -1) + 1
            offsets[key] = offset
            batch = decode_batch(message.value)
            sink.add_batch(*key, offset, batch)
            add_alerts(core.push(batch))
        add_alerts(core.end_tick(ts_ms))
        if (tick + 1) % flush_every_ticks == 0:
            sink.flush_all()
    add_alerts(core.finish())
    sink.flush_all()
    return {"files": sink.files_written, "rows": sink.rows_written, "alerts": alerts}


def scenario(seconds: int):  # noqa: ANN201
    return parse_scenario(
        {
            "name": "bench-hour",
            "seed": 5,
            "duration_s": seconds,
            "jobs": [
                {"name": "pretrain-a", "first_node": 0, "nodes": 1024, "step_s": 2.0},
                {"name": "finetune-b", "first_node": 1024, "nodes": 128, "step_s": 0.8},
                {"name": "eval-c", "first_node": 1152, "nodes": 96, "step_s": 1.5},
            ],
            "faults": [
                f
                for f in [
                    {
                        "kind": "straggler",
                        "target": "node0154-card3",
                        "start_s": 300,
                        "duration_s": 900,
                        "severity": 0.15,
                    },
                    {"kind": "link_degradation", "target": "node0530-nic5~leaf216", "start_s": 700, "severity": 0.4},
                    {"kind": "card_failure", "target": "node1200-card0", "start_s": 1000, "duration_s": 600},
                    {"kind": "switch_failure", "target": "leaf017", "start_s": 2100, "duration_s": 300},
                    {"kind": "node_failure", "target": "node1260", "start_s": 2900, "duration_s": 400},
                ]
                if f["start_s"] < seconds
            ],
        }
    )


QUERIES = {
    "top_stragglers": {},
    "link_health": {},
    "fault_timeline": {},
    "blast_radius": {},
    "job_goodput": {},
    "fleet_failure_rates": {},
    "card_history": {"card": "node0154-card3", "at": "2026-01-01T00:30:00Z", "window_s": "1800"},
    "link_history": {"link": "node0530-nic5~leaf216", "at": "2026-01-01T00:12:00Z", "window_s": "60"},
}


def copy_rollups_over_a_week(data: Path) -> None:
    """The first hour's rollup files again in each of the 167 hours after it, times shifted."""
    for path in sorted(data.glob("*_1[mh]/date=2026-01-01/hour=00/rollup.parquet")):
        quoted = str(path).replace("'", "''")
        for h in range(1, 168):
            date = f"2026-01-{1 + h // 24:02d}"
            out = path.parent.parent.parent / f"date={date}" / f"hour={h % 24:02d}" / "rollup.parquet"
            out.parent.mkdir(parents=True, exist_ok=True)
            shift = f"interval {h} hour"
            duckdb.execute(
                f"copy (select * replace (ts + {shift} as ts, first_ts + {shift} as first_ts, "
                f"last_ts + {shift} as last_ts) from read_parquet('{quoted}', hive_partitioning = false)) "
                f"to '{str(out).replace(chr(39), chr(39) * 2)}' (format parquet, compression zstd)"
            )


def time_query(data: Path, name: str, params: dict[str, str]) -> None:
    best = float("inf")
    try:
        for _ in range(3):
            started = time.perf_counter()
            result = run_query(data, str(Path(__file__).resolve().parent.parent / "sql" / f"{name}.sql"), params)
            best = min(best, time.perf_counter() - started)
    except QueryError as exc:
        print(f"{name:22} {'n/a':>10} ({str(exc).splitlines()[0]})")
        return
    print(f"{name:22} {best * 1000:>8.0f} ms {len(result.rows):>6}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=3600)
    parser.add_argument("--data", default="/tmp/clusterpulse-bench-lake")
    parser.add_argument("--keep", action="store_true", help="reuse an existing lake at --data")
    parser.add_argument("--compact", action="store_true", help="compact the hour and write its rollups first")
    parser.add_argument("--week-of-rollups", action="store_true", help="then time queries over a week of rollups")
    args = parser.parse_args()
    data = Path(args.data)
    sc = scenario(args.seconds)
    if not (args.keep and data.exists()):
        shutil.rmtree(data, ignore_errors=True)
        started = time.perf_counter()
        written = build_lake(sc, data, load_settings({}, environ={}))
        print(
            f"wrote {written['rows']:,} rows in {written['files']:,} files ({written['alerts']} alert records) "
            f"in {time.perf_counter() - started:.0f} s"
        )
    if args.compact:
        started = time.perf_counter()
        compact(data, older_than_s=0, now=4e9)
        compacted = time.perf_counter() - started
        for old in data.glob("*_1[mh]"):
            shutil.rmtree(old)  # rollups of an earlier run (and their copies over a week)
        started = time.perf_counter()
        rolled = roll_up(data, older_than_s=0, now=4e9)
        print(f"compacted in {compacted:.0f} s, rolled up {len(rolled)} files in {time.perf_counter() - started:.0f} s")
        for relative in rolled:
            path = data / relative
            n = duckdb.execute(f"select count(*) from read_parquet('{path}')").fetchone()[0]  # type: ignore[index]
            print(f"  {relative.split('/')[0]}: {n:,} rows, {path.stat().st_size / 1e6:,.1f} MB")
    size = sum(f.stat().st_size for f in data.rglob("*.parquet") if "_1m" not in f.parent.parent.parent.name)
    samples = run_query(
        data, "select (select count(*) from card) + (select count(*) from port) + (select count(*) from step) as n"
    ).rows[0][0]
    print(f"lake: {size / 1e6:,.0f} MB, {samples:,} samples, {size / samples:.2f} bytes/sample on disk")
    for dataset in ("card", "port", "step"):
        n = run_query(data, f"select count(*) from {dataset}").rows[0][0]
        b = sum(f.stat().st_size for f in (data / dataset).rglob("*.parquet"))
        print(f"  {dataset}: {n:,} rows, {b / 1e6:,.0f} MB, {b / max(n, 1):.2f} bytes/row")
    print(f"{'query':22} {'best of 3':>10} {'rows':>6}")
    for name, params in QUERIES.items():
        time_query(data, name, params)
    if args.week_of_rollups:
        copy_rollups_over_a_week(data)
        minutely = sum(f.stat().st_size for f in data.glob("*_1m/**/*.parquet"))
        hourly = sum(f.stat().st_size for f in data.glob("*_1h/**/*.parquet"))
        print(f"a week of rollups: {minutely / 1e6:,.0f} MB per minute, {hourly / 1e6:,.0f} MB per hour")
        for name in ("link_health", "top_stragglers"):
            time_query(data, name, {})  # the week: hourly rollups
        day = {"start": "2026-01-03T00:00:00Z", "end": "2026-01-04T00:00:00Z"}
        print("one day of the week (per-minute rollups):")
        for name in ("link_health", "top_stragglers"):
            time_query(data, name, day)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    main()
