"""Which receivers get which alerts.

With a routing tree (`notify.route`, Alertmanager's shape), `routed` walks it: an alert goes down
the first child route whose matchers all match it, and also down the next siblings while the child it
took has `continue`; a route none of whose children match takes it itself. Without a tree, every
receiver whose own filters match gets it (the flat receivers are a one-level tree, all `continue`).

A receiver's filters match kinds, severities and label values (empty = everything). Besides an alert's own
labels, two are routable: `root_cause` (the id of the alert that explains it, "" when none) and
`grouped` ("true" for a consequence grouped under a root cause, else "false").

Inhibition, as Alertmanager's: a grouped consequence is not notified (its root cause's notification
carries it), unless the receiver sets `notify_grouped: true`.
"""

from __future__ import annotations

from functools import lru_cache

from pipeline.model.matchers import Matcher, alert_fields
from pipeline.model.schemas import Alert
from pipeline.settings import ReceiverSettings, RouteSettings, duration_s


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


@lru_cache(maxsize=4096)
def _matcher(text: str) -> Matcher:
    return Matcher.parse(text)  # checked when the settings were read


def routed(route: RouteSettings, alert: Alert) -> list[tuple[str, float | None]]:
    """(receiver, group_wait in seconds or None for the receiver's own) of each route that takes the
    alert, in tree order; the top route takes what no child does."""
    fields = alert_fields(alert) | {
        "root_cause": alert.root_cause or "",
        "grouped": str(bool(alert.root_cause)).lower(),
    }
    top_wait = _wait(route, None)
    return _walk(route, fields, route.receiver or "", top_wait) or [(route.receiver or "", top_wait)]


def _wait(route: RouteSettings, inherited: float | None) -> float | None:
    return duration_s(route.group_wait) if route.group_wait else inherited


def _walk(route: RouteSettings, fields: dict[str, str], receiver: str, wait: float | None) -> list:
    taken: list[tuple[str, float | None]] = []
    for child in route.routes:
        if not all(_matcher(m).matches(fields) for m in child.matchers):
            continue
        name, child_wait = child.receiver or receiver, _wait(child, wait)
        taken += _walk(child, fields, name, child_wait) or [(name, child_wait)]
        if not child.continue_:
            break
    return taken
