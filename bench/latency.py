"""Benchmark: wall-clock alert latency at real-time pace, to the alerts topic and to a webhook.

    .venv/bin/python -m bench.latency [--seconds 100] [--runs 1] [--fabric-window 2|off] [--silent-share 0]

On the embedded broker, one worker (with a webhook receiver in this process) and the simulator at
`--speed 1` on the default 10,240-card cluster with five hard failures: a card (silent in the
realistic profile: it falls off the bus, found by its silence rule; with `--silent-share 0` it
sends a fatal Xid first), a host link down, a leaf switch, a node, a spine switch. `--runs N`
repeats the run on a fresh broker and worker and gives the p95 over the runs. Latency is measured
from the moment the tick that carries the fault's first faulty sample (or, for a silent switch, the
first tick without it) was produced (its Kafka timestamp) to the alert's firing record on the alerts
topic (its Kafka timestamp) and to the webhook's arrival, grouping holds included.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import yaml
from kafka import KafkaConsumer, TopicPartition

from pipeline.model.schemas import Alert, InvalidRecord, decode_batch
from pipeline.model.topics import ALERTS, TELEMETRY_TOPICS
from pipeline.notify.receiver import WebhookReceiver
from pipeline.ops.broker import EmbeddedBroker, create_topics, free_port, stop_process
from pipeline.ops.kafka_config import consumer_config
from pipeline.ops.processes import child_env
from pipeline.settings import Settings, load_settings
from producers.scenario import DEFAULT_SCENARIO, Scenario, load_scenario

ROOT = Path(__file__).resolve().parent.parent
EXPECTED = {
    "card_failure": "card_failed",
    "link_down": "link_down",
    "switch_failure": "switch_down",
    "node_failure": "node_down",
}


class TimedReceiver(WebhookReceiver):
    """The reference receiver, noting when (wall clock, s) and on which path each POST arrived."""

    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        super().__init__(*args, **kwargs)
        self.arrivals: list[tuple[float, str, object]] = []

    def record(self, path, body, headers=None):  # noqa: ANN001, ANN201
        with self.lock:
            self.arrivals.append((time.time(), path, body))
        super().record(path, body, headers)


def read_all(bootstrap: str, topics: list[str]) -> list:
    consumer = KafkaConsumer(**consumer_config(bootstrap, "bench-latency-reader", None))
    try:
        tps = [TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t) or ()]
        consumer.assign(tps)
        consumer.seek_to_beginning()
        ends = consumer.end_offsets(tps)
        records = []
        while any(consumer.position(tp) < end for tp, end in ends.items()):
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()


def start_worker(config: Path, health_port: int, log: Path) -> subprocess.Popen:
    """A worker on `config`, returned once it holds its partitions (exits with its log if it never does)."""
    worker = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "--config", str(config), "worker"],
        env=child_env(),
        stdout=open(log, "wb"),
        stderr=subprocess.STDOUT,
        cwd=ROOT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{health_port}/healthz", timeout=2) as resp:
                if json.loads(resp.read()).get("ready"):
                    return worker
        except OSError:
            pass
        if time.monotonic() > deadline or worker.poll() is not None:
            stop_process(worker, 20)
            sys.exit(f"the worker did not get ready: {log.read_text()[-2000:]}")
        time.sleep(0.5)


def start_pipeline(
    broker: EmbeddedBroker,
    tmp: Path,
    group_id: str,
    hook_url: str,
    scenario: Scenario,
    topic_prefix: str = "clusterpulse",
    fabric_window_s: float | None = 2.0,
) -> tuple[Settings, Path, subprocess.Popen]:
    """Topics on `broker` and one ready worker for the scenario's cluster paging `hook_url`, its lake
    and logs under `tmp`: (settings, the settings file, the worker)."""
    health = free_port()
    settings = load_settings(
        {
            "bootstrap": broker.bootstrap,
            "group_id": group_id,
            "data_dir": str(tmp / "lake"),
            "health_port": health,
            "topic_prefix": topic_prefix,
            "notify": {"receivers": [{"name": "bench", "url": hook_url}]},
            "detect": {"correlate": {"fabric_window_s": fabric_window_s}},
        },
        environ={},
    ).for_scenario(scenario)
    create_topics(settings)
    config = tmp / "settings.yaml"
    config.write_text(yaml.safe_dump(settings.model_dump(mode="json")))
    return settings, config, start_worker(config, health, tmp / "worker.log")


def run_once(data: dict, fabric_window: str) -> tuple[Scenario, dict[str, tuple[float | None, float | None]], int]:
    """One run at real-time pace: per fault, seconds to the alerts topic and to the webhook (None:
    never), and how many firing notifications the webhook got."""
    with tempfile.TemporaryDirectory(prefix="clusterpulse-latency-") as tmp_dir:
        tmp = Path(tmp_dir)
        (tmp / "scenario.yaml").write_text(yaml.safe_dump(data))
        scenario = load_scenario(tmp / "scenario.yaml")
        receiver = TimedReceiver("127.0.0.1", free_port(), echo=None)
        threading.Thread(target=receiver.serve_forever, daemon=True).start()
        with EmbeddedBroker(log_path=tmp / "broker.log") as broker:
            settings, config, worker = start_pipeline(
                broker,
                tmp,
                "bench-latency",
                receiver.url + "hook",
                scenario,
                fabric_window_s=None if fabric_window == "off" else float(fabric_window),
            )
            try:
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
                        "1",
                    ],
                    env=child_env(),
                    cwd=ROOT,
                    capture_output=True,
                    text=True,
                )
                if sim.returncode != 0:
                    sys.exit(f"simulator failed: {sim.stderr[-2000:]}")
                time.sleep(15)  # the last grouping holds and deliveries
                produced: dict[int, int] = {}
                for record in read_all(broker.bootstrap, [settings.topic(t) for t in TELEMETRY_TOPICS]):
                    try:
                        ts = decode_batch(record.value).ts_ms
                    except InvalidRecord:
                        continue
                    produced[ts] = min(produced.get(ts, record.timestamp), record.timestamp)
                firing = {}
                for record in read_all(broker.bootstrap, [settings.topic(ALERTS)]):
                    alert = Alert.from_json(record.value)
                    if alert.status == "firing":
                        firing.setdefault((alert.kind, alert.entity), record.timestamp)
                hooks: dict[tuple, float] = {}
                pages = 0
                for at, _, body in receiver.arrivals:
                    if isinstance(body, dict) and body.get("status") == "firing":
                        pages += 1
                        hooks.setdefault((body.get("kind"), body.get("entity")), at * 1000)
            finally:
                stop_process(worker, 20)
                receiver.shutdown()
    result: dict[str, tuple[float | None, float | None]] = {}
    for fault in scenario.faults:
        start = produced.get(scenario.start_ms + int(fault.start_s * 1000))
        key = (EXPECTED[fault.kind], fault.target)
        result[f"{fault.kind} {fault.target}"] = (
            (firing[key] - start) / 1000 if key in firing and start else None,
            (hooks[key] - start) / 1000 if key in hooks and start else None,
        )
    return scenario, result, pages


def p95(values: list[float | None]) -> str:
    """The nearest-rank 95th percentile (with few runs: the slowest); `none` if any run missed."""
    if not values or any(v is None for v in values):
        return "none"
    ranked = sorted(v for v in values if v is not None)
    return f"{ranked[max(0, math.ceil(0.95 * len(ranked)) - 1)]:.2f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=100)
    parser.add_argument("--runs", type=int, default=1, help="runs, each on a fresh broker and worker (p95 over them)")
    parser.add_argument(
        "--fabric-window",
        default="2",
        help="detect.correlate.fabric_window_s (first-tick root cause; default 2, `off` for none)",
    )
    parser.add_argument(
        "--silent-share",
        type=float,
        help="noise.silent_failure_share: card failures that send no fatal Xid (the realistic profile's 0.75; "
        "0: the card failure sends one and is found in its first tick)",
    )
    args = parser.parse_args()
    data = copy.deepcopy(DEFAULT_SCENARIO)
    if args.silent_share is not None:
        data["noise"] = {**data["noise"], "silent_failure_share": args.silent_share}
    data.update(
        name="latency",
        duration_s=args.seconds,
        faults=[
            {"kind": "card_failure", "target": "node1100-card6", "start_s": 20},
            {"kind": "link_down", "target": "node0100-nic2~leaf083", "start_s": 35},
            {"kind": "switch_failure", "target": "leaf017", "start_s": 50, "duration_s": 15},
            {"kind": "node_failure", "target": "node0500", "start_s": 65, "duration_s": 15},
            {"kind": "switch_failure", "target": "spine005", "start_s": 80, "duration_s": 15},
        ],
    )
    runs = []
    for n in range(args.runs):
        scenario, result, pages = run_once(data, args.fabric_window)
        runs.append(result)
        print(f"run {n + 1}: {pages} pages for {len(result)} faults", flush=True)
    cards = scenario.shape.cards
    print(f"{cards:,} cards at real-time pace, one worker, {args.runs} run(s); from the faulty tick's production")
    print("| fault | to the alerts topic | to the webhook (each run) | webhook p95 |")
    print("|---|---|---|---|")
    for fault in runs[0]:
        topic = [run[fault][0] for run in runs]
        hook = [run[fault][1] for run in runs]
        each = ", ".join("none" if v is None else f"{v:.2f}" for v in hook)
        print(f"| {fault} | {p95(topic)} | {each} | {p95(hook)} |")


if __name__ == "__main__":
    main()
