"""Child processes of the embedded stack: a settings file for them, their environment, spawning
them, and waiting until a worker has consumed everything (consumer lag)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml
from kafka import KafkaConsumer, TopicPartition

from pipeline.model.topics import ALERTS, FINDINGS, TELEMETRY_TOPICS
from pipeline.ops.kafka_config import consumer_config
from pipeline.settings import Settings


def write_settings_file(settings: Settings, folder: Path) -> Path:
    """The settings as a YAML config file for a child process."""
    path = folder / "settings.yaml"
    path.write_text(yaml.safe_dump(settings.model_dump(mode="json")))
    return path


def child_env() -> dict[str, str]:
    """The environment for children: ours without CLUSTERPULSE_* (they get a config file)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLUSTERPULSE_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def spawn(args: list[str], log_path: Path | None = None) -> subprocess.Popen:
    out = open(log_path, "ab") if log_path else None
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline", *args],
        env=child_env(),
        stdout=out,
        stderr=subprocess.STDOUT if out else None,
        start_new_session=True,
    )


def consumer_lag(bootstrap: str, group_id: str, topics: list[str]) -> int:
    """Messages in `topics` that the group has not committed yet."""
    consumer = KafkaConsumer(**consumer_config(bootstrap, "clusterpulse-lag", group_id))
    try:
        parts = [TopicPartition(t, p) for t in topics for p in (consumer.partitions_for_topic(t) or ())]
        ends = consumer.end_offsets(parts)
        return sum(max(end - (consumer.committed(tp) or 0), 0) for tp, end in ends.items())
    finally:
        consumer.close(autocommit=False)


def drain(
    bootstrap: str, settings: Settings, stop: threading.Event, timeout_s: float, worker: subprocess.Popen
) -> bool:
    """Wait until the worker has committed every telemetry message (its rows are on disk) and
    every finding, then for the correlator to release the symptoms it holds."""
    topics = [settings.topic(t) for t in TELEMETRY_TOPICS] + [settings.topic(FINDINGS)]
    deadline = time.monotonic() + timeout_s
    print("scenario finished; draining the worker...", file=sys.stderr, flush=True)
    while time.monotonic() < deadline and not stop.is_set():
        if worker.poll() is not None:
            print(f"worker exited with status {worker.returncode} before draining", file=sys.stderr, flush=True)
            return False
        lag = consumer_lag(bootstrap, settings.group_id, topics)
        if lag == 0:
            stop.wait(4.0)  # the correlator releases held symptoms ~2 s after the input stops
            # then the alerts: in the lake, and every notification delivered or dead-lettered
            while time.monotonic() < deadline and not stop.is_set() and worker.poll() is None:
                if consumer_lag(bootstrap, settings.group_id, [settings.topic(ALERTS)]) == 0:
                    return True
                time.sleep(1.0)
            break
        time.sleep(1.0)
    print("drain timed out; stopping anyway (the worker flushes what it has)", file=sys.stderr, flush=True)
    return False
