"""Benchmark: one scenario through ClusterPulse and through Prometheus + Alertmanager, side by side.

    .venv/bin/python -m bench.peer.run [--scenario FILE] [--intervals 15,5] [--grace 60] [--keep DIR]

One simulator, at real-time pace, feeds both: every tick's batches go to Kafka (the embedded
broker and one ClusterPulse worker) and into dcgm-exporter and snmp_exporter style targets
(bench/peer/exporters.py) that a real Prometheus (Debian `prometheus`) scrapes at each interval
with the rules in bench/peer/rules.yml, each Prometheus with its own real Alertmanager (Debian
`prometheus-alertmanager`, grouping by alertname and instance, group_wait 30 s). Every system
posts to one webhook receiver in this process. Prints, per fault, the time from the fault's first
tick to the first page naming its target and the pages about it, then CPU seconds and peak RSS of
each system's processes. The default scenario: 10,240 cards, one fault of each kind in jobs of
their own, all from t = 60 s, 360 s long.
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import yaml

from bench.latency import TimedReceiver, start_pipeline
from bench.peer.pages import Page, alertmanager_page, clusterpulse_page, score
from bench.pipeline import proc_stats
from pipeline.model.schemas import decode_batch
from pipeline.ops.broker import EmbeddedBroker, free_port, stop_process
from producers.output import KafkaOutput, Pacer
from producers.scenario import DEFAULT_SCENARIO, Scenario, load_scenario
from producers.served_fleet import ClusterExporters, ExporterServer
from producers.simulator import Simulator

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
FAULT_START_S = 60


def default_scenario() -> dict:
    """10,240 cards; each fault in a job of its own so that one job's stall hides no other fault.
    Two card failures: as in the fleets behind the realistic profile, most lost cards send no
    fatal XID first (`silent_failure_share`), so a run usually has one of each kind."""
    data = copy.deepcopy(DEFAULT_SCENARIO)
    start = FAULT_START_S
    # seed 4: the first whose draws give one lost card with XID 79 and one without
    data.update(
        name="peer",
        seed=4,
        duration_s=360,
        jobs=[
            {"name": "straggle", "first_node": 0, "nodes": 256, "step_s": 2.0},
            {"name": "lost-a", "first_node": 256, "nodes": 128, "step_s": 2.0},
            {"name": "lost-b", "first_node": 384, "nodes": 128, "step_s": 2.0},
            {"name": "ecc", "first_node": 512, "nodes": 256, "step_s": 2.0},
            {"name": "thermal", "first_node": 768, "nodes": 128, "step_s": 1.5},
            {"name": "crc", "first_node": 896, "nodes": 128, "step_s": 1.5},
            {"name": "linkdown", "first_node": 1024, "nodes": 128, "step_s": 1.5},
            {"name": "node", "first_node": 1152, "nodes": 64, "step_s": 1.0},
            {"name": "leaf", "first_node": 1216, "nodes": 64, "step_s": 1.0},
        ],
        faults=[
            {"kind": "straggler", "target": "node0100-card5", "start_s": start, "severity": 0.3},
            {"kind": "card_failure", "target": "node0300-card6", "start_s": start},
            {"kind": "card_failure", "target": "node0400-card2", "start_s": start},
            {"kind": "ecc_error", "target": "node0600-card1", "start_s": start},
            {"kind": "thermal_throttle", "target": "node0800-card2", "start_s": start, "severity": 0.5},
            {"kind": "link_degradation", "target": "node0900-nic3~leaf148", "start_s": start, "severity": 0.5},
            {
                "kind": "link_degradation",
                "target": "node0950-nic5~leaf229",
                "start_s": start,
                "duration_s": 10,
                "severity": 0.5,
            },  # a CRC burst
            {"kind": "link_down", "target": "node1100-nic2~leaf114", "start_s": start},
            {"kind": "node_failure", "target": "node1160", "start_s": start},
            {"kind": "switch_failure", "target": "leaf038", "start_s": start},
        ],
    )
    return data


def get_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def wait_ready(name: str, url: str, proc: subprocess.Popen, log: Path, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not get_ok(url):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"{name} did not get ready: {log.read_text()[-2000:]}")
        time.sleep(0.3)


class Incumbent:
    """One Prometheus scraping every 'interval' seconds, and its own Alertmanager."""

    def __init__(
        self,
        interval: int,
        tmp: Path,
        exporter: str,
        topology,
        hook: str,  # noqa: ANN001
        group_wait: str = "30s",
    ) -> None:
        self.interval, self.dir = interval, tmp / f"prometheus-{interval}s"
        self.dir.mkdir()
        self.am_port, self.prom_port = free_port(), free_port()
        nodes = [
            {"targets": [exporter], "labels": {"__metrics_path__": f"/node/{n}", "instance": n}}
            for n in topology.node_names
        ]
        switches = [
            {"targets": [exporter], "labels": {"__metrics_path__": f"/switch/{s}", "instance": s}}
            for s in topology.switch_names
        ]
        (self.dir / "nodes.json").write_text(json.dumps(nodes))
        (self.dir / "switches.json").write_text(json.dumps(switches))
        (self.dir / "prometheus.yml").write_text(
            yaml.safe_dump(
                {
                    "global": {
                        "scrape_interval": f"{interval}s",
                        "evaluation_interval": f"{interval}s",
                        "scrape_timeout": f"{min(interval, 10)}s",
                    },
                    "rule_files": [str(HERE / "rules.yml")],
                    "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{self.am_port}"]}]}]},
                    "scrape_configs": [
                        {"job_name": "dcgm", "file_sd_configs": [{"files": [str(self.dir / "nodes.json")]}]},
                        {"job_name": "snmp", "file_sd_configs": [{"files": [str(self.dir / "switches.json")]}]},
                    ],
                }
            )
        )
        (self.dir / "alertmanager.yml").write_text(
            yaml.safe_dump(
                {
                    "route": {
                        "receiver": "hook",
                        "group_by": ["alertname", "instance"],
                        "group_wait": group_wait,
                        "group_interval": "5m",
                        "repeat_interval": "4h",
                    },
                    "receivers": [{"name": "hook", "webhook_configs": [{"url": hook, "send_resolved": True}]}],
                }
            )
        )
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self) -> None:
        am_log, prom_log = self.dir / "alertmanager.log", self.dir / "prometheus.log"
        self.procs["alertmanager"] = subprocess.Popen(
            [
                "prometheus-alertmanager",
                f"--config.file={self.dir / 'alertmanager.yml'}",
                f"--storage.path={self.dir / 'am-data'}",
                f"--web.listen-address=127.0.0.1:{self.am_port}",
                "--cluster.listen-address=",
                "--log.level=warn",
            ],
            stdout=open(am_log, "wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs["prometheus"] = subprocess.Popen(
            [
                "prometheus",
                f"--config.file={self.dir / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.dir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.prom_port}",
                "--log.level=warn",
            ],
            stdout=open(prom_log, "wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_ready("alertmanager", f"http://127.0.0.1:{self.am_port}/-/ready", self.procs["alertmanager"], am_log)
        wait_ready("prometheus", f"http://127.0.0.1:{self.prom_port}/-/ready", self.procs["prometheus"], prom_log)

    def stats(self) -> tuple[float, float]:
        """(CPU s, peak RSS MiB) of Prometheus and Alertmanager together."""
        stats = [proc_stats(p.pid) for p in self.procs.values()]
        return sum(c for c, _ in stats), sum(r for _, r in stats)

    def stop(self) -> None:
        for proc in self.procs.values():
            stop_process(proc, 20)


def feed(simulator: Simulator, output: KafkaOutput, exporters: ClusterExporters, tick_wall: dict[int, float]) -> float:
    """The simulator at real-time pace into Kafka and the exporters; notes each tick's wall time.
    Returns how far, at most, a tick came later than real-time pace (s): a busy machine shows here."""
    pacer, origin, behind = Pacer(1.0), None, 0.0
    for ts_ms, messages in simulator.ticks():
        pacer.wait_until(ts_ms)
        now = time.time()
        origin = origin or (now, ts_ms)
        behind = max(behind, now - origin[0] - (ts_ms - origin[1]) / 1000)
        tick_wall.setdefault(ts_ms, now)
        for message in messages:
            output.send(message)
        exporters.apply([decode_batch(m.value) for m in messages])
    output.flush()
    return behind


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", help="scenario file (default: the one described above)")
    parser.add_argument("--intervals", default="15,5", help="Prometheus scrape intervals, s (default 15,5)")
    parser.add_argument("--grace", type=float, default=60, help="s to wait for pages after the scenario ends")
    parser.add_argument("--keep", help="keep configs and logs in this directory")
    args = parser.parse_args()
    for tool in ("prometheus", "prometheus-alertmanager"):
        if not shutil.which(tool):
            sys.exit(f"bench/peer needs `{tool}` (Debian: apt install prometheus prometheus-alertmanager)")
    intervals = [int(v) for v in args.intervals.split(",")]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop every child and clean up, as Ctrl-C does
    tmp = Path(tempfile.mkdtemp(prefix="clusterpulse-peer-", dir=args.keep))
    try:
        run(args, intervals, tmp)
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


def run(args: argparse.Namespace, intervals: list[int], tmp: Path) -> None:
    if args.scenario:
        scenario = load_scenario(args.scenario)
    else:
        (tmp / "scenario.yaml").write_text(yaml.safe_dump(default_scenario()))
        scenario = load_scenario(tmp / "scenario.yaml")
    topo = scenario.topology
    simulator = Simulator(scenario)
    silent = simulator.silent_card_failures()
    receiver = TimedReceiver("127.0.0.1", free_port(), echo=None)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    exporters = ClusterExporters(topo)
    server = ExporterServer(exporters)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    incumbents = [Incumbent(i, tmp, server.address, topo, f"{receiver.url}prometheus-{i}s") for i in intervals]
    tick_wall: dict[int, float] = {}
    with EmbeddedBroker(log_path=tmp / "broker.log") as broker:
        settings, _, worker = start_pipeline(broker, tmp, "bench-peer", receiver.url + "clusterpulse", scenario)
        try:
            for incumbent in incumbents:
                incumbent.start()
            print(
                f"{scenario.shape.cards:,} cards, {scenario.duration_s:.0f} s at real-time pace; ClusterPulse and "
                f"Prometheus at {', '.join(f'{i} s' for i in intervals)} ({len(topo.node_names)} node and "
                f"{len(topo.switch_names)} switch targets each); logs in {tmp}"
                + ("" if args.keep else " (removed at the end: --keep DIR keeps them)"),
                flush=True,
            )
            behind = feed(
                simulator, KafkaOutput(broker.bootstrap, settings.topic_prefix, "bench-peer"), exporters, tick_wall
            )
            print(f"the simulator ran at most {behind:.1f} s behind real time", flush=True)
            time.sleep(args.grace)  # grouping holds and the last evaluations
            stats = {"ClusterPulse worker": proc_stats(worker.pid), "broker": proc_stats(broker.process.pid)}  # type: ignore[union-attr]
            stats.update({f"Prometheus {i.interval} s + Alertmanager": i.stats() for i in incumbents})
        finally:
            for incumbent in incumbents:
                incumbent.stop()
            stop_process(worker, 20)
            server.shutdown()
            receiver.shutdown()
    report(scenario, tick_wall, receiver.arrivals, intervals, stats, silent)


def report(
    scenario: Scenario,
    tick_wall: dict[int, float],
    arrivals: list,
    intervals: list[int],
    stats: dict[str, tuple[float, float]],
    silent: set[str],
) -> None:
    """The side-by-side tables (markdown); `silent`: card failures that sent no XID."""
    topo = scenario.topology
    systems = {"ClusterPulse": "/clusterpulse", **{f"Prometheus {i} s": f"/prometheus-{i}s" for i in intervals}}
    pages: dict[str, list[Page]] = {name: [] for name in systems}
    for at, path, body in arrivals:
        for name, prefix in systems.items():
            if path == prefix and isinstance(body, dict):
                page = clusterpulse_page(body, at) if name == "ClusterPulse" else alertmanager_page(body, at, topo)
                if page:
                    pages[name].append(page)
    print("\n| fault | " + " | ".join(f"{name}: to webhook, pages" for name in systems) + " |")
    print("|---|" + "---|" * len(systems))
    missed = dict.fromkeys(systems, 0)
    for fault in scenario.faults:  # from the first tick at or after the fault's start
        first = scenario.start_ms + fault.start_s * 1000
        started = min((wall for ts, wall in tick_wall.items() if ts >= first), default=None)
        if started is None:
            print(f"| {fault.kind} {fault.target} | not reached: the simulator stopped first |")
            continue
        cells = []
        for name in systems:
            result = score(fault, started, pages[name], topo)
            missed[name] += result.latency_s is None
            cells.append(
                f"{result.latency_s:.1f} s, {result.pages}"
                if result.latency_s is not None
                else f"missed, {result.pages}"
            )
        span = f", {fault.duration_s:.0f} s" if fault.duration_s is not None else ""
        if fault.kind == "card_failure":
            span += " (no XID: the card vanished)" if fault.target in silent else " (XID)"
        print(f"| {fault.kind} {fault.target}{span} | " + " | ".join(cells) + " |")
    print("| missed faults | " + " | ".join(str(missed[name]) for name in systems) + " |")
    print("| all pages | " + " | ".join(str(len(pages[name])) for name in systems) + " |")
    print("\n| processes | CPU s | peak RSS |\n|---|---|---|")
    for name, (cpu, rss) in stats.items():
        print(f"| {name} | {cpu:.1f} | {rss:,.0f} MiB |")


if __name__ == "__main__":
    main()
