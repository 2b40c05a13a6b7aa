"""Score alerts against injected faults, strictly, as `../shared/specs/scenario.md` ("Scoring
(strict)") and `docs/scenarios.md` say.

- A fault is detected by the first firing record (not grouped under another alert) whose kind is
  accepted for it and whose entity is its target, with start <= starts_at <= end + 60 s; latency =
  starts_at - start in event time, for stragglers also in steps of the target's job, and to the
  notification (plus the grouping holds the pipeline adds before a page leaves).
- One firing record detects at most one fault.
- A firing record with `root_cause` is a grouped consequence only if `root_cause` is the id of a
  record that detected a fault; otherwise it is a false positive.
- Every other firing record is a false positive: confounders, ungrouped symptoms, re-fires (the
  same alert firing again after it resolved, or another kind on the same target). The one
  documented exception: `link_flapping` after `link_down` on a link with a `link_flap` fault.
- Per fault: the pages it caused (ungrouped firing records on its target or on entities it
  contains, e.g. a node's cards and links, a leaf's links; goal 1), whether its alert resolved while
  the fault was still active, and whether it was still firing 120 s after the fault ended.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from pipeline.model.schemas import Alert

ACCEPTED: dict[str, tuple[str, ...]] = {
    "straggler": ("straggler",),
    "thermal_throttle": ("straggler", "thermal_throttle"),
    "link_degradation": ("link_degraded",),
    "link_flap": ("link_flapping", "link_down"),
    "link_down": ("link_down",),
    "card_failure": ("card_failed",),
    "ecc_error": ("card_ecc", "card_failed"),
    "node_failure": ("node_down",),
    "switch_failure": ("switch_down",),
    "job_hang": ("job_hang",),
}
PRIMARY = {
    "straggler": "straggler",
    "thermal_throttle": "thermal_throttle",
    "link_degraded": "link_degradation",
    "link_flapping": "link_flap",
    "link_down": "link_down",
    "card_failed": "card_failure",
    "card_ecc": "ecc_error",
    "node_down": "node_failure",
    "switch_down": "switch_failure",
    "job_hang": "job_hang",
}
GRACE_S = 60.0  # a detection may come up to this long after the fault ended (the spec)
STUCK_AFTER_S = 120.0  # an alert still firing this long after its fault ended never resolved (the spec)


@dataclass(frozen=True)
class Fault:
    """One injected fault, as the simulator's ground truth gives it (seconds since the start);
    `step_s`: the step time of the job the target card runs, for straggler latency in steps;
    `step_times_s`: when known, the times that job's steps were reported (latency in steps then counts
    them: a checkpoint pause or a stall is no steps)."""

    kind: str
    target: str
    start_s: float
    end_s: float
    step_s: float | None = None
    step_times_s: tuple[float, ...] | None = None


@dataclass
class Outcome:
    fault: Fault
    alert: Alert | None
    latency_s: float | None
    latency_steps: float | None = None
    notify_latency_s: float | None = None  # including the grouping holds before the page leaves
    pages: int = 0
    resolved_early: bool = False  # its alert resolved while the fault was still active
    stuck: bool | None = None  # still firing 120 s after the fault ended (None: the run ended before)


@dataclass
class Match:
    outcomes: list[Outcome]
    false_positives: list[Alert]
    grouped: int = 0  # firing records grouped under an alert that detected a fault
    tolerated: list[Alert] = field(default_factory=list)  # the documented link_flapping-after-link_down


def _seconds(iso: str | None, origin_ms: int) -> float:
    return (int(np.datetime64(str(iso).replace("Z", ""), "ms").astype(np.int64)) - origin_ms) / 1000


def _concerns(entity: str, target: str) -> bool:
    """Is the alert's entity the fault's target or a part of it (a node's cards and NICs, a
    switch's links)?"""
    return (
        entity == target
        or target in entity.split("~")
        or entity.startswith(f"{target}-")
        or any(side.startswith(f"{target}-") for side in entity.split("~"))
    )


def match(
    faults: list[Fault],
    alerts: list[Alert],
    origin_ms: int,
    end_s: float | None = None,
    holds: dict[str, float] | None = None,
    skew_s: float = 0.0,
) -> Match:
    """Each fault's detecting record and what it cost; the false positives. `end_s`: the run's
    length (to judge alerts that never resolved); `holds`: seconds an alert kind waits before it is
    paged (grouping), added to the notification latency; `skew_s`: how far a collector's clock may
    run ahead of the simulator's (a sample stamped that much before the fault began still detects
    it, with latency 0)."""
    holds = holds or {}
    firing = sorted((a for a in alerts if a.status == "firing"), key=lambda a: (a.starts_at, a.id))
    resolved: dict[str, list[float]] = defaultdict(list)
    for a in alerts:
        if a.status == "resolved":
            resolved[a.id].append(_seconds(a.ends_at or a.starts_at, origin_ms))
    used: set[int] = set()
    by_fault: dict[int, Outcome] = {}
    for n in sorted(range(len(faults)), key=lambda k: (faults[k].start_s, faults[k].target)):  # earliest first
        fault = faults[n]
        hit = next(
            (
                i
                for i, a in enumerate(firing)
                if i not in used
                and a.root_cause is None
                and a.kind in ACCEPTED[fault.kind]
                and a.entity == fault.target
                and fault.start_s - skew_s <= _seconds(a.starts_at, origin_ms) <= fault.end_s + GRACE_S
            ),
            None,
        )
        if hit is None:
            by_fault[n] = Outcome(fault, None, None)
            continue
        used.add(hit)
        first = firing[hit]
        fired_s = _seconds(first.starts_at, origin_ms)
        latency = max(fired_s - fault.start_s, 0.0)
        ends = sorted(t for t in resolved.get(first.id, []) if t >= fired_s)
        stuck = None
        if ends and ends[0] <= fault.end_s + STUCK_AFTER_S:
            stuck = False
        elif end_s is not None and end_s >= fault.end_s + STUCK_AFTER_S:
            stuck = True
        by_fault[n] = Outcome(
            fault,
            first,
            latency,
            latency_steps=_latency_steps(fault, fired_s),
            notify_latency_s=latency + holds.get(first.kind, 0.0),
            resolved_early=bool(ends) and ends[0] < fault.end_s,
            stuck=stuck,
        )
    outcomes = [by_fault[n] for n in range(len(faults))]  # in the caller's order
    detectors = {firing[i].id for i in used}
    flap_links = {
        o.fault.target
        for o in outcomes
        if o.fault.kind == "link_flap" and o.alert is not None and o.alert.kind == "link_down"
    }
    false_positives, tolerated, grouped = [], [], 0
    pages: list[Alert] = []
    for i, a in enumerate(firing):
        if i in used:
            pages.append(a)
        elif a.root_cause is not None and a.root_cause in detectors:
            grouped += 1
        elif a.kind == "link_flapping" and a.entity in flap_links and a.root_cause is None:
            tolerated.append(a)
            pages.append(a)
        else:  # paged too: a root_cause naming no detected fault inhibits nothing it should
            false_positives.append(a)
            pages.append(a)
    for page in pages:  # each page is charged to the one fault it concerns (its own target first)
        at = _seconds(page.starts_at, origin_ms)
        candidates = [
            o
            for o in outcomes
            if o.fault.start_s - skew_s <= at <= o.fault.end_s + GRACE_S and _concerns(page.entity, o.fault.target)
        ]
        if candidates:
            exact = [o for o in candidates if o.fault.target == page.entity]
            (exact or candidates)[0].pages += 1
    return Match(outcomes, false_positives, grouped, tolerated)


def _percentiles(values: list[float], prefix: str, unit: str = "s") -> dict[str, float | None]:
    arr = np.array(values, dtype=float)
    if not len(arr):
        return {f"{prefix}_p50_{unit}": None, f"{prefix}_p95_{unit}": None, f"{prefix}_max_{unit}": None}
    return {
        f"{prefix}_p50_{unit}": round(float(np.percentile(arr, 50)), 2),
        f"{prefix}_p95_{unit}": round(float(np.percentile(arr, 95)), 2),
        f"{prefix}_max_{unit}": round(float(arr.max()), 2),
    }


def _stats(outcomes: list[Outcome], false_positives: int) -> dict:
    found = [o for o in outcomes if o.alert is not None]
    detected, injected = len(found), len(outcomes)
    steps = [o.latency_steps for o in found if o.latency_steps is not None]
    # an outcome with an alert has both latencies: the filters only narrow the type
    latencies = [o.latency_s for o in found if o.latency_s is not None]
    notify_latencies = [o.notify_latency_s for o in found if o.notify_latency_s is not None]
    return {
        "injected": injected,
        "detected": detected,
        "recall": round(detected / injected, 4) if injected else None,
        "false_positives": false_positives,
        "precision": round(detected / (detected + false_positives), 4) if detected + false_positives else None,
        **_percentiles(latencies, "latency"),
        **_percentiles(notify_latencies, "notify_latency"),
        **({} if not steps else _percentiles(steps, "latency", "steps")),
        "pages_per_fault": round(sum(o.pages for o in found) / detected, 2) if detected else None,
        "resolved_early": sum(o.resolved_early for o in found),
        "stuck": sum(1 for o in found if o.stuck),
    }


def score(runs: list[tuple], holds: dict[str, float] | None = None) -> dict:
    """Per fault kind and overall, over runs of (faults, alerts, origin ms[, run length s[, skew s]])."""
    return summarize(
        [
            match(faults, alerts, origin_ms, rest[0] if rest else None, holds, rest[1] if len(rest) > 1 else 0.0)
            for faults, alerts, origin_ms, *rest in runs
        ]
    )


def summarize(results: list[Match]) -> dict:
    """Per fault kind and overall, over runs already matched."""
    by_kind_outcomes: dict[str, list[Outcome]] = defaultdict(list)
    by_kind_fp: dict[str, int] = defaultdict(int)
    grouped = 0
    for result in results:
        for o in result.outcomes:
            by_kind_outcomes[o.fault.kind].append(o)
        for a in result.false_positives:
            by_kind_fp[PRIMARY.get(a.kind, a.kind)] += 1
        grouped += result.grouped
    kinds = sorted(set(by_kind_outcomes) | set(by_kind_fp))
    by_kind = {k: _stats(by_kind_outcomes[k], by_kind_fp[k]) for k in kinds}
    everything = [o for k in kinds for o in by_kind_outcomes[k]]
    overall = _stats(everything, sum(by_kind_fp.values()))
    overall["grouped"] = grouped
    return {"by_kind": by_kind, "overall": overall}


def table(report: dict) -> str:
    """The scoring table as fixed-width text."""
    head = (
        f"{'fault kind':18} {'injected':>8} {'detected':>8} {'recall':>7} {'FP':>4} {'precision':>9} "
        f"{'p50 s':>7} {'p95 s':>7} {'max s':>7} {'page p95':>8} {'pages':>5} {'early':>5} {'stuck':>5}"
    )
    lines = [head, "-" * len(head)]

    def fmt(v: object, width: int) -> str:
        return f"{'-' if v is None else v:>{width}}"

    rows = list(report["by_kind"].items()) + [("overall", report["overall"])]
    for kind, s in rows:
        lines.append(
            f"{kind:18} {s['injected']:>8} {s['detected']:>8} {fmt(s['recall'], 7)} {s['false_positives']:>4} "
            f"{fmt(s['precision'], 9)} {fmt(s['latency_p50_s'], 7)} {fmt(s['latency_p95_s'], 7)} "
            f"{fmt(s['latency_max_s'], 7)} {fmt(s['notify_latency_p95_s'], 8)} "
            f"{fmt(s['pages_per_fault'], 5)} {s['resolved_early']:>5} {s['stuck']:>5}"
        )
    lines.append(
        "page p95: latency to the notification, grouping holds included; pages: per detected fault "
        "(goal 1); early: resolved while the fault lasted; stuck: firing 120 s after it ended"
    )
    return "\n".join(lines)


def _latency_steps(fault: Fault, fired_s: float) -> float | None:
    """Steps of the target's job from the fault's start to the alert: those reported in between when
    their times are known, else the latency in units of the job's step time."""
    if fault.step_times_s is not None:
        return float(sum(fault.start_s < t <= fired_s for t in fault.step_times_s))
    return round(max(fired_s - fault.start_s, 0.0) / fault.step_s, 1) if fault.step_s else None
