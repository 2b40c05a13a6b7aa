"""`clusterpulse run`: broker, topics, worker, simulator and a live alert printer, stopped cleanly."""

from __future__ import annotations

import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.model.schemas import Alert
from pipeline.model.topics import ALERTS, NOTIFY_DEAD_LETTERS, SILENCES
from pipeline.notify.console import AlertPrinter
from pipeline.ops.broker import EmbeddedBroker, check_reachable, create_topics, stop_process
from pipeline.ops.processes import drain, spawn, write_settings_file
from pipeline.settings import Settings


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
    ui = UiServer(
        bootstrap,
        settings.topic(ALERTS),
        settings.build_topology(),
        "127.0.0.1",
        port,
        lake=lake,
        silences_topic=settings.topic(SILENCES),
    )
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
