"""Which receivers get which alerts.

Routing matches kinds, severities and label values (empty = everything). Besides an alert's own
labels, two are routable: `root_cause` (the id of the alert that explains it, "" when none) and
`grouped` ("true" for a consequence grouped under a root cause, else "false").

Inhibition, as Alertmanager's: a grouped consequence is not notified (its root cause's notification
carries it), unless the receiver sets `notify_grouped: true`.
"""

from __future__ import annotations

from pipeline.model.schemas import Alert
from pipeline.settings import ReceiverSettings


def routable_labels(alert: Alert) -> dict[str, str]:
    labels = {k: str(v) for k, v in alert.labels.items()}
    labels["root_cause"] = alert.root_cause or ""
    labels["grouped"] = "true" if alert.root_cause else "false"
    return labels


def matches(receiver: ReceiverSettings, alert: Alert) -> bool:
    if receiver.kinds and alert.kind not in receiver.kinds:
        return False
    if receiver.severities and alert.severity not in receiver.severities:
        return False
    labels = routable_labels(alert)
    return all(labels.get(k) == v for k, v in receiver.labels.items())


def inhibited(receiver: ReceiverSettings, alert: Alert) -> bool:
    """A grouped consequence rides along in its root's notification instead of paging on its own."""
    return bool(alert.root_cause) and not receiver.notify_grouped
