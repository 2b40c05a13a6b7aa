"""The Faust app: wires the agents of `pipeline.stream` (one module each) and runs a worker.

Agents read raw bytes and decode them themselves, so a bad message becomes a dead-letter record
with its reason instead of vanishing inside Faust's deserializer. Telemetry events are acknowledged
only after the Parquet file holding their rows is on disk, so committed offsets never run ahead
of the lake.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

import faust

from pipeline.model.topics import ALERTS, SILENCES
from pipeline.notify.silence_api import silence_routes
from pipeline.notify.silence_store import encode_silence
from pipeline.notify.silences import Silence
from pipeline.ops.broker import describe_streams
from pipeline.ops.health import serve_health
from pipeline.ops.kafka_config import faust_config
from pipeline.settings import Settings
from pipeline.stream import (
    action_agent,
    alert_sink_agent,
    correlator_agent,
    notify_agent,
    silence_agent,
    telemetry_agent,
)
from pipeline.stream.context import TOPIC_KINDS, WorkerContext

log = logging.getLogger("clusterpulse.worker")


def create_app(settings: Settings) -> faust.App:
    """Build the Faust app with its agents for these settings."""

    if not settings.bootstrap:
        raise ValueError("the worker needs a bootstrap address")
    # Faust keeps a (here empty: memory store) data directory; keep it out of the working directory
    faust_dir = (
        Path(settings.data_dir) / "_faust"
        if "://" not in settings.data_dir
        else Path(tempfile.gettempdir()) / "clusterpulse-faust"
    )
    faust_dir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        settings.group_id,
        datadir=str(faust_dir / settings.group_id),
        **faust_config(settings.bootstrap, settings.group_id, settings.partitions, settings.kafka.faust_credentials()),
    )
    lake_topics = [settings.topic(spec) for spec in (*TOPIC_KINDS, ALERTS, SILENCES)]
    streams = describe_streams(settings, lake_topics)
    alerts_partitions = streams.partitions.get(settings.topic(ALERTS), 0)
    if alerts_partitions > 1 and (settings.notify.route is not None or settings.actions):
        log.warning(
            "%s has %d partitions (made by an earlier version; now 1): each worker groups, rate-limits and "
            "caps actions for the alerts of its partitions only; re-create the topic to make them the cluster's",
            settings.topic(ALERTS),
            alerts_partitions,
        )
    ctx = WorkerContext(app, settings, streams.tags, streams.partitions)

    telemetry_agent.register(ctx)
    correlator_agent.register(ctx)
    alert_sink_agent.register(ctx)
    silence_agent.register(ctx)
    if settings.notify.receivers:
        notify_agent.register(ctx)
    if settings.actions:
        action_agent.register(ctx)

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]  # mode: its SignalHandlerT matches no handler
    async def on_revoked(app: faust.App, revoked: set, **kwargs: Any) -> None:
        await ctx.revoke(revoked)

    @app.on_before_shutdown.connect  # type: ignore[arg-type]  # mode: its SignalHandlerT matches no handler
    async def on_shutdown(app: faust.App, **kwargs: Any) -> None:
        await ctx.checkpoint.at_shutdown()

    if settings.health_port:
        silences_topic = ctx.topic(SILENCES)

        async def write_silence(silence: Silence) -> None:
            value = encode_silence(silence)
            await (await silences_topic.send(key=silence.id.encode(), value=value, force=True))  # acknowledged

        api = silence_routes(ctx.silences, write_silence, settings.api_token_env or "")

        @app.task
        async def health_server() -> None:
            ctx.metrics.watch_lag(lambda: health_report(ctx)["lag"])
            await serve_health(
                settings.health_port, lambda: health_report(ctx), metrics=ctx.metrics.exposition, routes=api
            )

    app.clusterpulse = ctx  # type: ignore[attr-defined]
    return app


def health_report(ctx: WorkerContext) -> dict[str, Any]:
    """What GET /healthz answers: assigned partitions, lag per topic, alerts, delivery."""
    app = ctx.app
    try:
        assigned = sorted(app.consumer.assignment(), key=lambda tp: (tp.topic, tp.partition))
    except Exception:  # not started yet
        assigned = []
    read_offsets = getattr(app.consumer, "_read_offset", {})
    lag: dict[str, int] = {}
    for tp in assigned:
        try:
            high = app.consumer.highwater(tp)
        except Exception:  # no fetch yet
            high = None
        read = read_offsets.get(tp)
        if high is None or read is None:
            continue  # nothing fetched from it yet
        lag[tp.topic] = lag.get(tp.topic, 0) + max(0, high - (read + 1))
    body: dict[str, Any] = {
        "ready": bool(assigned),
        "partitions": [f"{tp.topic}[{tp.partition}]" for tp in assigned],
        "lag": lag,
        "alerts": dict(ctx.alert_counts),
        "dead_letters": ctx.dead_letters.total,
    }
    if ctx.notifier is not None:
        body["notify"] = {name: vars(stats) for name, stats in ctx.notifier.stats.items()}
    return body


class BoundedWorker(faust.Worker):
    """A Faust worker whose graceful stop is bounded: after `shutdown_timeout_s` it exits hard."""

    def __init__(self, *args: Any, shutdown_timeout_s: float = 10.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._shutdown_timeout_s = shutdown_timeout_s
        self.spinner = None  # Faust's progress spinner writes terminal escape codes, also into log files

    def _schedule_shutdown(self, signal: Any) -> None:
        if not self._signal_stop_time:
            timer = threading.Timer(self._shutdown_timeout_s, _exit_hard, (self._shutdown_timeout_s,))
            timer.daemon = True
            timer.start()
        super()._schedule_shutdown(signal)


def _exit_hard(timeout_s: float) -> None:
    log.error("worker did not stop within %.0f s; exiting", timeout_s)
    os._exit(3)


def plain_logging(level: str) -> dict[str, Any]:
    """One plain line per record on stderr (no terminal colour codes, also in a log file); Faust's,
    mode's and the Kafka clients' start-up chatter only at debug."""
    framework = level.upper() if level == "debug" else "WARNING"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain", "stream": "ext://sys.stderr"}},
        "root": {"level": level.upper(), "handlers": ["stderr"]},
        "loggers": {name: {"level": framework} for name in ("faust", "mode", "aiokafka", "kafka", "aiohttp")},
    }


def run_worker(settings: Settings) -> None:
    """Run a worker until SIGTERM / Ctrl-C."""
    app = create_app(settings)
    worker = BoundedWorker(
        app,
        loglevel=settings.log_level,
        quiet=True,
        redirect_stdouts=False,
        logging_config=plain_logging(settings.log_level),
        shutdown_timeout_s=settings.shutdown_timeout_s,
    )
    worker.execute_from_commandline()
