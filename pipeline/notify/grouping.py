"""Aggregation groups, as Alertmanager's: with a route's `group_by`, the alerts the route sends one
receiver that share those labels' values go out together, one notification per group.

- A new group waits `group_wait` (the route's, else the receiver's `group_wait_s`) before its first
  notification, so that what fires together is sent together.
- After that, what changes in it (an alert joins, one resolves) waits until `group_interval` has
  passed since the group's last notification; then one notification carries the whole group: the
  alerts still firing and those resolved since the last.
- With `repeat_interval`, a group still firing and unchanged is sent again that long after its last
  notification (a reminder; it has its own idempotency key).
- A resolved alert leaves the group once a notification carried it; an empty group is dropped.

Pure bookkeeping over a clock the caller passes (seconds); the notifier schedules and sends.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

from pipeline.model.schemas import Alert
from pipeline.notify.payloads import Notification

Finished = Callable[[], None]


def group_key(route_key: str, labels: dict[str, str]) -> str:
    """Alertmanager's groupKey: the route's key, then the group's labels, `{}/{...}:{switch="leaf003"}`."""
    return route_key + ":{" + ",".join(f"{k}={json.dumps(v)}" for k, v in sorted(labels.items())) + "}"


@dataclass
class AggregationGroup:
    """One group of one receiver on one route: its alerts' latest states and when it is next due."""

    key: str
    labels: dict[str, str]
    created_at: float
    wait_s: float
    interval_s: float
    repeat_s: float | None = None
    alerts: dict[str, Alert] = field(default_factory=dict)  # id -> its latest state
    fresh: dict[str, Alert] = field(default_factory=dict)  # state changes not notified yet
    waiting: list[Finished] = field(default_factory=list)  # callers told when those are done
    notified_at: float | None = None
    repeats: int = 0
    in_flight: bool = False

    def add(self, alert: Alert, finished: Finished) -> None:
        self.alerts[alert.id] = alert
        self.fresh[alert.id] = alert
        self.waiting.append(finished)

    def due_at(self) -> float | None:
        """When the next notification goes (None: nothing to send, or one is on its way)."""
        if self.in_flight:
            return None
        if self.notified_at is None:
            return self.created_at + self.wait_s if self.fresh else None
        if self.fresh:
            return self.notified_at + self.interval_s
        if self.repeat_s is not None and any(a.status == "firing" for a in self.alerts.values()):
            return self.notified_at + self.repeat_s
        return None

    def take(self) -> tuple[Notification, list[Alert], list[Finished]]:
        """The notification to send now, the state changes it is the news of (empty for a reminder),
        and the callbacks to call once it is done."""
        news = list(self.fresh.values())
        self.repeats = 0 if news else self.repeats + 1
        ordered = sorted(self.alerts.values(), key=lambda a: (a.status != "firing", a.starts_at, a.entity))
        notification = Notification(tuple(ordered), self.key, dict(self.labels), repeat=self.repeats)
        waiting, self.waiting, self.fresh = self.waiting, [], {}
        self.in_flight = True
        return notification, news, waiting

    def settle(self, notification: Notification, now: float) -> None:
        """The notification is done (delivered or dead-lettered): resolved alerts it carried leave."""
        self.in_flight = False
        self.notified_at = now
        for alert in notification.alerts:
            if alert.status != "firing" and self.alerts.get(alert.id) is alert:
                del self.alerts[alert.id]

    @property
    def finished(self) -> bool:
        return not self.alerts and not self.fresh and not self.in_flight
