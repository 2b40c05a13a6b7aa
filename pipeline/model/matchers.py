"""Alertmanager's label matchers (`name=value`, `name!=value`, `name=~regex`, `name!~regex`, a regex
matching the whole value) over what an alert shows: its labels, `kind`, `entity` and `severity`.
Silences and routes select alerts with them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pipeline.model.schemas import Alert

_MATCHER = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(.*?)\s*$")


class MatcherError(ValueError):
    """A matcher that cannot be used; the message says why in one line."""


@dataclass(frozen=True)
class Matcher:
    name: str
    value: str
    is_regex: bool = False
    is_equal: bool = True

    @classmethod
    def parse(cls, text: str) -> Matcher:
        """`name=value`, `name!=value`, `name=~regex` or `name!~regex`."""
        found = _MATCHER.match(text)
        if not found:
            raise MatcherError(f"matcher {text!r}: expected NAME=VALUE, NAME!=VALUE, NAME=~REGEX or NAME!~REGEX")
        name, op, value = found.groups()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        matcher = cls(name, value, is_regex="~" in op, is_equal=op in ("=", "=~"))
        matcher.check()
        return matcher

    def check(self) -> None:
        if not _MATCHER.match(f"{self.name}=x"):
            raise MatcherError(f"matcher name {self.name!r} is not a label name")
        if self.is_regex:
            try:
                re.compile(self.value)
            except re.error as exc:
                raise MatcherError(f"matcher {self.name}=~{self.value!r}: not a regular expression ({exc})") from None

    def matches(self, fields: dict[str, str]) -> bool:
        value = fields.get(self.name, "")  # a label the alert lacks is the empty string, as in Alertmanager
        hit = re.fullmatch(self.value, value) is not None if self.is_regex else value == self.value
        return hit == self.is_equal

    def __str__(self) -> str:
        op = {(True, False): "=", (False, False): "!=", (True, True): "=~", (False, True): "!~"}
        return f"{self.name}{op[(self.is_equal, self.is_regex)]}{self.value}"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "isRegex": self.is_regex, "isEqual": self.is_equal}


def alert_fields(alert: Alert) -> dict[str, str]:
    """What matchers see of an alert: its labels, then kind, entity and severity."""
    return {
        **{k: str(v) for k, v in alert.labels.items()},
        "kind": alert.kind,
        "entity": alert.entity,
        "severity": alert.severity,
    }
