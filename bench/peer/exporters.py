"""The simulated cluster as the exporters an incumbent Prometheus scrapes.

Every node is a dcgm-exporter target (`DCGM_FI_*` per GPU, labels as dcgm-exporter 3.x writes them)
that also carries the training job's per-rank step metrics, and every switch an snmp_exporter
`if_mib` target (`ifOperStatus`, `ifHCInOctets`, `ifHCOutOctets`, `ifInErrors`, `ifInDiscards` per
port, `ifAlias` naming the far end as a cabling description does). The state comes from the very
batches the simulator sends to Kafka, so both systems see the same cluster. A node or switch that
has sent nothing for more than `silent_after` ticks answers 503, as a dead host's exporter answers nothing:
Prometheus records `up == 0`. A card that stops reporting keeps its last values, as DCGM's field
cache serves them for a GPU that stopped answering: a lost card's last XID stays visible (the
generous reading for the incumbent), and a card lost without one looks healthy and frozen.
"""

from __future__ import annotations

import hashlib
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

from pipeline.schemas import Batch
from pipeline.topology import Topology

GPU_GAUGES = (("DCGM_FI_DEV_GPU_UTIL", "util", "GPU utilization (in %)."),
              ("DCGM_FI_DEV_SM_CLOCK", "sm_clock_mhz", "SM clock frequency (in MHz)."),
              ("DCGM_FI_DEV_POWER_USAGE", "power_w", "Power draw (in W)."),
              ("DCGM_FI_DEV_GPU_TEMP", "temp_c", "GPU temperature (in C)."),
              ("DCGM_FI_DEV_FB_USED", "mem_used_mib", "Framebuffer memory used (in MiB)."))
GPU_COUNTERS = (("DCGM_FI_DEV_ECC_SBE_VOL_TOTAL", "ecc_sbe", "Total number of single-bit volatile ECC errors."),
                ("DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", "ecc_dbe", "Total number of double-bit volatile ECC errors."),
                ("DCGM_FI_DEV_PCIE_REPLAY_COUNTER", "pcie_replay", "Total number of PCIe retries."))
PORT_COUNTERS = (("ifHCInOctets", "rx_bytes"), ("ifHCOutOctets", "tx_bytes"), ("ifInErrors", "crc_errors"),
                 ("ifInDiscards", "drops"))
MODEL = "NVIDIA H100 80GB HBM3"


@dataclass
class NodeState:
    xid: dict[int, tuple[int, int]] = field(default_factory=dict)  # card -> (ts, last XID): DCGM_FI_DEV_XID_ERRORS
    job: str = ""
    step_ts: int = -1
    steps: dict[str, np.ndarray] = field(default_factory=dict)  # column -> the node's ranks of its last step


@dataclass
class SwitchState:
    tick: int = -1
    ts_ms: int = -1
    ports: dict[str, np.ndarray] = field(default_factory=dict)


class ClusterExporters:
    """Latest state of every node and switch, and its exposition text (rendered when scraped)."""

    def __init__(self, topology: Topology, silent_after: int = 3) -> None:
        self.topo = topology
        self.silent_after = silent_after
        self.tick = 0
        self.nodes: dict[str, NodeState] = {name: NodeState() for name in topology.node_names}
        self.node_index = {name: i for i, name in enumerate(topology.node_names)}
        shape = (topology.nodes, topology.cards_per_node)
        self.node_tick = np.full(topology.nodes, -1, np.int64)
        self.node_ts = np.full(topology.nodes, -1, np.int64)
        # each card's last value per column (NaN: never reported)
        self.card_values = {c: np.full(shape, np.nan) for _, c, _ in GPU_GAUGES + GPU_COUNTERS}
        self.switches: dict[str, SwitchState] = {name: SwitchState() for name in topology.switch_names}
        self._aliases = {name: [self._alias(name, p) for p in range(topology.switch_ports(name))]
                         for name in topology.switch_names}
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[int, bytes]] = {}

    def _alias(self, switch: str, port: int) -> str:
        link = self.topo.port_link(switch, port)
        if link is None:
            return ""
        a, _, b = link.partition("~")
        return a if b == switch else b

    # ---- state ---------------------------------------------------------------------------------
    def apply(self, batches: list[Batch]) -> None:
        """One tick's batches (a batch older than what a source already showed is ignored)."""
        with self._lock:
            self.tick += 1
            for batch in batches:
                if batch.kind == "card":
                    self._apply_cards(batch)
                elif batch.kind == "port":
                    self._apply_ports(batch)
                elif batch.kind == "step":
                    self._apply_steps(batch)

    def _sources(self, batch: Batch) -> list[tuple[str, dict[str, int]]]:
        return batch.parts or [(batch.source, {g: batch.rows(g) for g in ("rows", "events")})]

    def _apply_cards(self, batch: Batch) -> None:
        parts = self._sources(batch)
        index = np.array([self.node_index.get(name, -1) for name, _ in parts], np.int64)
        rows = np.array([counts.get("rows", 0) for _, counts in parts], np.int64)
        fresh = (index >= 0) & (batch.ts_ms >= self.node_ts[index])  # a late batch never overwrites newer
        self.node_tick[index[fresh]], self.node_ts[index[fresh]] = self.tick, batch.ts_ms
        keep = np.repeat(fresh, rows)
        row_nodes, cards = np.repeat(index, rows)[keep], batch.columns["card"][keep].astype(np.int64)
        for column, values in self.card_values.items():
            values[row_nodes, cards] = batch.columns[column][keep]
        event = 0
        for name, counts in parts:  # an error event is news even in a late batch: the newest per card wins
            events = counts.get("events", 0)
            xid = self.nodes[name].xid if name in self.nodes else {}
            for i in range(event, event + events):
                card = int(batch.columns["err_card"][i])
                if batch.ts_ms >= xid.get(card, (-1, 0))[0]:
                    xid[card] = (batch.ts_ms, int(batch.columns["err_code"][i]))
            event += events

    def _apply_ports(self, batch: Batch) -> None:
        row = 0
        for source, counts in self._sources(batch):
            rows = counts.get("rows", 0)
            switch = self.switches.get(source)  # a node's own NIC counters have no switch target
            if switch is not None and batch.ts_ms >= switch.ts_ms:
                switch.tick, switch.ts_ms = self.tick, batch.ts_ms
                switch.ports = {name: np.array(col[row:row + rows]) for name, col in batch.columns.items()}
            row += rows

    def _apply_steps(self, batch: Batch) -> None:
        row = 0
        for source, counts in self._sources(batch):
            rows = counts.get("rows", 0)
            node = self.nodes.get(source)
            if node is not None and batch.ts_ms >= node.step_ts:
                node.job, node.step_ts = batch.job, batch.ts_ms
                node.steps = {n: col[row:row + rows] for n, col in batch.columns.items()}
            row += rows

    # ---- exposition ----------------------------------------------------------------------------
    def scrape(self, kind: str, name: str) -> bytes | None:
        """The target's exposition text, or None if it is silent (dead) or unknown."""
        with self._lock:
            if kind == "node" and name in self.node_index:
                state, tick = self.nodes[name], int(self.node_tick[self.node_index[name]])
            elif kind == "switch" and name in self.switches:
                state = self.switches[name]
                tick = state.tick
            else:
                return None
            if tick < 0 or self.tick - tick > self.silent_after:
                return None
            cached = self._cache.get(name)
            if cached and cached[0] == self.tick:  # rendered at most once a tick
                return cached[1]
            text = (self._node_text(name, state) if kind == "node" else self._switch_text(name, state)).encode()
            self._cache[name] = (self.tick, text)
            return text

    def _node_text(self, name: str, node: NodeState) -> str:
        out: list[str] = []
        values = {c: v[self.node_index[name]] for c, v in self.card_values.items()}
        seen = np.flatnonzero(~np.isnan(values["util"]))
        cards = seen.tolist()
        labels = [f'gpu="{card}",UUID="{_uuid(name, card)}",device="nvidia{card}",modelName="{MODEL}",'
                  f'Hostname="{name}"' for card in cards]
        for metric, column, help_text in GPU_GAUGES:
            out.append(f"# HELP {metric} {help_text}\n# TYPE {metric} gauge")
            out += [f"{metric}{{{lab}}} {value:.3f}" for lab, value in zip(labels, values[column][seen].tolist())]
        out.append("# HELP DCGM_FI_DEV_XID_ERRORS Value of the last XID error encountered.\n"
                   "# TYPE DCGM_FI_DEV_XID_ERRORS gauge")
        out += [f"DCGM_FI_DEV_XID_ERRORS{{{lab}}} {node.xid.get(card, (0, 0))[1]}" for lab, card in zip(labels, cards)]
        for metric, column, help_text in GPU_COUNTERS:
            out.append(f"# HELP {metric} {help_text}\n# TYPE {metric} counter")
            out += [f"{metric}{{{lab}}} {value:.0f}" for lab, value in zip(labels, values[column][seen].tolist())]
        if node.steps:
            k = self.topo.cards_per_node
            ranks = node.steps["rank"].tolist()
            step_labels = [f'training_job="{node.job}",rank="{rank}",Hostname="{name}",gpu="{rank % k}"'
                           for rank in ranks]  # `job` would clash with Prometheus's own target label
            compute, wait = node.steps["compute_s"].astype(float), node.steps["wait_s"].astype(float)
            out.append("# HELP train_step_compute_seconds Compute time of the rank's last step.\n"
                       "# TYPE train_step_compute_seconds gauge")
            out += [f"train_step_compute_seconds{{{lab}}} {v:.4f}" for lab, v in zip(step_labels, compute.tolist())]
            out.append("# HELP train_step_seconds Wall time of the rank's last step.\n# TYPE train_step_seconds gauge")
            out += [f"train_step_seconds{{{lab}}} {v:.4f}" for lab, v in zip(step_labels, (compute + wait).tolist())]
        return "\n".join(out) + "\n"

    def _switch_text(self, name: str, switch: SwitchState) -> str:
        ports, aliases = switch.ports, self._aliases[name]
        labels = [f'ifIndex="{p + 1}",ifName="swp{p + 1}",ifAlias="{aliases[p] if p < len(aliases) else ""}"'
                  for p in ports["port"].tolist()]
        out = ["# HELP ifOperStatus The current operational state of the interface.\n# TYPE ifOperStatus gauge"]
        out += [f"ifOperStatus{{{lab}}} {1 if up == 1 else 2}" for lab, up in zip(labels, ports["oper_up"].tolist())]
        for metric, column in PORT_COUNTERS:
            out.append(f"# TYPE {metric} counter")
            out += [f"{metric}{{{lab}}} {value}" for lab, value in zip(labels, ports[column].tolist())]
        return "\n".join(out) + "\n"


def _uuid(node: str, card: int) -> str:
    h = hashlib.md5(f"{node}/{card}".encode()).hexdigest()
    return f"GPU-{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


class ExporterServer(ThreadingHTTPServer):
    """Serves `/node/<name>` and `/switch/<name>`; 503 for a silent target, 404 for an unknown one."""

    daemon_threads = True
    request_queue_size = 256

    def handle_error(self, request, client_address) -> None:  # noqa: ANN001
        if not isinstance(sys.exc_info()[1], (ConnectionError, BrokenPipeError)):
            super().handle_error(request, client_address)  # a bug in rendering: say so
        # else a scraper that hung up (Prometheus stopping): nothing to report

    def __init__(self, exporters: ClusterExporters, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__((host, port), _Handler)
        self.exporters = exporters

    @property
    def address(self) -> str:
        host, port = self.server_address[:2]
        return f"{host}:{port}"


class _Handler(BaseHTTPRequestHandler):
    server: ExporterServer
    protocol_version = "HTTP/1.1"  # Prometheus keeps its connections open

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        _, kind, name = (self.path.split("?", 1)[0].split("/") + ["", ""])[:3]
        known = name in (self.server.exporters.nodes if kind == "node" else self.server.exporters.switches
                         if kind == "switch" else ())
        body = self.server.exporters.scrape(kind, name) if known else None
        status = 200 if body is not None else 503 if known else 404
        body = body if body is not None else b"target down\n"
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass
