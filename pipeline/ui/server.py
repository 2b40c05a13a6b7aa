"""`clusterpulse ui`: the live page, served locally with nothing from the internet (the page's
script and style are inline). A thread reads the alerts topic from its beginning into a
ClusterView; the page asks GET /api/state every second and redraws, no reload."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import resources
from typing import Any

from aiohttp import web
from kafka import KafkaConsumer, TopicPartition

from pipeline.model.schemas import Alert, iso_utc
from pipeline.notify.silence_store import SilenceFollower
from pipeline.notify.silences import SilenceBook
from pipeline.ops.kafka_config import consumer_config
from pipeline.ui.latest import METRICS, UNITS, latest_values, newest_event_ms, step_history, switch_error_rates
from pipeline.ui.view import ClusterView

log = logging.getLogger("clusterpulse.ui")


class AlertFeed(threading.Thread):
    """Reads the alerts topic from the beginning, for as long as the process runs."""

    def __init__(self, bootstrap: str, topic: str, view: ClusterView, silences: SilenceBook | None = None) -> None:
        super().__init__(name="ui-alerts", daemon=True)
        self.bootstrap, self.topic, self.view = bootstrap, topic, view
        self.silences = silences  # kept current by a SilenceFollower
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.error: str | None = None

    def run(self) -> None:
        consumer = None
        while not self.stopping.is_set():
            try:
                if consumer is None:
                    consumer = KafkaConsumer(**consumer_config(self.bootstrap, "clusterpulse-ui", None))
                    parts = consumer.partitions_for_topic(self.topic)
                    if not parts:
                        consumer.close()
                        consumer = None
                        self.stopping.wait(1.0)
                        continue
                    consumer.assign([TopicPartition(self.topic, p) for p in sorted(parts)])
                    consumer.seek_to_beginning()
                for records in consumer.poll(timeout_ms=500).values():
                    for record in records:
                        try:
                            alert = Alert.from_json(record.value)
                        except (ValueError, TypeError):
                            continue  # the alert sink dead-letters it
                        with self.lock:
                            self.view.apply(alert)
                self.error = None
            except Exception as exc:  # the broker went away: say so on the page, try again
                self.error = f"{type(exc).__name__}: {exc}"
                if consumer is not None:
                    consumer.close()
                    consumer = None
                self.stopping.wait(2.0)
        if consumer is not None:
            consumer.close()

    def state(self) -> dict[str, Any]:
        with self.lock:
            body = self.view.snapshot()
        body["feed_error"] = self.error
        now = datetime.now(UTC)
        shown = [s for s in self.silences.all() if s.state(now) != "expired"] if self.silences is not None else []
        body["silences"] = [s.to_dict(now) for s in shown]  # active and pending
        return body


def make_app(feed: AlertFeed, title: str, lake: str | None = None) -> web.Application:
    page = resources.files("pipeline.ui").joinpath("page.html").read_text().replace("{{title}}", title)
    cache: dict[str, tuple[float, str, Any]] = {}  # what -> (when read, for which variant, value)

    async def cached(what: str, read: Callable[[], Any], variant: str = "") -> Any:
        """`read()` in a thread, at most every 5 s per `what` (and again when its `variant` changes)."""
        now = time.monotonic()
        if what not in cache or now - cache[what][0] >= 5 or cache[what][1] != variant:
            cache[what] = (now, variant, await asyncio.to_thread(read))
        return cache[what][2]

    async def from_lake(
        what: str, read: Callable[[str], Any], answer: Callable[[Any], dict], variant: str = ""
    ) -> web.Response:
        """`answer(read(lake))` as JSON, the lake read by `cached`; 404 without a lake, 503 with the
        reason if it cannot be read."""
        if lake is None:
            return web.json_response({"error": "no lake: give --data"}, status=404)
        try:
            value = await cached(what, lambda: read(lake), variant)
        except Exception as exc:  # a file being replaced, an unreadable lake: say so, keep serving
            return web.json_response({"error": f"{type(exc).__name__}: {exc}"}, status=503)
        return web.json_response(answer(value))

    async def index(request: web.Request) -> web.Response:
        return web.Response(text=page, content_type="text/html")

    async def state(request: web.Request) -> web.Response:
        body = feed.state()
        body["data_time"] = None  # the event time of the newest sample in the lake
        if lake is not None:
            try:
                newest = await cached("data_time", lambda: newest_event_ms(lake))
                body["data_time"] = None if newest is None else iso_utc(newest)
            except Exception:  # an unreadable lake: the alerts' event time still shows
                pass
        return web.Response(text=json.dumps(body), content_type="application/json")

    async def metric(request: web.Request) -> web.Response:
        name = request.query.get("name", "")
        if name not in METRICS:
            return web.json_response({"error": f"unknown metric {name!r}; one of {', '.join(METRICS)}"}, status=400)
        return await from_lake(
            name,
            lambda root: latest_values(root, name, int(feed.view.topo.cards_per_node)),
            lambda values: {
                "metric": name,
                "label": METRICS[name],
                "unit": UNITS[name],
                "min": min(values.values(), default=None),
                "max": max(values.values(), default=None),
                "values": values,
            },
        )

    async def jobs(request: web.Request) -> web.Response:
        with feed.lock:
            ranks: dict[str, set[int]] = {}
            for a in feed.view.active.values():
                if a.kind == "straggler" and "job" in a.labels and a.labels.get("rank", "").isdigit():
                    ranks.setdefault(a.labels["job"], set()).add(int(a.labels["rank"]))
        return await from_lake(
            "jobs",
            lambda root: step_history(root, ranks),
            lambda history: {"jobs": history, "unit": "s"},
            variant=json.dumps(sorted((j, sorted(r)) for j, r in ranks.items())),
        )

    async def fabric(request: web.Request) -> web.Response:
        return await from_lake("fabric", lambda root: switch_error_rates(root), lambda rates: {"switches": rates})

    app = web.Application()
    app.router.add_get("/api/fabric", fabric)
    app.router.add_get("/api/jobs", jobs)
    app.router.add_get("/", index)
    app.router.add_get("/api/state", state)
    app.router.add_get("/api/metric", metric)
    return app


class UiServer:
    """The page on host:port in a thread of its own (for `run`) or in the foreground (`ui`)."""

    def __init__(
        self,
        bootstrap: str,
        alerts_topic: str,
        topology: Any,
        host: str,
        port: int,
        title: str = "ClusterPulse",
        lake: str | None = None,
        silences_topic: str | None = None,
    ) -> None:
        book = SilenceBook()
        self.feed = AlertFeed(bootstrap, alerts_topic, ClusterView(topology), book)
        self.silences = SilenceFollower(book, bootstrap, silences_topic) if silences_topic else None
        self.lake = lake
        self.host, self.port, self.title = host, port, title
        self.url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}/"
        self._runner: web.AppRunner | None = None
        self._loop: Any = None

    def serve_forever(self) -> None:
        self.feed.start()
        if self.silences is not None:
            self.silences.start()
        web.run_app(
            make_app(self.feed, self.title, self.lake),
            host=self.host,
            port=self.port,
            print=None,
            access_log=None,
            handle_signals=True,
            loop=asyncio.new_event_loop(),
        )

    def start_in_thread(self) -> None:
        """Serve from a daemon thread; raises OSError now if the port is taken."""

        loop = asyncio.new_event_loop()
        runner = web.AppRunner(make_app(self.feed, self.title, self.lake), access_log=None)
        loop.run_until_complete(runner.setup())
        try:
            loop.run_until_complete(web.TCPSite(runner, self.host, self.port).start())
        except OSError:
            loop.run_until_complete(runner.cleanup())
            loop.close()
            raise
        self._loop, self._runner = loop, runner
        self.feed.start()
        if self.silences is not None:
            self.silences.start()
        threading.Thread(target=loop.run_forever, name="ui-server", daemon=True).start()

    def stop(self) -> None:
        self.feed.stopping.set()
        if self.silences is not None:
            self.silences.stop()
        if self._loop is not None and self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=10)
            self._loop.call_soon_threadsafe(self._loop.stop)
