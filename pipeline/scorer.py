"""Score alerts against injected faults, as `docs/scenarios.md` ("Scoring") describes.

- A fault is detected by the first firing alert whose kind is accepted for it and whose entity is
  its target, with start <= starts_at <= end + 60 s; latency = starts_at - start (event time).
- A firing alert with `root_cause` set is a grouped consequence: neither for nor against.
- Every other firing alert that matches no fault is a false positive. (A second alert matching an
  already detected fault, e.g. `link_flapping` after `link_down` on the same flapping link, is not
  counted against: it names the right fault.)
- Reported per fault kind (alerts are filed under the fault kind they primarily detect) and overall.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from pipeline.schemas import Alert

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
}
PRIMARY = {"straggler": "straggler", "thermal_throttle": "thermal_throttle", "link_degraded": "link_degradation",
           "link_flapping": "link_flap", "link_down": "link_down", "card_failed": "card_failure",
           "card_ecc": "ecc_error", "node_down": "node_failure", "switch_down": "switch_failure"}
GRACE_S = 60.0


@dataclass(frozen=True)
class Fault:
    """One injected fault, as the simulator's ground truth gives it (seconds since the start)."""

    kind: str
    target: str
    start_s: float
    end_s: float


@dataclass
class Outcome:
    fault: Fault
    alert: Alert | None
    latency_s: float | None


def _seconds(iso: str, origin_ms: int) -> float:
    return (int(np.datetime64(iso.replace("Z", ""), "ms").astype(np.int64)) - origin_ms) / 1000


def match(faults: list[Fault], alerts: list[Alert], origin_ms: int) -> tuple[list[Outcome], list[Alert]]:
    """Each fault's detecting alert and latency; and the false positives."""
    firing = sorted((a for a in alerts if a.status == "firing"), key=lambda a: (a.starts_at, a.id))
    outcomes = []
    matched: set[int] = set()
    for fault in faults:
        hits = [i for i, a in enumerate(firing) if a.root_cause is None and a.kind in ACCEPTED[fault.kind]
                and a.entity == fault.target
                and fault.start_s <= _seconds(a.starts_at, origin_ms) <= fault.end_s + GRACE_S]
        matched.update(hits)
        first = firing[hits[0]] if hits else None
        outcomes.append(Outcome(fault, first, _seconds(first.starts_at, origin_ms) - fault.start_s if first else None))
    false_positives = [a for i, a in enumerate(firing) if a.root_cause is None and i not in matched]
    return outcomes, false_positives


def _stats(outcomes: list[Outcome], false_positives: int, matched_alerts: int) -> dict:
    latencies = np.array([o.latency_s for o in outcomes if o.latency_s is not None], dtype=float)
    detected = len(latencies)
    injected = len(outcomes)
    return {
        "injected": injected, "detected": detected, "recall": round(detected / injected, 4) if injected else None,
        "false_positives": false_positives,
        "precision": round(matched_alerts / (matched_alerts + false_positives), 4)
        if matched_alerts + false_positives else None,
        "latency_p50_s": round(float(np.percentile(latencies, 50)), 2) if detected else None,
        "latency_p95_s": round(float(np.percentile(latencies, 95)), 2) if detected else None,
        "latency_max_s": round(float(latencies.max()), 2) if detected else None,
    }


def score(runs: list[tuple[list[Fault], list[Alert], int]]) -> dict:
    """Per fault kind and overall, over one or more (faults, alerts, origin ms) runs."""
    by_kind_outcomes: dict[str, list[Outcome]] = defaultdict(list)
    by_kind_fp: dict[str, int] = defaultdict(int)
    by_kind_matched: dict[str, int] = defaultdict(int)
    grouped = 0
    for faults, alerts, origin_ms in runs:
        outcomes, fps = match(faults, alerts, origin_ms)
        for o in outcomes:
            by_kind_outcomes[o.fault.kind].append(o)
            if o.alert is not None:
                by_kind_matched[o.fault.kind] += 1
        for a in fps:
            by_kind_fp[PRIMARY.get(a.kind, a.kind)] += 1
        grouped += sum(1 for a in alerts if a.status == "firing" and a.root_cause)
    kinds = sorted(set(by_kind_outcomes) | set(by_kind_fp))
    by_kind = {k: _stats(by_kind_outcomes[k], by_kind_fp[k], by_kind_matched[k]) for k in kinds}
    everything = [o for k in kinds for o in by_kind_outcomes[k]]
    overall = _stats(everything, sum(by_kind_fp.values()), sum(by_kind_matched.values()))
    overall["grouped"] = grouped
    return {"by_kind": by_kind, "overall": overall}


def table(report: dict) -> str:
    """The scoring table as fixed-width text."""
    head = f"{'fault kind':18} {'injected':>8} {'detected':>8} {'recall':>7} {'FP':>4} {'precision':>9} " \
           f"{'p50 s':>7} {'p95 s':>7} {'max s':>7}"
    lines = [head, "-" * len(head)]

    def fmt(v: object, width: int) -> str:
        return f"{'-' if v is None else v:>{width}}"

    rows = list(report["by_kind"].items()) + [("overall", report["overall"])]
    for kind, s in rows:
        lines.append(f"{kind:18} {s['injected']:>8} {s['detected']:>8} {fmt(s['recall'], 7)} {s['false_positives']:>4} "
                     f"{fmt(s['precision'], 9)} {fmt(s['latency_p50_s'], 7)} {fmt(s['latency_p95_s'], 7)} "
                     f"{fmt(s['latency_max_s'], 7)}")
    return "\n".join(lines)
