"""`clusterpulse run`: broker, topics, worker, simulator and a live alert printer, stopped cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from kafka import KafkaConsumer, TopicPartition

from pipeline.broker import EmbeddedBroker, check_reachable, create_topics, stop_process
from pipeline.kafka_config import consumer_config
from pipeline.schemas import Alert
from pipeline.settings import Settings
from pipeline.topics import ALERTS, FINDINGS, TELEMETRY_TOPICS


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
    return subprocess.Popen([sys.executable, "-m", "pipeline", *args], env=child_env(),
                            stdout=out, stderr=subprocess.STDOUT if out else None, start_new_session=True)


class AlertPrinter(threading.Thread):
    """Reads the alerts topic from the beginning and prints each state change."""

    def __init__(self, bootstrap: str, topic: str, stream=sys.stdout) -> None:  # noqa: ANN001
        super().__init__(daemon=True, name="alert-printer")
        self.bootstrap, self.topic, self.stream = bootstrap, topic, stream
        self.alerts: list[Alert] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        consumer = KafkaConsumer(**consumer_config(self.bootstrap, "clusterpulse-run-printer", None))
        try:
            parts: set[int] | None = None
            while not parts and not self._stop_event.is_set():
                parts = consumer.partitions_for_topic(self.topic)
                if not parts:
                    time.sleep(0.2)
            consumer.assign([TopicPartition(self.topic, p) for p in sorted(parts or ())])
            consumer.seek_to_beginning()
            while not self._stop_event.is_set():
                for records in consumer.poll(timeout_ms=200).values():
                    for record in records:
                        try:
                            alert = Alert.from_json(record.value)
                        except (ValueError, TypeError):
                            continue
                        self.alerts.append(alert)
                        print(alert.line(), file=self.stream, flush=True)
        finally:
            consumer.close()

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=5)


def consumer_lag(bootstrap: str, group_id: str, topics: list[str]) -> int:
    """Messages in `topics` that the group has not committed yet."""
    consumer = KafkaConsumer(**consumer_config(bootstrap, "clusterpulse-lag", group_id))
    try:
        parts = [TopicPartition(t, p) for t in topics for p in (consumer.partitions_for_topic(t) or ())]
        ends = consumer.end_offsets(parts)
        return sum(max(end - (consumer.committed(tp) or 0), 0) for tp, end in ends.items())
    finally:
        consumer.close(autocommit=False)


@dataclass
class RunResult:
    alerts: list[Alert] = field(default_factory=list)
    simulator_status: int | None = None
    worker_status: int | None = None
    drained: bool = False


def run_pipeline(settings: Settings, scenario_path: str | None, speed: str, duration_s: float | None,
                 drain_timeout_s: float = 120.0) -> RunResult:
    """Run everything until the scenario ends (speed max), --duration passes, or a signal."""
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        print(f"\nstopping ({signal.Signals(signum).name})...", file=sys.stderr, flush=True)
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    data = Path(settings.data_dir) if "://" not in settings.data_dir else Path(tempfile.mkdtemp(prefix="clusterpulse-"))
    data.mkdir(parents=True, exist_ok=True)
    logs = data / "_logs"
    logs.mkdir(exist_ok=True)
    broker = None
    worker = simulator = None
    printer = None
    result = RunResult()
    try:
        if settings.bootstrap:
            check_reachable(settings.bootstrap)
            bootstrap = settings.bootstrap
        else:
            broker = EmbeddedBroker(log_path=logs / "broker.log").start()
            bootstrap = broker.bootstrap
            print(f"embedded broker (Tansu) on {bootstrap}", file=sys.stderr, flush=True)
        settings = settings.model_copy(update={"bootstrap": bootstrap})
        topics = create_topics(settings)
        print(f"topics: {', '.join(sorted(topics))}", file=sys.stderr, flush=True)
        with tempfile.TemporaryDirectory(prefix="clusterpulse-run-") as tmp:
            config = write_settings_file(settings, Path(tmp))
            worker = spawn(["--config", str(config), "worker"], logs / "worker.log")
            printer = AlertPrinter(bootstrap, settings.topic(ALERTS))
            printer.start()
            sim_args = ["--config", str(config), "simulate", "--speed", speed]
            if scenario_path:
                sim_args += ["--scenario", scenario_path]
            simulator = spawn(sim_args)
            print(f"worker pid {worker.pid}, simulator pid {simulator.pid}; logs in {logs}/; "
                  "alerts follow (Ctrl-C stops)", file=sys.stderr, flush=True)
            deadline = time.monotonic() + duration_s if duration_s else None
            while not stop.is_set():
                if deadline and time.monotonic() >= deadline:
                    break
                if worker.poll() is not None:
                    print(f"worker exited with status {worker.returncode}; see {logs}/worker.log",
                          file=sys.stderr, flush=True)
                    break
                if simulator.poll() is not None:
                    result.simulator_status = simulator.returncode
                    if simulator.returncode == 0:
                        result.drained = drain(bootstrap, settings, stop, drain_timeout_s, worker)
                    break
                time.sleep(0.2)
            result.simulator_status = stop_process(simulator, 10)
            result.worker_status = stop_process(worker, settings.shutdown_timeout_s + 5)
            time.sleep(0.5)  # let the printer see the last alerts
    finally:
        for proc in (simulator, worker):
            if proc is not None:
                stop_process(proc, 5)
        if printer is not None:
            printer.stop()
            result.alerts = printer.alerts
        if broker is not None:
            broker.stop()
        for s, handler in previous.items():
            signal.signal(s, handler)
    return result


def drain(bootstrap: str, settings: Settings, stop: threading.Event, timeout_s: float,
          worker: subprocess.Popen) -> bool:
    """Wait until the worker has committed every telemetry message (its rows are on disk) and
    every finding, then for the correlator to release the symptoms it holds."""
    topics = [settings.topic(t) for t in TELEMETRY_TOPICS] + [settings.topic(FINDINGS)]
    deadline = time.monotonic() + timeout_s
    print("scenario finished; draining the worker...", file=sys.stderr, flush=True)
    while time.monotonic() < deadline and not stop.is_set():
        if worker.poll() is not None:
            print(f"worker exited with status {worker.returncode} before draining",
                  file=sys.stderr, flush=True)
            return False
        lag = consumer_lag(bootstrap, settings.group_id, topics)
        if lag == 0:
            stop.wait(4.0)  # the correlator releases held symptoms ~2 s after the input stops
            return True
        time.sleep(1.0)
    print("drain timed out; stopping anyway (the worker flushes what it has)", file=sys.stderr, flush=True)
    return False
