"""dcgm-exporter (`DCGM_FI_*`) and Huawei npu-exporter (`npu_chip_info_*`) scrapes → card batches.

One card batch per node per scrape: a row per card that appeared, with NaN for a gauge the
exporter did not report and 0 for a missing counter. An XID (dcgm `DCGM_FI_DEV_XID_ERRORS`, the
last XID seen) or an Ascend error code that changes between scrapes becomes an error event.
Metrics we do not map are ignored and counted by name.
"""

from __future__ import annotations

import enum
import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from pipeline.model.schemas import CARD, Batch
from pipeline.topology.inventory import Inventory
from pipeline.topology.synthetic import Topology, UnknownEntity
from producers.adapters import Skips
from producers.adapters.network import port_batch
from producers.adapters.prometheus import Exposition, Sample, SeriesCache, _split_series, parse, parse_line
from producers.adapters.switches import SwitchConverter

GAUGES = {
    "DCGM_FI_DEV_GPU_UTIL": "util",
    "DCGM_FI_DEV_SM_CLOCK": "sm_clock_mhz",
    "DCGM_FI_DEV_POWER_USAGE": "power_w",
    "DCGM_FI_DEV_GPU_TEMP": "temp_c",
    "DCGM_FI_DEV_FB_USED": "mem_used_mib",
    "npu_chip_info_utilization": "util",
    "npu_chip_info_aicore_current_freq": "sm_clock_mhz",
    "npu_chip_info_power": "power_w",
    "npu_chip_info_temperature": "temp_c",
    "npu_chip_info_hbm_used_memory": "mem_used_mib",
}
COUNTERS = {  # several exporter fields may add up to one of ours
    "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL": "ecc_sbe",
    "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL": "ecc_dbe",
    "DCGM_FI_DEV_PCIE_REPLAY_COUNTER": "pcie_replay",
    "DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL": "link_errors",
    "DCGM_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL": "link_errors",
    "DCGM_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL": "link_errors",
    "DCGM_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL": "link_errors",
}
EVENTS = {"DCGM_FI_DEV_XID_ERRORS", "npu_chip_info_error_code"}
# node_exporter NIC counters (netdev, infiniband collectors) -> the host link's port columns
NIC_COUNTERS = {
    "node_network_receive_bytes_total": ("rx_bytes", 1),
    "node_network_transmit_bytes_total": ("tx_bytes", 1),
    "node_network_receive_errs_total": ("crc_errors", 1),
    "node_network_receive_drop_total": ("drops", 1),
    "node_network_carrier_changes_total": ("carrier_transitions", 1),
    "node_infiniband_port_data_received_bytes_total": ("rx_bytes", 1),
    "node_infiniband_port_data_transmitted_bytes_total": ("tx_bytes", 1),
    "node_infiniband_port_errors_received_total": ("crc_errors", 1),
    "node_infiniband_symbol_error_total": ("symbol_errors", 1),
    "node_infiniband_link_downed_total": ("carrier_transitions", 1),
    "node_infiniband_port_discards_transmitted_total": ("drops", 1),
    "node_infiniband_port_transmit_wait_total": ("pfc_pause", 1),
}
NIC_STATE = {"node_network_up", "node_network_carrier"}


@dataclass
class ConversionReport:
    samples: int = 0
    mapped: int = 0
    unknown_metrics: Counter = field(default_factory=Counter)
    unmapped_hosts: Counter = field(default_factory=Counter)  # hosts (and host:NIC) the inventory does not map
    unmapped_gpus: Counter = field(default_factory=Counter)  # "host PCI id" of known hosts' unmapped GPUs
    bad_lines: int = 0


class ExporterConverter:
    """Stateful (it remembers the last error code per card) converter of scrapes to card batches."""

    def __init__(self, topology: Topology, inventory: Inventory, ports_as_entities: bool = False) -> None:
        """`ports_as_entities`: switches are taken as named, their ports as their own entities
        (`SwitchConverter` without a topology)."""
        self.topo = topology
        self.inventory = inventory
        self.last_code: dict[tuple[str, int], int] = {}
        self.report = ConversionReport()
        self.skips = Skips()  # of the scrape being converted
        # switch port metrics in the same scrapes
        self.switches = SwitchConverter(None if ports_as_entities else topology, inventory)
        self._placed: dict[int, tuple[dict, str, str | None, tuple | None]] = {}  # convert_samples' routes

    def _where(self, sample: Sample, host_hint: str | None) -> tuple[str, int] | None:
        labels = sample.labels
        host = labels.get("Hostname") or labels.get("hostname") or labels.get("node") or host_hint or ""
        index_text = labels.get("gpu", labels.get("id"))
        index = int(index_text) if index_text not in (None, "") and index_text.isdigit() else None
        pci = labels.get("pci_bus_id")
        if not host:
            self.report.unmapped_hosts["(no host label)"] += 1
            self.skips.add("no Hostname label and no --host", "sample")
            return None
        found = self.inventory.host(host)
        if found:
            node = self.inventory.node_of(host)
            card, why = self.inventory.locate_card(host, index, pci)
            if card is None and pci and found[1].gpus:  # a known host, an unmapped GPU
                self.report.unmapped_gpus[f"{host} {pci}"] += 1
                assert why is not None  # locate_card gives a reason with every None
                self.skips.add(why, "sample")
                return None
        else:
            try:
                self.topo.node_index(host)  # already a topology name
                node, card, why = host, index, "no GPU index label (gpu or id)"
            except UnknownEntity:
                node, card, why = None, None, f"host {host!r} not in the inventory"
                if host_hint and host_hint != host:  # the target says which node it is (a `node` label)
                    try:
                        self.topo.node_index(host_hint)
                        node, card, why = host_hint, index, "no GPU index label (gpu or id)"
                    except UnknownEntity:
                        pass
        if node is None or card is None:
            self.report.unmapped_hosts[host] += 1
            self.skips.add(why or f"host {host!r} not mapped", "sample")
            return None
        if not 0 <= card < self.topo.cards_per_node:
            self.report.unmapped_hosts[host] += 1
            self.skips.add(
                f"card {card} of host {host} outside the topology's {self.topo.cards_per_node} cards per node", "sample"
            )
            return None
        return node, card

    def _nic_port(self, sample: Sample, host_hint: str | None) -> tuple[str, int] | None:
        """(node, NIC) of a node_exporter NIC sample via the inventory: the host end of its link."""
        host = host_hint or sample.labels.get("instance", "").split(":")[0]
        device = sample.labels.get("device", "?")
        nic, why = self.inventory.locate_nic(host, device) if host else (None, "no instance label and no --host")
        if nic is None:
            self.report.unmapped_hosts[f"{host}:{device}"] += 1
            assert why is not None  # locate_nic gives a reason with every None
            self.skips.add(why, "sample")
            return None
        node = self.inventory.node_of(host)
        assert node is not None  # locate_nic found the host in the inventory
        self.topo.node_index(node)  # a known node, or UnknownEntity
        return node, nic  # the host end of its link: the node's own port `nic`

    def convert(
        self, exposition: Exposition, scrape_ts_ms: int, host_hint: str | None = None, switch_hint: str | None = None
    ) -> list[Batch]:
        """Card batches (one per node), port batches (one per host link) and switch port batches
        (`producers.adapters.switches`) of one scrape; what it skipped and why is in `self.skips`
        (that scrape's) and `self.report` (all scrapes)."""
        self.skips = Skips()
        nic_rows: dict[tuple[str, int], dict[str, float]] = {}
        nic_ts: dict[tuple[str, int], int] = {}
        gpu_samples, switch_samples = [], []
        for sample in exposition.samples:
            if SwitchConverter.recognises(sample):
                switch_samples.append(sample)
            elif sample.name in NIC_COUNTERS or sample.name in NIC_STATE:
                self.report.samples += 1
                where = self._nic_port(sample, host_hint)
                if where is None:
                    continue
                self.report.mapped += 1
                row = nic_rows.setdefault(where, {})
                nic_ts[where] = max(nic_ts.get(where, 0), sample.ts_ms or scrape_ts_ms)
                if sample.name in NIC_STATE:
                    row["oper_up"] = min(row.get("oper_up", 1), 1 if sample.value >= 1 else 0)
                elif not math.isfinite(sample.value):  # a counter is a count: NaN or Inf is not one
                    self.skips.add(f"{sample.name} is {sample.value} (not a count)", "sample")
                else:
                    column, scale = NIC_COUNTERS[sample.name]
                    row[column] = row.get(column, 0) + max(sample.value, 0) * scale
            else:
                gpu_samples.append(sample)
        by_node: dict[str, dict[int, dict[str, int]]] = {}
        for (node, nic), row in sorted(nic_rows.items()):
            by_node.setdefault(node, {})[nic] = {k: int(v) for k, v in row.items()}
        ports = [port_batch(node, max(nic_ts[(node, nic)] for nic in nics), nics) for node, nics in by_node.items()]
        switches: list[Batch] = []
        if switch_samples:
            before = (self.switches.report.samples, self.switches.report.mapped)
            switches = self.switches.convert(Exposition(switch_samples), scrape_ts_ms, switch_hint)
            self.report.samples += self.switches.report.samples - before[0]
            self.report.mapped += self.switches.report.mapped - before[1]
            self.skips.merge(self.switches.skips)
        cards = self._cards(Exposition(gpu_samples, exposition.types, exposition.bad_lines), scrape_ts_ms, host_hint)
        return cards + ports + switches

    def _cards(self, exposition: Exposition, scrape_ts_ms: int, host_hint: str | None) -> list[Batch]:
        self.report.bad_lines += len(exposition.bad_lines)
        if exposition.bad_lines:
            number, reason = exposition.bad_lines[0]
            self.skips.add("unparseable", "line", len(exposition.bad_lines), f"line {number}: {reason}")
        unknown: Counter = Counter()
        rows: dict[str, dict[int, dict[str, float]]] = {}
        ts_of: dict[str, int] = {}
        events: dict[str, list[tuple[int, int]]] = {}
        for sample in exposition.samples:
            self.report.samples += 1
            field_name = GAUGES.get(sample.name) or COUNTERS.get(sample.name)
            if field_name is None and sample.name not in EVENTS:
                self.report.unknown_metrics[sample.name] += 1
                unknown[sample.name] += 1
                continue
            where = self._where(sample, host_hint)
            if where is None:
                continue
            self.report.mapped += 1
            self._fill(
                rows, ts_of, events, (*where, field_name, _how(sample.name)), sample.value, sample.ts_ms or scrape_ts_ms
            )
        if unknown:
            names = [name for name, _ in unknown.most_common(3)]
            self.skips.add(
                f"metrics ClusterPulse does not map ({', '.join(names)}"
                + (f" and {len(unknown) - 3} more" if len(unknown) > 3 else "")
                + ")",
                "sample",
                sum(unknown.values()),
            )
        return self._card_batches(rows, ts_of, events, scrape_ts_ms)

    def _card_batches(
        self,
        rows: dict[str, dict[int, dict[str, float]]],
        ts_of: dict[str, int],
        events: dict[str, list[tuple[int, int]]],
        scrape_ts_ms: int,
    ) -> list[Batch]:
        """A card batch per node of what its cards reported (NaN for a gauge not reported, 0 for a
        counter) and its new error events."""
        batches = []
        for node in sorted(set(rows) | set(events)):
            cards = sorted(rows.get(node, {}))
            cols: dict[str, np.ndarray] = {"card": np.array(cards, "<u1")}
            for col in CARD.group_columns("rows")[1:]:
                fill = math.nan if col.dtype == "<f4" else 0
                values = [rows[node][c].get(col.name, fill) for c in cards]
                cols[col.name] = (
                    np.array(values, dtype=np.float64).astype(col.dtype)
                    if col.dtype == "<f4"
                    else np.array([max(v, 0) for v in values], dtype=np.float64).astype(col.dtype)
                )
            evs = events.get(node, [])
            cols["err_card"] = np.array([c for c, _ in evs], "<u1")
            cols["err_code"] = np.array([code for _, code in evs], "<u4")
            batches.append(Batch("card", node, ts_of.get(node, scrape_ts_ms), cols))
        return batches

    # ---- a collector's fast path -------------------------------------------------------------
    def convert_page(
        self,
        text: str,
        cache: SeriesCache,
        scrape_ts_ms: int,
        host_hint: str | None = None,
        switch_hint: str | None = None,
    ) -> list[Batch] | None:
        """`convert` of one target's page for a collector that scrapes it again and again: each
        GPU series is placed (node, card, column) once and remembered in the target's `cache`, so
        later scrapes only read values. The other lines (switch ports, NICs, unmapped metrics) take
        the general path. None when the page has no GPU sample we map (then use `convert`)."""
        routes = cache.routes
        rows: dict[str, dict[int, dict[str, float]]] = {}
        ts_of: dict[str, int] = {}
        events: dict[str, list[tuple[int, int]]] = {}
        other: list[str] = []
        mapped = 0
        for raw in text.split("\n"):
            line = raw.strip()
            if not line or line[0] == "#":
                if line.startswith("# TYPE"):
                    other.append(line)
                continue
            series, rest = _split_series(line)
            route = routes.get(series, _UNSEEN)
            if route is _UNSEEN:
                route = self._route(line, series, host_hint, cache)
            if route is None:
                other.append(line)
                continue
            if route is DROPPED:
                continue
            fields = rest.split()
            try:
                value = float(fields[0]) if 1 <= len(fields) <= 2 else None
                ts = int(fields[1]) if len(fields) == 2 else scrape_ts_ms
            except ValueError:
                value = None
            if value is None:
                other.append(line)  # the full grammar says what is wrong with it
                continue
            mapped += 1
            self._fill(rows, ts_of, events, route, value, ts)
        if not mapped:
            return None
        rest_batches: list[Batch] = []
        if any(line[0] != "#" for line in other):  # more than TYPE lines
            rest_batches = self.convert(parse("\n".join(other), cache), scrape_ts_ms, host_hint, switch_hint)
        else:
            self.skips = Skips()
        self.report.samples += mapped
        self.report.mapped += mapped
        return self._card_batches(rows, ts_of, events, scrape_ts_ms) + rest_batches

    def _route(self, line: str, series: str, host_hint: str | None, cache: SeriesCache) -> tuple | None:
        """(node, card, column, how) of a GPU series we place, or None for the general path (a
        line that does not parse, another kind of metric, a GPU we cannot place: it says why);
        remembered in `cache` unless the line does not parse."""
        try:
            sample = parse_line(line)
        except ValueError:
            return None
        admitted = cache.admit(sample)  # the target's metric_relabel_configs
        route = DROPPED if admitted is None else self._place(admitted, host_hint)
        cache.route(series, route)
        if route is None and admitted is not sample and admitted is not None:
            cache.remember(series, admitted)  # the general path reads it as relabelled
        return route

    def _place(self, sample: Sample, host_hint: str | None) -> tuple | None:
        column = GAUGES.get(sample.name) or COUNTERS.get(sample.name)
        if column is None and sample.name not in EVENTS:
            return None
        skips, self.skips = self.skips, Skips()  # the general path reports why a sample is not placed
        try:
            where = self._where(sample, host_hint)
        finally:
            self.skips = skips
        if where is None:
            return None
        return (where[0], where[1], column, _how(sample.name))

    def _fill(self, rows: dict, ts_of: dict, events: dict, route: tuple, value: float, ts: int) -> None:
        """One placed sample, `route` = (node, card, column, how), into its node's rows (an error
        code that changed becomes an event)."""
        node, card, column, how = route
        ts_of[node] = max(ts_of.get(node, 0), ts)
        row = rows.setdefault(node, {}).setdefault(card, {})
        if how == "event":
            code = int(value) if math.isfinite(value) else 0
            if code and self.last_code.get((node, card)) != code:
                events.setdefault(node, []).append((card, code))
            self.last_code[(node, card)] = code
        elif how == "counter":
            row[column] = row.get(column, 0.0) + value
        else:
            row[column] = value

    def convert_samples(
        self, samples: list[Sample], ts_ms: int, host_hint: str | None = None, switch_hint: str | None = None
    ) -> list[Batch]:
        """`convert` of samples that arrive parsed (remote_write), placing each GPU series once per
        label set (the decoder shares one labels dict per series); the rest takes the general path."""
        placed = self._placed
        rows: dict[str, dict[int, dict[str, float]]] = {}
        ts_of: dict[str, int] = {}
        events: dict[str, list[tuple[int, int]]] = {}
        other: list[Sample] = []
        for sample in samples:
            name, labels, value, ts = sample
            known = placed.get(id(labels))
            if known is not None and known[0] is labels and known[1] == name and known[2] == host_hint:
                route = known[3]
            else:
                route = self._place(sample, host_hint)
                if len(placed) >= 500_000:
                    placed.clear()
                placed[id(labels)] = (labels, name, host_hint, route)  # holds the dict: ids stay unique
            if route is None:
                other.append(sample)
                continue
            self._fill(rows, ts_of, events, route, value, ts or ts_ms)
        rest = self.convert(Exposition(other), ts_ms, host_hint, switch_hint) if other else []
        if not other:
            self.skips = Skips()
        mapped = len(samples) - len(other)
        self.report.samples += mapped
        self.report.mapped += mapped
        return self._card_batches(rows, ts_of, events, ts_ms) + rest


def _how(name: str) -> str:
    """How a GPU metric's value goes into its row: an error event, a counter (summed), a gauge."""
    return "event" if name in EVENTS else "counter" if name in COUNTERS else "gauge"


class _Unseen(enum.Enum):
    UNSEEN = enum.auto()


_UNSEEN = _Unseen.UNSEEN  # a series without a route yet
DROPPED = ("dropped",)  # a series the target's metric_relabel_configs drop
