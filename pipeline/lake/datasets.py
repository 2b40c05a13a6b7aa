"""The lake's datasets: the one list the sink writes, compaction orders, the views are generated
from (`pipeline.lake.views`) and a lake directory is recognised by (`pipeline.lake.dirs`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Dataset:
    name: str
    order: str  # the row order compaction writes: DuckDB prunes row groups by it
    deltas: bool  # counters and slowly changing values stored as deltas (`pipeline.lake.parquet.write_options`)


DATASETS = (
    Dataset("card", "node, card, ts", deltas=True),
    Dataset("card_events", "node, card, ts", deltas=False),
    Dataset("step", "job, node, rank, ts", deltas=True),
    Dataset("step_timeouts", "job, node, rank, ts", deltas=False),
    Dataset("port", "switch, port, ts", deltas=True),
    Dataset("alerts", "ts, id", deltas=False),
    Dataset("silences", "ts, id", deltas=False),
)
NAMES = tuple(d.name for d in DATASETS)
ORDER = {d.name: d.order for d in DATASETS}
DELTA_DATASETS = tuple(d.name for d in DATASETS if d.deltas)
