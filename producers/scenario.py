"""Scenario files (`docs/scenarios.md`): load, fill defaults, validate before anything runs."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from pipeline.model.yaml_errors import yaml_problem
from pipeline.topology.synthetic import ClusterShape, Topology, UnknownEntity


class ScenarioError(ValueError):
    """A scenario that cannot run; the message names the field and the bad value."""


# fault kind -> (target entity kinds, default severity)
FAULT_KINDS: dict[str, tuple[tuple[str, ...], float]] = {
    "straggler": (("card",), 0.2),
    "thermal_throttle": (("card",), 0.5),
    "link_degradation": (("link",), 0.5),
    "link_flap": (("link",), 0.6),
    "link_down": (("link",), 1.0),
    "card_failure": (("card",), 1.0),
    "ecc_error": (("card",), 1.0),
    "node_failure": (("node",), 1.0),
    "switch_failure": (("leaf", "spine", "core", "tier 4", "tier 5", "tier 6"), 1.0),
    "job_hang": (("job",), 1.0),  # the job's ranks stop completing steps; its cards spin in the collective
}
VENDORS = ("nvidia", "ascend")


@dataclass(frozen=True)
class Job:
    name: str
    first_node: int
    nodes: int
    step_s: float


@dataclass(frozen=True)
class Noise:
    """What a healthy cluster does anyway. The defaults are the clean profile (independent,
    one-sample noise); `noise: {profile: realistic}` sets the fields below the line to the values
    of `REALISTIC` (each with its source)."""

    step_jitter: float = 0.03
    checkpoint_every_s: float = 300.0
    checkpoint_s: float = 20.0
    transient_spikes_per_hour: float = 30.0
    background_crc_per_hour: float = 2.0
    util_jitter: float = 0.05
    # ---- realism: 0 = off ----
    card_temp_offset_c: float = 0.0  # sd of each card's persistent temperature offset
    card_power_offset: float = 0.0  # sd of each card's persistent power offset (fraction)
    card_clock_offset: float = 0.0  # sd of each card's persistent SM clock offset (fraction)
    rank_speed_offset: float = 0.0  # sd of each rank's persistent compute-time offset (fraction, clipped at 2 sd)
    step_drift: float = 0.0  # sd of a job-wide, autocorrelated step-time factor (fraction)
    step_autocorr: float = 0.0  # its lag-1 autocorrelation per step
    slow_phases_per_hour: float = 0.0  # job-wide slow phases (data loading, eval, logging) per job
    slow_phase_s: float = 20.0
    slow_phase_factor: float = 0.3  # compute time grows by this fraction on every rank
    link_errors_per_hour: float = 0.0  # CRC baseline of every healthy link end
    link_bursts_per_hour: float = 0.0  # per link: a burst of 1-3 errors a sample for 1-3 samples
    missing_sample_rate: float = 0.0  # a node's card sample not sent this tick (a missed scrape)
    counter_resets_per_hour: float = 0.0  # cluster-wide: a node's card counters or a leaf's port counters restart at 0
    late_message_rate: float = 0.0  # a message delivered one tick late, after the next tick's messages
    clock_skew_ms: float = 0.0  # sd of each collector's clock offset (clipped at 2 sd): its samples' time stamps
    silent_failure_share: float = 0.0  # card failures that send no fatal error code: the card just goes silent
    ecc_failure_share: float = 0.0  # ecc_error faults whose card fails `ecc_failure_after_s` after the first error
    ecc_failure_after_s: float = 60.0
    job_restarts_per_hour: float = 0.0  # per job: it stops, waits `restart_s`, resumes from its last checkpoint's step
    restart_s: float = 120.0
    restart_warmup_steps: int = 0  # first steps after a restart, twice as slow on every rank
    nic_reports: float = 0.0  # 1: hosts report the host end of their links (NIC counters) beside the switches


# The `realistic` profile: figures and where they come from (../shared/samples, SOURCES.md).
REALISTIC = Noise(
    # dcgm_exporter/prometheus_api_query/aicr_eks_H100_query_gpu_temp.json: 8 idle H100 per node,
    # per-node sd 1.48 and 1.09 °C (range 4 and 3 °C); loaded nodes spread more by airflow
    card_temp_offset_c=1.5,
    # ...query_power_usage.json: sd 1.06 W of 68 W (1.6 %) on gpu-node-2 (gpu-node-1 has a card at +66 %)
    card_power_offset=0.016,
    # no clock sample in the captures: an assumption of half the power spread
    card_clock_offset=0.008,
    # alibaba_pai_minibatch job_1/job_3 (labelled stable workers): per-worker mean offsets -4..+7 %
    # under 25 % GPU shares; dedicated cards are tighter: the 1-3 %
    rank_speed_offset=0.015,
    # PAI jobs 1-3: the job-mean mini-batch time has lag-1 autocorrelation 0.81-0.92, cv 0.027-0.036
    step_drift=0.03,
    step_autocorr=0.85,
    # no labelled source: eval passes, data-loader stalls, logging; an assumption of 2 an hour
    slow_phases_per_hour=2.0,
    # infiniband/gpud_sys-class-infiniband-h100: every healthy H100 port shows port_rcv_errors 14 (uptime
    # unknown), so a low nonzero baseline: an assumption of 1 an hour per link end, and a burst per 4 hours
    link_errors_per_hour=1.0,
    link_bursts_per_hour=0.25,
    # assumptions: one scrape in 1,000 missed; an exporter or driver restart somewhere every 10 minutes
    missing_sample_rate=0.001,
    counter_resets_per_hour=6.0,
    # assumptions: a message in 500 is delivered a tick late (a producer retry, a slow scrape); NTP on
    # a data-centre LAN keeps hosts within milliseconds to tens of milliseconds: sd 10 ms
    late_message_rate=0.002,
    clock_skew_ms=10.0,
    # stepfun_fault_trace/fault_statistics.json: of the GPU faults that take a card out, 16 name an XID
    # ("GPU xid Error" 11, "GPU Lost" 5) and 50 do not ("GPU device unknow error" 40, "nvidia-smi
    # Timeout" 9, "GPU device not found" 1): 0.75 go silent without a fatal code
    silent_failure_share=0.75,
    # titan_gpu_failures/gc_full.csv.gz: 4,826 cards retired for double-bit ECC against 1,541 that
    # fell off the bus; how many ECC cards failed outright is not recorded: an assumption of 1 in 4,
    # a minute after the first error
    ecc_failure_share=0.25,
    ecc_failure_after_s=60.0,
    # Llama 3 (Meta, 2024, section 3.3.4): 466 interruptions of one 16K-GPU job in 54 days, 0.36 an
    # hour; restart time and warm-up are assumptions (2 minutes, 3 slow steps)
    job_restarts_per_hour=0.36,
    restart_s=120.0,
    restart_warmup_steps=3,
    # node_exporter / sysfs NIC counters are scraped on GPU hosts anyway (infiniband/gpud_sys-class-
    # infiniband-h100 is such a host's view): both ends of every host link report
    nic_reports=1.0,
)


@dataclass(frozen=True)
class Fault:
    kind: str
    target: str
    start_s: float
    duration_s: float | None
    severity: float

    def end_s(self, scenario_duration_s: float) -> float:
        if self.duration_s is None:
            return scenario_duration_s
        return min(self.start_s + self.duration_s, scenario_duration_s)


@dataclass(frozen=True)
class Scenario:
    name: str = "default"
    seed: int = 0
    start: datetime = datetime(2026, 1, 1, tzinfo=UTC)
    duration_s: float = 900.0
    tick_s: float = 1.0
    vendor: str = "nvidia"
    shape: ClusterShape = ClusterShape()
    jobs: tuple[Job, ...] = ()
    noise: Noise = Noise()
    faults: tuple[Fault, ...] = field(default_factory=tuple)
    topology_file: str | None = None  # an imported fabric (cluster.topology) instead of the shape
    inventory_file: str | None = None  # cluster.inventory: its nic_cards say which NIC serves which card

    @property
    def topology(self) -> Any:
        """The synthetic Topology of `shape`, or the imported fabric's FabricTopology, with the
        inventory's card-to-NIC map."""
        return _topology(self.shape, self.topology_file, self.inventory_file)

    @property
    def start_ms(self) -> int:
        return int(self.start.timestamp() * 1000)

    @property
    def ticks(self) -> int:
        return int(round(self.duration_s / self.tick_s))


# ---- validation helpers -------------------------------------------------------------------------


def _fail(path: str, value: Any, why: str) -> ScenarioError:
    return ScenarioError(f"{path} = {value!r}: {why}")


def _mapping(value: Any, path: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _fail(path, value, "expected a mapping")
    return value


def _only(data: dict[str, Any], path: str, allowed: set[str]) -> None:
    for key in data:
        if key not in allowed:
            raise _fail(
                f"{path}.{key}" if path else str(key),
                data[key],
                f"unknown field (allowed: {', '.join(sorted(allowed))})",
            )


def _number(
    data: dict[str, Any],
    key: str,
    path: str,
    default: float,
    *,
    minimum: float = 0.0,
    strict_min: bool = False,
    maximum: float | None = None,
) -> float:
    value = data.get(key, default)
    where = f"{path}.{key}" if path else key
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _fail(where, value, "expected a number")
    if value < minimum or (strict_min and value == minimum):
        raise _fail(where, value, f"must be {'>' if strict_min else '>='} {minimum}")
    if maximum is not None and value > maximum:
        raise _fail(where, value, f"must be <= {maximum}")
    return float(value)


def _integer(data: dict[str, Any], key: str, path: str, default: int, *, minimum: int = 0) -> int:
    value = data.get(key, default)
    where = f"{path}.{key}" if path else key
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(where, value, "expected an integer")
    if value < minimum:
        raise _fail(where, value, f"must be >= {minimum}")
    return value


def _text(data: dict[str, Any], key: str, path: str, default: str | None = None) -> str:
    value = data.get(key, default)
    where = f"{path}.{key}" if path else key
    if not isinstance(value, str) or not value:
        raise _fail(where, value, "expected a non-empty string")
    return value


def _start(value: Any) -> datetime:
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise _fail("start", value, "expected an ISO 8601 time such as 2026-01-01T00:00:00Z") from None
    else:
        raise _fail("start", value, "expected an ISO 8601 time such as 2026-01-01T00:00:00Z")
    if dt.tzinfo is None:
        raise _fail("start", value, "needs a timezone (end it with Z for UTC)")
    return dt.astimezone(UTC)


# ---- parsing ------------------------------------------------------------------------------------


def parse_scenario(data: Any) -> Scenario:
    """Validate a parsed YAML document and return the scenario with defaults filled in."""
    if not isinstance(data, dict):
        raise _fail("scenario", data, "expected a mapping with at least `faults`")
    _only(data, "", {"name", "seed", "start", "duration_s", "tick_s", "cluster", "jobs", "noise", "faults"})
    name = _text(data, "name", "", "default")
    seed = _integer(data, "seed", "", 0)
    start = _start(data.get("start", "2026-01-01T00:00:00Z"))
    duration_s = _number(data, "duration_s", "", 900.0, strict_min=True)
    tick_s = _number(data, "tick_s", "", 1.0, strict_min=True, maximum=60.0)
    if abs(duration_s / tick_s - round(duration_s / tick_s)) > 1e-9:
        raise _fail("duration_s", duration_s, f"must be a whole number of ticks (tick_s = {tick_s})")

    cluster = _mapping(data.get("cluster"), "cluster")
    _only(
        cluster, "cluster", {"vendor", "cards", "cards_per_node", "nodes_per_leaf", "spines", "topology", "inventory"}
    )
    vendor = cluster.get("vendor", "nvidia")
    if vendor not in VENDORS:
        raise _fail("cluster.vendor", vendor, f"must be one of {', '.join(VENDORS)}")
    dims = {
        k: _integer(cluster, k, "cluster", d, minimum=1)
        for k, d in (("cards", 10240), ("cards_per_node", 8), ("nodes_per_leaf", 32), ("spines", 32))
    }
    if dims["cards_per_node"] > 255:
        raise _fail("cluster.cards_per_node", dims["cards_per_node"], "must be <= 255")
    topology_file = cluster.get("topology")
    if topology_file is not None:
        topology_file = _text(cluster, "topology", "cluster")
        if "cards" in cluster or "nodes_per_leaf" in cluster or "spines" in cluster:
            raise _fail(
                "cluster.topology",
                topology_file,
                "an imported fabric sets the cluster's size and wiring: "
                "give cards_per_node only, not cards, nodes_per_leaf or spines",
            )
        try:
            topo = _topology(ClusterShape(cards_per_node=dims["cards_per_node"]), topology_file)
        except ValueError as exc:  # FabricError, UnknownEntity
            raise _fail("cluster.topology", topology_file, str(exc)) from None
        dims["cards"] = topo.cards
    try:
        shape = ClusterShape(**dims)
    except ValueError as exc:
        raise ScenarioError(str(exc)) from None
    if topology_file is None:
        topo = Topology(shape)
    inventory_file = cluster.get("inventory")
    if inventory_file is not None:
        inventory_file = _text(cluster, "inventory", "cluster")
        from pipeline.topology.inventory import InventoryError, with_inventory

        try:
            topo = with_inventory(topo, inventory_file)
        except InventoryError as exc:
            raise _fail("cluster.inventory", inventory_file, str(exc)) from None

    jobs = _parse_jobs(data.get("jobs"), topo)
    noise_data = dict(_mapping(data.get("noise"), "noise"))
    _only(noise_data, "noise", set(Noise.__dataclass_fields__) | {"profile"})
    profile = noise_data.pop("profile", "clean")
    if profile not in ("clean", "realistic"):
        raise _fail("noise.profile", profile, "must be clean or realistic")
    base = REALISTIC if profile == "realistic" else Noise()
    values = {k: _number(noise_data, k, "noise", getattr(base, k)) for k in Noise.__dataclass_fields__}
    warmup_steps = values.pop("restart_warmup_steps")  # an int field: set below, once checked to be whole
    noise = Noise(**values, restart_warmup_steps=base.restart_warmup_steps)
    if noise.checkpoint_every_s and noise.checkpoint_s >= noise.checkpoint_every_s:
        raise _fail("noise.checkpoint_s", noise.checkpoint_s, "must be shorter than noise.checkpoint_every_s")
    if noise.step_autocorr >= 1:
        raise _fail("noise.step_autocorr", noise.step_autocorr, "must be below 1 (a lag-1 autocorrelation)")
    for share in ("missing_sample_rate", "late_message_rate", "silent_failure_share", "ecc_failure_share"):
        if getattr(noise, share) > 1:
            raise _fail(f"noise.{share}", getattr(noise, share), "must be at most 1 (a fraction)")
    if warmup_steps != int(warmup_steps):
        raise _fail("noise.restart_warmup_steps", warmup_steps, "expected a whole number")
    if noise.nic_reports not in (0, 1):
        raise _fail("noise.nic_reports", noise.nic_reports, "must be 0 or 1")
    noise = replace(noise, restart_warmup_steps=int(warmup_steps))

    faults = _parse_faults(data.get("faults"), topo, duration_s, {job.name for job in jobs})
    return Scenario(
        name=name,
        seed=seed,
        start=start,
        duration_s=duration_s,
        tick_s=tick_s,
        vendor=vendor,
        shape=shape,
        jobs=jobs,
        noise=noise,
        faults=faults,
        topology_file=topology_file,
        inventory_file=inventory_file,
    )


def _topology(shape: ClusterShape, topology_file: str | None, inventory_file: str | None = None) -> Any:
    from pipeline.topology.inventory import with_inventory

    if topology_file is None:
        return with_inventory(Topology(shape), inventory_file)
    from pipeline.topology.imported import load_topology

    return with_inventory(load_topology(topology_file, shape.cards_per_node), inventory_file)


def _parse_jobs(value: Any, topo: Topology) -> tuple[Job, ...]:
    if value is None:
        return (Job("train", 0, topo.nodes, 2.0),)
    if not isinstance(value, list):
        raise _fail("jobs", value, "expected a list")
    jobs: list[Job] = []
    used = [""] * topo.nodes
    for i, item in enumerate(value):
        path = f"jobs[{i}]"
        item = _mapping(item, path)
        _only(item, path, {"name", "first_node", "nodes", "step_s"})
        job = Job(
            name=_text(item, "name", path),
            first_node=_integer(item, "first_node", path, 0),
            nodes=_integer(item, "nodes", path, 1, minimum=1),
            step_s=_number(item, "step_s", path, 2.0, strict_min=True),
        )
        if any(j.name == job.name for j in jobs):
            raise _fail(f"{path}.name", job.name, "duplicate job name")
        if job.first_node + job.nodes > topo.nodes:
            raise _fail(
                f"{path}.nodes",
                job.nodes,
                f"first_node {job.first_node} + nodes exceeds the cluster's {topo.nodes} nodes",
            )
        for n in range(job.first_node, job.first_node + job.nodes):
            if used[n]:
                raise _fail(
                    f"{path}.first_node", job.first_node, f"node {topo.node_name(n)} is already in job {used[n]!r}"
                )
            used[n] = job.name
        jobs.append(job)
    return tuple(jobs)


def _parse_faults(value: Any, topo: Topology, duration_s: float, jobs: set[str]) -> tuple[Fault, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise _fail("faults", value, "expected a list")
    faults = []
    for i, item in enumerate(value):
        path = f"faults[{i}]"
        item = _mapping(item, path)
        _only(item, path, {"kind", "target", "start_s", "duration_s", "severity"})
        kind = item.get("kind")
        if kind not in FAULT_KINDS:
            raise _fail(f"{path}.kind", kind, f"unknown fault kind (known: {', '.join(FAULT_KINDS)})")
        target_kinds, default_severity = FAULT_KINDS[kind]
        target = _text(item, "target", path)
        try:
            actual = "job" if target_kinds == ("job",) and target in jobs else topo.kind_of(target)
        except UnknownEntity as exc:
            why = f"not one of the jobs ({', '.join(sorted(jobs))})" if target_kinds == ("job",) else str(exc)
            raise _fail(f"{path}.target", target, f"unknown target: {why}") from None
        if actual not in target_kinds:
            raise _fail(
                f"{path}.target", target, f"a {kind} fault needs a {' or '.join(target_kinds)}, this is a {actual}"
            )
        start_s = _number(item, "start_s", path, 0.0)
        if start_s >= duration_s:
            raise _fail(f"{path}.start_s", start_s, f"outside the run [0, {duration_s:g})")
        fault_duration = item.get("duration_s")
        if fault_duration is not None:
            fault_duration = _number(item, "duration_s", path, 0.0, strict_min=True)
        severity = _number(item, "severity", path, default_severity, maximum=10.0)
        faults.append(Fault(kind, target, start_s, fault_duration, severity))
    return tuple(faults)


def load_scenario(path: str | Path | None) -> Scenario:
    """Read and validate a scenario file; None gives the built-in default scenario."""
    if path is None:
        return default_scenario()
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ScenarioError(f"cannot read scenario {str(path)!r}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ScenarioError(f"scenario {str(path)!r} is not text (expected YAML)") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ScenarioError(f"scenario {str(path)!r} is not valid YAML: {yaml_problem(exc)}") from None
    if isinstance(data, dict) and "faults" not in data:  # the one field without a default (the spec)
        raise ScenarioError(f"{path}: faults: missing; list the faults to inject (`faults: []` for none)")
    cluster = data.get("cluster") if isinstance(data, dict) else None
    for key in ("topology", "inventory"):  # files relative to the scenario
        if isinstance(cluster, dict) and isinstance(cluster.get(key), str):
            cluster = {**cluster, key: str((path.parent / Path(cluster[key]).expanduser()).absolute())}
            data = {**data, "cluster": cluster}
    try:
        return parse_scenario(data)
    except ScenarioError as exc:
        raise ScenarioError(f"{path}: {exc}") from None


DEFAULT_SCENARIO: dict = {
    "name": "default-10k-few-faults",
    "seed": 1,
    "duration_s": 900,
    "noise": {"profile": "realistic"},
    "jobs": [
        {"name": "pretrain-a", "first_node": 0, "nodes": 1024, "step_s": 2.0},
        {"name": "finetune-b", "first_node": 1024, "nodes": 128, "step_s": 0.8},
        {"name": "eval-c", "first_node": 1152, "nodes": 96, "step_s": 1.5},
    ],
    "faults": [
        {"kind": "card_failure", "target": "node1100-card6", "start_s": 20, "duration_s": 180},
        {"kind": "card_failure", "target": "node1200-card0", "start_s": 45, "duration_s": 120},
        {"kind": "card_failure", "target": "node0154-card3", "start_s": 240},
        {"kind": "node_failure", "target": "node1260", "start_s": 150, "duration_s": 300},
    ],
}


def default_scenario() -> Scenario:
    """15 minutes of a 10,240-card cluster running three jobs, with a few card and node failures."""
    import copy

    return parse_scenario(copy.deepcopy(DEFAULT_SCENARIO))
