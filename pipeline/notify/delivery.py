"""Delivery as stages, per receiver: route, build, sign, send, retry what is recoverable, record.

- 2xx: delivered. 4xx (but 408 and 429): fails at once, the response in the error. 5xx, 408,
  429, timeouts and connection errors: retried with exponential backoff and full jitter until
  `max_attempts` or `deadline_s`; then the notification goes to the dead-letter callback.
- Each receiver has its own queue and worker: a slow or dead receiver delays only itself, and one
  receiver gets an alert's state changes in order (firing before resolved).
- Inhibition: a grouped consequence (an alert with a `root_cause`) is not sent on its own (per
  receiver `notify_grouped: true` opts in); it rides along in its root alert's notification as
  `evidence.grouped` (count, kinds and the first entities). A root alert waits `group_wait_s` for its
  consequences before it is sent, as Alertmanager's group_wait does.
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
from pipeline.notify.payloads import alertmanager_alert, alertmanager_webhook_body, clusterpulse_body, idempotency_key
from pipeline.notify.robots import ROBOTS, RateLimit, robot_request, robot_verdict
from pipeline.notify.routing import inhibited, matches, routed
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


def request_for(receiver: ReceiverSettings, alert: Alert) -> tuple[str, bytes, dict[str, str]]:
    """(url, body, headers) of one notification; the signature is added per attempt."""

    headers = {
        "Content-Type": "application/json",
        IDEMPOTENCY_HEADER: idempotency_key(alert),
        "User-Agent": "clusterpulse",
    }
    if receiver.type == "alertmanager":
        keep = 4 * receiver.resend_s
        body = json.dumps([alertmanager_alert(alert, keep_firing_s=keep)]).encode()
        return receiver.url.rstrip("/") + "/api/v2/alerts", body, headers
    if receiver.format == "alertmanager":
        return receiver.url, alertmanager_webhook_body(alert, receiver.name), headers
    return receiver.url, clusterpulse_body(alert), headers


def backoff_s(receiver: ReceiverSettings, attempt: int, rng: random.Random) -> float:
    """Full jitter: uniform in [0, min(max, base * 2^(attempt-1))]."""
    return rng.uniform(0, min(receiver.max_backoff_s, receiver.backoff_s * 2 ** (attempt - 1)))


def _robot_attempt(receiver: ReceiverSettings, alert: Alert, secret: bytes | None) -> tuple[str, bytes]:
    return robot_request(receiver.type, receiver.url, alert, secret, time.time(), receiver.page_url)


async def deliver(
    session: aiohttp.ClientSession,
    receiver: ReceiverSettings,
    alert: Alert,
    rng: random.Random | None = None,
    sleep: Callable[[float], Awaitable] = asyncio.sleep,
    on_retry: Callable[[], None] | None = None,
    pace: Callable[[], Awaitable[None]] | None = None,
) -> Outcome:
    """Send one notification with retries; never raises."""
    rng = rng or random.Random()
    url, body, headers = request_for(receiver, alert)
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
                url, body = _robot_attempt(receiver, alert, secret)
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
        log.warning(
            "receiver %s: %s %s %s: %s; retry %d in %.1f s",
            receiver.name,
            alert.kind,
            alert.entity,
            alert.status,
            error,
            attempt,
            delay,
        )
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
        self.groups: dict[str, _Group] = {}
        self._clock = clock
        self.rng = rng or random.Random()
        self.queues: dict[str, asyncio.Queue] = {}
        self.tasks: list[asyncio.Task] = []
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
        for receiver in self.receivers:
            queue: asyncio.Queue = asyncio.Queue()
            self.queues[receiver.name] = queue
            self.tasks.append(asyncio.create_task(self._work(receiver, queue), name=f"notify-{receiver.name}"))
            if receiver.type == "alertmanager":
                self.tasks.append(asyncio.create_task(self._resend(receiver), name=f"resend-{receiver.name}"))

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.tasks.clear()
        if self.session is not None:
            await self.session.close()
            self.session = None

    def submit(self, alert: Alert) -> asyncio.Future:
        """Queue an alert for every matching receiver; the future completes when all are done."""
        loop = asyncio.get_running_loop()
        self._group(alert)
        targets = self._route(alert)  # (receiver, its route's group_wait or None)
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

        for receiver, wait in targets:
            self.queues[receiver.name].put_nowait((alert, one_finished, loop.time(), wait))
        return done

    def _group(self, alert: Alert) -> None:
        """A firing consequence joins its root's group (sent along with the root's page)."""
        if alert.root_cause and alert.status == "firing":
            self.groups.setdefault(alert.root_cause, _Group()).members[alert.id] = alert

    def _route(self, alert: Alert) -> list[tuple[ReceiverSettings, float | None]]:
        """The receivers whose routes match the alert, unless a silence covers it or their inhibit
        rules hold it back."""
        if self.route is not None:
            chosen: dict[str, float | None] = {}
            for name, wait in routed(self.route, alert):  # a receiver reached twice gets it once
                chosen.setdefault(name, wait)
            candidates = [(self.by_name[name], wait) for name, wait in chosen.items()]
        else:
            candidates = [(r, None) for r in self.receivers if matches(r, alert)]
        targets = []
        for r, wait in candidates:
            if alert.silenced_by:
                self.stats[r.name].silenced += 1
                continue
            if inhibited(r, alert):
                self.stats[r.name].inhibited += 1
                continue
            targets.append((r, wait))
        return targets

    async def _hold(self, receiver: ReceiverSettings, alert: Alert, queued_at: float, group_wait: float | None) -> None:
        """A firing root waits its route's `group_wait` (or the receiver's `group_wait_s`) so that its
        consequences arrive and ride along."""
        if alert.kind in HELD_ROOT_KINDS and alert.status == "firing" and not alert.root_cause:
            hold_s = receiver.group_wait_s if group_wait is None else group_wait
            wait = queued_at + hold_s - asyncio.get_running_loop().time()
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

    async def _work(self, receiver: ReceiverSettings, queue: asyncio.Queue) -> None:
        stats = self.stats[receiver.name]
        while True:
            alert, finished, queued_at, group_wait = await queue.get()
            try:
                await self._hold(receiver, alert, queued_at, group_wait)
                alert = self.with_group(alert)
                assert self.session is not None  # the worker tasks run between start() and stop()
                outcome = await deliver(
                    self.session,
                    receiver,
                    alert,
                    self.rng,
                    on_retry=lambda: setattr(stats, "retries", stats.retries + 1),
                    pace=self.rates[receiver.name].wait if receiver.name in self.rates else None,
                )
                if outcome.delivered:
                    self.delivered += 1
                    stats.delivered += 1
                    self._track(receiver, alert)
                    log.info(
                        "receiver %s: delivered %s %s %s (%d attempts)",
                        receiver.name,
                        alert.kind,
                        alert.entity,
                        alert.status,
                        outcome.attempts,
                    )
                else:
                    self.dead_lettered += 1
                    stats.failed += 1
                    log.error(
                        "receiver %s: %s %s %s not delivered: %s",
                        receiver.name,
                        alert.kind,
                        alert.entity,
                        alert.status,
                        outcome.error,
                    )
                    await self.dead_letter(receiver, alert, outcome)
                    stats.dead_lettered += 1
                if self.on_outcome is not None:
                    await self.on_outcome(receiver, alert, outcome)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug must not kill the receiver's worker
                log.exception("receiver %s: delivery failed", receiver.name)
            finally:
                finished()

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
