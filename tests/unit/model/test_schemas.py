import json
import re

import msgpack
import numpy as np
import pytest

from pipeline.model.schemas import (
    SCHEMA_VERSION,
    Alert,
    InvalidRecord,
    alert_id,
    decode_batch,
    encode_batch,
    iso_utc,
)
from pipeline.topology.entities import check_entities
from tests.builders import START_MS, card_batch, port_batch, small_topology


def test_card_batch_round_trips_with_dtypes() -> None:
    batch = card_batch("node0003", t_s=5, errors=[(2, 79)])
    back = decode_batch(encode_batch(batch))
    assert (back.kind, back.source, back.ts_ms) == ("card", "node0003", START_MS + 5000)
    for name, values in batch.columns.items():
        assert back.columns[name].dtype == values.dtype
        np.testing.assert_array_equal(back.columns[name], values)
    assert back.rows() == 8 and back.rows("events") == 1


def test_batch_is_compact() -> None:
    # a node of 8 cards: ~ 8 * 46 bytes of columns plus names; far below a JSON document per card
    assert len(encode_batch(card_batch())) < 900


def _raw(**overrides: object) -> bytes:
    msg = msgpack.unpackb(encode_batch(card_batch()), raw=False)
    msg.update(overrides)
    return msgpack.packb(msg, use_bin_type=True)


@pytest.mark.parametrize(
    "payload, reason",
    [
        (b"", "empty message"),
        (b"\xc1garbage", "not msgpack"),
        (msgpack.packb([1, 2, 3]), "expected a map"),
        (_raw(v=SCHEMA_VERSION + 1), "unsupported schema version 3"),
        (_raw(v=None), "unsupported schema version None"),
        (_raw(k="gpu"), "unknown batch kind 'gpu'"),
        (_raw(ts=-5), "bad timestamp"),
        (_raw(src=""), "bad source"),
    ],
)
def test_bad_payloads_raise_with_reason(payload: bytes, reason: str) -> None:
    with pytest.raises(InvalidRecord) as err:
        decode_batch(payload)
    assert reason in err.value.reason


def test_ragged_columns_are_rejected() -> None:
    msg = msgpack.unpackb(encode_batch(card_batch()), raw=False)
    msg["c"]["util"] = msg["c"]["util"][:-4]
    with pytest.raises(InvalidRecord, match="'util' has 7 values"):
        decode_batch(msgpack.packb(msg, use_bin_type=True))


def test_unknown_entities_are_rejected() -> None:
    topo = small_topology()
    check_entities(card_batch("node0007"), topo)
    check_entities(port_batch("spine001", ports=8), topo)
    with pytest.raises(InvalidRecord, match="unknown entity"):
        check_entities(card_batch("node0008"), topo)  # 8 nodes: 0..7
    with pytest.raises(InvalidRecord, match="no card 9"):
        check_entities(card_batch("node0001", cards=[0, 9]), topo)
    with pytest.raises(InvalidRecord, match="no port"):
        check_entities(port_batch("leaf000", ports=40), topo)
    from pipeline.model.schemas import bundle

    good = [port_batch("leaf000", ports=6), port_batch("spine001", ports=8)]
    check_entities(bundle(good, "collector"), topo)  # a collector's message: every switch at once
    with pytest.raises(InvalidRecord, match="spine001 has no port 16"):
        check_entities(bundle([good[0], port_batch("spine001", ports=17)], "collector"), topo)
    with pytest.raises(InvalidRecord, match="unknown entity"):
        check_entities(bundle([good[0], port_batch("leaf099", ports=6)], "collector"), topo)


def test_alert_identity_is_stable_and_json_matches_the_spec() -> None:
    a = Alert(
        kind="card_failed",
        entity="node0005-card2",
        status="firing",
        starts_at=iso_utc(START_MS + 20_000),
        severity="critical",
        summary="fell off the bus",
        labels={"node": "node0005"},
    )
    assert a.id == alert_id("card_failed", "node0005-card2") != alert_id("card_failed", "node0005-card3")
    data = json.loads(a.to_json())
    assert {"id", "kind", "entity", "status", "starts_at", "root_cause", "severity", "summary", "labels"} <= set(data)
    assert data["starts_at"] == "2026-01-01T00:00:20.000Z"
    assert Alert.from_json(a.to_json()) == a


def test_a_collector_message_carries_many_sources_and_splits_back() -> None:
    from pipeline.model.schemas import bundle
    from tests.builders import card_batch

    one, two = card_batch("node0001", 5, errors=[(3, 79)]), card_batch("node0002", 5)
    back = decode_batch(encode_batch(bundle([one, two], "node0000..node0003")))
    assert back.source == "node0000..node0003" and back.rows() == 16 and back.rows("events") == 1
    parts = back.split()
    assert [p.source for p in parts] == ["node0001", "node0002"]
    for got, want in zip(parts, (one, two)):
        for name, column in want.columns.items():
            assert got.columns[name].tolist() == list(column), name


def test_collector_row_counts_must_add_up() -> None:
    from pipeline.model.schemas import bundle
    from tests.builders import card_batch

    good = msgpack.unpackb(encode_batch(bundle([card_batch("node0001", 5), card_batch("node0002", 5)], "r")))
    for change, reason in (
        (lambda m: m["n"].update(rows=[8, 9]), "n.rows counts 17 rows, the columns hold 16"),
        (lambda m: m.update(srcs=["node0001"]), "one row count per source (1)"),
        (lambda m: m.update(srcs=[]), "srcs must be a non-empty list"),
        (lambda m: m["n"].pop("events"), "n must give row counts for the groups rows, events"),
    ):
        bad = msgpack.unpackb(msgpack.packb(good, use_bin_type=True))
        change(bad)
        with pytest.raises(InvalidRecord, match=re.escape(reason)):
            decode_batch(msgpack.packb(bad, use_bin_type=True))


def test_a_collectors_unreachable_sources_round_trip_and_are_checked() -> None:
    from pipeline.model.schemas import bundle

    batch = bundle([card_batch("node0001", 1), card_batch("node0002", 1, cards=[])], "gpu:node0001")
    batch.unreachable = ("node0002",)
    back = decode_batch(encode_batch(batch))
    assert back.unreachable == ("node0002",) and [s for s, _ in back.reachable().parts] == ["node0001"]
    raw = msgpack.unpackb(encode_batch(batch), raw=False)
    for gone, reason in (
        (["node0001"], "has rows"),
        (["node0009"], "not one of the message's sources"),
        ("node0002", "list of source names"),
    ):
        with pytest.raises(InvalidRecord, match=reason):
            decode_batch(msgpack.packb({**raw, "gone": gone}, use_bin_type=True))


def test_port_names_travel_once_and_a_message_without_them_is_what_it_was() -> None:
    """`pn` (each row's port as its device names it) is optional: a message without names is byte
    for byte the old one; names survive bundling, splitting, dropping rows and the wire."""
    from pipeline.model.schemas import bundle
    from pipeline.stream.intake import keep_rows

    plain = port_batch("leaf000", 1, 3)
    assert "pn" not in msgpack.unpackb(encode_batch(plain)) and decode_batch(encode_batch(plain)).port_names is None
    named = port_batch("leaf001", 1, 2)
    named.port_names = ("Ethernet1/1", "Ethernet1/2")
    back = decode_batch(encode_batch(bundle([plain, named], "switches-a")))
    assert back.port_names == ("", "", "", "Ethernet1/1", "Ethernet1/2")
    assert [p.port_names for p in back.split()] == [("", "", ""), ("Ethernet1/1", "Ethernet1/2")]
    assert keep_rows(back, np.array([1, 0, 0, 0, 1], bool)).port_names == ("", "Ethernet1/2")
    raw = msgpack.unpackb(encode_batch(named), raw=False)
    for bad in (["Ethernet1/1"], ["Ethernet1/1", 2], "Ethernet1/1"):
        with pytest.raises(InvalidRecord, match="one port name"):
            decode_batch(msgpack.packb({**raw, "pn": bad}, use_bin_type=True))


def test_a_step_message_leaves_out_its_timeouts_and_one_that_carries_them_round_trips() -> None:
    from pipeline.model.schemas import bundle
    from producers.adapters.nccl_log import CollectiveTimeout
    from producers.adapters.steps import timeout_batches
    from tests.builders import step_batch

    plain = step_batch("node0001", "gpt", 1.0, [8, 9], 5, 0.9)
    raw = msgpack.unpackb(encode_batch(plain))
    assert "timeout_rank" not in raw["c"]  # most step messages: the bytes they always were
    assert len(decode_batch(encode_batch(plain)).columns["timeout_rank"]) == 0
    topo = small_topology()
    timeouts = [CollectiveTimeout("gpt", r, 77, 600.5, START_MS, "ALLREDUCE") for r in (1, 9, 10)]
    batches = timeout_batches(timeouts, topo)
    assert [b.source for b in batches] == ["node0000", "node0001"]
    many = decode_batch(encode_batch(bundle([*batches, plain], "collector")))
    assert many.columns["timeout_rank"].tolist() == [1, 9, 10] and many.columns["timeout_seq"].tolist() == [77] * 3
    assert many.rows() == 2 and many.rows("timeouts") == 3
    assert [(p.source, p.rows("timeouts"), p.rows()) for p in many.split()] == [
        ("node0000", 1, 0),
        ("node0001", 2, 0),
        ("node0001", 0, 2),
    ]
    collector = msgpack.unpackb(encode_batch(bundle([plain, plain], "collector")))
    assert set(collector["n"]) == {"rows"}  # left out of the counts too
    assert decode_batch(msgpack.packb(collector)).parts[0][1] == {"rows": 2, "timeouts": 0}
    half = msgpack.unpackb(encode_batch(batches[0]))
    del half["c"]["timeout_seq"]
    with pytest.raises(InvalidRecord, match="timeout_seq"):
        decode_batch(msgpack.packb(half))  # a group sent in part is not left out
