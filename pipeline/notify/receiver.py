"""A small webhook receiver: prints and records every POSTed alert notification.

It is the other end of the webhook sink in `docker-compose.yml` and in tests: POST any JSON body
to any path; `GET /healthz` answers 200; `GET /received` returns what arrived, as a JSON list.
With a secret it verifies the `X-ClusterPulse-Signature` header and answers 401 (with the reason)
to anything unsigned, wrongly signed or replayed.
"""

from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TextIO

from pipeline.model.schemas import Alert
from pipeline.notify.signing import HEADER, SignatureError, verify

MAX_BODY = 16 * 1024 * 1024


class WebhookReceiver(ThreadingHTTPServer):
    """HTTP server that keeps the JSON bodies it received (and appends them to `out`)."""

    daemon_threads = True

    def __init__(
        self,
        host: str,
        port: int,
        out: Path | None = None,
        echo: TextIO | None = sys.stdout,
        secret: bytes | None = None,
    ) -> None:
        super().__init__((host, port), _Handler)
        self.secret = secret
        self.rejected = 0
        self.out = out
        self.echo = echo
        self.received: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        assert isinstance(host, str)  # an AF_INET server: (host, port), never a unix socket's bytes path
        return f"http://{host}:{port}/"

    def record(self, path: str, body: Any, headers: dict[str, str] | None = None) -> None:
        entry = {"path": path, "body": body, "headers": headers or {}}
        with self.lock:
            self.received.append(entry)
            if self.out:
                with open(self.out, "a") as fh:
                    fh.write(json.dumps(entry) + "\n")
        if self.echo:
            print(f"received {path}: {_describe(body)}", file=self.echo, flush=True)


class _Handler(BaseHTTPRequestHandler):
    server: WebhookReceiver

    def _reply(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        if self.path == "/healthz":
            self._reply(200, {"ok": True})
        elif self.path == "/received":
            with self.server.lock:
                self._reply(200, list(self.server.received))
        else:
            self._reply(404, {"error": f"no such path {self.path}"})

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self._reply(413, {"error": f"body of {length} bytes exceeds {MAX_BODY}"})
            return
        raw = self.rfile.read(length)
        if self.server.secret is not None:
            try:
                verify(self.server.secret, raw, self.headers.get(HEADER))
            except SignatureError as exc:
                self.server.rejected += 1
                self._reply(401, {"error": str(exc)})
                return
        try:
            body = json.loads(raw)
        except ValueError as exc:
            self._reply(400, {"error": f"body is not JSON: {exc}"})
            return
        keep = {k: v for k, v in self.headers.items() if k.lower() in ("idempotency-key", "x-clusterpulse-signature")}
        self.server.record(self.path, body, keep)
        self._reply(200, {"ok": True})

    def log_message(self, format: str, *args: Any) -> None:  # quiet: we print what matters
        pass


def _describe(body: Any) -> str:
    """One line: an alert as `clusterpulse run` prints it, a group's alerts so, or the JSON."""
    if isinstance(body, dict) and isinstance(body.get("alerts"), list) and "group_key" in body:
        lines = [_describe(a) for a in body["alerts"]]
        return f"group {body['group_key']} ({body.get('status')}, {len(lines)} alerts): " + "; ".join(lines)
    if isinstance(body, dict) and {"kind", "entity", "status", "starts_at"} <= set(body):
        try:
            return Alert(**body).line()
        except TypeError:
            pass
    return json.dumps(body)[:300]
