"""Inventory: how real host, device and port names map to topology names.

```yaml
hosts:
  gpu-node-1:                  # hostname as exporters report it
    node: node0000
    gpus: {"00000000:53:00.0": 0, "0000:9b:00": 4}   # optional: PCI bus id -> card; default: gpu index
    nics: {mlx5_0: 0, mlx5_1: 1}                      # optional: NIC device -> NIC (rail) index
  cp-bm14r7: node0001          # short form
switches:
  "0x7cfe9003009ce5b0": leaf003   # switch GUID or name -> switch name
```
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml


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

    def locate_card(self, hostname: str, gpu_index: int | None = None,
                    pci_bus_id: str | None = None) -> tuple[int | None, str | None]:
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
                return None, (f"GPU PCI id {pci_bus_id}: host {name} has no gpus map in the inventory "
                              f"(add gpus: {{\"{pci_bus_id}\": CARD}})")
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

    def known_hosts(self) -> str:
        """'a, b, c' (or a note that there is no inventory), for messages."""
        return _listing(self.hosts) if self.hosts else "none: no --inventory given, or it has no hosts"

    def switch_of(self, name_or_guid: str) -> str | None:
        return self.switches.get(name_or_guid) or self.switches.get(name_or_guid.lower())


def load_inventory(path: str | Path | None) -> Inventory:
    if path is None:
        return Inventory()
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except OSError as exc:
        raise InventoryError(f"cannot read inventory {str(path)!r}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise InventoryError(f"inventory {str(path)!r} is not valid YAML: {exc}") from None
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
            inv.hosts[str(name)] = Host(entry["node"], gpus, nics)
        else:
            raise InventoryError(f"hosts.{name} = {entry!r}: expected a node name or {{node: ..., gpus: ...}}")
    for key, switch in (data.get("switches") or {}).items():
        inv.switches[str(key).lower() if str(key).startswith("0x") else str(key)] = str(switch)
    return inv
