"""Prometheus text exposition format: `# HELP` / `# TYPE` optional, labels in any order with
escapes, float formats such as `16.365000`, `NaN`, `+Inf`, and optional millisecond timestamps."""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(,|\})')
_UNESCAPE = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


class Sample(NamedTuple):
    """One sample line (a tuple: a scrape makes a hundred thousand a second)."""

    name: str
    labels: dict[str, str]
    value: float
    ts_ms: int | None = None


@dataclass
class Exposition:
    samples: list[Sample] = field(default_factory=list)
    types: dict[str, str] = field(default_factory=dict)
    bad_lines: list[tuple[int, str]] = field(default_factory=list)  # (line number, reason)


def _unescape(value: str) -> str:
    return re.sub(r'\\\\|\\"|\\n', lambda m: _UNESCAPE[m.group(0)], value)


def _value(text: str) -> float:
    lowered = text.lower()
    if lowered in ("nan",):
        return math.nan
    if lowered in ("+inf", "inf"):
        return math.inf
    if lowered == "-inf":
        return -math.inf
    return float(text)


def parse_line(line: str) -> Sample:
    """One sample line; raises ValueError with the reason."""
    m = _NAME.match(line)
    if not m:
        raise ValueError("no metric name")
    name, pos = m.group(0), m.end()
    labels: dict[str, str] = {}
    if pos < len(line) and line[pos] == "{":
        pos += 1
        if line[pos : pos + 1] == "}":
            pos += 1
        else:
            while True:
                lm = _LABEL.match(line, pos)
                if not lm:
                    raise ValueError(f"bad label set at column {pos}")
                value = lm.group(2)
                labels[lm.group(1)] = _unescape(value) if "\\" in value else value
                pos = lm.end()
                if lm.group(3) == "}":
                    break
    rest = line[pos:].split()
    if not rest or len(rest) > 2:
        raise ValueError("expected a value and an optional timestamp")
    try:
        value = _value(rest[0])
        ts = int(rest[1]) if len(rest) == 2 else None
    except ValueError:
        raise ValueError(f"bad value or timestamp {' '.join(rest)!r}") from None
    return Sample(name, labels, value, ts)


Relabel = Callable[[str, dict[str, str]], "tuple[str, dict[str, str]] | None"]


class _Miss(enum.Enum):
    MISS = enum.auto()


_MISS = _Miss.MISS  # a series not in the cache (None there means dropped)


class SeriesCache:
    """Series text (`name{labels}`) -> (name, labels) of a target's earlier scrapes. A target's pages
    repeat their series, so with a cache a scrape after the first parses only values (about ten
    times faster than the label grammar). The labels dicts are shared: read them, never change them."""

    def __init__(self, limit: int = 200_000, relabel: Relabel | None = None) -> None:
        """`relabel(name, labels)`: the target's `metric_relabel_configs`, applied to each series
        once: the new (name, labels), or None to drop the series."""
        self.known: dict[str, tuple[str, dict[str, str]] | None] = {}  # None: the series is dropped
        self.routes: dict[str, tuple | None] = {}  # a converter's placement of each series (its own)
        self.limit = limit
        self.relabel = relabel

    def admit(self, sample: Sample) -> Sample | None:
        """The sample as the relabel rules make it, or None if they drop it."""
        if self.relabel is None:
            return sample
        out = self.relabel(sample.name, sample.labels)
        return None if out is None else Sample(out[0], out[1], sample.value, sample.ts_ms)

    def remember(self, series: str, sample: Sample | None) -> None:
        if len(self.known) >= self.limit:  # a target whose series never repeat: start over
            self.known.clear()
        self.known[series] = None if sample is None else (sample.name, sample.labels)

    def route(self, series: str, route: tuple | None) -> None:
        if len(self.routes) >= self.limit:
            self.routes.clear()
        self.routes[series] = route


def _split_series(line: str) -> tuple[str, str]:
    """(`name{labels}`, the value and timestamp after it); the last `}` closes the label set."""
    close = line.rfind("}")
    if close >= 0:
        return line[: close + 1], line[close + 1 :]
    space = line.find(" ")
    return (line, "") if space < 0 else (line[:space], line[space:])


def parse(text: str, cache: SeriesCache | None = None) -> Exposition:
    """Every sample of a scrape; unparseable lines are counted with their reason, not fatal. With a
    `cache` (one per target), series seen before are not parsed again."""
    out = Exposition()
    known = cache.known if cache is not None else None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        if line[0] == "#":
            parts = line.split(None, 3)
            if len(parts) >= 4 and parts[1] == "TYPE":
                out.types[parts[2]] = parts[3].strip()
            continue
        if known is not None:
            series, rest = _split_series(line)
            hit = known.get(series, _MISS)
            if hit is None:  # dropped by the relabel rules
                continue
            if hit is not _MISS:
                fields = rest.split()
                try:
                    if len(fields) == 1:
                        out.samples.append(Sample(hit[0], hit[1], _value(fields[0])))
                        continue
                    if len(fields) == 2:
                        out.samples.append(Sample(hit[0], hit[1], _value(fields[0]), int(fields[1])))
                        continue
                except ValueError:
                    pass  # the full grammar says why
        try:
            sample = parse_line(line)
        except ValueError as exc:
            out.bad_lines.append((number, str(exc)))
            continue
        if cache is not None:
            admitted = cache.admit(sample)
            cache.remember(_split_series(line)[0], admitted)
            if admitted is None:
                continue
            sample = admitted
        out.samples.append(sample)
    return out
