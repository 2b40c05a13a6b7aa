"""dcgm-exporter (`DCGM_FI_*`) and Huawei npu-exporter (`npu_chip_info_*`) scrapes → card batches.

One card batch per node per scrape: a row per card that appeared, with NaN for a gauge the
exporter did not report and 0 for a missing counter. An XID (dcgm `DCGM_FI_DEV_XID_ERRORS`, the
last XID seen) or an Ascend error code that changes between scrapes becomes an error event.
Metrics we do not map are ignored and counted by name.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from pipeline.schemas import CARD, Batch
from pipeline.topology import Topology, UnknownEntity
from producers.adapters.prometheus import Exposition, Sample
from producers.inventory import Inventory

GAUGES = {
    "DCGM_FI_DEV_GPU_UTIL": "util", "DCGM_FI_DEV_SM_CLOCK": "sm_clock_mhz", "DCGM_FI_DEV_POWER_USAGE": "power_w",
    "DCGM_FI_DEV_GPU_TEMP": "temp_c", "DCGM_FI_DEV_FB_USED": "mem_used_mib",
    "npu_chip_info_utilization": "util", "npu_chip_info_aicore_current_freq": "sm_clock_mhz",
    "npu_chip_info_power": "power_w", "npu_chip_info_temperature": "temp_c",
    "npu_chip_info_hbm_used_memory": "mem_used_mib",
}
COUNTERS = {  # several exporter fields may add up to one of ours
    "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL": "ecc_sbe", "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL": "ecc_dbe",
    "DCGM_FI_DEV_PCIE_REPLAY_COUNTER": "pcie_replay",
    "DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL": "link_errors",
    "DCGM_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL": "link_errors",
    "DCGM_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL": "link_errors",
    "DCGM_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL": "link_errors",
}
EVENTS = {"DCGM_FI_DEV_XID_ERRORS", "npu_chip_info_error_code"}


@dataclass
class ConversionReport:
    samples: int = 0
    mapped: int = 0
    unknown_metrics: Counter = field(default_factory=Counter)
    unmapped_hosts: Counter = field(default_factory=Counter)
    bad_lines: int = 0


class ExporterConverter:
    """Stateful (it remembers the last error code per card) converter of scrapes to card batches."""

    def __init__(self, topology: Topology, inventory: Inventory) -> None:
        self.topo = topology
        self.inventory = inventory
        self.last_code: dict[tuple[str, int], int] = {}
        self.report = ConversionReport()

    def _where(self, sample: Sample, host_hint: str | None) -> tuple[str, int] | None:
        labels = sample.labels
        host = labels.get("Hostname") or labels.get("hostname") or labels.get("node") or host_hint or ""
        node = self.inventory.node_of(host) if host else None
        if node is None and host:
            try:
                self.topo.node_index(host)  # already a topology name
                node = host
            except UnknownEntity:
                node = None
        index_text = labels.get("gpu", labels.get("id"))
        index = int(index_text) if index_text not in (None, "") and index_text.isdigit() else None
        card = self.inventory.card_of(host, index, labels.get("pci_bus_id")) if self.inventory.node_of(host) else index
        if node is None or card is None or not 0 <= card < self.topo.cards_per_node:
            self.report.unmapped_hosts[host or "(no host label)"] += 1
            return None
        return node, card

    def convert(self, exposition: Exposition, scrape_ts_ms: int, host_hint: str | None = None) -> list[Batch]:
        self.report.bad_lines += len(exposition.bad_lines)
        rows: dict[str, dict[int, dict[str, float]]] = {}
        ts_of: dict[str, int] = {}
        events: dict[str, list[tuple[int, int]]] = {}
        for sample in exposition.samples:
            self.report.samples += 1
            field_name = GAUGES.get(sample.name) or COUNTERS.get(sample.name)
            if field_name is None and sample.name not in EVENTS:
                self.report.unknown_metrics[sample.name] += 1
                continue
            where = self._where(sample, host_hint)
            if where is None:
                continue
            node, card = where
            self.report.mapped += 1
            ts_of[node] = max(ts_of.get(node, 0), sample.ts_ms or scrape_ts_ms)
            row = rows.setdefault(node, {}).setdefault(card, {})
            if sample.name in EVENTS:
                code = int(sample.value) if math.isfinite(sample.value) else 0
                if code and self.last_code.get((node, card)) != code:
                    events.setdefault(node, []).append((card, code))
                self.last_code[(node, card)] = code
            elif sample.name in COUNTERS:
                row[field_name] = row.get(field_name, 0.0) + sample.value
            else:
                row[field_name] = sample.value
        batches = []
        for node in sorted(set(rows) | set(events)):
            cards = sorted(rows.get(node, {}))
            cols: dict[str, np.ndarray] = {"card": np.array(cards, "<u1")}
            for col in CARD.group_columns("rows")[1:]:
                fill = math.nan if col.dtype == "<f4" else 0
                values = [rows[node][c].get(col.name, fill) for c in cards]
                cols[col.name] = np.array(values, dtype=np.float64).astype(col.dtype) if col.dtype == "<f4" \
                    else np.array([max(v, 0) for v in values], dtype=np.float64).astype(col.dtype)
            evs = events.get(node, [])
            cols["err_card"] = np.array([c for c, _ in evs], "<u1")
            cols["err_code"] = np.array([code for _, code in evs], "<u4")
            batches.append(Batch("card", node, ts_of.get(node, scrape_ts_ms), cols))
        return batches
