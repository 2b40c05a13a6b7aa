"""The Faust worker: thin agents that decode, call the detectors, emit alerts and feed the sink.

Agents read raw bytes and decode them themselves, so a bad message becomes a dead-letter record
with its reason instead of vanishing inside Faust's deserializer. Telemetry events are acknowledged
only after the Parquet file holding their rows is on disk, so committed offsets never run ahead
of the lake.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import tempfile
import threading
from collections import defaultdict
from pathlib import Path
from typing import Any

import faust
from faust.types import EventT, StreamT

from pipeline.correlate import Correlator
from pipeline.kafka_config import faust_config
from pipeline.schemas import Alert, InvalidRecord, check_entities, decode_batch
from pipeline.settings import Settings
from pipeline.sinks.parquet import ParquetSink
from pipeline.state import PartitionDetectors, read_snapshots, state_key
from pipeline.topics import (ALERTS, CARD_TELEMETRY, DEAD_LETTERS, DLQ_OFFSET, DLQ_PARTITION, DLQ_REASON,
                             DETECTOR_STATE, DLQ_TOPIC, FINDINGS, NOTIFY_DEAD_LETTERS, PORT_TELEMETRY, STEP_TELEMETRY, TopicSpec)
from pipeline.topology import Topology

log = logging.getLogger("clusterpulse.worker")

# topic spec -> batch kind it must carry
TOPIC_KINDS = {CARD_TELEMETRY: "card", STEP_TELEMETRY: "step", PORT_TELEMETRY: "port"}


# Every send below uses force=True: inside an agent Faust would otherwise attach the message to
# the event being processed and publish it only when that event is acknowledged, which for
# telemetry is after its Parquet file is written, seconds later, and after later watermarks.


class DeadLetters:
    """Sends bad messages, unchanged, to the dead-letter topic with the reason in headers.

    Above `loud_after` records a minute it logs an error each minute so a poison flood cannot
    hide in the dead-letter topic; nothing is ever dropped.
    """

    def __init__(self, topic: Any, loud_after: int = 100) -> None:
        self.topic = topic
        self.loud_after = loud_after
        self.total = 0
        self._window_start = 0.0
        self._window_count = 0

    async def send(self, event: EventT, reason: str) -> None:
        msg = event.message
        headers = {DLQ_REASON: reason.encode(), DLQ_TOPIC: msg.topic.encode(),
                   DLQ_PARTITION: str(msg.partition).encode(), DLQ_OFFSET: str(msg.offset).encode()}
        await self.topic.send(key=msg.key, value=msg.value, headers=headers, force=True)
        self.total += 1
        now = asyncio.get_running_loop().time()
        if now - self._window_start >= 60:
            self._window_start, self._window_count = now, 0
        self._window_count += 1
        level = logging.ERROR if self._window_count > self.loud_after else logging.WARNING
        if self._window_count <= 10 or self._window_count % self.loud_after == 0:
            log.log(level, "dead-lettered %s[%d]@%d: %s (%d this minute)", msg.topic, msg.partition,
                    msg.offset, reason, self._window_count)


class AckAfterFlush:
    """Holds events until the sink has written their rows, then acknowledges them."""

    def __init__(self, sink: ParquetSink, on_durable: Any = None) -> None:
        self.sink = sink
        self.pending: dict[tuple[str, int], list[tuple[StreamT, EventT]]] = defaultdict(list)
        self.on_durable = on_durable  # async callback(topic, partition) after a partition's flush

    def hold(self, stream: StreamT, event: EventT) -> None:
        self.pending[(event.message.topic, event.message.partition)].append((stream, event))

    async def flush(self, keys: list[tuple[str, int]]) -> None:
        for key in keys:
            durable = await asyncio.to_thread(self.sink.write, *key, self.sink.take(*key))
            held = self.pending.get(key, [])
            keep = []
            for stream, event in held:
                if event.message.offset <= durable:
                    await stream.ack(event)
                else:
                    keep.append((stream, event))
            self.pending[key] = keep
            if self.on_durable is not None:
                await self.on_durable(*key)

    async def flush_due(self) -> None:
        await self.flush(self.sink.due())

    def forget(self, partitions: set[tuple[str, int]]) -> None:
        """Drop what a revoked partition held: uncommitted, so its new owner reads it again."""
        for key in partitions:
            self.pending.pop(key, None)
            self.sink.discard(*key)


def create_app(settings: Settings) -> faust.App:
    """Build the Faust app with its agents for these settings."""
    if not settings.bootstrap:
        raise ValueError("the worker needs a bootstrap address")
    # Faust keeps a (here empty: memory store) data directory; keep it out of the working directory
    faust_dir = (Path(settings.data_dir) / "_faust" if "://" not in settings.data_dir
                 else Path(tempfile.gettempdir()) / "clusterpulse-faust")
    faust_dir.mkdir(parents=True, exist_ok=True)
    app = faust.App(settings.group_id, datadir=str(faust_dir / settings.group_id),
                    **faust_config(settings.bootstrap, settings.group_id, settings.partitions))
    topology = Topology(settings.cluster.shape())
    from pipeline.broker import stream_tags
    lake_topics = [settings.topic(spec) for spec in (*TOPIC_KINDS, ALERTS)]
    sink = ParquetSink(settings.data_dir, flush_rows=settings.sink.flush_rows,
                       flush_seconds=settings.sink.flush_seconds, topology=topology,
                       stream_tags=stream_tags(settings, lake_topics))
    kind_of_topic = {settings.topic(spec): kind for spec, kind in TOPIC_KINDS.items()}
    detectors = PartitionDetectors(topology, settings.detect, kind_of_topic)

    async def save_state(topic_name: str, partition: int) -> None:
        data = detectors.snapshot(topic_name, partition)
        if data is not None:
            await state_topic.send(key=state_key(topic_name, partition).encode(), value=data, force=True)

    acks = AckAfterFlush(sink, on_durable=save_state)
    restore_lock = asyncio.Lock()
    snapshot_cache: dict[str, Any] = {"data": None}

    async def detectors_for(topic_name: str, partition: int, offset: int) -> Any:
        """The partition's detectors; the first time a partition is seen, its detector state is
        restored and files an earlier owner wrote but never committed are removed."""
        found = detectors.sets.get((topic_name, partition))
        if found is not None:
            return found
        async with restore_lock:
            if (topic_name, partition) not in detectors.sets:
                await discard_uncommitted(topic_name, partition, offset)
                if snapshot_cache["data"] is None:
                    snapshot_cache["data"] = await asyncio.to_thread(
                        read_snapshots, settings.bootstrap, settings.topic(DETECTOR_STATE))
                restored = detectors.load(snapshot_cache["data"], [(topic_name, partition)])
                log.info("%s[%d]: %s", topic_name, partition,
                         "restored detector state" if restored else "no saved detector state; starting fresh")
        return detectors.sets[(topic_name, partition)]
    async def discard_uncommitted(topic_name: str, partition: int, offset: int) -> None:
        removed = await asyncio.to_thread(sink.discard_uncommitted, topic_name, partition, offset)
        if removed:
            log.warning("%s[%d]: removed %d Parquet files that this consumer group (%s) wrote after its last "
                        "commit (offset %d) before a crash; their rows are read again and rewritten: %s",
                        topic_name, partition, len(removed), settings.group_id, offset,
                        ", ".join(Path(p).name for p in removed[:3]) + (" ..." if len(removed) > 3 else ""))

    correlator = Correlator(topology, settings.detect.correlate)
    watermarks: dict[str, int] = {}  # "<kind>/<partition>" -> newest sample time processed
    positions: dict[str, tuple[Any, int]] = {}  # source -> (topic partition, last offset processed)
    sent_marks: dict[str, tuple[int, bool]] = {}
    worker_id = f"{os.uname().nodename}-{os.getpid()}"

    def topic(spec: TopicSpec, partitions: int | None = None) -> Any:
        return app.topic(settings.topic(spec), key_type=bytes, value_type=bytes, allow_empty=True,
                         partitions=partitions)

    alerts_topic = topic(ALERTS)
    findings_topic = topic(FINDINGS, partitions=1)
    state_topic = topic(DETECTOR_STATE, partitions=1)
    dead_letters = DeadLetters(topic(DEAD_LETTERS))

    alert_counts: dict[str, int] = defaultdict(int)

    async def publish(alerts: list[Alert]) -> None:
        for alert in alerts:
            await alerts_topic.send(key=alert.id.encode(), value=alert.to_json(), force=True)
            alert_counts[alert.status] += 1
            log.info("alert %s", alert.line())

    def telemetry_agent(spec: TopicSpec) -> None:
        kind = TOPIC_KINDS[spec]

        async def handle(stream: StreamT) -> None:
            async for event in stream.noack().events():
                msg = event.message
                try:
                    batch = decode_batch(event.value)
                    if batch.kind != kind:
                        raise InvalidRecord(f"a {batch.kind} batch on the {kind} topic")
                    check_entities(batch, topology)
                except InvalidRecord as exc:
                    await dead_letters.send(event, exc.reason)
                    sink.mark_consumed(msg.topic, msg.partition, msg.offset)
                    acks.hold(stream, event)
                    continue
                source = f"{kind}/{msg.partition}"
                partition_detectors = await detectors_for(msg.topic, msg.partition, msg.offset)
                for finding in partition_detectors.push(batch, msg.partition):
                    await findings_topic.send(key=finding.id.encode(), value=json.dumps(
                        {"t": "finding", "src": source, "alert": json.loads(finding.to_json())}).encode(), force=True)
                if kind == "step":
                    for job, nodes in partition_detectors.take_placements().items():
                        await findings_topic.send(key=job.encode(), value=json.dumps(
                            {"t": "placement", "job": job, "nodes": nodes}).encode(), force=True)
                if batch.ts_ms > watermarks.get(source, -1):
                    watermarks[source] = batch.ts_ms
                positions[source] = (event.message.tp, msg.offset)
                full = sink.add_batch(msg.topic, msg.partition, msg.offset, batch)
                acks.hold(stream, event)
                if full:
                    await acks.flush([(msg.topic, msg.partition)])

        handle.__name__ = f"{kind}_telemetry"
        app.agent(topic(spec), name=f"clusterpulse.{kind}")(handle)

    for spec in TOPIC_KINDS:
        telemetry_agent(spec)

    def caught_up(source: str) -> bool:
        """Has this worker read everything in the source's partition?"""
        tp, offset = positions.get(source, (None, -1))
        try:
            highwater = app.consumer.highwater(tp) if tp is not None else None
        except Exception:  # not assigned (any more), or no fetch yet
            return False
        return highwater is not None and offset + 1 >= highwater

    @app.timer(interval=0.5)
    async def send_watermarks() -> None:
        marks = {src: (ts, caught_up(src)) for src, ts in watermarks.items()}
        changed = {src: list(mark) for src, mark in marks.items() if sent_marks.get(src) != mark}
        if changed:
            await findings_topic.send(key=worker_id.encode(),
                                      value=json.dumps({"t": "watermarks", "marks": changed}).encode(), force=True)
            sent_marks.update({src: marks[src] for src in changed})

    @app.agent(findings_topic, name="clusterpulse.correlator")
    async def correlate(stream: StreamT) -> None:
        async for event in stream.events():
            try:
                record = json.loads(event.value)
                what = record["t"]
                if what == "finding":
                    await publish(correlator.push(Alert(**record["alert"]), record["src"]))
                elif what == "watermarks":
                    for src, mark in record["marks"].items():
                        ts, up_to_date = (mark if isinstance(mark, list) else (mark, False))
                        await publish(correlator.advance(src, int(ts), bool(up_to_date)))
                elif what == "placement":
                    correlator.place(record["job"], list(record["nodes"]))
                else:
                    raise ValueError(f"unknown record type {what!r}")
            except (ValueError, TypeError, KeyError) as exc:
                await dead_letters.send(event, f"not a findings record: {type(exc).__name__}: {exc}")

    @app.timer(interval=1.0)
    async def release_stale() -> None:
        await publish(correlator.release_stale())

    alert_partitions_seen: set[tuple[str, int]] = set()

    @app.agent(alerts_topic, name="clusterpulse.alert_sink")
    async def alert_sink(stream: StreamT) -> None:
        async for event in stream.noack().events():
            msg = event.message
            if (msg.topic, msg.partition) not in alert_partitions_seen:
                alert_partitions_seen.add((msg.topic, msg.partition))
                await discard_uncommitted(msg.topic, msg.partition, msg.offset)
            try:
                alert = Alert.from_json(event.value)
            except (ValueError, TypeError) as exc:
                await dead_letters.send(event, f"not an alert record: {exc}")
                sink.mark_consumed(msg.topic, msg.partition, msg.offset)
            else:
                sink.add_alert(msg.topic, msg.partition, msg.offset, alert)
            acks.hold(stream, event)

    notifier = None
    if settings.notify.receivers:
        from pipeline.notify import ledger
        from pipeline.notify.delivery import Notifier, Outcome
        from pipeline.notify.payloads import idempotency_key

        notify_dead_letters = topic(NOTIFY_DEAD_LETTERS)
        book = ledger.Ledger(settings.data_dir, worker_id)

        async def dead_letter(receiver: Any, alert: Alert, outcome: Outcome) -> None:
            record = {"receiver": receiver.name, "alert": json.loads(alert.to_json()), "error": outcome.error,
                      "attempts": outcome.attempts, "status": outcome.status}
            await notify_dead_letters.send(key=alert.id.encode(), value=json.dumps(record).encode(), force=True)

        async def on_outcome(receiver: Any, alert: Alert, outcome: Outcome) -> None:
            line = ledger.record(receiver.name, alert, outcome.delivered, outcome.attempts, outcome.status,
                                 outcome.error, idempotency_key(alert))
            await asyncio.to_thread(book.append, line)

        notifier = Notifier(settings.notify.receivers, dead_letter, on_outcome=on_outcome)

        @app.agent(alerts_topic, name="clusterpulse.notify")
        async def notify(stream: StreamT) -> None:
            async for event in stream.noack().events():
                try:
                    alert = Alert.from_json(event.value)
                except (ValueError, TypeError):
                    await stream.ack(event)  # the alert sink dead-letters it
                    continue
                if notifier.session is None:
                    await notifier.start()
                done = notifier.submit(alert)
                # the offset is committed once every receiver is done: a restart resends, never loses
                done.add_done_callback(lambda _f, e=event, s=stream: asyncio.ensure_future(s.ack(e)))

        @app.on_before_shutdown.connect
        async def stop_notifier(app: faust.App, **kwargs: Any) -> None:
            await notifier.stop()
            for name, stats in notifier.stats.items():
                log.log(logging.WARNING if stats.failed else logging.INFO,
                        "receiver %s: %d delivered, %d failed (%d dead-lettered), %d grouped consequences carried "
                        "by their root's notification", name, stats.delivered, stats.failed, stats.dead_lettered,
                        stats.inhibited)

        app.clusterpulse_notifier = notifier  # type: ignore[attr-defined]

    @app.timer(interval=1.0)
    async def flush_due() -> None:
        await acks.flush_due()

    @app.on_partitions_revoked.connect
    async def on_revoked(app: faust.App, revoked: set, **kwargs: Any) -> None:
        acks.forget({(tp.topic, tp.partition) for tp in revoked})
        snapshot_cache["data"] = None  # a partition assigned again later re-reads its latest state
        sink.forget_listing()
        alert_partitions_seen.difference_update((tp.topic, tp.partition) for tp in revoked)
        for tp in revoked:
            if tp.topic in kind_of_topic:
                watermarks.pop(f"{kind_of_topic[tp.topic]}/{tp.partition}", None)
                positions.pop(f"{kind_of_topic[tp.topic]}/{tp.partition}", None)
                detectors.drop(tp.topic, tp.partition)


    @app.on_before_shutdown.connect
    async def on_shutdown(app: faust.App, **kwargs: Any) -> None:
        # The consumer has stopped: write what is buffered. Offsets of these rows may stay
        # uncommitted; a restart re-reads them and rewrites the same file names.
        written = sink.flush_all()
        for topic_name, partition in list(detectors.sets):
            await save_state(topic_name, partition)
        log.info("flushed %d partitions and saved their detector state at shutdown", len(written))

    if settings.health_port:
        from pipeline.health import serve_health

        def health() -> dict[str, Any]:
            return health_report(app, alert_counts, dead_letters, notifier)

        @app.task
        async def health_server() -> None:
            await serve_health(settings.health_port, health)

    app.clusterpulse = {"sink": sink, "detectors": detectors, "correlator": correlator,  # type: ignore[attr-defined]
                        "dead_letters": dead_letters}
    return app


def health_report(app: faust.App, alert_counts: dict[str, int],
                  dead_letters: DeadLetters, notifier: Any) -> dict[str, Any]:
    """What GET /healthz answers: assigned partitions, lag per telemetry topic, alerts, delivery."""
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
    body: dict[str, Any] = {"ready": bool(assigned), "partitions": [f"{tp.topic}[{tp.partition}]" for tp in assigned],
                            "lag": lag, "alerts": dict(alert_counts), "dead_letters": dead_letters.total}
    if notifier is not None:
        body["notify"] = {name: vars(stats) for name, stats in notifier.stats.items()}
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
        "version": 1, "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain", "stream": "ext://sys.stderr"}},
        "root": {"level": level.upper(), "handlers": ["stderr"]},
        "loggers": {name: {"level": framework} for name in ("faust", "mode", "aiokafka", "kafka", "aiohttp")},
    }


def run_worker(settings: Settings) -> None:
    """Run a worker until SIGTERM / Ctrl-C."""
    app = create_app(settings)
    worker = BoundedWorker(app, loglevel=settings.log_level, quiet=True, redirect_stdouts=False,
                           logging_config=plain_logging(settings.log_level),
                           shutdown_timeout_s=settings.shutdown_timeout_s)
    worker.execute_from_commandline()
