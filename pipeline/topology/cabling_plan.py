"""Cabling plans as a `Fabric`: NVIDIA UFM NDT files and plain cabling CSVs.

The columns are found by name in the header row wherever it is: `#StartDevice,StartPort,EndDevice,
EndPort,LinkType` (UFM's NDT), or a spreadsheet export with leading columns and `#Fields:` glued
to a cell (`,rack #,U height,#Fields:StartDevice,StartPort,...`). Other columns are ignored.

Ports are read the way UFM names them: `Port 21` is switch port 21; `Blade 16_Port 2/20` is port
20 of ASIC 2 on line card 16 of a director (`L16/U2/20`, as ibnetdiscover sees it); a host port
`SAT111092710053 ibp11s0f0` (host name, then interface) is the interface `ibp11s0f0`. A device
that appears with a switch port is a switch, otherwise a host. Links listed in both directions
are kept once.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

from pipeline.topology.fabric import Device, Endpoint, Fabric, FabricError, Link

COLUMNS = ("startdevice", "startport", "enddevice", "endport")
_SWITCH_PORT = re.compile(r"^(?:port\s*)?(\d+)$", re.I)
_BLADE_PORT = re.compile(r"^blade\s*(\d+)\s*_\s*port\s*(\d+)\s*/\s*(\d+)$", re.I)


def _column(cell: str) -> str:
    return cell.strip().lstrip("#").split(":")[-1].strip().lower()


def plan_port(device: str, port: str) -> tuple[str, bool]:
    """(port name, is a switch port) as ibnetdiscover would name it."""
    text = " ".join(port.split())
    blade = _BLADE_PORT.match(text)
    if blade:
        return f"L{int(blade.group(1)):02d}/U{blade.group(2)}/{int(blade.group(3))}", True
    number = _SWITCH_PORT.match(text)
    if number:
        return str(int(number.group(1))), True
    if text.lower().startswith(device.lower() + " "):
        text = text[len(device) + 1 :]
    return text, False


def parse_cabling_plan(text: str, source: str = "cabling plan") -> Fabric:
    rows = list(csv.reader(io.StringIO(text.replace("\r\n", "\n").replace("\r", "\n"))))
    header_at = next((i for i, row in enumerate(rows) if set(COLUMNS) <= {_column(cell) for cell in row}), None)
    if header_at is None:
        raise FabricError(f"{source}: no header row with StartDevice, StartPort, EndDevice, EndPort")
    names = [_column(cell) for cell in rows[header_at]]
    index = {name: names.index(name) for name in COLUMNS}
    fabric = Fabric()
    ends: list[tuple[Endpoint, bool, Endpoint, bool]] = []
    for number, row in enumerate(rows[header_at + 1 :], header_at + 2):
        if not any(cell.strip() for cell in row):
            continue
        try:
            values = [row[index[name]].strip() for name in COLUMNS]
        except IndexError:
            raise FabricError(f"{source}, line {number}: {len(row)} columns, the header has {len(names)}") from None
        if not all(values):
            fabric.drop("row with an empty device or port")
            continue
        start_port, start_switch = plan_port(values[0], values[1])
        end_port, end_switch = plan_port(values[2], values[3])
        ends.append((Endpoint(values[0], start_port), start_switch, Endpoint(values[2], end_port), end_switch))
    switches = {e.device.lower() for a, a_sw, b, b_sw in ends for e, sw in ((a, a_sw), (b, b_sw)) if sw}
    for a, _, b, _ in ends:
        for end in (a, b):
            fabric.add_device(Device(end.device, "switch" if end.device.lower() in switches else "host"))
        fabric.add_link(Link(a, b))
    if not fabric.links:
        raise FabricError(f"{source}: the header is there but no link row follows")
    return fabric.dedup()


def load_cabling_plan(*paths: str | Path) -> Fabric:
    """One plan from one or more files (e.g. host-to-leaf and leaf-to-spine NDTs)."""
    merged = Fabric()
    for path in paths:
        try:
            text = Path(path).read_text(encoding="utf-8-sig", errors="replace")
        except OSError as exc:
            raise FabricError(f"cannot read {str(path)!r}: {exc.strerror}") from None
        part = parse_cabling_plan(text, str(path))
        for device in part.devices.values():
            existing = merged.devices.get(device.name)
            if existing is None or (existing.kind == "host" and device.kind == "switch"):
                merged.devices[device.name] = device
        merged.links += part.links
        for why, count in part.dropped.items():
            merged.drop(why, count)
    return merged.dedup()
