"""Alert lifecycle: each (kind, entity) fires once and resolves once, with a stable id."""

from __future__ import annotations

from typing import Any

from pipeline.model.schemas import Alert, alert_id, iso_utc


class AlertBook:
    """The alerts currently firing in one detector's scope; turns decisions into state changes."""

    def __init__(self) -> None:
        self._firing: dict[str, Alert] = {}

    def is_firing(self, kind: str, entity: str) -> bool:
        return alert_id(kind, entity) in self._firing

    def fire(
        self,
        kind: str,
        entity: str,
        ts_ms: int,
        *,
        severity: str,
        summary: str,
        labels: dict[str, str] | None = None,
        evidence: dict[str, Any] | None = None,
        root_cause: str | None = None,
    ) -> Alert | None:
        """A firing record, or None if this alert is already firing."""
        aid = alert_id(kind, entity)
        if aid in self._firing:
            return None
        alert = Alert(
            kind=kind,
            entity=entity,
            status="firing",
            starts_at=iso_utc(ts_ms),
            severity=severity,
            summary=summary,
            root_cause=root_cause,
            labels=dict(labels or {}),
            evidence=dict(evidence or {}),
            id=aid,
        )
        self._firing[aid] = alert
        return alert

    def resolve(self, kind: str, entity: str, ts_ms: int, *, reason: str) -> Alert | None:
        """A resolved record carrying the firing record's fields, or None if it was not firing."""
        firing = self._firing.pop(alert_id(kind, entity), None)
        if firing is None:
            return None
        return Alert(
            kind=kind,
            entity=entity,
            status="resolved",
            starts_at=firing.starts_at,
            ends_at=iso_utc(ts_ms),
            severity=firing.severity,
            summary=f"resolved: {reason}",
            root_cause=firing.root_cause,
            labels=firing.labels,
            evidence=firing.evidence,
            id=firing.id,
        )

    def firing(self) -> list[Alert]:
        return list(self._firing.values())
