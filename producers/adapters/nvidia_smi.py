"""nvidia-smi output → card batches: `--query-gpu=... --format=csv` (with or without units) and
`nvidia-smi -q -x` XML. `[N/A]` and fields a driver does not have become NaN (gauges) or 0
(counters), so driver-version drift in the field list does not break ingestion."""

from __future__ import annotations

import csv
import io
import math
import re
import xml.etree.ElementTree as ET
from datetime import datetime, timezone

import numpy as np

from pipeline.schemas import CARD, Batch
from producers.inventory import Inventory

_NUMBER = re.compile(r"^\s*(-?\d+(?:\.\d+)?)")
CSV_FIELDS = {  # nvidia-smi --query-gpu field -> our column
    "utilization.gpu": "util", "clocks.current.sm": "sm_clock_mhz", "clocks.sm": "sm_clock_mhz",
    "power.draw": "power_w", "temperature.gpu": "temp_c", "memory.used": "mem_used_mib",
    "ecc.errors.corrected.aggregate.total": "ecc_sbe", "ecc.errors.uncorrected.aggregate.total": "ecc_dbe",
}


def number(text: str | None) -> float:
    """'81559 MiB', '699.12 W', '100 %', '45' -> float; '[N/A]', '' or None -> NaN."""
    m = _NUMBER.match(text or "")
    return float(m.group(1)) if m else math.nan


def _batch(node: str, ts_ms: int, rows: dict[int, dict[str, float]]) -> Batch:
    cards = sorted(rows)
    cols: dict[str, np.ndarray] = {"card": np.array(cards, "<u1")}
    for col in CARD.group_columns("rows")[1:]:
        values = [rows[c].get(col.name, math.nan) for c in cards]
        if col.dtype == "<f4":
            cols[col.name] = np.array(values, np.float64).astype("<f4")
        else:
            cols[col.name] = np.array([0 if math.isnan(v) else max(v, 0) for v in values], np.float64).astype(col.dtype)
    cols["err_card"], cols["err_code"] = np.zeros(0, "<u1"), np.zeros(0, "<u4")
    return Batch("card", node, ts_ms, cols)


def _ts(text: str) -> int | None:
    for fmt in ("%Y/%m/%d %H:%M:%S.%f", "%Y/%m/%d %H:%M:%S", "%a %b %d %H:%M:%S %Y"):
        try:
            return int(datetime.strptime(text.strip(), fmt).replace(tzinfo=timezone.utc).timestamp() * 1000)
        except ValueError:
            continue
    return None


def parse_query_csv(text: str, host: str, inventory: Inventory, default_ts_ms: int) -> list[Batch]:
    """`nvidia-smi --query-gpu=...,index,pci.bus_id,... --format=csv[,nounits]` → one batch per timestamp."""
    node = inventory.node_of(host)
    if node is None:
        raise ValueError(f"host {host!r} is not in the inventory")
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    if not lines:
        return []
    reader = csv.reader(io.StringIO("\n".join(lines)), skipinitialspace=True)
    header = [h.strip().split(" [")[0] for h in next(reader)]
    by_ts: dict[int, dict[int, dict[str, float]]] = {}
    for values in reader:
        if len(values) != len(header) or values[0] == header[0]:
            continue
        row = dict(zip(header, values))
        index = number(row.get("index"))
        card = inventory.card_of(host, None if math.isnan(index) else int(index), row.get("pci.bus_id"))
        if card is None:
            continue
        ts = _ts(row.get("timestamp", "")) or default_ts_ms
        sample = by_ts.setdefault(ts, {}).setdefault(card, {})
        for field_name, column in CSV_FIELDS.items():
            if field_name in row:
                sample[column] = number(row[field_name])
    return [_batch(node, ts, rows) for ts, rows in sorted(by_ts.items())]


def _find(gpu: ET.Element, *paths: str) -> float:
    for path in paths:
        el = gpu.find(path)
        if el is not None and el.text:
            value = number(el.text)
            if not math.isnan(value):
                return value
    return math.nan


def parse_query_xml(text: str, host: str, inventory: Inventory, default_ts_ms: int) -> list[Batch]:
    """`nvidia-smi -q -x` (DTD v10-v12 field names) → one batch."""
    node = inventory.node_of(host)
    if node is None:
        raise ValueError(f"host {host!r} is not in the inventory")
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise ValueError(f"not nvidia-smi -q -x XML: {exc}") from None
    ts = _ts(root.findtext("timestamp") or "") or default_ts_ms
    rows: dict[int, dict[str, float]] = {}
    for position, gpu in enumerate(root.findall("gpu")):
        minor = number(gpu.findtext("minor_number"))
        card = inventory.card_of(host, position if math.isnan(minor) else int(minor), gpu.get("id"))
        if card is None:
            continue
        rows[card] = {
            "util": _find(gpu, "utilization/gpu_util"),
            "sm_clock_mhz": _find(gpu, "clocks/sm_clock"),
            "power_w": _find(gpu, "gpu_power_readings/power_draw", "power_readings/power_draw",
                             "gpu_power_readings/instant_power_draw"),
            "temp_c": _find(gpu, "temperature/gpu_temp"),
            "mem_used_mib": _find(gpu, "fb_memory_usage/used"),
            "ecc_sbe": _find(gpu, "ecc_errors/aggregate/sram_correctable", "ecc_errors/aggregate/single_bit/total"),
            "ecc_dbe": _find(gpu, "ecc_errors/aggregate/sram_uncorrectable", "ecc_errors/aggregate/double_bit/total"),
        }
    return [_batch(node, ts, rows)] if rows else []
