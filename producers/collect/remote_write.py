"""Prometheus remote_write 1.0 decoder: request body → `producers.adapters.prometheus.Sample`.

A remote_write 1.0 body (https://prometheus.io/docs/specs/prw/remote_write_spec/) is a
`prometheus.WriteRequest` protobuf compressed with snappy's *block* format (not the framed one):

    WriteRequest{repeated TimeSeries timeseries = 1; repeated MetricMetadata metadata = 3;}
    TimeSeries{repeated Label labels = 1; repeated Sample samples = 2;
               repeated Exemplar exemplars = 3; repeated Histogram histograms = 4;}
    Label{string name = 1; string value = 2;}   Sample{double value = 1; int64 timestamp = 2;}  // ms

Libraries: `cramjam` (Rust snappy, already a dependency) and `protobuf` (its upb C core). No protoc
step: the message classes are built at import time from a `FileDescriptorProto` written below, in a
private descriptor pool. Only the fields above are declared: metadata, exemplars and native
histograms are unknown fields to this schema, which protobuf skips, so they are dropped.

Speed: Python attribute access on protobuf objects is the cost, so the fast path lets upb do the
walking through *views* of the schema (same wire format, other declared types) and touches no
message object per series:
- series keys: each series' labels re-serialized as one `bytes` (upb: parse with labels as
  `repeated bytes`, drop unknown fields, serialize, parse as `repeated bytes timeseries`). The key
  is the exact wire form of the label list; it indexes a bounded cache of `(name, labels dict)`, and
  since series repeat between requests the `Label` messages are parsed only the first time a series
  is seen. The labels dict is shared by every sample of that series: treat it as read-only.
- sample columns: with `timeseries` and `samples` declared as singular messages, protobuf *merges*
  all their occurrences, so `value` and `timestamp` declared `repeated` come out as two flat columns.
  Proto3 leaves out zero fields (value 0.0 is common), so each sample's first bytes are checked
  (the per-series samples, again as bytes) and the column counts must match exactly; any other
  layout (timestamp 0, unusual field order, ...) falls back to the plain, slower message walk.
"""

from __future__ import annotations

import sys
import time
from typing import Any, cast

import cramjam
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from producers.adapters.prometheus import Sample

MAX_DECOMPRESSED_BYTES = 64 * 1024 * 1024
CACHE_LIMIT = 500_000  # label sets kept (~600 B each for DCGM-like series); cleared when it reaches this


class RemoteWriteError(ValueError):
    """A body that is not a remote_write 1.0 request; `str()` is a one-line reason (an HTTP 400 body)."""


class _NotCanonical(Exception):
    """The fast path cannot prove its reading of this request; use the message walk."""


def _schema() -> dict[str, Any]:
    """prometheus.{WriteRequest,TimeSeries,Label,Sample} and the views the fast path reads them with.

    The classes are made at runtime from a descriptor, so their fields have no static types (`Any`)."""
    f = descriptor_pb2.FieldDescriptorProto
    one, many = f.LABEL_OPTIONAL, f.LABEL_REPEATED
    file = descriptor_pb2.FileDescriptorProto(
        name="clusterpulse/prometheus_remote_write.proto", package="prometheus", syntax="proto3"
    )

    def message(name: str, *fields: tuple[str, int, int, int, str]) -> None:
        msg = file.message_type.add(name=name)
        for field_name, number, label, kind, type_name in fields:
            msg.field.add(
                name=field_name,
                number=number,
                label=label,
                type=kind,
                **({"type_name": f".prometheus.{type_name}"} if type_name else {}),
            )

    msg, string, raw = f.TYPE_MESSAGE, f.TYPE_STRING, f.TYPE_BYTES
    message("Label", ("name", 1, one, string, ""), ("value", 2, one, string, ""))
    message("Sample", ("value", 1, one, f.TYPE_DOUBLE, ""), ("timestamp", 2, one, f.TYPE_INT64, ""))
    message("TimeSeries", ("labels", 1, many, msg, "Label"), ("samples", 2, many, msg, "Sample"))
    message("WriteRequest", ("timeseries", 1, many, msg, "TimeSeries"))
    # Views, wire-compatible with the above.
    message("RawView", ("timeseries", 1, many, raw, ""))  # each series as bytes
    message("SeriesLabelsView", ("labels", 1, many, raw, ""))
    message("LabelsView", ("timeseries", 1, many, msg, "SeriesLabelsView"))
    message("SeriesSamplesView", ("samples", 2, many, raw, ""))
    message("SamplesView", ("timeseries", 1, many, msg, "SeriesSamplesView"))
    message("LabelColumns", ("name", 1, many, string, ""), ("value", 2, many, string, ""))
    message("LabelColumnsView", ("labels", 1, one, msg, "LabelColumns"))  # singular: occurrences merge
    message("SampleColumns", ("value", 1, many, f.TYPE_DOUBLE, ""), ("timestamp", 2, many, f.TYPE_INT64, ""))
    message("SeriesColumns", ("samples", 2, one, msg, "SampleColumns"))  # singular: occurrences merge
    message("ColumnsView", ("timeseries", 1, one, msg, "SeriesColumns"))
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return {
        m.name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"prometheus.{m.name}"))
        for m in file.message_type
    }


_CLASSES = _schema()
WriteRequest, TimeSeries = _CLASSES["WriteRequest"], _CLASSES["TimeSeries"]
_RawView, _LabelsView = _CLASSES["RawView"], _CLASSES["LabelsView"]
_SamplesView, _ColumnsView = _CLASSES["SamplesView"], _CLASSES["ColumnsView"]
_LabelColumnsView = _CLASSES["LabelColumnsView"]

_NO_NAME: tuple[None, None] = (None, None)
_Entry = tuple[str, dict[str, str]] | tuple[None, None]
_series_cache: dict[bytes, _Entry] = {}


def _reason(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:200] or type(exc).__name__


def _per_series(raw: bytes, view: Any) -> list[bytes]:
    """Each series' fields declared in `view`, re-serialized as one bytes per series."""
    request = view.FromString(raw)
    request.DiscardUnknownFields()
    return list(_RawView.FromString(request.SerializeToString()).timeseries)


def _series(key: bytes) -> _Entry:
    """Parse a label set seen for the first time and remember it; `(None, None)` without `__name__`."""
    try:
        labels = {sys.intern(label.name): sys.intern(label.value) for label in TimeSeries.FromString(key).labels}
    except Exception as exc:  # noqa: BLE001 - e.g. a label that is not UTF-8
        raise RemoteWriteError(f"not a protobuf WriteRequest: {_reason(exc)}") from None
    name = labels.pop("__name__", "")
    entry = (name, labels) if name else _NO_NAME
    if len(_series_cache) >= CACHE_LIMIT:
        _series_cache.clear()
    _series_cache[key] = entry
    return entry


_SEPARATOR = b"\x0a\x06\x0a\x01\x00\x12\x01\x00"  # the label {"\0": "\0"}, between joined keys


def _learn(keys: list[bytes]) -> None:
    """Parse the label sets of a request's new series at once: the joined keys (with a separator
    label after each) read as two flat columns, names and values. That reading is exact when the
    joined bytes are canonical (re-serializing them gives the same bytes) and the columns are as
    long as the list of labels; otherwise the keys are parsed one by one."""
    blob = _SEPARATOR.join(keys) + _SEPARATOR
    try:
        columns = _LabelColumnsView.FromString(blob).labels
        names, values = list(map(sys.intern, columns.name)), list(map(sys.intern, columns.value))
        typed = TimeSeries.FromString(blob)
        if not len(names) == len(values) == len(typed.labels) or typed.SerializeToString() != blob:
            raise _NotCanonical
        learnt: list[_Entry] = []
        start = 0
        for _ in keys:
            end = names.index("\0", start)
            labels = dict(zip(names[start:end], values[start:end]))
            name = labels.pop("__name__", "")
            learnt.append((name, labels) if name else _NO_NAME)
            start = end + 1
        if start != len(names):  # a key with a "\0" label of its own
            raise _NotCanonical
    except Exception:  # noqa: BLE001 - _NotCanonical, a label that is not UTF-8, ...: one by one
        for key in keys:
            _series(key)
        return
    if len(_series_cache) + len(keys) > CACHE_LIMIT:
        _series_cache.clear()
    _series_cache.update(zip(keys, learnt))


def _decompress(body: bytes, content_encoding: str | None) -> bytes:
    encoding = (content_encoding or "snappy").strip().lower()
    if encoding != "snappy":
        raise RemoteWriteError(
            f"unsupported Content-Encoding {(content_encoding or '')[:40]!r}: remote_write 1.0 is snappy"
        )
    if not body:
        raise RemoteWriteError("empty body")
    try:
        size = cramjam.snappy.decompress_raw_len(body)
        if size > MAX_DECOMPRESSED_BYTES:
            raise RemoteWriteError(f"body decompresses to {size} bytes, over the {MAX_DECOMPRESSED_BYTES} byte cap")
        return bytes(cramjam.snappy.decompress_raw(body))
    except RemoteWriteError:
        raise
    except Exception as exc:  # noqa: BLE001 - cramjam.DecompressionError and kin
        raise RemoteWriteError(f"body is not snappy-compressed: {_reason(exc)}") from None


def decode_write_request(body: bytes, content_encoding: str | None = "snappy") -> tuple[list[Sample], int]:
    """The samples of a remote_write 1.0 body, and how many series were skipped for having no `__name__`.

    `content_encoding` is the request's Content-Encoding header: "snappy", as the spec requires; a
    missing or empty header is taken as snappy too. Raises `RemoteWriteError` and nothing else.
    """
    raw = _decompress(body, content_encoding)
    try:
        keys = _per_series(raw, _LabelsView)
    except Exception as exc:  # noqa: BLE001 - DecodeError and kin
        raise RemoteWriteError(f"not a protobuf WriteRequest: {_reason(exc)}") from None
    try:
        return _decode_fast(raw, keys)
    except RemoteWriteError:
        raise
    except Exception:  # noqa: BLE001 - _NotCanonical, or a view that does not fit: the walk decides
        return _decode_walk(raw, keys)


def _decode_fast(raw: bytes, keys: list[bytes]) -> tuple[list[Sample], int]:
    """Flat columns checked against each sample's leading bytes; `_NotCanonical` when they do not fit.

    A sample whose bytes start `09 <8 bytes> 10` holds at least one value and one timestamp, one
    starting `10` at least a timestamp (value 0.0); the columns must hold exactly that many.
    """
    cached = list(map(_series_cache.get, keys))
    if None in cached:
        _learn(list(dict.fromkeys(key for key, entry in zip(keys, cached) if entry is None)))
        cached = [entry or _series_cache.get(key) or _series(key) for key, entry in zip(keys, cached)]
    entries = cast("list[_Entry]", cached)  # no None left: each missing entry was learnt just above
    columns = _ColumnsView.FromString(raw).timeseries.samples
    values, stamps = iter(columns.value), iter(columns.timestamp)
    next_value, next_stamp = values.__next__, stamps.__next__
    out: list[Sample] = []
    append, skipped = out.append, 0
    for (name, labels), section in zip(entries, _per_series(raw, _SamplesView), strict=True):
        if name is None:
            skipped += 1
        if not section:
            continue
        if section[1] + 2 == len(section):  # one sample, the usual case (never true for a longer size varint)
            kind = section[2]
            if kind == 9 and section[11] == 16:
                value = next_value()
            elif kind == 16:
                value = 0.0
            else:
                raise _NotCanonical
            if name is None or labels is None:  # both None together (_NO_NAME)
                next_stamp()
            else:
                append(Sample(name, labels, value, next_stamp()))
            continue
        pos = 0
        while pos < len(section):  # several samples: upb wrote them back to back as `12 <size> <sample>`
            size = section[pos + 1]
            if size > 127:
                raise _NotCanonical
            kind = section[pos + 2]
            if kind == 9 and section[pos + 11] == 16:
                value = next_value()
            elif kind == 16:
                value = 0.0
            else:
                raise _NotCanonical
            stamp = next_stamp()
            if name is not None and labels is not None:
                append(Sample(name, labels, value, stamp))
            pos += size + 2
    if next(values, None) is not None or next(stamps, None) is not None:
        raise _NotCanonical
    return out, skipped


def _decode_walk(raw: bytes, keys: list[bytes]) -> tuple[list[Sample], int]:
    """The plain reading, one message object at a time: any valid request."""
    try:
        request = WriteRequest.FromString(raw)
    except Exception as exc:  # noqa: BLE001
        raise RemoteWriteError(f"not a protobuf WriteRequest: {_reason(exc)}") from None
    out: list[Sample] = []
    skipped = 0
    for key, series in zip(keys, request.timeseries, strict=True):
        name, labels = _series_cache.get(key) or _series(key)
        if name is None or labels is None:
            skipped += 1
            continue
        out.extend(Sample(name, labels, s.value, s.timestamp) for s in series.samples)
    return out, skipped


def encode_write_request(samples: list[Sample]) -> bytes:
    """A snappy-compressed WriteRequest, one series per distinct (name, labels) with labels sorted by
    name as Prometheus sends them; a sample without timestamp gets the current time. For tests and benchmarks."""
    now = int(time.time() * 1000)
    request = WriteRequest()
    series: dict[tuple[tuple[str, str], ...], Any] = {}
    for sample in samples:
        key = tuple(sorted({**sample.labels, "__name__": sample.name}.items()))
        ts = series.get(key)
        if ts is None:
            ts = series[key] = request.timeseries.add()
            for name, value in key:
                ts.labels.add(name=name, value=value)
        ts.samples.add(value=sample.value, timestamp=now if sample.ts_ms is None else sample.ts_ms)
    return bytes(cramjam.snappy.compress_raw(request.SerializeToString()))


def _bench_requests(batch: int = 2000) -> list[bytes]:
    """1,280 nodes x 8 GPUs x 9 DCGM metrics + 640 switches x 64 ports x 5 if_mib metrics, one sample
    each, in requests of `batch` series (Prometheus' default max_samples_per_send)."""
    ts = int(time.time() * 1000)
    dcgm = [
        "DCGM_FI_DEV_GPU_UTIL",
        "DCGM_FI_DEV_GPU_TEMP",
        "DCGM_FI_DEV_POWER_USAGE",
        "DCGM_FI_DEV_FB_USED",
        "DCGM_FI_DEV_FB_FREE",
        "DCGM_FI_DEV_SM_CLOCK",
        "DCGM_FI_DEV_MEM_CLOCK",
        "DCGM_FI_DEV_XID_ERRORS",
        "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL",
    ]
    dcgm_values = [87.0, 64.0, 612.25, 61440.0, 20480.0, 1980.0, 2619.0, 0.0, 0.0]
    if_mib = ["ifHCInOctets", "ifHCOutOctets", "ifInErrors", "ifOutErrors", "ifOperStatus"]
    samples: list[Sample] = []
    for node in range(1280):
        host = f"gpu-node-{node:04d}"
        for gpu in range(8):
            labels = {
                "gpu": str(gpu),
                "UUID": f"GPU-{node:04x}{gpu:04x}-5b1c-4f2a-9e7d-0c3b2a1f{node:04x}",
                "device": f"nvidia{gpu}",
                "modelName": "NVIDIA H100 80GB HBM3",
                "Hostname": host,
                "instance": f"{host}:9400",
                "job": "dcgm",
            }
            samples += [Sample(m, labels, v + gpu * (v > 0), ts + node) for m, v in zip(dcgm, dcgm_values)]
    for switch in range(640):
        for port in range(64):
            labels = {
                "ifIndex": str(port + 1),
                "ifName": f"Ethernet{port * 4}",
                "ifAlias": f"to-gpu-node-{(switch * 64 + port) % 1280:04d}-nic{port % 8}",
                "instance": f"leaf-{switch:03d}.fabric",
                "job": "snmp",
            }
            values = [9.87e12 + port * 1e9, 8.76e12 + port * 1e9, 0.0, float(port % 3 == 0), 1.0]
            samples += [Sample(m, labels, v, ts + switch) for m, v in zip(if_mib, values)]
    return [encode_write_request(samples[i : i + batch]) for i in range(0, len(samples), batch)]


def bench(rounds: int = 5) -> None:
    """Print decode throughput on one core (process CPU time, so other load on the machine matters
    less): the first pass on an empty label cache, then the best of `rounds` warm passes."""
    requests = _bench_requests()
    _series_cache.clear()
    started = time.process_time()
    total = sum(len(decode_write_request(body)[0]) for body in requests)
    cold = time.process_time() - started
    print(
        f"{len(requests)} requests of <= 2,000 series, {total:,} samples, {sum(map(len, requests)) / 1e6:.1f} MB snappy"
    )
    print(f"cold cache: {total / cold:,.0f} samples/s ({cold * 1000:.0f} ms)")
    warm = []
    for _ in range(rounds):
        started = time.process_time()
        for body in requests:
            decode_write_request(body)
        warm.append(time.process_time() - started)
    print(
        f"warm cache: {total / min(warm):,.0f} samples/s best, {total * len(warm) / sum(warm):,.0f} mean "
        f"({min(warm) * 1000:.0f} ms for all)"
    )
    started = time.process_time()
    for body in requests:
        raw = _decompress(body, "snappy")
        _decode_walk(raw, _per_series(raw, _LabelsView))
    walk = time.process_time() - started
    print(f"message walk only (the fallback), warm cache: {total / walk:,.0f} samples/s")


if __name__ == "__main__":
    bench()
