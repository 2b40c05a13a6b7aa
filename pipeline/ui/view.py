"""What the live page shows, from the alert stream alone: every card's state on a grid of rails by
nodes (nodes grouped by the leaf of their first NIC), the cards a failed switch cut off (its blast
radius), the alerting cards as a list, every switch's state, the active alerts with their grouped
consequences folded under their root (and counted by kind), each alert's cards on the grid, the
recently resolved alerts, and the event time of the newest alert record.

Pure: fed Alert records in the order the alerts topic holds them; no Kafka, no clock.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

import numpy as np

from pipeline.model.schemas import Alert
from pipeline.topology.synthetic import UnknownEntity

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
        self.leaf_groups = [
            {"leaf": names[int(leaf)] if leaf >= 0 else "-", "first": int(first), "nodes": int(n)}
            for leaf, first, n in zip(leaves, starts, counts)
        ]
        self.alerts_seen = 0
        self.event_time: str | None = None  # the newest starts_at / ends_at read, as written
        self._event_key: datetime | None = None
        self._column_of = np.empty(topology.nodes, np.int64)
        self._column_of[self.columns] = np.arange(topology.nodes)

    def apply(self, alert: Alert) -> None:
        """One state change from the alerts topic."""
        self.alerts_seen += 1
        for stamp in (alert.starts_at, alert.ends_at):
            when = _parse_time(stamp)
            if when is not None and (self._event_key is None or when > self._event_key):
                self._event_key, self.event_time = when, stamp
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
        return [
            {"name": name, "tier": int(tier), "down": name in down, "bad_links": bad_links.get(name, 0)}
            for name, tier in zip(self.topo.switch_names, self.topo.switch_tier.tolist())
        ]

    def position(self, node: int, card: int) -> int:
        """A card's index in the snapshot's `cards` string (rail by rail, in column order)."""
        return card * self.topo.nodes + int(self._column_of[node])

    def alert_cards(self, alert: Alert) -> list[int]:
        """Positions in `cards` of what an alert is about: its card, its node's cards, a switch's
        cards (its blast radius), the card behind a host link; [] for anything not on the grid."""
        try:
            if alert.kind in CARD_STATE:
                cards = [self.topo.parse_card(alert.entity)]
            elif alert.kind == "node_down":
                node = self.topo.node_index(alert.entity)
                cards = [(node, c) for c in range(self.topo.cards_per_node)]
            elif alert.kind == "switch_down":
                cards = [self.topo.parse_card(n) for n in self.topo.switch_radius(alert.entity).get("card_names", [])]
            elif alert.kind.startswith("link_"):
                if hasattr(self.topo, "link_cards"):  # the cards its NIC serves
                    names = self.topo.link_cards(alert.entity)
                else:
                    names = [name for name in [self.topo.link_card(alert.entity)] if name]
                cards = [self.topo.parse_card(name) for name in names]
            else:
                cards = []
        except (UnknownEntity, NotImplementedError):
            return []
        return sorted(self.position(node, card) for node, card in cards)

    def alert_tree(self) -> list[dict[str, Any]]:
        """Active alerts, root causes first (critical, then oldest), each with the active alerts that
        name it as their root under `grouped` (all of them), counted by kind in `grouped_kinds`; each
        alert with its cards on the grid (`pos`)."""
        children: dict[str, list[Alert]] = {}
        roots = []
        for alert in self.active.values():
            if alert.root_cause and alert.root_cause in self.active:
                children.setdefault(alert.root_cause, []).append(alert)
            else:
                roots.append(alert)
        roots.sort(key=lambda a: (a.severity != "critical", a.starts_at))
        tree = []
        for root in roots:
            grouped = sorted(children.get(root.id, []), key=lambda c: c.starts_at)
            kinds = Counter(c.kind for c in grouped)
            tree.append(
                _brief(root)
                | {
                    "pos": self.alert_cards(root),
                    "grouped": [_brief(c) | {"pos": self.alert_cards(c)} for c in grouped],
                    "grouped_kinds": dict(sorted(kinds.items(), key=lambda kv: (-kv[1], kv[0]))),
                }
            )
        return tree

    def problems(self, states: np.ndarray) -> list[dict[str, Any]]:
        """The cards not ok, worst first: each card (a silent node once, as its node) with its node,
        state, grid positions and what is wrong (its active alerts' id, kind, summary)."""
        why: dict[str, list[Alert]] = {}
        for alert in self.active.values():
            if alert.kind in CARD_STATE or alert.kind == "node_down":
                why.setdefault(alert.entity, []).append(alert)
        rows = []
        for node, card in zip(*np.nonzero(states)):
            node, card = int(node), int(card)
            state, node_name = int(states[node, card]), self.topo.node_name(node)
            if state == SILENT:
                if card:
                    continue
                entity, pos = node_name, [self.position(node, c) for c in range(self.topo.cards_per_node)]
            else:
                entity, pos = self.topo.card_name(node, card), [self.position(node, card)]
            alerts = sorted(why.get(entity, []), key=lambda a: (-CARD_STATE.get(a.kind, SILENT), a.starts_at))
            rows.append(
                {
                    "entity": entity,
                    "node": node_name,
                    "state": STATES[state],
                    "pos": pos,
                    "what": [{"id": a.id, "kind": a.kind, "summary": a.summary} for a in alerts],
                }
            )
        rows.sort(key=lambda r: (-STATES.index(r["state"]), r["entity"]))
        return rows

    def snapshot(self) -> dict[str, Any]:
        """The page's data: the card grid as one digit per card, rail by rail, in column order."""
        by_node = self.card_states()
        states = by_node[self.columns]  # columns x cards
        radius = sorted(self.position(node, card) for node, card in self.blast_radius())
        return {
            "nodes": [self.topo.node_name(int(n)) for n in self.columns],
            "rails": int(self.topo.cards_per_node),
            "leaves": self.leaf_groups,
            "states": list(STATES),
            "cards": "".join("".join(map(str, row)) for row in states.T.tolist()),
            "counts": {STATES[s]: int(n) for s, n in zip(*np.unique(states, return_counts=True))},
            "radius": radius,  # positions in `cards` of the cards behind a failed switch
            "switches": self.switch_states(),
            "active": self.alert_tree(),
            "resolved": [_brief(a) for a in self.resolved],
            "alerts_seen": self.alerts_seen,
            "problems": self.problems(by_node),  # the cards not ok, as a list
            "event_time": self.event_time,  # the newest event time of the alerts read
        }


def _parse_time(stamp: str | None) -> datetime | None:
    """An ISO 8601 time, UTC unless it says otherwise; None if it is not one."""
    try:
        when = datetime.fromisoformat(stamp) if stamp else None
    except ValueError:
        return None
    return when.replace(tzinfo=UTC) if when is not None and when.tzinfo is None else when


def _brief(alert: Alert) -> dict[str, Any]:
    keep = (
        "id",
        "kind",
        "entity",
        "status",
        "severity",
        "summary",
        "starts_at",
        "ends_at",
        "root_cause",
        "silenced_by",
    )
    return {k: v for k, v in asdict(alert).items() if k in keep}
