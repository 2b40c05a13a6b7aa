"""A fabric saved as YAML (`clusterpulse topology import --out topology.yaml`): what was read from
ibnetdiscover, LLDP or a cabling plan, every link once, readable and editable by hand.

    clusterpulse_topology: 1
    source: selene.compute.ibnetdiscover.txt.gz (ibnetdiscover)
    devices:
    - {name: LG01-01, kind: switch, guid: 1c34da0300728966, model: MQM8700, devid: '0xd2f0'}
    - {name: luna-0001, kind: host}
    links:                 # [device, port, device, port, speed]
    - [LG01-01, '1', luna-0001, mlx5_0, 4xHDR]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from pipeline.model.yaml_errors import yaml_problem
from pipeline.topology.fabric import Device, Endpoint, Fabric, FabricError, Link

MARK = "clusterpulse_topology"
VERSION = 1


def fabric_document(fabric: Fabric, source: str = "") -> dict[str, Any]:
    devices = []
    for d in fabric.devices.values():
        entry: dict[str, Any] = {"name": d.name, "kind": d.kind}
        for key in ("guid", "model", "description", "devid"):
            if getattr(d, key):
                entry[key] = getattr(d, key)
        devices.append(entry)
    links = [
        [link.a.device, link.a.port, link.b.device, link.b.port] + ([link.speed] if link.speed else [])
        for link in fabric.links
    ]
    return {
        MARK: VERSION,
        "source": source,
        "devices": devices,
        "links": links,
        **({"dropped": dict(fabric.dropped)} if fabric.dropped else {}),
    }


def save_fabric(fabric: Fabric, path: str | Path, source: str = "") -> None:
    text = yaml.dump(
        fabric_document(fabric, source),
        Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper),
        sort_keys=False,
        default_flow_style=None,
        width=200,
    )
    Path(path).write_text(text)


def load_saved(path: str | Path) -> Fabric:
    """Read a saved fabric; a FabricError names the file and what is wrong."""
    try:
        data = yaml.load(Path(path).read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except (OSError, UnicodeDecodeError) as exc:
        raise FabricError(f"cannot read {path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise FabricError(f"{path}: not valid YAML: {yaml_problem(exc)}") from None
    if not isinstance(data, dict) or data.get(MARK) != VERSION:
        raise FabricError(f"{path}: not a saved topology (`{MARK}: {VERSION}` missing)")
    fabric = Fabric()
    for i, entry in enumerate(data.get("devices") or []):
        if not isinstance(entry, dict) or not entry.get("name") or entry.get("kind") not in ("switch", "host"):
            raise FabricError(f"{path}: devices[{i}] needs a name and kind switch or host, got {entry!r}")
        fabric.add_device(
            Device(
                str(entry["name"]),
                entry["kind"],
                entry.get("guid"),
                entry.get("description", ""),
                entry.get("model"),
                entry.get("devid"),
            )
        )
    for i, row in enumerate(data.get("links") or []):
        if not isinstance(row, list) or len(row) not in (4, 5):
            raise FabricError(f"{path}: links[{i}] must be [device, port, device, port(, speed)], got {row!r}")
        a, b = Endpoint(str(row[0]), str(row[1])), Endpoint(str(row[2]), str(row[3]))
        for end in (a, b):
            if end.device not in fabric.devices:
                raise FabricError(f"{path}: links[{i}] names {end.device!r}, which is not among the devices")
        fabric.add_link(Link(a, b, str(row[4]) if len(row) == 5 else None))
    for why, n in (data.get("dropped") or {}).items():
        fabric.drop(str(why), int(n))
    return fabric.dedup()
