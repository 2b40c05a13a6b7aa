"""What the live page shows, from the alert stream alone: every card's state on a grid of rails by
nodes (nodes grouped by the leaf of their first NIC), the cards a failed switch cut off (its blast
radius), every switch's state, the active alerts with their grouped consequences folded under their
root, and the recently resolved ones.

Pure: fed Alert records in the order the alerts topic holds them; no Kafka, no clock.
"""

from __future__ import annotations

from collections import deque
from dataclasses import asdict
from typing import Any

import numpy as np

from pipeline.schemas import Alert
from pipeline.topology import UnknownEntity

STATES = ("ok", "straggling", "throttled", "failed", "silent")  # a card's state, worst last
OK, STRAGGLING, THROTTLED, FAILED, SILENT = range(len(STATES))
CARD_STATE = {"straggler": STRAGGLING, "thermal_throttle": THROTTLED, "card_failed": FAILED, "card_ecc": FAILED}
RESOLVED_SHOWN = 30


class ClusterView:
    def __init__(self, topology: Any) -> None:
        self.topo = topology
        self.active: dict[str, Alert] = {}
        self.resolved: deque[Alert] = deque(maxlen=RESOLVED_SHOWN)
        first_leaf = topology.host_switch[:, 0] if topology.host_switch.shape[1] else np.zeros(topology.nodes, int)
        self.columns = np.lexsort((np.arange(topology.nodes), first_leaf))  # heatmap column -> node
        leaves, starts, counts = np.unique(first_leaf[self.columns], return_index=True, return_counts=True)
        names = topology.switch_names
        self.leaf_groups = [{"leaf": names[int(leaf)] if leaf >= 0 else "-", "first": int(first), "nodes": int(n)}
                            for leaf, first, n in zip(leaves, starts, counts)]
        self.alerts_seen = 0

    def apply(self, alert: Alert) -> None:
        """One state change from the alerts topic."""
        self.alerts_seen += 1
        if alert.status == "firing":
            self.active[alert.id] = alert
        else:
            self.active.pop(alert.id, None)
            self.resolved.appendleft(alert)

    def card_states(self) -> np.ndarray:
        """(nodes, cards) state codes, the worst state an active alert gives each card."""
        states = np.zeros((self.topo.nodes, self.topo.cards_per_node), np.uint8)
        for alert in self.active.values():
            try:
                if alert.kind in CARD_STATE:
                    node, card = self.topo.parse_card(alert.entity)
                    states[node, card] = max(states[node, card], CARD_STATE[alert.kind])
                elif alert.kind == "node_down":
                    states[self.topo.node_index(alert.entity)] = SILENT
            except UnknownEntity:
                continue  # another cluster's alert: not on this page
        return states

    def blast_radius(self) -> set[tuple[int, int]]:
        """(node, card) of every card behind an active switch_down root cause: cut off from its rail."""
        cut: set[tuple[int, int]] = set()
        for alert in self.active.values():
            if alert.kind == "switch_down" and not alert.root_cause:
                try:
                    names = self.topo.switch_radius(alert.entity).get("card_names", [])
                except UnknownEntity:
                    continue
                cut.update(self.topo.parse_card(name) for name in names)
        return cut

    def switch_states(self) -> list[dict[str, Any]]:
        """Each switch: its tier, down or not, and its links with an active link alert."""
        down = {a.entity for a in self.active.values() if a.kind == "switch_down"}
        bad_links: dict[str, int] = {}
        for alert in self.active.values():
            if alert.kind.startswith("link_") and "~" in alert.entity:
                for end in alert.entity.split("~"):
                    switch = end.split("/")[0]
                    bad_links[switch] = bad_links.get(switch, 0) + 1
        return [{"name": name, "tier": int(tier), "down": name in down, "bad_links": bad_links.get(name, 0)}
                for name, tier in zip(self.topo.switch_names, self.topo.switch_tier.tolist())]

    def alert_tree(self) -> list[dict[str, Any]]:
        """Active alerts, root causes first (critical, then oldest), each with the active alerts that
        name it as their root folded under it."""
        children: dict[str, list[Alert]] = {}
        roots = []
        for alert in self.active.values():
            if alert.root_cause and alert.root_cause in self.active:
                children.setdefault(alert.root_cause, []).append(alert)
            else:
                roots.append(alert)
        roots.sort(key=lambda a: (a.severity != "critical", a.starts_at))
        return [_brief(a) | {"grouped": [_brief(c) for c in sorted(children.get(a.id, []), key=lambda c: c.starts_at)]}
                for a in roots]

    def snapshot(self) -> dict[str, Any]:
        """The page's data: the card grid as one digit per card, rail by rail, in column order."""
        states = self.card_states()[self.columns]  # columns x cards
        column_of = np.empty(self.topo.nodes, np.int64)
        column_of[self.columns] = np.arange(self.topo.nodes)
        n = self.topo.nodes
        radius = sorted(card * n + int(column_of[node]) for node, card in self.blast_radius())
        return {
            "nodes": [self.topo.node_name(int(n)) for n in self.columns],
            "rails": int(self.topo.cards_per_node), "leaves": self.leaf_groups, "states": list(STATES),
            "cards": "".join("".join(map(str, row)) for row in states.T.tolist()),
            "counts": {STATES[s]: int(n) for s, n in zip(*np.unique(states, return_counts=True))},
            "radius": radius,  # positions in `cards` of the cards behind a failed switch
            "switches": self.switch_states(), "active": self.alert_tree(),
            "resolved": [_brief(a) for a in self.resolved], "alerts_seen": self.alerts_seen,
        }


def _brief(alert: Alert) -> dict[str, Any]:
    keep = ("id", "kind", "entity", "status", "severity", "summary", "starts_at", "ends_at", "root_cause")
    return {k: v for k, v in asdict(alert).items() if k in keep}
