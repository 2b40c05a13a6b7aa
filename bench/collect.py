"""Benchmark: one `clusterpulse collect` scraping the served 10,240-card fleet.

    .venv/bin/python -m bench.collect [--seconds 300] [--warmup 20] [--scenario FILE] [--switch-interval 10]

The embedded broker, `clusterpulse simulate --serve-exporters` (1,280 dcgm-exporter node targets and
the fabric's snmp_exporter switch targets, real time) and one collector at a 1 s interval for the
nodes. After a warm-up, measures over `--seconds`: rounds on time / late / skipped per job, scrape
duration p50 / p99 (the collector's histogram), the collector's CPU per second and peak RSS, rows
(cards, ports) and messages per second, and the delay from a round's tick to its message in Kafka
(the record's producer timestamp minus the batch's time). Prints a Markdown table row per figure.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
from kafka import KafkaConsumer, TopicPartition

from bench.pipeline import proc_stats
from pipeline.model.schemas import decode_batch
from pipeline.model.topics import CARD_TELEMETRY, PORT_TELEMETRY
from pipeline.ops.broker import EmbeddedBroker, create_topics, free_port, stop_process
from pipeline.ops.kafka_config import consumer_config
from pipeline.settings import load_settings
from producers.scenario import default_scenario, load_scenario
from producers.served_fleet import free_port_block

ROOT = Path(__file__).resolve().parents[1]


def scrape_metrics(address: str) -> dict[tuple[str, tuple], float]:
    text = urllib.request.urlopen(f"http://{address}/metrics", timeout=10).read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        m = re.match(r"([a-zA-Z_:][\w:]*)(\{(.*)\})? (\S+)$", line)
        if m:
            labels = tuple(sorted(re.findall(r'(\w+)="([^"]*)"', m.group(3) or "")))
            out[(m.group(1), labels)] = float(m.group(4))
    return out


def total(metrics: dict, name: str, **labels: str) -> float:
    want = set(labels.items())
    return sum(v for (n, lab), v in metrics.items() if n == name and want <= set(lab))


def quantile(before: dict, after: dict, job: str, q: float) -> float:
    """A quantile of the scrape durations between two readings of the histogram (linear in the bucket)."""
    name = "clusterpulse_collect_scrape_duration_seconds_bucket"
    buckets = sorted({float(dict(lab)["le"]) for (n, lab) in after if n == name and dict(lab).get("job") == job})
    counts = [total(after, name, job=job, le=_le(b)) - total(before, name, job=job, le=_le(b)) for b in buckets]
    if not counts or counts[-1] <= 0:
        return float("nan")
    rank, lower, below = q * counts[-1], 0.0, 0.0
    for bound, count in zip(buckets, counts):
        if count >= rank:
            if bound == float("inf"):
                return lower
            return lower + (bound - lower) * (rank - below) / max(count - below, 1e-9)
        lower, below = bound, count
    return buckets[-1]


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound) if bound != int(bound) else f"{bound:.1f}"


def kafka_delays(bootstrap: str, prefix: str, since_ms: int) -> dict[str, np.ndarray]:
    """Per topic: producer timestamp minus batch time (s) of every message stamped after `since_ms`."""
    consumer = KafkaConsumer(**consumer_config(bootstrap, "bench-collect-reader", None))
    out: dict[str, list[float]] = {}
    try:
        for spec in (CARD_TELEMETRY, PORT_TELEMETRY):
            topic = spec.name(prefix)
            tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
            consumer.assign(tps)
            consumer.seek_to_beginning()
            ends = consumer.end_offsets(tps)
            while any(consumer.position(tp) < end for tp, end in ends.items()):
                for records in consumer.poll(timeout_ms=500).values():
                    for r in records:
                        ts = decode_batch(r.value).ts_ms
                        if ts >= since_ms:
                            out.setdefault(spec.suffix, []).append((r.timestamp - ts) / 1000)
    finally:
        consumer.close()
    return {k: np.array(v) for k, v in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=300)
    parser.add_argument("--warmup", type=float, default=20)
    parser.add_argument("--scenario", help="scenario YAML (default: the built-in 10,240-card cluster)")
    parser.add_argument("--switch-interval", type=float, default=10.0)
    parser.add_argument("--shard", help="run one collector per shard: N (default 1, no sharding)", type=int, default=1)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="clusterpulse-bench-collect-") as tmp_dir,
        EmbeddedBroker(log_path=Path(tmp_dir) / "broker.log") as broker,
    ):
        tmp = Path(tmp_dir)
        settings = load_settings({"bootstrap": broker.bootstrap}, environ={})
        if args.scenario:
            settings = settings.for_scenario(load_scenario(args.scenario))
        create_topics(settings)
        (tmp / "settings.yaml").write_text(settings.model_dump_json())
        procs: list[subprocess.Popen] = []
        try:
            scrape = tmp / "scrape.yml"
            topo = (load_scenario(args.scenario) if args.scenario else default_scenario()).topology
            base = free_port_block(topo.nodes + len(topo.switch_names))
            fleet_args = [
                "simulate",
                "--serve-exporters",
                "--port-base",
                str(base),
                "--scrape-config",
                str(scrape),
                "--switch-interval",
                f"{args.switch_interval:g}",
            ]
            if args.scenario:
                fleet_args += ["--scenario", args.scenario]
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "pipeline", *fleet_args],
                    cwd=ROOT,
                    stdout=open(tmp / "fleet.log", "wb"),
                    stderr=subprocess.STDOUT,
                )
            )
            while not scrape.exists():
                time.sleep(0.2)
            time.sleep(2)
            listens = []
            for shard in range(args.shard):
                listen = f"127.0.0.1:{free_port()}"
                listens.append(listen)
                extra = ["--shard", f"{shard}/{args.shard}"] if args.shard > 1 else []
                procs.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            "-m",
                            "pipeline",
                            "--config",
                            str(tmp / "settings.yaml"),
                            "collect",
                            "--config",
                            str(scrape),
                            "--listen",
                            listen,
                            *extra,
                        ],
                        cwd=ROOT,
                        stdout=open(tmp / f"collect-{shard}.log", "wb"),
                        stderr=subprocess.STDOUT,
                    )
                )
            time.sleep(args.warmup)
            collectors = procs[1:]
            since_ms = int(time.time() * 1000)
            before = [scrape_metrics(a) for a in listens]
            cpu0 = [proc_stats(p.pid)[0] for p in collectors]
            fleet_cpu0 = proc_stats(procs[0].pid)[0]
            time.sleep(args.seconds)
            after = [scrape_metrics(a) for a in listens]
            stats = [proc_stats(p.pid) for p in collectors]
            fleet_cpu = proc_stats(procs[0].pid)[0] - fleet_cpu0
            until_ms = int(time.time() * 1000)
        finally:
            for proc in reversed(procs):
                stop_process(proc, timeout_s=10)
        delays = kafka_delays(broker.bootstrap, settings.topic_prefix, since_ms)
    rows = []
    for i, (b, a) in enumerate(zip(before, after)):
        name = f"collector {i}/{args.shard}" if args.shard > 1 else "collector"
        for job in ("gpu", "switch"):
            done = {
                o: total(a, "clusterpulse_collect_rounds_total", job=job, outcome=o)
                - total(b, "clusterpulse_collect_rounds_total", job=job, outcome=o)
                for o in ("on_time", "late", "skipped")
            }
            rounds = sum(done.values())
            targets = total(a, "clusterpulse_collect_targets", job=job)
            fails = total(a, "clusterpulse_collect_scrape_failures_total", job=job) - total(
                b, "clusterpulse_collect_scrape_failures_total", job=job
            )
            rows.append(
                f"| {name} | {job}: {targets:,.0f} targets | rounds {rounds:,.0f}: on time "
                f"{done['on_time'] / max(rounds, 1):.1%}, late {done['late']:,.0f}, skipped "
                f"{done['skipped']:,.0f}; failed scrapes {fails:,.0f} | scrape p50 "
                f"{quantile(b, a, job, 0.5) * 1000:.0f} ms, p99 {quantile(b, a, job, 0.99) * 1000:.0f} ms |"
            )
        seconds = (until_ms - since_ms) / 1000
        rows_s = (
            total(a, "clusterpulse_collect_samples_total") - total(b, "clusterpulse_collect_samples_total")
        ) / seconds
        msgs_s = (
            total(a, "clusterpulse_collect_messages_total") - total(b, "clusterpulse_collect_messages_total")
        ) / seconds
        cpu = (stats[i][0] - cpu0[i]) / seconds
        rows.append(
            f"| {name} | CPU {cpu:.2f} core, peak RSS {stats[i][1]:,.0f} MiB | {rows_s:,.0f} rows/s "
            f"(card and port rows), {msgs_s:,.0f} messages/s | |"
        )
    for topic, d in sorted(delays.items()):
        if len(d):
            rows.append(
                f"| tick to Kafka | {topic}: {len(d):,} messages | p50 {np.percentile(d, 50):.2f} s, "
                f"p99 {np.percentile(d, 99):.2f} s, max {d.max():.2f} s | |"
            )
    rows.append(f"| served fleet (not the collector) | CPU {fleet_cpu / seconds:.2f} core | | |")
    print(
        f"collect benchmark, {time.strftime('%Y-%m-%d')}, {args.seconds:g} s after a {args.warmup:g} s warm-up, "
        f"command: .venv/bin/python -m bench.collect {' '.join(sys.argv[1:])}"
    )
    print("| what | scale | result | scrapes |\n|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
