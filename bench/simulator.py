"""Benchmark: generate the default 10,240-card cluster to a file on one core.

    .venv/bin/python -m bench.simulator [--seconds 120] [--scenario FILE]

Reports simulated seconds per wall second (x real time), messages/s, samples/s, bytes/sample
(encoded message bytes, before Kafka compression) and peak memory. Goal: >= 20x real time.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from pipeline.model.schemas import decode_batch
from producers.output import FileOutput, Pacer, pump, read_message_file
from producers.scenario import load_scenario, parse_scenario
from producers.simulator import Simulator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=120, help="simulated seconds (default 120)")
    parser.add_argument("--scenario", help="scenario file (default: the built-in 10,240-card scenario)")
    args = parser.parse_args()
    scenario = load_scenario(args.scenario) if args.scenario else load_scenario(None)
    scenario = parse_scenario(
        {
            "name": scenario.name,
            "seed": scenario.seed,
            "duration_s": args.seconds,
            "jobs": [j.__dict__ for j in scenario.jobs],
            "noise": scenario.noise.__dict__,
            "cluster": {
                "cards": scenario.shape.cards,
                "cards_per_node": scenario.shape.cards_per_node,
                "nodes_per_leaf": scenario.shape.nodes_per_leaf,
                "spines": scenario.shape.spines,
            },
            "faults": [f.__dict__ | {"duration_s": f.duration_s} for f in scenario.faults if f.start_s < args.seconds],
        }
    )
    topo = scenario.topology
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.bin"
        out = FileOutput(path)
        started = time.perf_counter()
        summary = pump(Simulator(scenario).ticks(), out, Pacer(None), progress_every_s=1e9, stream=sys.stderr)
        out.close()
        elapsed = time.perf_counter() - started
        peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        samples = 0
        for message in read_message_file(path):
            samples += sum(part.rows() for part in decode_batch(message.value).split())
        size = path.stat().st_size
    links = topo.nodes * topo.rails + topo.leaves * topo.spines
    print(
        f"cluster: {topo.cards:,} cards, {topo.nodes:,} nodes, {topo.leaves} leaves, {topo.spines} spines, "
        f"{links:,} links; {args.seconds} simulated s"
    )
    print(f"speed:   {args.seconds / elapsed:.1f}x real time ({elapsed:.1f} s wall)")
    print(f"rate:    {summary['messages'] / elapsed:,.0f} messages/s, {samples / elapsed:,.0f} samples/s")
    print(
        f"size:    {size / samples:.1f} bytes/sample, {size / summary['messages']:,.0f} bytes/message, "
        f"{size / args.seconds / 1e6:.2f} MB per simulated second"
    )
    print(f"memory:  peak RSS {peak_mib:,.0f} MiB")


if __name__ == "__main__":
    main()
