"""The silences topic: write a silence, read them all, and follow it so that a book stays current.

Every worker follows the whole (one-partition, compacted) topic outside its consumer group, so every
worker honours every silence within about a second of its writing, and a restarted worker reads
them back from the topic.
"""

from __future__ import annotations

import json
import logging
import threading

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from pipeline.notify.silences import Silence, SilenceBook, SilenceError
from pipeline.ops.kafka_config import consumer_config, producer_config
from pipeline.ops.topic_reader import read_to_end

log = logging.getLogger("clusterpulse.silences")


def write_silence(bootstrap: str, topic: str, silence: Silence) -> None:
    """The silence (new, or changed) on the topic, acknowledged by the broker."""
    producer = KafkaProducer(**producer_config(bootstrap, "clusterpulse-silences"))
    try:
        producer.send(topic, key=silence.id.encode(), value=encode_silence(silence)).get(timeout=30)
    finally:
        producer.close(timeout=10)


def encode_silence(silence: Silence) -> bytes:
    """A silence as the topic holds it (read back by `decode_silence`)."""
    return json.dumps(silence.to_dict()).encode()


def decode_silence(value: bytes) -> Silence:
    try:
        return Silence.from_dict(json.loads(value))
    except (ValueError, TypeError) as exc:  # SilenceError is a ValueError
        raise SilenceError(f"not a silence record: {exc}") from None


def read_silences(bootstrap: str, topic: str, timeout_s: float = 20.0) -> list[Silence]:
    """Every silence on the topic, in its latest version (read to its end)."""
    book = SilenceBook()
    if not read_to_end(
        bootstrap, topic, "clusterpulse-silences-reader", lambda r: _apply(book, r.value, r.offset), timeout_s
    ):
        raise TimeoutError(f"reading {topic} took longer than {timeout_s:g} s")
    return book.all()


def _apply(book: SilenceBook, value: bytes | None, offset: int) -> None:
    if value is None:  # a tombstone: nothing we write, but compaction tools may
        return
    try:
        book.apply(decode_silence(value))
    except SilenceError as exc:
        log.warning("skipped record %d of the silences topic: %s", offset, exc)


class SilenceFollower(threading.Thread):
    """Keeps a SilenceBook current with the topic, from its beginning, until stopped."""

    def __init__(self, book: SilenceBook, bootstrap: str, topic: str, caught_up: threading.Event | None = None) -> None:
        super().__init__(daemon=True, name="silence-follower")
        self.book, self.bootstrap, self.topic = book, bootstrap, topic
        self.caught_up = caught_up or threading.Event()  # set once everything written before the start is read
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                self._follow()
            except Exception as exc:  # a broker outage: read again from the start when it is back
                log.warning("following %s failed (%s); trying again in 5 s", self.topic, exc)
                self._stop_event.wait(5.0)

    def _follow(self) -> None:
        consumer = KafkaConsumer(**consumer_config(self.bootstrap, "clusterpulse-silences-follower", None))
        try:
            tps: list[TopicPartition] = []
            while not tps and not self._stop_event.is_set():
                tps = [TopicPartition(self.topic, p) for p in sorted(consumer.partitions_for_topic(self.topic) or ())]
                if not tps:
                    self._stop_event.wait(1.0)
            if not tps:
                return
            consumer.assign(tps)
            consumer.seek_to_beginning()
            ends = consumer.end_offsets(tps)
            while not self._stop_event.is_set():
                for records in consumer.poll(timeout_ms=500).values():
                    for record in records:
                        _apply(self.book, record.value, record.offset)
                if not self.caught_up.is_set() and all(consumer.position(tp) >= end for tp, end in ends.items()):
                    self.caught_up.set()
        finally:
            consumer.close()

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=5)
