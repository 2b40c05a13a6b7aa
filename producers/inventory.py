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


@dataclass
class Host:
    node: str
    gpus: dict[str, int] = field(default_factory=dict)  # normalised PCI id -> card
    nics: dict[str, int] = field(default_factory=dict)


@dataclass
class Inventory:
    hosts: dict[str, Host] = field(default_factory=dict)
    switches: dict[str, str] = field(default_factory=dict)

    def node_of(self, hostname: str) -> str | None:
        host = self.hosts.get(hostname) or self.hosts.get(hostname.split(".")[0])
        return host.node if host else None

    def card_of(self, hostname: str, gpu_index: int | None = None, pci_bus_id: str | None = None) -> int | None:
        host = self.hosts.get(hostname) or self.hosts.get(hostname.split(".")[0])
        if host is None:
            return None
        if pci_bus_id and host.gpus:
            return host.gpus.get(_pci_key(pci_bus_id))
        return gpu_index

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
