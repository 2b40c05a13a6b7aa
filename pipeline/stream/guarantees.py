"""What the worker promises about its input: bad messages become dead letters with a reason, and a
telemetry message is acknowledged (its offset committed) only once its rows are durable Parquet."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from typing import Any

from faust.types import EventT, StreamT

from pipeline.lake.parquet import ParquetSink
from pipeline.model.topics import DLQ_OFFSET, DLQ_PARTITION, DLQ_REASON, DLQ_TOPIC
from pipeline.ops.metrics import WorkerMetrics

log = logging.getLogger("clusterpulse.worker")


class DeadLetters:
    """Sends bad messages, unchanged, to the dead-letter topic with the reason in headers.

    Above `loud_after` records a minute it logs an error each minute so a poison flood cannot
    hide in the dead-letter topic; nothing is ever dropped.
    """

    def __init__(self, topic: Any, loud_after: int = 100, metrics: WorkerMetrics | None = None) -> None:
        self.topic = topic
        self.metrics = metrics
        self.loud_after = loud_after
        self.total = 0
        self._window_start = 0.0
        self._window_count = 0

    async def send(self, event: EventT, reason: str, reason_class: str = "other") -> None:
        """`reason`: one line for people (the header); `reason_class`: one word for the metric."""
        msg = event.message
        headers = {
            DLQ_REASON: reason.encode(),
            DLQ_TOPIC: msg.topic.encode(),
            DLQ_PARTITION: str(msg.partition).encode(),
            DLQ_OFFSET: str(msg.offset).encode(),
        }
        await self.topic.send(key=msg.key, value=msg.value, headers=headers, force=True)
        self.total += 1
        if self.metrics is not None:
            self.metrics.dead_letters.labels(reason_class).inc()
        now = asyncio.get_running_loop().time()
        if now - self._window_start >= 60:
            self._window_start, self._window_count = now, 0
        self._window_count += 1
        level = logging.ERROR if self._window_count > self.loud_after else logging.WARNING
        if self._window_count <= 10 or self._window_count % self.loud_after == 0:
            log.log(
                level,
                "dead-lettered %s[%d]@%d: %s (%d this minute)",
                msg.topic,
                msg.partition,
                msg.offset,
                reason,
                self._window_count,
            )


class AckAfterFlush:
    """Holds events until the sink has written their rows, then acknowledges them."""

    def __init__(
        self,
        sink: ParquetSink,
        on_durable: Any = None,
        clock: Any = time.monotonic,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self.sink = sink
        self.metrics = metrics
        self.pending: dict[tuple[str, int], list[tuple[StreamT, EventT]]] = defaultdict(list)
        self.on_durable = on_durable  # async callback(topic, partition) after a partition's flush
        self.clock = clock
        self.write_error: str | None = None  # why the lake cannot be written now (a full disk)
        self._failing_since = 0.0
        self._retry_at = 0.0
        self._said_at = 0.0
        # partitions whose rows are being written now, done when written and acknowledged: a revoked
        # partition's write must land before its new owner lists the lake (`settle`), or the new
        # owner's file of the same first offset could be overwritten by this one, fewer rows in it
        self.writing: dict[tuple[str, int], asyncio.Event] = {}
        # partitions being revoked: Faust has already dropped their offsets' bookkeeping, so an ack
        # now would be recorded as a fresh one and committed in a later generation, past rows that
        # generation has not written yet; a write landing now acknowledges nothing
        self.revoking: set[tuple[str, int]] = set()

    def hold(self, stream: StreamT, event: EventT) -> None:
        self.pending[(event.message.topic, event.message.partition)].append((stream, event))

    async def flush(self, keys: list[tuple[str, int]]) -> None:
        """Write these partitions' rows and acknowledge what is durable. A write that fails (a
        full disk, a lost mount) puts the rows back and commits nothing; detection goes on, the
        write is tried again every `sink.flush_seconds`, and the log says why until it works."""
        now = self.clock()
        if self.write_error is not None and now < self._retry_at:
            return
        for key in keys:
            if key in self.revoking:
                continue  # no new write of a partition being revoked
            # exactly the events whose rows (or dead letters) the taken buffer holds: events held
            # while it is written, or after the partition was revoked and assigned again, wait
            held = self.pending.pop(key, [])
            buf = self.sink.take(*key)
            started = time.perf_counter()
            done = self.writing[key] = asyncio.Event()
            try:
                await self._write_and_ack(key, buf, held, now, started)
            finally:
                done.set()
                if self.writing.get(key) is done:
                    del self.writing[key]
            if self.write_error is not None and now < self._retry_at:
                return

    async def settle(self, keys: set[tuple[str, int]]) -> None:
        """Wait until the writes in flight of these partitions (being revoked) have landed, without
        acknowledging anything of them (their new owner reads it again)."""
        self.revoking |= keys
        for key in keys:
            done = self.writing.get(key)
            if done is not None:
                await done.wait()

    async def _write_and_ack(
        self, key: tuple[str, int], buf: Any, held: list[tuple[StreamT, EventT]], now: float, started: float
    ) -> None:
        """Write one taken buffer, acknowledge the events it made durable; put it back if it failed."""
        try:
            durable = await asyncio.to_thread(self.sink.write, *key, buf)
        except OSError as exc:
            if self.metrics is not None:
                self.metrics.flush_failures.inc()
            if buf is not None:
                self.sink.put_back(*key, buf)
            self.pending[key] = held + self.pending.get(key, [])
            self._failed(exc, now)
            return
        if self.write_error is not None:
            log.warning(
                "the lake takes writes again after %.0f s (%s); writing the %d rows held",
                now - self._failing_since,
                self.write_error,
                self.sink.held_rows(),
            )
            self.write_error = None
        if self.metrics is not None and buf is not None:
            self.metrics.flush_seconds.observe(time.perf_counter() - started)
        if key in self.revoking:
            return
        keep = []
        for stream, event in held:
            if event.message.offset <= durable:
                await stream.ack(event)
            else:
                keep.append((stream, event))
        if keep or key in self.pending:
            self.pending[key] = keep + self.pending.get(key, [])
        if self.on_durable is not None:
            await self.on_durable(*key)

    def _failed(self, exc: OSError, now: float) -> None:
        reason = f"{type(exc).__name__}: {exc}".replace("\n", " ")
        if self.write_error is None:
            self._failing_since = now
        if self.write_error is None or now - self._said_at >= 60:
            log.error(
                "cannot write Parquet to the lake (%s): holding %d rows in memory and committing no "
                "offsets, alerts go on; trying again every %g s (failing for %.0f s)",
                reason,
                self.sink.held_rows(),
                self.sink.flush_seconds,
                now - self._failing_since,
            )
            self._said_at = now
        self.write_error = reason
        self._retry_at = now + self.sink.flush_seconds

    async def flush_due(self) -> None:
        await self.flush(self.sink.due())

    def forget(self, partitions: set[tuple[str, int]]) -> None:
        """Drop what a revoked partition held: uncommitted, so its new owner reads it again."""
        for key in partitions:
            self.pending.pop(key, None)
            self.sink.discard(*key)
            self.revoking.discard(key)  # taken again later: its events are acknowledged again
