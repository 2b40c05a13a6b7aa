"""Silences: planned work that must not page, in Alertmanager's shape.

A silence is a set of matchers over an alert's `kind`, `entity`, `severity` and labels (`node`,
`switch`, `card`, `port`, `job`, ...) and a time window. An alert that every matcher of an active
silence matches is still recorded (Parquet, the alerts topic) with `silenced_by`, but no receiver is
paged; when the silence ends and the alert still fires, it pages then.

Matchers are Alertmanager's: `name=value`, `name!=value`, `name=~regex`, `name!~regex`, a regex
matching the whole value (anchored, as in Alertmanager). The JSON of a silence is Alertmanager's API
v2 silence (`id`, `matchers` of `name`/`value`/`isRegex`/`isEqual`, `startsAt`, `endsAt`,
`createdBy`, `comment`, `updatedAt`, `status.state`), so scripts written for `amtool` read it.

Silences live in a compacted topic (key: the id, value: this JSON); expiring one writes it again
with `endsAt` = now, so every worker sees every change and a restart reads them back.
"""

from __future__ import annotations

import re
import threading
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from pipeline.model.matchers import Matcher, MatcherError, alert_fields
from pipeline.model.schemas import Alert

MAX_COMMENT = 1000


class SilenceError(ValueError):
    """A silence that cannot be used; the message says why in one line."""


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(text: str) -> datetime:
    """An ISO 8601 time; without a zone it is UTC."""
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise SilenceError(f"{text!r} is not an ISO 8601 time (e.g. 2026-12-02T06:00:00Z)") from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def parse_duration(text: str) -> timedelta:
    """`90s`, `30m`, `2h`, `1d`, `1h30m` (Alertmanager's durations, without weeks)."""
    parts = re.fullmatch(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", text.strip())
    if not text.strip() or not parts or not any(parts.groups()):
        raise SilenceError(f"duration {text!r}: expected e.g. 2h, 30m, 1h30m, 1d")
    d, h, m, s = (int(g or 0) for g in parts.groups())
    return timedelta(days=d, hours=h, minutes=m, seconds=s)


@dataclass(frozen=True)
class Silence:
    id: str
    matchers: tuple[Matcher, ...]
    starts_at: datetime
    ends_at: datetime
    created_by: str
    comment: str
    updated_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @classmethod
    def new(
        cls,
        matchers: list[Matcher],
        starts_at: datetime,
        ends_at: datetime,
        created_by: str,
        comment: str,
        now: datetime | None = None,
    ) -> Silence:
        silence = cls(
            str(uuid.uuid4()), tuple(matchers), starts_at, ends_at, created_by, comment, now or datetime.now(UTC)
        )
        silence.check(new=True)
        return silence

    def check(self, new: bool = False) -> None:
        """A usable silence; a `new` one must also end after it starts (an expired pending one, read
        back, ends as it starts)."""
        if not self.matchers:
            raise SilenceError("a silence needs at least one matcher (--match NAME=VALUE)")
        for matcher in self.matchers:  # first: a bad regex is a one-line error, not re.error later
            try:
                matcher.check()
            except MatcherError as exc:
                raise SilenceError(str(exc)) from None
        if all(m.matches({}) for m in self.matchers):
            raise SilenceError("these matchers match every alert (each matches an empty value): name what to silence")
        if self.ends_at < self.starts_at or (new and self.ends_at == self.starts_at):
            raise SilenceError(f"a silence must end after it starts ({_iso(self.starts_at)} .. {_iso(self.ends_at)})")
        if not self.comment.strip():
            raise SilenceError("a silence needs a comment: why (--comment TEXT)")
        if len(self.comment) > MAX_COMMENT:
            raise SilenceError(f"the comment is longer than {MAX_COMMENT} characters")
        if not self.created_by.strip():
            raise SilenceError("a silence needs an author (--author NAME)")

    def state(self, now: datetime) -> str:
        """`pending`, `active` or `expired` (Alertmanager's states)."""
        if now < self.starts_at:
            return "pending"
        return "active" if now < self.ends_at else "expired"

    def covers(self, alert: Alert, now: datetime) -> bool:
        if self.state(now) != "active":
            return False
        fields = alert_fields(alert)
        return all(m.matches(fields) for m in self.matchers)

    def expired(self, now: datetime) -> Silence:
        """This silence ended now (a pending one: ends as it would start)."""
        end = max(min(self.ends_at, now), self.starts_at)
        return replace(self, ends_at=end, updated_at=now)

    def to_dict(self, now: datetime | None = None) -> dict[str, Any]:
        return {
            "id": self.id,
            "matchers": [m.to_dict() for m in self.matchers],
            "startsAt": _iso(self.starts_at),
            "endsAt": _iso(self.ends_at),
            "createdBy": self.created_by,
            "comment": self.comment,
            "updatedAt": _iso(self.updated_at),
            "status": {"state": self.state(now or datetime.now(UTC))},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Silence:
        """A silence of this JSON (ours or Alertmanager's API v2 shape); SilenceError says why not."""
        try:
            matchers = tuple(
                Matcher(str(m["name"]), str(m["value"]), _flag(m, "isRegex", False), _flag(m, "isEqual", True))
                for m in data["matchers"]
            )
            silence = cls(
                id=str(data.get("id") or uuid.uuid4()),
                matchers=matchers,
                starts_at=parse_time(str(data["startsAt"])),
                ends_at=parse_time(str(data["endsAt"])),
                created_by=str(data.get("createdBy", "")),
                comment=str(data.get("comment", "")),
                updated_at=parse_time(str(data["updatedAt"])) if data.get("updatedAt") else datetime.now(UTC),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise SilenceError(f"not a silence: missing or bad {exc}") from None
        silence.check()
        return silence

    def line(self, now: datetime) -> str:
        """One line for a terminal."""
        matchers = " ".join(str(m) for m in self.matchers)
        return (
            f"{self.id}  {self.state(now):8} {_iso(self.starts_at)} .. {_iso(self.ends_at)}  {matchers}  "
            f"by {self.created_by}: {self.comment}"
        )


def _flag(matcher: dict[str, Any], key: str, default: bool) -> bool:
    """A JSON boolean of a matcher: a string "false" must not read as true."""
    value = matcher.get(key, default)
    if not isinstance(value, bool):
        raise SilenceError(f"matcher {key} must be true or false, not {value!r}")
    return value


class SilenceBook:
    """The silences a worker knows (every change of the silences topic, in order); thread-safe, as a
    reader thread fills it while agents ask it."""

    def __init__(self) -> None:
        self._silences: dict[str, Silence] = {}
        self._lock = threading.Lock()

    def apply(self, silence: Silence) -> None:
        with self._lock:
            self._silences[silence.id] = silence

    def get(self, silence_id: str) -> Silence | None:
        with self._lock:
            return self._silences.get(silence_id)

    def all(self) -> list[Silence]:
        with self._lock:
            return sorted(self._silences.values(), key=lambda s: (s.starts_at, s.id))

    def silenced_by(self, alert: Alert, now: datetime | None = None) -> tuple[str, ...]:
        """The ids of the active silences that cover this alert (empty: it pages)."""
        at = now or datetime.now(UTC)
        return tuple(s.id for s in self.all() if s.covers(alert, at))
