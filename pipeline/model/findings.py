"""The findings message: what the telemetry agents tell the correlator on the `findings` topic.

One JSON object per message, told apart by `"t"`:
- `{"t": "finding", "src": "<kind>/<partition>", "alert": {...}}`: a detector's alert state change
  (the alert record of the contract) from one ordered source;
- `{"t": "placement", "job": "...", "nodes": [...]}`: nodes newly seen running a job (blast radius);
- `{"t": "progress", "jobs": {"<job>": {"last_step", "last_report_ms", "step_s", "ranks", "behind",
  "behind_ranks"}}}`: where jobs that reported stand (the correlator's hang watch);
- `{"t": "timeouts", "jobs": {"<job>": [[ts_ms, rank, seq, waited_s or null], ...]}}`: ranks whose
  collective timed out (NCCL's watchdog or transport: the hang watch);
- `{"t": "activity", "nodes": {"<node>": [busy, ts_ms], ...}}`: nodes whose cards turned busy or idle;
- `{"t": "watermarks", "marks": {"<kind>/<partition>": [ts_ms, caught_up], ...}}`: how far each
  source's event time has come and whether its partition is read to the end (the correlator's clock).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from pipeline.model.schemas import Alert, InvalidRecord


@dataclass(frozen=True)
class Finding:
    alert: Alert
    source: str


@dataclass(frozen=True)
class Placement:
    job: str
    nodes: list[str]


@dataclass(frozen=True)
class Watermarks:
    marks: dict[str, tuple[int, bool]]


@dataclass(frozen=True)
class Progress:
    jobs: dict[str, dict]


@dataclass(frozen=True)
class Activity:
    nodes: dict[str, tuple[bool, int]]


@dataclass(frozen=True)
class Timeouts:
    jobs: dict[str, list[tuple[int, int, int, float | None]]]


FindingsRecord = Finding | Placement | Watermarks | Progress | Activity | Timeouts
PROGRESS_FIELDS = ("last_step", "last_report_ms", "step_s", "ranks", "behind", "behind_ranks")


def encode_finding(alert: Alert, source: str) -> bytes:
    return json.dumps({"t": "finding", "src": source, "alert": json.loads(alert.to_json())}).encode()


def encode_placement(job: str, nodes: list[str]) -> bytes:
    return json.dumps({"t": "placement", "job": job, "nodes": nodes}).encode()


def encode_watermarks(marks: dict[str, tuple[int, bool]]) -> bytes:
    return json.dumps({"t": "watermarks", "marks": {src: list(mark) for src, mark in marks.items()}}).encode()


def encode_progress(jobs: dict[str, dict]) -> bytes:
    return json.dumps({"t": "progress", "jobs": jobs}).encode()


def encode_activity(nodes: dict[str, tuple[bool, int]]) -> bytes:
    return json.dumps({"t": "activity", "nodes": {name: list(flag) for name, flag in nodes.items()}}).encode()


def encode_timeouts(jobs: dict[str, list[list]]) -> bytes:
    return json.dumps({"t": "timeouts", "jobs": jobs}).encode()


def decode_findings_record(value: bytes) -> FindingsRecord:
    """One findings message; InvalidRecord (class `not_a_finding`) says why it is not one."""
    try:
        record = json.loads(value)
        what = record["t"]
        if what == "finding":
            return Finding(Alert(**record["alert"]), str(record["src"]))
        if what == "placement":
            return Placement(str(record["job"]), [str(n) for n in record["nodes"]])
        if what == "watermarks":
            marks = {}
            for src, mark in record["marks"].items():
                ts, caught_up = mark if isinstance(mark, list) else (mark, False)  # version 1: ts only
                marks[str(src)] = (int(ts), bool(caught_up))
            return Watermarks(marks)
        if what == "progress":
            jobs = {}
            for job, state in record["jobs"].items():
                missing = [name for name in PROGRESS_FIELDS if name not in state]
                if missing:
                    raise ValueError(f"job {job!r} lacks {', '.join(missing)}")
                jobs[str(job)] = {name: state[name] for name in PROGRESS_FIELDS}
            return Progress(jobs)
        if what == "timeouts":
            return Timeouts(
                {
                    str(job): [
                        (int(ts), int(rank), int(seq), None if waited is None else float(waited))
                        for ts, rank, seq, waited in rows
                    ]
                    for job, rows in record["jobs"].items()
                }
            )
        if what == "activity":
            return Activity({str(node): (bool(busy), int(ts)) for node, (busy, ts) in record["nodes"].items()})
        raise ValueError(f"unknown record type {what!r}")
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise InvalidRecord(f"not a findings record: {type(exc).__name__}: {exc}", "not_a_finding") from None
