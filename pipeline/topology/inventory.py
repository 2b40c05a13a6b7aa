"""Inventory: how real host, device and port names map to topology names.

```yaml
hosts:
  gpu-node-1:                  # hostname as exporters report it
    node: node0000
    gpus: {"00000000:53:00.0": 0, "0000:9b:00": 4}   # optional: PCI bus id -> card; default: gpu index
    nics: {mlx5_0: 0, mlx5_1: 1}                      # optional: NIC device -> NIC (rail) index
    nic_cards: {mlx5_0: [0, 1, 2, 3], mlx5_1: [4, 5, 6, 7]}  # optional: the cards each NIC serves
  cp-bm14r7: node0001          # short form
switches:
  "0x7cfe9003009ce5b0": leaf003   # switch GUID or name -> switch name
```
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pipeline.model.yaml_errors import yaml_problem
from pipeline.topology.synthetic import UnknownEntity


class InventoryError(ValueError):
    """A bad inventory file; the message names the entry."""


def _pci_key(bus_id: str) -> str:
    """Normalise PCI ids: '00000000:9B:00.0', '0000:9b:00' and '9b:00.0' all become '9b:00'."""
    text = bus_id.strip().lower()
    parts = text.split(":")
    if len(parts) >= 2:
        bus, dev = parts[-2], parts[-1].split(".")[0]
        return f"{int(bus, 16):02x}:{int(dev, 16):02x}"
    return text


class Why(str):
    """A reason about one item (a GPU) that reads as the plain `str`, and that reports of many items
    can group: `group.format(s='s', items='a, b and 3 more')` names them all in one reason."""

    group: str
    item: str

    def __new__(cls, text: str, group: str, item: str) -> Why:
        self = super().__new__(cls, text)
        self.group, self.item = group, item
        return self


def _listing(names: dict, limit: int = 8) -> str:
    keys = sorted(names)
    return ", ".join(keys[:limit]) + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


@dataclass
class Host:
    node: str
    gpus: dict[str, int] = field(default_factory=dict)  # normalised PCI id -> card
    nics: dict[str, int] = field(default_factory=dict)
    nic_cards: dict[int, list[int]] = field(default_factory=dict)  # NIC index -> the cards it serves


@dataclass
class Inventory:
    hosts: dict[str, Host] = field(default_factory=dict)
    switches: dict[str, str] = field(default_factory=dict)

    def host(self, hostname: str) -> tuple[str, Host] | None:
        """(inventory name, entry) of a host, also by its short name ('a.example.com' -> 'a')."""
        for name in (hostname, hostname.split(".")[0]):
            if name in self.hosts:
                return name, self.hosts[name]
        return None

    def node_of(self, hostname: str) -> str | None:
        found = self.host(hostname)
        return found[1].node if found else None

    def card_of(self, hostname: str, gpu_index: int | None = None, pci_bus_id: str | None = None) -> int | None:
        return self.locate_card(hostname, gpu_index, pci_bus_id)[0]

    def locate_card(
        self, hostname: str, gpu_index: int | None = None, pci_bus_id: str | None = None
    ) -> tuple[int | None, str | None]:
        """(card, None), or (None, why not): the host is unknown, or its `gpus` map (when it has
        one) lacks this GPU's PCI id, or there is neither a map nor a GPU index."""
        found = self.host(hostname)
        if found is None:
            return None, f"host {hostname!r} not in the inventory"
        name, host = found
        if pci_bus_id and host.gpus:
            try:
                card = host.gpus.get(_pci_key(pci_bus_id))
            except ValueError:
                card = None
            if card is None:
                rest = f"not in host {name}'s gpus map (which maps: {_listing(host.gpus)})"
                return None, Why(f"GPU PCI id {pci_bus_id} {rest}", "GPU PCI id{s} {items} " + rest, pci_bus_id)
            return card, None
        if gpu_index is None:
            if pci_bus_id:
                return None, (
                    f"GPU PCI id {pci_bus_id}: host {name} has no gpus map in the inventory "
                    f'(add gpus: {{"{pci_bus_id}": CARD}})'
                )
            return None, f"no GPU index or PCI id (host {name})"
        return gpu_index, None

    def locate_nic(self, hostname: str, device: str) -> tuple[int | None, str | None]:
        """(NIC index, None) or (None, why not) for a host's NIC device (mlx5_0, eth2)."""
        found = self.host(hostname)
        if found is None:
            return None, f"host {hostname!r} not in the inventory"
        name, host = found
        if not host.nics:
            return None, f"host {name} has no nics map in the inventory (nics: {{mlx5_0: 0, ...}})"
        nic = host.nics.get(device)
        if nic is None:
            rest = f"not in host {name}'s nics map (which maps: {_listing(host.nics)})"
            return None, Why(f"NIC {device} {rest}", "NIC{s} {items} " + rest, device)
        return nic, None

    def card_nics(self) -> dict[str, dict[int, int]]:
        """node -> {card: NIC index} of every host with `nic_cards`, for `Topology.with_card_nics`
        (cards not named keep the topology's default, card j on NIC j mod n)."""
        return {
            host.node: {card: nic for nic, cards in host.nic_cards.items() for card in cards}
            for host in self.hosts.values()
            if host.nic_cards
        }

    def known_hosts(self) -> str:
        """'a, b, c' (or a note that there is no inventory), for messages."""
        return _listing(self.hosts) if self.hosts else "none: no --inventory given, or it has no hosts"

    def switch_of(self, name_or_guid: str) -> str | None:
        return self.switches.get(name_or_guid) or self.switches.get(name_or_guid.lower())


def _nic_cards(host: str, value: object, nics: dict[str, int]) -> dict[int, list[int]]:
    """`nic_cards` of a host entry: NIC (a device of its `nics`, or an index) -> card indexes, each
    card served by one NIC."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InventoryError(f"hosts.{host}.nic_cards = {value!r}: expected a mapping NIC -> list of cards")
    out: dict[int, list[int]] = {}
    seen: dict[int, object] = {}
    for key, cards in value.items():
        nic = nics.get(str(key)) if str(key) in nics else key
        if isinstance(nic, bool) or not isinstance(nic, int) or nic < 0:
            raise InventoryError(
                f"hosts.{host}.nic_cards: {key!r} is neither a device of its nics map "
                f"({_listing(nics) or 'empty'}) nor a NIC index"
            )
        if not isinstance(cards, list) or not all(
            isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in cards
        ):
            raise InventoryError(f"hosts.{host}.nic_cards.{key} = {cards!r}: expected a list of card indexes")
        for card in cards:
            if card in seen:
                raise InventoryError(f"hosts.{host}.nic_cards: card {card} is under both {seen[card]} and {key}")
            seen[card] = key
        out.setdefault(nic, []).extend(cards)
    return out


def load_inventory(path: str | Path | None) -> Inventory:
    if path is None:
        return Inventory()
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except OSError as exc:
        raise InventoryError(f"cannot read inventory {str(path)!r}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise InventoryError(f"inventory {str(path)!r} is not text (expected YAML)") from None
    except yaml.YAMLError as exc:
        raise InventoryError(f"inventory {str(path)!r} is not valid YAML: {yaml_problem(exc)}") from None
    if not isinstance(data, dict):
        raise InventoryError(f"inventory {str(path)!r} must be a mapping with hosts and switches")
    inv = Inventory()
    for name, entry in (data.get("hosts") or {}).items():
        if isinstance(entry, str):
            inv.hosts[str(name)] = Host(entry)
        elif isinstance(entry, dict) and isinstance(entry.get("node"), str):
            try:
                gpus = {_pci_key(str(k)): int(v) for k, v in (entry.get("gpus") or {}).items()}
                nics = {str(k): int(v) for k, v in (entry.get("nics") or {}).items()}
            except (TypeError, ValueError):
                raise InventoryError(f"hosts.{name}: gpus and nics map names to integers") from None
            inv.hosts[str(name)] = Host(entry["node"], gpus, nics, _nic_cards(name, entry.get("nic_cards"), nics))
        else:
            raise InventoryError(f"hosts.{name} = {entry!r}: expected a node name or {{node: ..., gpus: ...}}")
    for key, switch in (data.get("switches") or {}).items():
        inv.switches[str(key).lower() if str(key).startswith("0x") else str(key)] = str(switch)
    return inv


_SERVED: dict[tuple, Any] = {}


def with_inventory(topology: Any, path: str | Path | None) -> Any:
    """The topology with the inventory file's `nic_cards` (which NIC serves which card) applied;
    as is without a file. Cached per topology shape, file and mtime. Raises InventoryError."""
    if not path:
        return topology
    path = Path(path)
    try:
        key = (topology.shape, str(path.resolve()), path.stat().st_mtime)
    except OSError as exc:
        raise InventoryError(f"cannot read inventory {str(path)!r}: {exc.strerror}") from None
    if key not in _SERVED:
        try:
            _SERVED[key] = topology.with_card_nics(load_inventory(path).card_nics())
        except UnknownEntity as exc:
            raise InventoryError(f"inventory {str(path)!r}: nic_cards: {exc}") from None
    return _SERVED[key]
