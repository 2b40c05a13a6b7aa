"""Benchmark: how fast workers drain a scenario, against the raw consume+decode ceiling.

    .venv/bin/python -m bench.pipeline [--seconds 60] [--workers 1] [--scenario FILE] [--partitions 12]

In one run on one embedded broker (Tansu): pre-produce the scenario into Kafka (timed: the
simulator's rate into Kafka), read every telemetry message back with a plain aiokafka consumer and
decode it (the ceiling: msgpack and the column arrays, the worker's first step), then start N
workers in one consumer group and time them until their committed offsets reach the end of every
telemetry topic. Prints x real time, the fraction of the ceiling, worker CPU seconds and peak RSS.
`--profile FILE` runs worker 0 under py-spy (`--gil`: where the GIL is held, which bounds one
worker) and writes collapsed stacks.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from pipeline.model.schemas import decode_batch
from pipeline.model.topics import TELEMETRY_TOPICS
from pipeline.ops.broker import EmbeddedBroker, create_topics, stop_process
from pipeline.ops.processes import child_env, consumer_lag
from pipeline.settings import load_settings
from producers.scenario import Scenario, load_scenario

ROOT = Path(__file__).resolve().parent.parent


def truncated(scenario_path: str | None, seconds: float, out: Path) -> Scenario:
    """The scenario cut to `seconds`, written to `out` (faults after the cut dropped)."""
    import copy

    from producers.scenario import DEFAULT_SCENARIO  # noqa: PLC0415

    source = yaml.safe_load(Path(scenario_path).read_text()) if scenario_path else copy.deepcopy(DEFAULT_SCENARIO)
    scenario = load_scenario(scenario_path)
    source["duration_s"] = min(seconds, scenario.duration_s)
    source["faults"] = [f for f in source.get("faults", []) if f.get("start_s", 0) < source["duration_s"]]
    out.write_text(yaml.safe_dump(source))
    return load_scenario(out)


def proc_stats(pid: int) -> tuple[float, float]:
    """(CPU seconds, peak RSS MiB) of a running process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    peak = (
        next(
            int(line.split()[1])
            for line in Path(f"/proc/{pid}/status").read_text().splitlines()
            if line.startswith("VmHWM")
        )
        / 1024
    )
    return cpu, peak


async def ceiling(bootstrap: str, topics: list[str], expected: int) -> tuple[float, int, int]:
    """Seconds to consume and decode `expected` messages; (seconds, messages, samples)."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
        max_partition_fetch_bytes=8 << 20,
        fetch_max_bytes=64 << 20,
    )
    await consumer.start()
    started = time.perf_counter()
    messages = samples = 0
    try:
        while messages < expected:
            for records in (await consumer.getmany(timeout_ms=1000, max_records=20_000)).values():
                for record in records:
                    samples += decode_batch(record.value).rows()
                messages += len(records)
    finally:
        elapsed = time.perf_counter() - started
        await consumer.stop()
    return elapsed, messages, samples


def py_spy() -> str:
    """py-spy beside this Python (pip install py-spy into .venv) or on PATH."""
    import shutil

    found = shutil.which("py-spy", path=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")
    if found is None:
        sys.exit("--profile needs py-spy: .venv/bin/pip install py-spy")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60, help="simulated seconds (default 60)")
    parser.add_argument("--scenario", help="scenario file (default: the built-in 10,240-card scenario)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--partitions", type=int, default=12)
    parser.add_argument("--timeout", type=float, default=1800, help="give up draining after this many s")
    parser.add_argument("--profile", help="run worker 0 under py-spy (if installed), collapsed stacks to this file")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="clusterpulse-bench-") as tmp_dir:
        tmp = Path(tmp_dir)
        scenario = truncated(args.scenario, args.seconds, tmp / "scenario.yaml")
        shape = scenario.shape
        with EmbeddedBroker(log_path=tmp / "broker.log") as broker:
            settings = load_settings(
                {
                    "bootstrap": broker.bootstrap,
                    "partitions": args.partitions,
                    "group_id": "bench-workers",
                    "data_dir": str(tmp / "lake"),
                    "log_level": "warning",
                    "cluster": {
                        "cards": shape.cards,
                        "cards_per_node": shape.cards_per_node,
                        "nodes_per_leaf": shape.nodes_per_leaf,
                        "spines": shape.spines,
                    },
                },
                environ={},
            )
            create_topics(settings)
            config = tmp / "settings.yaml"
            config.write_text(yaml.safe_dump(settings.model_dump(mode="json")))
            topics = [settings.topic(t) for t in TELEMETRY_TOPICS]

            started = time.perf_counter()
            sim = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pipeline",
                    "--config",
                    str(config),
                    "simulate",
                    "--scenario",
                    str(tmp / "scenario.yaml"),
                    "--speed",
                    "max",
                ],
                env=child_env(),
                capture_output=True,
                text=True,
                cwd=ROOT,
            )
            produce_s = time.perf_counter() - started
            if sim.returncode != 0:
                sys.exit(f"simulator failed: {sim.stderr[-2000:]}")
            from kafka import KafkaConsumer, TopicPartition  # noqa: PLC0415

            from pipeline.ops.kafka_config import consumer_config  # noqa: PLC0415

            probe = KafkaConsumer(**consumer_config(broker.bootstrap, "bench-probe", None))
            parts = [TopicPartition(t, p) for t in topics for p in probe.partitions_for_topic(t) or ()]
            total = sum(probe.end_offsets(parts).values())
            probe.close()

            ceiling_s, _, samples = asyncio.run(ceiling(broker.bootstrap, topics, total))

            logs = [open(tmp / f"worker-{i}.log", "wb") for i in range(args.workers)]
            started = time.perf_counter()
            command = [sys.executable, "-m", "pipeline", "--config", str(config), "worker"]
            profiled = (
                [py_spy(), "record", "--gil", "--format", "raw", "-r", "100", "-o", str(args.profile), "--", *command]
                if args.profile
                else command
            )
            workers = [
                subprocess.Popen(
                    profiled if args.profile and i == 0 else command,
                    env=child_env(),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=ROOT,
                    start_new_session=True,
                )
                for i, log in enumerate(logs)
            ]
            stats = [(0.0, 0.0)] * len(workers)
            try:
                while True:
                    stats = [proc_stats(w.pid) if w.poll() is None else s for w, s in zip(workers, stats)]
                    if any(w.poll() is not None for w in workers):
                        keep = Path(tempfile.mkdtemp(prefix="clusterpulse-bench-logs-"))
                        for i in range(len(workers)):
                            (keep / f"worker-{i}.log").write_bytes((tmp / f"worker-{i}.log").read_bytes())
                        sys.exit(f"a worker exited; its logs are in {keep}/")
                    if consumer_lag(broker.bootstrap, settings.group_id, topics) == 0:
                        break
                    if time.perf_counter() - started > args.timeout:
                        sys.exit("drain timed out")
                    time.sleep(0.5)
                drain_s = time.perf_counter() - started
                stats = [proc_stats(w.pid) for w in workers]
            finally:
                for w in workers:
                    stop_process(w, 20, sig=2 if args.profile else 15)
    seconds = scenario.duration_s
    print(
        f"scenario: {shape.cards:,} cards, {seconds:g} simulated s, {total:,} telemetry messages, "
        f"{samples:,} samples; {args.partitions} partitions"
    )
    print(f"simulator into Kafka: {produce_s:.1f} s = {seconds / produce_s:.1f}x real time")
    print(f"ceiling (aiokafka consume + decode, one process): {ceiling_s:.1f} s = {seconds / ceiling_s:.1f}x real time")
    print(
        f"{args.workers} worker(s) drain to committed end: {drain_s:.1f} s = {seconds / drain_s:.2f}x real time, "
        f"{ceiling_s / drain_s:.2f} of the ceiling (start-up and group join included)"
    )
    for i, (cpu, peak) in enumerate(stats):
        print(
            f"  worker {i}: {cpu:.1f} CPU s ({cpu / seconds * 100:.0f} % of one core per simulated s), "
            f"peak RSS {peak:,.0f} MiB"
        )


if __name__ == "__main__":
    main()
