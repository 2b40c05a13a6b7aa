"""`clusterpulse eval`: run scenarios end to end and score the alerts against the injected faults.

Offline mode feeds the simulator's encoded messages straight into the same detector and
correlation core the worker runs, without Kafka. Kafka mode runs the real thing: embedded broker,
simulator at max speed, a worker, alerts read back from the alerts topic. Ground truth is read
here and nowhere else.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from pipeline.correlate.correlator import Correlator
from pipeline.correlate.rules import SYMPTOMS
from pipeline.detect import DetectorSet
from pipeline.eval.scorer import Fault, match, summarize
from pipeline.model.schemas import Alert, Batch, decode_batch
from pipeline.model.topics import ALERTS
from pipeline.notify.console import AlertPrinter
from pipeline.notify.delivery import HELD_ROOT_KINDS
from pipeline.ops.broker import EmbeddedBroker, create_topics, stop_process
from pipeline.ops.processes import drain, spawn, write_settings_file
from pipeline.settings import Settings
from pipeline.topology.protocol import ClusterTopology
from producers.scenario import Scenario, load_scenario
from producers.simulator import Simulator


def faults_of(scenario: Scenario, step_times: dict[str, dict[int, float]] | None = None) -> list[Fault]:
    """The injected faults, each card fault with the step time of the job its card runs and, when
    `step_times` (job -> step -> seconds since the start it was first reported) is given, the times
    that job's steps were reported: latency in steps then counts the steps the job made, not a
    checkpoint pause or a stall in units of its step time."""
    topo = scenario.topology

    def job_of(target: str) -> Any:
        if any(job.name == target for job in scenario.jobs) or topo.kind_of(target) != "card":
            return None
        node, _ = topo.parse_card(target)
        return next((j for j in scenario.jobs if j.first_node <= node < j.first_node + j.nodes), None)

    faults = []
    for t in Simulator(scenario).ground_truth():
        job = job_of(t.target)
        times = tuple(sorted((step_times or {}).get(job.name, {}).values())) if job and step_times is not None else None
        faults.append(Fault(t.kind, t.target, t.start_s, t.end_s, job.step_s if job else None, times))
    return faults


def skew_tolerance_s(scenario: Scenario) -> float:
    """How far a collector's clock may run ahead in this scenario (clipped at 2 sd): a detection
    stamped that much before its fault began still counts."""
    return 2 * scenario.noise.clock_skew_ms / 1000


def grouping_holds(settings: Settings) -> dict[str, float]:
    """Seconds each alert kind waits before it can be paged: symptoms wait for a root cause in the
    correlator (event time), root causes wait for their consequences in the notifier."""

    receiver_wait = max((r.group_wait_s for r in settings.notify.receivers), default=5.0)
    holds = {kind: settings.detect.correlate.group_wait_s for kind in SYMPTOMS}
    holds.update({kind: receiver_wait for kind in HELD_ROOT_KINDS})
    return holds


class OfflineCore:
    """The worker's detector and correlation core without Kafka: every stream is read in tick order,
    so after each tick every source's watermark is that tick."""

    def __init__(self, topology: ClusterTopology, settings: Settings) -> None:
        self.detectors = DetectorSet(topology, settings.detect)
        self.correlator = Correlator(topology, settings.detect.correlate, clock=lambda: 0.0)

    def push(self, batch: Batch) -> list[Alert]:
        alerts: list[Alert] = []
        for finding in self.detectors.push(batch, 0):
            alerts += self.correlator.push(finding, batch.kind)
        return alerts

    def end_tick(self, ts_ms: int) -> list[Alert]:
        for job, nodes in self.detectors.take_placements().items():
            self.correlator.place(job, nodes)
        self.correlator.activity(self.detectors.take_activity())
        self.correlator.progress(self.detectors.take_progress())
        self.correlator.timeouts(self.detectors.take_timeouts())
        alerts: list[Alert] = []
        for kind in ("card", "port", "step"):  # every stream has been read up to this tick
            alerts += self.correlator.advance(kind, ts_ms)
        return alerts

    def finish(self) -> list[Alert]:
        return self.correlator.flush()


def run_offline(
    scenario: Scenario, settings: Settings, step_times: dict[str, dict[int, float]] | None = None
) -> list[Alert]:
    """Alerts of one scenario through the detector and correlation core, no broker. `step_times`,
    when given, collects when each job's steps were first reported (for latency in steps)."""
    core = OfflineCore(scenario.topology, settings)
    alerts: list[Alert] = []
    for ts_ms, messages in Simulator(scenario).ticks():
        for message in messages:
            batch = decode_batch(message.value)  # the same bytes the worker decodes
            if step_times is not None and batch.kind == "step" and batch.job:
                seen = step_times.setdefault(batch.job, {})
                for step in set(batch.columns["step"].tolist()) - seen.keys():
                    seen[step] = (batch.ts_ms - scenario.start_ms) / 1000
            alerts += core.push(batch)
        alerts += core.end_tick(ts_ms)
    return alerts + core.finish()


def run_kafka(scenario_path: str | None, settings: Settings, log_dir: Path, timeout_s: float = 1800) -> list[Alert]:
    """Alerts of one scenario through a real broker and worker (embedded broker unless bootstrap)."""

    scenario = load_scenario(scenario_path)
    prefix = f"eval{uuid.uuid4().hex[:8]}"
    broker = None if settings.bootstrap else EmbeddedBroker(log_path=log_dir / "broker.log").start()
    bootstrap = settings.bootstrap or broker.bootstrap  # type: ignore[union-attr]
    settings = settings.model_copy(
        update={
            "bootstrap": bootstrap,
            "topic_prefix": prefix,
            "group_id": f"{prefix}-worker",
            "data_dir": str(log_dir / "lake"),
        }
    ).for_scenario(scenario)
    procs: list[subprocess.Popen] = []
    printer = AlertPrinter(bootstrap, settings.topic(ALERTS), stream=open(log_dir / "alerts.log", "w"))
    try:
        create_topics(settings)
        config = write_settings_file(settings, log_dir)
        env_args = ["--config", str(config)]  # children get the settings from this file only
        worker = spawn([*env_args, "worker"], log_dir / "worker.log")
        procs.append(worker)
        printer.start()
        sim_args = ["simulate", "--speed", "max"] + (["--scenario", scenario_path] if scenario_path else [])
        sim = spawn([*env_args, *sim_args], log_dir / "simulator.log")
        procs.append(sim)
        deadline = time.monotonic() + timeout_s
        while sim.poll() is None:
            if worker.poll() is not None:
                raise RuntimeError(f"the worker exited with {worker.returncode}; see {log_dir / 'worker.log'}")
            if time.monotonic() > deadline:
                raise TimeoutError("the simulator did not finish in time")
            time.sleep(0.5)
        if sim.returncode != 0:
            raise RuntimeError(f"the simulator failed; see {log_dir / 'simulator.log'}")
        if not drain(bootstrap, settings, threading.Event(), max(deadline - time.monotonic(), 1.0), worker):
            raise RuntimeError(f"the worker did not drain; see {log_dir / 'worker.log'}")
        seen = -1
        while len(printer.alerts) != seen:  # until the printer has seen the last alert
            seen = len(printer.alerts)
            time.sleep(2.0)
        return list(printer.alerts)
    finally:
        printer.stop()
        for proc in reversed(procs):
            stop_process(proc, timeout_s=settings.shutdown_timeout_s + 5)
        if broker is not None:
            broker.stop()


def evaluate(
    paths: list[str], settings: Settings, offline: bool, log_root: Path | None = None, progress=sys.stderr
) -> dict:  # noqa: ANN001
    """Score every scenario; returns the JSON report of the CLI."""

    results = []
    holds = grouping_holds(settings)
    per_scenario = []
    for path in paths:
        scenario = load_scenario(path)
        started = time.monotonic()
        step_times: dict[str, dict[int, float]] | None = None
        if offline:
            step_times = {}
            alerts = run_offline(scenario, settings, step_times)
        else:
            log_dir = Path(tempfile.mkdtemp(prefix="clusterpulse-eval-", dir=log_root))
            alerts = run_kafka(path, settings, log_dir)
        result = match(
            faults_of(scenario, step_times),
            alerts,
            scenario.start_ms,
            float(scenario.duration_s),
            holds,
            skew_tolerance_s(scenario),
        )
        results.append(result)
        one = summarize([result])
        per_scenario.append(
            {
                "scenario": scenario.name,
                "path": path,
                "mode": "offline" if offline else "kafka",
                "elapsed_s": round(time.monotonic() - started, 1),
                **one["overall"],
                "faults": [
                    {
                        "kind": o.fault.kind,
                        "target": o.fault.target,
                        "start_s": o.fault.start_s,
                        "detected_by": o.alert.kind if o.alert else None,
                        "latency_s": o.latency_s,
                        "latency_steps": o.latency_steps,
                        "notify_latency_s": o.notify_latency_s,
                        "pages": o.pages,
                        "resolved_early": o.resolved_early,
                        "stuck": o.stuck,
                    }
                    for o in result.outcomes
                ],
                "false_positive_alerts": [
                    {"kind": a.kind, "entity": a.entity, "starts_at": a.starts_at, "summary": a.summary}
                    for a in result.false_positives
                ],
                "alerts": [json.loads(a.to_json()) for a in alerts],
            }
        )
        print(
            f"{scenario.name}: {one['overall']['detected']}/{one['overall']['injected']} detected, "
            f"{one['overall']['false_positives']} false positives, {one['overall']['grouped']} grouped "
            f"({per_scenario[-1]['elapsed_s']} s)",
            file=progress,
            flush=True,
        )
    report = summarize(results)
    return {"scenarios": per_scenario, "by_kind": report["by_kind"], "overall": report["overall"]}
