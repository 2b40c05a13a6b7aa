"""Verbs that run the pipeline: run, broker, worker, topics."""

from __future__ import annotations

import argparse
import signal
import time
from pathlib import Path
from typing import Any

from pipeline.cli.common import (
    EXIT_USAGE,
    UsageError,
    need_bootstrap,
    new_verb,
    parse_speed_arg,
    plural,
    positive_float,
    say,
)
from pipeline.ops.broker import EmbeddedBroker, check_reachable, create_topics
from pipeline.settings import Settings

NETWORK = ("bootstrap", "partitions", "topic_prefix")


def add_parsers(sub: Any) -> None:
    p = new_verb(
        sub,
        "run",
        "the embedded default: broker, simulator, worker, live alerts, Parquet",
        "clusterpulse run --scenario scenarios/card-failure-small.yaml --speed max\n"
        "clusterpulse run --duration 60          # the built-in 10,240-card cluster for a minute",
        settings=("bootstrap", "data_dir", "partitions", "topic_prefix", "group_id", "broker_storage"),
    )
    p.add_argument("--scenario", help="scenario YAML (default: built-in 10,240-card cluster with a few faults)")
    p.add_argument(
        "--speed", default="1", type=parse_speed_arg, help="event-time speed: 1 = real time, N, or max (default 1)"
    )
    p.add_argument("--duration", type=positive_float, help="stop after this many wall-clock seconds")
    p.add_argument(
        "--append",
        action="store_true",
        help="with --bootstrap: write into a data directory that holds another cluster's lake",
    )
    p.add_argument("--ui-port", type=int, default=8088, help="serve the live page on this port (default 8088; 0: none)")
    p.add_argument(
        "--verbose",
        action="store_true",
        help="print every grouped consequence under its root cause (default: a count per root)",
    )
    p.set_defaults(handler=cmd_run)

    p = new_verb(
        sub,
        "ui",
        "the live page: every card by leaf and rail, the fabric, active and resolved alerts",
        "clusterpulse ui --bootstrap 127.0.0.1:9092 --ui-port 8088\n"
        "clusterpulse ui --bootstrap kafka:9092 --topology topology.yaml --host 0.0.0.0",
        settings=("bootstrap", "topic_prefix", "topology", "data_dir"),
    )
    p.add_argument("--ui-port", type=int, default=8088, help="listen port (default 8088)")
    p.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1; 0.0.0.0 for other machines)")
    p.set_defaults(handler=cmd_ui)

    p = new_verb(
        sub,
        "broker",
        "run the embedded Kafka-compatible broker (Tansu, memory only) alone",
        "clusterpulse broker --port 9092\n"
        "AWS_ENDPOINT=http://minio:9000 AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... "
        "AWS_DEFAULT_REGION=us-east-1 AWS_ALLOW_HTTP=true \\\n"
        "  clusterpulse broker --port 9092 --storage s3://tansu/     # kept across restarts",
        settings=("partitions", "topic_prefix", "broker_storage"),
    )
    p.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=9092, help="listen port (default 9092)")
    p.add_argument("--no-topics", action="store_true", help="do not create the pipeline topics")
    p.set_defaults(handler=cmd_broker)

    p = new_verb(
        sub,
        "worker",
        "run a Faust worker (detectors, alerts, Parquet, notifications) against a broker",
        "clusterpulse worker --bootstrap 127.0.0.1:9092 --data ./lake --log-level info\n"
        "clusterpulse worker --bootstrap kafka:9092 --topology topology.yaml   # a real fabric",
        settings=("bootstrap", "data_dir", "partitions", "topic_prefix", "group_id", "topology"),
    )
    p.add_argument(
        "--append", action="store_true", help="write into a data directory that holds another cluster's lake"
    )
    p.add_argument("--health-port", type=int, help="serve GET /healthz on this port (setting health_port; 0 = off)")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="actions (Slurm drain) are logged and recorded as they would run, and not run (setting actions_dry_run)",
    )
    p.set_defaults(handler=cmd_worker)

    p = new_verb(
        sub,
        "topics",
        "create the pipeline topics (idempotent)",
        "clusterpulse topics --bootstrap 127.0.0.1:9092 --partitions 24",
        settings=NETWORK,
    )
    p.set_defaults(handler=cmd_topics)


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.cli.run import print_summary, run_pipeline
    from pipeline.lake.dirs import new_run_dir
    from producers.scenario import ScenarioError, load_scenario

    try:
        scenario = load_scenario(args.scenario)
    except ScenarioError as exc:
        raise UsageError(f"invalid scenario: {exc}") from None
    s = scenario.shape
    settings = settings.for_scenario(scenario)
    if args.append:
        settings = settings.model_copy(update={"sink": settings.sink.model_copy(update={"append": True})})
    _check_receivers(settings)
    if not settings.bootstrap:
        _check_storage(settings)
    if not settings.bootstrap and "://" not in settings.data_dir:
        # a memory broker starts its topics at offset 0 each time: each run gets its own lake
        lake = new_run_dir(settings.data_dir, scenario.name)
        settings = settings.model_copy(update={"data_dir": str(lake)})
        say(f"this run's lake: {lake}/ (earlier runs in {Path(lake).parent}/ are kept)")
    say(
        f"scenario {scenario.name!r}: {s.cards:,} cards, {scenario.duration_s:g} s, "
        f"{plural(len(scenario.faults), 'fault')}, speed {args.speed}"
    )
    result = run_pipeline(
        settings, args.scenario, args.speed, args.duration, ui_port=args.ui_port, verbose=args.verbose
    )
    lost = print_summary(settings, result)
    if result.simulator_status not in (0, None, -signal.SIGTERM):
        say(f"clusterpulse: the simulator failed (status {result.simulator_status})")
        return 1
    if result.worker_status not in (0, None, -signal.SIGTERM):
        return 1
    return 1 if lost else 0


def cmd_ui(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.lake.dirs import resolve_lake
    from pipeline.model.topics import ALERTS, SILENCES
    from pipeline.ops.broker import check_reachable
    from pipeline.ui.server import UiServer

    if not settings.bootstrap:
        raise UsageError(
            "ui reads the alerts topic of a running pipeline: give --bootstrap HOST:PORT "
            "(`clusterpulse run` serves the page itself)"
        )
    check_reachable(settings.bootstrap)
    lake = str(resolve_lake(settings.data_dir).path)  # the newest run of a local data directory
    ui = UiServer(
        settings.bootstrap,
        settings.topic(ALERTS),
        settings.build_topology(),
        args.host,
        args.ui_port,
        lake=lake,
        silences_topic=settings.topic(SILENCES),
    )
    say(f"live page: {ui.url} (Ctrl-C stops)")
    try:
        ui.serve_forever()
    except OSError as exc:
        raise UsageError(f"cannot listen on {args.host}:{args.ui_port}: {exc.strerror or exc}") from None
    return 0


def _check_receivers(settings: Settings) -> None:
    """Receivers are checked at start-up: a secret that cannot be read fails now, not at every delivery."""
    from pipeline.settings import SettingsError

    for receiver in settings.notify.receivers:
        try:
            receiver.check()
        except SettingsError as exc:
            raise UsageError(str(exc)) from None


def _check_storage(settings: Settings) -> None:
    """The embedded broker's storage exists and has its settings: a one-line usage error otherwise."""
    from pipeline.ops.broker import BrokerError, check_storage

    try:
        check_storage(settings.broker_storage)
    except BrokerError as exc:
        raise UsageError(str(exc)) from None


def cmd_broker(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.ops.broker import create_topics as make_topics

    _check_storage(settings)
    broker = EmbeddedBroker(host=args.host, port=args.port, storage=settings.broker_storage).start()
    stop = {"now": False}

    def on_signal(signum: int, frame: object) -> None:
        stop["now"] = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        if not args.no_topics:
            make_topics(settings, broker.bootstrap)
        kept = (
            f"storage {broker.storage}: kept across restarts"
            if broker.durable
            else "memory only: a restart loses every message"
        )
        print(
            f"embedded broker (Tansu, {kept}) listening on "
            f"{broker.bootstrap}; use --bootstrap {broker.bootstrap}. Ctrl-C stops it.",
            flush=True,
        )
        while not stop["now"] and broker.process and broker.process.poll() is None:
            time.sleep(0.2)
        if not stop["now"] and broker.process is not None:
            lost = (
                "its messages are in the storage; start it again"
                if broker.durable
                else "with memory storage every message is lost"
            )
            say(f"clusterpulse: the broker process exited with status {broker.process.returncode} ({lost})")
            return 1
    finally:
        broker.stop()
    return 0


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.lake.dirs import LakeError, claim_lake, lake_identity
    from pipeline.stream.app import run_worker

    bootstrap = need_bootstrap(settings, "the worker")
    if args.health_port is not None:
        settings = settings.model_copy(update={"health_port": args.health_port})
    if args.dry_run:
        settings = settings.model_copy(update={"actions_dry_run": True})
    if args.append:
        settings = settings.model_copy(update={"sink": settings.sink.model_copy(update={"append": True})})
    _check_receivers(settings)
    from pipeline.settings import SettingsError

    try:
        topology = settings.build_topology()  # a fabric that cannot be read stops the worker here, in one line
    except SettingsError as exc:
        raise UsageError(str(exc)) from None
    fabric = f"{Path(settings.topology).name} {topology.shape[1]}" if settings.topology else None
    identity = lake_identity(settings.cluster.model_dump(), settings.topic_prefix, fabric)
    try:
        note = claim_lake(settings.data_dir, identity, settings.sink.append, record=False)
    except LakeError as exc:
        raise UsageError(str(exc)) from None
    check_reachable(bootstrap)
    create_topics(settings)
    claim_lake(settings.data_dir, identity, settings.sink.append)  # recorded once the broker answers
    if note:
        say(f"clusterpulse: {note}")
    run_worker(settings)
    return 0


def cmd_topics(args: argparse.Namespace, settings: Settings) -> int:
    check_reachable(need_bootstrap(settings, "topics"))
    for name, partitions in sorted(create_topics(settings).items()):
        print(f"{name}\t{partitions} partitions")
    return 0


__all__ = ["add_parsers", "EXIT_USAGE"]
