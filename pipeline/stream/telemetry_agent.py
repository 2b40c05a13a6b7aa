"""What happens to a card, step or port batch: decode (bad input → dead letter with the reason),
run the partition's detectors, send findings and job placements to the correlator, buffer the rows
for Parquet, and acknowledge the message only once those rows are on disk. Also the per-partition
event-time watermarks the correlator's clock runs on."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from faust.types import StreamT

from pipeline.model.schemas import InvalidRecord, decode_batch
from pipeline.model.topics import TopicSpec
from pipeline.stream.context import TOPIC_KINDS, WorkerContext
from pipeline.stream.intake import IMPOSSIBLE, admit
from pipeline.topology.entities import check_entities

log = logging.getLogger("clusterpulse.worker")


def register(ctx: WorkerContext) -> None:
    watermarks = ctx.watermarks  # "<kind>/<partition>" -> newest sample time processed
    positions = ctx.positions  # source -> (topic partition, last offset processed)
    sent_marks: dict[str, tuple[int, bool]] = {}
    topology, sink, acks = ctx.topology, ctx.sink, ctx.acks
    intake = ctx.settings.intake

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
                partition_detectors = await ctx.detectors_for(msg.topic, msg.partition, msg.offset)
                repeats = partition_detectors.repeats
                if repeats.seen(event.value, msg.offset):  # a producer's retry stored twice
                    if repeats.repeats == 1 or repeats.repeats % 1000 == 0:
                        log.warning(
                            "dropped a repeated message at %s[%d]@%d (%d in this partition): a producer "
                            "retried a request the broker had already stored",
                            msg.topic,
                            msg.partition,
                            msg.offset,
                            repeats.repeats,
                        )
                    sink.mark_consumed(msg.topic, msg.partition, msg.offset)
                    acks.hold(stream, event)
                    continue
                source = f"{kind}/{msg.partition}"
                try:
                    batch = decode_batch(event.value)
                    if batch.kind != kind:
                        raise InvalidRecord(f"a {batch.kind} batch on the {kind} topic", "wrong_topic")
                    batch, bad_values = admit(batch, int(time.time() * 1000), watermarks.get(source, -1), intake)
                except InvalidRecord as exc:
                    await ctx.dead_letters.send(event, exc.reason, exc.reason_class)
                    sink.mark_consumed(msg.topic, msg.partition, msg.offset)
                    acks.hold(stream, event)
                    continue
                parts, bad = [], [bad_values] if bad_values else []
                try:
                    check_entities(batch, topology)  # a collector's message: all its sources at once
                    parts = [batch]  # detectors and the sink take the message whole
                except InvalidRecord as exc:
                    unknown = []
                    for part in batch.split() if batch.parts else []:  # which sources are unknown
                        try:
                            check_entities(part, topology)
                            parts.append(part)
                        except InvalidRecord as again:
                            unknown.append(again.reason)
                    unknown = unknown or [exc.reason]
                    bad.append(
                        "; ".join(unknown[:3])
                        + (f" (and {len(unknown) - 3} more)" if len(unknown) > 3 else "")
                        + (f"; the other {len(parts)} sources of the message were processed" if parts else "")
                    )
                if bad:  # what could be taken is processed; the message is kept with why
                    await ctx.dead_letters.send(event, "; ".join(bad), IMPOSSIBLE if bad_values else "unknown_entity")
                for part in parts:
                    for finding in partition_detectors.push(part, msg.partition):
                        await ctx.findings_topic.send(
                            key=finding.id.encode(),
                            value=json.dumps(
                                {"t": "finding", "src": source, "alert": json.loads(finding.to_json())}
                            ).encode(),
                            force=True,
                        )
                if kind == "step":
                    for job, nodes in partition_detectors.take_placements().items():
                        await ctx.findings_topic.send(
                            key=job.encode(),
                            value=json.dumps({"t": "placement", "job": job, "nodes": nodes}).encode(),
                            force=True,
                        )
                if batch.ts_ms > watermarks.get(source, -1):
                    watermarks[source] = batch.ts_ms
                positions[source] = (event.message.tp, msg.offset)
                full = False
                for part in parts:
                    full = sink.add_batch(msg.topic, msg.partition, msg.offset, part) or full
                if not parts:
                    sink.mark_consumed(msg.topic, msg.partition, msg.offset)
                acks.hold(stream, event)
                processed.inc(sum(part.rows() for part in parts))
                took.observe(time.perf_counter() - started)
                if full:
                    await acks.flush([(msg.topic, msg.partition)])

        handle.__name__ = f"{kind}_telemetry"
        ctx.app.agent(ctx.topic(spec), name=f"clusterpulse.{kind}")(handle)

    for spec in TOPIC_KINDS:
        telemetry_agent(spec)

    def caught_up(source: str) -> bool:
        """Has this worker read everything in the source's partition?"""
        tp, offset = positions.get(source, (None, -1))
        try:
            highwater = ctx.app.consumer.highwater(tp) if tp is not None else None
        except Exception:  # not assigned (any more), or no fetch yet
            return False
        return highwater is not None and offset + 1 >= highwater

    def empty_sources() -> list[str]:
        """Assigned telemetry partitions that hold no message at all: caught up from the start."""
        empty = []
        for tp in ctx.app.consumer.assignment():
            kind = ctx.kind_of_topic.get(tp.topic)
            source = f"{kind}/{tp.partition}"
            if kind is None or source in watermarks:
                continue
            try:
                if ctx.app.consumer.highwater(tp) == 0:
                    empty.append(source)
            except Exception:  # no fetch yet
                pass
        return empty

    @ctx.app.timer(interval=0.5)
    async def send_watermarks() -> None:
        marks = {src: (ts, caught_up(src)) for src, ts in watermarks.items()}
        marks.update({src: (-1, True) for src in empty_sources()})
        changed = {src: list(mark) for src, mark in marks.items() if sent_marks.get(src) != mark}
        if changed:
            await ctx.findings_topic.send(
                key=ctx.worker_id.encode(), value=json.dumps({"t": "watermarks", "marks": changed}).encode(), force=True
            )
            sent_marks.update({src: marks[src] for src in changed})

    @ctx.app.timer(interval=1.0)
    async def flush_due() -> None:
        await acks.flush_due()

    def forget(revoked: set) -> None:
        for tp in revoked:
            if tp.topic in ctx.kind_of_topic:
                source = f"{ctx.kind_of_topic[tp.topic]}/{tp.partition}"
                watermarks.pop(source, None)
                positions.pop(source, None)
                ctx.detectors.drop(tp.topic, tp.partition)

    ctx.on_revoked.append(forget)
