"""NVIDIA Xid lines from kernel logs → card error events.

Formats: `dmesg -T` (``[Sun Feb 23 16:24:18 2025] NVRM: Xid (PCI:0000:9b:00): 119, ...``),
`dmesg --time-format iso` (``kern  :warn  : 2025-01-21T04:41:44,283302+00:00 NVRM: Xid ...``), and
raw `/dev/kmsg` records (``6,3964,206764307,-;NVRM: Xid ...``, time = boot time + microseconds).
The PCI bus id maps to a card through the inventory.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from pipeline.model.schemas import CARD, Batch
from pipeline.topology.inventory import Inventory
from producers.adapters import Skips

_XID = re.compile(r"NVRM: Xid \(PCI:([0-9a-fA-F:.]+)\): (\d+),")
_CTIME = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]")
_ISO = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:[,.](\d+))?([+-]\d\d:?\d\d|Z)?")
_KMSG = re.compile(r"^\d+,\d+,(\d+),[^;]*;")


@dataclass
class XidEvent:
    ts_ms: int
    pci: str
    xid: int
    line: str


@dataclass
class KernelLogReport:
    lines: int = 0
    xid_lines: int = 0
    unmapped: dict[str, int] = field(default_factory=dict)  # PCI id -> Xid lines
    undated: int = 0
    skips: Skips = field(default_factory=Skips)  # why lines were skipped


def _timestamp(line: str, boot_ms: int | None) -> int | None:
    m = _CTIME.match(line)
    if m:
        dt = datetime.strptime(" ".join(m.group(1).split()), "%a %b %d %H:%M:%S %Y").replace(tzinfo=UTC)
        return int(dt.timestamp() * 1000)
    m = _KMSG.match(line)
    if m:
        return None if boot_ms is None else boot_ms + int(m.group(1)) // 1000
    m = _ISO.search(line)
    if m:
        zone = (m.group(3) or "+00:00").replace("Z", "+00:00")
        if len(zone) == 5:
            zone = zone[:3] + ":" + zone[3:]
        frac = (m.group(2) or "0")[:6].ljust(6, "0")
        dt = datetime.fromisoformat(f"{m.group(1)}.{frac}{zone}")
        return int(dt.timestamp() * 1000)
    return None


def parse_xids(text: str, boot_ms: int | None = None, report: KernelLogReport | None = None) -> list[XidEvent]:
    """The Xid events of a kernel log; lines without Xids are counted, Xid lines without a time
    are counted with the reason (`report.skips`)."""
    report = report if report is not None else KernelLogReport()
    out = []
    for line in text.splitlines():
        report.lines += 1
        m = _XID.search(line)
        if not m:
            continue
        report.xid_lines += 1
        ts = _timestamp(line, boot_ms)
        if ts is None:
            report.undated += 1
            if _KMSG.match(line):
                report.skips.add("/dev/kmsg records carry microseconds since boot: give --boot-time", "Xid line")
            else:
                report.skips.add(
                    "no timestamp (expected dmesg -T, dmesg --time-format iso or /dev/kmsg)",
                    "Xid line",
                    example=line.strip()[:80],
                )
            continue
        out.append(XidEvent(ts, m.group(1), int(m.group(2)), line.strip()))
    return out


def xid_batches(
    events: list[XidEvent], host: str, inventory: Inventory, report: KernelLogReport | None = None
) -> list[Batch]:
    """One events-only card batch per distinct timestamp (rows empty: no samples, only events)."""
    report = report if report is not None else KernelLogReport()
    node = inventory.node_of(host)
    by_ts: dict[int, list[tuple[int, int]]] = {}
    for ev in events:
        card, why = inventory.locate_card(host, None, ev.pci)
        if card is None:
            report.unmapped[ev.pci] = report.unmapped.get(ev.pci, 0) + 1
            assert why is not None  # locate_card gives a reason with every None
            report.skips.add(why, "Xid line")
            continue
        by_ts.setdefault(ev.ts_ms, []).append((card, ev.xid))
    batches = []
    for ts, evs in sorted(by_ts.items()):
        assert node is not None  # a card was located, so the host is in the inventory
        cols = {c.name: np.zeros(0, c.dtype) for c in CARD.group_columns("rows")}
        cols["err_card"] = np.array([c for c, _ in evs], "<u1")
        cols["err_code"] = np.array([x for _, x in evs], "<u4")
        batches.append(Batch("card", node, ts, cols))
    return batches


def no_xid_reason(text: str, lines: int) -> str:
    """Why a kernel log gave no Xid line: what it looks like instead."""
    looks = ""
    sample = [ln for ln in text.splitlines() if ln.strip()][:20]
    if sample and sum(1 for ln in sample if _CTIME.match(ln) or _KMSG.match(ln) or _ISO.search(ln)) >= len(sample) / 2:
        looks = "a kernel log with "
    return (
        f"{looks}no NVIDIA Xid lines among {lines:,} lines (expected `NVRM: Xid (PCI:0000:9b:00): 79, ...` "
        "from dmesg -T, dmesg --time-format iso or /dev/kmsg)"
    )
