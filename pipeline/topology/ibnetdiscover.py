"""`ibnetdiscover` output (infiniband-diags) as a `Fabric`: the default topology-file form and the
`--ports` (`-p`) report.

Default form: a record per node, a header line then a line per connected port,

    Switch	41 "S-1c34da0300728866"		# "MF0;MLG01-02:MQM8700/U1" enhanced port 0 lid 1600 lmc 0
    [1]	"H-1c34da0300608820"[1](1c34da0300608820) 		# "selene-swift-01 HCA-2" lid 837 4xHDR
    Ca	1 "H-1c34da03006087f8"		# "selene-login-02 HCA-2"
    [1](1c34da03006087f8) 	"S-1c34da0300728866"[6]		# lid 2295 lmc 0 "MF0;MLG01-02:MQM8700/U1" lid 1600 4xHDR

`--ports` form, a line per port (switches report their own node GUID for every port):

    SW  1600 39 0x1c34da0300728866 4x HDR - SW   102 39 0x1c34da030060a40c ( 'MF0;MLG01-02' - 'MF0;CSPINE1-80' )

A port with nothing cabled has no peer part (`SW  2052 37 0x... 4x ???   'ib-i4l1s01'`) and is
counted, not linked. Every link appears from both ends; it is kept once, and a link left out is
counted once. SHARP aggregation nodes (a CA named "Mellanox Technologies Aggregation Node" inside a
switch) are not hosts and are left out, as are links inside a director chassis (its line and spine
blades). An HCA whose description names no host (`MT4123 ConnectX6   Mellanox Technologies`) is
the host `H-<node GUID>` and its ports are their numbers. A link keeps its rate (`4xHDR`), a
device its `devid` when the default form gives it. Tolerated: tabs lost to a terminal log
(`Switch41 "S-..."#`), CRLF, a banner before the first record and a prompt after the last.
"""

from __future__ import annotations

import gzip
import re
from pathlib import Path

from pipeline.topology.fabric import Device, Endpoint, Fabric, FabricError, Link

SHARP = "aggregation node"
_SWITCH = re.compile(r'^Switch\s*(\d+)\s+"S-([0-9a-fA-F]+)"\s*#\s*"([^"]*)"')
_CA = re.compile(r'^(?:Ca|Rt)\s*(\d+)\s+"([HR])-([0-9a-fA-F]+)"\s*#\s*"([^"]*)"')
# [local port](port guid)? "remote id"[remote port](remote port guid)?  # "remote description" ... speed
_PORT = re.compile(
    r'^\[(\d+)\](?:\(([0-9a-fA-F]+)\))?\s*"([SHR])-([0-9a-fA-F]+)"\[(\d+)\](?:\(([0-9a-fA-F]+)\))?'
    r'\s*#\s*(?:lid \d+ lmc \d+ )?"([^"]*)"(?:\s+lid \d+)?\s*(\S+)?'
)
_PORTS_FORM = re.compile(r"^(SW|CA|RT)\s+(\d+)\s+(\d+)\s+0x([0-9a-fA-F]+)\s+(\S+)\s+(\S+)\s*(.*)$")
# the peer part; descriptions may hold spaces (and " - "), so split at the parentheses' quotes
_PEER = re.compile(r"^-\s+(SW|CA|RT)\s+(\d+)\s+(\d+)\s+0x([0-9a-fA-F]+)\s+\(\s*'(.*)'\s+-\s+'(.*)'\s*\)\s*$")
_CHASSIS_PORT = re.compile(r"^(.*?)/([LS])(\d+)/U(\d+)$")  # MCS8500/L16/U2: line card 16, ASIC 2
_DEVID = re.compile(r"^devid\s*=\s*(0x[0-9a-fA-F]+)")
# a description that names no host: the firmware's default (`MT25408 ConnectX Mellanox Technologies`)
_NO_HOST = re.compile(r"^(MT\d+\b|localhost\b)|mellanox technologies", re.IGNORECASE)


def switch_identity(description: str, guid: str) -> tuple[str, str | None, str | None]:
    """(device name, model, blade prefix) from a switch node description: `MF0;MLG01-02:MQM8700/U1`
    -> (`MLG01-02`, `MQM8700`, None); a director blade `MF0;sat11-…ib1-A:MCS8500/L16/U2` ->
    (`sat11-…ib1-A`, `MCS8500`, `L16/U2`). Without a name: `S-<guid>`."""
    text = description.strip()
    if ";" in text:
        text = text.split(";", 1)[1]
    name, _, rest = text.partition(":")
    model, blade = (rest or None), None
    if rest:
        chassis = _CHASSIS_PORT.match(rest)
        if chassis:
            model, blade = chassis.group(1), f"{chassis.group(2)}{int(chassis.group(3)):02d}/U{chassis.group(4)}"
        else:
            model = rest.split("/", 1)[0]
    name = name.strip()
    if not name or " " in name:  # a default description (e.g. "MF0;switch-..." missing) or free text
        name = f"S-{guid.lower()}"
    return name, model, blade


def host_identity(description: str, guid: str, port: int) -> tuple[str, str] | None:
    """(host, interface) from a CA's node description: `selene-slurm-02 mlx5_1` -> (`selene-slurm-02`,
    `mlx5_1`). An HCA whose description names no host (empty, `MT4123 ConnectX6   Mellanox
    Technologies`, `localhost HCA-1`) is its own host, named as ibnetdiscover names the node,
    `H-<node guid>`, and the interface is the port number. None for a SHARP aggregation node."""
    text = " ".join(description.split())
    if SHARP in text.lower():
        return None
    if not text or _NO_HOST.search(text):
        return f"H-{guid.lower()}", str(port)
    first, _, rest = text.partition(" ")
    return first, rest or str(port)


def _switch_port(blade: str | None, port: int) -> str:
    return f"{blade}/{port}" if blade else str(port)


def parse_ibnetdiscover(text: str, source: str = "ibnetdiscover") -> Fabric:
    """Either form, told apart by its lines."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if any(_PORTS_FORM.match(line.strip()) and not line.startswith(("Switch", "Ca", "Rt")) for line in lines[:200]):
        return _parse_ports_form(lines, source)
    return _parse_default_form(lines, source)


def _parse_default_form(lines: list[str], source: str) -> Fabric:
    fabric = Fabric()
    current: tuple[str, str, str | None] | None = None  # (kind, name or description, blade)
    current_guid = ""
    devid: str | None = None  # the `devid=` line before the record
    records = 0
    for raw in lines:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _DEVID.match(line)
        if match:
            devid = match.group(1).lower()
            continue
        match = _SWITCH.match(line)
        if match:
            records += 1
            current_guid = match.group(2)
            name, model, blade = switch_identity(match.group(3), current_guid)
            fabric.add_device(Device(name, "switch", current_guid.lower(), match.group(3), model))
            fabric.devices[name].devid = fabric.devices[name].devid or devid
            current, devid = ("switch", name, blade), None
            continue
        match = _CA.match(line)
        if match:
            records += 1
            current_guid = match.group(3)
            who = host_identity(match.group(4), current_guid, 1)
            if who is None:
                fabric.drop("SHARP aggregation node")
                current, devid = None, None
                continue
            fabric.add_device(Device(who[0], "host", current_guid.lower(), match.group(4).strip()))
            fabric.devices[who[0]].devid = fabric.devices[who[0]].devid or devid
            current, devid = ("host", match.group(4), None), None  # its interface depends on the port
            continue
        match = _PORT.match(line)
        if not match:
            continue  # vendid=, sysimgguid=, a banner or a prompt
        if current is None:
            continue  # a port of a record left out (SHARP)
        local_port, local_guid, kind, remote_guid, remote_port, remote_port_guid, remote_desc, speed = match.groups()
        ends = ((current_guid.lower(), local_port), (remote_guid.lower(), remote_port))
        remote = _remote_endpoint(kind, remote_guid, int(remote_port), remote_port_guid, remote_desc, fabric)
        if remote is None:
            fabric.drop_link("link to a SHARP aggregation node", ends)
            continue
        ckind, what, blade = current
        if ckind == "switch":
            here = Endpoint(what, _switch_port(blade, int(local_port)))
        else:
            here = Endpoint(*host_identity(what, current_guid, int(local_port)))  # type: ignore[misc]
        if here.device == remote.device:
            fabric.drop_link("link inside a director chassis", ends)
            continue
        fabric.add_link(Link(here, remote, speed))
    if not records:
        raise FabricError(f"{source}: no Switch or Ca record: not ibnetdiscover output")
    return _without_orphans(fabric.dedup())


def _remote_endpoint(
    kind: str, guid: str, port: int, port_guid: str | None, description: str, fabric: Fabric
) -> Endpoint | None:
    if kind == "S":
        name, model, blade = switch_identity(description, guid)
        fabric.add_device(Device(name, "switch", guid.lower(), description, model))
        return Endpoint(name, _switch_port(blade, port))
    who = host_identity(description, guid, port)  # named by node GUID, as its own record is
    if who is None:
        return None
    fabric.add_device(Device(who[0], "host", guid.lower(), description.strip()))
    return Endpoint(*who)


def _parse_ports_form(lines: list[str], source: str) -> Fabric:
    fabric = Fabric()
    seen = 0
    for raw in lines:
        match = _PORTS_FORM.match(raw.strip())
        if not match:
            continue
        seen += 1
        kind_a, _lid_a, port_a, guid_a, width, speed, rest = match.groups()
        peer = _PEER.match(rest)
        if peer is None:  # `SW 2052 37 0x... 4x ???   'ib-i4l1s01'`: nothing cabled
            fabric.drop("unconnected port")
            continue
        kind_b, _lid_b, port_b, guid_b, desc_a, desc_b = peer.groups()
        where = ((guid_a.lower(), port_a), (guid_b.lower(), port_b))
        ends = []
        for kind, guid, port, desc in ((kind_a, guid_a, int(port_a), desc_a), (kind_b, guid_b, int(port_b), desc_b)):
            end = _remote_endpoint("S" if kind == "SW" else "H", guid, port, guid, desc, fabric)
            ends.append(end)
        if ends[0] is None or ends[1] is None:
            fabric.drop_link("link to a SHARP aggregation node", where)
            continue
        if ends[0].device == ends[1].device:
            fabric.drop_link("link inside a director chassis", where)
            continue
        fabric.add_link(Link(ends[0], ends[1], f"{width}{speed}"))
    if not seen:
        raise FabricError(
            f"{source}: no port lines (`SW  lid port 0xguid ... - ...`): not ibnetdiscover --ports output"
        )
    return _without_orphans(fabric.dedup())


def _without_orphans(fabric: Fabric) -> Fabric:
    """Drop devices with no link left (a SHARP node's switch side is kept; its record is not)."""
    linked = {end.device for link in fabric.links for end in (link.a, link.b)}
    for name in [n for n in fabric.devices if n not in linked]:
        del fabric.devices[name]
    return fabric


def load_ibnetdiscover(path: str | Path) -> Fabric:

    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise FabricError(f"cannot read {str(path)!r}: {exc.strerror}") from None
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return parse_ibnetdiscover(data.decode("utf-8", "replace"), str(path))
