"""The correlator agent: the one `findings` partition in, root-caused alerts out (pipeline.correlate.correlator).

Its state (held symptoms, firing alerts and their roots, which sources see what, watermarks) must
survive a restart or a move to another worker, or a resolution loses its root cause and a replayed
finding fires twice. So, like the detectors: every second (and when the partition is revoked or the
worker stops) the state is saved to the compacted state topic with the offset of the last finding
it includes, and only then are those findings acknowledged. A new owner restores the snapshot and
skips findings the snapshot already includes."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import faust
from faust.types import EventT, StreamT

from pipeline.model.schemas import Alert
from pipeline.model.topics import DETECTOR_STATE
from pipeline.stream.context import WorkerContext
from pipeline.stream.partition_state import read_snapshots

log = logging.getLogger("clusterpulse.worker")


def register(ctx: WorkerContext) -> None:
    correlator = ctx.correlator
    key = f"correlator/{ctx.findings_topic.get_topic_name()}"
    held: list[tuple[StreamT, EventT]] = []
    position = {"restored": False, "offset": -1}  # last finding offset the state includes
    lock = asyncio.Lock()

    async def restore() -> None:
        snapshots = await asyncio.to_thread(
            read_snapshots, ctx.settings.require_bootstrap(), ctx.settings.topic(DETECTOR_STATE)
        )
        data = snapshots.get(key)
        if data is not None and len(data) > 8 and correlator.restore(data[8:]):
            position["offset"] = int.from_bytes(data[:8], "big", signed=True)
            log.info("correlator: restored its state (findings up to offset %d)", position["offset"])
        correlator.expect(ctx.expected_sources)
        position["restored"] = True

    async def save() -> None:
        """Snapshot, wait until the broker has it, then acknowledge the findings it includes."""
        async with lock:
            if not held:
                return
            taken = list(held)
            held.clear()
            data = position["offset"].to_bytes(8, "big", signed=True) + correlator.snapshot()
            sent = await ctx.state_topic.send(key=key.encode(), value=data, force=True)
            await sent  # delivered (acks=all) before any finding it includes is committed
            for stream, event in taken:
                await stream.ack(event)

    @ctx.app.agent(ctx.findings_topic, name="clusterpulse.correlator")
    async def correlate(stream: StreamT) -> None:
        async for event in stream.noack().events():  # type: ignore[attr-defined]  # faust: StreamT lacks Stream.noack()
            if not position["restored"]:
                await restore()
            if event.message.offset <= position["offset"]:
                await stream.ack(event)  # already in the restored state
                continue
            try:
                record = json.loads(event.value)
                what = record["t"]
                if what == "finding":
                    await ctx.publish(correlator.push(Alert(**record["alert"]), record["src"]))
                elif what == "watermarks":
                    for src, mark in record["marks"].items():
                        ts, up_to_date = mark if isinstance(mark, list) else (mark, False)
                        await ctx.publish(correlator.advance(src, int(ts), bool(up_to_date)))
                elif what == "placement":
                    correlator.place(record["job"], list(record["nodes"]))
                else:
                    raise ValueError(f"unknown record type {what!r}")
            except (ValueError, TypeError, KeyError) as exc:
                await ctx.dead_letters.send(
                    event, f"not a findings record: {type(exc).__name__}: {exc}", "not_a_finding"
                )
            position["offset"] = event.message.offset
            held.append((stream, event))

    @ctx.app.timer(interval=1.0)
    async def release_stale() -> None:
        await ctx.publish(correlator.release_stale())
        await save()

    def forget(revoked: set) -> None:
        if any(tp.topic == ctx.findings_topic.get_topic_name() for tp in revoked):
            position["restored"] = False  # taken back later: read the latest snapshot again
            position["offset"] = -1
            held.clear()
            correlator.reset()  # its new owner carries on from the saved state

    async def before_revoke(revoked: set) -> None:
        if any(tp.topic == ctx.findings_topic.get_topic_name() for tp in revoked):
            await save()

    ctx.on_revoked.append(forget)
    ctx.before_revoked.append(before_revoke)

    @ctx.app.on_before_shutdown.connect  # type: ignore[arg-type]  # mode: its SignalHandlerT matches no handler
    async def save_at_shutdown(app: faust.App, **kwargs: Any) -> None:
        await save()
