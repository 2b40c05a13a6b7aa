"""The collector's HTTP port: `GET /metrics`, `GET /-/healthy` and Prometheus remote_write in
(`POST /api/v1/write`, remote_write 1.0: snappy-compressed protobuf WriteRequest).

remote_write sends a scrape's samples in shards of up to `max_samples_per_send`, mixed across
targets and seconds apart (`batch_send_deadline`, 5 s by default). So samples are gathered per
target (`job` and `instance` labels) and timestamp, and a target's scrape is converted whole, like
a page the collector scraped itself, once a newer scrape of it arrives or `settle_s` after it
came. Prometheus's own `up` series says when it could not scrape a target: that target's nodes or
switches are reported `unreachable`, as the collector's own failed scrapes are.
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from pipeline.model.schemas import Batch, InvalidRecord
from pipeline.topology.entities import check_entities
from pipeline.topology.inventory import Inventory
from pipeline.topology.synthetic import Topology
from producers.adapters.exporters import ExporterConverter
from producers.adapters.prometheus import Sample
from producers.collect.metrics import CollectMetrics
from producers.collect.remote_write import RemoteWriteError, decode_write_request
from producers.collect.scraper import Mapper, group_messages
from producers.simulator import Message

log = logging.getLogger("clusterpulse.collect")
MAX_REQUEST = 32 * 1024 * 1024  # compressed; Prometheus sends at most a few MB
SETTLE_S = 5.0  # Prometheus's default batch_send_deadline: a scrape's last shard arrives within it
# a target whose newest scrape is this many of its own intervals behind the newest of any target is
# named unreachable (no news from Prometheus, not a silent node): under the silence rule's 3 reports
LAG_INTERVALS = 2.5
GROUP_SIZE = 32


@dataclass
class _Scrape:
    samples: list[Sample] = field(default_factory=list)
    arrived: float = 0.0
    up: float | None = None


class RemoteWriteIntake:
    """Samples from remote_write, gathered per target and scrape, converted into messages."""

    def __init__(
        self,
        topology: Topology,
        inventory: Inventory,
        send: Callable[[Message], None],
        metrics: CollectMetrics,
        settle_s: float = SETTLE_S,
        say: Callable[[str], None] = print,
    ) -> None:
        self.topo = topology
        # every node and switch always in the same message group, so in the same partition: a detector
        # judges a source's silence where its reports go (groups by first source mixed partitions)
        sources = max(topology.nodes, len(topology.switch_names))
        self.groups = max(1, -(-sources // GROUP_SIZE))
        self.mapper = Mapper(topology, inventory)
        self.converter = ExporterConverter(topology, inventory)
        self.send = send
        self.metrics = metrics
        self.settle_s = settle_s
        self.say = say
        self.pending: dict[tuple[str, str], dict[int, _Scrape]] = {}  # (job, instance) -> ts -> samples
        self.entities: dict[tuple[str, str], tuple[str, ...]] = {}  # what each target's scrapes named
        self.newest: dict[tuple[str, str], tuple[int, int]] = {}  # target -> (newest scrape ms, interval ms)
        self.lag_said: dict[tuple[str, str], int] = {}  # target -> the clock it was last named unreachable at
        self.unmapped_said: set[tuple[str, str]] = set()
        self._keys: dict[int, tuple[dict, tuple[str, str]]] = {}  # id(labels) -> (labels, (job, instance))

    def take(self, body: bytes, encoding: str | None) -> int:
        """One request's samples (RemoteWriteError if the body is not a WriteRequest); returns how many."""
        samples, _skipped = decode_write_request(body, encoding)
        now = time.monotonic()
        pending, keys = self.pending, self._keys
        last_key: tuple[str, str] | None = None
        last_ts: int | None = -1
        append = None
        scrape = None
        for sample in samples:  # a target's samples of one scrape mostly come in a run: one lookup a run
            name, labels, value, ts = sample
            known = keys.get(id(labels))
            if known is None or known[0] is not labels:  # the decoder shares one labels dict per series
                if len(keys) >= 500_000:
                    keys.clear()
                known = keys[id(labels)] = (labels, (labels.get("job", ""), labels.get("instance", "")))
            key = known[1]
            if key is not last_key or ts != last_ts:
                scrapes = pending.get(key)
                if scrapes is None:
                    scrapes = pending[key] = {}
                scrape = scrapes.get(ts or 0)
                if scrape is None:
                    scrape = scrapes[ts or 0] = _Scrape(arrived=now)
                append, last_key, last_ts = scrape.samples.append, key, ts
            if name == "up":
                scrape.up = value  # type: ignore[union-attr]
            else:
                append(sample)  # type: ignore[misc]
        return len(samples)

    def flush(self, everything: bool = False) -> int:
        """Convert the scrapes that are complete (a newer one of the same target came, or `settle_s`
        passed); send them, a message per kind per group of targets. Returns messages sent."""
        now = time.monotonic()
        by_ts: dict[int, tuple[list[Batch], dict[str, list[str]]]] = {}
        for key in list(self.pending):
            scrapes = self.pending[key]
            newest = max(scrapes)
            for ts in sorted(scrapes):
                scrape = scrapes[ts]
                if not (everything or ts < newest or now - scrape.arrived >= self.settle_s):
                    continue
                del scrapes[ts]
                seen, interval = self.newest.get(key, (-1, 0))
                if ts > seen:
                    self.newest[key] = (ts, ts - seen if seen >= 0 else interval)
                batches, gone = by_ts.setdefault(ts, ([], {"card": [], "port": []}))
                if scrape.up == 0:
                    for entity in self.entities.get(key, ()):
                        gone[self.mapper.batch_kind(entity)].append(entity)
                if scrape.samples:
                    batches += self._convert(key, scrape.samples, ts)
            if not scrapes:
                del self.pending[key]
        self._name_lagging(by_ts)
        sent = 0
        for ts, (batches, gone) in sorted(by_ts.items()):  # a message per scrape time, kind and group
            grouped: dict[int, tuple[list[Batch], dict[str, list[str]]]] = {}
            for batch in sorted(batches, key=lambda b: b.source):
                grouped.setdefault(self.group_of(batch.source), ([], {"card": [], "port": []}))[0].append(batch)
            for kind, names in gone.items():
                for name in names:
                    grouped.setdefault(self.group_of(name), ([], {"card": [], "port": []}))[1][kind].append(name)
            for group, (members, missing) in sorted(grouped.items()):
                for message in group_messages(f"remote_write:g{group}", members, missing, ts):
                    self.send(message)
                    self.metrics.messages.labels(message.topic.suffix).inc()
                    sent += 1
        return sent

    def group_of(self, source: str) -> int:
        """The message group of a node or switch: the same for all its reports (crc32, stable)."""
        return zlib.crc32(source.encode()) % self.groups

    def _name_lagging(self, by_ts: dict[int, tuple[list[Batch], dict[str, list[str]]]]) -> None:
        """Targets whose newest scrape lags the newest of any by LAG_INTERVALS of their own interval
        are named unreachable at that clock (once an interval): Prometheus sent nothing of them for a
        while (a slow scrape, a backed-up remote_write shard), which says nothing of the node. A node
        that died stops answering Prometheus's scrapes too (`up == 0`, named unreachable as well): the
        fabric decides, as for the collector's own failed scrapes."""
        if not self.newest:
            return

        def latest(key: tuple[str, str], converted: int) -> int:  # a scrape still settling counts
            return max(converted, max(self.pending.get(key) or (-1,)))

        newest = {key: (latest(key, ts), interval) for key, (ts, interval) in self.newest.items()}
        clock = max(ts for ts, _ in newest.values())
        for key, (ts, interval) in newest.items():
            if interval <= 0 or clock - ts < LAG_INTERVALS * interval or key not in self.entities:
                continue
            if clock - self.lag_said.get(key, -(2**62)) < interval:
                continue
            self.lag_said[key] = clock
            _, gone = by_ts.setdefault(clock, ([], {"card": [], "port": []}))
            for entity in self.entities[key]:
                gone[self.mapper.batch_kind(entity)].append(entity)

    def _convert(self, key: tuple[str, str], samples: list[Sample], ts_ms: int) -> list[Batch]:
        job, instance = key
        labels = samples[0].labels
        host = labels.get("node") or instance.rsplit(":", 1)[0]
        switch = self.mapper.switch(labels.get("switch")) or self.mapper.switch(instance)
        batches = self.converter.convert_samples(samples, ts_ms, self.mapper.node(host) or host, switch)
        kept = []
        for batch in batches:
            batch.ts_ms = ts_ms
            try:
                check_entities(batch, self.topo)
                kept.append(batch)
            except InvalidRecord:
                continue
        if kept:
            self.entities[key] = tuple(dict.fromkeys(b.source for b in kept if b.kind in ("card", "port")))
            self.metrics.samples.labels("remote_write").inc(sum(b.rows() for b in kept))
        elif key not in self.unmapped_said:
            self.unmapped_said.add(key)
            reasons = self.converter.skips.describe() if self.converter.skips else "no metric ClusterPulse maps"
            self.say(
                f"clusterpulse: remote_write target {instance} (job {job}) gave nothing usable: {reasons}. "
                "Map its hosts with an inventory line (docs/inventory.md) or a node / switch label."
            )
        return kept


def make_app(metrics: CollectMetrics, intake: RemoteWriteIntake | None) -> web.Application:
    """`/metrics`, `/-/healthy` and, with an intake, `/api/v1/write`."""

    async def get_metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthy(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def write(request: web.Request) -> web.Response:
        if intake is None:
            metrics.remote_write.labels("404").inc()
            return web.Response(status=404, text="remote_write is not enabled on this collector\n")
        if request.content_length is not None and request.content_length > MAX_REQUEST:
            metrics.remote_write.labels("413").inc()
            return web.Response(status=413, text=f"body over {MAX_REQUEST >> 20} MiB\n")
        try:
            body = await request.read()  # the whole body (at most client_max_size, else 413)
        except web.HTTPRequestEntityTooLarge:
            metrics.remote_write.labels("413").inc()
            return web.Response(status=413, text=f"body over {MAX_REQUEST >> 20} MiB\n")
        except Exception as exc:  # aiohttp's own decoding of a Content-Encoding it knows (gzip) failed
            metrics.remote_write.labels("400").inc()
            reason = getattr(exc, "message", None) or str(exc)
            return web.Response(
                status=400,
                text=f"cannot read the body ({' '.join(str(reason).split())}); "
                "remote_write 1.0 sends snappy (Content-Encoding: snappy)\n",
            )
        try:
            intake.take(body, request.headers.get("Content-Encoding"))
        except RemoteWriteError as exc:
            metrics.remote_write.labels("400").inc()
            return web.Response(status=400, text=f"{exc}\n")
        metrics.remote_write.labels("204").inc()
        return web.Response(status=204)

    app = web.Application(client_max_size=MAX_REQUEST)
    app.router.add_get("/metrics", get_metrics)
    app.router.add_get("/-/healthy", healthy)
    app.router.add_post("/api/v1/write", write)
    return app


async def flush_every(intake: RemoteWriteIntake, stop: asyncio.Event, seconds: float = 0.5) -> None:
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), timeout=seconds)
        except TimeoutError:
            pass
        intake.flush(everything=stop.is_set())
