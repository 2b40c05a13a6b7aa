"""`thermal_throttle`: a card hotter than its node's other cards and clocked below them, for a while.

Peers are the other cards of the same node, which run the same job at the same load; a
single-sample spike or a checkpoint pause (every card cools together) does not fire. Cards differ
for good (airflow: a node's H100s idle 3-4 °C apart; clocks and power by a few percent), so each
card is judged against its own usual place among its peers: its offset from the node's median
temperature and clock, learned online (a running mean over the first `baseline_samples`, then an
exponential average over that many) from every sample except those that look like the start of a
throttle (hotter and slower at once) or come while it fires. Until half of those samples are in,
a card fires only at the absolute limit. A collector's message (many nodes) is judged at once.
"""

from __future__ import annotations

import numpy as np

from pipeline.detect.alert_book import AlertBook
from pipeline.detect.rows import group_medians, node_rows
from pipeline.model.schemas import Alert, Batch
from pipeline.settings import ThermalSettings
from pipeline.topology.protocol import ClusterTopology

KIND = "thermal_throttle"


class ThermalDetector:
    multi_source = True  # takes a collector's multi-node batch whole

    def __init__(self, topology: ClusterTopology, settings: ThermalSettings | None = None) -> None:
        self.topo = topology
        self.settings = settings or ThermalSettings()
        n, k = topology.nodes, topology.cards_per_node
        self.hot_streak = np.zeros((n, k), np.int32)
        self.cool_streak = np.zeros((n, k), np.int32)
        self.firing = np.zeros((n, k), bool)
        self.node_last_ms = np.full(n, -1, np.int64)
        self.base_temp = np.zeros((n, k))  # the card's usual temperature over its node's median
        self.base_clock = np.zeros((n, k))  # its usual clock relative to the median (fraction)
        self.base_samples = np.zeros((n, k), np.int32)
        self.book = AlertBook()

    def push(self, batch: Batch, stream: int = 0) -> list[Alert]:
        """Judge every node of a (collector's) card batch at once."""
        r = node_rows(batch, self.topo)
        ts = batch.ts_ms
        judged = (ts > self.node_last_ms[r.nodes]) & (r.row_counts >= 3)  # per part
        if not judged.any():
            return []
        self.node_last_ms[r.nodes[judged]] = ts
        measured = np.isfinite(batch.columns["temp_c"]) & np.isfinite(batch.columns["sm_clock_mhz"])
        rows = judged[r.row_part] & measured  # NaN: not reported this tick, neither judged nor learned from
        part = r.row_part[rows]
        node = r.nodes[part]
        s = self.settings
        cards = batch.columns["card"][rows].astype(np.intp)
        temp = batch.columns["temp_c"][rows].astype(np.float64)
        clock = batch.columns["sm_clock_mhz"][rows].astype(np.float64)
        peer_temp = group_medians(temp, part, len(r.nodes))[part]
        peer_clock = group_medians(clock, part, len(r.nodes))[part]
        temp_dev = temp - peer_temp  # this sample's offsets from the node's other cards
        clock_dev = clock / np.maximum(peer_clock, 1.0) - 1
        over = temp_dev - self.base_temp[node, cards]
        slower = self.base_clock[node, cards] - clock_dev
        known = self.base_samples[node, cards] >= s.baseline_samples // 2  # its usual is learned
        hot = ((over >= s.temp_over_peers_c) & (slower >= s.clock_drop) & known) | (temp >= s.temp_limit_c)
        self._learn(
            node,
            cards,
            temp_dev,
            clock_dev,
            ~((over >= s.temp_over_peers_c / 2) & (slower >= s.clock_drop / 2)) & ~self.firing[node, cards],
        )
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
                KIND,
                name,
                ts,
                severity="warning",
                summary=f"{name} thermal throttling: {temp[i]:.0f} °C vs {peer_temp[i]:.0f} °C on its node "
                f"({over[i]:+.1f} °C over its usual), clock {clock[i]:.0f} MHz vs {peer_clock[i]:.0f} MHz",
                labels={"node": r.names[part[i]], "card": str(card)},
                evidence={
                    "temp_c": round(float(temp[i]), 1),
                    "peer_temp_c": round(float(peer_temp[i]), 1),
                    "sm_clock_mhz": round(float(clock[i])),
                    "peer_sm_clock_mhz": round(float(peer_clock[i])),
                    "over_usual_c": round(float(over[i]), 1),
                    "clock_below_usual": round(float(slower[i]), 3),
                    "samples": int(streak[i]),
                    "temp_over_peers_c": s.temp_over_peers_c,
                    "clock_drop": s.clock_drop,
                },
            )
            if alert:
                out.append(alert)
        for i in np.flatnonzero(self.firing[node, cards] & (cool >= s.recovery_samples)).tolist():
            n, card = int(node[i]), int(cards[i])
            self.firing[n, card] = False
            alert = self.book.resolve(
                KIND,
                self.topo.card_name(n, card),
                ts,
                reason=f"temperature and clock back with its peers for {s.recovery_samples} samples",
            )
            if alert:
                out.append(alert)
        return out

    def _learn(
        self, node: np.ndarray, cards: np.ndarray, temp_dev: np.ndarray, clock_dev: np.ndarray, usual: np.ndarray
    ) -> None:
        """Move each usual-looking card's baseline towards this sample's offsets."""
        node, cards = node[usual], cards[usual]
        seen = self.base_samples[node, cards] + 1
        self.base_samples[node, cards] = seen
        weight = 1.0 / np.minimum(seen, self.settings.baseline_samples)
        self.base_temp[node, cards] += weight * (temp_dev[usual] - self.base_temp[node, cards])
        self.base_clock[node, cards] += weight * (clock_dev[usual] - self.base_clock[node, cards])
