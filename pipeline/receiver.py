"""A small webhook receiver: prints and records every POSTed alert notification.

It is the other end of the webhook sink in `docker-compose.yml` and in tests: POST any JSON body
to any path; `GET /healthz` answers 200; `GET /received` returns what arrived, as a JSON list.
"""

from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TextIO

MAX_BODY = 16 * 1024 * 1024


class WebhookReceiver(ThreadingHTTPServer):
    """HTTP server that keeps the JSON bodies it received (and appends them to `out`)."""

    daemon_threads = True

    def __init__(self, host: str, port: int, out: Path | None = None, echo: TextIO | None = sys.stdout) -> None:
        super().__init__((host, port), _Handler)
        self.out = out
        self.echo = echo
        self.received: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/"

    def record(self, path: str, body: Any) -> None:
        entry = {"path": path, "body": body}
        with self.lock:
            self.received.append(entry)
            if self.out:
                with open(self.out, "a") as fh:
                    fh.write(json.dumps(entry) + "\n")
        if self.echo:
            print(f"received {path}: {json.dumps(body)[:300]}", file=self.echo, flush=True)


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
        try:
            body = json.loads(raw)
        except ValueError as exc:
            self._reply(400, {"error": f"body is not JSON: {exc}"})
            return
        self.server.record(self.path, body)
        self._reply(200, {"ok": True})

    def log_message(self, format: str, *args: Any) -> None:  # quiet: we print what matters
        pass
