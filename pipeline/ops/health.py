"""GET /healthz for a worker: 200 with a JSON report when ready, 503 (same report) before."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web

from pipeline.ops.metrics import CONTENT_TYPE

log = logging.getLogger("clusterpulse.health")


async def serve_health(
    port: int,
    report: Callable[[], dict[str, Any]],
    host: str = "0.0.0.0",
    metrics: Callable[[], bytes] | None = None,
    routes: list[web.RouteDef] | None = None,
) -> None:
    """Serve until cancelled. `report()` must return a dict with a boolean "ready"; `metrics()`,
    if given, the Prometheus text exposition served on GET /metrics; `routes`, more of the worker's
    HTTP API (`/api/silences`)."""

    async def healthz(request: web.Request) -> web.Response:
        body = report()
        return web.json_response(body, status=200 if body.get("ready") else 503)

    async def metrics_page(request: web.Request) -> web.Response:
        assert metrics is not None  # the page is routed only when `metrics` is given
        return web.Response(body=metrics(), headers={"Content-Type": CONTENT_TYPE})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    if metrics is not None:
        app.router.add_get("/metrics", metrics_page)
    app.add_routes(routes or [])
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as exc:
        log.error("cannot serve /healthz on port %d: %s", port, exc.strerror or exc)
        await runner.cleanup()
        return
    log.info("health: GET http://%s:%d/healthz%s", host, port, " and /metrics" if metrics is not None else "")
    try:
        while True:
            await asyncio.sleep(3600)
    finally:
        await runner.cleanup()
