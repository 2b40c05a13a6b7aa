"""The worker's checkpoint, one step per partition: write the rows buffered for it (Parquet), commit
the offsets of the messages they cover, then save the partition's detector state to the compacted
state topic. A partition seen for the first time goes the other way: files an earlier owner wrote
but never committed are removed and its detector state is restored. (The correlator checkpoints its
own state and findings offset the same way, every second: `correlator_agent`.)"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from faust.types import EventT, StreamT

from pipeline.detect import DetectorSet
from pipeline.lake.parquet import ParquetSink
from pipeline.model.topics import DETECTOR_STATE
from pipeline.ops.metrics import WorkerMetrics
from pipeline.settings import Settings
from pipeline.stream.guarantees import AckAfterFlush
from pipeline.stream.partition_state import PartitionDetectors, read_snapshots, state_key

log = logging.getLogger("clusterpulse.worker")

Partition = tuple[str, int]  # (topic name, partition)


class Checkpoint:
    """Flush, commit, save: the only way a worker's offsets move forward."""

    def __init__(
        self,
        settings: Settings,
        sink: ParquetSink,
        detectors: PartitionDetectors,
        state_topic: Any,
        metrics: WorkerMetrics,
    ) -> None:
        self.settings = settings
        self.sink = sink
        self.detectors = detectors
        self.state_topic = state_topic
        self.acks = AckAfterFlush(sink, on_durable=self.save_state, metrics=metrics)
        self._restore_lock = asyncio.Lock()
        self._snapshots: dict[str, bytes] | None = None

    def hold(self, stream: StreamT, event: EventT) -> None:
        """Acknowledge this message at the checkpoint that writes its rows (or after them)."""
        self.acks.hold(stream, event)

    async def flush(self, partitions: list[Partition]) -> None:
        await self.acks.flush(partitions)

    async def flush_due(self) -> None:
        """The partitions whose buffers are old enough (`sink.flush_seconds`)."""
        await self.acks.flush_due()

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

    def revoke(self, partitions: set[Partition]) -> None:
        """After a rebalance: what revoked partitions held is dropped uncommitted (their new owner
        reads it again); partitions assigned again later re-read their latest state and files."""
        self.acks.forget(partitions)
        self._snapshots = None
        self.sink.forget_listing()
        for topic_name, partition in partitions:
            self.detectors.drop(topic_name, partition)

    async def at_shutdown(self) -> None:
        """The consumer has stopped: write what is buffered and save every partition's state. Offsets
        of these rows may stay uncommitted; a restart re-reads them and rewrites the same file names."""
        written = {}
        for topic_name, partition in self.sink.pending():
            try:
                written[(topic_name, partition)] = self.sink.flush(topic_name, partition)
            except OSError as exc:  # uncommitted: a restart reads these rows again
                log.error(
                    "could not write %s[%d] at shutdown (%s); a restart reads its rows again",
                    topic_name,
                    partition,
                    exc,
                )
        for topic_name, partition in list(self.detectors.sets):
            await self.save_state(topic_name, partition)
        log.info("flushed %d partitions and saved their detector state at shutdown", len(written))
