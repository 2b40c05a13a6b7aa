"""Delivery against real local HTTP servers: retries, timeouts, dead letters, order, isolation."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pipeline.model.schemas import Alert
from pipeline.notify.delivery import Notifier
from pipeline.notify.receiver import WebhookReceiver
from pipeline.notify.signing import HEADER
from pipeline.settings import ReceiverSettings


class Scripted(ThreadingHTTPServer):
    """Answers each POST per a script of (status, delay_s); then 200. Records bodies and times."""

    daemon_threads = True

    def __init__(self, script: list[tuple[int, float]] | None = None, delay_s: float = 0.0) -> None:
        super().__init__(("127.0.0.1", 0), _Scripted)
        self.script = list(script or [])
        self.delay_s = delay_s
        self.seen: list[tuple[float, dict, dict]] = []
        self.handled = 0
        self.lock = threading.Lock()

    def settled(self, requests: int, timeout_s: float = 10.0) -> Scripted:
        """Once `requests` requests have been handled to the end: the client may read an answer
        before the handler thread has recorded it."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self.lock:
                if self.handled >= requests:
                    break
            time.sleep(0.01)
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"


class _Scripted(BaseHTTPRequestHandler):
    server: Scripted

    def do_POST(self) -> None:  # noqa: N802
        arrived = time.monotonic()
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with self.server.lock:
            status, delay = self.server.script.pop(0) if self.server.script else (200, self.server.delay_s)
        time.sleep(delay)
        try:
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}" if status < 400 else b"no")
        except (BrokenPipeError, ConnectionResetError):
            return
        if status == 200:  # recorded once the answer is out (a client that gave up never got it)
            with self.server.lock:
                self.server.seen.append((arrived, json.loads(body), dict(self.headers)))
                self.server.seen.sort(key=lambda seen: seen[0])  # in the order they came, not answered

    def finish(self) -> None:
        super().finish()
        with self.server.lock:
            self.server.handled += 1

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def servers():
    started = []

    def make(server):
        threading.Thread(target=server.serve_forever, daemon=True).start()
        started.append(server)
        return server

    yield make
    for s in started:
        s.shutdown()
        s.server_close()


def alert(entity: str, status: str = "firing") -> Alert:
    return Alert(
        kind="link_down",
        entity=entity,
        status=status,
        starts_at="2026-01-01T00:00:10.000Z",
        ends_at="2026-01-01T00:01:00.000Z" if status == "resolved" else None,
        severity="critical",
        summary=f"{entity} down",
    )


def receiver(name: str, url: str, **kw) -> ReceiverSettings:
    return ReceiverSettings(
        **{"name": name, "url": url, "backoff_s": 0.05, "max_backoff_s": 0.2, "timeout_s": 1.0, **kw}
    )


def run(receivers: list[ReceiverSettings], alerts: list[Alert], timeout_s: float = 30) -> tuple[Notifier, list]:
    dead: list = []

    async def dead_letter(r, a, outcome) -> None:  # noqa: ANN001
        dead.append((r.name, a.entity, a.status, outcome))

    async def main() -> Notifier:
        notifier = Notifier(receivers, dead_letter)
        await notifier.start()
        try:
            await asyncio.wait_for(asyncio.gather(*(notifier.submit(a) for a in alerts)), timeout_s)
        finally:
            await notifier.stop()
        return notifier

    return asyncio.run(main()), dead


def test_a_signed_notification_is_verified_by_the_receiver(servers, monkeypatch) -> None:
    monkeypatch.setenv("HOOK_SECRET", "s3cret")
    good = servers(WebhookReceiver("127.0.0.1", 0, echo=None, secret=b"s3cret"))
    wrong = servers(WebhookReceiver("127.0.0.1", 0, echo=None, secret=b"other"))
    notifier, dead = run(
        [receiver("good", good.url, secret_env="HOOK_SECRET"), receiver("wrong", wrong.url, secret_env="HOOK_SECRET")],
        [alert("a~b")],
    )
    assert [e["body"]["entity"] for e in good.received] == ["a~b"]
    assert HEADER.lower() in {k.lower() for k in good.received[0]["headers"]}
    assert wrong.received == [] and wrong.rejected == 1
    assert [(d[0], d[3].status) for d in dead] == [("wrong", 401)]  # a 4xx fails at once
    assert dead[0][3].attempts == 1 and "signature does not match" in dead[0][3].error


def test_retries_on_5xx_and_timeouts_then_delivers(servers) -> None:
    flaky = servers(Scripted([(500, 0), (503, 0), (200, 2.0)]))  # two errors, then a reply too slow
    notifier, dead = run([receiver("flaky", flaky.url)], [alert("a~b")])
    assert dead == [] and notifier.delivered == 1
    assert [s[1]["entity"] for s in flaky.settled(4).seen] == ["a~b"]


def test_gives_up_after_the_limit_into_the_dead_letter(servers) -> None:
    broken = servers(Scripted([(500, 0)] * 10))
    notifier, dead = run([receiver("broken", broken.url, max_attempts=3)], [alert("a~b")])
    [(name, entity, status, outcome)] = dead
    assert (name, entity, outcome.attempts, outcome.status) == ("broken", "a~b", 3, 500)
    assert "gave up after 3 attempts" in outcome.error


def test_firing_is_delivered_before_resolved(servers) -> None:
    slow_first = servers(Scripted([(500, 0), (500, 0)]))
    run([receiver("r", slow_first.url)], [alert("a~b"), alert("a~b", "resolved"), alert("c~d")])
    assert [(s[1]["entity"], s[1]["status"]) for s in slow_first.settled(5).seen] == [
        ("a~b", "firing"),
        ("a~b", "resolved"),
        ("c~d", "firing"),
    ]
    assert slow_first.seen[0][2]["Idempotency-Key"] != slow_first.seen[1][2]["Idempotency-Key"]


def test_a_slow_receiver_does_not_delay_another(servers) -> None:
    slow = servers(Scripted(delay_s=0.8))
    fast = servers(Scripted())
    started = time.monotonic()
    run([receiver("slow", slow.url, timeout_s=5.0), receiver("fast", fast.url)], [alert(f"l{i}~x") for i in range(4)])
    assert len(fast.settled(4).seen) == 4 and len(slow.settled(4).seen) == 4  # recorded once answered
    assert fast.seen[-1][0] - started < 0.8  # all four reached the fast one before the slow one answered once
    assert slow.seen[-1][0] - started >= 3 * 0.8
