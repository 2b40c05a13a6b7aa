"""Per-rank step times from real training: readers for per-rank step-time tables (Alibaba PAI
mini-batch CSVs, ByteDance StragglerAnalysis op traces).

Ranks map to cards as in the spec (rank r on card r % K of node first_node + r // K) unless the
caller says otherwise; traces without wall-clock times get one step per `step_s` from `start`.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.model.schemas import Batch
from pipeline.topology.synthetic import Topology
from producers.adapters import FormatError, binary_kind, read_text

COMPUTE_OPS = ("forward-compute", "backward-compute")
START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z, for traces that carry no wall-clock time


@dataclass(frozen=True)
class StepRecord:
    job: str
    rank: int
    step: int
    compute_s: float
    wait_s: float
    ts_ms: int


def to_batches(records: list[StepRecord], topology: Topology, first_node: int = 0) -> list[Batch]:
    """Step batches as the simulator sends them: per step, one batch per node of the job's ranks."""
    k = topology.cards_per_node
    grouped: dict[tuple[int, str, int, int], list[StepRecord]] = defaultdict(list)
    for r in records:
        grouped[(r.ts_ms, r.job, r.step, first_node + r.rank // k)].append(r)
    batches = []
    for (ts, job, step, node), rs in sorted(grouped.items()):
        rs.sort(key=lambda r: r.rank)
        batches.append(
            Batch(
                "step",
                topology.node_name(node),
                ts,
                {
                    "rank": np.array([r.rank for r in rs], "<u4"),
                    "step": np.full(len(rs), step, "<u4"),
                    "compute_s": np.array([r.compute_s for r in rs], "<f4"),
                    "wait_s": np.array([r.wait_s for r in rs], "<f4"),
                },
                job=job,
            )
        )
    return batches


def timeout_batches(timeouts: list, topology: Topology, first_node: int = 0) -> list[Batch]:
    """Collective timeouts (`producers.adapters.nccl_log.CollectiveTimeout`) as step batches with no
    step rows: per time and job, one batch per node of the ranks that timed out."""
    k = topology.cards_per_node
    grouped: dict[tuple[int, str, int], list] = defaultdict(list)
    for t in timeouts:
        grouped[(t.ts_ms, t.job, first_node + t.rank // k)].append(t)
    none = {
        name: np.empty(0, dtype)
        for name, dtype in (("rank", "<u4"), ("step", "<u4"), ("compute_s", "<f4"), ("wait_s", "<f4"))
    }
    batches = []
    for (ts, job, node), found in sorted(grouped.items(), key=lambda item: item[0]):
        found.sort(key=lambda t: t.rank)
        columns = {
            **none,
            "timeout_rank": np.array([t.rank for t in found], "<u4"),
            "timeout_seq": np.array([t.seq for t in found], "<u8"),
            "timeout_waited_s": np.array([t.waited_s for t in found], "<f4"),
        }
        batches.append(Batch("step", topology.node_name(node), ts, columns, job=job))
    return batches


def read_pai_minibatch(path: str | Path, job: str | None = None, step_s: float = 1.0) -> list[StepRecord]:
    """Alibaba PAI `job_N_norm.csv`: columns `,worker,gpu,time,batch_time_norm`; `time` is the
    iteration index and `batch_time_norm` the mini-batch time normalised to 0..1000."""
    job = job or Path(path).stem
    try:
        text = read_text(path)
    except FormatError as exc:
        hint = ": use --format bytedance for op traces" if "Parquet" in str(exc) else ""
        raise FormatError(
            f"{path}: {exc}{hint}; expected a PAI mini-batch CSV (worker, time, batch_time_norm)"
        ) from None
    out = []
    with io.StringIO(text, newline="") as fh:
        reader = csv.DictReader(fh)
        header = [h.strip() for h in reader.fieldnames or []]
        missing = [c for c in ("worker", "time", "batch_time_norm") if c not in header]
        if missing:
            shown = ", ".join(header[:5]) + (", ..." if len(header) > 5 else "")
            raise FormatError(
                f"{path}: not a PAI mini-batch CSV: its header ({shown[:80]}) lacks "
                f"{', '.join(missing)} (expected columns ,worker,gpu,time,batch_time_norm)"
            )
        for line, row in enumerate(reader, 2):
            try:
                step = int(row["time"])
                out.append(
                    StepRecord(
                        job,
                        int(row["worker"]),
                        step,
                        float(row["batch_time_norm"]) / 1000,
                        0.0,
                        START_MS + int(step * step_s * 1000),
                    )
                )
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(
                    f"{path}:{line}: not a PAI mini-batch row (worker, time, batch_time_norm): "
                    f"{type(exc).__name__}: {exc}"
                ) from None
    if not out:
        raise FormatError(f"{path}: a header line without rows: no steps")
    return out


def read_bytedance_trace(path: str | Path, job: str | None = None, by_stage: bool = True) -> list[StepRecord]:
    """ByteDance StragglerAnalysis `trace-*.parquet` (one row per op): per rank and step, compute =
    forward + backward compute time, wait = everything else. With `by_stage` each pipeline stage is
    its own job (its ranks do the same work), so a slow stage is not mistaken for slow ranks."""
    import duckdb

    name = job or Path(path).stem
    with open(path, "rb") as fh:
        head = fh.read(4096)
    if head[:4] != b"PAR1":
        what = (
            "empty file"
            if not head
            else "a text file, not Parquet (a PAI mini-batch CSV? use --format pai)"
            if binary_kind(head) is None
            else f"{binary_kind(head)}, not Parquet"
        )
        raise FormatError(
            f"{path}: not a StragglerAnalysis op trace (stage, rank, step, optype, start_ts, duration): {what}"
        )
    try:
        rows = duckdb.execute(
            f"""
        select stage, rank, step,
               sum(duration) filter (where optype in {COMPUTE_OPS}) as compute_s,
               sum(duration) filter (where optype not in {COMPUTE_OPS}) as wait_s,
               min(start_ts) as first_ts
        from read_parquet(?) group by stage, rank, step order by step, rank""",
            [str(path)],
        ).fetchall()
    except duckdb.Error as exc:
        raise ValueError(
            f"{path}: not a StragglerAnalysis op trace (stage, rank, step, optype, start_ts, "
            f"duration): {str(exc).splitlines()[0]}"
        ) from None
    if not rows:
        raise FormatError(f"{path}: a StragglerAnalysis op trace without rows: no steps")
    step_start: dict[int, float] = {}
    for _stage, _rank, step, _compute, _wait, first in rows:
        step_start[step] = min(step_start.get(step, first), first)
    return [
        StepRecord(
            f"{name}/stage{stage}" if by_stage else name,
            int(rank),
            int(step),
            float(compute or 0),
            float(wait or 0),
            START_MS + int(step_start[step] * 1000),
        )
        for stage, rank, step, compute, wait, _ in rows
    ]
