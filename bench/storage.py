"""Benchmark: bytes per sample in the lake against Prometheus's TSDB, on the same samples.

    .venv/bin/python -m bench.storage [--cards 256] [--seconds 600] [--keep DIR]

The simulator's card and port samples of the default scenario (its cluster scaled to `--cards`)
go (1) into the lake as a worker writes it (12 partitions, a file per partition every 10 s), then
compacted as `clusterpulse compact` does, and (2) as OpenMetrics text, one series per metric and
card (node, card) or port (switch, port), into `promtool tsdb create-blocks-from openmetrics`: the
blocks Prometheus writes when it compacts its head (compressed chunks and the index), without the
write-ahead log a running Prometheus keeps besides. A sample is one value of one metric at one
time; gauges a card did not report (NaN) are no sample for either. Needs `promtool` (Debian
`prometheus`).
"""

from __future__ import annotations

import argparse
import copy
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.lake import partition_of
from pipeline.lake.compact import compact
from pipeline.lake.parquet import ParquetSink
from pipeline.model.schemas import SCHEMAS, decode_batch
from producers.scenario import DEFAULT_SCENARIO, parse_scenario
from producers.simulator import Simulator

KEYS = {"card": ("node", "card"), "port": ("switch", "port")}  # series labels: the source, then the row's key


def scenario(cards: int, seconds: int):  # noqa: ANN201
    data = copy.deepcopy(DEFAULT_SCENARIO)
    data.update(name="bench-storage", duration_s=seconds, faults=[], cluster={"cards": cards})
    data["jobs"] = [{"name": "train", "first_node": 0, "nodes": cards // 8, "step_s": 1.0}]
    return parse_scenario(data)


def metric_columns(kind: str) -> list[str]:
    key = KEYS[kind][1]
    return [c.name for c in SCHEMAS[kind].group_columns("rows") if c.name != key]


def collect(sc, lake: Path) -> dict[str, dict[str, np.ndarray]]:  # noqa: ANN001
    """Write the lake; return per kind the rows of every batch (source, key, ts and metric columns)."""
    sink = ParquetSink(lake, flush_rows=10**9, flush_seconds=10**9, topology=sc.topology)
    offsets: dict[tuple[str, int], int] = {}
    rows: dict[str, dict[str, list]] = {kind: {} for kind in KEYS}
    for tick, (_, messages) in enumerate(Simulator(sc).ticks()):
        for message in messages:
            batch = decode_batch(message.value)
            if batch.kind not in KEYS:
                continue
            topic = f"bench.{message.topic.suffix}"
            key = (topic, partition_of(message.key, 12))
            offsets[key] = offsets.get(key, -1) + 1
            sink.add_batch(*key, offsets[key], batch)
            found = rows[batch.kind]
            for part in batch.split():
                n = part.rows()
                found.setdefault("source", []).append(np.full(n, part.source, object))
                found.setdefault("ts", []).append(np.full(n, part.ts_ms, np.int64))
                for name in (KEYS[batch.kind][1], *metric_columns(batch.kind)):
                    found.setdefault(name, []).append(part.columns[name])
        if (tick + 1) % 10 == 0:
            sink.flush_all()
    sink.flush_all()
    return {kind: {name: np.concatenate(parts) for name, parts in found.items()} for kind, found in rows.items()}


def write_openmetrics(rows: dict[str, dict[str, np.ndarray]], path: Path) -> int:
    """Every sample as OpenMetrics text, a metric family at a time, each series in time order;
    returns the samples written."""
    samples = 0
    with open(path, "w") as out:
        for kind, cols in rows.items():
            source_label, key_label = KEYS[kind]
            order = np.lexsort((cols["ts"], cols[key_label], cols["source"]))
            sources, keys, ts = cols["source"][order], cols[key_label][order], cols["ts"][order] / 1000
            labels = [f'{{{source_label}="{s}",{key_label}="{k}"}} ' for s, k in zip(sources, keys.tolist())]
            stamps = [f" {t:.3f}\n" for t in ts.tolist()]
            for metric in metric_columns(kind):
                values = cols[metric][order]
                keep = ~np.isnan(values) if values.dtype.kind == "f" else np.ones(len(values), bool)
                name = f"clusterpulse_{kind}_{metric}"
                out.write(f"# TYPE {name} unknown\n")
                text = values.tolist()
                out.writelines(f"{name}{labels[i]}{text[i]}{stamps[i]}" for i in np.flatnonzero(keep).tolist())
                samples += int(keep.sum())
        out.write("# EOF\n")
    return samples


def size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cards", type=int, default=256)
    parser.add_argument("--seconds", type=int, default=600)
    parser.add_argument("--keep", help="keep the lake, the OpenMetrics file and the blocks here")
    args = parser.parse_args()
    promtool = shutil.which("promtool")
    if promtool is None:
        sys.exit("bench.storage needs promtool (Debian: apt install prometheus)")
    tmp = Path(args.keep or tempfile.mkdtemp(prefix="clusterpulse-bench-storage-"))
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        sc = scenario(args.cards, args.seconds)
        started = time.perf_counter()
        rows = collect(sc, tmp / "lake")
        raw = {kind: size(tmp / "lake" / kind) for kind in KEYS}
        compact(tmp / "lake", older_than_s=-1e12)
        compacted = {kind: size(tmp / "lake" / kind) for kind in KEYS}
        samples = write_openmetrics(rows, tmp / "samples.om")
        print(f"{args.cards} cards, {args.seconds} s: {samples:,} samples ({time.perf_counter() - started:.0f} s)")
        started = time.perf_counter()
        subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", "-q", str(tmp / "samples.om"),
                        str(tmp / "tsdb")], check=True)  # fmt: skip
        tsdb = size(tmp / "tsdb")
        print(f"promtool made its blocks in {time.perf_counter() - started:.0f} s")
        lake_raw, lake_compacted = sum(raw.values()), sum(compacted.values())
        for label, total in (
            ("lake as the worker writes it", lake_raw),
            ("lake after `clusterpulse compact`", lake_compacted),
            ("Prometheus TSDB blocks (chunks + index)", tsdb),
        ):
            print(f"  {label}: {total / 1e6:,.1f} MB, {total / samples:.2f} bytes/sample")
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
