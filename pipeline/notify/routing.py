"""Which receivers get which alerts.

With a routing tree (`notify.route`, Alertmanager's shape), `routed` walks it: an alert goes down
the first child route whose matchers all match it, and also down the next siblings while the child it
took has `continue`; a route none of whose children match takes it itself. Without a tree, every
receiver whose own filters match gets it (the flat receivers are a one-level tree, all `continue`).

A receiver's filters match kinds, severities and label values (empty = everything). Besides an alert's own
labels, two are routable: `root_cause` (the id of the alert that explains it, "" when none) and
`grouped` ("true" for a consequence grouped under a root cause, else "false").

Grouping, as Alertmanager's: a route's `group_by` (inherited like its receiver and timings) puts the
alerts it sends to one receiver that share those labels' values into one notification
(`pipeline.notify.grouping`); without it, each root cause is its own notification.

Inhibition, as Alertmanager's: a grouped consequence is not notified (its root cause's notification
carries it), unless the receiver sets `notify_grouped: true`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from pipeline.model.matchers import Matcher, alert_fields
from pipeline.model.schemas import Alert
from pipeline.settings import EVERY_LABEL, ReceiverSettings, RouteSettings, duration_s


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


GROUP_INTERVAL_S = 300.0  # Alertmanager's default group_interval


@dataclass(frozen=True)
class RouteTarget:
    """A receiver a route sends an alert to, with the route's (inherited) grouping settings."""

    receiver: str
    group_wait_s: float | None = None  # None: the receiver's group_wait_s
    group_by: tuple[str, ...] | None = None  # None or ('...',): one notification per alert
    group_interval_s: float = GROUP_INTERVAL_S
    repeat_interval_s: float | None = None  # None: no reminders
    route_id: str = "notify.route"  # the route's path in the settings: one group space per route
    route_key: str = "{}"  # Alertmanager's spelling of the route: {}/{matchers}/...

    @property
    def aggregates(self) -> bool:
        return self.group_by is not None and self.group_by != (EVERY_LABEL,)


def routed(route: RouteSettings, alert: Alert) -> list[RouteTarget]:
    """The targets of each route that takes the alert, in tree order; the top route takes what no
    child does."""
    fields = alert_fields(alert) | {
        "root_cause": alert.root_cause or "",
        "grouped": str(bool(alert.root_cause)).lower(),
    }
    top = _target(route, RouteTarget(route.receiver or ""), "notify.route", "{}")
    return _walk(route, fields, top) or [top]


def group_labels(alert: Alert, group_by: tuple[str, ...]) -> dict[str, str]:
    """The values of `group_by` for an alert: any matcher field, plus Alertmanager's `alertname`
    (the kind); a label the alert lacks is "" (alerts without it group together)."""
    fields = alert_fields(alert) | {
        "alertname": alert.kind,
        "root_cause": alert.root_cause or "",
        "grouped": str(bool(alert.root_cause)).lower(),
    }
    return {name: fields.get(name, "") for name in group_by}


def _target(route: RouteSettings, parent: RouteTarget, route_id: str, route_key: str) -> RouteTarget:
    return RouteTarget(
        receiver=route.receiver or parent.receiver,
        group_wait_s=duration_s(route.group_wait) if route.group_wait else parent.group_wait_s,
        group_by=route.group_by if route.group_by is not None else parent.group_by,
        group_interval_s=duration_s(route.group_interval) if route.group_interval else parent.group_interval_s,
        repeat_interval_s=duration_s(route.repeat_interval) if route.repeat_interval else parent.repeat_interval_s,
        route_id=route_id,
        route_key=route_key,
    )


def _walk(route: RouteSettings, fields: dict[str, str], parent: RouteTarget) -> list[RouteTarget]:
    taken: list[RouteTarget] = []
    for i, child in enumerate(route.routes):
        if not all(_matcher(m).matches(fields) for m in child.matchers):
            continue
        key = parent.route_key + "/{" + ",".join(child.matchers) + "}"
        target = _target(child, parent, f"{parent.route_id}.routes.{i}", key)
        taken += _walk(child, fields, target) or [target]
        if not child.continue_:
            break
    return taken
