"""What happens to a card, step or port batch: decode (bad input → dead letter with the reason),
run the partition's detectors, send findings, job placements, jobs' progress and nodes' activity to
the correlator, buffer the rows
for Parquet, and acknowledge the message only once those rows are on disk. Also the per-partition
event-time watermarks the correlator's clock runs on."""

from __future__ import annotations

import logging
import time
from typing import Any

from faust.types import EventT, StreamT

from pipeline.detect import DetectorSet
from pipeline.model.findings import (
    encode_activity,
    encode_finding,
    encode_placement,
    encode_progress,
    encode_timeouts,
    encode_watermarks,
)
from pipeline.model.schemas import Batch, InvalidRecord, decode_batch
from pipeline.model.topics import TopicSpec
from pipeline.stream.context import TOPIC_KINDS, WorkerContext
from pipeline.stream.intake import IMPOSSIBLE, admit
from pipeline.topology.entities import check_entities
from pipeline.topology.protocol import ClusterTopology

log = logging.getLogger("clusterpulse.worker")


def known_parts(batch: Batch, topology: ClusterTopology) -> tuple[list[Batch], str | None]:
    """The parts of a batch whose entities the topology has, and why the others are not taken (one
    line, or None). A collector's message is checked whole first and split only when it is bad."""
    try:
        check_entities(batch, topology)
        return [batch], None  # detectors and the sink take the message whole
    except InvalidRecord as exc:
        parts, unknown = [], []
        for part in batch.split() if batch.parts else []:  # which sources are unknown
            try:
                check_entities(part, topology)
                parts.append(part)
            except InvalidRecord as again:
                unknown.append(again.reason)
        unknown = unknown or [exc.reason]
        why = (
            "; ".join(unknown[:3])
            + (f" (and {len(unknown) - 3} more)" if len(unknown) > 3 else "")
            + (f"; the other {len(parts)} sources of the message were processed" if parts else "")
        )
        return parts, why


def register(ctx: WorkerContext) -> None:
    watermarks = ctx.watermarks  # "<kind>/<partition>" -> newest sample time processed
    positions = ctx.positions  # source -> (topic partition, last offset processed)
    sent_marks: dict[str, tuple[int, bool]] = {}
    topology, sink, checkpoint = ctx.topology, ctx.sink, ctx.checkpoint
    intake = ctx.settings.intake

    def skip(stream: StreamT, event: EventT) -> None:
        """Nothing of this message goes on: its offset is committed with the next flush."""
        msg = event.message
        sink.mark_consumed(msg.topic, msg.partition, msg.offset)
        checkpoint.hold(stream, event)

    def is_repeat(detectors: DetectorSet, event: EventT) -> bool:
        """A producer's retry stored twice by the broker (logged at the first and every 1000th)."""
        msg, repeats = event.message, detectors.repeats
        if not repeats.seen(event.value, msg.offset):
            return False
        if repeats.repeats == 1 or repeats.repeats % 1000 == 0:
            log.warning(
                "dropped a repeated message at %s[%d]@%d (%d in this partition): a producer "
                "retried a request the broker had already stored",
                msg.topic,
                msg.partition,
                msg.offset,
                repeats.repeats,
            )
        return True

    def decode(event: EventT, kind: str, source: str) -> tuple[Batch, str | None]:
        """The message as a batch of its topic's kind, with impossible rows taken out (and why);
        raises InvalidRecord when nothing of it can be taken."""
        batch = decode_batch(event.value)
        if batch.kind != kind:
            raise InvalidRecord(f"a {batch.kind} batch on the {kind} topic", "wrong_topic")
        return admit(batch, int(time.time() * 1000), watermarks.get(source, -1), intake)

    async def send_findings(detectors: DetectorSet, parts: list[Batch], event: EventT, source: str) -> None:
        for part in parts:
            for finding in detectors.push(part, event.message.partition):
                await ctx.findings_topic.send(
                    key=finding.id.encode(), value=encode_finding(finding, source), force=True
                )

    async def send_placements(detectors: DetectorSet) -> None:
        for job, nodes in detectors.take_placements().items():
            await ctx.findings_topic.send(key=job.encode(), value=encode_placement(job, nodes), force=True)

    async def send_jobs_and_nodes(detectors: DetectorSet, kind: str) -> None:
        """What the correlator's hang watch needs, sent with the message that changed it and so
        before the watermark that passes it: where the jobs of a step message stand, and which nodes
        of a card message turned busy or idle, and the collective timeouts a step message carries."""
        if kind == "step":
            progress = detectors.take_progress()
            if progress:
                await ctx.findings_topic.send(key=ctx.worker_id.encode(), value=encode_progress(progress), force=True)
            timeouts = detectors.take_timeouts()
            if timeouts:
                await ctx.findings_topic.send(key=ctx.worker_id.encode(), value=encode_timeouts(timeouts), force=True)
        elif kind == "card":
            activity = detectors.take_activity()
            if activity:
                await ctx.findings_topic.send(key=ctx.worker_id.encode(), value=encode_activity(activity), force=True)

    def advance(batch: Batch, event: EventT, source: str) -> None:
        """The source's event-time watermark and read position."""
        if batch.ts_ms > watermarks.get(source, -1):
            watermarks[source] = batch.ts_ms
        positions[source] = (event.message.tp, event.message.offset)

    def buffer_rows(stream: StreamT, event: EventT, parts: list[Batch]) -> bool:
        """The rows into the partition's Parquet buffer, the message held until they are written;
        True when the buffer is full."""
        msg = event.message
        full = False
        for part in parts:
            full = sink.add_batch(msg.topic, msg.partition, msg.offset, part) or full
        if not parts:
            sink.mark_consumed(msg.topic, msg.partition, msg.offset)
        checkpoint.hold(stream, event)
        return full

    def telemetry_agent(spec: TopicSpec) -> None:
        kind = TOPIC_KINDS[spec]

        async def handle(stream: StreamT) -> None:
            counted: dict[str, Any] = {}  # topic -> its message counter
            processed = ctx.metrics.samples.labels(kind)
            took = ctx.metrics.batch_seconds.labels(kind)
            async for event in stream.noack().events():  # type: ignore[attr-defined]  # faust: StreamT lacks Stream.noack()
                started = time.perf_counter()
                msg = event.message
                if msg.topic not in counted:
                    counted[msg.topic] = ctx.metrics.messages.labels(msg.topic)
                counted[msg.topic].inc()
                detectors = await checkpoint.detectors_for(msg.topic, msg.partition, msg.offset)
                if is_repeat(detectors, event):
                    skip(stream, event)
                    continue
                source = f"{kind}/{msg.partition}"
                try:
                    batch, bad_values = decode(event, kind, source)
                except InvalidRecord as exc:
                    await ctx.dead_letters.send(event, exc.reason, exc.reason_class)
                    skip(stream, event)
                    continue
                parts, unknown = known_parts(batch, topology)
                bad = [why for why in (bad_values, unknown) if why]
                if bad:  # what could be taken is processed; the message is kept with why
                    await ctx.dead_letters.send(event, "; ".join(bad), IMPOSSIBLE if bad_values else "unknown_entity")
                await send_findings(detectors, parts, event, source)
                if kind == "step":
                    await send_placements(detectors)
                await send_jobs_and_nodes(detectors, kind)
                advance(batch, event, source)
                full = buffer_rows(stream, event, parts)
                processed.inc(sum(part.rows() for part in parts))
                took.observe(time.perf_counter() - started)
                if full:
                    await checkpoint.flush([(msg.topic, msg.partition)])

        handle.__name__ = f"{kind}_telemetry"
        ctx.app.agent(ctx.topic(spec), name=f"clusterpulse.{kind}")(handle)

    for spec in TOPIC_KINDS:
        telemetry_agent(spec)

    async def end_offsets() -> dict:
        """Each assigned telemetry partition's end offset, asked of the broker now. The consumer's
        own highwater is the one of its last fetch, which can be seconds old while this worker reads
        other partitions: a partition would look read to its end while a producer writes to it."""
        tps = [tp for tp in ctx.app.consumer.assignment() if tp.topic in ctx.kind_of_topic]
        if not tps:
            return {}
        try:
            return dict(await ctx.app.consumer.highwaters(*tps))
        except Exception:  # a rebalance or the broker away: nothing counts as caught up this time
            return {}

    def caught_up(source: str, ends: dict) -> bool:
        """Has this worker read everything in the source's partition?"""
        tp, offset = positions.get(source, (None, -1))
        end = ends.get(tp) if tp is not None else None
        return end is not None and offset + 1 >= end

    def unread_sources(ends: dict) -> dict[str, tuple[int, bool]]:
        """Assigned telemetry partitions this worker has read nothing of yet: caught up if they hold
        no message at all, else holding the clock until read (data may have come since they were
        empty)."""
        unread = {}
        for tp, end in ends.items():
            kind = ctx.kind_of_topic.get(tp.topic)
            source = f"{kind}/{tp.partition}"
            if kind is not None and source not in watermarks:
                unread[source] = (-1, end == 0)
        return unread

    @ctx.app.timer(interval=0.5)
    async def send_watermarks() -> None:
        ends = await end_offsets()
        marks = {src: (ts, caught_up(src, ends)) for src, ts in watermarks.items()}
        marks.update(unread_sources(ends))
        changed = {src: mark for src, mark in marks.items() if sent_marks.get(src) != mark}
        if changed:
            await ctx.findings_topic.send(key=ctx.worker_id.encode(), value=encode_watermarks(changed), force=True)
            sent_marks.update({src: marks[src] for src in changed})

    @ctx.app.timer(interval=1.0)
    async def flush_due() -> None:
        await checkpoint.flush_due()

    def forget(revoked: set) -> None:
        for tp in revoked:
            if tp.topic in ctx.kind_of_topic:
                source = f"{ctx.kind_of_topic[tp.topic]}/{tp.partition}"
                watermarks.pop(source, None)
                positions.pop(source, None)

    ctx.on_revoked.append(forget)
