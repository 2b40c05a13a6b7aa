"""Prometheus remote_write 1.0 decoding: round trips, skipped series, every error reason, and
hypothesis: odd but valid encodings read as the plain protobuf reading does, garbage only ever
raises RemoteWriteError."""

from __future__ import annotations

import math
import struct

import cramjam
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from producers.adapters.prometheus import Sample
from producers.collect import remote_write as rw
from producers.collect.remote_write import RemoteWriteError, decode_write_request, encode_write_request

STALE_NAN = struct.unpack("<d", struct.pack("<Q", 0x7FF0000000000002))[0]  # Prometheus' staleness marker


def bits(value: float) -> int:
    return struct.unpack("<Q", struct.pack("<d", value))[0]


def key(sample: Sample) -> tuple:
    """Comparable form of a sample: NaN payloads exact, -0.0 apart from 0.0."""
    return sample.name, sorted(sample.labels.items()), bits(sample.value), sample.ts_ms


def snappy(raw: bytes) -> bytes:
    return bytes(cramjam.snappy.compress_raw(raw))


def reference(body: bytes) -> tuple[list[tuple], int]:
    """The plain reading: the typed messages, walked one by one, no cache."""
    request = rw.WriteRequest.FromString(bytes(cramjam.snappy.decompress_raw(body)))
    out, skipped = [], 0
    for series in request.timeseries:
        labels = {label.name: label.value for label in series.labels}
        name = labels.pop("__name__", "")
        if not name:
            skipped += 1
            continue
        out += [(name, sorted(labels.items()), bits(s.value), s.timestamp) for s in series.samples]
    return out, skipped


@pytest.fixture(autouse=True)
def empty_cache():
    rw._series_cache.clear()
    yield
    rw._series_cache.clear()


DCGM = {
    "gpu": "3",
    "UUID": "GPU-5b1c4f2a-9e7d-0c3b-2a1f-000000000003",
    "device": "nvidia3",
    "modelName": "NVIDIA H100 80GB HBM3",
    "Hostname": "gpu-node-0007",
    "instance": "gpu-node-0007:9400",
    "job": "dcgm",
}


def test_round_trip_exact() -> None:
    samples = [
        Sample("DCGM_FI_DEV_GPU_TEMP", DCGM, 64.0, 1_700_000_000_123),
        Sample("DCGM_FI_DEV_XID_ERRORS", DCGM, 0.0, 1_700_000_000_123),
        Sample(
            "ifHCInOctets",
            {
                "ifIndex": "7",
                "ifName": "Ethernet24",
                "ifAlias": "to gpu-node-0007 ✓",
                "instance": "leaf-001",
                "job": "snmp",
            },
            9.87e15,
            1_700_000_000_456,
        ),
        Sample("up", {}, 1.0, 1),
        Sample("empty_value", {"a": ""}, 0.0, 2**63 - 1),
        Sample("weird", {"x": 'quote " back\\slash\nnewline', "é": "ü"}, -math.inf, -5),
        Sample("big", {"b": "v" * 300}, math.inf, 1_700_000_000_000),
        Sample("stale", DCGM, STALE_NAN, 9),
    ]
    for _ in range(2):  # cold label cache, then warm
        got, skipped = decode_write_request(encode_write_request(samples))
        assert skipped == 0
        assert [key(s) for s in got] == [key(s) for s in samples]
        assert all("__name__" not in s.labels for s in got)
        assert got[0].labels == DCGM and got[0].ts_ms == 1_700_000_000_123 and isinstance(got[0].ts_ms, int)
        assert bits(got[-1].value) == bits(STALE_NAN)


def test_series_order_and_several_samples_per_series() -> None:
    samples = [Sample("m", {"i": str(i % 3)}, float(i), 1000 + i) for i in range(12)]
    got, _ = decode_write_request(encode_write_request(samples))
    expected = sorted(samples, key=lambda s: (int(s.labels["i"]), s.ts_ms))  # grouped per series, first seen first
    assert [key(s) for s in got] == [key(s) for s in expected]
    raw = bytes(cramjam.snappy.decompress_raw(encode_write_request(samples)))
    assert rw._decode_fast(raw, rw._per_series(raw, rw._LabelsView))[0] == got  # the fast path reads it


def test_prometheus_like_body_takes_the_fast_path() -> None:
    body = encode_write_request(
        [Sample("DCGM_FI_DEV_FB_USED", {**DCGM, "gpu": str(g)}, g * 1.5, 1_700_000_000_000) for g in range(8)]
    )
    raw = bytes(cramjam.snappy.decompress_raw(body))
    keys = rw._per_series(raw, rw._LabelsView)
    fast, skipped = rw._decode_fast(raw, keys)  # raises _NotCanonical if it would fall back
    assert [key(s) for s in fast] == reference(body)[0] and skipped == 0


def test_series_without_name_skipped_and_counted() -> None:
    request = rw.WriteRequest()
    for labels, value in [
        ({"__name__": "up", "job": "a"}, 1.0),
        ({"job": "b"}, 2.0),
        ({"__name__": "", "job": "c"}, 3.0),
        ({"__name__": "up", "job": "d"}, 4.0),
    ]:
        series = request.timeseries.add()
        for name, label_value in labels.items():
            series.labels.add(name=name, value=label_value)
        series.samples.add(value=value, timestamp=10)
        series.samples.add(value=value + 0.5, timestamp=20)
    request.timeseries.add()  # an empty series
    for _ in range(2):
        got, skipped = decode_write_request(snappy(request.SerializeToString()))
        assert skipped == 3
        assert [(s.labels["job"], s.value, s.ts_ms) for s in got] == [
            ("a", 1.0, 10),
            ("a", 1.5, 20),
            ("d", 4.0, 10),
            ("d", 4.5, 20),
        ]


def test_empty_request_and_encodings() -> None:
    assert decode_write_request(snappy(b"")) == ([], 0)
    body = encode_write_request([Sample("up", {"job": "x"}, 1.0, 5)])
    for encoding in ("snappy", None, "", "Snappy", " snappy "):
        assert [key(s) for s in decode_write_request(body, encoding)[0]] == [("up", [("job", "x")], bits(1.0), 5)]


@pytest.mark.parametrize(
    "body, encoding, reason",
    [
        (b"", "snappy", "empty body"),
        (b"", None, "empty body"),
        (b"\x0a\x02hi", "gzip", "unsupported Content-Encoding 'gzip'"),
        (b"\x0a\x02hi", "identity", "unsupported Content-Encoding 'identity'"),
        (b"\xff\xff\xff\xff\xff\xff", "snappy", "body is not snappy-compressed: "),
        (b"\x05abc", "snappy", "body is not snappy-compressed: "),
        (bytes(cramjam.gzip.compress(b"x" * 100)), "snappy", "body is not snappy-compressed: "),
        (b"\x80\x80\x80\x21" + b"\x00" * 8, "snappy", "over the 67108864 byte cap"),  # header says 66 MiB
        (snappy(b"\x0a\x05\x0a\x03"), "snappy", "not a protobuf WriteRequest: "),  # truncated series
        (snappy(b"\xff\xff\xff"), "snappy", "not a protobuf WriteRequest: "),
        (snappy(b"\x0a\x07\x0a\x05\x0a\x01a\x12\x80"), "snappy", "not a protobuf WriteRequest: "),  # truncated label
        (snappy(b"\x0a\x09\x0a\x07\x0a\x01a\x12\x02\xc3\x28"), "snappy", "not a protobuf WriteRequest: "),  # not UTF-8
    ],
)
def test_error_reasons(body: bytes, encoding: str | None, reason: str) -> None:
    with pytest.raises(RemoteWriteError) as caught:
        decode_write_request(body, encoding)
    message = str(caught.value)
    assert reason in message and "\n" not in message and len(message) < 300


def test_cap_is_checked_before_decompressing() -> None:
    body = snappy(b"\x00" * (rw.MAX_DECOMPRESSED_BYTES + 1))
    with pytest.raises(RemoteWriteError, match="over the 67108864 byte cap"):
        decode_write_request(body)


def test_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rw, "CACHE_LIMIT", 10)
    for round_ in range(3):
        samples = [Sample("m", {"i": str(i)}, float(i), round_) for i in range(8)]
        got, _ = decode_write_request(encode_write_request(samples))
        assert [key(s) for s in got] == [key(s) for s in samples]
        assert len(rw._series_cache) <= 10


# -- hypothesis: odd but valid encodings, and garbage ---------------------------------------------


def varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def field(number: int, wire: int, payload: bytes | int) -> bytes:
    tag = varint(number << 3 | wire)
    if wire == 0:
        return tag + varint(payload)
    if wire == 2:
        return tag + varint(len(payload)) + payload
    return tag + payload  # fixed 64


TEXT = st.one_of(st.sampled_from(["__name__", "job", "instance", "up", "", "\0", "é", "x" * 130]), st.text(max_size=6))
VALUES = st.one_of(st.sampled_from([0.0, -0.0, 1.0, math.nan, STALE_NAN, math.inf]), st.floats())
STAMPS = st.one_of(
    st.sampled_from([0, 1, 1_700_000_000_000, -1, 2**63 - 1, -(2**63)]), st.integers(-(2**63), 2**63 - 1)
)


@st.composite
def label_bytes(draw) -> bytes:
    name, value = draw(TEXT), draw(TEXT)
    style = draw(
        st.sampled_from(
            ["canonical"] * 4
            + ["explicit empty", "value first", "twice", "unknown field", "name only", "value only", "value twice"]
        )
    )
    n, v = field(1, 2, name.encode()), field(2, 2, value.encode())
    if style == "canonical":
        return (n if name else b"") + (v if value else b"")
    return {
        "explicit empty": n + v,
        "value first": v + n,
        "twice": n + v + field(1, 2, b"dup"),
        "unknown field": n + field(7, 0, 3) + v,
        "name only": n,
        "value only": v,
        "value twice": v + field(2, 2, b"dup"),
    }[style]


@st.composite
def sample_bytes(draw) -> bytes:
    value, stamp = draw(VALUES), draw(STAMPS)
    style = draw(
        st.sampled_from(
            ["canonical"] * 4
            + ["both explicit", "stamp first", "value twice", "stamp twice", "packed value", "unknown field", "empty"]
        )
    )
    v, t = field(1, 1, struct.pack("<d", value)), field(2, 0, stamp)
    if style == "canonical":
        return (v if bits(value) else b"") + (t if stamp else b"")
    return {
        "both explicit": v + t,
        "stamp first": t + v,
        "value twice": v + field(1, 1, struct.pack("<d", 2.5)) + t,
        "stamp twice": v + t + field(2, 0, 7),
        "packed value": field(1, 2, struct.pack("<d", value)) + t,
        "unknown field": v + t + field(5, 2, b"ex"),
        "empty": b"",
    }[style]


@st.composite
def request_bytes(draw) -> bytes:
    out = b""
    for _ in range(draw(st.integers(0, 6))):
        labels = draw(st.lists(label_bytes(), max_size=6))
        if draw(st.booleans()):
            labels.insert(draw(st.integers(0, len(labels))), field(1, 2, field(1, 2, b"__name__") + field(2, 2, b"m")))
        parts = [field(1, 2, label) for label in labels]
        parts += [field(2, 2, sample) for sample in draw(st.lists(sample_bytes(), max_size=3))]
        if draw(st.integers(0, 5)) == 0:
            parts.append(field(3, 2, field(1, 2, b"exemplar")))  # exemplars and histograms: dropped
        if draw(st.integers(0, 5)) == 0:
            parts.insert(0, field(2, 2, field(1, 1, struct.pack("<d", 7.0)) + field(2, 0, 1)))  # sample first
        series = b"".join(parts)
        out += field(1, 2, series)
        if draw(st.integers(0, 8)) == 0:
            out += field(3, 2, field(2, 2, b"metadata"))
    return out


NAME = field(1, 2, field(1, 2, b"__name__") + field(2, 2, b"m"))


def series(*parts: bytes) -> bytes:
    return field(1, 2, b"".join(parts))


def label(raw: bytes) -> bytes:
    return field(1, 2, raw)


def sample(raw: bytes) -> bytes:
    return field(2, 2, raw)


V, T = field(1, 1, struct.pack("<d", 1.5)), field(2, 0, 1_700_000_000_000)


@pytest.mark.parametrize(
    "raw",
    [
        # labels whose name and value columns have the right lengths only together
        series(
            NAME,
            label(field(1, 2, b"a") + field(2, 2, b"1") + field(1, 2, b"b")),
            label(field(2, 2, b"2")),
            sample(V + T),
        ),
        series(
            NAME,
            label(field(1, 2, b"a")),
            label(field(2, 2, b"1") + field(2, 2, b"2") + field(1, 2, b"b")),
            sample(V + T),
        ),
        # a label named like the separator the batch of new series is joined with
        series(NAME, label(field(1, 2, b"\0") + field(2, 2, b"\0")), sample(V + T)) + series(NAME, sample(V + T)),
        series(
            NAME,
            label(field(1, 2, b"\0") + field(2, 2, b"x")),
            label(field(1, 2, b"y") + field(2, 2, b"\0")),
            sample(V + T),
        )
        + series(NAME, label(field(1, 2, b"z") + field(2, 2, b"1")), sample(V + T)),
        # samples whose columns have the right lengths only together
        series(NAME, sample(V)) + series(NAME, sample(T + field(2, 0, 5))),
        series(NAME, sample(T)) + series(NAME, sample(V + V + T)),
        series(NAME, sample(V), sample(T + T)),
        series(NAME, sample(V + T + T), sample(V)),
        series(NAME, sample(field(1, 2, struct.pack("<dd", 1.0, 2.0)) + T)) + series(NAME, sample(T)),
        series(NAME, sample(T + V)) + series(NAME, sample(V + T)),
        # samples longer than a one-byte size, the size's second byte 16 or 9 (read as a sample's first byte)
        series(NAME, sample(V + T + field(4, 2, b"x" * 200))),
        series(NAME, sample(V + T + field(4, 2, b"x" * 2034)), sample(V + T)) + series(NAME, sample(V + T)),
        series(NAME, sample(V + T + field(4, 2, b"x" * 1138)), sample(T)) + series(NAME, sample(V + T)),
        series(NAME) + series(NAME, sample(V + T)) + series(sample(V + T)) + series(),
    ],
)
def test_tricky_encodings_read_as_plain_protobuf(raw: bytes) -> None:
    body = snappy(raw)
    expected = reference(body)
    for _ in range(2):
        got, skipped = decode_write_request(body)
        assert ([key(s) for s in got], skipped) == expected


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(request_bytes(), min_size=1, max_size=3))
def test_odd_encodings_read_as_plain_protobuf(requests: list[bytes]) -> None:
    """Zero values left out, timestamps of 0, fields in other orders or twice, packed, unknown: the
    decoder (fast path or not, cold or warm cache) gives what the typed messages say."""
    for raw in requests + requests:  # the second time with the series cached
        body = snappy(raw)
        try:
            expected = reference(body)
        except Exception:  # noqa: BLE001 - not valid protobuf for the typed reading
            with pytest.raises(RemoteWriteError):
                decode_write_request(body)
            continue
        got, skipped = decode_write_request(body)
        assert ([key(s) for s in got], skipped) == expected


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.sampled_from(["snappy", None, "", "gzip"]))
def test_random_bytes_only_raise_remote_write_error(body: bytes, encoding: str | None) -> None:
    for candidate in (body, snappy(body)):
        try:
            samples, skipped = decode_write_request(candidate, encoding)
        except RemoteWriteError as exc:
            assert str(exc) and "\n" not in str(exc)
        else:
            assert skipped >= 0 and all(isinstance(s, Sample) for s in samples)


VALID = encode_write_request(
    [Sample(f"metric_{i % 4}", {**DCGM, "gpu": str(i)}, i * 0.25, 1_700_000_000_000 + i) for i in range(12)]
)
VALID_RAW = bytes(cramjam.snappy.decompress_raw(VALID))


@settings(max_examples=300, deadline=None)
@given(
    st.integers(0, len(VALID) - 1),
    st.integers(0, len(VALID_RAW) - 1),
    st.binary(min_size=1, max_size=4),
    st.integers(0, len(VALID_RAW) - 1),
)
def test_truncated_and_corrupted_bodies_only_raise_remote_write_error(
    cut: int, raw_cut: int, junk: bytes, where: int
) -> None:
    corrupted = VALID_RAW[:where] + junk + VALID_RAW[where + len(junk) :]
    for body in (VALID[:cut], snappy(VALID_RAW[:raw_cut]), snappy(corrupted)):
        try:
            decode_write_request(body)
        except RemoteWriteError:
            pass


def test_a_target_prometheus_stops_sending_is_named_unreachable_not_left_to_look_silent() -> None:
    """Prometheus's samples of one target stop coming (a slow scrape, a backed-up remote_write
    shard) while the others' keep coming: after 2.5 of its intervals the intake names its node
    unreachable (the fabric decides, as for a failed scrape) rather than leaving it silent, which
    the worker would page as node_down (seen once in CI with a real Prometheus under load)."""
    from pipeline.model.schemas import decode_batch
    from pipeline.topology.inventory import Inventory
    from pipeline.topology.synthetic import ClusterShape, Topology
    from producers.adapters.prometheus import Sample
    from producers.collect.listener import RemoteWriteIntake
    from producers.collect.metrics import CollectMetrics

    topo = Topology(ClusterShape(cards=16, cards_per_node=8, nodes_per_leaf=2, spines=1))
    sent: list = []
    intake = RemoteWriteIntake(topo, Inventory(), sent.append, CollectMetrics(), say=lambda _: None)

    def scrape(node: str, ts_ms: int) -> list[Sample]:
        labels = {"job": "gpu", "instance": f"{node}:9400", "Hostname": node}
        return [Sample("DCGM_FI_DEV_GPU_UTIL", {**labels, "gpu": str(g)}, 90.0, ts_ms) for g in range(8)]

    base = 1_767_225_600_000
    for second in range(8):
        samples = scrape("node0000", base + second * 1000)
        if second < 3:  # node0001's samples stop after its third scrape
            samples += scrape("node0001", base + second * 1000 + 500)
        intake.take(encode_write_request(samples), "snappy")
        intake.flush()
    batches = [decode_batch(m.value) for m in sent]
    named = [(b.ts_ms - base, b.unreachable) for b in batches if b.unreachable]
    assert named and all(names == ("node0001",) for _, names in named), named
    assert named[0][0] >= 2500 + 2500  # its last scrape at 2.5 s, 2.5 intervals of 1 s later at the earliest
    assert not any("node0000" in names for _, names in named)
    reported = {name for b in batches for name, _ in (b.parts or [(b.source, None)])}
    assert "node0000" in reported  # the node Prometheus keeps sending is reported, never named


def test_a_node_always_goes_in_the_same_message_group_whatever_else_came_with_it() -> None:
    """remote_write scrapes of many targets come at spread times; a node's reports (and its
    `unreachable` naming) must always carry the same message key, so that they land in one partition
    and its detector there judges its silence (keyed by the first source of a chunk, a node's reports
    moved between partitions and one partition's detector paged it node_down: seen in CI)."""
    from pipeline.model.schemas import decode_batch
    from pipeline.topology.inventory import Inventory
    from pipeline.topology.synthetic import ClusterShape, Topology
    from producers.adapters.prometheus import Sample
    from producers.collect.listener import RemoteWriteIntake
    from producers.collect.metrics import CollectMetrics

    topo = Topology(ClusterShape(cards=1024, cards_per_node=8, nodes_per_leaf=32, spines=2))  # 128 nodes
    sent: list = []
    intake = RemoteWriteIntake(topo, Inventory(), sent.append, CollectMetrics(), say=lambda _: None)

    def scrape(node: str, ts_ms: int) -> list[Sample]:
        labels = {"job": "gpu", "instance": f"{node}:9400", "Hostname": node}
        return [Sample("DCGM_FI_DEV_GPU_UTIL", {**labels, "gpu": str(g)}, 90.0, ts_ms) for g in range(8)]

    base = 1_767_225_600_000
    for second in range(6):  # each second a different set of nodes shares the node's scrape time
        others = [f"node{n:04d}" for n in range(second * 10, second * 10 + 40)]
        samples = scrape("node0100", base + second * 1000)
        for other in others:
            samples += scrape(other, base + second * 1000)
        intake.take(encode_write_request(samples), "snappy")
        intake.flush(everything=True)
    keys = {m.key for m in sent for b in [decode_batch(m.value)] if "node0100" in {s for s, _ in (b.parts or [])}}
    assert len(keys) == 1, keys
