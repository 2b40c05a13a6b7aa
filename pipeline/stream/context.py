"""What a worker's agents share: settings, topology, the topics they send to, dead letters, the
checkpoint (sink, per-partition detectors), the correlator, `publish` for alerts, and the hooks a
rebalance calls."""

from __future__ import annotations

import logging
import os
import threading
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import faust
from faust.types import EventT, StreamT

from pipeline.correlate.correlator import Correlator
from pipeline.lake.parquet import ParquetSink
from pipeline.model.schemas import Alert
from pipeline.model.topics import (
    ALERTS,
    CARD_TELEMETRY,
    DEAD_LETTERS,
    DETECTOR_STATE,
    FINDINGS,
    PORT_TELEMETRY,
    STEP_TELEMETRY,
    TopicSpec,
)
from pipeline.notify.delivery import Notifier
from pipeline.notify.silences import SilenceBook
from pipeline.ops.metrics import WorkerMetrics
from pipeline.settings import Settings
from pipeline.stream.checkpoint import Checkpoint
from pipeline.stream.guarantees import DeadLetters
from pipeline.stream.partition_state import PartitionDetectors

log = logging.getLogger("clusterpulse.worker")

# topic spec -> batch kind it must carry
TOPIC_KINDS = {CARD_TELEMETRY: "card", STEP_TELEMETRY: "step", PORT_TELEMETRY: "port"}

# Every send uses force=True: inside an agent Faust would otherwise attach the message to the event
# being processed and publish it only when that event is acknowledged, which for telemetry is after
# its Parquet file is written, seconds later, and after later watermarks.


OnRevoked = Callable[[set[Any]], None]  # called with the revoked topic partitions
BeforeRevoked = Callable[[set[Any]], Awaitable[None]]


class WorkerContext:
    """Built once per worker by `pipeline.stream.app.create_app`; each agent module registers on it."""

    def __init__(
        self, app: faust.App, settings: Settings, stream_tags: dict[str, str], partitions: dict[str, int]
    ) -> None:
        self.app = app
        self.settings = settings
        self.topology = settings.build_topology()
        self.worker_id = f"{os.uname().nodename}-{os.getpid()}"
        self.metrics = WorkerMetrics()
        self.kind_of_topic = {settings.topic(spec): kind for spec, kind in TOPIC_KINDS.items()}
        # "<kind>/<partition>" of every telemetry partition: each holds the correlator's clock until it reports
        self.expected_sources = [
            f"{kind}/{p}" for topic, kind in self.kind_of_topic.items() for p in range(partitions[topic])
        ]
        self.alerts_topic = self.topic(ALERTS)
        self.findings_topic = self.topic(FINDINGS, partitions=1)
        self.dead_letters = DeadLetters(self.topic(DEAD_LETTERS), metrics=self.metrics)
        sink = ParquetSink(
            settings.data_dir,
            flush_rows=settings.sink.flush_rows,
            flush_seconds=settings.sink.flush_seconds,
            topology=self.topology,
            stream_tags=stream_tags,
        )
        sink.on_file = self._count_file
        detectors = PartitionDetectors(self.topology, settings.detect, self.kind_of_topic)
        self.checkpoint = Checkpoint(settings, sink, detectors, self.topic(DETECTOR_STATE, partitions=1), self.metrics)
        self.sink = sink
        self.correlator = Correlator(self.topology, settings.detect.correlate)
        self.silences = SilenceBook()  # kept current by the silence agent's follower
        self.silences_read = threading.Event()  # the follower has read the topic to its end once
        self.correlator.silences = self.silences.silenced_by
        self.notifier: Notifier | None = None  # set by the notify agent when receivers are configured
        self.alert_counts: dict[str, int] = defaultdict(int)
        self.unconfirmed_alerts: list[Any] = []  # sends not yet known delivered (`alerts_delivered`)
        self.watermarks: dict[str, int] = {}  # "<kind>/<partition>" -> newest sample time processed
        self.positions: dict[str, tuple[Any, int]] = {}  # source -> (topic partition, last offset processed)
        self.on_revoked: list[OnRevoked] = []  # the agents' callbacks
        self.before_revoked: list[BeforeRevoked] = []  # run first (e.g. to save state)

    def topic(self, spec: TopicSpec, partitions: int | None = None) -> Any:
        return self.app.topic(
            self.settings.topic(spec), key_type=bytes, value_type=bytes, allow_empty=True, partitions=partitions
        )

    async def publish(self, alerts: list[Alert]) -> None:
        """Alert state changes to the alerts topic, each logged as one line at info."""
        for alert in alerts:
            sent = await self.alerts_topic.send(key=alert.id.encode(), value=alert.to_json(), force=True)
            self.unconfirmed_alerts.append(sent)
            self.alert_counts[alert.status] += 1
            self.metrics.alerts.labels(alert.kind, alert.status).inc()
            log.info("alert %s", alert.line())

    async def alerts_delivered(self) -> None:
        """Wait until every alert published so far is on the broker: the correlator's snapshot,
        which says they were published, must not reach the broker before them (a worker killed
        between the two would leave alerts nobody publishes again)."""
        pending, self.unconfirmed_alerts = self.unconfirmed_alerts, []
        for sent in pending:
            await sent

    def _count_file(self, rows: int, size: int) -> None:  # called from the writing thread
        self.metrics.flush_rows.inc(rows)
        self.metrics.flush_bytes.inc(size)

    async def revoke(self, revoked: set[Any]) -> None:
        """A rebalance took these partitions: save what must be saved, drop what they held."""
        for save in self.before_revoked:
            await save(revoked)
        # a write in flight of a revoked partition lands now, before its new owner lists the lake
        await self.checkpoint.acks.settle({(tp.topic, tp.partition) for tp in revoked})
        self.checkpoint.revoke({(tp.topic, tp.partition) for tp in revoked})
        for forget in self.on_revoked:
            forget(revoked)


async def alert_events(stream: StreamT) -> AsyncIterator[tuple[EventT, Alert]]:
    """The alerts of an alerts-topic stream with their events, unacknowledged; a record that is not an
    alert is acknowledged and skipped (the alert sink dead-letters it)."""
    async for event in stream.noack().events():  # type: ignore[attr-defined]  # faust: StreamT lacks Stream.noack()
        try:
            alert = Alert.from_json(event.value)
        except (ValueError, TypeError):
            await stream.ack(event)
            continue
        yield event, alert
