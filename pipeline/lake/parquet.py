"""Parquet sink: buffer decoded batches per topic partition, flush to Hive-partitioned files.

The sink never commits anything itself. `flush()` writes every buffered row of a topic partition
and returns the last offset now on disk, so the caller acknowledges (commits) only what is durable.
Files are named after the dataset, topic, partition and the first offset of their rows, and are
written whole or not at all (`LakeStore.publish`: renamed into place, one upload to S3), so a
re-write after a crash replaces the same file and no reader ever sees half a file. A worker names
its stream in the file name too (`<topic>+<partition>@<stream>+<offset>`, the stream being a tag of
its consumer group and the topic's id): a topic re-created (a memory broker's next run) or another
group's files are never overwritten or removed.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from pipeline.lake.datasets import DELTA_DATASETS, NAMES
from pipeline.lake.store import LakeStore
from pipeline.model.matchers import Matcher
from pipeline.model.schemas import SCHEMAS, Alert, Batch
from pipeline.topology.protocol import ClusterTopology
from pipeline.topology.synthetic import UnknownEntity

# batch kind -> row group of the batch -> (dataset name, entity column name)
_DATASETS = {
    "card": {"rows": ("card", "node"), "events": ("card_events", "node")},
    "step": {"rows": ("step", "node"), "timeouts": ("step_timeouts", "node")},
    "port": {"rows": ("port", "switch")},
}
_RENAME = {
    "err_card": "card",
    "err_code": "code",
    "timeout_rank": "rank",
    "timeout_seq": "seq",
    "timeout_waited_s": "waited_s",
}
# rows are sorted by entity, then this column, then time: DuckDB prunes row groups by their stats
_SUB_ENTITY = {"card": "card", "card_events": "card", "step": "rank", "step_timeouts": "rank", "port": "port"}
TIME_TYPE = pa.timestamp("ms", tz="UTC")
_JOB_DATASETS = ("step", "step_timeouts")  # their messages carry the job (a card or port row has none)
# columns `_enrich` adds from the topology, after the batch's own
_ENRICHED = {
    "step": (pa.field("card", pa.uint8()),),
    "port": (pa.field("link", pa.string()), pa.field("rail", pa.int16())),
}
# the Hive partitions of the path every file is written under (`<dataset>/date=2026-01-01/hour=07/`),
# typed as readers should take them (DuckDB alone would read hour=07 as text and hour=13 as a number)
PARTITIONS = pa.schema([pa.field("date", pa.date32()), pa.field("hour", pa.int32())])
ALERTS_SCHEMA = pa.schema(
    [
        pa.field("ts", TIME_TYPE),
        pa.field("id", pa.string()),
        pa.field("kind", pa.string()),
        pa.field("entity", pa.string()),
        pa.field("status", pa.string()),
        pa.field("starts_at", TIME_TYPE),
        pa.field("ends_at", TIME_TYPE),
        pa.field("severity", pa.string()),
        pa.field("summary", pa.string()),
        pa.field("root_cause", pa.string()),
        pa.field("labels", pa.string()),
        pa.field("evidence", pa.string()),
        pa.field("silenced_by", pa.list_(pa.string())),
        pa.field("_offset", pa.int64()),
    ]
)
# every change of a silence (created, edited, expired), with its author: who muted what, when, why
SILENCES_SCHEMA = pa.schema(
    [
        pa.field("ts", TIME_TYPE),  # when the change was made (the silence's updatedAt)
        pa.field("id", pa.string()),
        pa.field("matchers", pa.list_(pa.string())),
        pa.field("starts_at", TIME_TYPE),
        pa.field("ends_at", TIME_TYPE),
        pa.field("created_by", pa.string()),
        pa.field("comment", pa.string()),
        pa.field("_offset", pa.int64()),
    ]
)


def dataset_schema(dataset: str) -> pa.Schema:
    """The columns of the sink's files of `dataset` (one of `pipeline.lake.datasets.NAMES`), in file order; the path
    adds PARTITIONS. Telemetry columns come from the batch schemas (`pipeline.model.schemas`)."""
    if dataset == "alerts":
        return ALERTS_SCHEMA
    if dataset == "silences":
        return SILENCES_SCHEMA
    for kind, groups in _DATASETS.items():
        for group, (name, entity) in groups.items():
            if name != dataset:
                continue
            own = [
                pa.field(_RENAME.get(c.name, c.name), pa.from_numpy_dtype(np.dtype(c.dtype)))
                for c in SCHEMAS[kind].group_columns(group)
            ]
            job = [pa.field("job", pa.string())] if dataset in _JOB_DATASETS else []
            return pa.schema(
                [
                    pa.field("ts", TIME_TYPE),
                    pa.field(entity, pa.string()),
                    *job,
                    *own,
                    *_ENRICHED.get(dataset, ()),
                    pa.field("_offset", pa.int64()),
                ]
            )
    raise KeyError(f"no dataset {dataset!r}; the sink writes {', '.join(NAMES)}")


ROW_GROUP_ROWS = 128 * 1024


def partition_files(fs: pafs.FileSystem, root: str) -> dict[str, list[tuple[int, str]]]:
    """Under `root`: '<topic>+<partition>' (the writer partition) -> [(first offset, path)] of every
    worker-written file (`<owner>+<first offset>.parquet`), in no particular order."""
    listing: dict[str, list[tuple[int, str]]] = {}
    for info in fs.get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=True)):
        name = info.base_name
        if info.type != pafs.FileType.File or not name.endswith(".parquet"):
            continue
        owner, _, first = name[: -len(".parquet")].rpartition("+")
        if owner and first.isdigit():
            listing.setdefault(owner, []).append((int(first), info.path))
    return listing


def write_options(schema: pa.Schema, dataset: str = "") -> dict:
    """zstd, scan-sized row groups, and for the telemetry datasets delta encoding of the 64-bit
    columns: rows are sorted by entity and time, so monotonic counters and offsets become small
    deltas (about 40 % smaller port files than dictionary encoding). Alerts keep dictionary
    encoding: DuckDB 2.0.0 answered `root_cause is null` wrongly on a PLAIN-encoded alerts file."""
    deltas = {f.name: "DELTA_BINARY_PACKED" for f in schema if pa.types.is_integer(f.type) and f.type.bit_width == 64}
    options: dict = {"compression": "zstd", "row_group_size": ROW_GROUP_ROWS}
    if deltas and dataset in DELTA_DATASETS:
        options.update(use_dictionary=False, column_encoding=deltas)
    return options


@dataclass
class _Pending:
    """Rows of one dataset waiting for a flush: column chunks (one per batch), and per segment (the
    rows of one source in one batch) its source, row count, offset, time and job."""

    entity_column: str
    offsets: list[int] = field(default_factory=list)
    ts_ms: list[int] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    jobs: list[str] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)
    columns: list[dict[str, np.ndarray]] = field(default_factory=list)
    rows: int = 0


@dataclass
class _PartitionBuffer:
    first_seen: float
    datasets: dict[str, _Pending] = field(default_factory=dict)
    alerts: list[tuple[int, Alert]] = field(default_factory=list)
    silences: list[tuple[int, dict]] = field(default_factory=list)
    last_offset: int = -1
    rows: int = 0


class ParquetSink:
    """Buffers telemetry batches and alerts; writes them as Parquet datasets under `root`."""

    def __init__(
        self,
        root: str | Path,
        *,
        flush_rows: int = 500_000,
        flush_seconds: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        topology: ClusterTopology | None = None,
        stream_tags: dict[str, str] | None = None,
    ) -> None:
        self.store = LakeStore(root)
        self.fs, self.root_path = self.store.fs, self.store.root
        self.stream_tags = dict(stream_tags or {})  # topic -> tag of (consumer group, topic id)
        self.topology = topology
        self._port_links: dict[str, tuple[int, int]] = {}  # switch -> (first link index, ports)
        self._link_list: list[str | None] = []  # every known switch's port links, then a None
        self._link_rails: list[int] = []
        self._link_array: pa.Array | None = None
        self._listing: dict[str, list[tuple[int, str]]] | None = None
        self._listing_lock = threading.Lock()
        self.flush_rows = flush_rows
        self.flush_seconds = flush_seconds
        self.clock = clock
        self._buffers: dict[tuple[str, int], _PartitionBuffer] = {}
        self.files_written = 0
        self.on_file: Callable[[int, int], None] | None = None  # (rows, bytes) of each file written
        self.rows_written = 0

    # ---- buffering ---------------------------------------------------------------------------
    def _buffer(self, topic: str, partition: int) -> _PartitionBuffer:
        key = (topic, partition)
        buf = self._buffers.get(key)
        if buf is None:
            buf = self._buffers[key] = _PartitionBuffer(first_seen=self.clock())
        return buf

    def add_batch(self, topic: str, partition: int, offset: int, batch: Batch) -> bool:
        """Buffer one decoded batch (one source's, or a collector's of many); True if this
        partition is now due for a flush."""
        buf = self._buffer(topic, partition)
        for group, (dataset, entity) in _DATASETS[batch.kind].items():
            cols = {c.name: batch.columns[c.name] for c in batch.schema.group_columns(group)}
            n = len(next(iter(cols.values())))
            if n == 0:
                continue
            pending = buf.datasets.setdefault(dataset, _Pending(entity))
            segments = (
                [(batch.source, n)]
                if batch.parts is None
                else [(source, counts[group]) for source, counts in batch.parts if counts[group]]
            )
            for source, count in segments:
                pending.offsets.append(offset)
                pending.ts_ms.append(batch.ts_ms)
                pending.sources.append(source)
                pending.jobs.append(batch.job)
                pending.counts.append(count)
            pending.columns.append(cols)
            pending.rows += n
            buf.rows += n
        buf.last_offset = max(buf.last_offset, offset)
        return buf.rows >= self.flush_rows

    def add_alert(self, topic: str, partition: int, offset: int, alert: Alert) -> bool:
        buf = self._buffer(topic, partition)
        buf.alerts.append((offset, alert))
        buf.rows += 1
        buf.last_offset = max(buf.last_offset, offset)
        return buf.rows >= self.flush_rows

    def add_silence(self, topic: str, partition: int, offset: int, silence: dict) -> bool:
        """A silence change as `Silence.to_dict` writes it."""
        buf = self._buffer(topic, partition)
        buf.silences.append((offset, silence))
        buf.rows += 1
        buf.last_offset = max(buf.last_offset, offset)
        return buf.rows >= self.flush_rows

    def mark_consumed(self, topic: str, partition: int, offset: int) -> None:
        """Record an offset that produced no rows (e.g. a dead-lettered message)."""
        buf = self._buffer(topic, partition)
        buf.last_offset = max(buf.last_offset, offset)

    def due(self) -> list[tuple[str, int]]:
        """Topic partitions whose buffer is full or old enough to flush."""
        now = self.clock()
        return [
            key
            for key, buf in self._buffers.items()
            if buf.rows >= self.flush_rows or now - buf.first_seen >= self.flush_seconds
        ]

    def pending(self) -> list[tuple[str, int]]:
        return list(self._buffers)

    # ---- writing -----------------------------------------------------------------------------
    def take(self, topic: str, partition: int) -> _PartitionBuffer | None:
        """Detach a partition's buffer for writing (new rows start a new buffer)."""
        return self._buffers.pop((topic, partition), None)

    def put_back(self, topic: str, partition: int, buf: _PartitionBuffer) -> None:
        """Re-attach a buffer whose write failed, before any rows buffered since: the next write
        holds both, under the same first offsets, so its files replace what the failed one left."""
        newer = self._buffers.get((topic, partition))
        if newer is not None:
            for dataset, pending in newer.datasets.items():
                old = buf.datasets.get(dataset)
                if old is None:
                    buf.datasets[dataset] = pending
                    continue
                for name in ("offsets", "ts_ms", "sources", "jobs", "counts", "columns"):
                    getattr(old, name).extend(getattr(pending, name))
                old.rows += pending.rows
            buf.alerts.extend(newer.alerts)
            buf.silences.extend(newer.silences)
            buf.rows += newer.rows
            buf.last_offset = max(buf.last_offset, newer.last_offset)
        self._buffers[(topic, partition)] = buf

    def held_rows(self) -> int:
        return sum(buf.rows for buf in self._buffers.values())

    def discard(self, topic: str, partition: int) -> None:
        """Forget unwritten rows, e.g. of a partition this worker no longer owns."""
        self._buffers.pop((topic, partition), None)

    def discard_uncommitted(self, topic: str, partition: int, from_offset: int) -> list[str]:
        """Delete files of this partition whose rows start at or after `from_offset`.

        Offsets are committed only after a whole buffer is on disk, so a file is either entirely
        committed or entirely not. When a worker (re)starts a partition at its committed offset,
        files written after that commit by a worker that then crashed are removed before they
        can be duplicated by a re-read with other flush boundaries. The lake is listed once for
        all the partitions a worker takes on (`forget_listing` after a rebalance).
        """
        with self._listing_lock:
            if self._listing is None:
                self._listing = self._list_partition_files()
            files = self._listing.pop(self._owner(topic, partition), [])
        removed = []
        for first, path in files:
            if first >= from_offset:
                self.fs.delete_file(path)
                removed.append(path)
        return removed

    def _owner(self, topic: str, partition: int) -> str:
        """The part of a file name before its offset: whose rows these are."""
        tag = self.stream_tags.get(topic)
        return f"{topic}+{partition}@{tag}" if tag else f"{topic}+{partition}"

    def forget_listing(self) -> None:
        """Partitions were reassigned: list the lake afresh when one is next taken on."""
        with self._listing_lock:
            self._listing = None

    def _list_partition_files(self) -> dict[str, list[tuple[int, str]]]:
        return partition_files(self.fs, self.root_path)

    def write(self, topic: str, partition: int, buf: _PartitionBuffer | None) -> int:
        """Write a detached buffer; return the last offset now durable (-1: nothing). Thread-safe."""
        if buf is None:
            return -1
        for dataset, pending in buf.datasets.items():
            self._write(dataset, topic, partition, self._table(dataset, pending))
        if buf.alerts:
            self._write("alerts", topic, partition, _alerts_table(buf.alerts))
        if buf.silences:
            self._write("silences", topic, partition, _silences_table(buf.silences))
        return buf.last_offset

    def flush(self, topic: str, partition: int) -> int:
        """Write the partition's buffer now; return the last offset that is durable."""
        return self.write(topic, partition, self.take(topic, partition))

    def flush_all(self) -> dict[tuple[str, int], int]:
        return {key: self.flush(*key) for key in list(self._buffers)}

    def _table(self, dataset: str, p: _Pending) -> pa.Table:
        """The buffered rows as one table sorted by entity, sub-entity and time (DuckDB prunes row
        groups by their statistics; delta encoding wants each counter's samples together). Sorted
        in numpy on one integer key, then every column taken once; names come from a dictionary of
        the buffer's sources, so no Python string is made per row."""
        counts = np.asarray(p.counts, np.int64)
        names, segment_code = np.unique(np.asarray(p.sources), return_inverse=True)
        ticks, segment_tick = np.unique(np.asarray(p.ts_ms, np.int64), return_inverse=True)
        columns = {_RENAME.get(name, name): np.concatenate([c[name] for c in p.columns]) for name in p.columns[0]}
        code = np.repeat(segment_code.astype(np.int64), counts)
        tick = np.repeat(segment_tick.astype(np.int64), counts)
        sub = columns.get(_SUB_ENTITY.get(dataset, ""))
        order = _sort_order(code, sub, tick)

        def rows(values: np.ndarray) -> np.ndarray:
            return values if order is None else values[order]

        code, tick = rows(code), rows(tick)
        data: dict[str, pa.Array | np.ndarray] = {
            "ts": pa.array(ticks[tick], TIME_TYPE),
            p.entity_column: pa.array(names, pa.string()).take(pa.array(code)),
        }
        if any(p.jobs):
            jobs, segment_job = np.unique(np.asarray(p.jobs), return_inverse=True)
            data["job"] = pa.array(jobs, pa.string()).take(pa.array(rows(np.repeat(segment_job, counts))))
        for name, values in columns.items():
            data[name] = rows(values)
        if self.topology is not None:
            self._enrich(dataset, p, data, order)
        data["_offset"] = rows(np.repeat(np.asarray(p.offsets, np.int64), counts))
        return pa.table(data)

    def _enrich(self, dataset: str, p: _Pending, data: dict, order: np.ndarray | None) -> None:
        """ClusterTopology names that make the lake queryable without the topology: a port's link and
        rail, a rank's card. `data` holds the sorted columns; `order` maps them to the buffer's."""
        topo = self.topology
        assert topo is not None  # called only with a topology
        if dataset == "step":
            data["card"] = (data["rank"] % topo.cards_per_node).astype(np.uint8)
        elif dataset == "port":
            counts = np.asarray(p.counts, np.int64)
            firsts, sizes = zip(*(self._links_of(source) for source in p.sources))
            first = np.repeat(np.asarray(firsts, np.int64), counts)
            size = np.repeat(np.asarray(sizes, np.int64), counts)
            if order is not None:
                first, size = first[order], size[order]
            # ports past a switch's known ones point at the switch's trailing "no link" slot
            index = first + np.minimum(data["port"].astype(np.int64), size)
            data["link"] = self._link_names().take(pa.array(index))
            rail_values = np.asarray(self._link_rails, np.int16)[index]
            data["rail"] = pa.array(rail_values, pa.int16(), mask=rail_values < 0)

    def _links_of(self, switch: str) -> tuple[int, int]:
        """(first index of the switch's links in the link table, its number of ports)."""
        found = self._port_links.get(switch)
        if found is None:
            topo = self.topology
            assert topo is not None  # called by _enrich, only with a topology
            try:
                names = [topo.port_link(switch, port) for port in range(topo.switch_ports(switch))]
            except UnknownEntity:
                names = []
            rails = [topo.link_rail(n) for n in names]
            found = self._port_links[switch] = (len(self._link_list), len(names))
            self._link_list += names + [None]
            self._link_rails += rails + [-1]
            self._link_array = None
        return found

    def _link_names(self) -> pa.Array:
        if self._link_array is None:
            self._link_array = pa.array(self._link_list, pa.string())
        return self._link_array

    def _write(self, dataset: str, topic: str, partition: int, table: pa.Table) -> None:
        """One file per hour of data, named by the first offset of its rows; written whole or not at all
        (`LakeStore.publish`)."""
        ts = table.column("ts").cast(pa.int64()).to_numpy()
        hours = ts // 3_600_000
        offsets = table.column("_offset").to_numpy()
        for hour in np.unique(hours):
            mask = hours == hour
            part = table.filter(pa.array(mask)) if len(np.unique(hours)) > 1 else table
            first_offset = int(offsets[mask].min())
            stamp = np.datetime64(int(hour) * 3600, "s").astype(object)
            relative = f"{dataset}/date={stamp:%Y-%m-%d}/hour={stamp:%H}"
            name = f"{self._owner(topic, partition)}+{first_offset:020d}.parquet"
            staged = self.store.staging_file(f"{relative}/{name}")
            try:  # a full disk leaves no half-written file behind
                pq.write_table(part, staged, **write_options(part.schema, dataset))
            except OSError:
                staged.unlink(missing_ok=True)
                raise
            size = self.store.publish(staged, f"{relative}/{name}")
            self.files_written += 1
            if self.on_file is not None:
                self.on_file(part.num_rows, size)
            self.rows_written += part.num_rows


def _sort_order(code: np.ndarray, sub: np.ndarray | None, tick: np.ndarray) -> np.ndarray | None:
    """Row order by (entity code, sub-entity, tick), stable; None when the rows are in order."""
    sub = np.zeros(len(code), np.int64) if sub is None else sub.astype(np.int64)
    bits = [int(x.max()).bit_length() if len(x) else 0 for x in (code, sub, tick)]
    if len(code) and min(int(sub.min()), 0) == 0 and sum(bits) <= 63:
        key = (code << (bits[1] + bits[2])) | (sub << bits[2]) | tick
        if bool(np.all(key[1:] >= key[:-1])):
            return None
        return np.argsort(key, kind="stable")
    return np.lexsort((tick, sub, code))


def _ts(value: str | None) -> int | None:
    if value is None:
        return None
    return int(np.datetime64(value.replace("Z", ""), "ms").astype(np.int64))


def _alerts_table(alerts: list[tuple[int, Alert]]) -> pa.Table:
    ts = _ts
    rows = [a for _, a in alerts]
    return pa.table(
        {  # typed by ALERTS_SCHEMA: a batch without any root_cause still has a text column
            "ts": [ts(a.ends_at or a.starts_at) for a in rows],
            "id": [a.id for a in rows],
            "kind": [a.kind for a in rows],
            "entity": [a.entity for a in rows],
            "status": [a.status for a in rows],
            "starts_at": [ts(a.starts_at) for a in rows],
            "ends_at": [ts(a.ends_at) for a in rows],
            "severity": [a.severity for a in rows],
            "summary": [a.summary for a in rows],
            "root_cause": [a.root_cause for a in rows],
            "labels": [json.dumps(a.labels, sort_keys=True) for a in rows],
            "evidence": [json.dumps(a.evidence, sort_keys=True) for a in rows],
            "silenced_by": [list(a.silenced_by) for a in rows],
            "_offset": [o for o, _ in alerts],
        },
        schema=ALERTS_SCHEMA,
    )


def _silences_table(changes: list[tuple[int, dict]]) -> pa.Table:
    def matcher(m: dict) -> str:
        return str(Matcher(m["name"], m["value"], bool(m.get("isRegex", False)), bool(m.get("isEqual", True))))

    rows = [s for _, s in changes]
    return pa.table(
        {
            "ts": [_ts(s.get("updatedAt")) for s in rows],
            "id": [s["id"] for s in rows],
            "matchers": [[matcher(m) for m in s["matchers"]] for s in rows],
            "starts_at": [_ts(s["startsAt"]) for s in rows],
            "ends_at": [_ts(s["endsAt"]) for s in rows],
            "created_by": [s.get("createdBy", "") for s in rows],
            "comment": [s.get("comment", "") for s in rows],
            "_offset": [o for o, _ in changes],
        },
        schema=SILENCES_SCHEMA,
    )
