"""`straggler`: a rank whose compute time per step stays above its job's median, or above its own usual.

Per job and step, each rank's compute time is divided by the step's median across ranks, so a
checkpoint or a slow input pipeline (every rank slower together) cancels out. Two rules fire:

- against its peers: the rolling median of that ratio over `window_steps` steps, less the part of
  the rank's usual offset that healthy ranks have (up to `min_slowdown`), exceeds
  ``1 + max(min_slowdown, k_sigma * noise)``, the noise being the larger of the standard error of
  the rolling median (from the robust spread, 1.4826 x MAD, of the ratio across ranks, smoothed over
  steps) and the robust spread of the rolling medians across ranks (healthy ranks differ for good);
  this finds a rank slow from the start;
- against itself (change detection): ranks differ for good by a few percent, so each rank's usual
  ratio is learned online (from every step while it does not fire, each step's pull clipped at
  k noise units, so it is unbiased and a slowdown barely moves it), and a one-sided CUSUM of
  its excess over that usual, in units of the job's noise, accumulates whatever exceeds
  `min_slowdown`. A rank's first 30 steps only teach its usual. It fires at the threshold h that
  gives, for Gaussian noise, one false alarm per `false_alarm_steps` rank-steps (Siegmund's
  approximation); one step adds at most h/3, so a single slow step cannot fire; the rolling median
  of the excess must be past `min_slowdown` too, so a burst of a few slow steps cannot either; and
  the rank must be slower than its peers by as much (a fast rank back at the median holds nobody
  up). This is what finds a 10 % straggler under 5 % jitter.

It resolves when the rank is back within half the peer margin and a second one-sided CUSUM, of
how far its excess over its usual is below half the slowdown it fired with (at least half of
`min_slowdown`: the classic reference halfway between the two levels), reaches the same
false-alarm threshold: a few fast steps of a rank still slow (one step in a checkpoint pause is as
fast as its peers) cannot resolve it, so it does not resolve and fire again while the fault lasts,
and a recovered rank resolves within about h/(reference/noise) steps. A rank whose job made no step
for `stale_s` of event time (the job stalled or ended; the clock is any job's steps) resolves too:
nothing is left to judge, so it cannot stay firing after its rank recovered.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from pipeline.detect.alert_book import AlertBook
from pipeline.model.schemas import Alert, Batch
from pipeline.settings import StragglerSettings
from pipeline.topology.protocol import ClusterTopology

KIND = "straggler"
MEDIAN_EFFICIENCY = 1.2533  # standard error of a median of normal samples, in sigma / sqrt(n)
# a rank's first steps in a job teach its usual whatever they show (a rank slow from the start is
# the peer rule's to find); only then does its change rule judge it
LEARN_FIRST_STEPS = 30
MAX_PENDING_STEPS = 256  # steps kept waiting for their ranks at most (a job of fewer than min_ranks ranks)
# steps whose median duration is the job's usual step time: a checkpoint step (ten times longer) every
# few hundred steps does not move the median of the last 31
DURATION_STEPS = 31
RANKS_LISTED = 16  # ranks behind named in a job's progress (their count is always given)


@dataclass
class _Step:
    ts_ms: int
    ranks: list[np.ndarray] = field(default_factory=list)
    compute: list[np.ndarray] = field(default_factory=list)
    wait: list[np.ndarray] = field(default_factory=list)
    count: int = 0


@dataclass
class _Job:
    ranks: int = 0  # highest rank seen + 1
    # each rank's newest step and when it last reported (event ms): a step is judged once every
    # rank still reporting has reported it or a later one
    rank_step: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    rank_seen_ms: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    rank_node: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    pending: dict[int, _Step] = field(default_factory=dict)
    last_step: int = -1
    newest_ms: int = -1  # time of the newest step batch taken
    ratios: np.ndarray | None = None  # (window, ranks)
    filled: int = 0
    sigma: float | None = None
    firing: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    nodes: set[int] = field(default_factory=set)
    usual: np.ndarray = field(default_factory=lambda: np.ones(0))  # each rank's usual ratio
    learned: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # steps it was learned from
    cusum: np.ndarray = field(default_factory=lambda: np.zeros(0))
    excess: np.ndarray | None = None  # (window, ranks): ratio over the rank's usual
    excess_sigma: float | None = None
    shift: np.ndarray = field(default_factory=lambda: np.zeros(0))  # a firing rank's slowdown when it fired
    recovery: np.ndarray = field(default_factory=lambda: np.zeros(0))  # a firing rank's CUSUM toward its usual
    cusum_limit: float = float("inf")  # the CUSUM's firing threshold at the last step judged
    # the last judged steps' durations (median over ranks of compute + wait), newest last: the job's
    # usual step time, which the correlator's hang watch measures a pause against
    durations: list[float] = field(default_factory=list)


class StragglerDetector:
    multi_source = True  # takes a job's steps from many nodes in one batch

    def __init__(self, topology: ClusterTopology, settings: StragglerSettings | None = None) -> None:
        self.topo = topology
        self.settings = settings or StragglerSettings()
        self.jobs: dict[str, _Job] = {}
        self.book = AlertBook()
        self.new_placements: dict[str, set[int]] = {}
        self.progressed: set[str] = set()  # jobs with news since the last `take_progress`
        self.told: dict[str, tuple] = {}  # each job's progress as last taken: unchanged, it is not taken again
        self.timed_out: dict[str, list[list]] = {}  # job -> [ts_ms, rank, seq, waited_s] since the last take

    def job_nodes(self) -> dict[str, list[str]]:
        return {name: [self.topo.node_name(n) for n in sorted(job.nodes)] for name, job in self.jobs.items()}

    def push(self, batch: Batch, stream: int = 0) -> list[Alert]:
        if batch.job and len(batch.columns["timeout_rank"]):
            self._timeouts(batch)
        if not batch.job or not len(batch.columns["rank"]):
            return []
        out: list[Alert] = self._resolve_stalled(batch.ts_ms, batch.job)
        job = self.jobs.setdefault(batch.job, _Job())
        if batch.parts is None:
            names, counts = [batch.source], [len(batch.columns["rank"])]
        else:
            names, counts = [source for source, _ in batch.parts], [c["rows"] for _, c in batch.parts]
        nodes = [self.topo.node_index(name) for name in names]
        for node in nodes:
            if node not in job.nodes:
                job.nodes.add(node)
                self.new_placements.setdefault(batch.job, set()).add(node)
        ranks = batch.columns["rank"].astype(np.int64)
        steps = batch.columns["step"].astype(np.int64)
        self._grow(job, int(ranks.max()) + 1)
        job.rank_node[ranks] = np.repeat(np.array(nodes, np.int64), counts)
        if batch.ts_ms > int(job.rank_seen_ms[ranks].max()) >= 0 and int(steps.max()) <= int(
            job.rank_step[ranks].max()
        ):
            # a rank's newer message numbers its steps as ones it reported: the job restarted from a checkpoint
            job.pending.clear()
            job.last_step = int(steps.min()) - 1
            job.rank_step[:] = -1
        job.newest_ms = max(job.newest_ms, batch.ts_ms)
        np.maximum.at(job.rank_step, ranks, steps)
        self.progressed.add(batch.job)
        job.rank_seen_ms[ranks] = np.maximum(job.rank_seen_ms[ranks], batch.ts_ms)
        for step in np.unique(steps).tolist():
            if step <= job.last_step:
                continue  # already judged (a redelivery, or a message later than the next step's)
            mask = steps == step
            pending = job.pending.setdefault(step, _Step(batch.ts_ms))
            pending.ranks.append(ranks[mask])
            pending.compute.append(batch.columns["compute_s"][mask].astype(np.float64))
            pending.wait.append(batch.columns["wait_s"][mask].astype(np.float64))
            pending.count += int(mask.sum())
        # a step is complete when every rank still reporting has reported it or a later one (a
        # rank's message may carry many steps, a node's one step of its ranks; a rank whose sample
        # was lost reports the next step); a rank silent for `rank_silence_s` holds nothing back
        # (until `min_ranks` ranks have reported, steps wait for more, up to MAX_PENDING_STEPS: the
        # first ranks' messages of a job must not have its first steps judged without the others)
        active = job.rank_seen_ms >= max(0, job.newest_ms - int(self.settings.rank_silence_s * 1000))
        complete = int(job.rank_step[active].min()) if active.sum() >= self.settings.min_ranks else -1
        complete = max(complete, max(job.pending, default=-1) - MAX_PENDING_STEPS)
        for step in sorted(job.pending):
            if step > complete:
                break
            out += self._judge(batch.job, job, step, job.pending.pop(step))
        return out

    def take_progress(self) -> dict[str, dict]:
        """Where each job that reported since the last call stands, if that changed: its newest step (any rank's),
        the event time of its newest report, its usual step time (None until a step is judged),
        its ranks still reporting, and those of them behind the newest step (`RANKS_LISTED` named)."""
        out = {}
        for name in sorted(self.progressed):
            job = self.jobs.get(name)
            if job is None or not job.ranks:
                continue
            active = job.rank_seen_ms >= max(0, job.newest_ms - int(self.settings.rank_silence_s * 1000))
            newest = int(job.rank_step.max())
            behind = np.flatnonzero(active & (job.rank_step < newest))
            told = (newest, int(job.newest_ms), len(behind))
            if self.told.get(name) == told:
                continue
            self.told[name] = told
            out[name] = {
                "last_step": newest,
                "last_report_ms": int(job.newest_ms),
                "step_s": round(float(np.median(job.durations)), 4) if job.durations else None,
                "ranks": int(active.sum()),
                "behind": len(behind),
                "behind_ranks": behind[:RANKS_LISTED].tolist(),
            }
        self.progressed.clear()
        return out

    def take_timeouts(self) -> dict[str, list[list]]:
        """Each job's collective timeouts since the last call: [ts_ms, rank, seq, waited_s or None]."""
        out, self.timed_out = self.timed_out, {}
        return out

    def _timeouts(self, batch: Batch) -> None:
        """A step message's collective timeouts (its `timeouts` group): for the hang watch; the nodes
        of the ranks that timed out run the job."""
        job = self.jobs.setdefault(batch.job, _Job())
        names = [batch.source] if batch.parts is None else [s for s, c in batch.parts if c["timeouts"]]
        for node in (self.topo.node_index(name) for name in names):
            if node not in job.nodes:
                job.nodes.add(node)
                self.new_placements.setdefault(batch.job, set()).add(node)
        waited = batch.columns["timeout_waited_s"].astype(np.float64)
        self.timed_out.setdefault(batch.job, []).extend(
            [batch.ts_ms, int(rank), int(seq), None if np.isnan(w) else round(float(w), 3)]
            for rank, seq, w in zip(
                batch.columns["timeout_rank"].tolist(), batch.columns["timeout_seq"].tolist(), waited.tolist()
            )
        )

    def _grow(self, job: _Job, ranks: int) -> None:
        if ranks <= job.ranks:
            return
        w = self.settings.window_steps
        old = job.ranks
        job.rank_node = np.concatenate([job.rank_node, np.full(ranks - old, -1, np.int64)])
        job.rank_step = np.concatenate([job.rank_step, np.full(ranks - old, -1, np.int64)])
        job.rank_seen_ms = np.concatenate([job.rank_seen_ms, np.full(ranks - old, -1, np.int64)])
        job.firing = np.concatenate([job.firing, np.zeros(ranks - old, bool)])
        job.usual = np.concatenate([job.usual, np.ones(ranks - old)])
        job.learned = np.concatenate([job.learned, np.zeros(ranks - old, np.int64)])
        job.cusum = np.concatenate([job.cusum, np.zeros(ranks - old)])
        job.shift = np.concatenate([job.shift, np.zeros(ranks - old)])
        job.recovery = np.concatenate([job.recovery, np.zeros(ranks - old)])
        for attr in ("ratios", "excess"):
            grown = np.full((w, ranks), np.nan)
            if getattr(job, attr) is not None:
                grown[:, :old] = getattr(job, attr)
            setattr(job, attr, grown)
        job.ranks = ranks

    def _judge(self, name: str, job: _Job, step: int, data: _Step) -> list[Alert]:
        s = self.settings
        job.last_step = max(job.last_step, step)
        ranks = np.concatenate(data.ranks)
        compute = np.concatenate(data.compute)
        job.durations = job.durations[-(DURATION_STEPS - 1) :] + [float(np.median(compute + np.concatenate(data.wait)))]
        if len(ranks) < s.min_ranks:
            return []
        median = float(np.median(compute))
        if median <= 0:
            return []
        ratio = compute / median
        spread = _robust_sd(ratio)
        job.sigma = spread if job.sigma is None else 0.9 * job.sigma + 0.1 * spread
        assert job.ratios is not None and job.excess is not None  # made by _grow before a step is judged
        row = np.full(job.ranks, np.nan)
        row[ranks] = ratio
        job.ratios[job.filled % s.window_steps] = row
        cusum_limit, recovery_limit = self._change(job, ranks, ratio)
        job.filled += 1
        if job.filled < s.window_steps:
            return []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a rank with no samples in the window yet
            rolling = np.nanmedian(job.ratios, axis=0)
            rolling_excess = np.nanmedian(job.excess, axis=0)
        # the noise of a rank's rolling median: the per-step noise over the window, or, when ranks also
        # differ for good (healthy offsets of 1-3 %), the robust spread of the rolling medians across ranks
        spread = _robust_sd(rolling[np.isfinite(rolling)])
        excess = max(s.min_slowdown, s.k_sigma * max(MEDIAN_EFFICIENCY * job.sigma / np.sqrt(s.window_steps), spread))
        out: list[Alert] = []
        # and not a burst of steps, and slower than its peers too: a fast rank back to the median holds nobody up
        changed = (job.cusum >= cusum_limit) & (rolling_excess >= s.min_slowdown) & (rolling >= 1 + s.min_slowdown)
        # the peer rule forgives a rank the part of its usual offset that healthy ranks have (up to
        # min_slowdown): a worker always 7 % slower is slower by 2 % against the peer margin
        # (once its usual is learned: in its first steps a straggler would be forgiven its own slowdown)
        beyond_usual = rolling - np.clip(job.usual - 1, 0.0, s.min_slowdown) * (job.learned >= LEARN_FIRST_STEPS)
        # a rank's rolling median over fewer than half the window (a rank that joined late) says too little
        seen = np.isfinite(job.ratios).sum(axis=0) >= (s.window_steps + 1) // 2
        slow = np.flatnonzero(((beyond_usual > 1 + excess) | changed) & ~job.firing & seen)
        wait_by_rank = np.full(job.ranks, np.nan)
        wait_by_rank[ranks] = np.concatenate(data.wait)
        peers_wait = float(np.nanmedian(wait_by_rank)) if len(ranks) else 0.0
        for rank in slow.tolist():
            node = int(job.rank_node[rank])
            if node < 0:
                continue
            job.firing[rank] = True
            job.shift[rank] = max(float(rolling_excess[rank]), 0.0) if np.isfinite(rolling_excess[rank]) else 0.0
            job.recovery[rank] = 0.0
            card = self.topo.card_name(node, rank % self.topo.cards_per_node)
            alert = self.book.fire(
                KIND,
                card,
                data.ts_ms,
                severity="warning",
                summary=f"{card} straggling in {name}: rank {rank} computes {100 * (rolling[rank] - 1):.0f} % slower "
                f"than the job's median over the last {s.window_steps} steps (usually "
                f"{100 * (job.usual[rank] - 1):+.0f} %)",
                labels={
                    "job": name,
                    "node": self.topo.node_name(node),
                    "card": str(rank % self.topo.cards_per_node),
                    "rank": str(rank),
                },
                evidence={
                    "rank": rank,
                    "step": step,
                    "relative_compute": round(float(rolling[rank]), 4),
                    "threshold": round(1 + excess, 4),
                    "noise_sigma": round(job.sigma, 4),
                    "usual_relative_compute": round(float(job.usual[rank]), 4),
                    "cusum": round(float(job.cusum[rank]), 2),
                    "cusum_threshold": round(cusum_limit, 2),
                    "window_steps": s.window_steps,
                    "median_compute_s": round(median, 4),
                    "peers_median_wait_s": round(peers_wait, 4),
                },
            )
            if alert:
                out.append(alert)
        recovered = np.flatnonzero(job.firing & (beyond_usual < 1 + excess / 2) & (job.recovery >= recovery_limit))
        reason = f"back within {100 * excess / 2:.0f} % of the job's median and at its usual pace"
        return out + self._resolve(job, recovered, data.ts_ms, reason)

    def _resolve(self, job: _Job, ranks: np.ndarray, ts_ms: int, reason: str) -> list[Alert]:
        out: list[Alert] = []
        for rank in ranks.tolist():
            job.firing[rank] = False
            job.cusum[rank] = 0.0
            job.recovery[rank] = 0.0
            node = int(job.rank_node[rank])
            card = self.topo.card_name(node, rank % self.topo.cards_per_node)
            done = self.book.resolve(KIND, card, ts_ms, reason=reason)
            if done:
                out.append(done)
        return out

    def _resolve_stalled(self, now_ms: int, current: str) -> list[Alert]:
        """Resolve the firing ranks of every other job that made no step for `stale_s` of event time."""
        stale_ms = self.settings.stale_s * 1000
        out: list[Alert] = []
        for name, job in self.jobs.items():
            if name != current and 0 <= job.newest_ms < now_ms - stale_ms and job.firing.any():
                out += self._resolve(
                    job,
                    np.flatnonzero(job.firing),
                    now_ms,
                    f"{name} made no step for {self.settings.stale_s:.0f} s: nothing left to judge",
                )
        return out

    def _change(self, job: _Job, ranks: np.ndarray, ratio: np.ndarray) -> tuple[float, np.ndarray]:
        """Update each rank's CUSUM of its excess over its usual ratio (and, for a firing rank, the
        CUSUM of its return), and learn the usual from the ranks that show no sign of a slowdown;
        return the firing threshold h and each rank's recovery threshold."""
        s = self.settings
        excess = ratio - job.usual[ranks]
        # a rank whose CUSUM is already half way to firing stops teaching its usual: judged on the
        # state before this step, so no step's own noise decides whether it is learned (unbiased), yet
        # a slowdown early in a job (when the usual still learns fast) cannot be learned as usual
        halfway = job.cusum[ranks] >= job.cusum_limit / 2
        spread = _robust_sd(excess)
        job.excess_sigma = spread if job.excess_sigma is None else 0.9 * job.excess_sigma + 0.1 * spread
        sigma = max(job.excess_sigma, spread, 1e-4)  # the larger: a noisy step is not taken for a slowdown
        k = s.min_slowdown / sigma  # the CUSUM's reference: only excess above min_slowdown accumulates
        limit = float(_cusum_threshold(np.array([k]), s.false_alarm_steps)[0])
        job.cusum_limit = limit
        z = excess / sigma
        job.cusum[ranks] = np.maximum(job.cusum[ranks] + np.minimum(z - k, limit / 3), 0.0)
        # the return: the reference halfway between its usual and the slowdown it fired with
        k_back = np.maximum(job.shift, s.min_slowdown) / 2 / sigma
        back_limit = _cusum_threshold(k_back, s.false_alarm_steps)
        firing = job.firing[ranks]
        gain = np.minimum(k_back[ranks] - z, back_limit[ranks] / 3)
        job.recovery[ranks] = np.where(firing, np.maximum(job.recovery[ranks] + gain, 0.0), 0.0)
        row = np.full(job.ranks, np.nan)
        row[ranks] = excess
        assert job.excess is not None  # made by _grow before a step is judged
        job.excess[job.filled % s.window_steps] = row
        young = job.learned[ranks] < LEARN_FIRST_STEPS
        job.cusum[ranks[young]] = 0.0
        # the usual learns from every step of a rank that is not firing, each step's pull clipped at
        # +-k sigma: unbiased for noise symmetric about the usual (learning only from steps under k,
        # as before, biased it low by 0.2 sigma and the CUSUM drifted up: ~100x the false alarms
        # it aims at), while a slowdown moves it by at most k sigma / usual_steps a step
        learn = ~job.firing[ranks] & ~halfway
        calm = ranks[learn]
        job.learned[calm] += 1
        weight = 1.0 / np.minimum(job.learned[calm], s.usual_steps)
        pull = ratio[learn] - job.usual[calm]
        bound = np.where(young[learn], np.inf, k * sigma)
        job.usual[calm] += weight * np.clip(pull, -bound, bound)
        return limit, back_limit


def _cusum_threshold(k: np.ndarray, false_alarm_steps: float) -> np.ndarray:
    """The threshold h of a one-sided CUSUM with reference k (in noise units) that raises one false
    alarm per `false_alarm_steps` steps of Gaussian noise (Siegmund's approximation), at least 1."""
    return np.maximum(np.log(2 * k * k * false_alarm_steps) / (2 * k) - 1.166, 1.0)


def _robust_sd(values: np.ndarray) -> float:
    """1.4826 x the median absolute deviation: the standard deviation of normal values, robust to
    the few that are not (0 for none)."""
    return 1.4826 * float(np.median(np.abs(values - np.median(values)))) if len(values) else 0.0
