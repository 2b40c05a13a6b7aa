"""An imported fabric as the pipeline's topology: the simulator, detectors, root cause and the lake
work on it as on the synthetic shape, with the fabric's own names.

- Nodes are the fabric's hosts (natural order: `dgx2` before `dgx10`); a node's NIC j is its j-th
  port in natural order (`mlx5_0`, `mlx5_1`, ...), and NIC j serves card j. Cards are
  `<host>-card<j>`, `cards_per_node` per host.
- Switches keep their names, leaves first, then spines, cores, ... (tiers inferred by the fabric);
  a switch that no host reaches comes last. A switch port named by a number N (InfiniBand, or the
  last number of `Ethernet1/5`, `swp5`) is our port N-1, as the telemetry adapters number them.
- Links are named by their ends, the host (or lower-tier switch) first:
  `luna-0001/mlx5_0~LG01-01/1`, `LG01-01/33~SG01-01/5`.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np

from pipeline.topology.fabric import Endpoint, Fabric, FabricError, Link, natural_key, ordered_ends
from pipeline.topology.load import load_fabric
from pipeline.topology.synthetic import UnknownEntity, Wiring

TIER_KIND = {1: "leaf", 2: "spine", 3: "core"}
RACK_SIZE = 32  # nodes one simulated collector reports, as a rack's exporter gateway would
_LAST_NUMBER = re.compile(r"(\d+)\D*$")


class FabricTopology(Wiring):
    """Names and wiring of an imported fabric (see the module docstring)."""

    def __init__(self, fabric: Fabric, cards_per_node: int = 8, identity: str = "") -> None:
        self.fabric = fabric
        self.cards_per_node = cards_per_node
        self.rack_size = RACK_SIZE
        tiers = fabric.tiers()
        hosts = sorted((n for n, d in fabric.devices.items() if d.kind == "host"), key=natural_key)
        if not hosts:
            raise FabricError("the fabric has no hosts (host NIC ports): nothing to place cards on")
        switches = sorted(
            (n for n, d in fabric.devices.items() if d.kind == "switch"),
            key=lambda n: (tiers.get(n) is None, tiers.get(n) or 0, natural_key(n)),
        )
        self.node_names = hosts
        self.nodes = len(hosts)
        self.cards = self.nodes * cards_per_node
        self.switch_names = switches
        self._node_index = {name: i for i, name in enumerate(hosts)}
        self._switch_index = {name: i for i, name in enumerate(switches)}
        self._switch_guid = {_guid(g): n for n in switches if (g := fabric.devices[n].guid)}
        self.switch_tier = np.array([tiers.get(n) or 99 for n in switches], np.int64)
        self.shape = ("fabric", identity or _digest(fabric), cards_per_node)  # what a snapshot must match

        host_links: dict[str, list[tuple[str, Endpoint]]] = {h: [] for h in hosts}
        fabric_links: list[tuple[Endpoint, Endpoint]] = []
        for link in fabric.links:
            kinds = (fabric.devices[link.a.device].kind, fabric.devices[link.b.device].kind)
            if kinds == ("host", "switch"):
                host_links[link.a.device].append((link.a.port, link.b))
            elif kinds == ("switch", "host"):
                host_links[link.b.device].append((link.b.port, link.a))
            elif kinds == ("switch", "switch"):
                fabric_links.append(ordered_ends(link, {link.a.device: "switch", link.b.device: "switch"}, tiers))
        self.rails = max(len(v) for v in host_links.values())
        self.host_switch = np.full((self.nodes, self.rails), -1, np.int64)
        self.host_port = np.full((self.nodes, self.rails), -1, np.int64)
        self._port_of: dict[str, dict[str, int]] = {name: {} for name in switches}  # switch -> port name -> index
        self._port_names: dict[str, dict[int, str]] = {name: {} for name in switches}
        self._links: dict[str, tuple[str, int, int]] = {}
        self._port_link: dict[str, dict[int, str]] = {name: {} for name in switches}
        self._nic_link: list[list[str]] = []
        self.link_names_by_key: dict[tuple, str] = {}  # Link.key() -> name (the lake's fabric_links)
        for node, host in enumerate(hosts):
            ports = sorted(host_links[host], key=lambda item: natural_key(item[0]))
            self._nic_link.append([])
            for nic, (port, end) in enumerate(ports):
                p = self._port_number(end)
                self.host_switch[node, nic] = self._switch_index[end.device]
                self.host_port[node, nic] = p
                name = f"{host}/{port}~{end}"
                self._links[name] = ("host", node, nic)
                self._nic_link[node].append(name)
                self.link_names_by_key[Link(Endpoint(host, port), end).key()] = name
                self._port_link[end.device][p] = name
        lo_sw: list[int] = []
        lo_port: list[int] = []
        hi_sw: list[int] = []
        hi_port: list[int] = []
        for i, (lo, hi) in enumerate(fabric_links):
            name = f"{lo}~{hi}"
            self._links[name] = ("fabric", i, 0)
            self.link_names_by_key[Link(lo, hi).key()] = name
            for end, end_sw, end_port in ((lo, lo_sw, lo_port), (hi, hi_sw, hi_port)):
                p = self._port_number(end)
                end_sw.append(self._switch_index[end.device])
                end_port.append(p)
                self._port_link[end.device][p] = name
        self.fabric_lo, self.fabric_lo_port = np.array(lo_sw, np.int64), np.array(lo_port, np.int64)
        self.fabric_hi, self.fabric_hi_port = np.array(hi_sw, np.int64), np.array(hi_port, np.int64)
        self._ports = {s: (max(links) + 1 if links else 0) for s, links in self._port_link.items()}

    def _port_number(self, end: Endpoint) -> int:
        """Port N (a number, or the last number of the name) is our N-1; names without a number, or
        whose number is taken (a director's `L01/U1/3` and `L02/U1/3`), get numbers from 1024 on,
        past any numbered port."""
        known = self._port_of[end.device]
        if end.port in known:
            return known[end.port]
        names = self._port_names[end.device]
        match = _LAST_NUMBER.search(end.port)
        p = int(match.group(1)) - 1 if match else -1
        if p < 0 or p in names:
            p = max(max(names, default=-1) + 1, 1024)
            while p in names:
                p += 1
        known[end.port], names[p] = p, end.port
        return p

    # ---- names ---------------------------------------------------------------------------------
    def node_name(self, node: int) -> str:
        return self.node_names[node]

    def card_name(self, node: int, card: int) -> str:
        return f"{self.node_names[node]}-card{card}"

    # ---- lookups -------------------------------------------------------------------------------
    def node_index(self, name: str) -> int:
        try:
            return self._node_index[name]
        except KeyError:
            raise UnknownEntity(f"unknown node {name!r} (the fabric has {self.nodes} hosts)") from None

    def switch_index(self, name: str) -> int:
        try:
            return self._switch_index[name]
        except KeyError:
            raise UnknownEntity(f"unknown switch {name!r}") from None

    def switch_of_guid(self, guid: str) -> str | None:
        """The switch whose node GUID this is (`0x7cfe9003009ce5b0` or without 0x), None if none."""
        return self._switch_guid.get(_guid(guid))

    def parse_switch(self, name: str) -> tuple[str, int]:
        """(tier kind: leaf, spine, core, tier N, unreached; index among all switches)."""
        i = self.switch_index(name)
        tier = int(self.switch_tier[i])
        return (TIER_KIND.get(tier, "unreached" if tier == 99 else f"tier {tier}"), i)

    def parse_card(self, name: str) -> tuple[int, int]:
        host, sep, card = name.rpartition("-card")
        if not sep or not card.isdigit():
            raise UnknownEntity(f"{name!r} is not a card name (e.g. {self.card_name(0, 0)})")
        node = self.node_index(host)
        if int(card) >= self.cards_per_node:
            raise UnknownEntity(f"unknown card {name!r} (cards_per_node={self.cards_per_node})")
        return node, int(card)

    def resolve_link(self, name: str) -> tuple[str, int, int]:
        try:
            return self._links[name]
        except KeyError:
            raise UnknownEntity(f"unknown link {name!r}") from None

    parse_link = resolve_link

    def kind_of(self, name: str) -> str:
        """node, card, link, or the switch's tier kind (leaf, spine, core, ...); raises if unknown."""
        if name in self._links:
            return "link"
        if name in self._node_index:
            return "node"
        if name in self._switch_index:
            return self.parse_switch(name)[0]
        if "-card" not in name:
            raise UnknownEntity(
                f"{name!r} is not a host, switch, card or link of the fabric "
                f"(e.g. {self.node_names[0]}, {self.switch_names[0]}, {self.card_name(0, 0)})"
            )
        self.parse_card(name)
        return "card"

    def switch_ports(self, switch: str) -> int:
        """Ports the named switch reports (a node: its NICs)."""
        node = self._node_index.get(switch)
        if node is not None:
            return self.node_links(node)
        self.switch_index(switch)
        return self._ports[switch]

    def port_link(self, switch: str, port: int) -> str | None:
        """Link behind a switch port or a node's NIC; None for a port without a link."""
        node = self._node_index.get(switch)
        if node is not None:
            if not 0 <= port < self.node_links(node):
                raise UnknownEntity(f"{switch} has no NIC {port}")
            return self._nic_link[node][port]
        self.switch_index(switch)
        if not 0 <= port < self._ports[switch]:
            raise UnknownEntity(f"{switch} has no port {port}")
        return self._port_link[switch].get(port)


_CACHE: dict[tuple[str, float, int], FabricTopology] = {}


def load_topology(path: str | Path, cards_per_node: int = 8) -> FabricTopology:
    """The topology of a fabric file (any kind `load_fabric` reads), cached per file and mtime."""

    path = Path(path)
    try:
        key = (str(path.resolve()), path.stat().st_mtime, cards_per_node)
    except OSError as exc:
        raise FabricError(f"{path}: {exc.strerror}") from None
    if key not in _CACHE:
        fabric = load_fabric(path)
        _CACHE[key] = FabricTopology(fabric, cards_per_node, identity=_digest(fabric))
    return _CACHE[key]


def _guid(text: str) -> str:
    """A GUID as 16 hex digits: UFM's `node_guid` drops the 0x and leading zeros (`2c90300f172a0`)."""
    text = text.strip().lower()
    try:
        return f"{int(text, 16):016x}"
    except ValueError:
        return text


def _digest(fabric: Fabric) -> str:
    h = hashlib.sha256()
    for link in fabric.links:
        h.update(str(link).encode())
    return h.hexdigest()[:16]
