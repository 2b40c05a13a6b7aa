"""Whether a node's cards are busy: the card side of telling a hung job from a stopped one.

A job whose steps stop may be hung (its collective never completes; NCCL's and HCCL's kernels
spin on the cards, which read near 100 % utilisation) or stopped (a restart, a checkpoint written
from the host, the job ended: the cards idle). The step telemetry cannot tell these apart; the
cards can. This tracker reduces each card batch to one flag per node, busy when its cards' mean
utilisation is at least `BUSY_UTIL`, and hands on only the changes (`take`), for the correlator's
hang watch (`pipeline.correlate.hang`).
"""

from __future__ import annotations

import numpy as np

from pipeline.model.schemas import Batch
from pipeline.topology.protocol import ClusterTopology

# 50 %: halfway between an idle card (0-5 %: dcgm_exporter/prometheus_api_query's idle H100s read 0)
# and a card in a training step or spinning in a collective (90-100 %); a node with one card of
# eight idle (a single-sample dip) stays busy
BUSY_UTIL = 50.0


class NodeActivity:
    """Each node's busy flag from its cards' utilisation, and the changes since the last `take`."""

    def __init__(self, topology: ClusterTopology) -> None:
        self.topo = topology
        self.busy = np.zeros(topology.nodes, np.int8)  # 1 busy, 0 idle, -1 not known yet
        self.busy[:] = -1
        self.changed: dict[int, tuple[bool, int]] = {}  # node -> (busy, sample time) since the last take

    def push(self, batch: Batch) -> None:
        """Take one card batch (a node's or a collector's of many nodes)."""
        util = batch.columns.get("util")
        if util is None or not len(util):
            return
        if batch.parts is None:
            names, rows = [batch.source], np.array([len(util)])
        else:
            names = [source for source, _ in batch.parts]
            rows = np.fromiter((counts["rows"] for _, counts in batch.parts), np.int64, len(batch.parts))
        keep = rows > 0
        if not keep.any():
            return
        values = np.asarray(util, np.float64)
        known = ~np.isnan(values)
        starts = np.concatenate([[0], np.cumsum(rows)[:-1]])[keep]
        sums = np.add.reduceat(np.where(known, values, 0.0), starts)
        counts = np.add.reduceat(known.astype(np.int64), starts)
        nodes = np.fromiter((self.topo.node_index(name) for name, k in zip(names, keep) if k), np.intp, int(keep.sum()))
        measured = counts > 0
        nodes = nodes[measured]
        busy = (sums[measured] / counts[measured] >= BUSY_UTIL).astype(np.int8)
        flipped = nodes[self.busy[nodes] != busy]
        if len(flipped):
            self.busy[nodes] = busy
            for node in flipped.tolist():
                self.changed[node] = (bool(self.busy[node] == 1), batch.ts_ms)

    def take(self) -> dict[str, tuple[bool, int]]:
        """Nodes whose flag changed (or was first learned) since the last call: name -> (busy, sample ms)."""
        changed, self.changed = self.changed, {}
        return {self.topo.node_name(node): flag for node, flag in changed.items()}
