"""Command line: `clusterpulse <command>` (also `python -m pipeline <command>`)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from pipeline.broker import BrokerError, EmbeddedBroker, create_topics
from pipeline.settings import Settings, SettingsError, load_settings

EXIT_USAGE = 2


def _common(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("settings (flags > CLUSTERPULSE_* environment > --config file)")
    g.add_argument("--bootstrap", help="Kafka bootstrap HOST:PORT (env CLUSTERPULSE_BOOTSTRAP)")
    g.add_argument("--data", dest="data_dir", help="Parquet output directory (default ./data)")
    g.add_argument("--partitions", type=int, help="partitions per telemetry topic (default 12)")
    g.add_argument("--topic-prefix", help="topic name prefix (default clusterpulse)")
    g.add_argument("--log-level", choices=["debug", "info", "warning", "error"])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clusterpulse", description=__doc__)
    parser.add_argument("--config", help="YAML settings file (env CLUSTERPULSE_CONFIG)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="the embedded default: broker, simulator, worker, live alerts, Parquet")
    _common(p)
    p.add_argument("--scenario", help="scenario YAML (default: built-in 10,240-card cluster with a few faults)")
    p.add_argument("--speed", default="1", help="event-time speed: 1 = real time, N, or max (default 1)")
    p.add_argument("--duration", type=float, help="stop after this many wall-clock seconds")

    p = sub.add_parser("broker", help="run the embedded Kafka-compatible broker (Tansu) alone")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9092)
    _common(p)
    p.add_argument("--no-topics", action="store_true", help="do not create the pipeline topics")

    p = sub.add_parser("worker", help="run a Faust worker (detectors and sinks) against --bootstrap")
    _common(p)

    p = sub.add_parser("simulate", help="run the cluster simulator into Kafka or a file")
    _common(p)
    p.add_argument("--scenario", help="scenario YAML (default: built-in)")
    p.add_argument("--speed", default="1", help="1 = real time, N, or max")
    p.add_argument("--out", help="write messages to this file instead of Kafka")
    p.add_argument("--truth", help="write the ground truth (fault list) as JSON lines here, for the scorer")
    p.add_argument("--check", action="store_true", help="validate the scenario and exit")

    p = sub.add_parser("replay", help="produce a file written by `simulate --out` into Kafka")
    _common(p)
    p.add_argument("file")
    p.add_argument("--speed", default="max", help="1 = real time, N, or max (default)")

    p = sub.add_parser("topics", help="create the pipeline topics on --bootstrap (idempotent)")
    _common(p)

    p = sub.add_parser("ingest", help="real telemetry in: exporter scrapes, kernel-log Xids, step-time tables")
    _common(p)
    p.add_argument("source", choices=["prometheus", "xid", "steps", "nvidia-smi", "perfquery", "sysfs"])
    p.add_argument("inputs", nargs="*", metavar="FILE", help="saved scrapes, kernel logs or step tables")
    p.add_argument("--target", action="append", default=[], metavar="URL", help="prometheus: a /metrics URL")
    p.add_argument("--inventory", help="hosts, GPUs (PCI ids), NICs and switches to topology names (YAML)")
    p.add_argument("--host", help="the host the input comes from (xid; prometheus without Hostname labels)")
    p.add_argument("--interval", type=float, default=10.0, help="prometheus: seconds between polls")
    p.add_argument("--once", action="store_true", help="prometheus: poll every target once and exit")
    p.add_argument("--boot-time", help="xid: boot time (ISO 8601) for /dev/kmsg records")
    p.add_argument("--format", choices=["pai", "bytedance"], help="steps: the table's format")
    p.add_argument("--job", help="steps: job name (default: from the file name)")
    p.add_argument("--first-node", type=int, default=0, help="steps: node of rank 0")
    p.add_argument("--no-stage-groups", action="store_true",
                   help="steps (bytedance): compare all ranks, not ranks of the same pipeline stage")
    p.add_argument("--detect", action="store_true", help="steps: run the straggler detector and print its alerts")
    p.add_argument("--switch", help="perfquery: the switch (topology name, or a GUID the inventory maps)")
    p.add_argument("--sysfs-kind", choices=["infiniband", "net"], default="infiniband",
                   help="sysfs: /sys/class/infiniband or /sys/class/net layout")
    p.add_argument("--out", help="write messages to this file instead of Kafka")

    p = sub.add_parser("alerts", help="alert delivery: `alerts replay` resends dead-lettered notifications")
    _common(p)
    p.add_argument("action", choices=["replay"])
    p.add_argument("--receiver", help="only this receiver's notifications (default: all)")

    p = sub.add_parser("eval", help="run scenarios end to end and score alerts against the injected faults")
    _common(p)
    p.add_argument("scenarios", nargs="+", metavar="SCENARIO.yaml")
    p.add_argument("--offline", action="store_true",
                   help="feed the simulator straight into the detector core, no Kafka (fast)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--report", help="also write the full JSON report (with every alert) to this file")

    p = sub.add_parser("receiver", help="a webhook receiver that verifies signatures and prints alerts")
    p.add_argument("--host", default="0.0.0.0")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--out", help="also append each notification as a JSON line to this file")
    p.add_argument("--secret-env", help="verify signatures with the secret in this environment variable")
    p.add_argument("--secret-file", help="verify signatures with the secret in this file")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"])

    p = sub.add_parser("query", help="run SQL over the Parquet lake with the views of sql/views.sql")
    _common(p)
    p.add_argument("sql", help="a .sql file (e.g. sql/top_stragglers.sql, or just its name) or an SQL string")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="a query parameter (see the query's header); repeatable")
    p.add_argument("--format", default="table", choices=["table", "csv", "json"])

    p = sub.add_parser("compact", help="merge each closed hour's small Parquet files into one sorted file")
    _common(p)
    p.add_argument("--older-than", type=float, default=7200, help="only hours that ended this many seconds ago")

    p = sub.add_parser("sql", help="an interactive SQL session over the lake with the views loaded")
    _common(p)
    return parser


FLAG_SETTINGS = {"bootstrap": "bootstrap", "data_dir": "data_dir", "partitions": "partitions",
                 "topic_prefix": "topic_prefix", "log_level": "log_level"}


def settings_from(args: argparse.Namespace, **extra: Any) -> Settings:
    flags = {key: getattr(args, attr, None) for attr, key in FLAG_SETTINGS.items()}
    flags.update(extra)
    return load_settings(flags, config_file=args.config)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = settings_from(args)
        logging.basicConfig(level=settings.log_level.upper(),
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        if args.command != "worker":
            logging.getLogger("kafka").setLevel(max(logging.ERROR, logging.root.level))
        return COMMANDS[args.command](args, settings)
    except SettingsError as exc:
        print(f"clusterpulse: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrokerError as exc:
        print(f"clusterpulse: {exc}", file=sys.stderr)
        return 1


# ---- commands -----------------------------------------------------------------------------------

def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from producers.output import parse_speed
    from producers.scenario import ScenarioError, load_scenario
    from pipeline.run import run_pipeline

    try:
        parse_speed(args.speed)
        scenario = load_scenario(args.scenario)
    except (ValueError, ScenarioError) as exc:
        print(f"clusterpulse: {exc}", file=sys.stderr)
        return EXIT_USAGE
    s = scenario.shape
    settings = settings.model_copy(update={"cluster": settings.cluster.model_copy(update={
        "cards": s.cards, "cards_per_node": s.cards_per_node, "nodes_per_leaf": s.nodes_per_leaf,
        "spines": s.spines})})
    print(f"scenario {scenario.name!r}: {s.cards:,} cards, {scenario.duration_s:g} s, "
          f"{len(scenario.faults)} faults, speed {args.speed}", file=sys.stderr, flush=True)
    result = run_pipeline(settings, args.scenario, args.speed, args.duration)
    _print_summary(settings, result)
    if result.simulator_status not in (0, None, -signal.SIGTERM):
        print(f"clusterpulse: the simulator failed (status {result.simulator_status})", file=sys.stderr)
        return 1
    return 0 if result.worker_status in (0, None, -signal.SIGTERM) else 1


def _print_summary(settings: Settings, result: Any) -> None:
    firing = sum(1 for a in result.alerts if a.status == "firing")
    resolved = len(result.alerts) - firing
    files = sorted(Path(settings.data_dir).glob("*/date=*/hour=*/*.parquet"))
    datasets = sorted({f.relative_to(settings.data_dir).parts[0] for f in files})
    data = settings.data_dir
    print(f"\n{firing} alerts fired, {resolved} resolved; {len(files)} Parquet files in {data}/ "
          f"({', '.join(datasets) or 'none'})", file=sys.stderr)
    print("query them, e.g.:\n"
          f"  .venv/bin/clusterpulse query --data {data} "
          "\"SELECT kind, entity, status, starts_at FROM alerts ORDER BY ts\"\n"
          f"  .venv/bin/clusterpulse query --data {data} "
          "\"SELECT node, card, avg(util), max(temp_c) FROM card GROUP BY ALL ORDER BY 4 DESC LIMIT 10\"\n"
          f"  .venv/bin/clusterpulse query --data {data} sql/fault_timeline.sql   (canned analyses in sql/)\n"
          f"  or in DuckDB: SELECT * FROM read_parquet('{data}/card/**/*.parquet', hive_partitioning = true)",
          file=sys.stderr)


def cmd_broker(args: argparse.Namespace, settings: Settings) -> int:
    broker = EmbeddedBroker(host=args.host, port=args.port).start()
    stop = {"now": False}

    def on_signal(signum: int, frame: object) -> None:
        stop["now"] = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        if not args.no_topics:
            create_topics(settings, broker.bootstrap)
        print(f"embedded broker (Tansu, memory only) listening on {broker.bootstrap}; "
              f"use --bootstrap {broker.bootstrap}. Ctrl-C stops it.", flush=True)
        while not stop["now"] and broker.process and broker.process.poll() is None:
            time.sleep(0.2)
    finally:
        broker.stop()
    return 0


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.app import run_worker
    from pipeline.broker import check_reachable

    if not settings.bootstrap:
        print("clusterpulse: the worker needs --bootstrap or CLUSTERPULSE_BOOTSTRAP "
              "(start the embedded broker with `clusterpulse broker`)", file=sys.stderr)
        return EXIT_USAGE
    check_reachable(settings.bootstrap)
    create_topics(settings)
    run_worker(settings)
    return 0


def _load_scenario_or_exit(path: str | None) -> Any:
    from producers.scenario import ScenarioError, load_scenario

    try:
        return load_scenario(path)
    except ScenarioError as exc:
        print(f"clusterpulse: invalid scenario: {exc}", file=sys.stderr)
        return None


def cmd_simulate(args: argparse.Namespace, settings: Settings) -> int:
    import json

    from producers.output import DeliveryError, FileOutput, KafkaOutput, Pacer, parse_speed, pump
    from producers.simulator import Simulator

    scenario = _load_scenario_or_exit(args.scenario)
    if scenario is None:
        return EXIT_USAGE
    try:
        speed = parse_speed(args.speed)
    except ValueError as exc:
        print(f"clusterpulse: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.check:
        print(f"scenario {scenario.name!r} is valid: {scenario.shape.cards} cards, "
              f"{len(scenario.faults)} faults")
        return 0
    sim = Simulator(scenario)
    if args.truth:
        with open(args.truth, "w") as fh:
            for record in sim.ground_truth():
                fh.write(json.dumps(record.__dict__) + "\n")
    if args.out:
        output: Any = FileOutput(args.out)
    else:
        if not settings.bootstrap:
            print("clusterpulse: give --out FILE or --bootstrap HOST:PORT", file=sys.stderr)
            return EXIT_USAGE
        create_topics(settings)
        output = KafkaOutput(settings.bootstrap, settings.topic_prefix, "clusterpulse-simulator")
    stopping = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stopping.update(now=True))
    try:
        summary = pump(sim.ticks(), output, Pacer(speed), should_stop=lambda: stopping["now"])
    except (DeliveryError, KeyboardInterrupt) as exc:
        print(f"clusterpulse: simulator stopped: {exc or 'interrupted'}", file=sys.stderr)
        return 1
    finally:
        if not _close_output(output):
            return 1
    print(f"simulated {summary['simulated_s'] + scenario.tick_s:,.0f} s of {scenario.shape.cards:,} cards: "
          f"{summary['messages']:,} messages, {summary['bytes'] / 1e6:,.1f} MB in "
          f"{summary['elapsed_s']:.1f} s ({summary['msgs_per_s']:,.0f} msg/s)", file=sys.stderr)
    return 0


def _close_output(output: Any) -> bool:
    """Flush and close a producer output; False (reported) if any message was not delivered."""
    from producers.output import DeliveryError

    try:
        output.close()
    except DeliveryError as exc:
        print(f"clusterpulse: {exc}", file=sys.stderr)
        return False
    return True


def cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    from producers.output import DeliveryError, KafkaOutput, Pacer, parse_speed, read_message_file

    if not settings.bootstrap:
        print("clusterpulse: replay needs --bootstrap or CLUSTERPULSE_BOOTSTRAP", file=sys.stderr)
        return EXIT_USAGE
    try:
        pacer = Pacer(parse_speed(args.speed))
        create_topics(settings)
        output = KafkaOutput(settings.bootstrap, settings.topic_prefix, "clusterpulse-replay")
        sent = 0
        try:
            from pipeline.schemas import decode_batch, InvalidRecord
            for message in read_message_file(args.file):
                try:
                    pacer.wait_until(decode_batch(message.value).ts_ms)
                except InvalidRecord:
                    pass  # replay what was recorded; the worker dead-letters it
                output.send(message)
                sent += 1
        finally:
            output.close()
    except (ValueError, OSError, DeliveryError) as exc:
        print(f"clusterpulse: {exc}", file=sys.stderr)
        return 1
    print(f"replayed {sent:,} messages from {args.file}", file=sys.stderr)
    return 0


def cmd_topics(args: argparse.Namespace, settings: Settings) -> int:
    for name, partitions in sorted(create_topics(settings).items()):
        print(f"{name}\t{partitions} partitions")
    return 0


def cmd_eval(args: argparse.Namespace, settings: Settings) -> int:
    import json

    from pipeline.evaluate import evaluate
    from pipeline.scorer import table
    from producers.scenario import ScenarioError, load_scenario

    try:
        for path in args.scenarios:
            load_scenario(path)
    except ScenarioError as exc:
        print(f"clusterpulse: invalid scenario: {exc}", file=sys.stderr)
        return EXIT_USAGE
    # SIGTERM unwinds like Ctrl-C, so the broker and worker of a Kafka-mode run are stopped
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    report = evaluate(args.scenarios, settings, offline=args.offline)
    if args.report:
        Path(args.report).write_text(json.dumps(report, indent=1))
    if args.json:
        print(json.dumps({k: report[k] for k in ("by_kind", "overall")} | {
            "scenarios": [{k: v for k, v in s.items() if k != "alerts"} for s in report["scenarios"]]}, indent=1))
    else:
        print(table(report))
    return 0


def cmd_ingest(args: argparse.Namespace, settings: Settings) -> int:
    from datetime import datetime

    from pipeline.topology import Topology
    from producers.inventory import InventoryError, load_inventory
    from producers.output import FileOutput, KafkaOutput

    topology = Topology(settings.cluster.shape())
    try:
        inventory = load_inventory(args.inventory)
    except InventoryError as exc:
        print(f"clusterpulse: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.source == "steps" and args.detect:
        try:
            return _steps_detect(args, settings, topology)
        except (OSError, ValueError) as exc:
            print(f"clusterpulse: {exc}", file=sys.stderr)
            return 1
    if args.out:
        output: Any = FileOutput(args.out)
    elif settings.bootstrap:
        create_topics(settings)
        output = KafkaOutput(settings.bootstrap, settings.topic_prefix, f"clusterpulse-ingest-{args.source}")
    else:
        print("clusterpulse: give --bootstrap HOST:PORT (or CLUSTERPULSE_BOOTSTRAP) or --out FILE", file=sys.stderr)
        return EXIT_USAGE
    from producers.ingest import IngestSummary, send_batches
    try:
        if args.source == "prometheus":
            from producers.ingest import ingest_prometheus
            if not args.target and not args.inputs:
                print("clusterpulse: give --target URL or saved scrape files", file=sys.stderr)
                return EXIT_USAGE
            stop = {"now": False}
            signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
            summary, converter = ingest_prometheus(args.target, args.inputs, topology, inventory, output, args.host,
                                                   args.interval, args.once, lambda: stop["now"])
            r = converter.report
            print(f"{summary.batches} batches from {r.samples} samples ({r.mapped} mapped); "
                  f"{sum(r.unknown_metrics.values())} samples of {len(r.unknown_metrics)} unmapped metrics ignored; "
                  f"{r.bad_lines} unparseable lines; unmapped hosts: {dict(r.unmapped_hosts) or 'none'}; "
                  f"{len(summary.errors)} failed scrapes", file=sys.stderr)
            return 1 if summary.errors and not summary.batches else 0
        if args.source == "xid":
            from producers.adapters.kernel_log import KernelLogReport, parse_xids, xid_batches
            if not args.host or not args.inputs:
                print("clusterpulse: ingest xid needs FILE... and --host (the inventory maps its PCI ids)",
                      file=sys.stderr)
                return EXIT_USAGE
            boot = int(datetime.fromisoformat(args.boot_time.replace("Z", "+00:00")).timestamp() * 1000) \
                if args.boot_time else None
            report, summary = KernelLogReport(), IngestSummary()
            for path in args.inputs:
                events = parse_xids(Path(path).read_text(errors="replace"), boot, report)
                send_batches(xid_batches(events, args.host, inventory, report), output, summary)
            print(f"{report.xid_lines} Xid lines in {report.lines} lines -> {summary.batches} event batches; "
                  f"unmapped PCI ids: {report.unmapped or 'none'}; undated: {report.undated}", file=sys.stderr)
            return 0
        summary = IngestSummary()
        if not args.inputs:
            print(f"clusterpulse: ingest {args.source} needs input files", file=sys.stderr)
            return EXIT_USAGE
        now_ms = int(time.time() * 1000)
        if args.source == "steps":
            for path in args.inputs:
                send_batches(_step_batches(args, path, topology), output, summary)
        elif args.source == "nvidia-smi":
            from producers.adapters.nvidia_smi import parse_query_csv, parse_query_xml
            if not args.host:
                print("clusterpulse: ingest nvidia-smi needs --host (mapped by the inventory)", file=sys.stderr)
                return EXIT_USAGE
            for path in args.inputs:
                text = Path(path).read_text(errors="replace")
                parse_fn = parse_query_xml if text.lstrip().startswith("<?xml") else parse_query_csv
                send_batches(parse_fn(text, args.host, inventory, now_ms), output, summary)
        elif args.source == "perfquery":
            from producers.adapters.network import parse_perfquery
            switch = (inventory.switch_of(args.switch) if args.switch else None) or args.switch
            if not switch:
                print("clusterpulse: ingest perfquery needs --switch NAME or a GUID the inventory maps",
                      file=sys.stderr)
                return EXIT_USAGE
            topology.parse_switch(switch)
            for path in args.inputs:
                send_batches([parse_perfquery(Path(path).read_text(), switch, now_ms)], output, summary)
        else:
            from producers.adapters.network import read_sysfs
            if not args.host:
                print("clusterpulse: ingest sysfs needs --host (its NICs are mapped by the inventory)", file=sys.stderr)
                return EXIT_USAGE
            for path in args.inputs:
                batches, unmapped = read_sysfs(path, args.host, inventory, topology, now_ms, args.sysfs_kind)
                send_batches(batches, output, summary)
                if unmapped:
                    print(f"clusterpulse: devices not in the inventory (skipped): {', '.join(unmapped)}",
                          file=sys.stderr)
        print(f"{summary.batches} batches from {len(args.inputs)} inputs", file=sys.stderr)
        return 0
    except (OSError, ValueError) as exc:  # UnknownEntity is a ValueError
        print(f"clusterpulse: {exc}", file=sys.stderr)
        return 1
    finally:
        if not _close_output(output):
            return 1  # a message the broker did not take fails the command


def _step_batches(args: argparse.Namespace, path: str, topology: Any) -> list:
    from producers.adapters.steps import read_bytedance_trace, read_pai_minibatch, to_batches
    fmt = args.format or ("bytedance" if path.endswith(".parquet") else "pai")
    records = read_pai_minibatch(path, args.job) if fmt == "pai" else \
        read_bytedance_trace(path, args.job, by_stage=not args.no_stage_groups)
    return to_batches(records, topology, args.first_node)


def _steps_detect(args: argparse.Namespace, settings: Settings, topology: Any) -> int:
    from pipeline.detect.straggler import StragglerDetector
    for path in args.inputs:
        detector = StragglerDetector(topology, settings.detect.straggler)
        alerts = [a for b in _step_batches(args, path, topology) for a in detector.push(b)]
        firing = [a for a in alerts if a.status == "firing"]
        ranks = sorted({(a.labels["job"], int(a.labels["rank"])) for a in firing})
        print(f"{path}: {len(firing)} straggler alerts on {len(ranks)} ranks: "
              + (", ".join(f"{job} rank {rank}" for job, rank in ranks) or "none"))
        for a in firing:
            print(f"  step {a.evidence['step']}: {a.summary}")
    return 0


def cmd_alerts(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.notify.replay import replay_dead_letters

    if not settings.bootstrap:
        print("clusterpulse: alerts replay needs --bootstrap or CLUSTERPULSE_BOOTSTRAP", file=sys.stderr)
        return EXIT_USAGE
    summary = replay_dead_letters(settings, args.receiver)
    print(f"replayed {summary['delivered']} notifications; {summary['failed']} failed again "
          f"(dead-lettered anew); {summary['skipped']} for other or unknown receivers", file=sys.stderr)
    return 1 if summary["failed"] else 0


def cmd_receiver(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.receiver import WebhookReceiver

    secret = None
    if args.secret_env:
        import os
        if args.secret_env not in os.environ:
            print(f"clusterpulse: environment variable {args.secret_env} is not set", file=sys.stderr)
            return EXIT_USAGE
        secret = os.environ[args.secret_env].encode()
    elif args.secret_file:
        try:
            secret = Path(args.secret_file).read_bytes().strip()
        except OSError as exc:
            print(f"clusterpulse: cannot read {args.secret_file}: {exc.strerror}", file=sys.stderr)
            return EXIT_USAGE
    try:
        server = WebhookReceiver(args.host, args.port, Path(args.out) if args.out else None, secret=secret)
    except OSError as exc:
        print(f"clusterpulse: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(f"webhook receiver on {server.url} (GET /healthz, GET /received)"
          + ("; verifying signatures" if secret else ""), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def cmd_query(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.query import QueryError, run_query

    params = {}
    for item in args.param:
        name, sep, value = item.partition("=")
        if not sep or not name:
            print(f"clusterpulse: --param wants NAME=VALUE, got {item!r}", file=sys.stderr)
            return EXIT_USAGE
        params[name.lstrip("$")] = value
    try:
        result = run_query(settings.data_dir, args.sql, params, args.format)
    except QueryError as exc:
        print(f"clusterpulse: {exc}", file=sys.stderr)
        return 1
    for path in result.skipped_files:
        print(f"clusterpulse: skipped unreadable file {path}", file=sys.stderr)
    print(result.text)
    return 0


def cmd_compact(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.sinks.compact import compact

    if "://" in settings.data_dir:
        print("clusterpulse: compact works on a local data directory", file=sys.stderr)
        return EXIT_USAGE
    done = compact(settings.data_dir, args.older_than)
    for c in done:
        print(f"{c.dataset} {c.hour}: {c.files_in} files -> 1, {c.rows:,} rows, "
              f"{c.bytes_before / 1e6:,.1f} MB -> {c.bytes_after / 1e6:,.1f} MB")
    print(f"compacted {len(done)} dataset hours", file=sys.stderr)
    return 0


def cmd_sql(args: argparse.Namespace, settings: Settings) -> int:
    """A small REPL: statements end with ';', `.quit` leaves. The `duckdb` CLI works too:
    duckdb -cmd "SET VARIABLE clusterpulse_data = 'data'" -cmd ".read sql/views.sql"."""
    import duckdb

    from pipeline.query import _format, connect

    con, empty = connect(settings.data_dir)
    print(f"views over {settings.data_dir}: card, card_events, step, port, alerts"
          + (f" (empty: {', '.join(empty)})" if empty else "") + ". End statements with ';', .quit to leave.")
    buffer = ""
    while True:
        try:
            line = input("clusterpulse> " if not buffer else "         ...> ")
        except (EOFError, KeyboardInterrupt):
            print()
            return 0
        if not buffer and line.strip() in (".quit", ".exit", "\\q"):
            return 0
        buffer += line + "\n"
        if not buffer.rstrip().endswith(";"):
            continue
        try:
            cur = con.execute(buffer)
            if cur.description:
                print(_format([d[0] for d in cur.description], cur.fetchall(), "table"))
        except duckdb.Error as exc:
            print(f"error: {exc}")
        buffer = ""


COMMANDS = {"run": cmd_run, "broker": cmd_broker, "worker": cmd_worker, "simulate": cmd_simulate,
            "replay": cmd_replay, "topics": cmd_topics, "receiver": cmd_receiver, "eval": cmd_eval, "alerts": cmd_alerts, "ingest": cmd_ingest, "sql": cmd_sql, "compact": cmd_compact, "query": cmd_query}

if __name__ == "__main__":
    sys.exit(main())
