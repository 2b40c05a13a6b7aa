"""The simulated cluster served as the exporters operators run, for a collector or a Prometheus.

Every node is a dcgm-exporter target (`DCGM_FI_*` per GPU, labels as dcgm-exporter 3.x writes them)
that also carries the training job's per-rank step metrics, and every switch an snmp_exporter
`if_mib` target (`ifOperStatus`, `ifHCInOctets`, `ifHCOutOctets`, `ifInErrors`, `ifInDiscards` per
port, `ifAlias` naming the far end as a cabling description does). The state comes from the very
batches the simulator produces, so a served fleet and the simulator's own Kafka path see the same
cluster. A node or switch that has sent nothing for more than `silent_after` ticks answers 503, as
a dead host's exporter answers nothing: Prometheus records `up == 0`.

A card that stops reporting either disappears from its node's page, as a GPU that fell off the bus
does (`lost_cards="drop"`, what `clusterpulse simulate --serve-exporters` serves), or keeps its
last values, as DCGM's field cache serves them for a GPU that stopped answering (`"keep"`, what
bench/peer gives the incumbent: a lost card's last XID stays visible).

Two ways to serve it: `ExporterServer` (one port, `/node/<name>` and `/switch/<name>`, threads:
bench/peer's Prometheus) and `FleetServer` (asyncio, every target on a port of its own at
`/metrics`, as a real fleet: node i at `port_base + i`, switch j at `port_base + nodes + j`), with
`write_scrape_config` writing the matching Prometheus `scrape_configs`.
"""

from __future__ import annotations

import hashlib
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

from pipeline.model.schemas import Batch
from pipeline.topology.synthetic import Topology

GPU_GAUGES = (
    ("DCGM_FI_DEV_GPU_UTIL", "util", "GPU utilization (in %)."),
    ("DCGM_FI_DEV_SM_CLOCK", "sm_clock_mhz", "SM clock frequency (in MHz)."),
    ("DCGM_FI_DEV_POWER_USAGE", "power_w", "Power draw (in W)."),
    ("DCGM_FI_DEV_GPU_TEMP", "temp_c", "GPU temperature (in C)."),
    ("DCGM_FI_DEV_FB_USED", "mem_used_mib", "Framebuffer memory used (in MiB)."),
)
GPU_COUNTERS = (
    ("DCGM_FI_DEV_ECC_SBE_VOL_TOTAL", "ecc_sbe", "Total number of single-bit volatile ECC errors."),
    ("DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", "ecc_dbe", "Total number of double-bit volatile ECC errors."),
    ("DCGM_FI_DEV_PCIE_REPLAY_COUNTER", "pcie_replay", "Total number of PCIe retries."),
)
PORT_COUNTERS = (
    ("ifHCInOctets", "rx_bytes"),
    ("ifHCOutOctets", "tx_bytes"),
    ("ifInErrors", "crc_errors"),
    ("ifInDiscards", "drops"),
)
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

    def __init__(self, topology: Topology, silent_after: int = 3, lost_cards: str = "keep") -> None:
        if lost_cards not in ("keep", "drop"):
            raise ValueError(f"lost_cards is 'keep' or 'drop', not {lost_cards!r}")
        self.topo = topology
        self.silent_after = silent_after
        self.drop_lost_cards = lost_cards == "drop"
        self.tick = 0
        self.nodes: dict[str, NodeState] = {name: NodeState() for name in topology.node_names}
        self.node_index = {name: i for i, name in enumerate(topology.node_names)}
        shape = (topology.nodes, topology.cards_per_node)
        self.node_tick = np.full(topology.nodes, -1, np.int64)
        self.node_ts = np.full(topology.nodes, -1, np.int64)
        # each card's last value per column (NaN: never reported)
        self.card_values = {c: np.full(shape, np.nan) for _, c, _ in GPU_GAUGES + GPU_COUNTERS}
        self.card_tick = np.full(shape, -1, np.int64)  # the tick of each card's last row
        self.switches: dict[str, SwitchState] = {name: SwitchState() for name in topology.switch_names}
        self._aliases = {
            name: [self._alias(name, p) for p in range(topology.switch_ports(name))] for name in topology.switch_names
        }
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
        if self.drop_lost_cards:  # a report without rows is the simulator's missed sample: no news
            fresh &= rows > 0
        self.node_tick[index[fresh]], self.node_ts[index[fresh]] = self.tick, batch.ts_ms
        keep = np.repeat(fresh, rows)
        row_nodes, cards = np.repeat(index, rows)[keep], batch.columns["card"][keep].astype(np.int64)
        for column, values in self.card_values.items():
            values[row_nodes, cards] = batch.columns[column][keep]
        self.card_tick[row_nodes, cards] = self.tick
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
                switch.ports = {name: np.array(col[row : row + rows]) for name, col in batch.columns.items()}
            row += rows

    def _apply_steps(self, batch: Batch) -> None:
        row = 0
        for source, counts in self._sources(batch):
            rows = counts.get("rows", 0)
            node = self.nodes.get(source)
            if node is not None and batch.ts_ms >= node.step_ts:
                node.job, node.step_ts = batch.job, batch.ts_ms
                node.steps = {n: col[row : row + rows] for n, col in batch.columns.items()}
            row += rows

    # ---- exposition ----------------------------------------------------------------------------
    def scrape(self, kind: str, name: str) -> bytes | None:
        """The target's exposition text, or None if it is silent (dead) or unknown."""
        with self._lock:
            state: NodeState | SwitchState
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
            # a NodeState exactly when kind == "node"
            text = (
                self._node_text(name, state) if isinstance(state, NodeState) else self._switch_text(name, state)
            ).encode()
            self._cache[name] = (self.tick, text)
            return text

    def _node_text(self, name: str, node: NodeState) -> str:
        out: list[str] = []
        index = self.node_index[name]
        values = {c: v[index] for c, v in self.card_values.items()}
        if self.drop_lost_cards:  # only the cards of the node's last report
            seen = np.flatnonzero(self.card_tick[index] == self.node_tick[index])
        else:
            seen = np.flatnonzero(~np.isnan(values["util"]))
        cards = seen.tolist()
        labels = [
            f'gpu="{card}",UUID="{_uuid(name, card)}",device="nvidia{card}",modelName="{MODEL}",Hostname="{name}"'
            for card in cards
        ]
        for metric, column, help_text in GPU_GAUGES:
            out.append(f"# HELP {metric} {help_text}\n# TYPE {metric} gauge")
            out += [f"{metric}{{{lab}}} {value:.3f}" for lab, value in zip(labels, values[column][seen].tolist())]
        out.append(
            "# HELP DCGM_FI_DEV_XID_ERRORS Value of the last XID error encountered.\n"
            "# TYPE DCGM_FI_DEV_XID_ERRORS gauge"
        )
        out += [f"DCGM_FI_DEV_XID_ERRORS{{{lab}}} {node.xid.get(card, (0, 0))[1]}" for lab, card in zip(labels, cards)]
        for metric, column, help_text in GPU_COUNTERS:
            out.append(f"# HELP {metric} {help_text}\n# TYPE {metric} counter")
            out += [f"{metric}{{{lab}}} {value:.0f}" for lab, value in zip(labels, values[column][seen].tolist())]
        if node.steps and not self.drop_lost_cards:  # the incumbent's slow-rank rule reads them (bench/peer)
            k = self.topo.cards_per_node
            ranks = node.steps["rank"].tolist()
            step_labels = [
                f'training_job="{node.job}",rank="{rank}",Hostname="{name}",gpu="{rank % k}"' for rank in ranks
            ]  # `job` would clash with Prometheus's own target label
            compute, wait = node.steps["compute_s"].astype(float), node.steps["wait_s"].astype(float)
            out.append(
                "# HELP train_step_compute_seconds Compute time of the rank's last step.\n"
                "# TYPE train_step_compute_seconds gauge"
            )
            out += [f"train_step_compute_seconds{{{lab}}} {v:.4f}" for lab, v in zip(step_labels, compute.tolist())]
            out.append("# HELP train_step_seconds Wall time of the rank's last step.\n# TYPE train_step_seconds gauge")
            out += [f"train_step_seconds{{{lab}}} {v:.4f}" for lab, v in zip(step_labels, (compute + wait).tolist())]
        return "\n".join(out) + "\n"

    def _switch_text(self, name: str, switch: SwitchState) -> str:
        ports, aliases = switch.ports, self._aliases[name]
        labels = [
            f'ifIndex="{p + 1}",ifName="swp{p + 1}",ifAlias="{aliases[p] if p < len(aliases) else ""}"'
            for p in ports["port"].tolist()
        ]
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
        assert isinstance(host, str)  # an AF_INET server: (host, port), never a unix socket's bytes path
        return f"{host}:{port}"


class _Handler(BaseHTTPRequestHandler):
    server: ExporterServer
    protocol_version = "HTTP/1.1"  # Prometheus keeps its connections open

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        _, kind, name = (self.path.split("?", 1)[0].split("/") + ["", ""])[:3]
        known = name in (
            self.server.exporters.nodes
            if kind == "node"
            else self.server.exporters.switches
            if kind == "switch"
            else ()
        )
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


class FleetServer:
    """Every node and switch on a port of its own (`/metrics`), as a fleet of exporters: node i at
    `port_base + i`, switch j at `port_base + nodes + j`. asyncio: one process serves thousands of
    targets. A silent target answers 503; any other path 404."""

    def __init__(self, exporters: ClusterExporters, host: str = "127.0.0.1", port_base: int = 19000) -> None:
        self.exporters = exporters
        self.host = host
        self.port_base = port_base
        topo = exporters.topo
        self.targets: list[tuple[str, str]] = [("node", n) for n in topo.node_names] + [
            ("switch", s) for s in topo.switch_names
        ]
        self._servers: list = []
        self.scrapes = 0

    def address(self, index: int) -> str:
        return f"{self.host}:{self.port_base + index}"

    def node_targets(self) -> list[tuple[str, str]]:
        """(address, node name) of every node target."""
        return [(self.address(i), name) for i, (kind, name) in enumerate(self.targets) if kind == "node"]

    def switch_targets(self) -> list[tuple[str, str]]:
        """(address, switch name) of every switch target."""
        return [(self.address(i), name) for i, (kind, name) in enumerate(self.targets) if kind == "switch"]

    async def start(self) -> None:
        """Bind every target's port; OSError (with the port) if one is taken."""
        import asyncio

        from aiohttp import web_server

        loop = asyncio.get_running_loop()
        server = web_server.Server(self._handle, access_log=None)
        for index in range(len(self.targets)):
            port = self.port_base + index
            try:
                self._servers.append(await loop.create_server(server, self.host, port, backlog=64))
            except OSError as exc:
                await self.stop()
                raise OSError(
                    f"cannot serve target {self.targets[index][1]} on {self.host}:{port}: {exc.strerror or exc}"
                ) from None

    async def stop(self) -> None:
        for server in self._servers:
            server.close()
        for server in self._servers:
            await server.wait_closed()
        self._servers = []

    async def _handle(self, request):  # noqa: ANN001, ANN202 (aiohttp's low-level handler)
        from aiohttp import web

        port = request.transport.get_extra_info("sockname")[1] if request.transport else -1
        index = port - self.port_base
        if request.path != "/metrics" or not 0 <= index < len(self.targets):
            return web.Response(status=404, text="not found: the metrics are at /metrics\n")
        kind, name = self.targets[index]
        body = self.exporters.scrape(kind, name)
        self.scrapes += 1
        if body is None:
            return web.Response(status=503, text="target down\n")
        return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4"})


def write_scrape_config(
    path: str, fleet: FleetServer, node_interval_s: float = 1.0, switch_interval_s: float = 10.0
) -> None:
    """Prometheus `scrape_configs` for the served fleet: job `gpu` (every node, label `node`) and job
    `switch` (every switch, label `switch`): what `clusterpulse collect --config` and a Prometheus
    take as they are."""
    import yaml

    def job(name: str, interval: float, targets: list[tuple[str, str]], label: str) -> dict:
        return {
            "job_name": name,
            "scrape_interval": f"{interval:g}s",
            "scrape_timeout": f"{min(interval, 10.0):g}s",
            "static_configs": [{"targets": [address], "labels": {label: entity}} for address, entity in targets],
        }

    text = (
        "# The fleet `clusterpulse simulate --serve-exporters` serves: Prometheus scrape_configs.\n"
        + yaml.safe_dump(
            {
                "scrape_configs": [
                    job("gpu", node_interval_s, fleet.node_targets(), "node"),
                    job("switch", switch_interval_s, fleet.switch_targets(), "switch"),
                ]
            },
            sort_keys=False,
            default_flow_style=None,
            width=200,
        )
    )
    with open(path, "w") as fh:
        fh.write(text)


def serve(
    simulator,
    fleet: FleetServer,
    speed: float | None,
    stop: threading.Event,  # noqa: ANN001
    say=print,
) -> dict[str, float]:  # noqa: ANN001
    """Run the simulator at `speed` into the served fleet until its scenario ends, then keep serving
    its last state, until `stop` is set. Returns how many ticks were simulated and pages served."""
    import asyncio

    from pipeline.model.schemas import decode_batch
    from producers.output import Pacer

    done = {"ticks": 0}
    pacer = Pacer(speed)

    def feed() -> None:
        for ts_ms, messages in simulator.ticks():
            if stop.is_set():
                return
            pacer.wait_until(ts_ms)
            fleet.exporters.apply([decode_batch(m.value) for m in messages])
            done["ticks"] += 1
        say("clusterpulse: the scenario has ended; serving its last state until stopped")

    async def main() -> None:
        await fleet.start()
        feeder = threading.Thread(target=feed, name="simulator", daemon=True)
        feeder.start()
        try:
            while not stop.is_set():
                await asyncio.sleep(0.1)
        finally:
            await fleet.stop()

    try:
        import uvloop
    except ImportError:
        asyncio.run(main())
    else:
        uvloop.run(main())
    return {"ticks": done["ticks"], "scrapes": fleet.scrapes}


def free_port_block(count: int, host: str = "127.0.0.1", tries: int = 50) -> int:
    """The first of `count` consecutive ports free on `host` now (below the ephemeral range, so the
    system does not hand them out meanwhile), for a fleet in a test or a benchmark."""
    import random
    import socket

    for _ in range(tries):
        base = random.randrange(10_000, 32_000 - count)
        sockets = []
        try:
            for port in range(base, base + count):
                sock = socket.socket()
                sockets.append(sock)
                sock.bind((host, port))
            return base
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise OSError(f"no {count} consecutive free ports on {host}")
