"""One page per root cause: grouped consequences ride along in their root's notification
(Alertmanager-style inhibition), unless a receiver opts in; `grouped` and `root_cause` are routable."""

from __future__ import annotations

import asyncio
import json

from pipeline.model.schemas import Alert
from pipeline.notify.delivery import Notifier
from pipeline.notify.payloads import alertmanager_alert
from pipeline.notify.receiver import WebhookReceiver
from pipeline.notify.routing import matches
from pipeline.settings import ReceiverSettings
from tests.integration.notify.test_delivery import receiver, servers  # noqa: F401 (fixture)


def node_failure() -> list[Alert]:
    """A dead node and its 8 host links, as the correlator publishes them."""
    root = Alert(
        kind="node_down",
        entity="node0003",
        status="firing",
        starts_at="2026-01-01T00:00:20.000Z",
        severity="critical",
        summary="node0003 down",
    )
    links = [
        Alert(
            kind="link_down",
            entity=f"node0003-nic{n}~leaf{n:03d}",
            status="firing",
            starts_at="2026-01-01T00:00:20.000Z",
            severity="critical",
            summary="link down",
            root_cause=root.id,
        )
        for n in range(8)
    ]
    resolved = [
        Alert(**{**vars(a), "status": "resolved", "ends_at": "2026-01-01T00:01:00.000Z"}) for a in [root, *links]
    ]
    return [root, *links, *resolved]


def deliver_all(receivers: list[ReceiverSettings], alerts: list[Alert]) -> Notifier:
    async def dead_letter(*_: object) -> None:
        pass

    async def main() -> Notifier:
        notifier = Notifier(receivers, dead_letter)
        await notifier.start()
        try:
            await asyncio.wait_for(asyncio.gather(*(notifier.submit(a) for a in alerts)), 30)
        finally:
            await notifier.stop()
        return notifier

    return asyncio.run(main())


def test_a_node_failure_pages_once_with_its_links_inside(servers) -> None:  # noqa: F811
    pager = servers(WebhookReceiver("127.0.0.1", 0, echo=None))
    chatty = servers(WebhookReceiver("127.0.0.1", 0, echo=None))
    notifier = deliver_all(
        [
            receiver("pager", pager.url, group_wait_s=0.3),
            receiver("chatty", chatty.url, group_wait_s=0.3, notify_grouped=True),
        ],
        node_failure(),
    )
    got = [(e["body"]["kind"], e["body"]["status"]) for e in pager.received]
    assert got == [("node_down", "firing"), ("node_down", "resolved")]  # was 9 firing + 9 resolved
    firing = pager.received[0]["body"]
    grouped = firing["evidence"]["grouped"]
    assert grouped["count"] == 8 and grouped["kinds"] == {"link_down": 8}
    assert [g["entity"] for g in grouped["first"]] == [f"node0003-nic{n}~leaf{n:03d}" for n in range(8)]
    assert "8 grouped consequences" in firing["summary"]
    assert notifier.stats["pager"].inhibited == 16 and notifier.stats["pager"].delivered == 2
    assert len(chatty.received) == 18 and notifier.stats["chatty"].inhibited == 0


def test_grouped_and_root_cause_are_routable_labels() -> None:
    root, link = node_failure()[:2]
    only_roots = ReceiverSettings(name="r", url="http://x/hook", labels={"grouped": "false"}, notify_grouped=True)
    only_consequences = ReceiverSettings(
        name="c", url="http://x/hook", labels={"root_cause": root.id}, notify_grouped=True
    )
    assert matches(only_roots, root) and not matches(only_roots, link)
    assert matches(only_consequences, link) and not matches(only_consequences, root)
    labels = alertmanager_alert(link)["labels"]
    assert labels["grouped"] == "true" and labels["root_cause"] == root.id
    assert alertmanager_alert(root)["labels"]["grouped"] == "false"
    assert "root_cause" not in alertmanager_alert(root)["labels"]


def test_a_spine_failure_is_one_notification_naming_the_first_links(servers) -> None:  # noqa: F811
    pager = servers(WebhookReceiver("127.0.0.1", 0, echo=None))
    root = Alert(
        kind="switch_down",
        entity="spine07",
        status="firing",
        starts_at="2026-01-01T00:00:05.000Z",
        severity="critical",
        summary="spine07 down",
    )
    links = [
        Alert(
            kind="link_down",
            entity=f"leaf{n:03d}~spine07",
            status="firing",
            starts_at="2026-01-01T00:00:05.000Z",
            severity="critical",
            summary="down",
            root_cause=root.id,
        )
        for n in range(320)
    ]
    deliver_all([receiver("pager", pager.url, group_wait_s=0.3)], [root, *links])
    [only] = pager.received
    grouped = only["body"]["evidence"]["grouped"]
    assert grouped["count"] == 320 and len(grouped["first"]) == 10
    assert json.dumps(only["body"]).count("~spine07") == 10
