"""The notify agent: alerts to webhooks and Alertmanager (pipeline.notify.delivery). An alert's
offset is committed once every receiver is done with it (delivered or dead-lettered), so a
restart resends (the idempotency key absorbs it) and never loses a notification. Every outcome
goes into the lake's delivery ledger."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from typing import Any

import faust
from faust.types import EventT, StreamT

from pipeline.model.schemas import Alert
from pipeline.model.topics import NOTIFY_DEAD_LETTERS
from pipeline.notify import ledger
from pipeline.notify.delivery import Notifier, Outcome
from pipeline.notify.payloads import idempotency_key
from pipeline.stream.context import WorkerContext, alert_events

log = logging.getLogger("clusterpulse.worker")


def _ack(stream: StreamT, event: EventT, _done: asyncio.Future) -> None:
    """A delivered alert's event acknowledged (a done-callback of `Notifier.submit`'s future)."""
    asyncio.ensure_future(stream.ack(event))


def register(ctx: WorkerContext) -> None:
    notify_dead_letters = ctx.topic(NOTIFY_DEAD_LETTERS)
    book = ledger.Ledger(ctx.settings.data_dir, ctx.worker_id)

    async def dead_letter(receiver: Any, alert: Alert, outcome: Outcome) -> None:
        record = {
            "receiver": receiver.name,
            "alert": json.loads(alert.to_json()),
            "error": outcome.error,
            "attempts": outcome.attempts,
            "status": outcome.status,
        }
        await notify_dead_letters.send(key=alert.id.encode(), value=json.dumps(record).encode(), force=True)

    async def on_outcome(receiver: Any, alert: Alert, outcome: Outcome) -> None:
        line = ledger.record(
            receiver.name,
            alert,
            outcome.delivered,
            outcome.attempts,
            outcome.status,
            outcome.error,
            idempotency_key(alert),
        )
        await asyncio.to_thread(book.append, line)
        ctx.metrics.notify_attempts.labels(receiver.name).inc(outcome.attempts)
        (ctx.metrics.notify_delivered if outcome.delivered else ctx.metrics.notify_failures).labels(receiver.name).inc()

    notify_settings = ctx.settings.notify
    notifier = ctx.notifier = Notifier(
        notify_settings.receivers, dead_letter, on_outcome=on_outcome, route=notify_settings.route
    )

    @ctx.app.agent(ctx.alerts_topic, name="clusterpulse.notify")
    async def notify(stream: StreamT) -> None:
        async for event, alert in alert_events(stream):
            if notifier.session is None:
                await notifier.start()
            done = notifier.submit(alert)
            done.add_done_callback(functools.partial(_ack, stream, event))

    @ctx.app.on_before_shutdown.connect  # type: ignore[arg-type]  # mode: its SignalHandlerT matches no handler
    async def stop_notifier(app: faust.App, **kwargs: Any) -> None:
        await notifier.stop()
        for name, stats in notifier.stats.items():
            log.log(
                logging.WARNING if stats.failed else logging.INFO,
                "receiver %s: %d delivered, %d failed (%d dead-lettered), %d grouped consequences carried "
                "by their root's notification",
                name,
                stats.delivered,
                stats.failed,
                stats.dead_lettered,
                stats.inhibited,
            )
