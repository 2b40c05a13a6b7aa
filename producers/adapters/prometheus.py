"""Prometheus text exposition format: `# HELP` / `# TYPE` optional, labels in any order with
escapes, float formats such as `16.365000`, `NaN`, `+Inf`, and optional millisecond timestamps."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(,|\})')
_UNESCAPE = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


@dataclass(frozen=True)
class Sample:
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
        if line[pos:pos + 1] == "}":
            pos += 1
        else:
            while True:
                lm = _LABEL.match(line, pos)
                if not lm:
                    raise ValueError(f"bad label set at column {pos}")
                labels[lm.group(1)] = _unescape(lm.group(2))
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


def parse(text: str) -> Exposition:
    """Every sample of a scrape; unparseable lines are counted with their reason, not fatal."""
    out = Exposition()
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 4 and parts[1] == "TYPE":
                out.types[parts[2]] = parts[3].strip()
            continue
        try:
            out.samples.append(parse_line(line))
        except ValueError as exc:
            out.bad_lines.append((number, str(exc)))
    return out
