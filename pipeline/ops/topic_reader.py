"""Reading a (compacted) topic from its beginning to the end it has now, outside any consumer group:
what a worker restores its state from and what `silence list` shows."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from pipeline.ops.kafka_config import consumer_config


def read_to_end(bootstrap: str, topic: str, client_id: str, each: Callable[[Any], None], timeout_s: float) -> bool:
    """Every record of `topic` in order to `each`, up to its end offsets now; False if `timeout_s`
    passed first (what was read went to `each`). A topic that does not exist reads as empty."""
    consumer = KafkaConsumer(**consumer_config(bootstrap, client_id, None))
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not tps:
            return True
        consumer.assign(tps)
        consumer.seek_to_beginning()
        ends = consumer.end_offsets(tps)
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < end for tp, end in ends.items()):
            if time.monotonic() > deadline:
                return False
            for records in consumer.poll(timeout_ms=200).values():
                for record in records:
                    each(record)
        return True
    finally:
        consumer.close()
