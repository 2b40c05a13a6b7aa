"""A route's group_by, group_wait, group_interval and repeat_interval against a real local receiver:
one notification per group, changes sent together, reminders while firing, the group gone once all
its alerts resolved."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import replace

from pipeline.model.schemas import Alert
from pipeline.notify.delivery import Notifier
from pipeline.notify.receiver import WebhookReceiver
from pipeline.settings import RouteSettings
from tests.builders import link_alert
from tests.integration.notify.test_delivery import Scripted, receiver, servers  # noqa: F401 (fixture)


def link(entity: str, switch: str) -> Alert:
    return link_alert(entity, switch)


def resolved(a: Alert) -> Alert:
    return replace(a, status="resolved", ends_at="2026-12-02T06:05:00.000Z")


async def until(condition: Callable[[], bool], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "the receiver did not get what was expected"
        await asyncio.sleep(0.02)


def test_alerts_sharing_the_group_labels_go_out_together_and_changes_follow(servers) -> None:  # noqa: F811
    net = servers(WebhookReceiver("127.0.0.1", 0, echo=None))
    route = RouteSettings(receiver="net", group_by=("switch",), group_wait="300ms", group_interval="300ms")
    a, b, c = link("leaf003:1", "leaf003"), link("leaf003:2", "leaf003"), link("leaf004:1", "leaf004")

    async def main() -> Notifier:
        notifier = Notifier([receiver("net", net.url)], lambda *_: asyncio.sleep(0), route=route)
        await notifier.start()
        try:
            await asyncio.wait_for(asyncio.gather(*(notifier.submit(x) for x in (a, b, c))), 20)
            assert len(net.received) == 2  # one per switch, each once its futures completed
            await asyncio.wait_for(notifier.submit(resolved(a)), 20)
            assert len(net.received) == 3
            await asyncio.wait_for(asyncio.gather(notifier.submit(resolved(b)), notifier.submit(resolved(c))), 20)
            await until(lambda: not notifier.aggregation)
        finally:
            await notifier.stop()
        return notifier

    notifier = asyncio.run(main())
    bodies = [e["body"] for e in net.received]
    first = {tuple(body["group_labels"].values()): body for body in bodies[:2]}
    assert [x["entity"] for x in first[("leaf003",)]["alerts"]] == ["leaf003:1", "leaf003:2"]
    assert [x["entity"] for x in first[("leaf004",)]["alerts"]] == ["leaf004:1"]
    assert first[("leaf003",)]["group_key"] == '{}:{switch="leaf003"}' and first[("leaf003",)]["status"] == "firing"
    change = bodies[2]  # the whole group: what still fires, then what resolved since
    states = [(x["entity"], x["status"]) for x in change["alerts"]]
    assert states == [("leaf003:2", "firing"), ("leaf003:1", "resolved")]
    last = {tuple(body["group_labels"].values()): body for body in bodies[3:]}
    assert [(x["entity"], x["status"]) for x in last[("leaf003",)]["alerts"]] == [("leaf003:2", "resolved")]
    assert last[("leaf003",)]["status"] == "resolved" and len(bodies) == 5
    keys = [e["headers"]["Idempotency-Key"] for e in net.received]
    assert len(set(keys)) == 5 and all(k.startswith("group:") for k in keys)
    assert notifier.stats["net"].delivered == 6  # state changes: 3 firing, 3 resolved


def test_a_firing_alert_is_reminded_until_it_resolves(servers) -> None:  # noqa: F811
    pager = servers(WebhookReceiver("127.0.0.1", 0, echo=None))
    route = RouteSettings(receiver="pager", repeat_interval="200ms")
    a = link("leaf003:1", "leaf003")

    async def main() -> Notifier:
        notifier = Notifier([receiver("pager", pager.url)], lambda *_: asyncio.sleep(0), route=route)
        await notifier.start()
        try:
            await asyncio.wait_for(notifier.submit(a), 20)
            await until(lambda: len(pager.received) >= 3)
            await asyncio.wait_for(notifier.submit(resolved(a)), 20)
            assert not notifier.reminders
        finally:
            await notifier.stop()
        return notifier

    notifier = asyncio.run(main())
    keys = [e["headers"]["Idempotency-Key"] for e in pager.received]
    news = f"{a.id}:firing:{a.starts_at}"
    assert keys[:3] == [news, f"{news}:repeat:1", f"{news}:repeat:2"]
    assert pager.received[-1]["body"]["status"] == "resolved"
    assert all(e["body"]["status"] == "firing" for e in pager.received[:-1])
    assert notifier.stats["pager"].reminders == len(keys) - 2 and notifier.stats["pager"].delivered == 2


def test_an_unchanged_group_is_reminded_with_its_count(servers) -> None:  # noqa: F811
    net = servers(WebhookReceiver("127.0.0.1", 0, echo=None))
    route = RouteSettings(receiver="net", group_by=("switch",), group_wait="0s", repeat_interval="200ms")

    async def main() -> None:
        notifier = Notifier([receiver("net", net.url)], lambda *_: asyncio.sleep(0), route=route)
        await notifier.start()
        try:
            await asyncio.wait_for(notifier.submit(link("leaf003:1", "leaf003")), 20)
            await until(lambda: len(net.received) >= 3)
        finally:
            await notifier.stop()

    asyncio.run(main())
    assert [e["body"]["repeat"] for e in net.received[:3]] == [0, 1, 2]


def test_a_group_that_cannot_be_delivered_dead_letters_each_alert_once(servers) -> None:  # noqa: F811
    refusing = servers(Scripted([(400, 0.0)]))
    route = RouteSettings(receiver="net", group_by=("switch",), group_wait="100ms")
    dead: list[tuple[str, str]] = []

    async def dead_letter(r, alert, outcome) -> None:  # noqa: ANN001
        dead.append((r.name, alert.entity))

    async def main() -> None:
        notifier = Notifier([receiver("net", refusing.url)], dead_letter, route=route)
        await notifier.start()
        try:
            alerts = (link("leaf003:1", "leaf003"), link("leaf003:2", "leaf003"))
            await asyncio.wait_for(asyncio.gather(*(notifier.submit(x) for x in alerts)), 20)
        finally:
            await notifier.stop()

    asyncio.run(main())
    assert sorted(dead) == [("net", "leaf003:1"), ("net", "leaf003:2")]
