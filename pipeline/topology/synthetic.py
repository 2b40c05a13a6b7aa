"""Cluster topology: entity names, placement and port maps, as `docs/scenarios.md` describes them.

This is the one place that knows how cards, nodes, NICs, leaves, spines and links are named and
wired. The simulator, the detectors, the sinks and the SQL all use these names.

Wiring (leaf-spine, rail-optimised): NIC j of every node is on rail j; node i's NIC j connects to
leaf ``j * leaves_per_rail + i // nodes_per_leaf``; every leaf has one uplink to every spine.
Leaf port p < nodes_per_leaf is the host port of the p-th node under that leaf; leaf port
``nodes_per_leaf + s`` is the uplink to spine s. Spine port L is the downlink to leaf L. A node
reports the host end of its links as its own ports: port j is NIC j.

Which NIC serves which card (`Wiring.card_nic`): card j uses the node's NIC j mod n, n being the
node's NIC count (NIC j serves card j where every card has its own NIC; one HCA serves all cards of
a QDR host); an inventory's `nic_cards` says otherwise (`Wiring.with_card_nics`).
"""

from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass
from functools import cached_property

import numpy as np


class UnknownEntity(ValueError):
    """A name that does not exist in this topology."""


def _width(count: int, minimum: int) -> int:
    return max(minimum, len(str(max(count - 1, 0))))


@dataclass(frozen=True)
class ClusterShape:
    """The numbers that determine a cluster's topology."""

    cards: int = 10240
    cards_per_node: int = 8
    nodes_per_leaf: int = 32
    spines: int = 32

    def __post_init__(self) -> None:
        for field in ("cards", "cards_per_node", "nodes_per_leaf", "spines"):
            value = getattr(self, field)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"cluster.{field} must be a positive integer, got {value!r}")
        if self.cards % self.cards_per_node:
            raise ValueError(
                f"cluster.cards ({self.cards}) must be a multiple of cluster.cards_per_node ({self.cards_per_node})"
            )


_NODE = re.compile(r"^node(\d+)$")
_CARD = re.compile(r"^(node\d+)-card(\d+)$")
_NIC = re.compile(r"^(node\d+)-nic(\d+)$")
_LEAF = re.compile(r"^leaf(\d+)$")
_SPINE = re.compile(r"^spine(\d+)$")


class Wiring:
    """What every topology (synthetic or imported) offers the simulator and the correlator, from
    six arrays a subclass sets: each host NIC's switch and port (`host_switch`, `host_port`, shape
    (nodes, rails), -1 where a node has no such NIC) and each inter-switch link's lower-tier and
    upper-tier end (`fabric_lo`, `fabric_lo_port`, `fabric_hi`, `fabric_hi_port`, switch indexes)."""

    host_switch: np.ndarray
    host_port: np.ndarray
    fabric_lo: np.ndarray
    fabric_lo_port: np.ndarray
    fabric_hi: np.ndarray
    fabric_hi_port: np.ndarray
    switch_tier: np.ndarray  # per switch: 1 leaf, 2 spine, 3 core, ...

    card_nic_overrides: tuple[tuple[int, int, int], ...] = ()  # (node, card, NIC) an inventory sets

    @cached_property
    def host_exists(self) -> np.ndarray:
        return self.host_switch >= 0

    @cached_property
    def card_nic(self) -> np.ndarray:
        """(nodes, cards_per_node): the NIC index serving each card, -1 on a node without NICs.
        Card j uses the node's (j mod n)-th NIC, n = its NIC count, unless overridden."""
        exists = self.host_exists
        count = exists.sum(axis=1)
        order = np.argsort(~exists, axis=1, kind="stable")  # each node's NIC indexes, existing first
        k = self.cards_per_node  # type: ignore[attr-defined]
        slot = np.arange(k)[None, :] % np.maximum(count, 1)[:, None]
        out = np.where(count[:, None] > 0, np.take_along_axis(order, slot, axis=1), -1)
        for node, card, nic in self.card_nic_overrides:
            out[node, card] = nic
        return out

    def with_card_nics(self, serves: dict[str, dict[int, int]]) -> Wiring:
        """A copy in which node `name`'s card c uses NIC `serves[name][c]` (an inventory's map);
        cards not named keep the default. Raises UnknownEntity for a node, card or NIC it lacks."""

        k = self.cards_per_node  # type: ignore[attr-defined]
        overrides = list(self.card_nic_overrides)
        for name, cards in serves.items():
            node = self.node_index(name)  # type: ignore[attr-defined]
            for card, nic in cards.items():
                if not 0 <= card < k:
                    raise UnknownEntity(f"{name} has no card {card} (cards_per_node={k})")
                if not (0 <= nic < self.host_exists.shape[1] and self.host_exists[node, nic]):
                    raise UnknownEntity(
                        f"{name} has no NIC {nic} in the topology (it has {int(self.host_exists[node].sum())})"
                    )
                overrides.append((node, int(card), int(nic)))
        other = copy.copy(self)
        other.__dict__.pop("card_nic", None)
        other.card_nic_overrides = tuple(overrides)
        return other

    def nic_cards(self, node: int, nic: int) -> list[int]:
        """The cards of a node that a NIC serves."""
        return np.flatnonzero(self.card_nic[node] == nic).tolist()

    def card_link(self, name: str) -> str | None:
        """The host link of the NIC serving a card, None on a node without NICs."""
        node, card = self.parse_card(name)  # type: ignore[attr-defined]
        nic = int(self.card_nic[node, card])
        return self.port_link(self.node_name(node), nic) if nic >= 0 else None  # type: ignore[attr-defined]

    @cached_property
    def _switch_ports_index(self) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
        """Per switch: (host NIC flat indexes, lower-end link indexes, upper-end link indexes,
        port numbers in that order), each in ascending order of what it indexes."""
        count = len(self.switch_names)  # type: ignore[attr-defined]

        def split(owner: np.ndarray) -> list[np.ndarray]:
            order = np.argsort(owner, kind="stable")
            bounds = np.searchsorted(owner[order], np.arange(count + 1))
            return [order[bounds[s] : bounds[s + 1]] for s in range(count)]

        flat = self.host_switch.reshape(-1)
        hosts = split(np.where(flat >= 0, flat, count))
        lows, highs = split(self.fabric_lo), split(self.fabric_hi)
        host_ports, lo_ports, hi_ports = self.host_port.reshape(-1), self.fabric_lo_port, self.fabric_hi_port
        return [
            (h, lo, hi, np.concatenate([host_ports[h], lo_ports[lo], hi_ports[hi]]).astype("<u2"))
            for h, lo, hi in zip(hosts, lows, highs)
        ]

    def switch_wiring(self, switch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(host NIC flat indexes (node * rails + nic), links it is the lower end of, links it is
        the upper end of, its port numbers in that order) of switch index `switch`."""
        return self._switch_ports_index[switch]

    @cached_property
    def edge_switches(self) -> np.ndarray:
        """Indexes of the switches that have host ports."""
        return np.unique(self.host_switch[self.host_switch >= 0])

    def resolve_link(self, name: str) -> tuple[str, int, int]:
        """('host', node, nic) or ('fabric', link index, 0)."""
        raise NotImplementedError

    def link_causes(self, name: str) -> list[tuple[str, str]]:
        """(kind, entity) of the alerts that would explain this link going down: its node, its switches."""
        what, a, b = self.resolve_link(name)
        names = self.switch_names  # type: ignore[attr-defined]
        if what == "host":
            return [
                ("node_down", self.node_name(a)),  # type: ignore[attr-defined]
                ("switch_down", names[int(self.host_switch[a, b])]),
            ]
        return [("switch_down", names[int(self.fabric_lo[a])]), ("switch_down", names[int(self.fabric_hi[a])])]

    def link_cards(self, name: str) -> list[str]:
        """The cards a host link's NIC serves (`card_nic`); none for a fabric link or a NIC without a card."""
        what, a, b = self.resolve_link(name)
        if what != "host":
            return []
        return [self.card_name(a, c) for c in self.nic_cards(a, b)]  # type: ignore[attr-defined]

    def link_card(self, name: str) -> str | None:
        """The first card behind a host link (`link_cards`), None if it serves none."""
        cards = self.link_cards(name)
        return cards[0] if cards else None

    def link_rail(self, name: str | None) -> int:
        """A host link's NIC (rail) number, -1 for anything else."""
        if not name:
            return -1
        try:
            what, _, nic = self.resolve_link(name)
        except UnknownEntity:
            return -1
        return nic if what == "host" else -1

    def switch_radius(self, name: str) -> dict:
        """What a dead switch takes with it: its host ports' nodes and the cards their NICs serve
        (`card_nic`), its links; `rail` when all its host ports are on one rail."""
        index = self.switch_index(name)  # type: ignore[attr-defined]
        hosts, low, high, _ = self.switch_wiring(index)
        rails = self.host_switch.shape[1]
        nodes, nics = np.divmod(hosts, rails)
        node_names = [self.node_name(int(n)) for n in nodes.tolist()]  # type: ignore[attr-defined]
        port, card = np.nonzero(self.card_nic[nodes] == nics[:, None])  # in host port order, then card
        cards = [
            self.card_name(int(n), int(c))  # type: ignore[attr-defined]
            for n, c in zip(nodes[port].tolist(), card.tolist())
        ]
        radius: dict = {"cards": len(cards), "nodes": len(set(node_names)), "links": len(hosts) + len(low) + len(high)}
        if len(hosts) and len(set(nics.tolist())) == 1:
            radius["rail"] = int(nics[0])
        if cards:
            radius["card_names"] = cards
        radius["node_names"] = sorted(set(node_names))
        return radius

    def node_links(self, node: int) -> int:
        return int(self.host_exists[node].sum())

    def witness_links(self, kind: str, name: str) -> list[str]:
        """Links whose other ends see this node (its host links, seen by its switches) or switch (its
        links to other switches) go down with it: what must agree before a source that cannot be
        reached is called dead. Empty when nothing else could see it."""
        names = self.switch_names  # type: ignore[attr-defined]
        if kind == "node_down":
            node = self.node_index(name)  # type: ignore[attr-defined]
            ends = [
                (int(s), int(p))
                for s, p in zip(self.host_switch[node].tolist(), self.host_port[node].tolist())
                if s >= 0
            ]
        else:
            _, low, high, _ = self.switch_wiring(self.switch_index(name))  # type: ignore[attr-defined]
            ends = [(int(self.fabric_hi[i]), int(self.fabric_hi_port[i])) for i in low.tolist()] + [
                (int(self.fabric_lo[i]), int(self.fabric_lo_port[i])) for i in high.tolist()
            ]
        links = [self.port_link(names[s], p) for s, p in ends]  # type: ignore[attr-defined]
        return [link for link in links if link]


class Topology(Wiring):
    """Names and wiring of one synthetic cluster. Cheap to build; lookups are O(1)."""

    def __init__(self, shape: ClusterShape | None = None) -> None:
        self.shape = shape or ClusterShape()
        s = self.shape
        self.cards = s.cards
        self.cards_per_node = s.cards_per_node
        self.nodes = s.cards // s.cards_per_node
        self.nodes_per_leaf = s.nodes_per_leaf
        self.spines = s.spines
        self.rails = s.cards_per_node
        self.leaves_per_rail = math.ceil(self.nodes / s.nodes_per_leaf)
        self.leaves = self.leaves_per_rail * self.rails
        self._node_w = _width(self.nodes, 4)
        self._leaf_w = _width(self.leaves, 3)
        self._spine_w = _width(self.spines, 3)
        self.rack_size = s.nodes_per_leaf  # nodes one collector reports (the nodes under one leaf position)

    # ---- the wiring as arrays (Wiring) ---------------------------------------------------------
    @cached_property
    def host_switch(self) -> np.ndarray:  # type: ignore[override]
        return (
            np.arange(self.rails)[None, :] * self.leaves_per_rail
            + (np.arange(self.nodes) // self.nodes_per_leaf)[:, None]
        )

    @cached_property
    def host_port(self) -> np.ndarray:  # type: ignore[override]
        return np.broadcast_to((np.arange(self.nodes) % self.nodes_per_leaf)[:, None], (self.nodes, self.rails))

    @cached_property
    def fabric_lo(self) -> np.ndarray:  # type: ignore[override]
        return np.repeat(np.arange(self.leaves), self.spines)  # link leaf * spines + spine

    @cached_property
    def fabric_lo_port(self) -> np.ndarray:  # type: ignore[override]
        return np.tile(self.nodes_per_leaf + np.arange(self.spines), self.leaves)

    @cached_property
    def fabric_hi(self) -> np.ndarray:  # type: ignore[override]
        return np.tile(self.leaves + np.arange(self.spines), self.leaves)

    @cached_property
    def fabric_hi_port(self) -> np.ndarray:  # type: ignore[override]
        return np.repeat(np.arange(self.leaves), self.spines)

    @cached_property
    def switch_tier(self) -> np.ndarray:  # type: ignore[override]
        return np.concatenate([np.ones(self.leaves, np.int64), np.full(self.spines, 2, np.int64)])

    def resolve_link(self, name: str) -> tuple[str, int, int]:
        what, a, b = self.parse_link(name)
        return (what, a, b) if what == "host" else ("fabric", a * self.spines + b, 0)

    # ---- names -------------------------------------------------------------------------------
    def node_name(self, node: int) -> str:
        return f"node{node:0{self._node_w}d}"

    def card_name(self, node: int, card: int) -> str:
        return f"{self.node_name(node)}-card{card}"

    def nic_name(self, node: int, nic: int) -> str:
        return f"{self.node_name(node)}-nic{nic}"

    def leaf_name(self, leaf: int) -> str:
        return f"leaf{leaf:0{self._leaf_w}d}"

    def spine_name(self, spine: int) -> str:
        return f"spine{spine:0{self._spine_w}d}"

    def host_link_name(self, node: int, nic: int) -> str:
        return f"{self.nic_name(node, nic)}~{self.leaf_name(self.leaf_of(node, nic))}"

    def fabric_link_name(self, leaf: int, spine: int) -> str:
        return f"{self.leaf_name(leaf)}~{self.spine_name(spine)}"

    @cached_property
    def node_names(self) -> list[str]:
        return [self.node_name(i) for i in range(self.nodes)]

    @cached_property
    def switch_names(self) -> list[str]:
        """Leaves first, then spines."""
        return [self.leaf_name(i) for i in range(self.leaves)] + [self.spine_name(i) for i in range(self.spines)]

    @cached_property
    def _node_index(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.node_names)}

    @cached_property
    def _switch_index(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.switch_names)}

    # ---- wiring ------------------------------------------------------------------------------
    def leaf_of(self, node: int, nic: int) -> int:
        return nic * self.leaves_per_rail + node // self.nodes_per_leaf

    def leaf_ports(self) -> int:
        return self.nodes_per_leaf + self.spines

    def switch_ports(self, switch: str) -> int:
        """Number of ports the named switch reports; a node reports its NICs (the host ends of its
        links, port j = NIC j)."""
        if switch in self._node_index:
            return self.rails
        kind, _ = self.parse_switch(switch)
        return self.leaf_ports() if kind == "leaf" else self.leaves

    def port_link(self, switch: str, port: int) -> str | None:
        """Link name behind a switch port (or a node's NIC), or None for an unused leaf host port."""
        node = self._node_index.get(switch)
        if node is not None:
            if not 0 <= port < self.rails:
                raise UnknownEntity(f"{switch} has no NIC {port}")
            return self.host_link_name(node, port)
        kind, index = self.parse_switch(switch)
        if kind == "spine":
            if not 0 <= port < self.leaves:
                raise UnknownEntity(f"{switch} has no port {port}")
            return self.fabric_link_name(port, index)
        if not 0 <= port < self.leaf_ports():
            raise UnknownEntity(f"{switch} has no port {port}")
        if port >= self.nodes_per_leaf:
            return self.fabric_link_name(index, port - self.nodes_per_leaf)
        rail, block = divmod(index, self.leaves_per_rail)
        node = block * self.nodes_per_leaf + port
        if node >= self.nodes:
            return None
        return self.host_link_name(node, rail)

    def leaf_host_nodes(self, leaf: int) -> np.ndarray:
        """Node indices whose NIC on this leaf's rail connects to it."""
        block = leaf % self.leaves_per_rail
        first = block * self.nodes_per_leaf
        return np.arange(first, min(first + self.nodes_per_leaf, self.nodes))

    # ---- parsing -----------------------------------------------------------------------------
    def node_index(self, name: str) -> int:
        try:
            return self._node_index[name]
        except KeyError:
            raise UnknownEntity(f"unknown node {name!r} (cluster has {self.nodes} nodes)") from None

    def switch_index(self, name: str) -> int:
        try:
            return self._switch_index[name]
        except KeyError:
            raise UnknownEntity(f"unknown switch {name!r}") from None

    def parse_switch(self, name: str) -> tuple[str, int]:
        """('leaf' | 'spine', index) for a switch name."""
        i = self.switch_index(name)
        return ("leaf", i) if i < self.leaves else ("spine", i - self.leaves)

    def parse_card(self, name: str) -> tuple[int, int]:
        m = _CARD.match(name)
        if not m:
            raise UnknownEntity(f"{name!r} is not a card name (e.g. {self.card_name(0, 0)})")
        node, card = self.node_index(m.group(1)), int(m.group(2))
        if card >= self.cards_per_node or name != self.card_name(node, card):
            raise UnknownEntity(f"unknown card {name!r}")
        return node, card

    def parse_link(self, name: str) -> tuple[str, int, int]:
        """('host', node, nic) or ('fabric', leaf, spine) for a link name."""
        left, sep, right = name.partition("~")
        if not sep:
            raise UnknownEntity(f"{name!r} is not a link name (A~B)")
        m = _NIC.match(left)
        if m:
            node, nic = self.node_index(m.group(1)), int(m.group(2))
            if nic >= self.rails or name != self.host_link_name(node, nic):
                raise UnknownEntity(f"unknown host link {name!r}")
            return "host", node, nic
        kind, leaf = self.parse_switch(left) if _LEAF.match(left) else ("", -1)
        if kind == "leaf" and _SPINE.match(right):
            spine_kind, spine = self.parse_switch(right)
            if spine_kind == "spine" and name == self.fabric_link_name(leaf, spine):
                return "fabric", leaf, spine
        raise UnknownEntity(f"unknown link {name!r}")

    def kind_of(self, name: str) -> str:
        """Entity kind of a name: node, card, nic, leaf, spine or link; raises if unknown."""
        if "~" in name:
            self.parse_link(name)
            return "link"
        if _CARD.match(name):
            self.parse_card(name)
            return "card"
        if _NODE.match(name):
            self.node_index(name)
            return "node"
        if _NIC.match(name):
            m = _NIC.match(name)
            assert m
            self.node_index(m.group(1))
            if int(m.group(2)) >= self.rails:
                raise UnknownEntity(f"unknown NIC {name!r}")
            return "nic"
        return self.parse_switch(name)[0]
