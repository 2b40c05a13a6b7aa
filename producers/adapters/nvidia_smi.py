"""nvidia-smi output → card batches: `--query-gpu=... --format=csv` (with or without units) and
`nvidia-smi -q -x` XML. `[N/A]` and fields a driver does not have become NaN (gauges) or 0
(counters), so driver-version drift in the field list does not break ingestion."""

from __future__ import annotations

import csv
import io
import math
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime

import numpy as np

from pipeline.model.schemas import CARD, Batch
from pipeline.topology.inventory import Inventory
from producers.adapters import FormatError, Skips, first_line

_NUMBER = re.compile(r"^\s*(-?\d+(?:\.\d+)?)")
CSV_FIELDS = {  # nvidia-smi --query-gpu field -> our column
    "utilization.gpu": "util",
    "clocks.current.sm": "sm_clock_mhz",
    "clocks.sm": "sm_clock_mhz",
    "power.draw": "power_w",
    "temperature.gpu": "temp_c",
    "memory.used": "mem_used_mib",
    "ecc.errors.corrected.aggregate.total": "ecc_sbe",
    "ecc.errors.uncorrected.aggregate.total": "ecc_dbe",
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
            return int(datetime.strptime(text.strip(), fmt).replace(tzinfo=UTC).timestamp() * 1000)
        except ValueError:
            continue
    return None


QUERY = (
    "timestamp,index,pci.bus_id,utilization.gpu,clocks.sm,power.draw,temperature.gpu,memory.used,"
    "ecc.errors.corrected.aggregate.total,ecc.errors.uncorrected.aggregate.total"
)
EXPECTED = f"save `nvidia-smi --query-gpu={QUERY} --format=csv` or `nvidia-smi -q -x`"
_TABLE = re.compile(r"^\|\s+NVIDIA-SMI \S+", re.M)
_QUERY_HEADER = re.compile(r"^timestamp\s*,.*\b(index|pci\.bus_id)\b", re.M)


def kind_of_text(text: str) -> str | None:
    """What human-readable nvidia-smi output (or other text) is, if it is not CSV or XML."""
    kinds = []
    if _TABLE.search(text):
        kinds.append("the default table")
    if "==============NVSMI LOG==============" in text:
        kinds.append("`nvidia-smi -q`")
    if kinds:
        return "human-readable nvidia-smi output (" + " and ".join(kinds) + ")"
    first = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    if re.match(r"^# gpu\s+(pwr|sm|fb)\b", first) or re.match(r"^# gpu\s+pid\b", first):
        return "nvidia-smi dmon/pmon output (columns without PCI ids or timestamps)"
    if re.match(r"^GPU \d+: .*\(UUID: ", first):
        return "an `nvidia-smi -L` GPU list (no metrics)"
    return None


def parse_nvidia_smi(
    text: str, host: str, inventory: Inventory, default_ts_ms: int, skips: Skips | None = None
) -> list[Batch]:
    """Any saved nvidia-smi output: `-q -x` XML or `--query-gpu` CSV; FormatError (what it looks like
    and what to save instead) for anything else."""
    head = text.lstrip()
    if head.startswith("<"):
        return parse_query_xml(text, host, inventory, default_ts_ms, skips)
    human = kind_of_text(text)
    if human:
        section = _QUERY_HEADER.search(text)
        hint = (
            f" (its --query-gpu CSV section starts at line {text.count(chr(10), 0, section.start()) + 1}: "
            "save that section alone)"
            if section and section.start() > 0
            else ""
        )
        raise FormatError(f"{human}, not --query-gpu CSV{hint}; {EXPECTED}")
    return parse_query_csv(text, host, inventory, default_ts_ms, skips)


def parse_query_csv(
    text: str, host: str, inventory: Inventory, default_ts_ms: int, skips: Skips | None = None
) -> list[Batch]:
    """`nvidia-smi --query-gpu=...,index,pci.bus_id,... --format=csv[,nounits]` → one batch per timestamp.
    FormatError if the text is not such a CSV; skipped rows are counted with reasons in `skips`."""
    skips = skips if skips is not None else Skips()
    node = inventory.node_of(host)
    if node is None:
        raise ValueError(f"host {host!r} is not in the inventory")
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    if not lines:
        raise FormatError(f"no lines but comments: not --query-gpu CSV; {EXPECTED}")
    reader = csv.reader(io.StringIO("\n".join(lines)), skipinitialspace=True)
    header = [h.strip().split(" [")[0] for h in next(reader)]
    known = [h for h in header if h in CSV_FIELDS]
    if not known:
        if header and (_ts(header[0]) is not None or not math.isnan(number(header[0]))):
            raise FormatError(
                f"CSV without a header line (saved with --format=csv,noheader?): the header names "
                f"the fields; {EXPECTED}"
            )
        if len(header) <= 1:
            raise FormatError(f"not nvidia-smi output (first line {first_line(text)}); {EXPECTED}")
        raise FormatError(
            f"a CSV whose header ({', '.join(header[:5])}{', ...' if len(header) > 5 else ''}) has "
            f"none of the --query-gpu fields ClusterPulse reads; {EXPECTED}"
        )
    if "index" not in header and "pci.bus_id" not in header:
        raise FormatError(f"--query-gpu CSV without index or pci.bus_id: cannot tell the GPUs apart; {EXPECTED}")
    by_ts: dict[int, dict[int, dict[str, float]]] = {}
    for values in reader:
        if values and values[0].split(" [")[0] == header[0]:
            continue  # a repeated header (concatenated captures)
        if len(values) != len(header):
            skips.add(f"{len(values)} fields where the header has {len(header)}", "row", example=", ".join(values)[:60])
            continue
        row = dict(zip(header, values))
        index = number(row.get("index"))
        card, why = inventory.locate_card(host, None if math.isnan(index) else int(index), row.get("pci.bus_id"))
        if card is None:
            assert why is not None  # locate_card gives a reason with every None
            skips.add(why, "row")
            continue
        ts = _ts(row.get("timestamp", "")) or default_ts_ms
        sample = by_ts.setdefault(ts, {}).setdefault(card, {})
        for field_name, column in CSV_FIELDS.items():
            if field_name in row:
                sample[column] = number(row[field_name])
    if not by_ts and not skips:
        raise FormatError(f"a --query-gpu CSV header without value rows; {EXPECTED}")
    return [_batch(node, ts, rows) for ts, rows in sorted(by_ts.items())]


def _find(gpu: ET.Element, *paths: str) -> float:
    for path in paths:
        el = gpu.find(path)
        if el is not None and el.text:
            value = number(el.text)
            if not math.isnan(value):
                return value
    return math.nan


def parse_query_xml(
    text: str, host: str, inventory: Inventory, default_ts_ms: int, skips: Skips | None = None
) -> list[Batch]:
    """`nvidia-smi -q -x` (DTD v10-v12 field names) → one batch."""
    skips = skips if skips is not None else Skips()
    node = inventory.node_of(host)
    if node is None:
        raise ValueError(f"host {host!r} is not in the inventory")
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise FormatError(f"not nvidia-smi -q -x XML: {exc}") from None
    if root.tag != "nvidia_smi_log":
        raise FormatError(f"XML with root element <{root.tag}>, not nvidia-smi -q -x (<nvidia_smi_log>); {EXPECTED}")
    if not root.findall("gpu"):
        raise FormatError("nvidia-smi -q -x XML without <gpu> elements")
    ts = _ts(root.findtext("timestamp") or "") or default_ts_ms
    rows: dict[int, dict[str, float]] = {}
    for position, gpu in enumerate(root.findall("gpu")):
        minor = number(gpu.findtext("minor_number"))
        card, why = inventory.locate_card(host, position if math.isnan(minor) else int(minor), gpu.get("id"))
        if card is None:
            assert why is not None  # locate_card gives a reason with every None
            skips.add(why, "GPU")
            continue
        rows[card] = {
            "util": _find(gpu, "utilization/gpu_util"),
            "sm_clock_mhz": _find(gpu, "clocks/sm_clock"),
            "power_w": _find(
                gpu,
                "gpu_power_readings/power_draw",
                "power_readings/power_draw",
                "gpu_power_readings/instant_power_draw",
            ),
            "temp_c": _find(gpu, "temperature/gpu_temp"),
            "mem_used_mib": _find(gpu, "fb_memory_usage/used"),
            "ecc_sbe": _find(gpu, "ecc_errors/aggregate/sram_correctable", "ecc_errors/aggregate/single_bit/total"),
            "ecc_dbe": _find(gpu, "ecc_errors/aggregate/sram_uncorrectable", "ecc_errors/aggregate/double_bit/total"),
        }
    return [_batch(node, ts, rows)] if rows else []
