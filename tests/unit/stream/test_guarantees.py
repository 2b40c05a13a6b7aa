"""The worker's two promises without a broker: a dead letter keeps the message and says why, and a
telemetry message is acknowledged only once its rows are durable Parquet (the checkpoint step)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.lake.parquet import ParquetSink
from pipeline.model.topics import DLQ_OFFSET, DLQ_PARTITION, DLQ_REASON, DLQ_TOPIC
from pipeline.ops.metrics import WorkerMetrics
from pipeline.settings import DetectSettings
from pipeline.stream.checkpoint import Checkpoint
from pipeline.stream.guarantees import AckAfterFlush, DeadLetters
from pipeline.stream.partition_state import PartitionDetectors
from tests.builders import card_batch, small_topology

TOPIC = "cp.telemetry.card"


@dataclass
class Message:
    topic: str
    partition: int
    offset: int
    key: bytes | None = b"k"
    value: bytes = b"v"


@dataclass
class Event:
    message: Message


@dataclass
class Stream:
    """What the worker's agents acknowledge through: records the offsets acknowledged."""

    acked: list[int] = field(default_factory=list)

    async def ack(self, event: Event) -> None:
        self.acked.append(event.message.offset)


@dataclass
class Topic:
    """Where dead letters go: records what is sent."""

    sent: list[dict[str, Any]] = field(default_factory=list)

    async def send(self, **kwargs: Any) -> None:
        self.sent.append(kwargs)


def test_a_dead_letter_is_the_message_unchanged_with_its_reason_and_origin() -> None:
    topic = Topic()
    letters = DeadLetters(topic)
    event = Event(Message(TOPIC, 3, 41, key=b"node0001", value=b"\x00garbage"))
    asyncio.run(letters.send(event, "not msgpack: unpack(b) received extra data", "not_msgpack"))
    [sent] = topic.sent
    assert sent["key"] == b"node0001" and sent["value"] == b"\x00garbage"
    assert sent["headers"] == {
        DLQ_REASON: b"not msgpack: unpack(b) received extra data",
        DLQ_TOPIC: TOPIC.encode(),
        DLQ_PARTITION: b"3",
        DLQ_OFFSET: b"41",
    }
    assert letters.total == 1


def hold_three(sink: ParquetSink, acks: AckAfterFlush, stream: Stream) -> None:
    for offset in (10, 11, 12):
        sink.add_batch(TOPIC, 0, offset, card_batch(f"node000{offset - 10}", offset - 10))
        acks.hold(stream, Event(Message(TOPIC, 0, offset)))  # type: ignore[arg-type]


def test_messages_are_acknowledged_after_their_rows_are_written_and_then_state_is_saved(tmp_path: Path) -> None:
    sink = ParquetSink(tmp_path, flush_rows=10_000, flush_seconds=60)
    saved: list[tuple[str, int, list[int]]] = []
    stream = Stream()

    async def save_state(topic: str, partition: int) -> None:
        saved.append((topic, partition, list(stream.acked)))

    acks = AckAfterFlush(sink, on_durable=save_state)
    hold_three(sink, acks, stream)
    assert stream.acked == [] and not list(tmp_path.rglob("*.parquet"))  # nothing durable, nothing acked
    asyncio.run(acks.flush([(TOPIC, 0)]))
    assert stream.acked == [10, 11, 12]
    assert list((tmp_path / "card").rglob("*.parquet"))
    assert saved == [(TOPIC, 0, [10, 11, 12])]


def test_a_failed_write_acknowledges_nothing_and_the_retry_writes_the_same_rows(tmp_path: Path) -> None:
    blocked = tmp_path / "lake"
    blocked.write_text("a file where the lake should be")  # every write fails: not a directory
    now = [0.0]
    sink = ParquetSink(blocked, flush_rows=10_000, flush_seconds=5)
    stream = Stream()
    acks = AckAfterFlush(sink, clock=lambda: now[0])
    hold_three(sink, acks, stream)
    asyncio.run(acks.flush([(TOPIC, 0)]))
    assert stream.acked == [] and acks.write_error is not None and sink.held_rows() > 0
    blocked.unlink()  # the disk is back
    now[0] = 1.0
    asyncio.run(acks.flush([(TOPIC, 0)]))  # before the retry time: not tried
    assert stream.acked == []
    now[0] = 6.0
    asyncio.run(acks.flush([(TOPIC, 0)]))
    assert stream.acked == [10, 11, 12] and acks.write_error is None
    assert len(list((blocked / "card").rglob("*.parquet"))) == 1


def test_a_revoked_partition_forgets_what_it_held(tmp_path: Path) -> None:
    sink = ParquetSink(tmp_path, flush_rows=10_000, flush_seconds=60)
    stream = Stream()
    acks = AckAfterFlush(sink)
    hold_three(sink, acks, stream)
    acks.forget({(TOPIC, 0)})
    asyncio.run(acks.flush([(TOPIC, 0)]))
    assert stream.acked == [] and not list(tmp_path.rglob("*.parquet"))  # its new owner reads them again


def checkpoint_of(tmp_path: Path) -> tuple[Checkpoint, Topic]:
    from pipeline.settings import Settings

    topo = small_topology()
    state = Topic()
    detectors = PartitionDetectors(topo, DetectSettings(), {TOPIC: "card"})
    detectors.load({}, [(TOPIC, 0)])  # no saved state: a fresh set for partition 0
    sink = ParquetSink(tmp_path, flush_rows=10_000, flush_seconds=60)
    return Checkpoint(Settings(), sink, detectors, state, WorkerMetrics()), state


def test_a_checkpoint_saves_the_partitions_detector_state_after_its_rows_are_durable(tmp_path: Path) -> None:
    checkpoint, state = checkpoint_of(tmp_path)
    stream = Stream()
    detectors = checkpoint.detectors.sets[(TOPIC, 0)]
    batch = card_batch("node0001", 0, errors=[(1, 79)])
    assert [a.kind for a in detectors.push(batch)] == ["card_failed"]
    checkpoint.sink.add_batch(TOPIC, 0, 10, batch)
    checkpoint.hold(stream, Event(Message(TOPIC, 0, 10)))  # type: ignore[arg-type]
    asyncio.run(checkpoint.flush([(TOPIC, 0)]))
    assert stream.acked == [10]
    [saved] = state.sent
    assert saved["key"] == f"{TOPIC}/0".encode()
    restored = PartitionDetectors(small_topology(), DetectSettings(), {TOPIC: "card"})
    assert restored.load({f"{TOPIC}/0": saved["value"]}, [(TOPIC, 0)]) == 1  # the failed card is remembered


def test_at_shutdown_the_buffered_rows_are_written_and_every_partitions_state_saved(tmp_path: Path) -> None:
    checkpoint, state = checkpoint_of(tmp_path)
    checkpoint.sink.add_batch(TOPIC, 0, 10, card_batch("node0001", 0))
    asyncio.run(checkpoint.at_shutdown())
    assert len(list((tmp_path / "card").rglob("*.parquet"))) == 1
    assert [s["key"] for s in state.sent] == [f"{TOPIC}/0".encode()]


def test_a_revoked_partition_loses_its_detectors_and_what_it_buffered(tmp_path: Path) -> None:
    checkpoint, state = checkpoint_of(tmp_path)
    stream = Stream()
    checkpoint.sink.add_batch(TOPIC, 0, 10, card_batch("node0001", 0))
    checkpoint.hold(stream, Event(Message(TOPIC, 0, 10)))  # type: ignore[arg-type]
    checkpoint.revoke({(TOPIC, 0)})
    asyncio.run(checkpoint.at_shutdown())
    assert stream.acked == [] and not list(tmp_path.rglob("*.parquet")) and state.sent == []


def test_a_write_in_flight_when_its_partition_is_revoked_lands_first_and_acknowledges_nothing(
    tmp_path: Path,
) -> None:
    """Faust drops a revoked partition's offset bookkeeping before the worker's revoke handler runs:
    an ack then would count as a fresh one and be committed later past rows not written again."""
    sink = ParquetSink(tmp_path, flush_rows=10_000, flush_seconds=60)
    stream = Stream()
    acks = AckAfterFlush(sink)
    hold_three(sink, acks, stream)
    key = (TOPIC, 0)

    async def rebalance() -> list[int]:
        writing = asyncio.ensure_future(acks.flush([key]))
        await asyncio.sleep(0)  # the write is in flight (in its thread)
        assert key in acks.writing
        await acks.settle({key})  # the revoke handler: waits for it
        assert writing.done() and list((tmp_path / "card").rglob("*.parquet"))  # landed before the rebalance ends
        acked_while_revoking = list(stream.acked)
        acks.forget({key})
        hold_three(sink, acks, stream)  # assigned again later: acknowledged as usual
        await acks.flush([key])
        return acked_while_revoking

    assert asyncio.run(rebalance()) == []
    assert stream.acked == [10, 11, 12]
