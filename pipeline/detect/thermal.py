"""`thermal_throttle`: a card hotter than its node's other cards and clocked below them, for a while.

Peers are the other cards of the same node, which run the same job at the same load; a
single-sample spike or a checkpoint pause (every card cools together) does not fire. A collector's
message (many nodes) is judged at once: per-node medians over all its rows.
"""

from __future__ import annotations

import numpy as np

from pipeline.alerts import AlertBook
from pipeline.detect.rows import group_medians, node_rows
from pipeline.schemas import Alert, Batch
from pipeline.settings import ThermalSettings
from pipeline.topology import Topology

KIND = "thermal_throttle"


class ThermalDetector:
    multi_source = True  # takes a collector's multi-node batch whole

    def __init__(self, topology: Topology, settings: ThermalSettings | None = None) -> None:
        self.topo = topology
        self.settings = settings or ThermalSettings()
        n, k = topology.nodes, topology.cards_per_node
        self.hot_streak = np.zeros((n, k), np.int32)
        self.cool_streak = np.zeros((n, k), np.int32)
        self.firing = np.zeros((n, k), bool)
        self.node_last_ms = np.full(n, -1, np.int64)
        self.book = AlertBook()

    def push(self, batch: Batch, stream: int = 0) -> list[Alert]:
        """Judge every node of a (collector's) card batch at once."""
        r = node_rows(batch, self.topo)
        ts = batch.ts_ms
        judged = (ts > self.node_last_ms[r.nodes]) & (r.row_counts >= 3)  # per part
        if not judged.any():
            return []
        self.node_last_ms[r.nodes[judged]] = ts
        rows = judged[r.row_part]
        part = r.row_part[rows]
        node = r.nodes[part]
        s = self.settings
        cards = batch.columns["card"][rows].astype(np.intp)
        temp = batch.columns["temp_c"][rows].astype(np.float64)
        clock = batch.columns["sm_clock_mhz"][rows].astype(np.float64)
        peer_temp = group_medians(temp, part, len(r.nodes))[part]
        peer_clock = group_medians(clock, part, len(r.nodes))[part]
        hot = (((temp - peer_temp >= s.temp_over_peers_c) & (clock <= peer_clock * (1 - s.clock_drop)))
               | (temp >= s.temp_limit_c))
        streak = np.where(hot, self.hot_streak[node, cards] + 1, 0)
        cool = np.where(hot, 0, self.cool_streak[node, cards] + 1)
        self.hot_streak[node, cards] = streak
        self.cool_streak[node, cards] = cool
        out: list[Alert] = []
        for i in np.flatnonzero(hot & (streak >= s.samples) & ~self.firing[node, cards]).tolist():
            n, card = int(node[i]), int(cards[i])
            self.firing[n, card] = True
            name = self.topo.card_name(n, card)
            alert = self.book.fire(
                KIND, name, ts, severity="warning",
                summary=f"{name} thermal throttling: {temp[i]:.0f} °C vs {peer_temp[i]:.0f} °C on its node, "
                        f"clock {clock[i]:.0f} MHz vs {peer_clock[i]:.0f} MHz",
                labels={"node": r.names[part[i]], "card": str(card)},
                evidence={"temp_c": round(float(temp[i]), 1), "peer_temp_c": round(float(peer_temp[i]), 1),
                          "sm_clock_mhz": round(float(clock[i])), "peer_sm_clock_mhz": round(float(peer_clock[i])),
                          "samples": int(streak[i]), "temp_over_peers_c": s.temp_over_peers_c,
                          "clock_drop": s.clock_drop})
            if alert:
                out.append(alert)
        for i in np.flatnonzero(self.firing[node, cards] & (cool >= s.recovery_samples)).tolist():
            n, card = int(node[i]), int(cards[i])
            self.firing[n, card] = False
            alert = self.book.resolve(KIND, self.topo.card_name(n, card), ts,
                                      reason=f"temperature and clock back with its peers for {s.recovery_samples} samples")
            if alert:
                out.append(alert)
        return out
