"""Rows of a (possibly multi-source) card batch mapped to node indices, for detectors that judge a
collector's whole message at once instead of node by node."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.model.schemas import Batch
from pipeline.topology.protocol import ClusterTopology


@dataclass
class NodeRows:
    nodes: np.ndarray  # node index of each source (part), in message order
    names: list[str]  # node name of each source
    row_part: np.ndarray  # part of each sample row
    event_part: np.ndarray  # part of each error-event row
    row_counts: np.ndarray  # sample rows per part

    def row_nodes(self) -> np.ndarray:
        return self.nodes[self.row_part]


def node_rows(batch: Batch, topology: ClusterTopology) -> NodeRows:
    """Per-row node indices of a card batch (computed once per batch and kept on it)."""
    found = getattr(batch, "_node_rows", None)
    if found is not None:
        return found
    if batch.parts is None:
        names = [batch.source]
        rows, events = np.array([batch.rows("rows")]), np.array([batch.rows("events")])
    else:
        names = [source for source, _ in batch.parts]
        rows = np.array([counts["rows"] for _, counts in batch.parts])
        events = np.array([counts["events"] for _, counts in batch.parts])
    parts = np.arange(len(names))
    found = NodeRows(
        nodes=np.array([topology.node_index(n) for n in names], np.intp),
        names=names,
        row_part=np.repeat(parts, rows),
        event_part=np.repeat(parts, events),
        row_counts=rows,
    )
    batch._node_rows = found  # type: ignore[attr-defined]
    return found


def group_medians(values: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    """Median of `values` per group (groups given per value, 0..n_groups-1); NaN for an empty group.
    The even-count median is the mean of the two middle values, as np.median's."""
    if n_groups and len(values) % n_groups == 0:  # the usual card batch: every node with all its cards
        per = len(values) // n_groups
        if per and (groups[::per] == np.arange(n_groups)).all() and (np.diff(groups) >= 0).all():
            ordered = np.sort(values.reshape(n_groups, per), axis=1)
            return (ordered[:, (per - 1) // 2] + ordered[:, per // 2]) / 2
    order = np.lexsort((values, groups))
    ordered = values[order]
    counts = np.bincount(groups, minlength=n_groups)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    out = np.full(n_groups, np.nan)
    has = counts > 0
    lo = starts[has] + (counts[has] - 1) // 2
    hi = starts[has] + counts[has] // 2
    out[has] = (ordered[lo] + ordered[hi]) / 2
    return out
