"""Link health from switches' port batches: `link_down`, `link_flapping`, `link_degraded`.

Counters are monotonic, as exporters report them; the detector takes per-sample increments and
treats a counter below its previous value as a reset (a new baseline, not an error). Degradation
needs errors in several samples of a window (one burst or one stray CRC error does not fire) and
resolves only after a long error-free run (hysteresis, so it does not flap).

A port never seen up is not paged unless the topology says it is cabled (`cabling_known`, true
for a real topology; `PortEntities`, the ports of scrapes without one, know nothing of cables):
every switch has ports without a cable, admin up and oper down from the first sample. Once seen up,
its going down pages as any other port's; `never_up()` lists those ports.

Alerts name the port as its device does (`ifName`, IB port number): from the names a port batch
brings now and then (`Batch.port_names`, kept here per port), else from the topology's link name
(`LG01-01/33~SG01-01/5`), in the summary and the label `port`.

State lives in flat arrays over every port of the switches this detector has seen (a switch gets
its block of ports when it first reports), so a collector's message of several switches is judged
with one numpy pass; only ports that change state are looked at one by one.
"""

from __future__ import annotations

import numpy as np

from pipeline.detect.alert_book import AlertBook
from pipeline.model.schemas import Alert, Batch
from pipeline.settings import LinkSettings
from pipeline.topology.protocol import ClusterTopology

ERROR_COUNTERS = ("crc_errors", "symbol_errors")
EVIDENCE_COUNTERS = ("fec_corrected", "drops")
COUNTERS = ERROR_COUNTERS + EVIDENCE_COUNTERS


class LinkDetector:
    multi_source = True  # takes a collector's multi-switch batch whole

    def __init__(self, topology: ClusterTopology, settings: LinkSettings | None = None) -> None:
        self.topo = topology
        self.settings = settings or LinkSettings()
        self.book = AlertBook()
        self.degraded: dict[str, set[int]] = {}  # degraded link -> the ports (its ends) that saw the errors
        self.block: dict[str, tuple[int, int]] = {}  # switch -> (first flat port, ports)
        self.switches: list[str] = []
        self.last_ms = np.zeros(0, np.int64)  # per switch seen
        self.filled = np.zeros(0, np.int64)  # per switch: samples taken (the ring's position)
        self.links: list[str | None] = []  # per flat port
        self.port_names: list[str] = []  # per flat port: the device's own name for it ("" not known)
        self.cabling_known = getattr(topology, "cabling_known", True)  # does a port's link mean a cable
        self.port_switch = np.zeros(0, np.intp)  # per flat port: its switch (index in self.switches)
        self.port_number = np.zeros(0, np.intp)  # per flat port: its port number on the switch
        w = self.settings.error_window_samples
        self.oper = np.ones(0, bool)
        self.seen_up = np.zeros(0, bool)
        self.up_since_ms = np.zeros(0, np.int64)
        self.prev = np.zeros((len(COUNTERS), 0), np.int64)  # last counter values, -1: none yet
        self.errors = np.zeros((w, 0), np.int64)  # ring of error increments per port
        self.extra = np.zeros((w, 0, len(EVIDENCE_COUNTERS)), np.int64)
        self.window_total = np.zeros(0, np.int64)  # errors in the window (kept as the ring turns)
        self.window_samples = np.zeros(0, np.int64)  # samples with errors in the window
        self.clean_streak = np.zeros(0, np.int64)
        self.down_times: dict[int, list[int]] = {}  # flat port -> times it went down (recent)
        self.admin_down: set[int] = set()  # flat ports reported administratively disabled
        self._link_labels: dict[str, dict[str, str]] = {}

    def _add_switch(self, name: str) -> tuple[int, int]:
        """Give a newly seen switch its block of flat ports (arrays grow by doubling)."""
        ports = self.topo.switch_ports(name)
        first = len(self.links)
        if first + ports > len(self.oper):
            self._grow(max(2 * len(self.oper), first + ports, 1024))
        self.block[name] = (first, ports)
        self.switches.append(name)
        self.links += [self.topo.port_link(name, p) for p in range(ports)]
        self.port_names += [""] * ports
        self.last_ms = np.append(self.last_ms, -1)
        self.filled = np.append(self.filled, 0)
        self.port_switch[first : first + ports] = len(self.switches) - 1
        self.port_number[first : first + ports] = np.arange(ports)
        return first, ports

    def _grow(self, capacity: int) -> None:
        def grown(old: np.ndarray, fill: int, axis: int) -> np.ndarray:
            shape = list(old.shape)
            shape[axis] = capacity - old.shape[axis]
            return np.concatenate([old, np.full(shape, fill, old.dtype)], axis=axis)

        self.port_switch, self.port_number = grown(self.port_switch, 0, 0), grown(self.port_number, 0, 0)
        self.oper, self.up_since_ms = grown(self.oper, 1, 0), grown(self.up_since_ms, -1, 0)
        self.seen_up = grown(self.seen_up, 0, 0)
        self.prev = grown(self.prev, -1, 1)
        self.errors, self.extra = grown(self.errors, 0, 1), grown(self.extra, 0, 1)
        for attr in ("window_total", "window_samples", "clean_streak"):
            setattr(self, attr, grown(getattr(self, attr), 0, 0))

    def push(self, batch: Batch, stream: int = 0) -> list[Alert]:
        ts = batch.ts_ms
        parts = (
            [(batch.source, batch.rows())]
            if batch.parts is None
            else [(source, counts["rows"]) for source, counts in batch.parts]
        )
        blocks = [self.block.get(name) or self._add_switch(name) for name, _ in parts]
        index = np.array([self.port_switch[first] for first, _ in blocks], np.intp)
        counts = np.array([rows for _, rows in parts], np.intp)
        row_part = np.repeat(np.arange(len(parts)), counts)
        starts = np.array([first for first, _ in blocks], np.intp)
        if batch.port_names is not None:  # sent once per port set: kept per port
            self._learn_names(
                starts[row_part],
                np.array([n for _, n in blocks], np.intp)[row_part],
                batch.columns["port"].astype(np.intp),
                batch.port_names,
            )
        last = self.last_ms[index]
        judged = ts > last  # per switch; an older batch was judged already
        if not judged.any():
            return []
        first_report = judged & (last < 0)
        self.last_ms[index[judged]] = ts
        rows = judged[row_part]
        flat = starts[row_part[rows]] + batch.columns["port"][rows].astype(np.intp)
        status = batch.columns["oper_up"][rows]
        oper = status == 1  # 0 down, 2 down and administratively disabled
        if (status == 2).any():
            self.admin_down.update(flat[status == 2].tolist())
            self.admin_down.difference_update(flat[status != 2].tolist())
        elif self.admin_down:
            self.admin_down.difference_update(flat.tolist())
        whole = np.concatenate([np.arange(first, first + ports) for (first, ports), j in zip(blocks, judged) if j])
        out = self._status(flat, oper, first_report[row_part[rows]], ts)
        out += self._errors(batch, rows, flat, oper, whole, index[judged], ts)
        return out

    def _learn_names(self, starts: np.ndarray, sizes: np.ndarray, ports: np.ndarray, names: tuple[str, ...]) -> None:
        """Keep each named row's name for its port (rows past their switch's ports are not ours)."""
        for first, size, port, name in zip(starts.tolist(), sizes.tolist(), ports.tolist(), names):
            if name and port < size:
                self.port_names[first + port] = name

    def port_name(self, port: int) -> str:
        """The device's name of a flat port: as its batches named it, else its end of the link's
        name (`leaf7/Ethernet1/5` of `host/eth0~leaf7/Ethernet1/5`); "" when neither says."""
        if self.port_names[port]:
            return self.port_names[port]
        prefix = self.switches[self.port_switch[port]] + "/"
        return next((end[len(prefix) :] for end in (self.links[port] or "").split("~") if end.startswith(prefix)), "")

    def never_up(self) -> list[str]:
        """Ports reported and never seen up that were not paged for it (no cable, as far as
        anyone knows): their entities."""
        if self.cabling_known:
            return []
        n = len(self.links)
        quiet = (self.prev[0, :n] >= 0) & ~self.seen_up[:n]
        return [link for p in np.flatnonzero(quiet).tolist() if (link := self.links[p])]

    # ---- down and flapping -------------------------------------------------------------------
    def _status(self, flat: np.ndarray, oper: np.ndarray, first: np.ndarray, ts: int) -> list[Alert]:
        s = self.settings
        out: list[Alert] = []
        was_up = self.oper[flat]
        went_down = flat[~oper & (was_up | first)]
        if not self.cabling_known:  # a port never seen up is one without a cable, not a fault
            went_down = went_down[self.seen_up[went_down]]
        came_up = flat[oper & ~was_up]
        self.oper[flat] = oper
        self.seen_up[flat[oper]] = True
        self.up_since_ms[came_up] = ts
        self.up_since_ms[flat[~oper]] = -1
        window_ms = int(s.flap_window_s * 1000)
        for port in went_down.tolist():
            link = self.links[port]
            if link is None:
                continue
            switch = self.switches[self.port_switch[port]]
            times = self.down_times.setdefault(port, [])
            times.append(ts)
            while times and ts - times[0] > window_ms:
                times.pop(0)
            labels = self._labels(switch, link, port)
            if len(times) >= s.flap_transitions and not self.book.is_firing("link_flapping", link):
                alert = self.book.fire(
                    "link_flapping",
                    link,
                    ts,
                    severity="warning",
                    summary=f"{link} flapping: down {len(times)} times in {s.flap_window_s:g} s",
                    labels=labels,
                    evidence={"down_transitions": len(times), "window_s": s.flap_window_s, "seen_by": switch},
                )
                if alert:  # a link_down still firing stays (the correlator groups this under it)
                    out.append(alert)
            elif not self.book.is_firing("link_flapping", link):
                number = int(self.port_number[port])
                # a disabled port still cost the fabric a link (and may be the wrong one): a warning
                admin = port in self.admin_down
                why = "is administratively disabled" if admin else "reports oper down"
                alert = self.book.fire(
                    "link_down",
                    link,
                    ts,
                    severity="warning" if admin else "critical",
                    summary=f"{link} down (port {labels.get('port', number)} of {switch} {why})",
                    labels={**labels, "admin_down": "true"} if admin else labels,
                    evidence={"port": number, "seen_by": switch},
                )
                if alert:
                    out.append(alert)
        hold_ms = int(s.down_resolve_s * 1000)
        since = self.up_since_ms[flat]
        for port in flat[oper & (since >= 0) & (ts - since >= hold_ms)].tolist():
            link = self.links[port]
            if link is None:
                continue
            for kind in ("link_down", "link_flapping"):
                if kind == "link_flapping" and ts - (self.down_times.get(port) or [ts])[-1] < window_ms:
                    continue
                done = self.book.resolve(kind, link, ts, reason=f"up for {(ts - self.up_since_ms[port]) / 1000:.0f} s")
                if done:
                    out.append(done)
        return out

    # ---- degradation -------------------------------------------------------------------------
    def _errors(
        self,
        batch: Batch,
        rows: np.ndarray,
        flat: np.ndarray,
        oper: np.ndarray,
        whole: np.ndarray,
        switches: np.ndarray,
        ts: int,
    ) -> list[Alert]:
        """Counter increments into each judged switch's error window (every port of the switch:
        a port missing from the report counts as error-free this sample)."""
        s = self.settings
        values = np.stack([batch.columns[name][rows] for name in COUNTERS]).astype(np.int64)
        before = self.prev[:, flat]
        # a counter below its previous value was reset (a reboot): a new baseline, not an error
        delta = np.where((before >= 0) & (values >= before), values - before, 0)
        self.prev[:, flat] = values
        row_inc = delta[: len(ERROR_COUNTERS)].sum(axis=0)
        row_inc[~oper] = 0  # a down link's errors are the down alert's business
        if len(flat) == len(whole) and np.array_equal(flat, whole):  # the usual case: every port reported
            inc, extra = row_inc, delta[len(ERROR_COUNTERS) :].T
        else:  # a partial report: the ports it does not name had no errors this sample
            increments = np.zeros(len(self.oper), np.int64)
            extras = np.zeros((len(self.oper), len(EVIDENCE_COUNTERS)), np.int64)
            increments[flat] = row_inc
            extras[flat] = delta[len(ERROR_COUNTERS) :].T
            inc, extra = increments[whole], extras[whole]
        ring = self.filled[self.port_switch[whole]] % s.error_window_samples
        self.filled[switches] += 1
        leaving = self.errors[ring, whole]
        self.window_total[whole] += inc - leaving
        self.window_samples[whole] += (inc > 0).astype(np.int64) - (leaving > 0)
        self.errors[ring, whole] = inc
        self.extra[ring, whole] = extra
        self.clean_streak[whole] = np.where(inc > 0, 0, self.clean_streak[whole] + 1)

        total, samples = self.window_total[whole], self.window_samples[whole]
        out: list[Alert] = []
        window_s = s.error_window_samples * 1.0
        for i in np.flatnonzero((total >= s.error_min_count) & (samples >= s.error_min_samples)).tolist():
            port = int(whole[i])
            link = self.links[port]
            if link is None or port in self.degraded.get(link, ()):
                continue
            ends = self.degraded.setdefault(link, set())
            ends.add(port)
            if len(ends) > 1:
                continue  # the other end sees it too: already firing
            switch = self.switches[self.port_switch[port]]
            ev = self.extra[:, port].sum(axis=0)
            labels = self._labels(switch, link, port)
            seen_by = f"{switch} port {labels['port']}" if "port" in labels else switch
            alert = self.book.fire(
                "link_degraded",
                link,
                ts,
                severity="warning",
                summary=f"{link} degrading: {int(total[i])} CRC/symbol errors in {int(samples[i])} of the "
                f"last {s.error_window_samples} samples (seen by {seen_by})",
                labels=labels,
                evidence={
                    "errors_in_window": int(total[i]),
                    "samples_with_errors": int(samples[i]),
                    "window_samples": s.error_window_samples,
                    "fec_corrected_in_window": int(ev[0]),
                    "drops_in_window": int(ev[1]),
                    "error_min_count": s.error_min_count,
                    "seen_by": switch,
                    "window_s_at_1hz": window_s,
                },
            )
            if alert:
                out.append(alert)
        if self.degraded:  # a link resolves once every end that saw its errors has been clean
            for port in whole[self.clean_streak[whole] >= s.error_clear_samples].tolist():
                link = self.links[port]
                seen = self.degraded.get(link)
                if seen is not None and port in seen:
                    seen.discard(port)
                    if seen:
                        continue
                    del self.degraded[link]
                    done = self.book.resolve(
                        "link_degraded", link, ts, reason=f"no CRC/symbol errors for {s.error_clear_samples} samples"
                    )
                    if done:
                        out.append(done)
        return out

    def _labels(self, switch: str, link: str, port: int) -> dict[str, str]:
        """switch and link; a host link's node and rail (its NIC) too; `port`, the device's name of
        the port that saw it, when known."""
        known = self._link_labels.get(link)
        if known is None:
            known = {}
            try:
                what, node, nic = self.topo.resolve_link(link)
                if what == "host":
                    known = {"node": self.topo.node_name(node), "rail": str(nic)}
            except ValueError:  # UnknownEntity: a port that is its own entity
                pass
            self._link_labels[link] = known
        name = self.port_name(port)
        return {"switch": switch, "link": link, **known, **({"port": name} if name else {})}
