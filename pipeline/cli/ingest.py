"""`clusterpulse ingest SOURCE ...`: real telemetry in, one sub-command per source."""

from __future__ import annotations

import argparse
import signal
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from pipeline.cli.common import CommandError, UsageError, close_output, new_verb, plural, say, topology_and_inventory
from pipeline.ops.broker import check_reachable, create_topics
from pipeline.settings import Settings

NETWORK = ("bootstrap", "partitions", "topic_prefix", "topology")


def add_parsers(sub: Any) -> None:
    p = sub.add_parser(
        "ingest",
        help="real telemetry in: exporter scrapes, switches (snmp, gnmic, ib-exporter, "
        "ufm, perfquery), kernel-log Xids, nvidia-smi, sysfs, step tables, training logs (megatron, deepspeed, nccl)",
        description="Real telemetry in. `clusterpulse ingest SOURCE --help` shows a source's options.",
    )
    sources = p.add_subparsers(dest="source", required=True, metavar="SOURCE")

    def source(name: str, help_text: str, example: str) -> argparse.ArgumentParser:
        s = new_verb(sources, name, help_text, example, settings=NETWORK)
        s.add_argument(
            "--inventory", help="hosts, GPUs (PCI ids), NICs and switches to topology names (YAML, docs/inventory.md)"
        )
        s.add_argument("--out", help="write messages to this file instead of Kafka")
        s.add_argument(
            "--detect",
            action="store_true",
            help="run the detectors and root cause offline over the input and print the alerts (nothing is sent)",
        )
        s.add_argument(
            "--json",
            action="store_true",
            help="with --detect: one alert record (docs/scenarios.md alert contract) per line",
        )
        s.set_defaults(handler=cmd_ingest, host=None, switch=None)
        return s

    def scrapes(s: argparse.ArgumentParser, what: str) -> None:
        s.add_argument("inputs", nargs="*", metavar="FILE", help=f"saved {what}")
        s.add_argument("--target", action="append", default=[], metavar="URL", help="a /metrics URL; repeatable")
        s.add_argument("--interval", type=float, default=10.0, help="seconds between polls (default 10)")
        s.add_argument("--once", action="store_true", help="poll every target once and exit")

    s = source(
        "prometheus",
        "dcgm-exporter, npu-exporter and node_exporter /metrics: live or saved scrapes",
        "clusterpulse ingest prometheus --target http://gpu-node-1:9400/metrics --inventory inv.yaml "
        "--bootstrap kafka:9092\nclusterpulse ingest prometheus scrape.prom --host gpu-node-1 --out x.msgs",
    )
    scrapes(s, "scrapes")
    s.add_argument("--host", help="the host of saved scrapes without Hostname labels")
    s.add_argument(
        "--switch",
        help="the switch of saved snmp_exporter scrapes (they carry no target label): "
        "a topology name, or a name the inventory maps",
    )

    switch_help = "the switch of saved scrapes without a switch label: a topology name, or a name the inventory maps"
    for name, help_text, example, what in SWITCH_SOURCE_HELP:
        s = source(name, help_text, example)
        scrapes(s, what)
        s.add_argument("--switch", help=switch_help)

    s = source(
        "xid",
        "NVIDIA Xid lines from dmesg -T, dmesg --time-format iso or /dev/kmsg",
        "clusterpulse ingest xid --host gpu-node-1 dmesg.log --inventory inv.yaml --out xid.msgs",
    )
    s.add_argument("inputs", nargs="*", metavar="FILE", help="kernel logs")
    s.add_argument("--host", help="the host the log comes from (required; the inventory maps its PCI ids)")
    s.add_argument("--boot-time", help="boot time (ISO 8601) for /dev/kmsg records")

    s = source(
        "nvidia-smi",
        "nvidia-smi --query-gpu=... --format=csv, or nvidia-smi -q -x",
        "clusterpulse ingest nvidia-smi --host gpu-node-1 query.csv --out smi.msgs",
    )
    s.add_argument("inputs", nargs="*", metavar="FILE", help="saved nvidia-smi output")
    s.add_argument("--host", help="the host the output comes from (required)")

    s = source(
        "perfquery",
        "perfquery -x extended port counters of a switch",
        "clusterpulse ingest perfquery --switch 0x7cfe9003009ce5b0 perfquery.out --inventory inv.yaml --out pq.msgs",
    )
    s.add_argument("inputs", nargs="*", metavar="FILE", help="saved perfquery -x output")
    s.add_argument("--switch", help="the switch: a topology name, or a GUID the inventory maps (required)")

    s = source(
        "sysfs",
        "/sys/class/infiniband/*/ports/*/counters or /sys/class/net/*/statistics of a host",
        "clusterpulse ingest sysfs --host gpu-node-1 /sys/class/infiniband --inventory inv.yaml --out ib.msgs",
    )
    s.add_argument("inputs", nargs="*", metavar="DIR", help="sysfs class directories (or copies)")
    s.add_argument("--host", help="the host (required; its NICs are mapped by the inventory)")
    s.add_argument(
        "--sysfs-kind",
        choices=["infiniband", "net"],
        default="infiniband",
        help="/sys/class/infiniband or /sys/class/net layout",
    )
    s.add_argument(
        "--interval",
        type=float,
        metavar="SECONDS",
        help="poll the directories every SECONDS until stopped (SIGTERM), instead of reading them once",
    )

    s = source(
        "steps",
        "per-rank step times: Alibaba PAI mini-batch CSVs, ByteDance op traces",
        "clusterpulse ingest steps job_1_norm.csv --detect\n"
        "clusterpulse ingest steps trace-AR.parquet --format bytedance --out steps.msgs",
    )
    s.add_argument("inputs", nargs="*", metavar="FILE", help="step tables")
    s.add_argument("--format", choices=["pai", "bytedance"], help="the table's format (default: by suffix)")
    s.add_argument("--job", help="job name (default: from the file name)")
    s.add_argument("--first-node", type=int, default=0, help="node of rank 0")
    s.add_argument(
        "--no-stage-groups",
        action="store_true",
        help="bytedance: compare all ranks, not ranks of the same pipeline stage",
    )

    for name, what, example in (
        (
            "megatron",
            "Megatron-LM training logs: `iteration N/M | ... elapsed time per iteration (ms): T` lines",
            "clusterpulse ingest megatron train.log --job gpt --first-node 0 --detect\n"
            "clusterpulse ingest megatron /var/log/job/rank*.log --follow --bootstrap kafka:9092",
        ),
        (
            "deepspeed",
            "DeepSpeed logs with wall_clock_breakdown: `[Rank N] ... time (ms) | forward: ... | "
            "backward_allreduce: ...` lines",
            "clusterpulse ingest deepspeed train.log --job bert --out steps.msgs\n"
            "clusterpulse ingest deepspeed train.log --follow --bootstrap kafka:9092",
        ),
        (
            "nccl",
            "collective timeouts in training logs: PyTorch's NCCL watchdog (`[Rank N] Watchdog caught collective "
            "operation timeout: WorkNCCL(SeqNum=...) ran for T milliseconds`) and `NCCL WARN` transport timeouts; "
            "evidence that a job hung (job_hang)",
            "clusterpulse ingest nccl /var/log/job/rank*.log --job gpt --follow --bootstrap kafka:9092\n"
            "clusterpulse ingest nccl train.log --job gpt --out timeouts.msgs",
        ),
    ):
        s = source(name, what, example)
        s.add_argument("inputs", nargs="*", metavar="LOG", help="training logs (one per rank, or rank-prefixed lines)")
        s.add_argument("--job", help="job name (default: from the file name)")
        s.add_argument("--first-node", type=int, default=0, help="node of rank 0 (rank r on node first + r // K)")
        s.add_argument("--rank", type=int, default=0, help="the rank of lines that name none (default 0)")
        s.add_argument(
            "--follow",
            action="store_true",
            help="follow the logs as they grow (from their end; like tail -F) until stopped (SIGTERM)",
        )
        s.add_argument("--from-start", action="store_true", help="with --follow: read what the logs hold first")


SWITCH_SOURCES = ("snmp", "gnmic", "ib-exporter", "ufm")
# (source, help, example, what its saved inputs are): the switch telemetry sources, one parser each
SWITCH_SOURCE_HELP = (
    (
        "snmp",
        "snmp_exporter if_mib scrapes of switches (ifOperStatus, ifAdminStatus, ifHC*Octets, ifInErrors, "
        "ifInDiscards, dot3StatsFCSErrors): live or saved; a saved scrape names no switch: give --switch",
        "clusterpulse ingest snmp leaf01.prom --switch leaf01 --detect\n"
        "clusterpulse ingest snmp --target 'http://snmp-exporter:9116/snmp?target=leaf01&module=if_mib' "
        "--switch leaf01 --topology topology.yaml --bootstrap kafka:9092",
        "snmp_exporter scrapes",
    ),
    (
        "gnmic",
        "gnmic Prometheus output of OpenConfig interfaces (in_errors, in_fcs_errors, carrier_transitions, "
        "oper_status, admin_status; label source): live or saved",
        "clusterpulse ingest gnmic gnmic.prom --detect --json\n"
        "clusterpulse ingest gnmic --target http://gnmic:9804/metrics --topology topology.yaml --bootstrap kafka:9092",
        "gnmic scrapes",
    ),
    (
        "ib-exporter",
        "Prometheus infiniband_exporter scrapes (switch port symbol errors, link downed, receive "
        "errors; labels guid, port): live or saved",
        "clusterpulse ingest ib-exporter ib.prom --topology selene.ibnetdiscover --detect\n"
        "clusterpulse ingest ib-exporter --target http://ufm-host:9315/metrics --bootstrap kafka:9092",
        "infiniband_exporter scrapes",
    ),
    (
        "ufm",
        "NVIDIA UFM Telemetry: its JSON messages or its Prometheus endpoint (per-port IB counters of "
        "switches; labels node_guid, port_num)",
        "clusterpulse ingest ufm telemetry.json --inventory inv.yaml --out ufm.msgs\n"
        "clusterpulse ingest ufm --target http://ufm-telemetry:9001/metrics --topology topology.yaml --detect",
        "UFM Telemetry JSON messages or Prometheus scrapes",
    ),
)
SCRAPE_SOURCES = ("prometheus", "snmp", "gnmic", "ib-exporter")


def _open_output(args: argparse.Namespace, settings: Settings, topology: Any, converter: dict) -> Any:
    from producers.output import FileOutput, KafkaOutput

    if args.detect:
        from pipeline.eval.offline_detect import DetectOutput
        from pipeline.topology.ports import PortEntities

        if args.out:
            raise UsageError("--detect prints alerts and sends nothing: leave out --out")
        if args.ports_as_entities:  # the switches and ports seen, once the inputs are read
            return DetectOutput(
                lambda: PortEntities(converter["switches"].port_names if "switches" in converter else {}),
                settings,
                args.json,
            )
        return DetectOutput(lambda: topology, settings, args.json)
    if args.json:
        raise UsageError("--json goes with --detect (the alerts as JSON lines)")
    if args.out:
        try:
            return FileOutput(args.out)
        except OSError as exc:
            raise UsageError(f"cannot write --out {args.out}: {exc.strerror}") from None
    if not settings.bootstrap:
        raise UsageError("give --bootstrap HOST:PORT (or CLUSTERPULSE_BOOTSTRAP) or --out FILE")
    check_reachable(settings.bootstrap)
    create_topics(settings)
    return KafkaOutput(settings.bootstrap, settings.topic_prefix, f"clusterpulse-ingest-{args.source}")


def _require(args: argparse.Namespace, what: str, hint: str) -> None:
    if not getattr(args, what.replace("-", "_"), None):
        raise UsageError(f"ingest {args.source} needs --{what} ({hint})")


def _check_host(args: argparse.Namespace, inventory: Any, topology: Any) -> None:
    """--host must be an inventory host, or a topology node name (then GPU indexes are cards)."""
    from pipeline.topology.inventory import Host
    from pipeline.topology.synthetic import UnknownEntity

    if inventory.host(args.host):
        return
    try:
        topology.node_index(args.host)
    except UnknownEntity:
        if not args.inventory:
            raise UsageError(
                f"--host {args.host!r} is not a node of the topology and no --inventory maps it "
                "(give --inventory FILE: docs/inventory.md)"
            ) from None
        raise UsageError(
            f"--host {args.host!r} is neither in inventory {args.inventory} (hosts: "
            f"{inventory.known_hosts()}) nor a node of the topology"
        ) from None
    inventory.hosts[args.host] = Host(args.host)


def cmd_ingest(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.topology.synthetic import UnknownEntity

    topology, inventory = topology_and_inventory(settings, args.inventory)
    # no fabric to place switch ports on: each port is its own entity, <switch>:<port name>
    args.ports_as_entities = (
        args.detect and args.source in SWITCH_SOURCES and not settings.topology and not args.inventory
    )
    if args.source in SCRAPE_SOURCES or args.source == "ufm":
        if not args.target and not args.inputs:
            raise UsageError(f"ingest {args.source} needs --target URL or saved files")
    elif not args.inputs:
        raise UsageError(f"ingest {args.source} needs input files")
    for path in args.inputs:
        if not Path(path).exists():
            raise UsageError(f"no such file or directory: {path}")
    if args.source in ("xid", "nvidia-smi", "sysfs"):
        _require(args, "host", "the inventory maps it to a node")
        _check_host(args, inventory, topology)
    if args.source == "perfquery":
        _require(args, "switch", "a topology name, or a GUID the inventory maps")
        by_guid = getattr(topology, "switch_of_guid", lambda guid: None)  # an imported fabric knows its GUIDs
        args.switch_name = inventory.switch_of(args.switch) or by_guid(args.switch) or args.switch
        try:
            topology.parse_switch(args.switch_name)
        except UnknownEntity:
            names = topology.switch_names
            raise UsageError(
                f"--switch {args.switch!r} is neither a switch of the topology ({names[0]}, ..., "
                f"{names[-1]}) nor a GUID the inventory maps"
            ) from None
    if args.source == "steps" and args.detect and not args.json:
        return _steps_detect(args, settings, topology)
    converter: dict = {}  # the handler's switch converter, for the port entities --detect names
    output = _open_output(args, settings, topology, converter)
    args.converter = converter
    try:
        status = HANDLERS[args.source](args, topology, inventory, output)
    except BaseException as exc:
        if not args.detect:  # what was sent still goes out; --detect judges only a finished ingest
            close_output(output)
        if isinstance(exc, (OSError, ValueError)):  # UnknownEntity is a ValueError
            raise CommandError(str(exc)) from None
        raise
    if not close_output(output):
        return 1  # a message the broker did not take fails the command
    return status


def _holds_nothing_to_read(path: str) -> bool:
    """An input that is a directory, an empty file, or a file this process may not read."""
    import os

    target = Path(path)
    try:
        return target.is_dir() or target.stat().st_size == 0 or not os.access(target, os.R_OK)
    except OSError:
        return True


def _refuse_if_no_input_was_usable(reports: list) -> None:
    """Input files each of which holds nothing to read (empty, a directory, unreadable) are a user
    error: one line naming each, exit 2. Inputs of the wrong format or whose rows map to nothing
    keep their reasons and exit 1 (`_finish`)."""
    if not reports or any(
        not report.problem or "://" in report.name or not _holds_nothing_to_read(report.name) for report in reports
    ):
        return
    if len(reports) == 1:
        raise UsageError(f"{reports[0].line()}; nothing ingested")
    raise UsageError(
        f"nothing ingested from {plural(len(reports), 'input')}: " + "; ".join(report.line() for report in reports)
    )


def _finish(summary: Any, reports: list, counts: str) -> int:
    """Why each input gave nothing or less than all of it (one line each), the counts, and the
    exit status: 1 when nothing usable came in at all, unless every input gave nothing because
    there was nothing to find in it (a healthy job's NCCL log); 2, in one line, when every input
    file was empty, a directory or unreadable."""
    if summary.batches == 0:
        _refuse_if_no_input_was_usable(reports)
    for report in reports:
        line = report.line()
        if line and line != report.printed:
            say(f"clusterpulse: {line}")
    say(counts)
    if summary.batches == 0 and not all(report.nothing_found for report in reports):
        say(f"clusterpulse: nothing ingested from {plural(len(reports), 'input')}")
        return 1
    return 0


def _prometheus(args: argparse.Namespace, topology: Any, inventory: Any, output: Any) -> int:
    from producers.ingest import ingest_prometheus

    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    summary, converter, reports = ingest_prometheus(
        args.target,
        args.inputs,
        topology,
        inventory,
        output,
        args.host,
        args.interval,
        args.once,
        lambda: stop["now"],
        switch=args.switch,
        ports_as_entities=args.ports_as_entities,
    )
    args.converter["switches"] = converter.switches
    r = converter.report
    gpus = f"; unmapped GPUs: {dict(r.unmapped_gpus)}" if r.unmapped_gpus else ""
    return _finish(
        summary,
        reports,
        f"{plural(summary.batches, 'batch', 'batches')} from {plural(r.samples, 'sample')} "
        f"({r.mapped:,} mapped); {sum(r.unknown_metrics.values()):,} samples of "
        f"{plural(len(r.unknown_metrics), 'unmapped metric')} ignored; "
        f"{plural(r.bad_lines, 'unparseable line')}; unmapped hosts: {dict(r.unmapped_hosts) or 'none'}"
        f"{gpus}; {plural(len(summary.errors), 'failed scrape')}",
    )


def _xid(args: argparse.Namespace, topology: Any, inventory: Any, output: Any) -> int:
    from producers.adapters import FormatError, read_text
    from producers.adapters.kernel_log import KernelLogReport, no_xid_reason, parse_xids, xid_batches
    from producers.ingest import ingest_inputs

    try:
        boot = (
            int(datetime.fromisoformat(args.boot_time.replace("Z", "+00:00")).timestamp() * 1000)
            if args.boot_time
            else None
        )
    except ValueError:
        raise UsageError(f"--boot-time wants an ISO 8601 time, got {args.boot_time!r}") from None
    total = KernelLogReport()

    def convert(path: str, skips: Any) -> list:
        text = read_text(path)
        report = KernelLogReport(skips=skips)
        events = parse_xids(text, boot, report)
        total.lines += report.lines
        total.xid_lines += report.xid_lines
        total.undated += report.undated
        if not report.xid_lines:
            raise FormatError(no_xid_reason(text, report.lines))
        batches = xid_batches(events, args.host, inventory, report)
        for pci, n in report.unmapped.items():
            total.unmapped[pci] = total.unmapped.get(pci, 0) + n
        return batches

    summary, reports = ingest_inputs(args.inputs, convert, output, topology)
    return _finish(
        summary,
        reports,
        f"{plural(total.xid_lines, 'Xid line')} in {plural(total.lines, 'line')} -> "
        f"{plural(summary.batches, 'event batch', 'event batches')}; "
        f"unmapped PCI ids: {total.unmapped or 'none'}; undated: {total.undated}",
    )


def _nvidia_smi(args: argparse.Namespace, topology: Any, inventory: Any, output: Any) -> int:
    from producers.adapters import read_text
    from producers.adapters.nvidia_smi import parse_nvidia_smi
    from producers.ingest import ingest_inputs

    now_ms = int(time.time() * 1000)
    summary, reports = ingest_inputs(
        args.inputs,
        lambda path, skips: parse_nvidia_smi(read_text(path), args.host, inventory, now_ms, skips),
        output,
        topology,
    )
    return _finish(
        summary, reports, f"{plural(summary.batches, 'batch', 'batches')} from {plural(len(args.inputs), 'input')}"
    )


def _perfquery(args: argparse.Namespace, topology: Any, inventory: Any, output: Any) -> int:
    from producers.adapters import read_text
    from producers.adapters.network import parse_perfquery
    from producers.ingest import ingest_inputs

    now_ms = int(time.time() * 1000)
    summary, reports = ingest_inputs(
        args.inputs, lambda path, skips: [parse_perfquery(read_text(path), args.switch_name, now_ms)], output, topology
    )
    return _finish(
        summary, reports, f"{plural(summary.batches, 'batch', 'batches')} from {plural(len(args.inputs), 'input')}"
    )


def _ufm(args: argparse.Namespace, topology: Any, inventory: Any, output: Any) -> int:
    """UFM Telemetry JSON messages (files), or its Prometheus text (files or --target)."""
    from producers.adapters import read_text
    from producers.adapters.switches import SwitchConverter, ufm_messages

    def json_messages(path: str) -> bool:
        try:
            return read_text(path).lstrip().startswith("{")
        except ValueError:  # empty, binary: the Prometheus path names the file and why
            return False

    if args.target or any(not json_messages(path) for path in args.inputs if Path(path).is_file()):
        return _prometheus(args, topology, inventory, output)  # UFM's Prometheus endpoint: the same metric names
    from producers.ingest import ingest_inputs

    converter = SwitchConverter(None if args.ports_as_entities else topology, inventory)
    args.converter["switches"] = converter

    def convert(path: str, skips: Any) -> list:
        exposition, ts_ms = ufm_messages(read_text(path))
        batches = converter.convert(exposition, ts_ms or int(time.time() * 1000), args.switch)
        skips.merge(converter.skips)
        return batches

    summary, reports = ingest_inputs(args.inputs, convert, output, None if args.ports_as_entities else topology)
    r = converter.report
    return _finish(
        summary,
        reports,
        f"{plural(summary.batches, 'batch', 'batches')} from {plural(r.samples, 'counter')} "
        f"({r.mapped:,} mapped); unmapped switches: {dict(r.unmapped_switches) or 'none'}",
    )


def _sysfs(args: argparse.Namespace, topology: Any, inventory: Any, output: Any) -> int:
    from producers.adapters.network import read_sysfs
    from producers.ingest import IngestSummary, ingest_inputs

    def poll() -> tuple[Any, list]:
        now_ms = int(time.time() * 1000)
        return ingest_inputs(
            args.inputs,
            lambda path, skips: read_sysfs(path, args.host, inventory, topology, now_ms, args.sysfs_kind, skips)[0],
            output,
            topology,
        )

    if args.interval is None:
        summary, reports = poll()
        return _finish(
            summary, reports, f"{plural(summary.batches, 'batch', 'batches')} from {plural(len(args.inputs), 'input')}"
        )
    if args.interval <= 0:
        raise UsageError(f"--interval wants a positive number of seconds, got {args.interval:g}")
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    total, printed, polls = IngestSummary(), set(), 0
    say(f"clusterpulse: polling {', '.join(args.inputs)} every {args.interval:g} s (SIGTERM or Ctrl-C stops)")
    try:
        while not stop["now"]:
            started = time.monotonic()
            summary, reports = poll()
            output.flush()
            polls += 1
            total.batches += summary.batches
            for report in reports:  # a problem is said once, when it starts
                line = report.line()
                if line and line not in printed:
                    say(f"clusterpulse: {line}")
                    printed.add(line)
            time.sleep(max(0.0, args.interval - (time.monotonic() - started)))
    except KeyboardInterrupt:
        pass
    say(f"clusterpulse: {plural(total.batches, 'batch', 'batches')} in {plural(polls, 'poll')}")
    return 0 if total.batches else 1


def _steps(args: argparse.Namespace, topology: Any, inventory: Any, output: Any) -> int:
    from producers.ingest import ingest_inputs

    summary, reports = ingest_inputs(
        args.inputs, lambda path, skips: _step_batches(args, path, topology), output, topology
    )
    return _finish(
        summary, reports, f"{plural(summary.batches, 'batch', 'batches')} from {plural(len(args.inputs), 'input')}"
    )


def _training_log(args: argparse.Namespace, topology: Any, inventory: Any, output: Any) -> int:
    """Megatron-LM and DeepSpeed step times, or NCCL collective timeouts, from logs read whole or followed."""
    from producers.adapters.nccl_log import NcclLogParser, read_nccl_log
    from producers.adapters.steps import timeout_batches, to_batches
    from producers.adapters.training_logs import LogFollower, TrainingLogParser, read_training_log
    from producers.ingest import IngestSummary, InputReport, ingest_inputs, send_batches

    nccl = args.source == "nccl"
    what = "collective timeouts" if nccl else "steps"

    def batches(records: list) -> list:
        return (timeout_batches if nccl else to_batches)(records, topology, args.first_node)

    if not args.follow:
        healthy: dict[str, int] = {}  # NCCL logs without a timeout: path -> their NCCL lines

        def convert(path: str, skips: Any) -> list:
            if not nccl:
                return batches(read_training_log(path, args.source, args.job, args.rank))
            timeouts, nccl_lines = read_nccl_log(path, args.job, args.rank)
            if not timeouts and nccl_lines:
                healthy[path] = nccl_lines
            return batches(timeouts)

        summary, reports = ingest_inputs(args.inputs, convert, output, topology)
        for report in reports:
            if report.name in healthy:
                report.nothing_found = f"no collective timeout in its {plural(healthy[report.name], 'NCCL line')}"
        counts = f"{plural(summary.batches, 'batch', 'batches')} from {plural(len(args.inputs), 'input')}"
        return _finish(summary, reports, counts)
    parsers = {
        path: NcclLogParser(args.job or Path(path).stem, args.rank)
        if nccl
        else TrainingLogParser(args.source, args.job or Path(path).stem, args.rank)
        for path in args.inputs
    }
    follower = LogFollower(args.inputs, from_start=args.from_start)
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    say(f"clusterpulse: following {', '.join(args.inputs)} (SIGTERM or Ctrl-C stops)")
    total, printed = IngestSummary(), set()
    try:
        while not stop["now"]:
            now_ms = int(time.time() * 1000)
            records = [r for path, line in follower.lines() if (r := parsers[path].feed(line, now_ms)) is not None]
            report = InputReport("the logs")
            send_batches(batches(records), output, total, topology, report)
            output.flush()
            line = report.line()
            if line and line not in printed:  # a problem is said once, when it starts
                say(f"clusterpulse: {line}")
                printed.add(line)
            time.sleep(1.0)
    except KeyboardInterrupt:
        pass
    say(f"clusterpulse: {plural(total.batches, 'batch', 'batches')} of {what}")
    return 0


HANDLERS = {
    "prometheus": _prometheus,
    "xid": _xid,
    "nvidia-smi": _nvidia_smi,
    "perfquery": _perfquery,
    "sysfs": _sysfs,
    "steps": _steps,
    "ufm": _ufm,
    "snmp": _prometheus,
    "gnmic": _prometheus,
    "ib-exporter": _prometheus,
    "megatron": _training_log,
    "deepspeed": _training_log,
    "nccl": _training_log,
}


def _step_batches(args: argparse.Namespace, path: str, topology: Any) -> list:
    from producers.adapters.steps import read_bytedance_trace, read_pai_minibatch, to_batches

    fmt = args.format or ("bytedance" if path.endswith(".parquet") else "pai")
    records = (
        read_pai_minibatch(path, args.job)
        if fmt == "pai"
        else read_bytedance_trace(path, args.job, by_stage=not args.no_stage_groups)
    )
    return to_batches(records, topology, args.first_node)


def _steps_detect(args: argparse.Namespace, settings: Settings, topology: Any) -> int:
    """Alerts per input on stdout; an input that gives no steps is one line on stderr, and the
    command fails only when none of its inputs gave steps."""
    from pipeline.detect.straggler import StragglerDetector
    from producers.ingest import InputReport

    usable, unusable = 0, []
    for path in args.inputs:
        try:
            batches = _step_batches(args, path, topology)
        except OSError as exc:
            unusable.append(InputReport(path, problem=f"cannot read: {exc.strerror or exc}"))
            continue
        except ValueError as exc:
            unusable.append(InputReport(path, problem=str(exc)))
            continue
        usable += 1
        detector = StragglerDetector(topology, settings.detect.straggler)
        alerts = [a for b in batches for a in detector.push(b)]
        firing = [a for a in alerts if a.status == "firing"]
        ranks = sorted({(a.labels["job"], int(a.labels["rank"])) for a in firing})
        print(
            f"{path}: {plural(len(firing), 'straggler alert')} on {plural(len(ranks), 'rank')}: "
            + (", ".join(f"{job} rank {rank}" for job, rank in ranks) or "none"),
            flush=True,
        )
        for a in firing:
            print(f"  step {a.evidence['step']}: {a.summary}")
    if not usable:
        _refuse_if_no_input_was_usable(unusable)
    for report in unusable:
        say(f"clusterpulse: {report.line()}")
    if not usable:
        say(f"clusterpulse: no steps in {plural(len(args.inputs), 'input')}: nothing to detect")
        return 1
    return 0
