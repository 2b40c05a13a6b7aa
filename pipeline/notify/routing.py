"""Which receivers get which alerts: by kind, severity and label values (empty = everything)."""

from __future__ import annotations

from pipeline.schemas import Alert
from pipeline.settings import ReceiverSettings


def matches(receiver: ReceiverSettings, alert: Alert) -> bool:
    if receiver.kinds and alert.kind not in receiver.kinds:
        return False
    if receiver.severities and alert.severity not in receiver.severities:
        return False
    return all(alert.labels.get(k) == v for k, v in receiver.labels.items())
