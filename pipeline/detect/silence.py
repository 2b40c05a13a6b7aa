"""Silence is a signal: a node or switch that stops reporting while its peers go on is down.

Silence is judged against the stream's own clock (the newest sample time seen on the same stream,
e.g. the same Kafka partition), never the wall clock: replaying at any speed gives the same
alerts. The clock counts only time the stream was flowing: a gap in the whole stream (a stalled
producer, a paused exporter) advances it by at most half the silence threshold, so nothing is
declared dead because everything paused.

Each entity is judged against its own cadence: silent once it has missed `missed_reports` of its
own reports in a row, and never sooner than `silence_s` (a switch scraped every 10 s beside nodes
scraped every second is not down after 3 s). A collector's round that runs late moves every
source's clock with it, so it looks like nothing.

A collector that could not reach a source says so (`Batch.unreachable`): that is not silence but a
finding marked `unreachable`, which the correlator pages as the node or switch down only when the
fabric agrees (the links whose other ends see it are down); an exporter that does not answer on a
host that is up pages nothing.
"""

from __future__ import annotations

import numpy as np

from pipeline.detect.alert_book import AlertBook
from pipeline.model.schemas import Alert, Batch
from pipeline.settings import SilenceSettings
from pipeline.topology.protocol import ClusterTopology


class SilenceTracker:
    """Last report time per entity and a watermark per stream; finds entities that went quiet."""

    def __init__(self, entities: int, silence_s: float, recovery_s: float, missed_reports: int = 3) -> None:
        self.silence_ms = int(silence_s * 1000)
        self.recovery_ms = int(recovery_s * 1000)
        self.missed_reports = missed_reports
        self.last_ms = np.full(entities, -1, np.int64)  # sample time of the last report
        self.last_flow = np.full(entities, -1, np.int64)  # the stream's flow clock at that report
        # flow time between an entity's reports (0: not known yet), smoothed so that one missed
        # report does not double it
        self.cadence = np.zeros(entities, np.int64)
        self.stream = np.full(entities, -1, np.int64)
        self.down = np.zeros(entities, bool)
        self.back_since_ms = np.full(entities, -1, np.int64)
        self.watermark: dict[int, int] = {}
        self.flow: dict[int, int] = {}  # per stream: milliseconds the stream has been flowing
        self._checked: dict[int, int] = {}

    def seen_many(self, indices: np.ndarray, ts_ms: int, stream: int, back: bool = True) -> np.ndarray:
        """Record reports of these entities at one sample time; return those that were down and have
        now reported for `recovery_s`. With `back=False` (e.g. a switch reporting every port down)
        the report counts against silence but not towards recovery."""
        fresh = indices[ts_ms > self.last_ms[indices]]
        if len(fresh) == 0:
            return fresh
        self.advance_clock(stream, ts_ms)
        flow = self.flow[stream]
        steady = fresh[(self.last_flow[fresh] >= 0) & ~self.down[fresh] & (self.stream[fresh] == stream)]
        gap = flow - self.last_flow[steady]
        known = self.cadence[steady]
        self.cadence[steady] = np.where((known == 0) | (gap <= known), gap, (known + gap) // 2)
        self.last_ms[fresh] = ts_ms
        self.last_flow[fresh] = flow
        self.stream[fresh] = stream
        returning = fresh[self.down[fresh]]
        if not back:
            self.back_since_ms[returning] = -1
            return returning[:0]
        if len(returning) == 0:
            return returning
        since = self.back_since_ms[returning]
        self.back_since_ms[returning] = np.where(since < 0, ts_ms, since)
        recovered = returning[ts_ms - self.back_since_ms[returning] >= self.recovery_ms]
        self.down[recovered] = False
        self.back_since_ms[recovered] = -1
        return recovered

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
        allowed = np.maximum(self.silence_ms, self.missed_reports * self.cadence)
        silent = (
            (self.stream == stream)
            & (self.last_ms >= 0)
            & ~self.down
            & (self.cadence > 0)
            & (flow - self.last_flow >= allowed)
        )
        found = np.flatnonzero(silent)
        self.down[found] = True
        self.back_since_ms[found] = -1
        return found


class NodeDownDetector:
    """`node_down`: a node's card batches stop while other nodes on the same stream report."""

    KIND = "node_down"

    def __init__(self, topology: ClusterTopology, settings: SilenceSettings | None = None) -> None:
        self.topo = topology
        self.settings = settings or SilenceSettings()
        self.tracker = SilenceTracker(
            topology.nodes, self.settings.silence_s, self.settings.recovery_s, self.settings.missed_reports
        )
        self.book = AlertBook()

    multi_source = True  # a collector's batch: each of its nodes has reported
    judges_unreachable = True  # ... or could not be reached

    def push(self, batch: Batch, stream: int = 0) -> list[Alert]:
        gone = set(batch.unreachable)
        sources = [batch.source] if batch.parts is None else [source for source, _ in batch.parts if source not in gone]
        nodes = np.fromiter((self.topo.node_index(source) for source in sources), np.intp, len(sources))
        ts_ms = batch.ts_ms
        out: list[Alert] = []
        for name in batch.unreachable:
            alert = _unreachable(
                self.tracker,
                self.book,
                self.KIND,
                name,
                self.topo.node_index(name),
                ts_ms,
                batch.source,
                {"node": name},
            )
            if alert:
                out.append(alert)
        for node in self.tracker.seen_many(nodes, ts_ms, stream).tolist():
            alert = self.book.resolve(
                self.KIND,
                self.topo.node_name(node),
                ts_ms,
                reason=f"reporting again for {self.settings.recovery_s:g} s",
            )
            if alert:
                out.append(alert)
        for index in self.tracker.advance(stream, ts_ms).tolist():
            name = self.topo.node_name(index)
            silent_s = (ts_ms - self.tracker.last_ms[index]) / 1000
            alert = self.book.fire(
                self.KIND,
                name,
                ts_ms,
                severity="critical",
                summary=f"{name} down: no telemetry from any of its {self.topo.cards_per_node} cards for "
                f"{silent_s:.0f} s while other nodes report",
                labels={"node": name},
                evidence={
                    "silent_s": silent_s,
                    "silence_threshold_s": self.settings.silence_s,
                    "last_report": int(self.tracker.last_ms[index]),
                },
            )
            if alert:
                out.append(alert)
        return out


class SwitchDownDetector:
    """`switch_down`: a switch stops reporting while others report, or reports every port down."""

    KIND = "switch_down"

    def __init__(self, topology: ClusterTopology, settings: SilenceSettings | None = None) -> None:
        self.topo = topology
        self.settings = settings or SilenceSettings()
        self.names = topology.switch_names
        self.index = {name: i for i, name in enumerate(self.names)}
        self.tracker = SilenceTracker(
            len(self.names), self.settings.silence_s, self.settings.recovery_s, self.settings.missed_reports
        )
        self.book = AlertBook()
        self._complete: dict[str, int] = {}  # switch -> rows in a whole report of it

    def _complete_rows(self, switch: str) -> int:
        """Rows a whole report of the switch has: its ports less leaf host ports with no node behind
        them (the last leaf of a rail may be partly empty)."""
        found = self._complete.get(switch)
        if found is None:
            ports = self.topo.switch_ports(switch)
            found = self._complete[switch] = ports - sum(
                1 for p in range(ports) if self.topo.port_link(switch, p) is None
            )
        return found

    def _fire(self, index: int, ts_ms: int, why: str, evidence: dict) -> Alert | None:
        name = self.names[index]
        return self.book.fire(
            self.KIND,
            name,
            ts_ms,
            severity="critical",
            summary=f"{name} down: {why}",
            labels={"switch": name},
            evidence=evidence,
        )

    multi_source = True  # a collector's batch: each of its switches, from its slice of the rows
    judges_unreachable = True  # ... or that it could not reach

    def push(self, batch: Batch, stream: int = 0) -> list[Alert]:
        out: list[Alert] = []
        for name in batch.unreachable:
            if name in self.index:
                alert = _unreachable(
                    self.tracker,
                    self.book,
                    self.KIND,
                    name,
                    self.index[name],
                    batch.ts_ms,
                    batch.source,
                    {"switch": name},
                )
                if alert:
                    out.append(alert)
        reachable = batch.reachable()
        if reachable is None:
            return out
        return out + self._push(reachable, stream)

    def _push(self, batch: Batch, stream: int) -> list[Alert]:
        parts = (
            [(batch.source, batch.rows())]
            if batch.parts is None
            else [(source, counts["rows"]) for source, counts in batch.parts]
        )
        if any(source not in self.index for source, _ in parts):  # hosts' NIC reports: not about a switch
            if all(source not in self.index for source, _ in parts):
                return []
            keep = np.array([source in self.index for source, _ in parts])
            batch = _only_switches(batch, parts, keep)
            parts = [part for part, k in zip(parts, keep) if k]
        ts_ms = batch.ts_ms
        rows = np.fromiter((n for _, n in parts), np.int64, len(parts))
        whole = rows >= np.fromiter((self._complete_rows(s) for s, _ in parts), np.int64, len(parts))
        up = (np.asarray(batch.columns["oper_up"]) == 1).astype(np.int64)
        ends = np.cumsum(rows)
        running = np.concatenate([[0], np.cumsum(up)])
        ports_up = running[ends] - running[ends - rows]
        all_down = whole & (rows > 0) & (ports_up == 0)
        # a partial report (e.g. one host's NIC counters) says nothing about the switch
        index = np.fromiter((self.index[s] for s, _ in parts), np.intp, len(parts))
        out: list[Alert] = []
        for i in self.tracker.seen_many(index[whole & ~all_down], ts_ms, stream).tolist():
            alert = self.book.resolve(
                self.KIND, self.names[i], ts_ms, reason=f"reporting again for {self.settings.recovery_s:g} s"
            )
            if alert:
                out.append(alert)
        self.tracker.seen_many(index[all_down], ts_ms, stream, back=False)
        for i, n in zip(index[all_down].tolist(), rows[all_down].tolist()):
            if not self.tracker.down[i]:
                self.tracker.down[i] = True
                self.tracker.back_since_ms[i] = -1
                alert = self._fire(i, ts_ms, f"all {n} ports report down", {"ports_down": n})
                if alert:
                    out.append(alert)
        for silent in self.tracker.advance(stream, ts_ms).tolist():
            silent_s = (ts_ms - self.tracker.last_ms[silent]) / 1000
            alert = self._fire(
                silent,
                ts_ms,
                f"no telemetry for {silent_s:.0f} s while other switches report",
                {
                    "silent_s": silent_s,
                    "silence_threshold_s": self.settings.silence_s,
                    "last_report": int(self.tracker.last_ms[silent]),
                },
            )
            if alert:
                out.append(alert)
        return out


def _unreachable(
    tracker: SilenceTracker,
    book: AlertBook,
    kind: str,
    name: str,
    index: int,
    ts_ms: int,
    collector: str,
    labels: dict[str, str],
) -> Alert | None:
    """A finding for a source its collector could not reach (once, until it reports again for
    `recovery_s`): marked `unreachable`, for the correlator to page only when the fabric agrees."""
    if tracker.down[index]:
        tracker.back_since_ms[index] = -1  # not back yet
        return None
    tracker.down[index] = True
    tracker.back_since_ms[index] = -1
    return book.fire(
        kind,
        name,
        ts_ms,
        severity="critical",
        summary=f"{name} down: its exporter does not answer ({collector}) and the fabric sees it down",
        labels=labels,
        evidence={"unreachable": True, "collector": collector, "last_report": int(tracker.last_ms[index])},
    )


def _only_switches(batch: Batch, parts: list[tuple[str, int]], keep: np.ndarray) -> Batch:
    """The rows of a mixed port batch that come from switches (hosts report their NICs too)."""
    counts = np.array([n for _, n in parts], np.int64)
    rows = np.repeat(keep, counts)
    columns = {"oper_up": np.asarray(batch.columns["oper_up"])[rows]}
    return Batch(
        batch.kind, batch.source, batch.ts_ms, columns, batch.job, [p for p, k in zip(batch.parts or [], keep) if k]
    )
