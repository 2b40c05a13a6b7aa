"""Verbs around the simulator: simulate, replay, eval."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path
from typing import Any

from pipeline.cli.common import (
    CommandError,
    UsageError,
    close_output,
    need_bootstrap,
    new_verb,
    parse_speed_arg,
    plural,
    say,
)
from pipeline.ops.broker import check_reachable, create_topics
from pipeline.settings import Settings

NETWORK = ("bootstrap", "partitions", "topic_prefix")


def add_parsers(sub: Any) -> None:
    p = new_verb(
        sub,
        "simulate",
        "run the cluster simulator into Kafka or a file",
        "clusterpulse simulate --scenario scenarios/link-flap.yaml --speed max --out flap.msgs "
        "--truth flap.truth.jsonl\nclusterpulse simulate --scenario scenarios/straggler.yaml "
        "--bootstrap 127.0.0.1:9092",
        settings=NETWORK,
    )
    p.add_argument("--scenario", help="scenario YAML (default: built-in; format in docs/scenarios.md)")
    p.add_argument("--speed", default="1", type=parse_speed_arg, help="1 = real time, N, or max")
    p.add_argument("--out", help="write messages to this file instead of Kafka")
    p.add_argument("--truth", help="write the ground truth (fault list) as JSON lines here, for the scorer")
    p.add_argument("--check", action="store_true", help="validate the scenario and exit")
    p.add_argument(
        "--serve-exporters",
        action="store_true",
        help="serve the cluster as exporters instead (each node a dcgm-exporter, each switch an "
        "snmp_exporter if_mib target, a port each) and write their scrape config",
    )
    p.add_argument("--host", default="127.0.0.1", help="--serve-exporters: the address to serve on (default 127.0.0.1)")
    p.add_argument(
        "--port-base",
        type=int,
        default=19000,
        help="--serve-exporters: node i on PORT_BASE+i, switch j after the nodes (default 19000)",
    )
    p.add_argument(
        "--scrape-config",
        default="served-fleet.yml",
        help="--serve-exporters: write the targets' Prometheus scrape_configs here (default served-fleet.yml)",
    )
    p.add_argument(
        "--scrape-interval",
        type=float,
        default=1.0,
        help="--serve-exporters: the node targets' scrape_interval in that file, s (default 1)",
    )
    p.add_argument(
        "--switch-interval",
        type=float,
        default=10.0,
        help="--serve-exporters: the switch targets' scrape_interval in that file, s (default 10)",
    )
    p.set_defaults(handler=cmd_simulate)

    p = new_verb(
        sub,
        "replay",
        "produce a file written by `simulate --out` into Kafka",
        "clusterpulse replay flap.msgs --bootstrap 127.0.0.1:9092 --speed 20",
        settings=NETWORK,
    )
    p.add_argument("file")
    p.add_argument("--speed", default="max", type=parse_speed_arg, help="1 = real time, N, or max (default)")
    p.set_defaults(handler=cmd_replay)

    p = new_verb(
        sub,
        "eval",
        "run scenarios and score the alerts against the injected faults",
        "clusterpulse eval --offline scenarios/*.yaml\n"
        "clusterpulse eval --json --report full.json scenarios/straggler.yaml\n"
        "clusterpulse eval --offline --random 20      # 20 fresh seeds, printed\n"
        "clusterpulse eval --offline --seed 4711      # replay one of them",
        settings=("data_dir", "partitions"),
    )
    p.add_argument("scenarios", nargs="*", metavar="SCENARIO.yaml")
    p.add_argument(
        "--random",
        type=int,
        default=0,
        metavar="N",
        help="also score N scenarios drawn from fresh random seeds (the seeds are printed)",
    )
    p.add_argument(
        "--seed",
        type=int,
        action="append",
        default=[],
        metavar="S",
        help="also score the random scenario of seed S (repeatable), e.g. to replay a miss",
    )
    p.add_argument(
        "--noise",
        choices=("clean", "realistic"),
        default="realistic",
        help="noise profile of the --random/--seed scenarios (default realistic)",
    )
    p.add_argument(
        "--offline", action="store_true", help="feed the simulator straight into the detector core, no Kafka (fast)"
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--report", help="also write the full JSON report (with every alert) to this file")
    p.set_defaults(handler=cmd_eval)


def random_scenario_files(count: int, seeds: list[int], noise_profile: str = "realistic") -> list[str]:
    """Scenario files for `count` fresh seeds plus the given ones, in a new temporary directory."""
    import secrets
    import tempfile

    import yaml

    from producers.random_scenario import random_scenario

    drawn = [secrets.randbelow(2**31) for _ in range(count)]
    if not drawn + seeds:
        return []
    if drawn:
        say(f"random seeds: {' '.join(map(str, drawn))} (replay one with --seed S)")
    folder = Path(tempfile.mkdtemp(prefix="clusterpulse-random-"))
    paths = []
    for seed in drawn + seeds:
        path = folder / f"random-{seed}.yaml"
        path.write_text(yaml.safe_dump(random_scenario(seed, noise_profile), sort_keys=False))
        paths.append(str(path))
    return paths


def load_scenario_or_fail(path: str | None) -> Any:
    from producers.scenario import ScenarioError, load_scenario

    try:
        return load_scenario(path)
    except ScenarioError as exc:
        raise UsageError(f"invalid scenario: {exc}") from None


def cmd_simulate(args: argparse.Namespace, settings: Settings) -> int:
    from producers.output import DeliveryError, FileOutput, KafkaOutput, Pacer, parse_speed, pump
    from producers.simulator import Simulator

    scenario = load_scenario_or_fail(args.scenario)
    if args.check:
        print(
            f"scenario {scenario.name!r} is valid: {scenario.shape.cards:,} cards, "
            f"{plural(len(scenario.faults), 'fault')}"
        )
        return 0
    if args.serve_exporters:
        return _serve_exporters(args, scenario)
    bootstrap = None
    if not args.out:
        bootstrap = need_bootstrap(settings, "simulate without --out FILE")
        check_reachable(bootstrap)
    sim = Simulator(scenario)
    if args.truth:
        write_truth(args.truth, sim)
    if args.out:
        try:
            output: Any = FileOutput(args.out)
        except OSError as exc:
            raise UsageError(f"cannot write --out {args.out}: {exc.strerror}") from None
    else:
        assert bootstrap is not None  # need_bootstrap gave it above
        create_topics(settings)
        output = KafkaOutput(bootstrap, settings.topic_prefix, "clusterpulse-simulator")
    stopping = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stopping.update(now=True))
    try:
        summary = pump(sim.ticks(), output, Pacer(parse_speed(args.speed)), should_stop=lambda: stopping["now"])
    except (DeliveryError, KeyboardInterrupt) as exc:
        say(f"clusterpulse: simulator stopped: {exc or 'interrupted'}")
        close_output(output)
        return 1
    except BaseException:  # anything else still flushes what was sent, then is reported as it is
        close_output(output)
        raise
    if not close_output(output):
        return 1
    say(
        f"simulated {summary['simulated_s'] + scenario.tick_s:,.0f} s of {scenario.shape.cards:,} cards: "
        f"{plural(int(summary['messages']), 'message')}, {summary['bytes'] / 1e6:,.1f} MB in "
        f"{summary['elapsed_s']:.1f} s ({summary['msgs_per_s']:,.0f} msg/s)"
    )
    return 0


def write_truth(path: str, sim: Any) -> None:
    """The simulator's ground truth (its fault list) as JSON lines, for the scorer."""
    try:
        with open(path, "w") as fh:
            for record in sim.ground_truth():
                fh.write(json.dumps(record.__dict__) + "\n")
    except OSError as exc:
        raise UsageError(f"cannot write --truth {path}: {exc.strerror}") from None


def _serve_exporters(args: argparse.Namespace, scenario: Any) -> int:
    """`simulate --serve-exporters`: the cluster as a fleet of exporter endpoints until stopped."""
    import threading

    from producers.output import parse_speed
    from producers.served_fleet import ClusterExporters, FleetServer, serve, write_scrape_config
    from producers.simulator import Simulator

    if args.out:
        raise UsageError("--serve-exporters serves the cluster; leave out --out")
    for flag in ("scrape_interval", "switch_interval"):
        if not getattr(args, flag) > 0:
            raise UsageError(f"--{flag.replace('_', '-')} wants a positive number of seconds")
    topo = scenario.topology
    fleet = FleetServer(ClusterExporters(topo, lost_cards="drop"), args.host, args.port_base)
    last = args.port_base + len(fleet.targets) - 1
    if not 0 < args.port_base <= last <= 65535:
        raise UsageError(
            f"--port-base {args.port_base}: the {len(fleet.targets):,} targets need ports "
            f"{args.port_base}..{last}, within 1..65535"
        )
    try:
        write_scrape_config(args.scrape_config, fleet, args.scrape_interval, args.switch_interval)
    except OSError as exc:
        raise UsageError(f"cannot write --scrape-config {args.scrape_config}: {exc.strerror}") from None
    sim = Simulator(scenario)
    if args.truth:
        write_truth(args.truth, sim)
    from pipeline.cli.collect import raise_open_files_limit

    raise_open_files_limit()  # a listening socket per target, a connection per scraper
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    say(
        f"serving {topo.nodes:,} dcgm-exporter targets on {args.host}:{args.port_base}.."
        f"{args.port_base + topo.nodes - 1} "
        f"and {len(topo.switch_names):,} snmp_exporter targets up to :{last}; scrape config: {args.scrape_config} "
        f"(clusterpulse collect --config {args.scrape_config}); SIGTERM or Ctrl-C stops"
    )
    try:
        summary = serve(sim, fleet, parse_speed(args.speed), stop, say)
    except OSError as exc:
        raise CommandError(str(exc)) from None
    say(f"served {summary['ticks']:,} ticks, {summary['scrapes']:,} scrapes")
    return 0


def cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.model.schemas import InvalidRecord, decode_batch
    from producers.output import FILE_MAGIC, DeliveryError, KafkaOutput, Pacer, parse_speed, read_message_file

    bootstrap = need_bootstrap(settings, "replay")
    path = Path(args.file)
    if path.is_dir():
        raise UsageError(f"{args.file!r} is a directory, not a message file (written by `simulate --out`)")
    if not path.is_file():
        raise UsageError(f"no such file {args.file!r}")
    try:
        with path.open("rb") as fh:
            magic = fh.read(len(FILE_MAGIC))
    except OSError as exc:
        raise UsageError(f"cannot read {args.file!r}: {exc.strerror}") from None
    if magic != FILE_MAGIC:
        raise UsageError(
            f"{args.file!r} is {'empty' if not magic else 'not a ClusterPulse message file'} "
            "(replay takes a file written by `simulate --out`)"
        )
    check_reachable(bootstrap)
    pacer = Pacer(parse_speed(args.speed))
    create_topics(settings)
    output = KafkaOutput(bootstrap, settings.topic_prefix, "clusterpulse-replay")
    sent = 0
    try:
        try:
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
        raise CommandError(f"replay of {args.file} stopped after {plural(sent, 'message')}: {exc}") from None
    say(f"replayed {plural(sent, 'message')} from {args.file}")
    return 0


def cmd_eval(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.eval.evaluate import evaluate
    from pipeline.eval.scorer import table

    if args.random < 0:
        raise UsageError(f"--random must be 0 or more, not {args.random}")
    paths = list(args.scenarios) + random_scenario_files(args.random, args.seed, args.noise)
    if not paths:
        raise UsageError("give scenario files, --random N or --seed S")
    for path in paths:
        load_scenario_or_fail(path)
    # SIGTERM unwinds like Ctrl-C, so the broker and worker of a Kafka-mode run are stopped
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    report = evaluate(paths, settings, offline=args.offline)
    if args.report:
        Path(args.report).write_text(json.dumps(report, indent=1))
    if args.json:
        print(
            json.dumps(
                {k: report[k] for k in ("by_kind", "overall")}
                | {"scenarios": [{k: v for k, v in s.items() if k != "alerts"} for s in report["scenarios"]]},
                indent=1,
            )
        )
    else:
        print(table(report))
    return 0
