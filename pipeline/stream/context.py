"""What a worker's agents share: settings, topology, the Parquet sink, per-partition detectors,
the topics they send to, and `publish` for alerts."""

from __future__ import annotations

import asyncio
import logging
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

import faust

from pipeline.correlate.correlator import Correlator
from pipeline.detect import DetectorSet
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
from pipeline.ops.metrics import WorkerMetrics
from pipeline.settings import Settings
from pipeline.stream.guarantees import AckAfterFlush, DeadLetters
from pipeline.stream.partition_state import PartitionDetectors, read_snapshots, state_key

log = logging.getLogger("clusterpulse.worker")

# topic spec -> batch kind it must carry
TOPIC_KINDS = {CARD_TELEMETRY: "card", STEP_TELEMETRY: "step", PORT_TELEMETRY: "port"}

# Every send uses force=True: inside an agent Faust would otherwise attach the message to the event
# being processed and publish it only when that event is acknowledged, which for telemetry is after
# its Parquet file is written, seconds later, and after later watermarks.


class WorkerContext:
    """Built once per worker by `pipeline.stream.app.create_app`; each agent module registers on it."""

    def __init__(self, app: faust.App, settings: Settings, stream_tags: dict[str, str]) -> None:
        self.app = app
        self.settings = settings
        self.topology = settings.build_topology()
        self.worker_id = f"{os.uname().nodename}-{os.getpid()}"
        self.sink = ParquetSink(
            settings.data_dir,
            flush_rows=settings.sink.flush_rows,
            flush_seconds=settings.sink.flush_seconds,
            topology=self.topology,
            stream_tags=stream_tags,
        )
        self.kind_of_topic = {settings.topic(spec): kind for spec, kind in TOPIC_KINDS.items()}
        self.detectors = PartitionDetectors(self.topology, settings.detect, self.kind_of_topic)
        self.correlator = Correlator(self.topology, settings.detect.correlate)
        self.metrics = WorkerMetrics()
        self.sink.on_file = self._count_file
        self.acks = AckAfterFlush(self.sink, on_durable=self.save_state, metrics=self.metrics)
        self.alerts_topic = self.topic(ALERTS)
        self.findings_topic = self.topic(FINDINGS, partitions=1)
        self.state_topic = self.topic(DETECTOR_STATE, partitions=1)
        self.dead_letters = DeadLetters(self.topic(DEAD_LETTERS), metrics=self.metrics)
        self.alert_counts: dict[str, int] = defaultdict(int)
        self.notifier: Any = None
        self.watermarks: dict[str, int] = {}
        self.expected_sources: list[str] = []  # "<kind>/<partition>" of every telemetry partition
        self.positions: dict[str, tuple[Any, int]] = {}
        self.on_revoked: list = []  # callbacks(revoked topic partitions) of the agents
        self.before_revoked: list = []  # async callbacks, run first (e.g. to save state)
        self._restore_lock = asyncio.Lock()
        self._snapshots: dict[str, bytes] | None = None

    def topic(self, spec: TopicSpec, partitions: int | None = None) -> Any:
        return self.app.topic(
            self.settings.topic(spec), key_type=bytes, value_type=bytes, allow_empty=True, partitions=partitions
        )

    async def publish(self, alerts: list[Alert]) -> None:
        """Alert state changes to the alerts topic, each logged as one line at info."""
        for alert in alerts:
            await self.alerts_topic.send(key=alert.id.encode(), value=alert.to_json(), force=True)
            self.alert_counts[alert.status] += 1
            self.metrics.alerts.labels(alert.kind, alert.status).inc()
            log.info("alert %s", alert.line())

    def _count_file(self, rows: int, size: int) -> None:  # called from the writing thread
        self.metrics.flush_rows.inc(rows)
        self.metrics.flush_bytes.inc(size)

    async def save_state(self, topic_name: str, partition: int) -> None:
        data = self.detectors.snapshot(topic_name, partition)
        if data is not None:
            await self.state_topic.send(key=state_key(topic_name, partition).encode(), value=data, force=True)

    async def detectors_for(self, topic_name: str, partition: int, offset: int) -> DetectorSet:
        """The partition's detectors; the first time a partition is seen, its detector state is
        restored and files an earlier owner wrote but never committed are removed."""
        found = self.detectors.sets.get((topic_name, partition))
        if found is not None:
            return found
        async with self._restore_lock:
            if (topic_name, partition) not in self.detectors.sets:
                await self.discard_uncommitted(topic_name, partition, offset)
                if self._snapshots is None:
                    self._snapshots = await asyncio.to_thread(
                        read_snapshots, self.settings.require_bootstrap(), self.settings.topic(DETECTOR_STATE)
                    )
                restored = self.detectors.load(self._snapshots, [(topic_name, partition)])
                self.detectors.sets[(topic_name, partition)].repeats.resume_at(offset)
                log.info(
                    "%s[%d]: %s",
                    topic_name,
                    partition,
                    "restored detector state" if restored else "no saved detector state; starting fresh",
                )
        return self.detectors.sets[(topic_name, partition)]

    async def discard_uncommitted(self, topic_name: str, partition: int, offset: int) -> None:
        removed = await asyncio.to_thread(self.sink.discard_uncommitted, topic_name, partition, offset)
        if removed:
            log.warning(
                "%s[%d]: removed %d Parquet files that this consumer group (%s) wrote after its last "
                "commit (offset %d) before a crash; their rows are read again and rewritten: %s",
                topic_name,
                partition,
                len(removed),
                self.settings.group_id,
                offset,
                ", ".join(Path(p).name for p in removed[:3]) + (" ..." if len(removed) > 3 else ""),
            )

    def forget_partitions(self) -> None:
        """After a rebalance: partitions assigned again later re-read their latest state and files."""
        self._snapshots = None
        self.sink.forget_listing()
