"""Cluster simulator: turns a scenario into per-tick telemetry batches, vectorised with numpy.

Each tick yields the messages of that tick: one card batch per reporting node, one port batch per
reporting switch, and one step batch per node whose ranks finished a job step. Everything random
comes from one seeded generator drawn in a fixed order, so the same scenario gives the same bytes.

Ground truth (the scenario's fault list) is never put into a message; `ground_truth()` returns it
for the scorer only.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from pipeline.model.schemas import Batch, bundle, encode_batch, iso_utc
from pipeline.model.topics import CARD_TELEMETRY, PORT_TELEMETRY, STEP_TELEMETRY, TopicSpec
from producers.scenario import Fault, Scenario

# Sources per message. Real collectors batch (a rack's exporter gateway, a fabric manager): the
# simulator sends the nodes under one leaf position (nodes_per_leaf of them, a rack) per card
# message, a job's nodes per step message, and this many switches per port message. The cost of a
# message (Kafka, Faust, decoding) is then paid once per collector, not per node (bench/pipeline.py).
SWITCHES_PER_COLLECTOR = 8
PORTS_PER_MESSAGE = 4096  # ~370 KB of port samples: well under Kafka's 1 MB default message limit
NODES_PER_STEP_MESSAGE = 512  # a 65,536-rank job's steps in 16 messages of 64 KB, under Kafka's 1 MB limit

# Fatal error code a failed card reports before it goes silent, and the ECC error code, per vendor.
CARD_LOST_CODE = {"nvidia": 79, "ascend": 0x8C03A000}
ECC_DBE_CODE = {"nvidia": 48, "ascend": 0x80E01801}

# Healthy operating points per vendor: busy value, idle value.
PROFILE = {
    "nvidia": {"clock": (1980.0, 1410.0), "power": (640.0, 75.0), "temp": (66.0, 34.0), "mem": (72_000.0, 600.0)},
    "ascend": {"clock": (1800.0, 1000.0), "power": (360.0, 90.0), "temp": (62.0, 38.0), "mem": (56_000.0, 3_000.0)},
}
LINK_BYTES_PER_S = 2.0e10  # busy host link, both directions each
FEC_BASE_PER_S = (50.0, 800.0)  # healthy PAM4 links correct codewords all the time


@dataclass(frozen=True)
class Message:
    topic: TopicSpec
    key: str
    value: bytes


@dataclass(frozen=True)
class TruthRecord:
    kind: str
    target: str
    start: str
    end: str
    start_s: float
    end_s: float


class Simulator:
    """Generates the scenario's telemetry tick by tick."""

    def __init__(self, scenario: Scenario) -> None:
        self.sc = scenario
        self.topo = topo = scenario.topology
        # Independent random streams per subsystem, each drawing a fixed amount per tick, so a
        # fault changes only what it touches: same seed with and without a fault gives the same
        # noise everywhere else.
        seq = np.random.SeedSequence(scenario.seed)
        (cards_seed, host_seed, leaf_seed, spine_seed, noise_seed, fault_seed, *job_seeds) = seq.spawn(
            6 + len(scenario.jobs)
        )
        self.rng = np.random.default_rng(cards_seed)
        self.noise_rng = np.random.default_rng(noise_seed)
        self.fault_rng = np.random.default_rng(fault_seed)
        self._port_collector = self._port_collectors()
        n, k = topo.nodes, topo.cards_per_node
        self.profile = PROFILE[scenario.vendor]

        # job of each node (-1 = idle)
        self.node_job = np.full(n, -1, dtype=np.int64)
        for j, job in enumerate(scenario.jobs):
            self.node_job[job.first_node : job.first_node + job.nodes] = j
        self.busy = np.repeat((self.node_job >= 0)[:, None], k, axis=1)

        # card counters
        self.ecc_sbe = np.zeros((n, k), np.uint64)
        self.ecc_dbe = np.zeros((n, k), np.uint64)
        self.pcie_replay = np.zeros((n, k), np.uint64)
        self.link_errors = np.zeros((n, k), np.uint64)
        self.temp = np.where(self.busy, self.profile["temp"][0], self.profile["temp"][1]).astype(np.float64)

        # links: host links indexed (node, NIC), their switch end; inter-switch links by index, with
        # a lower-tier end (a leaf's uplink) and an upper-tier end (a spine's downlink)
        rails, links = topo.rails, len(topo.fabric_lo)
        self.host = _PortCounters((n, rails), np.random.default_rng(host_seed))
        self.fabric_low = _PortCounters((links,), np.random.default_rng(leaf_seed))
        self.fabric_high = _PortCounters((links,), np.random.default_rng(spine_seed))
        self.host_up_prev = np.ones((n, rails), bool)
        self.fabric_up_prev = np.ones(links, bool)
        self.host_switch = np.where(topo.host_exists, topo.host_switch, 0)  # switch of every host link

        self.jobs = [
            _JobState(job, topo.cards_per_node, np.random.default_rng(js)) for job, js in zip(scenario.jobs, job_seeds)
        ]
        self._init_realism(seq.spawn(1)[0])
        self.faults = list(scenario.faults)
        self._resolved = [self._resolve_target(f) for f in self.faults]
        # per fault, from its own stream (two draws each whatever the shares): a card failure that
        # sends no fatal code, an ECC fault whose card fails after it
        draws = np.random.default_rng(seq.spawn(1)[0]).random((len(self.faults), 2))
        noise = scenario.noise
        self._silent = [bool(d[0] < noise.silent_failure_share) for d in draws]
        self._fails_at = [
            f.start_s + noise.ecc_failure_after_s if f.kind == "ecc_error" and d[1] < noise.ecc_failure_share else None
            for f, d in zip(self.faults, draws)
        ]
        # the host end of every host link as the host's own NIC counters report it (its own stream)
        nic_rng = np.random.default_rng(seq.spawn(1)[0])
        self.nic = _PortCounters((n, rails), nic_rng) if noise.nic_reports else None
        # the NIC each card uses (-1: none), for indexing the (nodes, rails) link state per card
        self.card_nic = topo.card_nic
        identity = rails == k and np.array_equal(self.card_nic, np.broadcast_to(np.arange(k), (n, k)))
        self._load_nic = None if identity else self.card_nic  # None: NIC j carries card j's traffic

    def _init_realism(self, seed: np.random.SeedSequence) -> None:
        """Persistent per-card and per-rank differences of the `realistic` profile, from their own
        random stream (the clean profile draws nothing from it, so its telemetry is unchanged)."""
        noise, n, k = self.sc.noise, self.topo.nodes, self.topo.cards_per_node
        self.real_rng = rng = np.random.default_rng(seed)

        def offsets(sd: float, shape: tuple[int, ...]) -> np.ndarray:
            return np.clip(rng.standard_normal(shape) * sd, -2 * sd, 2 * sd) if sd else np.zeros(shape)

        self.temp_offset = offsets(noise.card_temp_offset_c, (n, k))
        self.power_offset = offsets(noise.card_power_offset, (n, k))
        self.clock_offset = offsets(noise.card_clock_offset, (n, k))
        for js in self.jobs:
            js.speed = 1.0 + offsets(noise.rank_speed_offset, (js.job.nodes * k,))
        self._bursts: dict[tuple[str, int], int] = {}  # (which counters, flat index) -> samples left
        # each collector's clock offset (ms): card collectors by rack, port collectors by name
        skew = noise.clock_skew_ms
        racks = -(-n // self.topo.rack_size)
        self.card_skew_ms = np.rint(offsets(skew, (racks,))).astype(np.int64).tolist()
        port_collectors = sorted(set(self._port_collector.values()))
        self.port_skew_ms = dict(
            zip(port_collectors, np.rint(offsets(skew, (len(port_collectors),))).astype(np.int64).tolist())
        )

    # ---- ground truth (scorer only) ----------------------------------------------------------
    def ground_truth(self) -> list[TruthRecord]:
        out = []
        for f in self.faults:
            end_s = f.end_s(self.sc.duration_s)
            out.append(
                TruthRecord(
                    f.kind,
                    f.target,
                    iso_utc(self.sc.start_ms + int(f.start_s * 1000)),
                    iso_utc(self.sc.start_ms + int(end_s * 1000)),
                    f.start_s,
                    end_s,
                )
            )
        return out

    def silent_card_failures(self) -> set[str]:
        """Targets of the card failures that send no fatal error code before the card goes silent
        (ground truth, like `ground_truth()`: for scorers and benchmarks only)."""
        return {f.target for f, silent in zip(self.faults, self._silent) if silent and f.kind == "card_failure"}

    def _resolve_target(self, f: Fault) -> tuple[str, int, int]:
        if f.kind == "job_hang":
            return "job", [job.name for job in self.sc.jobs].index(f.target), 0
        kind = self.topo.kind_of(f.target)
        if kind == "card":
            node, card = self.topo.parse_card(f.target)
            return "card", node, card
        if kind == "node":
            return "node", self.topo.node_index(f.target), 0
        if kind == "link":
            return self.topo.resolve_link(f.target)
        return "switch", self.topo.switch_index(f.target), 0

    # ---- the clock ---------------------------------------------------------------------------
    def ticks(self) -> Iterator[tuple[int, list[Message]]]:
        """(event time in ms, messages) for every tick of the scenario, in order."""
        rate = self.sc.noise.late_message_rate
        late: list[Message] = []
        for tick in range(self.sc.ticks):
            t = tick * self.sc.tick_s
            ts_ms = self.sc.start_ms + int(round(t * 1000))
            messages = self.step(t, ts_ms)
            if rate:  # a late message comes after the next tick's (the realistic profile)
                held = self.real_rng.random(len(messages)) < rate
                messages, late = (
                    [m for m, h in zip(messages, held) if not h] + late,
                    [m for m, h in zip(messages, held) if h],
                )
            yield ts_ms, messages
        if late:
            yield ts_ms, late

    def step(self, t: float, ts_ms: int) -> list[Message]:
        topo, k, dt = self.topo, self.topo.cards_per_node, self.sc.tick_s
        rails, links = topo.rails, len(topo.fabric_lo)
        active = [
            (i, f, r)
            for i, (f, r) in enumerate(zip(self.faults, self._resolved))
            if f.start_s <= t < f.end_s(self.sc.duration_s)
        ]
        self._reset_recovered(t, dt)

        node_alive = np.ones(topo.nodes, bool)
        card_alive = np.ones((topo.nodes, k), bool)
        switch_alive = np.ones(len(topo.switch_names), bool)
        host_up = np.ones((topo.nodes, rails), bool)
        fabric_up = np.ones(links, bool)
        slowdown = np.ones((topo.nodes, k))
        throttle = np.zeros((topo.nodes, k))
        degradation = np.zeros((topo.nodes, rails))
        fabric_degradation = np.zeros(links)
        events: list[tuple[int, int, int]] = []
        hung = {a for _, f, (what, a, _) in active if what == "job"}  # jobs whose collective never completes

        lost = CARD_LOST_CODE[self.sc.vendor]
        for i, f, (what, a, b) in active:
            fails_at = f.start_s if f.kind == "card_failure" else self._fails_at[i]
            if fails_at is not None and t >= fails_at:
                card_alive[a, b] = False
                if fails_at > t - dt and not self._silent[i]:  # a silent failure sends no code
                    events.append((a, b, lost))
            if f.kind == "node_failure":
                node_alive[a] = False
            elif f.kind == "switch_failure":
                switch_alive[a] = False
            elif f.kind == "straggler":
                slowdown[a, b] *= 1.0 + f.severity
            elif f.kind == "thermal_throttle":
                ramp = min(1.0, (t - f.start_s) / 30.0)
                throttle[a, b] = max(throttle[a, b], f.severity * ramp)
            elif f.kind in ("link_down", "link_flap", "link_degradation"):
                up = True
                if f.kind == "link_down":
                    up = False
                elif f.kind == "link_flap":
                    period = 60.0 / max(f.severity * 10.0, 1e-9)
                    up = ((t - f.start_s) % period) >= min(2.0, period / 2)
                if what == "host":
                    host_up[a, b] &= up
                    if f.kind == "link_degradation":
                        degradation[a, b] = max(degradation[a, b], f.severity)
                else:
                    fabric_up[a] &= up
                    if f.kind == "link_degradation":
                        fabric_degradation[a] = max(fabric_degradation[a], f.severity)
        for _, f, (_, a, b) in active:
            if f.kind == "ecc_error" and f.start_s > t - dt:
                events.append((a, b, ECC_DBE_CODE[self.sc.vendor]))
                self.ecc_dbe[a, b] += np.uint64(1 + int(2 * f.severity))
        for _, f, (_, a, b) in active:  # a bad memory page keeps producing uncorrectable errors
            if (
                f.kind == "ecc_error"
                and f.start_s <= t - dt
                and self.fault_rng.random() < 0.05 * f.severity * dt
                and card_alive[a, b]
            ):  # a failed card reports nothing
                events.append((a, b, ECC_DBE_CODE[self.sc.vendor]))
                self.ecc_dbe[a, b] += np.uint64(1)

        # a dead node takes its NICs down, a dead switch its host links and its fabric links
        host_up &= node_alive[:, None] & switch_alive[self.host_switch] & topo.host_exists
        fabric_up &= switch_alive[topo.fabric_lo] & switch_alive[topo.fabric_hi]
        slowdown *= 1.0 + 0.5 * throttle

        # a card whose NIC (`Topology.card_nic`; shared by several cards on a host with fewer NICs
        # than cards) is down cannot take part in collectives
        nic_ok = np.take_along_axis(host_up, np.maximum(self.card_nic, 0), axis=1) | (self.card_nic < 0)
        progressing, saving, spinning = self._advance_jobs(t, card_alive & node_alive[:, None] & nic_ok, slowdown, hung)
        messages = self._step_messages(ts_ms)
        messages += self._card_messages(ts_ms, node_alive, card_alive, throttle, progressing, saving, spinning, events)
        messages += self._port_messages(
            ts_ms, switch_alive, host_up, fabric_up, degradation, fabric_degradation, progressing
        )
        if self.nic is not None:
            messages += self._nic_messages(ts_ms, node_alive, host_up)
        return messages

    # ---- jobs --------------------------------------------------------------------------------
    def _advance_jobs(
        self, t: float, rank_ok: np.ndarray, slowdown: np.ndarray, hung: set[int]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Finish the steps that end by time t; return which nodes' jobs are progressing, which of
        them are writing a checkpoint from the host (their cards read idle), and which are stalled
        in a collective (a rank lost, or the job hung), their cards spinning in it."""
        progressing = np.zeros(self.topo.nodes, bool)
        spinning = np.zeros(self.topo.nodes, bool)
        saving = np.zeros(self.topo.nodes, bool)
        self._finished: list[tuple[_JobState, int, np.ndarray, np.ndarray]] = []
        noise = self.sc.noise
        for index, js in enumerate(self.jobs):
            nodes = slice(js.job.first_node, js.job.first_node + js.job.nodes)
            if (
                t >= js.restart_until
                and noise.job_restarts_per_hour
                and self.real_rng.random() < noise.job_restarts_per_hour * self.sc.tick_s / 3600
                and not self._would_hide_a_fault(js, t)
            ):
                # the job is stopped and resubmitted: it resumes from its last checkpoint's step
                js.restart_until = t + noise.restart_s
                js.step_index = js.checkpoint_step
                js.warmup = noise.restart_warmup_steps
            if t < js.restart_until:
                js.next_end = None
                js.stalled_until = js.restart_until
                continue
            if not rank_ok[nodes].all() or index in hung:
                js.next_end = None  # no collective can complete; the step restarts after the stall
                js.stalled_until = t + self.sc.tick_s
                spinning[nodes] = True
                continue
            progressing[nodes] = True
            if js.next_end is None:
                js.next_end = max(t, js.stalled_until) + js.job.step_s
                js.step_started = max(t, js.stalled_until)
            while js.next_end <= t + 1e-9:
                compute = js.job.step_s * 0.85 * slowdown[nodes].reshape(-1)
                compute = compute * (1.0 + noise.step_jitter * js.rng.standard_normal(compute.shape))
                compute = compute * self._job_pace(js)
                compute = np.maximum(compute, 0.01)
                every = noise.checkpoint_every_s
                if every and noise.checkpoint_s and int(js.step_started // every) != int(js.next_end // every):
                    compute = compute + noise.checkpoint_s
                    js.checkpoint_step = js.step_index + 1
                    js.saving_until = js.next_end + noise.checkpoint_s  # the step that starts now begins with it
                if js.warmup:  # the first steps after a restart: compiling, warming caches
                    compute = compute * 2.0
                    js.warmup -= 1
                duration = float(compute.max()) + js.job.step_s * 0.15
                wait = duration - compute
                self._finished.append((js, js.step_index, compute, wait))
                js.step_index += 1
                js.step_started = js.next_end
                js.next_end = js.step_started + duration
            saving[nodes] = t < js.saving_until
        return progressing, saving, spinning

    def _would_hide_a_fault(self, js: _JobState, t: float) -> bool:
        """A restart now would pause the job through (part of) a straggler or throttle on its cards:
        skipped, since the scorer could not tell a fault the pause hid from one the detectors missed."""
        first, last = js.job.first_node, js.job.first_node + js.job.nodes
        pause = self.sc.noise.restart_s
        return any(
            (f.kind in ("straggler", "thermal_throttle") and first <= a < last or f.target == js.job.name)
            and f.start_s - pause <= t <= f.end_s(self.sc.duration_s)
            for f, (_, a, _) in zip(self.faults, self._resolved)
        )

    def _job_pace(self, js: _JobState) -> np.ndarray | float:
        """Realism of one step: each rank's persistent speed, a job-wide autocorrelated drift
        (AR(1)), and job-wide slow phases."""
        noise = self.sc.noise
        if not (noise.rank_speed_offset or noise.step_drift or noise.slow_phases_per_hour):
            return 1.0
        rng, phi = self.real_rng, noise.step_autocorr
        js.drift = phi * js.drift + np.sqrt(1 - phi * phi) * noise.step_drift * float(rng.standard_normal())
        start = js.step_started
        if start >= js.slow_until and rng.random() < noise.slow_phases_per_hour * js.job.step_s / 3600:
            js.slow_until = start + noise.slow_phase_s
        slow = 1.0 + (noise.slow_phase_factor if start < js.slow_until else 0.0)
        return js.speed * max(1.0 + js.drift, 0.5) * slow

    def _step_messages(self, ts_ms: int) -> list[Message]:
        out: list[Message] = []
        k = self.topo.cards_per_node
        for js, step, compute, wait in self._finished:
            compute32 = compute.astype("<f4").reshape(-1, k)
            wait32 = wait.astype("<f4").reshape(-1, k)
            ranks = np.ascontiguousarray(js.ranks, "<u4").reshape(-1, k)
            step_ids = np.full(k, step, "<u4")
            for first in range(0, js.job.nodes, NODES_PER_STEP_MESSAGE):
                last = min(first + NODES_PER_STEP_MESSAGE, js.job.nodes)
                nodes = last - first
                names = self.topo.node_names[js.job.first_node + first : js.job.first_node + last]
                columns = {
                    "rank": ranks[first:last].reshape(-1),
                    "step": np.tile(step_ids, nodes),
                    "compute_s": compute32[first:last].reshape(-1),
                    "wait_s": wait32[first:last].reshape(-1),
                }
                batch = Batch(
                    "step", js.job.name, ts_ms, columns, job=js.job.name, parts=[(name, {"rows": k}) for name in names]
                )
                out.append(Message(STEP_TELEMETRY, js.job.name, encode_batch(batch)))
        return out

    # ---- cards -------------------------------------------------------------------------------
    def _card_messages(
        self,
        ts_ms: int,
        node_alive: np.ndarray,
        card_alive: np.ndarray,
        throttle: np.ndarray,
        progressing: np.ndarray,
        saving: np.ndarray,
        spinning: np.ndarray,
        events: list[tuple[int, int, int]],
    ) -> list[Message]:
        topo, rng, p, noise = self.topo, self.rng, self.profile, self.sc.noise
        n, k = topo.nodes, topo.cards_per_node
        shape = (n, k)
        working = self.busy & progressing[:, None]
        jitter = noise.util_jitter * rng.standard_normal(shape)
        idle = np.where(self.busy, 4.0, 1.0) + 2 * np.abs(jitter)
        load = np.clip(np.where(working, 96.0 * (1 + jitter), idle) / 100.0, 0, 1)
        # a card spinning in a collective that cannot complete reads as busy as a working one (NCCL's
        # and HCCL's kernels poll), drawing little power: its load, heat and traffic stay an idle card's;
        # a card whose host writes a checkpoint reads idle (its load stays a step's: not modelled)
        reads_busy = (working & ~saving[:, None]) | (self.busy & spinning[:, None])
        util = np.where(reads_busy, 96.0 * (1 + jitter), idle)
        clock = (p["clock"][1] + (p["clock"][0] - p["clock"][1]) * load) * (1 - 0.35 * throttle)
        clock = clock * (1 + self.clock_offset) + 10 * rng.standard_normal(shape)
        power = (p["power"][1] + (p["power"][0] - p["power"][1]) * load) * (1 - 0.3 * throttle)
        power *= (1 + self.power_offset) * (1 + 0.02 * rng.standard_normal(shape))
        target_temp = p["temp"][1] + (p["temp"][0] - p["temp"][1]) * load + 40 * throttle + self.temp_offset
        self.temp += (target_temp - self.temp) * 0.1
        temp = self.temp + 0.5 * rng.standard_normal(shape)
        mem = np.where(self.busy, p["mem"][0], p["mem"][1]) * (1 + 0.01 * rng.standard_normal(shape))
        self.ecc_sbe += rng.poisson(2e-5, shape).astype(np.uint64)
        self.pcie_replay += rng.poisson(1e-5, shape).astype(np.uint64)
        self.link_errors += rng.poisson(1e-5, shape).astype(np.uint64)

        spikes = self.noise_rng.poisson(noise.transient_spikes_per_hour * self.sc.tick_s / 3600.0 / 2)
        for _ in range(spikes):  # single-sample outliers on random cards
            node, card = int(self.noise_rng.integers(n)), int(self.noise_rng.integers(k))
            temp[node, card] += 20.0
            util[node, card] = 0.0

        cols = {
            "util": np.clip(util, 0, 100).astype("<f4"),
            "sm_clock_mhz": clock.astype("<f4"),
            "power_w": power.astype("<f4"),
            "temp_c": temp.astype("<f4"),
            "mem_used_mib": mem.astype("<f4"),
            "ecc_sbe": self.ecc_sbe,
            "ecc_dbe": self.ecc_dbe,
            "pcie_replay": self.pcie_replay,
            "link_errors": self.link_errors,
        }
        by_node: dict[int, list[tuple[int, int]]] = {}
        for node, card, code in events:
            by_node.setdefault(node, []).append((card, code))
        present = card_alive & node_alive[:, None]
        if noise.missing_sample_rate:  # a missed scrape: the node's sample of this tick never comes
            present &= (self.real_rng.random(n) >= noise.missing_sample_rate)[:, None]
        card_index = np.broadcast_to(np.arange(k, dtype="<u1"), shape)
        out: list[Message] = []
        per = topo.rack_size  # one collector per rack
        for first in range(0, n, per):
            nodes = np.flatnonzero(node_alive[first : first + per]) + first
            if not len(nodes):
                continue
            mask = present[nodes]
            columns = {name: arr[nodes][mask] for name, arr in cols.items()}
            columns["card"] = card_index[nodes][mask]
            ev_cards, ev_codes, ev_counts = [], [], []
            for node in nodes.tolist():
                evs = by_node.get(node, ())
                ev_cards += [c for c, _ in evs]
                ev_codes += [code for _, code in evs]
                ev_counts.append(len(evs))
            columns["err_card"] = np.array(ev_cards, "<u1")
            columns["err_code"] = np.array(ev_codes, "<u4")
            rows = mask.sum(axis=1).tolist()
            names = topo.node_names
            collector = self._rack_collector(first)
            parts = [(names[node], {"rows": r, "events": e}) for node, r, e in zip(nodes.tolist(), rows, ev_counts)]
            stamp = ts_ms + self.card_skew_ms[first // per]  # the collector's own clock
            out.append(
                Message(CARD_TELEMETRY, collector, encode_batch(Batch("card", collector, stamp, columns, parts=parts)))
            )
        return out

    # ---- switches ----------------------------------------------------------------------------
    def _port_messages(
        self,
        ts_ms: int,
        switch_alive: np.ndarray,
        host_up: np.ndarray,
        fabric_up: np.ndarray,
        degradation: np.ndarray,
        fabric_degradation: np.ndarray,
        progressing: np.ndarray,
    ) -> list[Message]:
        topo, dt = self.topo, self.sc.tick_s
        host_load = (self.busy & progressing[:, None]).astype(float) * 0.9 + 0.05
        host_load = _per_nic(host_load, self._load_nic, topo.rails)  # a NIC carries its cards' traffic
        self.host.advance(dt, host_up, self.host_up_prev, host_load, degradation)
        fabric_load = np.full(fabric_up.shape, float(host_load.mean()))
        self.fabric_low.advance(dt, fabric_up, self.fabric_up_prev, fabric_load, fabric_degradation)
        self.fabric_high.advance(dt, fabric_up, self.fabric_up_prev, fabric_load, fabric_degradation)
        if self.nic is not None:
            self.nic.advance(dt, host_up, self.host_up_prev, host_load, degradation)
        self.host_up_prev, self.fabric_up_prev = host_up, fabric_up
        self._background_crc()
        self._port_spikes()
        self._link_baseline(dt)
        self._counter_resets(dt)

        batches: list[Batch] = []
        host_flat = host_up.reshape(-1)
        for switch in np.flatnonzero(switch_alive).tolist():
            hosts, low, high, ports = topo.switch_wiring(switch)
            cols = {
                "port": ports,
                "oper_up": np.concatenate([host_flat[hosts], fabric_up[low], fabric_up[high]]).astype("<u1"),
            }
            for field in _PortCounters.FIELDS:
                cols[field] = np.concatenate(
                    [
                        getattr(self.host, field).reshape(-1)[hosts],
                        getattr(self.fabric_low, field)[low],
                        getattr(self.fabric_high, field)[high],
                    ]
                )
            name = topo.switch_names[switch]
            batches.append(Batch("port", name, ts_ms + self.port_skew_ms[self._port_collector[name]], cols))
        groups: dict[str, list[Batch]] = {}
        for batch in batches:
            groups.setdefault(self._port_collector[batch.source], []).append(batch)
        return [Message(PORT_TELEMETRY, name, encode_batch(bundle(members, name))) for name, members in groups.items()]

    def _rack_collector(self, first: int) -> str:
        """Name of the collector of the rack whose first node is `first` (`first..last`)."""
        names, n, per = self.topo.node_names, self.topo.nodes, self.topo.rack_size
        return f"{names[first]}..{names[min(first + per, n) - 1]}" if per > 1 else names[first]

    def _nic_messages(self, ts_ms: int, node_alive: np.ndarray, host_up: np.ndarray) -> list[Message]:
        """Each live node's NICs (port j = NIC j: the host end of its link on rail j), one message
        per rack collector, as node_exporter or a sysfs poller would send them."""
        topo, rails, nic = self.topo, self.topo.rails, self.nic
        n, per = topo.nodes, topo.rack_size
        present = node_alive.copy()
        if self.sc.noise.missing_sample_rate:
            present &= self.real_rng.random(n) >= self.sc.noise.missing_sample_rate
        ports = np.broadcast_to(np.arange(rails, dtype="<u2"), (n, rails))
        out: list[Message] = []
        for first in range(0, n, per):
            nodes = np.flatnonzero(present[first : first + per]) + first
            if not len(nodes):
                continue
            exists = topo.host_exists[nodes]  # a host reports the NICs it has
            cols = {"port": ports[nodes][exists], "oper_up": host_up[nodes][exists].astype("<u1")}
            for name in _PortCounters.FIELDS:
                cols[name] = getattr(nic, name)[nodes][exists]
            names = topo.node_names
            collector = self._rack_collector(first)
            parts = [(names[node], {"rows": r}) for node, r in zip(nodes.tolist(), exists.sum(axis=1).tolist())]
            stamp = ts_ms + self.card_skew_ms[first // per]  # the rack's collector, as for its cards
            out.append(
                Message(PORT_TELEMETRY, collector, encode_batch(Batch("port", collector, stamp, cols, parts=parts)))
            )
        return out

    def _port_collectors(self) -> dict[str, str]:
        """Switch name -> its collector's name (`first..last`): up to SWITCHES_PER_COLLECTOR
        consecutive switches and PORTS_PER_MESSAGE ports (a spine of a 100,000-card cluster has
        3,128), fixed by the topology so a switch always arrives under the same key."""
        topo, names = self.topo, self.topo.switch_names
        tier = dict(zip(names, topo.switch_tier.tolist()))
        groups: list[list[str]] = []
        ports = 0
        for name in names:
            n = topo.switch_ports(name)
            if (
                not groups
                or len(groups[-1]) >= SWITCHES_PER_COLLECTOR
                or ports + n > PORTS_PER_MESSAGE
                or tier[name] != tier[groups[-1][0]]
            ):  # leaves and spines apart
                groups.append([])
                ports = 0
            groups[-1].append(name)
            ports += n
        return {name: (g[0] if len(g) == 1 else f"{g[0]}..{g[-1]}") for g in groups for name in g}

    def _background_crc(self) -> None:
        rate = self.sc.noise.background_crc_per_hour * self.sc.tick_s / 3600.0
        for _ in range(self.noise_rng.poisson(rate)):
            node, rail = int(self.noise_rng.integers(self.topo.nodes)), int(self.noise_rng.integers(self.topo.rails))
            self.host.crc_errors[node, rail] += np.uint64(1)

    def _link_baseline(self, dt: float) -> None:
        """Healthy links are not error-free: a low CRC rate on every link end, and now and then a
        burst of 1-3 errors a sample for 1-3 samples (realistic profile)."""
        noise, rng = self.sc.noise, self.real_rng
        ends = {"host": self.host, "low": self.fabric_low, "high": self.fabric_high}
        if self.nic is not None:
            ends["nic"] = self.nic
        if noise.link_errors_per_hour:
            for counters in ends.values():
                hits = rng.random(counters.crc_errors.shape) < noise.link_errors_per_hour * dt / 3600
                counters.crc_errors += hits.astype(np.uint64)
        if noise.link_bursts_per_hour:
            for name, counters in ends.items():
                size = counters.crc_errors.size
                for _ in range(rng.poisson(noise.link_bursts_per_hour * dt / 3600 * size)):
                    self._bursts[(name, int(rng.integers(size)))] = int(rng.integers(1, 4))
            for key in list(self._bursts):
                name, i = key
                ends[name].crc_errors.reshape(-1)[i] += np.uint64(rng.integers(1, 4))
                self._bursts[key] -= 1
                if not self._bursts[key]:
                    del self._bursts[key]

    def _counter_resets(self, dt: float) -> None:
        """Exporter or driver restarts: a node's card counters or a leaf's port counters start
        again at 0 (realistic profile)."""
        noise, rng, topo = self.sc.noise, self.real_rng, self.topo
        for _ in range(rng.poisson(noise.counter_resets_per_hour * dt / 3600) if noise.counter_resets_per_hour else 0):
            if rng.random() < 0.5:
                self._reset_node(int(rng.integers(topo.nodes)))
            else:
                edge = topo.edge_switches
                self._reset_switch(int(edge[int(rng.integers(len(edge)))]))

    def _port_spikes(self) -> None:
        """Single-tick congestion bursts (drops, PFC pauses) on random host links: a confounder."""
        rate = self.sc.noise.transient_spikes_per_hour * self.sc.tick_s / 3600.0 / 2
        for _ in range(self.noise_rng.poisson(rate)):
            node, rail = int(self.noise_rng.integers(self.topo.nodes)), int(self.noise_rng.integers(self.topo.rails))
            self.host.drops[node, rail] += np.uint64(self.noise_rng.integers(50, 500))
            self.host.pfc_pause[node, rail] += np.uint64(self.noise_rng.integers(2_000, 20_000))

    def _reset_recovered(self, t: float, dt: float) -> None:
        """Counters restart from zero where a node or switch comes back, as exporters' do after a
        reboot: a node's card counters; a leaf's port counters (host and uplink ends); a spine's."""
        for f, (_, a, _) in zip(self.faults, self._resolved):
            end = f.end_s(self.sc.duration_s)
            if not (end < self.sc.duration_s and t - dt < end <= t):
                continue
            if f.kind == "node_failure":
                self._reset_node(a)
            elif f.kind == "switch_failure":
                self._reset_switch(a)

    def _reset_node(self, node: int) -> None:
        """A node's card counters start again at 0 (its exporter or driver restarted)."""
        for counters in (self.ecc_sbe, self.ecc_dbe, self.pcie_replay, self.link_errors):
            counters[node] = 0
        if self.nic is not None:
            for name in _PortCounters.FIELDS:
                getattr(self.nic, name)[node] = 0

    def _reset_switch(self, switch: int) -> None:
        """A switch's port counters (its host ports and its ends of fabric links) start again at 0."""
        hosts, low, high, _ = self.topo.switch_wiring(switch)
        for name in _PortCounters.FIELDS:
            getattr(self.host, name).reshape(-1)[hosts] = 0
            getattr(self.fabric_low, name)[low] = 0
            getattr(self.fabric_high, name)[high] = 0


def _per_nic(per_card: np.ndarray, card_nic: np.ndarray | None, rails: int) -> np.ndarray:
    """A (nodes, cards) array as (nodes, rails): each NIC the mean of the cards it serves
    (`card_nic`; None: NIC j serves card j alone), a NIC serving none its node's mean."""
    if card_nic is None:
        return per_card
    n = per_card.shape[0]
    served = card_nic >= 0
    flat = (np.arange(n)[:, None] * rails + card_nic)[served]
    total = np.bincount(flat, per_card[served], n * rails).reshape(n, rails)
    count = np.bincount(flat, minlength=n * rails).reshape(n, rails)
    return np.where(count > 0, total / np.maximum(count, 1), per_card.mean(axis=1, keepdims=True))


class _PortCounters:
    """Monotonic counters of one end of a set of links."""

    FIELDS = (
        "rx_bytes",
        "tx_bytes",
        "crc_errors",
        "fec_corrected",
        "symbol_errors",
        "drops",
        "pfc_pause",
        "ecn_marks",
        "carrier_transitions",
    )
    # one uint64 array of `shape` per name in FIELDS, set in __init__
    rx_bytes: np.ndarray
    tx_bytes: np.ndarray
    crc_errors: np.ndarray
    fec_corrected: np.ndarray
    symbol_errors: np.ndarray
    drops: np.ndarray
    pfc_pause: np.ndarray
    ecn_marks: np.ndarray
    carrier_transitions: np.ndarray

    def __init__(self, shape: tuple[int, ...], rng: np.random.Generator) -> None:
        self.rng = rng
        for name in self.FIELDS:
            setattr(self, name, np.zeros(shape, np.uint64))
        self.fec_base = rng.uniform(*FEC_BASE_PER_S, size=shape)

    def advance(self, dt: float, up: np.ndarray, was_up: np.ndarray, load: np.ndarray, degradation: np.ndarray) -> None:
        rng, shape = self.rng, up.shape
        goodput = load * (1 - 0.3 * degradation) * up
        for name in ("rx_bytes", "tx_bytes"):
            noise = 1 + 0.05 * rng.standard_normal(shape)
            inc = np.maximum(LINK_BYTES_PER_S * dt * goodput * noise, 0)
            getattr(self, name)[...] += inc.astype(np.uint64)
        for name, lam in (
            ("crc_errors", 100.0 * degradation * dt),
            ("fec_corrected", self.fec_base * (1 + 20 * degradation) * dt),
            ("symbol_errors", 10.0 * degradation * dt),
            ("drops", (0.01 + 5 * degradation) * dt),
            ("pfc_pause", 20.0 * load * dt),
            ("ecn_marks", 5.0 * load * dt),
        ):
            getattr(self, name)[...] += (poisson(rng, lam) * up).astype(np.uint64)
        self.carrier_transitions += (up != was_up).astype(np.uint64)


def poisson(rng: np.random.Generator, lam: np.ndarray) -> np.ndarray:
    """Poisson draws that consume exactly two variates per element whatever `lam` is.

    numpy's own sampler uses a value-dependent number of draws, so a fault raising one link's
    error rate would shift the random stream of every link after it. Inverse CDF below 30,
    normal approximation above.
    """
    lam = np.asarray(lam, dtype=np.float64)
    u = rng.random(lam.shape)
    z = rng.standard_normal(lam.shape)
    small = np.where(lam < 30.0, lam, 0.0)
    k = np.zeros(lam.shape, np.int64)
    term = np.exp(-small)
    cdf = term.copy()
    below = u > cdf
    i = 0
    while below.any() and i < 120:
        i += 1
        k += below
        term = term * small / i
        cdf += term
        below &= u > cdf
    large = np.maximum(np.rint(lam + np.sqrt(lam) * z), 0).astype(np.int64)
    return np.where(lam < 30.0, k, large)


class _JobState:
    def __init__(self, job, cards_per_node: int, rng: np.random.Generator) -> None:  # noqa: ANN001
        self.job = job
        self.rng = rng
        self.step_index = 0
        self.next_end: float | None = None
        self.step_started = 0.0
        self.stalled_until = 0.0
        self.speed: np.ndarray | float = 1.0  # each rank's persistent compute-time factor
        self.drift = 0.0  # the job-wide autocorrelated factor - 1
        self.slow_until = -1.0  # end of the current job-wide slow phase
        self.restart_until = -1.0  # stopped for a restart until then
        self.checkpoint_step = 0  # the step a restart resumes from
        self.saving_until = -1.0  # writing a checkpoint from the host until then: the cards idle
        self.warmup = 0  # slow steps left after a restart
        ranks = np.arange(job.nodes * cards_per_node, dtype="<u4")
        self.ranks = ranks.reshape(job.nodes, cards_per_node)
