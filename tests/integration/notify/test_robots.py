"""The three chat robots against local servers that check each request as the services document
them (DingTalk: timestamp and sign on the URL; Feishu: timestamp and sign in the body; WeCom: the key
in the URL; the message format and size), answer as they do (HTTP 200 with errcode/code), and refuse
too-fast senders once: every alert arrives, a bad signature is dead-lettered with the robot's reason."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from pipeline.model.schemas import Alert
from pipeline.notify.delivery import Notifier, Outcome
from pipeline.ops.broker import free_port
from pipeline.settings import ReceiverSettings
from tests.builders import leaf_down_alert

SECRET = "SEC0123456789abcdef"


@dataclass
class Robot:
    """One robot service: what it took and what it refused."""

    kind: str
    secret: str | None = None
    key: str = "robot-key"
    refuse_first_as_too_fast: bool = False
    taken: list[dict] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)

    def check(self, request: web.Request, body: dict) -> tuple[int, str] | None:
        """(code, message) of a refusal, as the service would answer; None: taken."""
        now = time.time()
        if self.kind == "dingtalk":
            if request.query.get("access_token") != self.key:
                return 300001, "token is not exist"
            if self.secret:
                stamp, sign = request.query.get("timestamp", ""), request.query.get("sign", "")
                want = base64.b64encode(
                    hmac.new(self.secret.encode(), f"{stamp}\n{self.secret}".encode(), hashlib.sha256).digest()
                ).decode()
                if not stamp.isdigit() or abs(now * 1000 - int(stamp)) > 3_600_000:
                    return 310000, "timestamp is not valid"
                if sign != want:  # aiohttp has url-decoded the query: the base64 itself
                    return 310000, "sign not match"
            if body.get("msgtype") != "markdown" or len(body["markdown"]["text"].encode()) > 20_000:
                return 40035, "bad markdown message"
        elif self.kind == "feishu":
            if self.secret:
                stamp = body.get("timestamp", "")
                key = f"{stamp}\n{self.secret}".encode()
                want = base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()
                if not str(stamp).isdigit() or abs(now - int(stamp)) > 3600 or body.get("sign") != want:
                    return 19021, "sign match fail or timestamp is not within one hour from current time"
            if body.get("msg_type") != "interactive" or len(json.dumps(body, ensure_ascii=False).encode()) > 20_480:
                return 9499, "bad request"
        else:
            if request.query.get("key") != self.key:
                return 93000, "invalid webhook url"
            if body.get("msgtype") != "markdown" or len(body["markdown"]["content"].encode()) > 4096:
                return 40058, "markdown.content exceed max length 4096"
        if self.refuse_first_as_too_fast and not self.taken and not self.refused:
            return {"dingtalk": 130101, "feishu": 11232, "wecom": 45009}[self.kind], "send too fast"
        return None

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        refusal = self.check(request, body)
        if refusal is not None:
            self.refused.append(refusal[1])
            code, message = refusal
        else:
            self.taken.append(body)
            code, message = 0, "ok"
        answer = {"code": code, "msg": message} if self.kind == "feishu" else {"errcode": code, "errmsg": message}
        return web.json_response(answer)  # HTTP 200 either way, as the services answer


@pytest.fixture
def robots() -> Iterator[tuple[dict[str, Robot], int]]:
    services = {
        "dingtalk": Robot("dingtalk", secret=SECRET, refuse_first_as_too_fast=True),
        "feishu": Robot("feishu", secret=SECRET, refuse_first_as_too_fast=True),
        "wecom": Robot("wecom", refuse_first_as_too_fast=True),
        "dingtalk-bad-secret": Robot("dingtalk", secret="SECsomething-else"),
    }
    app = web.Application()
    for name, robot in services.items():
        app.router.add_post(f"/{name}", robot.handle)
    port = free_port()
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app)
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
    import threading

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield services, port
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


def leaf_down() -> Alert:
    return leaf_down_alert()


def test_each_robot_gets_its_documented_message_signed_and_a_refusal_is_dead_lettered(robots, monkeypatch) -> None:  # noqa: ANN001
    services, port = robots
    monkeypatch.setenv("ROBOT_SECRET", SECRET)
    base = f"http://127.0.0.1:{port}"
    receivers = [
        ReceiverSettings(
            name="ding",
            type="dingtalk",
            url=f"{base}/dingtalk?access_token=robot-key",
            secret_env="ROBOT_SECRET",
            page_url="http://ops.example:8088/",
            group_wait_s=0,
            backoff_s=0.05,
        ),
        ReceiverSettings(
            name="lark", type="feishu", url=f"{base}/feishu", secret_env="ROBOT_SECRET", group_wait_s=0, backoff_s=0.05
        ),
        ReceiverSettings(name="wx", type="wecom", url=f"{base}/wecom?key=robot-key", group_wait_s=0, backoff_s=0.05),
        ReceiverSettings(
            name="ding-bad",
            type="dingtalk",
            url=f"{base}/dingtalk-bad-secret?access_token=robot-key",
            secret_env="ROBOT_SECRET",
            group_wait_s=0,
            max_attempts=3,
            backoff_s=0.05,
        ),
    ]
    dead: list[tuple[str, Outcome]] = []

    async def dead_letter(receiver: ReceiverSettings, alert: Alert, outcome: Outcome) -> None:
        dead.append((receiver.name, outcome))

    async def run() -> Notifier:
        notifier = Notifier(receivers, dead_letter)
        await notifier.start()
        try:
            await asyncio.wait_for(notifier.submit(leaf_down()), timeout=30)
        finally:
            await notifier.stop()
        return notifier

    notifier = asyncio.run(run())
    for name, service in [("ding", "dingtalk"), ("lark", "feishu"), ("wx", "wecom")]:
        assert notifier.stats[name].delivered == 1 and notifier.stats[name].retries == 1, name  # refused once: too fast
        [message] = services[service].taken
        assert services[service].refused == ["send too fast"]
        assert len(notifier.rates[name].sent) == 2  # the retry after "too fast" took a rate slot too
        text = json.dumps(message, ensure_ascii=False)
        assert "switch_down leaf007" in text and "32 cards, 32 links" in text
    assert "[live page](http://ops.example:8088/)" in services["dingtalk"].taken[0]["markdown"]["text"]
    [(name, outcome)] = dead
    assert name == "ding-bad" and outcome.attempts == 1 and "sign not match" in (outcome.error or "")
    assert notifier.stats["ding-bad"].failed == 1


@pytest.mark.broker
def test_a_worker_pages_each_robot_signed(broker, prefix, children, tmp_path, robots) -> None:  # noqa: ANN001
    from tests.builders import card_batch
    from tests.integration.notify.test_silences import send_cards, wait_for
    from tests.integration.stream.test_worker import alive, worker_env

    services, port = robots
    base = f"http://127.0.0.1:{port}"
    receivers = [
        {
            "name": "ding",
            "type": "dingtalk",
            "url": f"{base}/dingtalk?access_token=robot-key",
            "secret_env": "ROBOT_SECRET",
            "group_wait_s": 0,
            "backoff_s": 0.05,
        },
        {
            "name": "lark",
            "type": "feishu",
            "url": f"{base}/feishu",
            "secret_env": "ROBOT_SECRET",
            "group_wait_s": 0,
            "backoff_s": 0.05,
        },
        {"name": "wx", "type": "wecom", "url": f"{base}/wecom?key=robot-key", "group_wait_s": 0, "backoff_s": 0.05},
    ]
    env = {
        **worker_env(broker.bootstrap, prefix, tmp_path / "lake"),
        "ROBOT_SECRET": SECRET,
        "CLUSTERPULSE_NOTIFY__RECEIVERS": json.dumps(receivers),
    }
    assert children.start("topics", env=env, name="topics").wait(timeout=60) == 0
    worker = children.start("worker", env=env, name="worker")
    send_cards(broker.bootstrap, f"{prefix}.telemetry.card", card_batch("node0003", 0, errors=[(6, 79)]))
    wait_for(
        "a page on each robot",
        lambda: all(services[k].taken for k in ("dingtalk", "feishu", "wecom")),
        alive_check=alive(children, worker),
    )
    for kind in ("dingtalk", "feishu", "wecom"):
        [message] = services[kind].taken
        assert "card_failed node0003-card6" in json.dumps(message, ensure_ascii=False), kind
