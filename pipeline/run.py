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
from typing import Any

import yaml
from kafka import KafkaConsumer, TopicPartition

from pipeline.broker import EmbeddedBroker, check_reachable, create_topics, stop_process
from pipeline.console import ConsoleAlerts
from pipeline.kafka_config import consumer_config
from pipeline.schemas import Alert
from pipeline.settings import Settings
from pipeline.topics import ALERTS, FINDINGS, NOTIFY_DEAD_LETTERS, TELEMETRY_TOPICS


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


class AlertPrinter(threading.Thread):
    """Reads the alerts and notify dead-letter topics from the beginning; prints each alert state
    change, and each notification a receiver did not take, as it happens."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        stream=sys.stdout,  # noqa: ANN001
        dead_letter_topic: str | None = None,
        verbose: bool = True,
    ) -> None:
        super().__init__(daemon=True, name="alert-printer")
        self.console = ConsoleAlerts(verbose)
        self.bootstrap, self.topic, self.stream = bootstrap, topic, stream
        self.dead_letter_topic = dead_letter_topic
        self.alerts: list[Alert] = []
        self.failed_deliveries = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        consumer = KafkaConsumer(**consumer_config(self.bootstrap, "clusterpulse-run-printer", None))
        topics = [t for t in (self.topic, self.dead_letter_topic) if t]
        try:
            assigned: list[TopicPartition] = []
            while not assigned and not self._stop_event.is_set():
                assigned = [
                    TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())
                ]
                if not assigned:
                    time.sleep(0.2)
            consumer.assign(assigned)
            consumer.seek_to_beginning()
            while not self._stop_event.is_set():
                polled = consumer.poll(timeout_ms=200)
                if not polled:  # quiet: sum up the consequences counted under their roots
                    self._print(self.console.flush())
                for tp, records in polled.items():
                    for record in records:
                        if tp.topic == self.topic:
                            self._alert(record.value)
                        else:
                            self._failed_delivery(record.value)
        finally:
            self._print(self.console.flush())
            consumer.close()

    def _print(self, lines: list[str]) -> None:
        for line in lines:
            print(line, file=self.stream, flush=True)

    def _alert(self, value: bytes) -> None:
        try:
            alert = Alert.from_json(value)
        except (ValueError, TypeError):
            return
        self.alerts.append(alert)
        self._print(self.console.take(alert))

    def _failed_delivery(self, value: bytes) -> None:
        import json

        try:
            entry = json.loads(value)
            alert = entry["alert"]
            what = f"{alert['kind']} {alert['entity']} {alert['status']}"
        except (ValueError, TypeError, KeyError):
            return
        self.failed_deliveries += 1
        print(
            f"NOT DELIVERED to receiver {entry.get('receiver')}: {what} after {entry.get('attempts')} "
            f"attempt(s): {entry.get('error')}",
            file=sys.stderr,
            flush=True,
        )

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


def run_pipeline(
    settings: Settings,
    scenario_path: str | None,
    speed: str,
    duration_s: float | None,
    drain_timeout_s: float = 120.0,
    ui_port: int = 0,
    verbose: bool = False,
) -> RunResult:
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
    printer = ui = None
    result = RunResult()
    try:
        if settings.bootstrap:
            check_reachable(settings.bootstrap)
            bootstrap = settings.bootstrap
        else:
            broker = EmbeddedBroker(log_path=logs / "broker.log", storage=settings.broker_storage).start()
            bootstrap = broker.bootstrap
            print(f"embedded broker (Tansu) on {bootstrap}", file=sys.stderr, flush=True)
        settings = settings.model_copy(update={"bootstrap": bootstrap})
        topics = create_topics(settings)
        print(f"topics: {', '.join(sorted(topics))}", file=sys.stderr, flush=True)
        with tempfile.TemporaryDirectory(prefix="clusterpulse-run-") as tmp:
            config = write_settings_file(settings, Path(tmp))
            worker = spawn(["--config", str(config), "worker"], logs / "worker.log")
            printer = AlertPrinter(
                bootstrap,
                settings.topic(ALERTS),
                dead_letter_topic=settings.topic(NOTIFY_DEAD_LETTERS),
                verbose=verbose,
            )
            printer.start()
            if ui_port:
                ui = start_ui(bootstrap, settings, ui_port)
            sim_args = ["--config", str(config), "simulate", "--speed", speed]
            if scenario_path:
                sim_args += ["--scenario", scenario_path]
            simulator = spawn(sim_args)
            print(
                f"worker pid {worker.pid}, simulator pid {simulator.pid}; logs in {logs}/; "
                "alerts follow (Ctrl-C stops)",
                file=sys.stderr,
                flush=True,
            )
            deadline = time.monotonic() + duration_s if duration_s else None
            while not stop.is_set():
                if deadline and time.monotonic() >= deadline:
                    break
                if worker.poll() is not None:
                    print(
                        f"worker exited with status {worker.returncode}; see {logs}/worker.log",
                        file=sys.stderr,
                        flush=True,
                    )
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
        if ui is not None:
            ui.stop()
        if printer is not None:
            printer.stop()
            result.alerts = printer.alerts
        if broker is not None:
            broker.stop()
        for s, handler in previous.items():
            signal.signal(s, handler)
    return result


def start_ui(bootstrap: str, settings: Settings, port: int) -> Any:
    """The live page on 127.0.0.1:port, its URL printed; None (and why) if the port is taken."""
    from pipeline.ui.server import UiServer

    lake = settings.data_dir if "://" not in settings.data_dir else None
    ui = UiServer(bootstrap, settings.topic(ALERTS), settings.build_topology(), "127.0.0.1", port, lake=lake)
    try:
        ui.start_in_thread()
    except OSError as exc:
        print(
            f"no live page: port {port} is taken ({exc.strerror or exc}); give --ui-port N (0: none)",
            file=sys.stderr,
            flush=True,
        )
        return None
    print(f"live page: {ui.url}", file=sys.stderr, flush=True)
    return ui


def print_summary(settings: Settings, result: RunResult) -> bool:
    """The end-of-run summary: alerts, files, deliveries per receiver, how to query. True if
    notifications were lost (not delivered, even after retries)."""
    from pipeline.notify import ledger

    def plural(n: int, word: str) -> str:
        return f"{n:,} {word}" if n == 1 else f"{n:,} {word}s"

    firing = sum(1 for a in result.alerts if a.status == "firing")
    resolved = len(result.alerts) - firing
    data = settings.data_dir
    files = sorted(Path(data).glob("*/date=*/hour=*/*.parquet")) if "://" not in data else []
    datasets = sorted({f.relative_to(data).parts[0] for f in files})
    say = lambda text: print(text, file=sys.stderr)  # noqa: E731
    say(
        f"\n{plural(firing, 'alert')} fired, {resolved} resolved; {plural(len(files), 'Parquet file')} in {data}/ "
        f"({', '.join(datasets) or 'none'})"
    )
    lost = 0
    if settings.notify.receivers:
        tallies = ledger.tally(ledger.read(data)) if "://" not in data else {}
        for receiver in settings.notify.receivers:
            t = tallies.get(receiver.name, ledger.ReceiverTally())
            lost += t.failed
            say(f"receiver {receiver.name}: {t.delivered} delivered, {t.failed} failed (dead-lettered)")
        if lost:
            say(
                f"clusterpulse: {plural(lost, 'notification')} not delivered; after fixing the receiver, resend "
                f"them with: .venv/bin/clusterpulse alerts replay --data {data} (same receiver settings)"
            )
    say(
        "query them, e.g.:\n"
        f"  .venv/bin/clusterpulse query --data {data} "
        '"SELECT kind, entity, status, starts_at FROM alerts ORDER BY ts"\n'
        f"  .venv/bin/clusterpulse query --data {data} "
        '"SELECT node, card, avg(util), max(temp_c) FROM card GROUP BY ALL ORDER BY 4 DESC LIMIT 10"\n'
        f"  .venv/bin/clusterpulse query --data {data} fault_timeline   (canned analyses in sql/)\n"
        f"  or in DuckDB: SELECT * FROM read_parquet('{data}/card/**/*.parquet', hive_partitioning = true)"
    )
    return lost > 0


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
