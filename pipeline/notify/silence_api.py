"""`/api/silences` on a worker's HTTP port (the health port), in the shape of Alertmanager's API v2:

- `GET /api/silences`: every silence the worker knows, JSON list (`?all=false`: without expired);
- `POST /api/silences`: create one (body: a silence without `id`, or with one to change it); answers
  `{"silenceID": ...}` as Alertmanager does;
- `DELETE /api/silences/{id}` (and `DELETE /api/silence/{id}`, Alertmanager's path): expire it now.

Writes need `Authorization: Bearer <token>` with the token held in the environment variable the
`api_token_env` setting names; without that variable set, writes are refused (401), reads are open.
"""

from __future__ import annotations

import hmac
import json
import os
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from aiohttp import web

from pipeline.notify.silences import Silence, SilenceBook, SilenceError

WriteSilence = Callable[[Silence], Awaitable[None]]


def silence_routes(book: SilenceBook, write: WriteSilence, token_env: str) -> list[web.RouteDef]:
    def refused(request: web.Request) -> web.Response | None:
        token = os.environ.get(token_env) if token_env else None
        if not token:
            return _error(
                401,
                "writes are off: name an environment variable in the api_token_env setting and set it to a "
                "bearer token in the worker's environment",
            )
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return _error(401, "a bearer token is required (Authorization: Bearer <token>)")
        return None

    async def list_silences(request: web.Request) -> web.Response:
        now = datetime.now(UTC)
        keep_expired = request.query.get("all", "true").lower() != "false"
        shown = [s.to_dict(now) for s in book.all() if keep_expired or s.state(now) != "expired"]
        return web.json_response(shown)

    async def add_silence(request: web.Request) -> web.Response:
        if (answer := refused(request)) is not None:
            return answer
        try:
            body = await request.json()
            if not isinstance(body, dict):
                raise SilenceError("the body must be one JSON object (a silence)")
            now = datetime.now(UTC)
            silence = Silence.from_dict({**body, "updatedAt": now.isoformat()})
            if body.get("id") and book.get(str(body["id"])) is None:
                return _error(404, f"no silence {body['id']} to change")
            if silence.ends_at <= now:
                raise SilenceError("the silence would end in the past")
        except (ValueError, SilenceError) as exc:  # bad JSON is a ValueError too
            return _error(400, str(exc))
        await write(silence)
        book.apply(silence)
        return web.json_response({"silenceID": silence.id})

    async def expire_silence(request: web.Request) -> web.Response:
        if (answer := refused(request)) is not None:
            return answer
        silence = book.get(request.match_info["id"])
        if silence is None:
            return _error(404, f"no silence {request.match_info['id']}")
        now = datetime.now(UTC)
        if silence.state(now) != "expired":
            ended = silence.expired(now)
            await write(ended)
            book.apply(ended)
        return web.json_response({"silenceID": silence.id, "status": {"state": "expired"}})

    return [
        web.get("/api/silences", list_silences),
        web.post("/api/silences", add_silence),
        web.delete("/api/silences/{id}", expire_silence),
        web.delete("/api/silence/{id}", expire_silence),
    ]


def _error(status: int, message: str) -> web.Response:
    return web.Response(status=status, text=json.dumps({"error": message}), content_type="application/json")
