"""Telemetry batch messages and alert records: the wire formats, defined once.

A telemetry message is one batch for one tick: card samples, finished job steps or port samples
of one source (a node or a switch), or, as a collector sends them, of several sources one after
the other (a rack's nodes, a job's nodes, a group of switches). On the wire it is a msgpack map
whose columns are raw little-endian numpy buffers::

    {"v": 2, "k": "card", "src": "node0154", "ts": 1767225600000, "job": "", "c": {name: bytes}}
    {"v": 2, "k": "card", "src": "node0000..node0031", "ts": ..., "job": "", "c": {name: bytes},
     "srcs": ["node0000", ..., "node0031"], "n": {"rows": [8, 8, ...], "events": [0, 1, ...]}}

In the second form `src` names the collector, `srcs` the sources in order and `n` how many rows of
each column group belong to each source. A collector that scrapes its sources may add `"gone": [...]`:
sources it owes a report this tick and has none, because it could not reach them or could not
scrape them in time (listed in `srcs` with no rows). That is not a report
from them, and not proof that they are dead: an exporter that does not answer is told apart from a
dead node or switch by the fabric (`pipeline.correlate.correlator`). Version 1 (single source only)
is still read. The cost of a message (Kafka, Faust, decoding) is paid once for all its sources.

A port message may add `"pn": [...]`: each row's port as the device names it (`ifName`, `Ethernet1/5`,
IB `10`; "" for none). Names are per port, not per sample: a producer sends them when a switch's port
set is new or changed (and now and then again); a reader that does not know `pn` ignores it.

`decode_batch` turns bytes back into a `Batch` or raises `InvalidRecord` with the reason, so a
consumer can dead-letter exactly that message and go on.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgpack
import numpy as np

SCHEMA_VERSION = 2
READ_VERSIONS = (1, 2)


class InvalidRecord(ValueError):
    """A message that cannot be processed; `reason` says why in one line, `reason_class` in one word
    (the dead-letter metric's `reason` label: empty, not_msgpack, bad_columns, unknown_entity, ...)."""

    def __init__(self, reason: str, reason_class: str = "other") -> None:
        super().__init__(reason)
        self.reason = reason
        self.reason_class = reason_class


@dataclass(frozen=True)
class Column:
    name: str
    dtype: str  # numpy dtype string, explicit little-endian
    group: str = "rows"  # columns of one group have the same length
    doc: str = ""


@dataclass(frozen=True)
class BatchSchema:
    kind: str
    source: str  # entity kind that sends one message per tick: node or switch
    columns: tuple[Column, ...]
    doc: str = ""
    optional: tuple[str, ...] = ()  # column groups a message may leave out (read as no rows)

    def group_columns(self, group: str) -> tuple[Column, ...]:
        return tuple(c for c in self.columns if c.group == group)


_COUNTER = "<u8"

CARD = BatchSchema(
    kind="card",
    source="node",
    doc="One node's accelerator cards, one row per card that reported this tick.",
    columns=(
        Column("card", "<u1", doc="card index on the node (0..cards_per_node-1)"),
        Column("util", "<f4", doc="utilization, percent"),
        Column("sm_clock_mhz", "<f4", doc="SM / AI core clock, MHz"),
        Column("power_w", "<f4", doc="board power, W"),
        Column("temp_c", "<f4", doc="temperature, degrees C"),
        Column("mem_used_mib", "<f4", doc="device memory used, MiB"),
        Column("ecc_sbe", _COUNTER, doc="single-bit (corrected) ECC errors, counter"),
        Column("ecc_dbe", _COUNTER, doc="double-bit (uncorrectable) ECC errors, counter"),
        Column("pcie_replay", _COUNTER, doc="PCIe replay counter"),
        Column("link_errors", _COUNTER, doc="NVLink / HCCS error counter"),
        Column("err_card", "<u1", group="events", doc="card index of an error event"),
        Column("err_code", "<u4", group="events", doc="XID or Ascend error code of that event"),
    ),
)

STEP = BatchSchema(
    kind="step",
    source="node",
    doc="Job steps that finished this tick on one node's ranks; the message carries the job.",
    columns=(
        Column("rank", "<u4", doc="rank in the job"),
        Column("step", "<u4", doc="step index"),
        Column("compute_s", "<f4", doc="compute time of the step, s"),
        Column("wait_s", "<f4", doc="time waiting in collectives, s"),
        Column("timeout_rank", "<u4", group="timeouts", doc="rank whose collective timed out (NCCL's watchdog)"),
        Column("timeout_seq", "<u8", group="timeouts", doc="that collective's sequence number (0: not known)"),
        Column("timeout_waited_s", "<f4", group="timeouts", doc="how long it had waited, s (NaN: not known)"),
    ),
    optional=("timeouts",),
)

PORT = BatchSchema(
    kind="port",
    source="switch",
    doc="One switch's ports; counters are monotonic, as exporters report them.",
    columns=(
        Column("port", "<u2", doc="port index on the switch"),
        Column("oper_up", "<u1", doc="1 up; 0 down; 2 down, administratively disabled (ifAdminStatus down)"),
        Column("rx_bytes", _COUNTER),
        Column("tx_bytes", _COUNTER),
        Column("crc_errors", _COUNTER, doc="CRC / FCS errors"),
        Column("fec_corrected", _COUNTER),
        Column("symbol_errors", _COUNTER),
        Column("drops", _COUNTER),
        Column("pfc_pause", _COUNTER, doc="PFC pause frames received"),
        Column("ecn_marks", _COUNTER),
        Column("carrier_transitions", _COUNTER),
    ),
)

SCHEMAS: dict[str, BatchSchema] = {s.kind: s for s in (CARD, STEP, PORT)}


@dataclass
class Batch:
    """One tick of one source's samples, column-wise; or of several sources (`parts`: each
    source and its row count per column group, rows in that order)."""

    kind: str
    source: str
    ts_ms: int
    columns: dict[str, np.ndarray]
    job: str = ""
    parts: list[tuple[str, dict[str, int]]] | None = None
    unreachable: tuple[str, ...] = ()  # sources the collector could not reach (parts without rows)
    port_names: tuple[str, ...] | None = None  # port batches: each row's port as its device names it ("" none)

    def __post_init__(self) -> None:
        """An optional column group left out (by a message or the code that made the batch): no rows."""
        schema = SCHEMAS[self.kind]
        for group in schema.optional:
            missing = [col for col in schema.group_columns(group) if col.name not in self.columns]
            for col in missing:
                self.columns[col.name] = np.empty(0, col.dtype)
            if missing and self.parts is not None:
                for _, counts in self.parts:
                    counts.setdefault(group, 0)

    @property
    def schema(self) -> BatchSchema:
        return SCHEMAS[self.kind]

    def layout(self) -> tuple[tuple[str, ...], tuple[int, ...]]:
        """(sources, sample rows of each): the same for every tick of a collector, so what depends
        on it only (where rows go in a detector's arrays, whether the sources are known) is worked
        out once per layout. Kept on the batch once made."""
        key = self.__dict__.get("_layout")
        if key is None:
            if self.parts is None:
                key = ((self.source,), (self.rows(),))
            else:
                key = (tuple([source for source, _ in self.parts]), tuple([c["rows"] for _, c in self.parts]))
            self.__dict__["_layout"] = key
        return key

    def rows(self, group: str = "rows") -> int:
        cols = self.schema.group_columns(group)
        return len(self.columns[cols[0].name]) if cols else 0

    def reachable(self) -> Batch | None:
        """This batch without the sources the collector could not reach (None if that is all of them)."""
        if not self.unreachable:
            return self
        gone = set(self.unreachable)
        parts = [part for part in self.parts or () if part[0] not in gone]
        return (
            Batch(self.kind, self.source, self.ts_ms, self.columns, self.job, parts, port_names=self.port_names)
            if parts
            else None
        )

    def split(self) -> list[Batch]:
        """One single-source batch per source (views of these columns, no copies)."""
        if self.parts is None:
            return [self]
        out = []
        start = dict.fromkeys(_groups(self.schema), 0)
        for source, counts in self.parts:
            cols = {}
            for col in self.schema.columns:
                begin = start[col.group]
                cols[col.name] = self.columns[col.name][begin : begin + counts[col.group]]
            names = None if self.port_names is None else self.port_names[start["rows"] : start["rows"] + counts["rows"]]
            for group in start:
                start[group] += counts[group]
            out.append(Batch(self.kind, source, self.ts_ms, cols, self.job, port_names=names))
        return out


def _groups(schema: BatchSchema) -> list[str]:
    return list(dict.fromkeys(c.group for c in schema.columns))


def bundle(batches: list[Batch], collector: str) -> Batch:
    """Single-source batches of one kind, tick and job as one multi-source batch from `collector`."""
    first = batches[0]
    schema = first.schema
    groups = _groups(schema)
    columns = {
        c.name: np.concatenate([b.columns[c.name] for b in batches]).astype(c.dtype, copy=False) for c in schema.columns
    }
    parts = [(b.source, {g: len(b.columns[schema.group_columns(g)[0].name]) for g in groups}) for b in batches]
    names = None
    if any(b.port_names is not None for b in batches):  # rare: only batches whose port set is news
        names = tuple(n for b in batches for n in (b.port_names or ("",) * len(b.columns["port"])))
    return Batch(first.kind, collector, first.ts_ms, columns, first.job, parts, port_names=names)


def encode_batch(batch: Batch) -> bytes:
    schema = SCHEMAS[batch.kind]
    groups = [g for g in _groups(schema) if g not in schema.optional or batch.rows(g)]
    cols: dict[str, bytes] = {}
    for col in schema.columns:
        if col.group not in groups:
            continue  # an optional group without rows: left out, as a reader expects
        arr = batch.columns[col.name]
        if not isinstance(arr, np.ndarray) or arr.dtype != col.dtype:
            arr = np.asarray(arr, dtype=col.dtype)
        cols[col.name] = arr.tobytes()
    msg = {
        "v": SCHEMA_VERSION,
        "k": batch.kind,
        "src": batch.source,
        "ts": int(batch.ts_ms),
        "job": batch.job,
        "c": cols,
    }
    if batch.parts is not None:
        msg["srcs"] = [source for source, _ in batch.parts]
        msg["n"] = {g: [counts[g] for _, counts in batch.parts] for g in groups}
        if batch.unreachable:
            msg["gone"] = list(batch.unreachable)
    if batch.port_names is not None:
        msg["pn"] = list(batch.port_names)
    return msgpack.packb(msg, use_bin_type=True)


def decode_batch(payload: bytes | None) -> Batch:
    """Parse one telemetry message; raises InvalidRecord with the reason."""
    if not payload:
        raise InvalidRecord("empty message", "empty")
    try:
        msg = msgpack.unpackb(payload, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types
        raise InvalidRecord(f"not msgpack: {type(exc).__name__}: {exc}", "not_msgpack") from None
    if not isinstance(msg, dict):
        raise InvalidRecord(f"message is a {type(msg).__name__}, expected a map", "not_a_map")
    version = msg.get("v")
    if type(version) is not int or version not in READ_VERSIONS:  # not 1.0, not True
        raise InvalidRecord(
            f"unsupported schema version {version!r} (this worker reads {', '.join(map(str, READ_VERSIONS))})",
            "schema_version",
        )
    kind = msg.get("k")
    schema = SCHEMAS.get(kind) if isinstance(kind, str) else None
    if schema is None:
        raise InvalidRecord(f"unknown batch kind {kind!r}", "unknown_kind")
    source, ts, job, raw = msg.get("src"), msg.get("ts"), msg.get("job", ""), msg.get("c")
    if not isinstance(source, str) or not source:
        raise InvalidRecord(f"bad source {source!r}", "bad_field")
    if not isinstance(ts, int) or isinstance(ts, bool) or ts < 0:
        raise InvalidRecord(f"bad timestamp {ts!r}", "bad_field")
    if not isinstance(job, str):
        raise InvalidRecord(f"bad job {job!r}", "bad_field")
    if not isinstance(raw, dict):
        raise InvalidRecord("missing columns", "bad_columns")
    columns: dict[str, np.ndarray] = {}
    lengths: dict[str, int] = {}
    left_out = {g for g in schema.optional if not any(c.name in raw for c in schema.group_columns(g))}
    for col in schema.columns:
        if col.group in left_out:
            continue  # no rows (`Batch.__post_init__`)
        buf = raw.get(col.name)
        if not isinstance(buf, bytes):
            raise InvalidRecord(f"column {col.name!r} missing or not bytes", "bad_columns")
        dtype = np.dtype(col.dtype)
        if len(buf) % dtype.itemsize:
            raise InvalidRecord(
                f"column {col.name!r} has {len(buf)} bytes, not a multiple of {dtype.itemsize}", "bad_columns"
            )
        arr = np.frombuffer(buf, dtype=dtype)
        expected = lengths.setdefault(col.group, len(arr))
        if len(arr) != expected:
            raise InvalidRecord(
                f"column {col.name!r} has {len(arr)} values, others in its group {expected}", "bad_columns"
            )
        columns[col.name] = arr
    parts = _parts(msg, schema, lengths, left_out) if version >= 2 and "srcs" in msg else None
    gone = _unreachable(msg, parts) if parts is not None and "gone" in msg else ()
    names = _port_names(msg, lengths.get("rows", 0)) if schema.kind == "port" and "pn" in msg else None
    return Batch(
        kind=schema.kind,
        source=source,
        ts_ms=ts,
        columns=columns,
        job=job,
        parts=parts,
        unreachable=gone,
        port_names=names,
    )


def _port_names(msg: dict, rows: int) -> tuple[str, ...]:
    """The `pn` of a port message: one name (a string, "" for none) per row."""
    names = msg["pn"]
    if not isinstance(names, list) or len(names) != rows or not all(isinstance(n, str) for n in names):
        raise InvalidRecord(f"pn must hold one port name (a string) per row ({rows})", "bad_columns")
    return tuple(names)


def _unreachable(msg: dict, parts: list[tuple[str, dict[str, int]]]) -> tuple[str, ...]:
    """The `gone` sources of a collector's message: some of its sources, each without rows."""
    gone = msg.get("gone")
    if not isinstance(gone, list) or not all(isinstance(s, str) for s in gone):
        raise InvalidRecord("gone must be a list of source names", "bad_columns")
    rows = {source: counts for source, counts in parts}
    for source in gone:
        if source not in rows:
            raise InvalidRecord(f"gone names {source!r}, which is not one of the message's sources", "bad_columns")
        if any(rows[source].values()):
            raise InvalidRecord(f"gone names {source!r}, which has rows in the message", "bad_columns")
    return tuple(gone)


def _parts(
    msg: dict, schema: BatchSchema, lengths: dict[str, int], left_out: set[str]
) -> list[tuple[str, dict[str, int]]]:
    """The sources of a multi-source message and their row counts, checked against the columns
    (a group `left_out` is not counted: `Batch.__post_init__` gives it none)."""
    sources, counts = msg.get("srcs"), msg.get("n")
    if not isinstance(sources, list) or not sources or set(map(type, sources)) != {str} or "" in sources:
        raise InvalidRecord("srcs must be a non-empty list of source names", "bad_columns")
    groups = [g for g in _groups(schema) if g not in left_out]
    if not isinstance(counts, dict) or set(counts) != set(groups):
        raise InvalidRecord(f"n must give row counts for the groups {', '.join(groups)}", "bad_columns")
    for group, values in counts.items():
        # type() is int: a bool (True counts as 1 to isinstance) or a float is not a row count
        if not isinstance(values, list) or len(values) != len(sources) or set(map(type, values)) != {int}:
            raise InvalidRecord(f"n.{group} must hold one row count per source ({len(sources)})", "bad_columns")
        if min(values) < 0:
            raise InvalidRecord(f"n.{group} must hold one row count per source ({len(sources)})", "bad_columns")
        if sum(values) != lengths.get(group, 0):
            raise InvalidRecord(
                f"n.{group} counts {sum(values)} rows, the columns hold {lengths.get(group, 0)}", "bad_columns"
            )
    names = list(counts)
    if len(names) == 1:
        (only,) = names
        return [(source, {only: n}) for source, n in zip(sources, counts[only])]
    return [(source, dict(zip(names, row))) for source, row in zip(sources, zip(*counts.values()))]


# ---- alerts -------------------------------------------------------------------------------------


def alert_id(kind: str, entity: str) -> str:
    """Stable fingerprint of (kind, entity): the same for the firing and the resolved record."""
    return hashlib.sha256(f"{kind}\x00{entity}".encode()).hexdigest()[:16]


def iso_utc(ts_ms: int) -> str:
    dt = datetime.fromtimestamp(ts_ms / 1000, tz=UTC)
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Alert:
    """One alert state change, in the format of docs/scenarios.md."""

    kind: str
    entity: str
    status: str  # firing | resolved
    starts_at: str
    severity: str
    summary: str
    ends_at: str | None = None
    root_cause: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    evidence: dict[str, Any] = field(default_factory=dict)
    id: str = ""
    # ids of the active silences that cover it: recorded, but no receiver is paged (pipeline.notify.silences)
    silenced_by: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.id:
            self.id = alert_id(self.kind, self.entity)
        self.silenced_by = tuple(self.silenced_by)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def from_json(cls, payload: bytes) -> Alert:
        data = json.loads(payload)
        return cls(**data)

    def line(self) -> str:
        """One line for a terminal."""
        when = self.ends_at if self.status == "resolved" else self.starts_at
        cause = f" (caused by {self.root_cause})" if self.root_cause else ""
        silenced = f" [silenced by {', '.join(self.silenced_by)}]" if self.silenced_by else ""
        return (
            f"{when} {self.status.upper():8} {self.severity:8} {self.kind:16} {self.entity}: {self.summary}{cause}"
            f"{silenced}"
        )
