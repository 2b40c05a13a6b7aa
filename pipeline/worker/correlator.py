"""The correlator agent: the one `findings` partition in, root-caused alerts out (pipeline.correlate)."""

from __future__ import annotations

import json

from faust.types import StreamT

from pipeline.schemas import Alert
from pipeline.worker.context import WorkerContext


def register(ctx: WorkerContext) -> None:
    correlator = ctx.correlator

    @ctx.app.agent(ctx.findings_topic, name="clusterpulse.correlator")
    async def correlate(stream: StreamT) -> None:
        async for event in stream.events():
            try:
                record = json.loads(event.value)
                what = record["t"]
                if what == "finding":
                    await ctx.publish(correlator.push(Alert(**record["alert"]), record["src"]))
                elif what == "watermarks":
                    for src, mark in record["marks"].items():
                        ts, up_to_date = (mark if isinstance(mark, list) else (mark, False))
                        await ctx.publish(correlator.advance(src, int(ts), bool(up_to_date)))
                elif what == "placement":
                    correlator.place(record["job"], list(record["nodes"]))
                else:
                    raise ValueError(f"unknown record type {what!r}")
            except (ValueError, TypeError, KeyError) as exc:
                await ctx.dead_letters.send(event, f"not a findings record: {type(exc).__name__}: {exc}")

    @ctx.app.timer(interval=1.0)
    async def release_stale() -> None:
        await ctx.publish(correlator.release_stale())
