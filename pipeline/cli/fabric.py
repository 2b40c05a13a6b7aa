"""Verbs over real fabrics: `topology import`, `show`, `radius`, `export`, `check`, and `write` (the
synthetic cluster in the real tools' formats)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from pipeline.cli.common import UsageError, new_verb, plural
from pipeline.settings import Settings


def add_parsers(sub: Any) -> None:
    from pipeline.topology.writers import WRITE_FORMATS

    p = sub.add_parser(
        "topology",
        help="real fabrics: read ibnetdiscover, LLDP or cabling files; "
        "tiers, blast radius, plan against discovery; write the synthetic "
        "cluster as such files",
        description="Real fabrics: read ibnetdiscover, LLDP or cabling files (`topology write` "
        "makes them from the synthetic cluster).",
        epilog="example:\n  clusterpulse topology write --format ibnetdiscover --out ibnetdiscover.txt\n"
        "  clusterpulse topology show ibnetdiscover.txt\n"
        "  clusterpulse topology check --plan plan.ndt --found ibnetdiscover.txt\n"
        "  clusterpulse topology check --found ibnetdiscover.txt     # link rates alone",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verbs = p.add_subparsers(dest="topology_command", required=True, metavar="VERB")
    kind: dict[str, Any] = {
        "choices": ["ibnetdiscover", "lldp", "cabling"],
        "help": "the file's kind (default: from its content)",
    }

    v = new_verb(
        verbs,
        "import",
        "read a real fabric: a summary, and (--out) the topology file that --topology / settings topology: take",
        "clusterpulse topology import selene.compute.ibnetdiscover.txt.gz --format ibnetdiscover "
        "--out topology.yaml\n"
        "clusterpulse topology import lldp/ --format lldp --json\n"
        "clusterpulse worker --bootstrap kafka:9092 --topology topology.yaml",
        log_level=False,
    )
    v.add_argument(
        "file",
        help="ibnetdiscover output (plain or --ports, .gz too), `lldpcli -f json0 show neighbors` "
        "(a file, or a directory of <host>.json), or an NDT cabling CSV",
    )
    v.add_argument("--format", choices=list(FORMATS), help="the file's format (default: from its content)")
    v.add_argument("--out", metavar="FILE", help="write the topology as YAML (every link once, the fabric's names)")
    v.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object: switches, host_ports, links, tiers, switch_tier, slow_links, ...",
    )
    v.set_defaults(handler=cmd_import)

    v = new_verb(
        verbs,
        "show",
        "devices per tier, links and what was left out",
        "clusterpulse topology show selene.compute.ibnetdiscover.txt.gz",
        log_level=False,
    )
    v.add_argument(
        "file",
        help="ibnetdiscover output (plain or --ports, .gz too), lldpcli json0 "
        "(a file, a directory of <host>.json), or a cabling CSV",
    )
    v.add_argument("--kind", **kind)
    v.add_argument("--json", action="store_true", help="print the summary as JSON")
    v.set_defaults(handler=cmd_show)

    v = new_verb(
        verbs,
        "radius",
        "what a switch takes with it when it dies",
        "clusterpulse topology radius selene.compute.ibnetdiscover.txt.gz LG01-01",
        log_level=False,
    )
    v.add_argument("file")
    v.add_argument("switch", help="the switch's name as the fabric names it (case-insensitive)")
    v.add_argument("--kind", **kind)
    v.add_argument("--json", action="store_true")
    v.set_defaults(handler=cmd_radius)

    v = new_verb(
        verbs,
        "export",
        "write the fabric's dimension tables (devices, fabric_links) into the lake for SQL",
        "clusterpulse topology export selene.compute.ibnetdiscover.txt.gz --data lake\n"
        "clusterpulse topology export --data lake     # the configured synthetic cluster\n"
        "clusterpulse query switch_reach --data lake --param switch=LG01-01",
        settings=("data_dir", "topology"),
        log_level=False,
    )
    v.add_argument(
        "file", nargs="?", help="a topology file (default: the settings' topology, else the synthetic cluster)"
    )
    v.add_argument("--kind", **kind)
    v.set_defaults(handler=cmd_export)

    v = new_verb(
        verbs,
        "check",
        "the discovered fabric's links below their usual speed or width and, with "
        "--plan, miswired, missing and unexpected links (exit 1 when any)",
        "clusterpulse topology check --plan hosts.ndt --plan spines.ndt --found ibnetdiscover.txt\n"
        "clusterpulse topology check --found ibnetdiscover.txt --json",
        log_level=False,
    )
    v.add_argument(
        "--plan",
        action="append",
        metavar="FILE",
        help="cabling plan (UFM NDT or CSV with StartDevice,StartPort,EndDevice,EndPort); repeatable; "
        "without it only link rates are checked",
    )
    v.add_argument("--found", required=True, metavar="FILE", help="the discovered fabric (ibnetdiscover or LLDP)")
    v.add_argument(
        "--json",
        action="store_true",
        help="the report as JSON (slow_links; with --plan also matched, miswired, missing, unexpected, counts)",
    )
    v.set_defaults(handler=cmd_check)

    v = new_verb(
        verbs,
        "write",
        "write the synthetic cluster's fabric as the real tools print it (ibnetdiscover, "
        "LLDP json0 per host, UFM NDT cabling plan), for import, show, radius and check",
        "clusterpulse topology write --format ibnetdiscover --out ibnetdiscover.txt\n"
        "clusterpulse topology write --format lldp --out lldp/      # lldp/<host>.json, one per machine\n"
        "clusterpulse topology write --format ndt --out hosts.ndt --scenario scenarios/straggler.yaml",
        log_level=False,
    )
    v.add_argument(
        "--format",
        required=True,
        choices=list(WRITE_FORMATS),
        help="ibnetdiscover (default form), ibnetdiscover-ports (--ports form), lldp (a directory of "
        "`lldpcli -f json0 show neighbors` documents) or ndt (UFM NDT cabling CSV)",
    )
    v.add_argument("--out", required=True, metavar="PATH", help="the file to write (a directory for lldp)")
    v.add_argument(
        "--scenario",
        metavar="FILE",
        help="write this scenario's `cluster:` shape instead of the "
        "settings' cluster (default: the built-in 10,240 cards)",
    )
    v.set_defaults(handler=cmd_write)


FORMATS = {"ibnetdiscover": "ibnetdiscover", "lldp": "lldp", "ndt": "cabling"}  # --format -> reader


def _load(path: str, kind: str | None = None) -> Any:
    from pipeline.topology.fabric import FabricError
    from pipeline.topology.load import load_fabric

    try:
        return load_fabric(path, kind)
    except FabricError as exc:
        raise UsageError(str(exc)) from None


def cmd_import(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.topology.link_rates import slow_link_report
    from pipeline.topology.load import sniff
    from pipeline.topology.saved import save_fabric
    from pipeline.topology.tiers import tier_label

    kind = FORMATS[args.format] if args.format else None
    fabric = _load(args.file, kind)
    summary = fabric.summary()
    tiers = {name: n for name, n in summary["by_tier"].items() if name != "host"}
    switch_tier = {name: tier_label(t) for name, t in fabric.tiers().items() if fabric.devices[name].kind == "switch"}
    slow = slow_link_report(fabric)
    result = {
        "source": args.file,
        "format": args.format or {v: k for k, v in FORMATS.items()}.get(kind or _sniffed(sniff, args.file), "saved"),
        "switches": sum(tiers.values()),
        "hosts": summary["by_tier"].get("host", 0),
        "host_ports": summary["host_ports"],
        "links": summary["links"],
        "tiers": tiers,
        "dropped": summary["dropped"],
        "out": args.out,
        "switch_tier": switch_tier,
        "slow_links": slow,
    }
    if not fabric.links:
        raise UsageError(f"{args.file}: no links found (is it the right --format?)")
    if args.out:
        try:
            save_fabric(fabric, args.out, f"{args.file} ({result['format']})")
        except OSError as exc:
            raise UsageError(f"cannot write --out {args.out}: {exc.strerror}") from None
    if args.json:
        print(json.dumps(result))
        return 0
    many = {"leaf": "leaves", "unreached switch": "unreached switches"}
    print(
        f"{args.file} ({result['format']}): {plural(result['switches'], 'switch', 'switches')} ("
        + ", ".join(plural(n, name, many.get(name)) for name, n in tiers.items())
        + f"), {plural(result['hosts'], 'host')} with {plural(result['host_ports'], 'host port')}, "
        f"{plural(result['links'], 'link')}" + (f", {plural(len(slow), 'slow link')}" if slow else "")
    )
    for why, n in summary["dropped"].items():
        print(f"  left out: {n:,} x {why}")
    _print_slow_links(slow, indent="  ")
    if args.out:
        print(f"written to {args.out}: use it with --topology {args.out} or `topology: {args.out}` in the settings")
    return 0


def _sniffed(sniff: Any, path: str) -> str:
    from pathlib import Path

    return sniff(Path(path))


def cmd_show(args: argparse.Namespace, settings: Settings) -> int:
    summary = _load(args.file, args.kind).summary()
    if args.json:
        print(json.dumps(summary, indent=1))
        return 0
    many = {"leaf": "leaves", "switch": "switches", "unreached switch": "unreached switches"}
    tiers = ", ".join(plural(n, name, many.get(name)) for name, n in summary["by_tier"].items())
    print(
        f"{args.file}: {plural(summary['devices'], 'device')} ({tiers}); {plural(summary['links'], 'link')}, "
        f"{plural(summary['host_ports'], 'host port')}; {summary['tiers']} switch tiers"
    )
    for why, n in summary["dropped"].items():
        print(f"  left out: {n:,} x {why}")
    return 0


def cmd_radius(args: argparse.Namespace, settings: Settings) -> int:
    fabric = _load(args.file, args.kind)
    names = {name.lower(): name for name, d in fabric.devices.items() if d.kind == "switch"}
    name = names.get(args.switch.lower())
    if name is None:
        raise UsageError(f"no switch {args.switch!r} in {args.file} ({plural(len(names), 'switch', 'switches')})")
    radius = fabric.blast_radius(name)
    if args.json:
        print(json.dumps(radius, indent=1))
        return 0
    tier = {1: "leaf", 2: "spine", 3: "core"}.get(radius["tier"], f"tier {radius['tier']}")
    ports = len(radius["host_ports_down"]) + len(radius["host_ports_isolated"])
    print(
        f"{name} ({tier}): {plural(radius['links'], 'link')} down; "
        f"{plural(ports, 'host port')} of {plural(len(radius['hosts_affected']), 'host')} lose the fabric "
        f"({len(radius['hosts_cut_off'])} hosts cut off entirely); "
        f"{plural(len(radius['switches_isolated']), 'switch', 'switches')} below isolated, "
        f"{plural(len(radius['switches_degraded']), 'switch', 'switches')} below lose some uplinks"
    )
    return 0


def cmd_export(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.cli.common import say
    from pipeline.lake.dimensions import fabric_of_topology, write_dimensions
    from pipeline.lake.dirs import resolve_lake
    from pipeline.topology.synthetic import Topology

    if args.file:
        fabric, names = _load(args.file, args.kind), {}
    elif settings.topology:  # the configured real fabric, its links named as the pipeline names them
        topology = _configured(settings)
        fabric, names = topology.fabric, topology.link_names_by_key
    else:
        fabric, names = fabric_of_topology(Topology(settings.cluster.shape()))
    lake = resolve_lake(settings.data_dir).path
    if "://" in str(lake):
        raise UsageError(f"topology export writes to a local lake directory, not {lake}")
    paths = write_dimensions(fabric, lake, names)
    say(
        f"clusterpulse: {plural(len(fabric.devices), 'device')} and {plural(len(fabric.links), 'link')} "
        f"written to {', '.join(str(p) for p in paths)}; query them with the devices and fabric_links views"
    )
    return 0


def _configured(settings: Settings) -> Any:
    from pipeline.settings import SettingsError

    try:
        return settings.build_topology()
    except SettingsError as exc:
        raise UsageError(str(exc)) from None


def _print_slow_links(slow: list[dict[str, str]], indent: str = "") -> None:
    for row in slow:
        print(f"{indent}slow link   {row['link']}   {row['rate']} (usual {row['usual']})")


def cmd_check(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.topology.cabling_check import check_cabling
    from pipeline.topology.cabling_plan import load_cabling_plan
    from pipeline.topology.fabric import FabricError
    from pipeline.topology.link_rates import slow_link_report

    try:
        plan = load_cabling_plan(*args.plan) if args.plan else None
    except FabricError as exc:
        raise UsageError(str(exc)) from None
    found = _load(args.found)
    if plan is None and not found.links:
        raise UsageError(f"{args.found}: no links found (is it a topology file?)")
    slow = slow_link_report(found)
    report = check_cabling(plan, found) if plan is not None else None
    if args.json:
        print(
            json.dumps({**(report.as_dict() if report else {"links": len(found.links)}), "slow_links": slow}, indent=1)
        )
    else:
        if report:
            for planned, link in report.miswired:
                print(f"miswired    planned {planned}   found {link}")
            for link in report.missing:
                print(f"missing     {link}")
            for link in report.unexpected:
                print(f"unexpected  {link}")
        _print_slow_links(slow)
        if report:
            print(
                f"{plural(report.matched, 'link')} as planned; {len(report.miswired)} miswired, "
                f"{len(report.missing)} missing, {len(report.unexpected)} unexpected; "
                f"{plural(len(slow), 'slow link')}"
            )
        else:
            print(
                f"{plural(len(found.links), 'link')}; {plural(len(slow), 'slow link')} "
                "(below the usual speed or width of their kind)"
            )
    return 0 if (report is None or report.clean) and not slow else 1


def cmd_write(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.cli.simulation import load_scenario_or_fail
    from pipeline.topology.fabric import FabricError
    from pipeline.topology.synthetic import Topology
    from pipeline.topology.writers import ETHERNET, INFINIBAND_NDR, synthetic_fabric, write_fabric

    if args.scenario:
        scenario = load_scenario_or_fail(args.scenario)
        if scenario.topology_file:
            raise UsageError(
                f"{args.scenario}: its cluster is an imported fabric (cluster.topology: "
                f"{scenario.topology_file}); topology write writes a synthetic cluster shape"
            )
        shape = scenario.shape
    else:
        shape = settings.cluster.shape()
    topology = Topology(shape)
    fabric = synthetic_fabric(topology, ETHERNET if args.format == "lldp" else INFINIBAND_NDR)
    try:
        write_fabric(fabric, args.format, args.out)
    except FabricError as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:
        raise UsageError(f"cannot write --out {args.out}: {exc.strerror or exc}") from None
    print(
        f"{args.out} ({args.format}): {plural(topology.nodes, 'host')} with "
        f"{plural(int(topology.host_exists.sum()), 'host port')}, {plural(topology.leaves, 'leaf', 'leaves')}, "
        f"{plural(topology.spines, 'spine')}, {plural(len(fabric.links), 'link')} "
        f"({shape.cards:,} cards); read it with `clusterpulse topology import {args.out}`"
    )
    return 0
