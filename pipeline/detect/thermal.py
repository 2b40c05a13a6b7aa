"""`thermal_throttle`: a card hotter than its node's other cards and clocked below them, for a while.

Peers are the other cards of the same node, which run the same job at the same load; a
single-sample spike or a checkpoint pause (every card cools together) does not fire.
"""

from __future__ import annotations

import numpy as np

from pipeline.alerts import AlertBook
from pipeline.schemas import Alert, Batch
from pipeline.settings import ThermalSettings
from pipeline.topology import Topology

KIND = "thermal_throttle"


class ThermalDetector:
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
        node = self.topo.node_index(batch.source)
        ts = batch.ts_ms
        if ts <= self.node_last_ms[node] or len(batch.columns["card"]) < 3:
            return []
        self.node_last_ms[node] = ts
        s = self.settings
        cards = batch.columns["card"].astype(np.intp)
        temp = batch.columns["temp_c"].astype(np.float64)
        clock = batch.columns["sm_clock_mhz"].astype(np.float64)
        peer_temp, peer_clock = _median(temp), _median(clock)
        hot = (((temp - peer_temp >= s.temp_over_peers_c) & (clock <= peer_clock * (1 - s.clock_drop)))
               | (temp >= s.temp_limit_c))
        streak = self.hot_streak[node]
        cool = self.cool_streak[node]
        streak[cards] = np.where(hot, streak[cards] + 1, 0)
        cool[cards] = np.where(hot, 0, cool[cards] + 1)
        out: list[Alert] = []
        for i in np.flatnonzero(hot & (streak[cards] >= s.samples) & ~self.firing[node, cards]).tolist():
            card = int(cards[i])
            self.firing[node, card] = True
            name = self.topo.card_name(node, card)
            alert = self.book.fire(
                KIND, name, ts, severity="warning",
                summary=f"{name} thermal throttling: {temp[i]:.0f} °C vs {peer_temp:.0f} °C on its node, "
                        f"clock {clock[i]:.0f} MHz vs {peer_clock:.0f} MHz",
                labels={"node": batch.source, "card": str(card)},
                evidence={"temp_c": round(float(temp[i]), 1), "peer_temp_c": round(float(peer_temp), 1),
                          "sm_clock_mhz": round(float(clock[i])), "peer_sm_clock_mhz": round(float(peer_clock)),
                          "samples": int(streak[card]), "temp_over_peers_c": s.temp_over_peers_c,
                          "clock_drop": s.clock_drop})
            if alert:
                out.append(alert)
        for card in cards[self.firing[node, cards] & (cool[cards] >= s.recovery_samples)].tolist():
            self.firing[node, card] = False
            alert = self.book.resolve(KIND, self.topo.card_name(node, card), ts,
                                      reason=f"temperature and clock back with its peers for {s.recovery_samples} samples")
            if alert:
                out.append(alert)
        return out


def _median(values: np.ndarray) -> float:
    """Median of a short array (np.median's overhead dominates for 8 values)."""
    ordered = np.sort(values)
    mid = len(ordered) // 2
    return float(ordered[mid]) if len(ordered) % 2 else float(ordered[mid - 1] + ordered[mid]) / 2
