"""What goes over the wire to each kind of receiver."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from pipeline.model.schemas import Alert
from pipeline.notify.routing import routable_labels


def idempotency_key(alert: Alert) -> str:
    """The same for every retry and replay of one state change."""
    return f"{alert.id}:{alert.status}:{alert.ends_at or alert.starts_at}"


def clusterpulse_body(alert: Alert) -> bytes:
    """Our own JSON: the alert record of docs/scenarios.md, with evidence and blast radius."""
    return alert.to_json()


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


def alertmanager_webhook_body(alert: Alert, receiver: str) -> bytes:
    """Alertmanager's webhook payload shape (version 4), for receivers that already parse it."""
    labels = _am_labels(alert)
    item = {
        "status": alert.status,
        "labels": labels,
        "annotations": _am_annotations(alert),
        "startsAt": alert.starts_at,
        "endsAt": alert.ends_at or "0001-01-01T00:00:00Z",
        "generatorURL": generator_url(alert),
        "fingerprint": alert.id,
    }
    return json.dumps(
        {
            "version": "4",
            "groupKey": f'{{}}:{{alertname="{alert.kind}"}}',
            "truncatedAlerts": 0,
            "status": alert.status,
            "receiver": receiver,
            "groupLabels": {"alertname": alert.kind},
            "commonLabels": labels,
            "commonAnnotations": item["annotations"],
            "externalURL": "https://clusterpulse.invalid",
            "alerts": [item],
        },
        separators=(",", ":"),
        sort_keys=True,
    ).encode()
