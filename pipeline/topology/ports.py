"""The topology of scrapes that come without a fabric: switches only, each port its own entity."""

from __future__ import annotations

import numpy as np

from pipeline.topology.synthetic import UnknownEntity


class PortEntities:
    """A topology of switches only, each port its own entity `<switch>:<port name>`: what an
    adapter's scrapes show when no fabric is given. A dead switch explains its ports' links. Which
    ports have a cable is not known (`cabling_known`: the link detector pages only ports once up)."""

    cabling_known = False
    cards_per_node = 1
    rails = 0
    nodes = 0
    node_names: list[str] = []
    shape = ("ports",)

    def __init__(self, port_names: dict[str, list[str]]) -> None:
        self.ports = {switch: list(names) for switch, names in port_names.items()}
        self.switch_names = sorted(self.ports)
        self._index = {name: i for i, name in enumerate(self.switch_names)}
        self._links = {f"{s}:{p}": (s, i) for s, names in self.ports.items() for i, p in enumerate(names)}

    @property
    def host_switch(self) -> np.ndarray:
        return np.empty((0, 0), np.int64)  # no hosts

    @property
    def switch_tier(self) -> np.ndarray:
        return np.full(len(self.switch_names), 99, np.int64)  # tiers unknown

    def node_index(self, name: str) -> int:
        raise UnknownEntity(f"unknown node {name!r} (no topology: only switch ports)")

    def node_name(self, node: int) -> str:
        raise UnknownEntity(f"no node {node} (no topology: only switch ports)")

    def card_name(self, node: int, card: int) -> str:
        raise UnknownEntity(f"no node {node} (no topology: only switch ports)")

    def parse_card(self, name: str) -> tuple[int, int]:
        raise UnknownEntity(f"unknown card {name!r} (no topology: only switch ports)")

    def kind_of(self, name: str) -> str:
        if name in self._index:
            return "switch"
        if name in self._links:
            return "link"
        raise UnknownEntity(f"unknown entity {name!r} (no topology: only switch ports)")

    def node_links(self, node: int) -> int:
        return 0

    def witness_links(self, kind: str, name: str) -> list[str]:
        return []  # nothing is known to see a switch from the other end

    def switch_index(self, name: str) -> int:
        try:
            return self._index[name]
        except KeyError:
            raise UnknownEntity(f"unknown switch {name!r}") from None

    def parse_switch(self, name: str) -> tuple[str, int]:
        return "switch", self.switch_index(name)

    def switch_ports(self, switch: str) -> int:
        self.switch_index(switch)
        return len(self.ports[switch])

    def port_link(self, switch: str, port: int) -> str | None:
        names = self.ports.get(switch, [])
        return f"{switch}:{names[port]}" if 0 <= port < len(names) else None

    def resolve_link(self, name: str) -> tuple[str, int, int]:
        try:
            switch, port = self._links[name]
        except KeyError:
            raise UnknownEntity(f"unknown port {name!r}") from None
        return "port", self._index[switch], port

    def link_causes(self, name: str) -> list[tuple[str, str]]:
        return [("switch_down", self._links[name][0])] if name in self._links else []

    def link_card(self, name: str) -> str | None:
        return None

    def link_cards(self, name: str) -> list[str]:
        return []

    def card_link(self, name: str) -> str | None:
        return None

    def link_rail(self, name: str | None) -> int:
        return -1

    def switch_radius(self, name: str) -> dict:
        return {"cards": 0, "nodes": 0, "links": self.switch_ports(name), "node_names": []}
