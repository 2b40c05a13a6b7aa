"""Silence is a signal: a node or switch that stops reporting while its peers go on is down.

Silence is judged against the stream's own clock (the newest sample time seen on the same stream,
e.g. the same Kafka partition), never the wall clock: replaying at any speed gives the same
alerts. The clock counts only time the stream was flowing: a gap in the whole stream (a stalled
producer, a paused exporter) advances it by at most half the silence threshold, so nothing is
declared dead because everything paused.
"""

from __future__ import annotations

import numpy as np

from pipeline.alerts import AlertBook
from pipeline.schemas import Alert, Batch
from pipeline.settings import SilenceSettings
from pipeline.topology import Topology


class SilenceTracker:
    """Last report time per entity and a watermark per stream; finds entities that went quiet."""

    def __init__(self, entities: int, silence_s: float, recovery_s: float) -> None:
        self.silence_ms = int(silence_s * 1000)
        self.recovery_ms = int(recovery_s * 1000)
        self.last_ms = np.full(entities, -1, np.int64)  # sample time of the last report
        self.last_flow = np.full(entities, -1, np.int64)  # the stream's flow clock at that report
        self.stream = np.full(entities, -1, np.int64)
        self.down = np.zeros(entities, bool)
        self.back_since_ms = np.full(entities, -1, np.int64)
        self.watermark: dict[int, int] = {}
        self.flow: dict[int, int] = {}  # per stream: milliseconds the stream has been flowing
        self._checked: dict[int, int] = {}

    def seen(self, index: int, ts_ms: int, stream: int) -> bool:
        """Record a report; True if a down entity has now reported for `recovery_s`."""
        if ts_ms <= self.last_ms[index]:
            return False
        self.advance_clock(stream, ts_ms)
        self.last_ms[index] = ts_ms
        self.last_flow[index] = self.flow[stream]
        self.stream[index] = stream
        if not self.down[index]:
            return False
        if self.back_since_ms[index] < 0:
            self.back_since_ms[index] = ts_ms
        if ts_ms - self.back_since_ms[index] >= self.recovery_ms:
            self.down[index] = False
            self.back_since_ms[index] = -1
            return True
        return False

    def advance_clock(self, stream: int, ts_ms: int) -> bool:
        """Move the stream's clocks; False if `ts_ms` is not newer than the stream's watermark."""
        previous = self.watermark.get(stream)
        if previous is not None and ts_ms <= previous:
            return False
        step = 0 if previous is None else min(ts_ms - previous, max(self.silence_ms // 2, 1))
        self.watermark[stream] = ts_ms
        self.flow[stream] = self.flow.get(stream, 0) + step
        return True

    def advance(self, stream: int, ts_ms: int) -> np.ndarray:
        """Move the stream's clock; return the entities of that stream that have just gone silent."""
        self.advance_clock(stream, ts_ms)
        flow = self.flow.get(stream, 0)
        if self._checked.get(stream) == flow:
            return np.zeros(0, np.intp)  # the clock has not moved since the last check
        self._checked[stream] = flow
        silent = ((self.stream == stream) & (self.last_ms >= 0) & ~self.down
                  & (flow - self.last_flow >= self.silence_ms))
        found = np.flatnonzero(silent)
        self.down[found] = True
        self.back_since_ms[found] = -1
        return found


class NodeDownDetector:
    """`node_down`: a node's card batches stop while other nodes on the same stream report."""

    KIND = "node_down"

    def __init__(self, topology: Topology, settings: SilenceSettings | None = None) -> None:
        self.topo = topology
        self.settings = settings or SilenceSettings()
        self.tracker = SilenceTracker(topology.nodes, self.settings.silence_s, self.settings.recovery_s)
        self.book = AlertBook()

    multi_source = True  # a collector's batch: each of its nodes has reported

    def push(self, batch: Batch, stream: int = 0) -> list[Alert]:
        sources = [batch.source] if batch.parts is None else [source for source, _ in batch.parts]
        out: list[Alert] = []
        for source in sources:
            out += self._seen(source, batch.ts_ms, stream)
        return out

    def _seen(self, source: str, ts_ms: int, stream: int) -> list[Alert]:
        node = self.topo.node_index(source)
        out: list[Alert] = []
        if self.tracker.seen(node, ts_ms, stream):
            alert = self.book.resolve(self.KIND, source, ts_ms,
                                      reason=f"reporting again for {self.settings.recovery_s:g} s")
            if alert:
                out.append(alert)
        for index in self.tracker.advance(stream, ts_ms).tolist():
            name = self.topo.node_name(index)
            silent_s = (ts_ms - self.tracker.last_ms[index]) / 1000
            alert = self.book.fire(
                self.KIND, name, ts_ms, severity="critical",
                summary=f"{name} down: no telemetry from any of its {self.topo.cards_per_node} cards for "
                        f"{silent_s:.0f} s while other nodes report",
                labels={"node": name},
                evidence={"silent_s": silent_s, "silence_threshold_s": self.settings.silence_s,
                          "last_report": int(self.tracker.last_ms[index])})
            if alert:
                out.append(alert)
        return out


class SwitchDownDetector:
    """`switch_down`: a switch stops reporting while others report, or reports every port down."""

    KIND = "switch_down"

    def __init__(self, topology: Topology, settings: SilenceSettings | None = None) -> None:
        self.topo = topology
        self.settings = settings or SilenceSettings()
        self.names = topology.switch_names
        self.index = {name: i for i, name in enumerate(self.names)}
        self.tracker = SilenceTracker(len(self.names), self.settings.silence_s, self.settings.recovery_s)
        self.book = AlertBook()
        self._unused: dict[str, int] = {}

    def _unused_ports(self, switch: str) -> int:
        """Leaf host ports with no node behind them (the last leaf of a rail may be partly empty)."""
        found = self._unused.get(switch)
        if found is None:
            found = self._unused[switch] = sum(
                1 for p in range(self.topo.switch_ports(switch)) if self.topo.port_link(switch, p) is None)
        return found

    def _fire(self, index: int, ts_ms: int, why: str, evidence: dict) -> Alert | None:
        name = self.names[index]
        return self.book.fire(self.KIND, name, ts_ms, severity="critical", summary=f"{name} down: {why}",
                              labels={"switch": name}, evidence=evidence)

    multi_source = True  # a collector's batch: each of its switches, from its slice of the rows

    def push(self, batch: Batch, stream: int = 0) -> list[Alert]:
        parts = [(batch.source, batch.rows())] if batch.parts is None else \
            [(source, counts["rows"]) for source, counts in batch.parts]
        oper_all = batch.columns["oper_up"]
        out: list[Alert] = []
        start = 0
        for source, rows in parts:
            out += self._report(source, oper_all[start:start + rows], batch.ts_ms, stream)
            start += rows
        return out

    def _report(self, source: str, oper: np.ndarray, ts_ms: int, stream: int) -> list[Alert]:
        index = self.index[source]
        out: list[Alert] = []
        if len(oper) < self.topo.switch_ports(source) - self._unused_ports(source):
            return out  # a partial report (e.g. one host's NIC counters) says nothing about the switch
        all_down = len(oper) > 0 and not oper.any()
        if self.tracker.seen(index, ts_ms, stream) and not all_down:
            alert = self.book.resolve(self.KIND, source, ts_ms,
                                      reason=f"reporting again for {self.settings.recovery_s:g} s")
            if alert:
                out.append(alert)
        if all_down and not self.tracker.down[index]:
            self.tracker.down[index] = True
            self.tracker.back_since_ms[index] = -1
            alert = self._fire(index, ts_ms, f"all {len(oper)} ports report down",
                               {"ports_down": int(len(oper))})
            if alert:
                out.append(alert)
        for silent in self.tracker.advance(stream, ts_ms).tolist():
            silent_s = (ts_ms - self.tracker.last_ms[silent]) / 1000
            alert = self._fire(silent, ts_ms, f"no telemetry for {silent_s:.0f} s while other switches report",
                               {"silent_s": silent_s, "silence_threshold_s": self.settings.silence_s,
                                "last_report": int(self.tracker.last_ms[silent])})
            if alert:
                out.append(alert)
        return out
