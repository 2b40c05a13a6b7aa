"""Delivery as stages, per receiver: route, build, sign, send, retry what is recoverable, record.

- 2xx: delivered. 4xx (but 408 and 429): fails at once, the response in the error. 5xx, 408,
  429, timeouts and connection errors: retried with exponential backoff and full jitter until
  `max_attempts` or `deadline_s`; then the notification goes to the dead-letter callback.
- Each receiver has its own queue and worker: a slow or dead receiver delays only itself, and one
  receiver gets an alert's state changes in order (firing before resolved).
- Inhibition: a grouped consequence (an alert with a `root_cause`) is not sent on its own (per
  receiver `notify_grouped: true` opts in); it rides along in its root alert's notification as
  `evidence.grouped` (count, kinds and the first entities). A root alert waits `group_wait_s` for its
  consequences before it is sent, as Alertmanager's group_wait does, unless it was declared from
  them (`evidence.consequences_known`: the fabric saw all of a switch's links go at once).
- Grouping: a route with `group_by` sends a receiver one notification per aggregation group
  (`pipeline.notify.grouping`: group_wait, group_interval, repeat_interval as Alertmanager's);
  without, one per alert state change, and with `repeat_interval` a firing alert is re-sent that
  long after its last notification.
- Silences: an alert carrying `silenced_by` (an active silence covered it when the correlator
  published it) is sent to no receiver; when the silence ends and it still fires, the correlator
  publishes it again without, and it pages then.
- Every final outcome (delivered, dead-lettered, inhibited) is counted per receiver and passed to
  `on_outcome`, which the worker logs and records in the lake.
- `submit()` returns a future that completes when every matching receiver is done with the alert
  (delivered or dead-lettered); the caller commits the alert's offset only then, so a restart
  neither loses notifications nor repeats more than the idempotency key absorbs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import aiohttp

from pipeline.model.schemas import Alert
from pipeline.notify.grouping import AggregationGroup, Finished, group_key
from pipeline.notify.payloads import (
    Notification,
    alertmanager_alert,
    alertmanager_webhook_body,
    clusterpulse_body,
    clusterpulse_group_body,
)
from pipeline.notify.robots import ROBOTS, RateLimit, robot_request, robot_verdict
from pipeline.notify.routing import RouteTarget, group_labels, inhibited, matches, routed
from pipeline.notify.signing import HEADER, IDEMPOTENCY_HEADER, sign
from pipeline.settings import ReceiverSettings, RouteSettings

log = logging.getLogger("clusterpulse.notify")
RETRYABLE_4XX = {408, 429}


@dataclass
class Outcome:
    delivered: bool
    attempts: int
    status: int | None = None
    error: str | None = None


DeadLetter = Callable[[ReceiverSettings, Alert, Outcome], Awaitable[None]]
OnOutcome = Callable[[ReceiverSettings, Alert, Outcome], Awaitable[None]]
# roots that wait for their consequences before they are sent (a card_ecc root is not held: the
# failure it may lead to comes minutes later)
HELD_ROOT_KINDS = frozenset({"switch_down", "node_down", "thermal_throttle"})
GROUPED_SHOWN = 10  # consequences named in a root's notification


@dataclass
class ReceiverStats:
    delivered: int = 0
    failed: int = 0  # not delivered after the last retry (then dead-lettered)
    dead_lettered: int = 0  # of those, kept in the dead-letter topic for `alerts replay`
    inhibited: int = 0  # grouped consequences carried by their root's notification
    silenced: int = 0  # state changes an active silence covered (pipeline.notify.silences): not sent
    retries: int = 0
    reminders: int = 0  # unchanged notifications sent again after repeat_interval


@dataclass
class _Reminder:
    """A firing alert sent on its own, to be sent again at `due` (repeat_interval) unless it changes."""

    alert: Alert
    due: float
    repeat_s: float
    count: int = 0
    queued: bool = False


@dataclass
class _Job:
    """One notification in a receiver's queue."""

    notification: Notification
    news: list[Alert]  # the state changes it carries news of (outcomes, dead letters); [] for a reminder
    finished: list[Finished]
    queued_at: float
    hold_s: float | None = None  # a single alert: its route's group_wait (None: the receiver's)
    repeat_s: float | None = None  # a single alert: remind after this long while it fires
    group: AggregationGroup | None = None
    reminder: _Reminder | None = None


@dataclass
class _Group:
    """Consequences seen for one root alert."""

    members: dict[str, Alert] = field(default_factory=dict)

    def summary(self) -> dict:
        firing = sorted(self.members.values(), key=lambda a: (a.starts_at, a.entity))
        kinds: dict[str, int] = {}
        for a in firing:
            kinds[a.kind] = kinds.get(a.kind, 0) + 1
        return {
            "count": len(firing),
            "kinds": kinds,
            "first": [{"kind": a.kind, "entity": a.entity, "id": a.id} for a in firing[:GROUPED_SHOWN]],
        }


def request_for(receiver: ReceiverSettings, alert: Alert | Notification) -> tuple[str, bytes, dict[str, str]]:
    """(url, body, headers) of one notification; the signature is added per attempt."""
    notification = alert if isinstance(alert, Notification) else Notification.single(alert)
    headers = {
        "Content-Type": "application/json",
        IDEMPOTENCY_HEADER: notification.idempotency_key(),
        "User-Agent": "clusterpulse",
    }
    if receiver.type == "alertmanager":
        keep = 4 * receiver.resend_s
        body = json.dumps([alertmanager_alert(a, keep_firing_s=keep) for a in notification.alerts]).encode()
        return receiver.url.rstrip("/") + "/api/v2/alerts", body, headers
    if receiver.format == "alertmanager":
        return receiver.url, alertmanager_webhook_body(notification, receiver.name), headers
    if notification.group_key is None:
        return receiver.url, clusterpulse_body(notification.alerts[0]), headers
    return receiver.url, clusterpulse_group_body(notification, receiver.name), headers


def backoff_s(receiver: ReceiverSettings, attempt: int, rng: random.Random) -> float:
    """Full jitter: uniform in [0, min(max, base * 2^(attempt-1))]."""
    return rng.uniform(0, min(receiver.max_backoff_s, receiver.backoff_s * 2 ** (attempt - 1)))


def _robot_attempt(receiver: ReceiverSettings, notification: Notification, secret: bytes | None) -> tuple[str, bytes]:
    return robot_request(receiver.type, receiver.url, notification, secret, time.time(), receiver.page_url)


async def deliver(
    session: aiohttp.ClientSession,
    receiver: ReceiverSettings,
    alert: Alert | Notification,
    rng: random.Random | None = None,
    sleep: Callable[[float], Awaitable] = asyncio.sleep,
    on_retry: Callable[[], None] | None = None,
    pace: Callable[[], Awaitable[None]] | None = None,
) -> Outcome:
    """Send one notification with retries; never raises."""
    rng = rng or random.Random()
    notification = alert if isinstance(alert, Notification) else Notification.single(alert)
    url, body, headers = request_for(receiver, notification)
    try:
        secret = receiver.secret()
    except ValueError as exc:  # SettingsError: the secret went away since start-up
        return Outcome(False, 0, None, str(exc))
    loop = asyncio.get_running_loop()
    started = loop.time()
    attempt = 0
    status: int | None = None
    error = ""
    robot = receiver.type in ROBOTS
    while True:
        attempt += 1
        if pace is not None:  # a robot's rate limit: every attempt, retries too, takes a slot
            await pace()
            if attempt == 1:
                started = loop.time()  # waiting its turn in the queue is not delivery time (deadline_s)
        if robot:  # signed afresh each attempt: a robot refuses a timestamp an hour old
            try:
                url, body = _robot_attempt(receiver, notification, secret)
            except ValueError as exc:  # a secret that is not UTF-8 text (UnicodeDecodeError)
                return Outcome(False, attempt, None, f"cannot sign the {receiver.type} message: {exc}")
        elif secret is not None:
            headers[HEADER] = sign(secret, body)
        try:
            timeout = aiohttp.ClientTimeout(total=receiver.timeout_s)
            async with session.post(url, data=body, headers=headers, timeout=timeout) as resp:
                status = resp.status
                text = (await resp.text())[:500]
            if 200 <= status < 300 and not robot:
                return Outcome(True, attempt, status)
            if 200 <= status < 300:  # a robot's verdict is in its answer
                accepted, retry, error = robot_verdict(receiver.type, text)
                if accepted:
                    return Outcome(True, attempt, status)
                if not retry:
                    return Outcome(False, attempt, status, error)
            else:
                error = f"HTTP {status}: {text}"
            if 400 <= status < 500 and status not in RETRYABLE_4XX:
                return Outcome(False, attempt, status, error)  # the request is wrong: retrying won't help
        except TimeoutError:
            status, error = None, f"no response within {receiver.timeout_s:g} s"
        except aiohttp.ClientError as exc:
            status, error = None, f"{type(exc).__name__}: {exc}"
        delay = backoff_s(receiver, attempt, rng)
        if attempt >= receiver.max_attempts or loop.time() - started + delay > receiver.deadline_s:
            return Outcome(False, attempt, status, f"gave up after {attempt} attempts: {error}")
        what = notification.describe()
        log.warning("receiver %s: %s: %s; retry %d in %.1f s", receiver.name, what, error, attempt, delay)
        if on_retry is not None:
            on_retry()
        await sleep(delay)


class Notifier:
    """Per-receiver queues and workers; see the module docstring."""

    def __init__(
        self,
        receivers: tuple[ReceiverSettings, ...] | list[ReceiverSettings],
        dead_letter: DeadLetter,
        rng: random.Random | None = None,
        on_outcome: OnOutcome | None = None,
        clock: Callable[[], float] | None = None,
        route: RouteSettings | None = None,
    ) -> None:
        self.receivers = list(receivers)
        self.route = route  # the routing tree; None: every receiver whose filters match
        self.by_name = {r.name: r for r in self.receivers}
        self.dead_letter = dead_letter
        self.on_outcome = on_outcome
        self.stats = {r.name: ReceiverStats() for r in self.receivers}
        self.groups: dict[str, _Group] = {}  # a root's consequences, carried in its notification
        self.aggregation: dict[tuple[str, str, str], AggregationGroup] = {}  # (receiver, route, key): group_by
        self.reminders: dict[tuple[str, str], _Reminder] = {}  # (receiver, alert id): repeat_interval
        self._clock = clock
        self.rng = rng or random.Random()
        self.queues: dict[str, asyncio.Queue[_Job]] = {}
        self.tasks: list[asyncio.Task] = []
        self._due = asyncio.Event()  # a group or reminder changed: the scheduler looks again
        self.session: aiohttp.ClientSession | None = None
        self.firing: dict[str, dict[str, Alert]] = {r.name: {} for r in self.receivers}  # alertmanager re-sends
        self.rates = {  # a robot's documented rate limit: messages wait their turn, none is dropped
            r.name: RateLimit(ROBOTS[r.type].per_minute, ROBOTS[r.type].per_second)
            for r in self.receivers
            if r.type in ROBOTS
        }
        self.delivered = 0
        self.dead_lettered = 0

    async def start(self) -> None:
        if self.session is not None:
            return
        self.session = aiohttp.ClientSession()
        self._due = asyncio.Event()  # bound to the running loop
        for receiver in self.receivers:
            queue: asyncio.Queue[_Job] = asyncio.Queue()
            self.queues[receiver.name] = queue
            self.tasks.append(asyncio.create_task(self._work(receiver, queue), name=f"notify-{receiver.name}"))
            if receiver.type == "alertmanager":
                self.tasks.append(asyncio.create_task(self._resend(receiver), name=f"resend-{receiver.name}"))
        self.tasks.append(asyncio.create_task(self._schedule(), name="notify-schedule"))

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.tasks.clear()
        if self.session is not None:
            await self.session.close()
            self.session = None

    def submit(self, alert: Alert) -> asyncio.Future:
        """Queue an alert for every matching receiver; the future completes when all are done
        (with group_by: when the group's notification that carries it is done)."""
        loop = asyncio.get_running_loop()
        self._group(alert)
        targets = self._route(alert)
        done = loop.create_future()
        if alert.status == "resolved" and alert.id in self.groups:  # the root's episode ends once it is sent
            done.add_done_callback(lambda _: self.groups.pop(alert.id, None))
        if not targets:
            done.set_result(0)
            return done
        remaining = {"n": len(targets)}

        def one_finished() -> None:
            remaining["n"] -= 1
            if remaining["n"] == 0 and not done.done():
                done.set_result(len(targets))

        now = loop.time()
        for target in targets:
            receiver = self.by_name[target.receiver]
            if target.aggregates:
                self._aggregate(receiver, target, alert, one_finished, now)
                continue
            self.reminders.pop((receiver.name, alert.id), None)  # news of the alert replaces its reminder
            job = _Job(Notification.single(alert), [alert], [one_finished], now, target.group_wait_s)
            job.repeat_s = target.repeat_interval_s
            self.queues[receiver.name].put_nowait(job)
        return done

    def _aggregate(
        self, receiver: ReceiverSettings, target: RouteTarget, alert: Alert, finished: Finished, now: float
    ) -> None:
        """The alert joins its aggregation group (made on first sight); the scheduler sends it."""
        assert target.group_by is not None  # target.aggregates
        labels = group_labels(alert, target.group_by)
        key = group_key(target.route_key, labels)
        slot = (receiver.name, target.route_id, key)
        group = self.aggregation.get(slot)
        if group is None:
            wait = receiver.group_wait_s if target.group_wait_s is None else target.group_wait_s
            group = AggregationGroup(key, labels, now, wait, target.group_interval_s, target.repeat_interval_s)
            self.aggregation[slot] = group
        group.add(alert, finished)
        self._due.set()

    def _group(self, alert: Alert) -> None:
        """A firing consequence joins its root's group (sent along with the root's page)."""
        if alert.root_cause and alert.status == "firing":
            self.groups.setdefault(alert.root_cause, _Group()).members[alert.id] = alert

    def _route(self, alert: Alert) -> list[RouteTarget]:
        """The receivers whose routes match the alert, unless a silence covers it or their inhibit
        rules hold it back."""
        if self.route is not None:
            chosen: dict[str, RouteTarget] = {}
            for target in routed(self.route, alert):  # a receiver reached twice gets it once
                chosen.setdefault(target.receiver, target)
            candidates = list(chosen.values())
        else:
            candidates = [RouteTarget(r.name) for r in self.receivers if matches(r, alert)]
        targets = []
        for target in candidates:
            receiver = self.by_name[target.receiver]
            if alert.silenced_by:
                self.stats[receiver.name].silenced += 1
                continue
            if inhibited(receiver, alert):
                self.stats[receiver.name].inhibited += 1
                continue
            targets.append(target)
        return targets

    async def _hold(self, receiver: ReceiverSettings, job: _Job) -> None:
        """A firing root sent on its own waits its route's `group_wait` (or the receiver's
        `group_wait_s`) so that its consequences arrive and ride along."""
        alert = job.notification.alerts[0]
        if job.group is None and not job.notification.repeat and alert.kind in HELD_ROOT_KINDS:
            if alert.evidence.get("consequences_known"):
                return  # declared from its consequences (the fabric saw every link go): nothing to wait for
            if alert.status == "firing" and not alert.root_cause:
                hold_s = receiver.group_wait_s if job.hold_s is None else job.hold_s
                wait = job.queued_at + hold_s - asyncio.get_running_loop().time()
                if wait > 0:
                    await asyncio.sleep(wait)

    def with_group(self, alert: Alert) -> Alert:
        """The alert with the consequences grouped under it so far (evidence.grouped), if any."""
        group = self.groups.get(alert.id)
        if group is None or not group.members:
            return alert
        summary = group.summary()
        return replace(
            alert,
            evidence={**alert.evidence, "grouped": summary},
            summary=f"{alert.summary}; {summary['count']} grouped consequences",
        )

    async def _schedule(self) -> None:
        """Put each aggregation group and reminder that is due into its receiver's queue."""
        loop = asyncio.get_running_loop()
        while True:
            self._due.clear()
            now = loop.time()
            soonest: float | None = None
            for slot, group in list(self.aggregation.items()):
                due = group.due_at()
                if due is not None and due <= now:
                    notification, news, waiting = group.take()
                    self.queues[slot[0]].put_nowait(_Job(notification, news, waiting, now, group=group))
                elif due is not None:
                    soonest = due if soonest is None else min(soonest, due)
                elif group.finished:
                    del self.aggregation[slot]
            for (name, _), reminder in self.reminders.items():
                if reminder.queued:
                    continue
                if reminder.due <= now:
                    reminder.queued = True
                    notification = Notification.single(reminder.alert, repeat=reminder.count + 1)
                    job = _Job(notification, [], [], now, repeat_s=reminder.repeat_s, reminder=reminder)
                    self.queues[name].put_nowait(job)
                else:
                    soonest = reminder.due if soonest is None else min(soonest, reminder.due)
            timeout = None if soonest is None else max(0.0, soonest - now)
            try:
                await asyncio.wait_for(self._due.wait(), timeout)
            except TimeoutError:
                pass

    async def _work(self, receiver: ReceiverSettings, queue: asyncio.Queue[_Job]) -> None:
        while True:
            job = await queue.get()
            try:
                await self._send(receiver, job)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug must not kill the receiver's worker
                log.exception("receiver %s: delivery failed", receiver.name)
            finally:
                if job.group is not None:
                    job.group.settle(job.notification, asyncio.get_running_loop().time())
                    self._due.set()
                for finished in job.finished:
                    finished()

    async def _send(self, receiver: ReceiverSettings, job: _Job) -> None:
        stats = self.stats[receiver.name]
        slot = (receiver.name, job.notification.alerts[0].id)
        if job.reminder is not None and self.reminders.get(slot) is not job.reminder:
            return  # the alert changed after its reminder was queued: the news went instead
        await self._hold(receiver, job)
        notification = replace(job.notification, alerts=tuple(self.with_group(a) for a in job.notification.alerts))
        assert self.session is not None  # the worker tasks run between start() and stop()
        outcome = await deliver(
            self.session,
            receiver,
            notification,
            self.rng,
            on_retry=lambda: setattr(stats, "retries", stats.retries + 1),
            pace=self.rates[receiver.name].wait if receiver.name in self.rates else None,
        )
        sent = {a.id: a for a in notification.alerts}
        news = [sent[a.id] for a in job.news]
        if outcome.delivered:
            what, attempts = notification.describe(), outcome.attempts
            log.info("receiver %s: delivered %s (%d attempts)", receiver.name, what, attempts)
            for alert in notification.alerts:
                self._track(receiver, alert)
            self.delivered += len(news)
            stats.delivered += len(news)
            stats.reminders += 0 if news else 1
        else:
            log.error("receiver %s: %s not delivered: %s", receiver.name, notification.describe(), outcome.error)
            self.dead_lettered += len(news)
            stats.failed += len(news)
            for alert in news:  # a reminder is not news: it is not kept for replay
                await self.dead_letter(receiver, alert, outcome)
                stats.dead_lettered += 1
        if self.on_outcome is not None:
            for alert in news:
                await self.on_outcome(receiver, alert, outcome)
        self._remind(receiver, job, slot)

    def _remind(self, receiver: ReceiverSettings, job: _Job, slot: tuple[str, str]) -> None:
        """A firing alert sent on its own, with repeat_interval, is sent again that long after."""
        alert = job.notification.alerts[0]
        if job.group is not None or job.repeat_s is None:
            return
        if alert.status != "firing":
            self.reminders.pop(slot, None)
            return
        now = asyncio.get_running_loop().time()
        self.reminders[slot] = _Reminder(alert, now + job.repeat_s, job.repeat_s, job.notification.repeat)
        self._due.set()

    def _track(self, receiver: ReceiverSettings, alert: Alert) -> None:
        if receiver.type != "alertmanager":
            return
        if alert.status == "firing":
            self.firing[receiver.name][alert.id] = alert
        else:
            self.firing[receiver.name].pop(alert.id, None)

    async def _resend(self, receiver: ReceiverSettings) -> None:
        """Alertmanager forgets a firing alert whose endsAt passes: re-send firing ones regularly."""
        while True:
            await asyncio.sleep(receiver.resend_s)
            for alert in list(self.firing[receiver.name].values()):
                assert self.session is not None  # the worker tasks run between start() and stop()
                await deliver(self.session, receiver, alert, self.rng)


def now_utc() -> datetime:
    return datetime.now(UTC)
