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

from dataclasses import dataclass

import numpy as np

from pipeline.detect.alert_book import AlertBook
from pipeline.model.schemas import Alert, Batch
from pipeline.settings import LinkSettings
from pipeline.topology.protocol import ClusterTopology

ERROR_COUNTERS = ("crc_errors", "symbol_errors")
EVIDENCE_COUNTERS = ("fec_corrected", "drops")
COUNTERS = ERROR_COUNTERS + EVIDENCE_COUNTERS
MAX_LAYOUTS = 4096  # message layouts remembered (a collector's is the same every tick)


@dataclass
class _Layout:
    """Where the rows of a message of given sources and row counts go in the flat port arrays."""

    index: np.ndarray  # per source: its switch's index
    blocks: list[tuple[int, int]]  # per source: (first flat port, ports)
    row_part: np.ndarray  # per row: its source
    row_start: np.ndarray  # per row: its switch's first flat port
    row_size: np.ndarray  # per row: its switch's ports
    whole: np.ndarray  # every flat port of the message's switches
    span: slice | None  # the same as a slice, when they are one run of flat ports


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
        self._layouts: dict[tuple, _Layout] = {}  # (sources, row counts) of a message -> its layout

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

    def _layout(self, batch: Batch) -> _Layout:
        """Where a message's rows go in the flat port arrays; the same for every tick of a collector,
        so it is worked out once per set of sources and row counts."""
        key = batch.layout()
        found = self._layouts.get(key)
        if found is not None:
            return found
        blocks = [self.block.get(name) or self._add_switch(name) for name in key[0]]
        row_part = np.repeat(np.arange(len(blocks)), np.array(key[1], np.intp))
        starts = np.array([first for first, _ in blocks], np.intp)
        if len(self._layouts) >= MAX_LAYOUTS:
            self._layouts.clear()
        whole = np.concatenate([np.arange(first, first + ports) for first, ports in blocks])
        contiguous = len(whole) > 0 and bool((np.diff(whole) == 1).all())
        found = self._layouts[key] = _Layout(
            index=np.array([self.port_switch[first] for first, _ in blocks], np.intp),
            blocks=blocks,
            row_part=row_part,
            row_start=starts[row_part],
            row_size=np.array([n for _, n in blocks], np.intp)[row_part],
            whole=whole,
            span=slice(int(whole[0]), int(whole[-1]) + 1) if contiguous else None,
        )
        return found

    def push(self, batch: Batch, stream: int = 0) -> list[Alert]:
        ts = batch.ts_ms
        layout = self._layout(batch)
        index, row_part = layout.index, layout.row_part
        ports = batch.columns["port"].astype(np.intp)
        if batch.port_names is not None:  # sent once per port set: kept per port
            self._learn_names(layout.row_start, layout.row_size, ports, batch.port_names)
        last = self.last_ms[index]
        judged = ts > last  # per switch; an older batch was judged already
        if not judged.any():
            return []
        first_report = judged & (last < 0)
        self.last_ms[index[judged]] = ts
        span = None
        if judged.all():  # the usual case: no row left out
            rows, span = None, layout.span
            flat = layout.row_start + ports
            status = batch.columns["oper_up"]
            first_rows = first_report[row_part]
            whole = layout.whole
        else:
            rows = judged[row_part]
            flat = layout.row_start[rows] + ports[rows]
            status = batch.columns["oper_up"][rows]
            first_rows = first_report[row_part[rows]]
            whole = np.concatenate(
                [np.arange(first, first + n) for (first, n), j in zip(layout.blocks, judged.tolist()) if j]
            )
        oper = status == 1  # 0 down, 2 down and administratively disabled
        if (status == 2).any():
            self.admin_down.update(flat[status == 2].tolist())
            self.admin_down.difference_update(flat[status != 2].tolist())
        elif self.admin_down:
            self.admin_down.difference_update(flat.tolist())
        out = self._status(flat, oper, first_rows, ts)
        out += self._errors(batch, rows, flat, oper, whole, index[judged], ts, span)
        return out

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.pop("_layouts", None)  # worked out again after a restore
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._layouts = {}

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
        rows: np.ndarray | None,
        flat: np.ndarray,
        oper: np.ndarray,
        whole: np.ndarray,
        switches: np.ndarray,
        ts: int,
        span: slice | None = None,
    ) -> list[Alert]:
        """Counter increments into each judged switch's error window (every port of the switch:
        a port missing from the report counts as error-free this sample). `span`: `whole` as a
        slice, if it is one run of flat ports (views instead of gathers and scatters)."""
        s = self.settings
        values = np.empty((len(COUNTERS), len(flat)), np.int64)
        for i, name in enumerate(COUNTERS):
            values[i] = batch.columns[name] if rows is None else batch.columns[name][rows]
        in_order = len(flat) == len(whole) and np.array_equal(flat, whole)  # the usual case: every port reported
        if not in_order:
            span = None
        before = self.prev[:, flat if span is None else span]
        # a counter below its previous value was reset (a reboot): a new baseline, not an error
        delta = np.where((before >= 0) & (values >= before), values - before, 0)
        self.prev[:, flat if span is None else span] = values
        row_inc = delta[: len(ERROR_COUNTERS)].sum(axis=0)
        row_inc[~oper] = 0  # a down link's errors are the down alert's business
        if in_order:
            inc, extra = row_inc, delta[len(ERROR_COUNTERS) :].T
        else:  # a partial report: the ports it does not name had no errors this sample
            increments = np.zeros(len(self.oper), np.int64)
            extras = np.zeros((len(self.oper), len(EVIDENCE_COUNTERS)), np.int64)
            increments[flat] = row_inc
            extras[flat] = delta[len(ERROR_COUNTERS) :].T
            inc, extra = increments[whole], extras[whole]
        rings = self.filled[switches] % s.error_window_samples
        at: slice | np.ndarray
        ring: int | np.ndarray
        if span is not None and int(rings.min()) == int(rings.max()):  # switches that report together
            at, ring = span, int(rings[0])
        else:
            at, ring = whole, self.filled[self.port_switch[whole]] % s.error_window_samples
        self.filled[switches] += 1
        leaving = self.errors[ring, at]
        self.window_total[at] += inc - leaving
        self.window_samples[at] += (inc > 0).astype(np.int64) - (leaving > 0)
        self.errors[ring, at] = inc  # `leaving` (a view with a slice) is used up
        self.extra[ring, at] = extra
        self.clean_streak[at] = np.where(inc > 0, 0, self.clean_streak[at] + 1)

        total, samples = self.window_total[at], self.window_samples[at]
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
            for port in whole[self.clean_streak[at] >= s.error_clear_samples].tolist():
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
