"""Silences in the worker: every worker follows the whole silences topic (so the correlator marks
what they cover, `silenced_by`), and one of them, the owner of its partition in the group, records
each change in the lake's `silences` dataset, acknowledged after its Parquet file is written."""

from __future__ import annotations

import json
import logging
from typing import Any

import faust
from faust.types import StreamT

from pipeline.model.topics import SILENCES
from pipeline.notify.silence_store import SilenceFollower
from pipeline.stream.context import WorkerContext

log = logging.getLogger("clusterpulse.worker")


def register(ctx: WorkerContext) -> None:
    follower = SilenceFollower(
        ctx.silences, ctx.settings.require_bootstrap(), ctx.settings.topic(SILENCES), ctx.silences_read
    )

    @ctx.app.task
    async def follow_silences() -> None:
        follower.start()

    @ctx.app.on_before_shutdown.connect  # type: ignore[arg-type]  # mode: its SignalHandlerT matches no handler
    async def stop_following(app: faust.App, **kwargs: Any) -> None:
        follower.stop()

    @ctx.app.agent(ctx.topic(SILENCES), name="clusterpulse.silence_sink")
    async def silence_sink(stream: StreamT) -> None:
        async for event in stream.noack().events():  # type: ignore[attr-defined]  # faust: StreamT lacks Stream.noack()
            msg = event.message
            try:
                record = json.loads(event.value)
                if not isinstance(record, dict) or "id" not in record or "matchers" not in record:
                    raise ValueError("no id or matchers")
            except (ValueError, TypeError) as exc:
                await ctx.dead_letters.send(event, f"not a silence record: {exc}", "not_a_silence")
                ctx.sink.mark_consumed(msg.topic, msg.partition, msg.offset)
            else:
                ctx.sink.add_silence(msg.topic, msg.partition, msg.offset, record)
            ctx.checkpoint.hold(stream, event)
