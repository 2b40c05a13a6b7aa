"""Reading topics in tests, with a deadline so that no test waits forever."""

from __future__ import annotations

import time
from collections.abc import Callable

from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord

from pipeline.ops.kafka_config import consumer_config


def read_until(
    bootstrap: str,
    topic: str,
    done: Callable[[list[ConsumerRecord]], bool],
    timeout_s: float = 90.0,
    alive: Callable[[], str | None] = lambda: None,
) -> list[ConsumerRecord]:
    """Records of `topic` from the beginning until `done(records)` or the deadline.

    `alive()` returns an error text when a process the test relies on has died, to fail early.
    """
    consumer = KafkaConsumer(**consumer_config(bootstrap, "clusterpulse-test-reader", None))
    records: list[ConsumerRecord] = []
    try:
        deadline = time.monotonic() + timeout_s
        parts = None
        while not parts and time.monotonic() < deadline:
            parts = consumer.partitions_for_topic(topic)
            if not parts:
                time.sleep(0.2)
        assert parts, f"topic {topic} never appeared"
        _from_beginning(consumer, topic, parts)
        while not done(records):
            problem = alive()
            assert problem is None, problem
            assert time.monotonic() < deadline, f"gave up on {topic} after {timeout_s:g} s; got {len(records)} records"
            for batch in consumer.poll(timeout_ms=250).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()


def read_all(bootstrap: str, topic: str, timeout_s: float = 60.0) -> list[ConsumerRecord]:
    """Every record of `topic` up to its end offsets now (for a topic nobody writes any more)."""
    consumer = KafkaConsumer(**consumer_config(bootstrap, "clusterpulse-test-reader", None))
    try:
        found = consumer.partitions_for_topic(topic)
        assert found, f"topic {topic} does not exist"
        parts = _from_beginning(consumer, topic, found)
        ends = consumer.end_offsets(parts)
        records: list[ConsumerRecord] = []
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < end for tp, end in ends.items()):
            assert time.monotonic() < deadline, f"gave up reading {topic} after {timeout_s:g} s"
            for batch in consumer.poll(timeout_ms=250).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()


def _from_beginning(consumer: KafkaConsumer, topic: str, partitions: set[int]) -> list[TopicPartition]:
    """Assign every partition of `topic` to `consumer`, positioned at the start."""
    parts = [TopicPartition(topic, p) for p in sorted(partitions)]
    consumer.assign(parts)
    consumer.seek_to_beginning()
    return parts
