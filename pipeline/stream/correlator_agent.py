"""The correlator agent: the one `findings` partition in, root-caused alerts out (pipeline.correlate.correlator).

Its state (held symptoms, firing alerts and their roots, which sources see what, watermarks) must
survive a restart or a move to another worker, or a resolution loses its root cause and a replayed
finding fires twice. So, like the detectors: every second (and when the partition is revoked or the
worker stops) the state is saved to the compacted state topic with the offset of the last finding
it includes, and only then are those findings acknowledged. A new owner restores the snapshot and
skips findings the snapshot already includes."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import faust
from faust.types import EventT, StreamT

from pipeline.model.findings import Activity, Finding, Progress, Timeouts, Watermarks, decode_findings_record
from pipeline.model.schemas import InvalidRecord
from pipeline.model.topics import DETECTOR_STATE
from pipeline.stream.context import WorkerContext
from pipeline.stream.partition_state import read_snapshots

log = logging.getLogger("clusterpulse.worker")
SILENCES_WAIT_S = 15.0  # at start, how long findings wait for the silences topic to be read (it is small)


def register(ctx: WorkerContext) -> None:
    correlator = ctx.correlator
    key = f"correlator/{ctx.findings_topic.get_topic_name()}"
    held: list[tuple[StreamT, EventT]] = []
    position = {"restored": False, "offset": -1}  # last finding offset the state includes
    lock = asyncio.Lock()

    async def restore() -> None:
        # the silences first: a finding published before they are read would page what they cover
        if not await asyncio.to_thread(ctx.silences_read.wait, SILENCES_WAIT_S):
            log.warning("correlator: the silences topic was not read within %g s; going on", SILENCES_WAIT_S)
        snapshots = await asyncio.to_thread(
            read_snapshots, ctx.settings.require_bootstrap(), ctx.settings.topic(DETECTOR_STATE)
        )
        data = snapshots.get(key)
        if data is not None and correlator.restore(data):
            position["offset"] = correlator.restored_offset
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
            await ctx.alerts_delivered()  # what the snapshot calls published is on the broker first
            data = correlator.snapshot(upto_offset=position["offset"])
            sent = await ctx.checkpoint.state_topic.send(key=key.encode(), value=data, force=True)
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
                record = decode_findings_record(event.value)
            except InvalidRecord as exc:
                await ctx.dead_letters.send(event, exc.reason, exc.reason_class)
            else:
                if isinstance(record, Finding):
                    await ctx.publish(correlator.push(record.alert, record.source))
                elif isinstance(record, Watermarks):
                    for src, (ts, up_to_date) in record.marks.items():
                        await ctx.publish(correlator.advance(src, ts, up_to_date))
                elif isinstance(record, Progress):
                    log.debug("correlator: progress of %s", record.jobs)
                    correlator.progress(record.jobs)
                elif isinstance(record, Timeouts):
                    log.info("correlator: collective timeouts of %s", ", ".join(record.jobs))
                    correlator.timeouts(record.jobs)
                elif isinstance(record, Activity):
                    log.debug("correlator: %d nodes turned busy or idle", len(record.nodes))
                    correlator.activity(record.nodes)
                else:
                    correlator.place(record.job, record.nodes)
            position["offset"] = event.message.offset
            held.append((stream, event))

    @ctx.app.timer(interval=1.0)
    async def release_stale() -> None:
        unsilenced = correlator.unsilenced() if ctx.silences_read.is_set() else []  # an empty book ends none
        await ctx.publish(correlator.release_stale() + unsilenced)
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
