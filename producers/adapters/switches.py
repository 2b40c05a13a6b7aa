"""Switch port telemetry from the tools operators run → port batches (one per switch per scrape).

- snmp_exporter, `if_mib` module: `ifOperStatus` (1 = up), `ifHCInOctets`, `ifHCOutOctets`,
  `ifInErrors`, `ifInDiscards`; EtherLike `dot3StatsFCSErrors` when present. Switch: `--switch` (a
  saved scrape has no target label) or `instance`; port: `ifName` (or `ifDescr`),
  `dot3StatsIndex` = `ifIndex`.
- gnmic, Prometheus output of OpenConfig interfaces (any `metric-prefix`):
  `..._interfaces_interface_state_counters_{in_octets,out_octets,in_errors,in_fcs_errors,
  in_discards,carrier_transitions}`, `..._state_oper_status` (1 / `UP`). Switch: `source`; port:
  `interface_name`.
- Prometheus infiniband_exporter (treydock): `infiniband_switch_port_{symbol_error,link_downed,
  receive_errors,transmit_discards,transmit_wait}_total`, `..._{receive,transmit}_data_bytes_total`.
  Switch: `guid` (named by `infiniband_switch_info{switch=...}`); port: `port`.
- NVIDIA UFM Telemetry, Prometheus endpoint or its JSON messages: `SymbolErrorCounterExtended`,
  `LinkDownedCounterExtended`, `PortRcvErrorsExtended`, `PortXmitDataExtended`,
  `PortRcvDataExtended`, `PortXmitDiscardsExtended`, `PortXmitWaitExtended`; JSON
  `Infiniband_SymbolErrors`, `Infiniband_LinkDowned`, `Infiniband_RcvErrors`,
  `Infiniband_XmtDiscards`, `Infiniband_XmitWait`. Switch: `node_guid`; port: `port_num`.

The switch is found as for perfquery: a topology name, or a name or GUID the inventory maps.
Ports: IB and Ethernet number their ports from 1, ours from 0: port N (`Ethernet1/5`,
`swp5`, `Ethernet5`: the last number of the interface name) is our port N-1.

Each port's own name (`ifName`, else `ifDescr`; `interface_name`; the IB port number as the tools
print it) goes with the batch (`Batch.port_names`) when a switch's ports are new or renamed, and
every `NAMES_EVERY_MS` again (a detector that starts later learns them): per port set, not per
sample; the link detector keeps them for its alerts.

Counters stay counters: a 32-bit SNMP counter that wraps (IF-MIB `ifInErrors`, `ifInDiscards`,
`dot3StatsFCSErrors` are Counter32) is unwrapped here, so the detectors see it go on rising; a
counter that falls from low (an agent or switch restart) is passed on as a reset, which the link
detector takes as a new baseline, not as errors.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field

from pipeline.model.schemas import Batch
from pipeline.topology.inventory import Inventory
from pipeline.topology.synthetic import Topology, UnknownEntity
from producers.adapters import FormatError, Skips
from producers.adapters.network import port_batch
from producers.adapters.prometheus import Exposition, Sample

WRAP32 = 2**32
NAMES_EVERY_MS = 600_000  # port names are sent again this often, unchanged

# metric -> (port column, scale, 32-bit counter); a column several metrics fill takes the first present
SNMP = {
    "ifHCInOctets": ("rx_bytes", 1, False),
    "ifHCOutOctets": ("tx_bytes", 1, False),
    "dot3StatsFCSErrors": ("crc_errors", 1, True),
    "ifInErrors": ("crc_errors", 1, True),
    "ifInDiscards": ("drops", 1, True),
}
GNMIC = {
    "interfaces_interface_state_counters_in_octets": ("rx_bytes", 1, False),
    "interfaces_interface_state_counters_out_octets": ("tx_bytes", 1, False),
    "interfaces_interface_state_counters_in_fcs_errors": ("crc_errors", 1, False),
    "interfaces_interface_state_counters_in_errors": ("crc_errors", 1, False),
    "interfaces_interface_state_counters_in_discards": ("drops", 1, False),
    "interfaces_interface_state_counters_carrier_transitions": ("carrier_transitions", 1, False),
}
IB_EXPORTER = {
    "infiniband_switch_port_symbol_error_total": ("symbol_errors", 1, False),
    "infiniband_switch_port_link_downed_total": ("carrier_transitions", 1, False),
    "infiniband_switch_port_receive_errors_total": ("crc_errors", 1, False),
    "infiniband_switch_port_transmit_discards_total": ("drops", 1, False),
    "infiniband_switch_port_transmit_wait_total": ("pfc_pause", 1, False),
    "infiniband_switch_port_receive_data_bytes_total": ("rx_bytes", 1, False),
    "infiniband_switch_port_transmit_data_bytes_total": ("tx_bytes", 1, False),
}
UFM = {
    "SymbolErrorCounterExtended": ("symbol_errors", 1, False),
    "LinkDownedCounterExtended": ("carrier_transitions", 1, False),
    "PortRcvErrorsExtended": ("crc_errors", 1, False),
    "PortXmitDiscardsExtended": ("drops", 1, False),
    "PortXmitWaitExtended": ("pfc_pause", 1, False),
    "PortXmitDataExtended": ("tx_bytes", 4, False),
    "PortRcvDataExtended": ("rx_bytes", 4, False),  # 4-byte words
    # UFM Telemetry JSON messages (fluentd plugin format): `<counter>_u_<unit>` keys
    "Infiniband_SymbolErrors": ("symbol_errors", 1, False),
    "Infiniband_LinkDowned": ("carrier_transitions", 1, False),
    "Infiniband_RcvErrors": ("crc_errors", 1, False),
    "Infiniband_XmtDiscards": ("drops", 1, False),
    "Infiniband_XmitWait": ("pfc_pause", 1, False),
}
STATUS = {"ifOperStatus", "interfaces_interface_state_oper_status"}
# an administratively disabled port (ifAdminStatus 2 = down; OpenConfig admin-status DOWN) is sent as
# oper_up 2: down, and disabled on purpose (the link detector pages it as a warning, label admin_down)
ADMIN = {"ifAdminStatus", "interfaces_interface_state_admin_status"}
_LAST_NUMBER = re.compile(r"(\d+)\D*$")


@dataclass
class SwitchReport:
    samples: int = 0
    mapped: int = 0
    unmapped_switches: Counter = field(default_factory=Counter)
    unmapped_ports: Counter = field(default_factory=Counter)
    wraps: int = 0  # 32-bit counters unwrapped


_GNMIC_NAMES = (*GNMIC, "interfaces_interface_state_oper_status", "interfaces_interface_state_admin_status")
# a column several metrics of a table fill takes the one listed first: its rank in the table
_RANK = {name: i for table in (SNMP, GNMIC, IB_EXPORTER, UFM) for i, name in enumerate(table)}


_FAMILIES: dict[str, tuple[str, dict, str] | None] = {}  # metric name -> its family, as found


def _family(name: str) -> tuple[str, dict, str] | None:
    """(family, its metric table, the name as the table knows it) of a switch metric; gnmic names
    may carry any prefix. Remembered per name: every sample of every scrape asks."""
    try:
        return _FAMILIES[name]
    except KeyError:
        pass
    found = _find_family(name)
    if len(_FAMILIES) < 100_000:
        _FAMILIES[name] = found
    return found


def _find_family(name: str) -> tuple[str, dict, str] | None:
    if name in SNMP or name in ("ifOperStatus", "ifAdminStatus"):
        return "snmp", SNMP, name
    if name in IB_EXPORTER:
        return "ib", IB_EXPORTER, name
    if name in UFM:
        return "ufm", UFM, name
    suffix = next((s for s in _GNMIC_NAMES if name.endswith(s)), None)
    return ("gnmic", GNMIC, suffix) if suffix else None


class SwitchConverter:
    """Scrapes (or UFM messages) of switch port counters to port batches. Stateful: it unwraps
    32-bit counters and remembers switch names announced by info metrics."""

    def __init__(self, topology: Topology | None, inventory: Inventory) -> None:
        """Without a topology every switch is taken as named and each of its ports is its own
        entity, `<switch>:<ifName>` (`port_names` keeps them, in the order first seen)."""
        self.topo = topology
        self.port_names: dict[str, list[str]] = {}  # without a topology: switch -> its ports' names
        self.inventory = inventory
        self.report = SwitchReport()
        self.skips = Skips()
        self._raw: dict[tuple[str, int, str], int] = {}  # last raw value of a 32-bit counter
        self._offset: dict[tuple[str, int, str], int] = {}
        self._names: dict[str, str] = {}  # IB GUID -> switch name (infiniband_switch_info)
        self._last_stamp: dict[str, int] = {}  # switch -> time of its last batch
        self._port_name: dict[tuple[str, int], str] = {}  # (switch, port) -> the device's name for it
        self._renamed: set[str] = set()  # switches with a port named anew since their last batch
        self._names_sent: dict[str, int] = {}  # switch -> time its port names were last sent
        # (switch, port) of a label set seen before: a collector's parser and remote_write decoder
        # share one labels dict per series, so later scrapes look nothing up
        self._placed: dict[int, tuple[dict, str | None, str, tuple[str, int]]] = {}

    @staticmethod
    def recognises(sample: Sample) -> bool:
        return _family(sample.name) is not None or sample.name == "infiniband_switch_info"

    def _switch(self, family: str, labels: dict[str, str], hint: str | None) -> str | None:
        if family == "snmp":
            key = hint or labels.get("instance", "").split(":")[0] or labels.get("target", "")
        elif family == "gnmic":
            key = labels.get("source") or hint or ""
        elif family == "ib":
            guid = labels.get("guid", "").lower()
            key = self._names.get(guid) or guid or hint or ""
        else:
            key = labels.get("node_guid", labels.get("source_id", "")).lower() or hint or ""
        if not key:
            self.skips.add(
                f"no switch label ({'instance' if family == 'snmp' else 'source or guid'}) and no --switch", "sample"
            )
            self.report.unmapped_switches["(no switch label)"] += 1
            return None
        candidates = [key]
        if family == "ib" and labels.get("guid"):
            candidates.append(labels["guid"].lower())
        for name in candidates:
            mapped = self.inventory.switch_of(name)
            if mapped:
                return mapped
            if self.topo is None:
                return name
            by_guid = getattr(self.topo, "switch_of_guid", None)  # an imported fabric knows its GUIDs
            if by_guid is not None and by_guid(name):
                return by_guid(name)
            try:
                self.topo.switch_index(name)
                return name
            except UnknownEntity:
                continue
        self.report.unmapped_switches[key] += 1
        self.skips.add(f"switch {key!r} is neither a topology switch nor in the inventory's switches", "sample")
        return None

    def _port(self, switch: str, family: str, labels: dict[str, str], if_names: dict[str, str]) -> int | None:
        if family == "snmp":
            text = (
                labels.get("ifName")
                or labels.get("ifDescr")
                or if_names.get(labels.get("ifIndex") or labels.get("dot3StatsIndex") or "", "")
            )
        elif family == "gnmic":
            text = labels.get("interface_name") or labels.get("name") or ""
        elif family == "ib":
            text = labels.get("port", "")
        else:
            text = str(labels.get("port_num", ""))
        if self.topo is None:  # the port is its own entity, by its name
            if not text:
                self.skips.add("a sample without a port name (ifName, interface_name, port)", "sample")
                return None
            names = self.port_names.setdefault(switch, [])
            if text not in names:
                names.append(text)
            return self._named(switch, names.index(text), text)
        match = _LAST_NUMBER.search(text)
        port = int(match.group(1)) - 1 if match else -1
        if not 0 <= port < self.topo.switch_ports(switch):
            self.report.unmapped_ports[f"{switch}:{text}"] += 1
            self.skips.add(
                f"port {text!r} of {switch} is not one of its {self.topo.switch_ports(switch)} ports "
                "(port N of the name is our port N-1)",
                "sample",
            )
            return None
        return self._named(switch, port, text)

    def _named(self, switch: str, port: int, text: str) -> int:
        """Remember the device's name of a port (its switch's next batch sends names if it is news)."""
        if self._port_name.get((switch, port)) != text:
            self._port_name[(switch, port)] = text
            self._renamed.add(switch)
        return port

    def _unwrap(self, switch: str, port: int, metric: str, value: int) -> int:
        key = (switch, port, metric)
        last = self._raw.get(key)
        self._raw[key] = value
        if last is not None and value < last:
            if last >= WRAP32 // 2 and last < WRAP32:  # it was high: wrapped past 2^32
                self._offset[key] = self._offset.get(key, 0) + WRAP32
                self.report.wraps += 1
            else:  # fell from low: the agent restarted; a reset the detector sees
                self._offset[key] = 0
        return value + self._offset.get(key, 0)

    def convert(self, exposition: Exposition, scrape_ts_ms: int, switch_hint: str | None = None) -> list[Batch]:
        """Port batches of one scrape; what was skipped and why is in `self.skips`."""
        self.skips = Skips()
        for sample in exposition.samples:  # names first: info metrics may come after the counters
            if sample.name == "infiniband_switch_info" and sample.labels.get("switch"):
                self._names[sample.labels.get("guid", "").lower()] = sample.labels["switch"]
        if_names = {
            s.labels["ifIndex"]: s.labels.get("ifName") or s.labels.get("ifDescr", "")
            for s in exposition.samples
            if s.name in SNMP or s.name == "ifOperStatus"
            if "ifIndex" in s.labels
        }
        rows: dict[tuple[str, int], dict[str, int]] = {}
        placed = self._placed
        priority: dict[tuple[str, int, str], int] = {}  # which metric filled a column (first in the table wins)
        stamps: dict[str, int] = {}
        switch: str | None
        port: int | None
        for sample in exposition.samples:
            found = _family(sample.name)
            if found is None:
                continue
            family, table, name = found
            self.report.samples += 1
            labels = sample.labels
            known = placed.get(id(labels))
            if known is not None and known[0] is labels and known[1] == switch_hint and known[2] == family:
                switch, port = known[3]
            else:
                switch = self._switch(family, labels, switch_hint)
                if switch is None:
                    continue
                port = self._port(switch, family, labels, if_names)
                if port is None:
                    continue
                if (
                    self.topo is not None
                    and family != "ib"
                    and (family != "snmp" or labels.get("ifName") or labels.get("ifDescr"))
                ):
                    if len(placed) >= 500_000:  # (an IB GUID's name and an ifIndex's ifName may change)
                        placed.clear()
                    placed[id(labels)] = (labels, switch_hint, family, (switch, port))  # holds the dict
            self.report.mapped += 1
            row = rows.setdefault((switch, port), {})
            stamps[switch] = max(stamps.get(switch, 0), sample.ts_ms or scrape_ts_ms)
            if name in ADMIN:
                state = sample.labels.get("admin_status", "").upper()
                row["admin_down"] = int(state == "DOWN" or (not state and sample.value == 2))
                continue
            if name in STATUS:
                row["oper_up"] = int(
                    sample.labels.get("oper_status", "").upper() == "UP"
                    or (not sample.labels.get("oper_status") and sample.value == 1)
                )
                continue
            if not math.isfinite(sample.value):  # a counter is a count: NaN or Inf is not one
                self.skips.add(f"{sample.name} is {sample.value} (not a count)", "sample")
                continue
            column, scale, counter32 = table[name]
            value = int(max(sample.value, 0))
            if counter32:
                value = self._unwrap(switch, port, name, value)
            rank = _RANK[name]
            if rank <= priority.get((switch, port, column), rank):
                priority[(switch, port, column)] = rank
                row[column] = value * scale
        by_switch: dict[str, dict[int, dict[str, int]]] = {}
        for (switch, port), row in rows.items():
            if row.pop("admin_down", 0):
                row["oper_up"] = 2
            by_switch.setdefault(switch, {})[port] = row
        for switch in by_switch:  # saved scrapes read in quick succession: each a later sample than the last
            stamps[switch] = max(stamps[switch], self._last_stamp.get(switch, -1) + 1)
            self._last_stamp[switch] = stamps[switch]
        batches = [port_batch(switch, stamps[switch], ports) for switch, ports in sorted(by_switch.items())]
        for batch in batches:
            self._name_ports(batch)
        return batches

    def _name_ports(self, batch: Batch) -> None:
        """Give a batch its ports' names when they are news to the readers (or not sent for a while)."""
        switch = batch.source
        sent = self._names_sent.get(switch)
        if switch not in self._renamed and sent is not None and batch.ts_ms - sent < NAMES_EVERY_MS:
            return
        self._renamed.discard(switch)
        self._names_sent[switch] = batch.ts_ms
        batch.port_names = tuple(self._port_name.get((switch, p), "") for p in batch.columns["port"].tolist())


def ufm_messages(text: str) -> tuple[Exposition, int]:
    """An NVIDIA UFM Telemetry JSON message (`{"timestamp", "type", "values": [...]}`) as samples
    (`Infiniband_SymbolErrors_u_Errors` -> `Infiniband_SymbolErrors`), and its time in ms."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FormatError(f"not JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict) or not isinstance(data.get("values"), list):
        raise FormatError("not a UFM Telemetry message: no `values` list of port records")
    samples, newest = [], 0
    for record in data["values"]:
        if not isinstance(record, dict) or "port_num" not in record:
            continue
        ts_us = record.get("timestamp")
        ts_ms = int(ts_us) // 1000 if isinstance(ts_us, (int, float)) else None
        newest = max(newest, ts_ms or 0)
        labels = {
            "node_guid": str(record.get("node_guid", record.get("source_id", ""))),
            "port_num": str(record["port_num"]),
        }
        for key, value in record.items():
            name = key.split("_u_")[0] if "_u_" in key else key
            if name in UFM and isinstance(value, (int, float)):
                samples.append(Sample(name, labels, float(value), ts_ms))
    if not samples:
        raise FormatError("a UFM Telemetry message without port counters (Infiniband_SymbolErrors_u_Errors, ...)")
    return Exposition(samples), newest
