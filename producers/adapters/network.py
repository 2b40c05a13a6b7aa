"""Port counters from InfiniBand and Ethernet tools → port batches.

- `perfquery -x` output of a switch (ports numbered from 1: port N is our port N-1).
- `/sys/class/infiniband/<dev>/ports/<n>/{counters/*,state}` and `/sys/class/net/<if>/{statistics/*,
  carrier_changes,operstate}` of a host: each NIC is mapped (inventory `nics`) to its index j and
  reported by the node as its port j, the host end of its link (the switch reports the other end;
  the link detector keeps the two ends' counters apart, so they are never mixed).

IB data counters count 4-byte words; they are converted to bytes. PortRcvErrors (which includes
CRC errors) fills `crc_errors`, LinkDownedCounter `carrier_transitions`, PortXmitWait `pfc_pause`
(the congestion signal IB has instead of PFC), PortXmitDiscards `drops`.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from pipeline.model.schemas import PORT, Batch
from pipeline.topology.inventory import Inventory
from pipeline.topology.synthetic import Topology
from producers.adapters import FormatError, Skips, first_line

PERFQUERY = {
    "PortXmitData": ("tx_bytes", 4),
    "PortRcvData": ("rx_bytes", 4),
    "SymbolErrorCounter": ("symbol_errors", 1),
    "LinkDownedCounter": ("carrier_transitions", 1),
    "PortRcvErrors": ("crc_errors", 1),
    "PortXmitDiscards": ("drops", 1),
    "PortXmitWait": ("pfc_pause", 1),
}
SYSFS_IB = {
    "port_xmit_data": ("tx_bytes", 4),
    "port_rcv_data": ("rx_bytes", 4),
    "symbol_error": ("symbol_errors", 1),
    "link_downed": ("carrier_transitions", 1),
    "port_rcv_errors": ("crc_errors", 1),
    "port_xmit_discards": ("drops", 1),
    "port_xmit_wait": ("pfc_pause", 1),
}
SYSFS_NET = {
    "statistics/tx_bytes": ("tx_bytes", 1),
    "statistics/rx_bytes": ("rx_bytes", 1),
    "statistics/rx_crc_errors": ("crc_errors", 1),
    "statistics/rx_dropped": ("drops", 1),
    "carrier_changes": ("carrier_transitions", 1),
}
_PORT_HEADER = re.compile(r"^# Port extended counters: .* port (\d+)")
_FIELD = re.compile(r"^(\w+):\.*(\S+)$")


def port_batch(switch: str, ts_ms: int, ports: dict[int, dict[str, int]]) -> Batch:
    order = sorted(ports)
    cols = {"port": np.array(order, "<u2"), "oper_up": np.array([ports[p].get("oper_up", 1) for p in order], "<u1")}
    for col in PORT.columns[2:]:
        cols[col.name] = np.array([ports[p].get(col.name, 0) for p in order], "<u8")
    return Batch("port", switch, ts_ms, cols)


def parse_perfquery(text: str, switch: str, ts_ms: int) -> Batch:
    """`perfquery -x` output for one or more ports of one switch; FormatError for anything else."""
    ports: dict[int, dict[str, int]] = {}
    current: dict[str, int] | None = None
    for line in text.splitlines():
        header = _PORT_HEADER.match(line)
        if header:
            current = ports.setdefault(int(header.group(1)) - 1, {})
            continue
        m = _FIELD.match(line.strip())
        if m and current is not None and m.group(1) in PERFQUERY:
            column, scale = PERFQUERY[m.group(1)]
            try:
                current[column] = int(m.group(2), 0) * scale
            except ValueError:
                continue
    if not ports:
        if re.search(r"^# Port counters: ", text, re.M):
            raise FormatError("perfquery output without -x (32-bit counters that saturate): save `perfquery -x`")
        raise FormatError(
            f"no '# Port extended counters' section (first line {first_line(text)}): "
            "not `perfquery -x` output; save `perfquery -x -G GUID PORT` (or `perfquery -x -a`)"
        )
    if not any(ports.values()):
        raise FormatError(f"'# Port extended counters' sections without any of {', '.join(PERFQUERY)}")
    return port_batch(switch, ts_ms, ports)


def _host_link_port(topology: Topology, node: str, nic: int) -> tuple[str, int]:
    """The host end of a NIC's link: the node reports it as its own port `nic`."""
    topology.node_index(node)  # a known node, or UnknownEntity
    return node, nic


def read_sysfs(
    root: str | Path,
    host: str,
    inventory: Inventory,
    topology: Topology,
    ts_ms: int,
    kind: str = "infiniband",
    skips: Skips | None = None,
) -> tuple[list[Batch], list[str]]:
    """Host NIC counters from a sysfs tree (`/sys/class/infiniband` or `/sys/class/net`);
    returns the batches and the devices the inventory does not map (reasons in `skips`).
    FormatError if `root` is not such a directory."""
    skips = skips if skips is not None else Skips()
    node = inventory.node_of(host)
    if node is None:
        raise ValueError(f"host {host!r} is not in the inventory")
    root = Path(root)
    layout = (
        "/sys/class/infiniband (<dev>/ports/<n>/counters)"
        if kind == "infiniband"
        else "/sys/class/net (<if>/statistics)"
    )
    if not root.is_dir():
        raise FormatError(f"not a directory: expected a copy of {layout}")
    devices = sorted(p for p in root.iterdir() if p.is_dir())
    if not devices:
        raise FormatError(f"no device directories: expected a copy of {layout}")
    own = "ports" if kind == "infiniband" else "statistics"
    if (root / own).is_dir():
        raise FormatError(f"one device's directory: give its parent, a copy of {layout}")
    other = "statistics" if kind == "infiniband" else "ports"
    if all(not (dev / own).is_dir() for dev in devices) and any((dev / other).is_dir() for dev in devices):
        flag = "--sysfs-kind net" if kind == "infiniband" else "--sysfs-kind infiniband"
        raise FormatError(f"devices with {other}/ directories, not {own}/: use {flag}")
    batches, unmapped = [], []
    for dev in devices:
        nic, why = inventory.locate_nic(host, dev.name)
        if nic is None:
            unmapped.append(dev.name)
            assert why is not None  # locate_nic gives a reason with every None
            skips.add(why, "device")
            continue
        values: dict[str, int] = {}
        if kind == "infiniband":
            port_dir = next(iter(sorted((dev / "ports").iterdir())), None) if (dev / "ports").is_dir() else None
            if port_dir is None:
                unmapped.append(dev.name)
                skips.add(f"{dev.name} has no ports/ directory", "device")
                continue
            for name, (column, scale) in SYSFS_IB.items():
                path = port_dir / "counters" / name
                if path.exists():
                    values[column] = _counter(path) * scale
            state = (port_dir / "state").read_text() if (port_dir / "state").exists() else "4: ACTIVE"
            values["oper_up"] = int("ACTIVE" in state)
        else:
            for name, (column, scale) in SYSFS_NET.items():
                path = dev / name
                if path.exists():
                    values[column] = _counter(path) * scale
            state = (dev / "operstate").read_text().strip() if (dev / "operstate").exists() else "up"
            values["oper_up"] = int(state == "up")
        if len(values) == 1:  # only the state: no counter files
            unmapped.append(dev.name)
            skips.add(
                f"{dev.name} has no counter files ({', '.join(SYSFS_IB if kind == 'infiniband' else SYSFS_NET)})",
                "device",
            )
            continue
        switch, port = _host_link_port(topology, node, nic)
        batches.append(port_batch(switch, ts_ms, {port: values}))
    return batches, unmapped


def _counter(path: Path) -> int:
    text = path.read_text(errors="replace").split()
    try:
        return int(text[0])
    except (IndexError, ValueError):
        raise FormatError(f"{path}: not a counter value: {' '.join(text)[:40]!r}") from None
