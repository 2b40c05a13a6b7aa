"""Aggregation groups as Alertmanager keeps them: group_wait before the first notification,
group_interval between notifications of what changed, repeat_interval for an unchanged firing
group, resolved alerts leaving once notified."""

import json
from dataclasses import replace

from pipeline.model.schemas import Alert
from pipeline.notify.grouping import AggregationGroup, group_key
from pipeline.notify.payloads import Notification, alertmanager_webhook_body
from pipeline.notify.robots import markdown, robot_request
from pipeline.notify.routing import group_labels
from tests.builders import link_alert


def alert(kind: str, entity: str, switch: str = "leaf003", status: str = "firing") -> Alert:
    return link_alert(entity, switch, status, kind)


def resolved(a: Alert) -> Alert:
    return replace(a, status="resolved", ends_at="2026-12-02T06:05:00.000Z")


def test_a_group_waits_then_sends_changes_each_interval_and_reminds_while_firing() -> None:
    group = AggregationGroup("k", {"switch": "leaf003"}, created_at=100.0, wait_s=30, interval_s=300, repeat_s=3600)
    assert group.due_at() is None  # nothing in it yet
    calls: list[str] = []
    a, b = alert("link_down", "leaf003:1"), alert("link_flap", "leaf003:2")
    group.add(a, lambda: calls.append("a"))
    group.add(b, lambda: calls.append("b"))
    assert group.due_at() == 130.0
    first, news, waiting = group.take()
    assert [x.id for x in first.alerts] == [a.id, b.id] and news == [a, b] and first.repeat == 0
    assert group.due_at() is None  # on its way
    for finished in waiting:
        finished()
    assert calls == ["a", "b"]
    group.settle(first, now=131.0)
    assert group.due_at() == 131.0 + 3600  # unchanged and firing: a reminder
    group.add(resolved(a), lambda: None)
    assert group.due_at() == 131.0 + 300  # a change waits for the group interval
    second, news, _ = group.take()
    assert [x.status for x in second.alerts] == ["firing", "resolved"] and news == [resolved(a)]
    group.settle(second, now=431.0)
    assert list(group.alerts) == [b.id]  # the resolved alert was notified: it leaves
    reminder, news, _ = group.take()
    assert news == [] and reminder.repeat == 1 and reminder.idempotency_key() != second.idempotency_key()
    group.settle(reminder, now=4031.0)
    group.add(resolved(b), lambda: None)
    last, _, _ = group.take()
    group.settle(last, now=4400.0)
    assert group.finished and group.due_at() is None


def test_without_repeat_an_unchanged_group_is_not_sent_again() -> None:
    group = AggregationGroup("k", {}, created_at=0.0, wait_s=0, interval_s=10)
    group.add(alert("link_down", "leaf003:1"), lambda: None)
    notification, _, _ = group.take()
    group.settle(notification, now=1.0)
    assert group.due_at() is None and not group.finished


def test_group_labels_and_key_are_alertmanagers() -> None:
    a = alert("link_down", "leaf003:1")
    labels = group_labels(a, ("alertname", "switch", "rack"))
    assert labels == {"alertname": "link_down", "switch": "leaf003", "rack": ""}
    key = group_key("{}/{kind=~link_.*}", labels)
    assert key == '{}/{kind=~link_.*}:{alertname="link_down",rack="",switch="leaf003"}'


def test_a_group_notification_in_alertmanagers_webhook_shape() -> None:
    a, b = alert("link_down", "leaf003:1"), resolved(alert("link_flap", "leaf003:2"))
    body = alertmanager_webhook_body(Notification((a, b), 'k:{switch="leaf003"}', {"switch": "leaf003"}), "net")
    sent = json.loads(body)
    assert sent["status"] == "firing" and sent["groupKey"] == 'k:{switch="leaf003"}'
    assert sent["groupLabels"] == {"switch": "leaf003"}
    assert [x["status"] for x in sent["alerts"]] == ["firing", "resolved"]
    assert sent["commonLabels"] == {"switch": "leaf003", "severity": "critical", "grouped": "false"}


def test_a_robot_message_of_a_group_names_each_alert_and_fits_the_limit() -> None:
    alerts = tuple(alert("link_down", f"leaf003:{n}") for n in range(200))
    notification = Notification(alerts, "k", {"switch": "leaf003"})
    title, text = markdown(notification)
    assert title == "[FIRING:200] switch=leaf003"
    assert "#### link_down leaf003:0" in text and "#### link_down leaf003:199" in text
    _, body = robot_request("wecom", "https://robot.example/send?key=k", notification, None, 0.0)
    content = json.loads(body)["markdown"]["content"]
    assert len(content.encode()) <= 4096 and "cut to the robot's size limit" in content
    reminder = markdown(Notification.single(alerts[0], repeat=2))[0]
    assert reminder == "[FIRING] link_down leaf003:0 (reminder)"
