"""The alert sink agent: every alert state change into the lake's `alerts` dataset, acknowledged
after its Parquet file is written, like telemetry."""

from __future__ import annotations

from faust.types import StreamT

from pipeline.model.schemas import Alert
from pipeline.stream.context import WorkerContext


def register(ctx: WorkerContext) -> None:
    seen: set[tuple[str, int]] = set()

    @ctx.app.agent(ctx.alerts_topic, name="clusterpulse.alert_sink")
    async def alert_sink(stream: StreamT) -> None:
        async for event in stream.noack().events():  # type: ignore[attr-defined]  # faust: StreamT lacks Stream.noack()
            msg = event.message
            if (msg.topic, msg.partition) not in seen:
                seen.add((msg.topic, msg.partition))
                await ctx.checkpoint.discard_uncommitted(msg.topic, msg.partition, msg.offset)
            try:
                alert = Alert.from_json(event.value)
            except (ValueError, TypeError) as exc:
                await ctx.dead_letters.send(event, f"not an alert record: {exc}", "not_an_alert")
                ctx.sink.mark_consumed(msg.topic, msg.partition, msg.offset)
            else:
                ctx.sink.add_alert(msg.topic, msg.partition, msg.offset, alert)
            ctx.checkpoint.hold(stream, event)

    def forget(revoked: set) -> None:
        seen.difference_update((tp.topic, tp.partition) for tp in revoked)

    ctx.on_revoked.append(forget)
