"""Cluster topology: entity names, placement and port maps, as `docs/scenarios.md` describes them.

This is the one place that knows how cards, nodes, NICs, leaves, spines and links are named and
wired. The simulator, the detectors, the sinks and the SQL all use these names.

Wiring (leaf-spine, rail-optimised): NIC j of every node is on rail j; node i's NIC j connects to
leaf ``j * leaves_per_rail + i // nodes_per_leaf``; every leaf has one uplink to every spine.
Leaf port p < nodes_per_leaf is the host port of the p-th node under that leaf; leaf port
``nodes_per_leaf + s`` is the uplink to spine s. Spine port L is the downlink to leaf L. A node
reports the host end of its links as its own ports: port j is NIC j.
"""

from __future__ import annotations

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
                f"cluster.cards ({self.cards}) must be a multiple of "
                f"cluster.cards_per_node ({self.cards_per_node})"
            )


_NODE = re.compile(r"^node(\d+)$")
_CARD = re.compile(r"^(node\d+)-card(\d+)$")
_NIC = re.compile(r"^(node\d+)-nic(\d+)$")
_LEAF = re.compile(r"^leaf(\d+)$")
_SPINE = re.compile(r"^spine(\d+)$")


class Topology:
    """Names and wiring of one cluster. Cheap to build; lookups are O(1)."""

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
        return [self.leaf_name(i) for i in range(self.leaves)] + [
            self.spine_name(i) for i in range(self.spines)
        ]

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
