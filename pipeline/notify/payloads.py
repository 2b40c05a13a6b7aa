"""What goes over the wire to each kind of receiver."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pipeline.model.schemas import Alert
from pipeline.notify.routing import routable_labels


def idempotency_key(alert: Alert) -> str:
    """The same for every retry and replay of one state change."""
    return f"{alert.id}:{alert.status}:{alert.ends_at or alert.starts_at}"


@dataclass(frozen=True)
class Notification:
    """What one request to a receiver carries: one alert state change (the default), or with a
    route's `group_by` the alerts of one aggregation group (pipeline.notify.grouping)."""

    alerts: tuple[Alert, ...]
    group_key: str | None = None  # None: one alert on its own
    group_labels: Mapping[str, str] = field(default_factory=dict)
    repeat: int = 0  # 0: news; n: the n-th reminder of an unchanged notification (repeat_interval)

    @classmethod
    def single(cls, alert: Alert, repeat: int = 0) -> Notification:
        return cls((alert,), repeat=repeat)

    @property
    def status(self) -> str:
        return "firing" if any(a.status == "firing" for a in self.alerts) else "resolved"

    def idempotency_key(self) -> str:
        """The same for every retry of this notification; a reminder has its own."""
        if self.group_key is None:
            base = idempotency_key(self.alerts[0])
        else:
            states = "\n".join(sorted(idempotency_key(a) for a in self.alerts))
            base = "group:" + hashlib.sha256(f"{self.group_key}\n{states}".encode()).hexdigest()[:32]
        return f"{base}:repeat:{self.repeat}" if self.repeat else base

    def describe(self) -> str:
        """For log lines: `kind entity status`, or the group, its size and status."""
        if self.group_key is None:
            a = self.alerts[0]
            text = f"{a.kind} {a.entity} {a.status}"
        else:
            text = f"group {self.group_key} ({len(self.alerts)} alerts, {self.status})"
        return text + (f" (reminder {self.repeat})" if self.repeat else "")


def clusterpulse_body(alert: Alert) -> bytes:
    """Our own JSON: the alert record of docs/scenarios.md, with evidence and blast radius."""
    return alert.to_json()


def clusterpulse_group_body(notification: Notification, receiver: str) -> bytes:
    """Our own JSON for a group: its key, labels and status, and the alert records in it."""
    return json.dumps(
        {
            "receiver": receiver,
            "status": notification.status,
            "group_key": notification.group_key,
            "group_labels": dict(notification.group_labels),
            "repeat": notification.repeat,
            "alerts": [json.loads(a.to_json()) for a in notification.alerts],
        },
        separators=(",", ":"),
    ).encode()


def _am_labels(alert: Alert) -> dict[str, str]:
    """The alert's labels plus alertname, entity, severity and the routable `grouped` and
    `root_cause` (so Alertmanager routes and inhibit rules can select consequences)."""

    labels = routable_labels(alert)
    if not labels["root_cause"]:
        del labels["root_cause"]
    labels.update({"alertname": alert.kind, "entity": alert.entity, "severity": alert.severity})
    return labels


def _am_annotations(alert: Alert) -> dict[str, str]:
    notes = {"summary": alert.summary, "clusterpulse_id": alert.id}
    if alert.root_cause:
        notes["root_cause"] = alert.root_cause
    radius = alert.evidence.get("blast_radius")
    if radius:
        notes["blast_radius"] = json.dumps(radius, sort_keys=True)
    grouped = alert.evidence.get("grouped")
    if grouped:
        notes["grouped_count"] = str(grouped["count"])
        notes["grouped"] = ", ".join(f"{g['kind']} {g['entity']}" for g in grouped["first"]) + (
            " ..." if grouped["count"] > len(grouped["first"]) else ""
        )
    return notes


def generator_url(alert: Alert) -> str:
    return f"https://clusterpulse.invalid/alerts/{alert.id}"


def alertmanager_alert(alert: Alert, now: datetime | None = None, keep_firing_s: float = 240.0) -> dict[str, Any]:
    """One element of Alertmanager's `POST /api/v2/alerts` body. A firing alert's endsAt lies a
    few re-send periods ahead, as Prometheus does, so Alertmanager resolves it if we go silent."""
    now = now or datetime.now(UTC)
    ends = (
        alert.ends_at
        if alert.status == "resolved"
        else (now + timedelta(seconds=keep_firing_s)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )
    return {
        "labels": _am_labels(alert),
        "annotations": _am_annotations(alert),
        "startsAt": alert.starts_at,
        "endsAt": ends,
        "generatorURL": generator_url(alert),
    }


def alertmanager_webhook_body(notification: Alert | Notification, receiver: str) -> bytes:
    """Alertmanager's webhook payload shape (version 4), for receivers that already parse it."""
    if isinstance(notification, Alert):
        notification = Notification.single(notification)
    labels = [_am_labels(a) for a in notification.alerts]
    annotations = [_am_annotations(a) for a in notification.alerts]
    items = [
        {
            "status": alert.status,
            "labels": labels[i],
            "annotations": annotations[i],
            "startsAt": alert.starts_at,
            "endsAt": alert.ends_at or "0001-01-01T00:00:00Z",
            "generatorURL": generator_url(alert),
            "fingerprint": alert.id,
        }
        for i, alert in enumerate(notification.alerts)
    ]
    if notification.group_key is None:
        kind = notification.alerts[0].kind
        group_key, group_labels = f'{{}}:{{alertname="{kind}"}}', {"alertname": kind}
    else:
        group_key, group_labels = notification.group_key, dict(notification.group_labels)
    return json.dumps(
        {
            "version": "4",
            "groupKey": group_key,
            "truncatedAlerts": 0,
            "status": notification.status,
            "receiver": receiver,
            "groupLabels": group_labels,
            "commonLabels": _common(labels),
            "commonAnnotations": _common(annotations),
            "externalURL": "https://clusterpulse.invalid",
            "alerts": items,
        },
        separators=(",", ":"),
        sort_keys=True,
    ).encode()


def _common(maps: list[dict[str, str]]) -> dict[str, str]:
    """The pairs every map has (Alertmanager's commonLabels, commonAnnotations)."""
    first, *rest = maps
    return {k: v for k, v in first.items() if all(m.get(k) == v for m in rest)}
