"""`clusterpulse alerts replay`: resend notifications from the dead-letter topic.

Reads from the replay consumer group's committed position to the end, resends each to its
receiver (with the usual retries), commits, and dead-letters anew what fails again, so running
it twice never sends one notification twice.
"""

from __future__ import annotations

import asyncio
import json
import os

import aiohttp
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.structs import OffsetAndMetadata

from pipeline.model.schemas import Alert
from pipeline.model.topics import NOTIFY_DEAD_LETTERS
from pipeline.notify import ledger
from pipeline.notify.delivery import deliver
from pipeline.notify.payloads import idempotency_key
from pipeline.ops.kafka_config import consumer_config, producer_config
from pipeline.settings import Settings


def replay_dead_letters(settings: Settings, only: str | None = None) -> dict[str, int]:

    topic = settings.topic(NOTIFY_DEAD_LETTERS)
    receivers = {r.name: r for r in settings.notify.receivers}
    consumer = KafkaConsumer(
        **consumer_config(settings.require_bootstrap(), "clusterpulse-replay", f"{settings.group_id}-notify-replay")
    )
    producer = KafkaProducer(**producer_config(settings.require_bootstrap(), "clusterpulse-replay"))
    summary = {"delivered": 0, "failed": 0, "skipped": 0}
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not tps:
            return summary
        consumer.assign(tps)
        for tp in tps:
            committed = consumer.committed(tp)
            if committed is None:
                consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, committed)
        ends = consumer.end_offsets(tps)
        records = []
        while any(consumer.position(tp) < end for tp, end in ends.items()):
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)

        async def resend() -> None:
            async with aiohttp.ClientSession() as session:
                for record in records:
                    try:
                        entry = json.loads(record.value)
                        receiver = receivers.get(entry["receiver"])
                        alert = Alert(**entry["alert"])
                    except (ValueError, TypeError, KeyError):
                        summary["skipped"] += 1
                        continue
                    if receiver is None or (only and receiver.name != only):
                        summary["skipped"] += 1
                        continue
                    outcome = await deliver(session, receiver, alert)
                    if outcome.delivered:
                        summary["delivered"] += 1
                    else:
                        summary["failed"] += 1
                        entry.update(error=outcome.error, attempts=outcome.attempts, status=outcome.status)
                        producer.send(topic, key=record.key, value=json.dumps(entry).encode())

        asyncio.run(resend())
        producer.flush()

        consumer.commit({tp: OffsetAndMetadata(end, "", -1) for tp, end in ends.items()})
        return summary
    finally:
        producer.close()
        consumer.close()


def replay_from_lake(lake: str, settings: Settings, only: str | None = None) -> dict[str, int]:
    """Resend, once, each notification the lake's ledger says is still undelivered; record the
    outcome in the ledger, so a second replay sends only what failed again."""

    receivers = {r.name: r for r in settings.notify.receivers}
    book = ledger.Ledger(lake, f"replay-{os.getpid()}")
    summary = {"delivered": 0, "failed": 0, "skipped": 0}

    async def resend() -> None:
        async with aiohttp.ClientSession() as session:
            for entry in ledger.undelivered(ledger.read(lake)):
                receiver = receivers.get(entry["receiver"])
                if receiver is None or (only and receiver.name != only):
                    summary["skipped"] += 1
                    continue
                try:
                    alert = Alert(**entry["alert"])
                except TypeError:
                    summary["skipped"] += 1
                    continue
                outcome = await deliver(session, receiver, alert)
                summary["delivered" if outcome.delivered else "failed"] += 1
                book.append(
                    ledger.record(
                        receiver.name,
                        alert,
                        outcome.delivered,
                        outcome.attempts,
                        outcome.status,
                        outcome.error,
                        idempotency_key(alert),
                        replay=True,
                    )
                )

    asyncio.run(resend())
    return summary
