"""LLDP neighbours as a `Fabric`: `lldpcli -f json0 show neighbors`, run on each host (or switch).

json0 keeps every value in a list, so its shape does not change with the number of entries:

    {"lldp": [{"interface": [{"name": "ens11np0", "via": "LLDP",
        "chassis": [{"name": [{"value": "leaf-1"}], "capability": [{"type": "Bridge", "enabled": true}]}],
        "port": [{"id": [{"type": "ifname", "value": "Ethernet1/1"}], "descr": [{"value": "..."}]}]}]}]}

The output does not name the machine it ran on, so each document is given with its host name: a
file `<host>.json`, a directory of them, or one JSON object {host: document}. A neighbour is a
switch (LLDP on hosts sees the switch port); a local machine is a host unless another document
sees it as a neighbour (switches' own dumps give the switch-to-switch links).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline.topology.fabric import Device, Endpoint, Fabric, FabricError, Link


def _values(node: Any, key: str) -> list:
    value = node.get(key, []) if isinstance(node, dict) else []
    return value if isinstance(value, list) else [value]


def _first_value(node: Any, key: str) -> str | None:
    for item in _values(node, key):
        if isinstance(item, dict) and item.get("value") not in (None, ""):
            return str(item["value"])
        if isinstance(item, str) and item:
            return item
    return None


def _neighbour_port(port: Any) -> str | None:
    """The neighbour's interface name: the port id when it is one, else its description."""
    for pid in _values(port, "id"):
        if isinstance(pid, dict) and pid.get("type") in ("ifname", "local", "ifalias") and pid.get("value"):
            return str(pid["value"])
    return _first_value(port, "descr") or _first_value(port, "id")


def add_lldp_document(fabric: Fabric, host: str, document: Any, source: str) -> int:
    """Add one machine's neighbours; returns how many links it gave."""
    if not isinstance(document, dict) or "lldp" not in document:
        raise FabricError(f"{source}: not `lldpcli -f json0 show neighbors` output (no top-level `lldp`)")
    added = 0
    for lldp in _values(document, "lldp"):
        for interface in _values(lldp, "interface"):
            local = interface.get("name") if isinstance(interface, dict) else None
            chassis = next(iter(_values(interface, "chassis")), None)
            port = next(iter(_values(interface, "port")), None)
            neighbour = _first_value(chassis, "name") or _first_value(chassis, "id")
            remote_port = _neighbour_port(port)
            if not (local and neighbour and remote_port):
                fabric.drop("LLDP entry without a local interface, neighbour name or port")
                continue
            fabric.add_device(Device(host, "host"))
            fabric.add_device(Device(neighbour, "switch", description=_first_value(chassis, "descr") or ""))
            fabric.add_link(Link(Endpoint(host, str(local)), Endpoint(neighbour, remote_port)))
            added += 1
    return added


def load_lldp(path: str | Path) -> Fabric:
    path = Path(path)
    fabric = Fabric()
    if path.is_dir():
        files = sorted(path.glob("*.json"))
        if not files:
            raise FabricError(f"{path}: no <host>.json files (lldpcli -f json0 show neighbors, one per host)")
        documents = [(f.stem, _read_json(f), str(f)) for f in files]
    else:
        data = _read_json(path)
        if isinstance(data, dict) and "lldp" not in data:  # {host: document}
            documents = [(str(host), doc, f"{path}: {host}") for host, doc in data.items()]
        else:
            documents = [(path.stem, data, str(path))]
    for host, document, source in documents:
        add_lldp_document(fabric, host, document, source)
    switches = {link.b.device for link in fabric.links}  # seen as a neighbour: a switch
    for name in switches:
        fabric.devices[name].kind = "switch"
    if not fabric.links:
        raise FabricError(f"{path}: no LLDP neighbours")
    return fabric.dedup()


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except OSError as exc:
        raise FabricError(f"cannot read {str(path)!r}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise FabricError(f"{path}: not JSON ({exc.msg}, line {exc.lineno})") from None
