"""Link health from one switch's port batches: `link_down`, `link_flapping`, `link_degraded`.

Counters are monotonic, as exporters report them; the detector takes per-sample increments and
treats a counter below its previous value as a reset (a new baseline, not an error). Degradation
needs errors in several samples of a window (one burst or one stray CRC error does not fire) and
resolves only after a long error-free run (hysteresis, so it does not flap).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pipeline.alerts import AlertBook
from pipeline.schemas import Alert, Batch
from pipeline.settings import LinkSettings
from pipeline.topology import Topology

ERROR_COUNTERS = ("crc_errors", "symbol_errors")
EVIDENCE_COUNTERS = ("fec_corrected", "drops")


COUNTERS = ERROR_COUNTERS + EVIDENCE_COUNTERS


@dataclass
class _SwitchState:
    links: list[str | None]
    last_ms: int = -1
    prev: np.ndarray | None = None  # (len(COUNTERS), ports) last counter values, -1: none yet
    oper: np.ndarray | None = None
    up_since_ms: np.ndarray | None = None
    down_times: list[list[int]] = field(default_factory=list)  # per port: times it went down
    errors: np.ndarray | None = None  # (window, ports) ring of error increments
    extra: np.ndarray | None = None  # (window, ports, len(EVIDENCE_COUNTERS))
    filled: int = 0
    clean_streak: np.ndarray | None = None
    window_total: np.ndarray | None = None  # errors in the window per port (kept as the ring turns)
    window_samples: np.ndarray | None = None  # samples with errors in the window per port


class LinkDetector:
    def __init__(self, topology: Topology, settings: LinkSettings | None = None) -> None:
        self.topo = topology
        self.settings = settings or LinkSettings()
        self.state: dict[str, _SwitchState] = {}
        self.book = AlertBook()
        self.degraded: set[str] = set()

    def _switch(self, name: str) -> _SwitchState:
        st = self.state.get(name)
        if st is None:
            ports = self.topo.switch_ports(name)
            st = self.state[name] = _SwitchState(links=[self.topo.port_link(name, p) for p in range(ports)])
            w = self.settings.error_window_samples
            st.oper = np.ones(ports, bool)
            st.up_since_ms = np.full(ports, -1, np.int64)
            st.down_times = [[] for _ in range(ports)]
            st.errors = np.zeros((w, ports), np.int64)
            st.extra = np.zeros((w, ports, len(EVIDENCE_COUNTERS)), np.int64)
            st.clean_streak = np.zeros(ports, np.int64)
            st.prev = np.full((len(COUNTERS), ports), -1, np.int64)
            st.window_total = np.zeros(ports, np.int64)
            st.window_samples = np.zeros(ports, np.int64)
        return st

    def push(self, batch: Batch, stream: int = 0) -> list[Alert]:
        st = self._switch(batch.source)
        ts = batch.ts_ms
        if ts <= st.last_ms:
            return []
        first = st.last_ms < 0
        st.last_ms = ts
        ports = batch.columns["port"].astype(np.intp)
        oper = batch.columns["oper_up"].astype(bool)
        out: list[Alert] = []
        out += self._status(batch.source, st, ports, oper, ts, first)
        out += self._errors(batch, st, ports, oper, ts)
        return out

    # ---- down and flapping -------------------------------------------------------------------
    def _status(self, switch: str, st: _SwitchState, ports: np.ndarray, oper: np.ndarray, ts: int,
                first: bool) -> list[Alert]:
        s = self.settings
        out: list[Alert] = []
        was_up = st.oper[ports]
        went_down = ports[~oper & (was_up | first)]
        came_up = ports[oper & ~was_up]
        st.oper[ports] = oper
        st.up_since_ms[came_up] = ts
        st.up_since_ms[ports[~oper]] = -1
        window_ms = int(s.flap_window_s * 1000)
        for port in went_down.tolist():
            link = st.links[port]
            if link is None:
                continue
            times = st.down_times[port]
            times.append(ts)
            while times and ts - times[0] > window_ms:
                times.pop(0)
            labels = self._labels(switch, link)
            if len(times) >= s.flap_transitions and not self.book.is_firing("link_flapping", link):
                alert = self.book.fire("link_flapping", link, ts, severity="warning",
                                       summary=f"{link} flapping: down {len(times)} times in {s.flap_window_s:g} s",
                                       labels=labels, evidence={"down_transitions": len(times),
                                                                "window_s": s.flap_window_s, "seen_by": switch})
                if alert:
                    out.append(alert)
                done = self.book.resolve("link_down", link, ts, reason="superseded by link_flapping")
                if done:
                    out.append(done)
            elif not self.book.is_firing("link_flapping", link):
                alert = self.book.fire("link_down", link, ts, severity="critical",
                                       summary=f"{link} down (port {port} of {switch} reports oper down)",
                                       labels=labels, evidence={"port": port, "seen_by": switch})
                if alert:
                    out.append(alert)
        hold_ms = int(s.down_resolve_s * 1000)
        since = st.up_since_ms[ports]
        for port in ports[oper & (since >= 0) & (ts - since >= hold_ms)].tolist():
            link = st.links[port]
            if link is None:
                continue
            for kind in ("link_down", "link_flapping"):
                if kind == "link_flapping" and ts - (st.down_times[port] or [ts])[-1] < window_ms:
                    continue
                done = self.book.resolve(kind, link, ts, reason=f"up for {(ts - st.up_since_ms[port]) / 1000:.0f} s")
                if done:
                    out.append(done)
        return out

    # ---- degradation -------------------------------------------------------------------------
    def _errors(self, batch: Batch, st: _SwitchState, ports: np.ndarray, oper: np.ndarray, ts: int) -> list[Alert]:
        s = self.settings
        values = np.stack([batch.columns[name] for name in COUNTERS]).astype(np.int64)
        before = st.prev[:, ports]
        # a counter below its previous value was reset (a reboot): a new baseline, not an error
        delta = np.where((before >= 0) & (values >= before), values - before, 0)
        st.prev[:, ports] = values
        increments = np.zeros(len(st.links), np.int64)
        increments[ports] = delta[:len(ERROR_COUNTERS)].sum(axis=0)
        extra = np.zeros((len(st.links), len(EVIDENCE_COUNTERS)), np.int64)
        extra[ports] = delta[len(ERROR_COUNTERS):].T
        increments[ports[~oper]] = 0  # a down link's errors are the down alert's business
        row = st.filled % s.error_window_samples
        leaving = st.errors[row]
        st.window_total += increments - leaving
        st.window_samples += (increments > 0).astype(np.int64) - (leaving > 0)
        st.errors[row] = increments
        st.extra[row] = extra
        st.filled += 1
        st.clean_streak = np.where(increments > 0, 0, st.clean_streak + 1)

        total, samples = st.window_total, st.window_samples
        bad = (total >= s.error_min_count) & (samples >= s.error_min_samples)
        out: list[Alert] = []
        window_s = s.error_window_samples * 1.0
        for port in np.flatnonzero(bad).tolist():
            link = st.links[port]
            if link is None or link in self.degraded:
                continue
            self.degraded.add(link)
            ev = st.extra.sum(axis=0)[port]
            alert = self.book.fire(
                "link_degraded", link, ts, severity="warning",
                summary=f"{link} degrading: {int(total[port])} CRC/symbol errors in {int(samples[port])} of the "
                        f"last {s.error_window_samples} samples (seen by {batch.source})",
                labels=self._labels(batch.source, link),
                evidence={"errors_in_window": int(total[port]), "samples_with_errors": int(samples[port]),
                          "window_samples": s.error_window_samples, "fec_corrected_in_window": int(ev[0]),
                          "drops_in_window": int(ev[1]), "error_min_count": s.error_min_count,
                          "seen_by": batch.source, "window_s_at_1hz": window_s})
            if alert:
                out.append(alert)
        clean = st.clean_streak >= s.error_clear_samples
        for port in np.flatnonzero(clean).tolist() if self.degraded and clean.any() else []:
            link = st.links[port]
            if link in self.degraded:
                self.degraded.discard(link)
                done = self.book.resolve("link_degraded", link, ts,
                                         reason=f"no CRC/symbol errors for {s.error_clear_samples} samples")
                if done:
                    out.append(done)
        return out

    def _labels(self, switch: str, link: str) -> dict[str, str]:
        a, _, b = link.partition("~")
        labels = {"switch": switch, "link": link}
        if "-nic" in a:
            node, _, nic = a.partition("-nic")
            labels.update({"node": node, "rail": nic})
        return labels
