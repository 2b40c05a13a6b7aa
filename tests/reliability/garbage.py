"""Malformed and odd telemetry messages, drawn by hypothesis, each with what the worker must do with it.

Every message is made from one of the simulator's messages (`good[after]`, sent right after it
under its key) and says whether the worker must dead-letter it and how many rows the lake keeps of
it. Messages the lake keeps rows of are stamped between ticks (never a whole second) and at least
`LATE_MIN_S` before their source message, so their keys never meet a simulated sample's and no
detector judges them (every source reported more recently than that: the scenario's silences
are shorter): the test can then ask for the simulated samples exactly once and the offline alerts.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import msgpack
import numpy as np
from hypothesis import strategies as st

from pipeline.model.schemas import CARD, PORT, STEP
from producers.simulator import Message

LATE_MIN_S, LATE_MAX_S = 120, 2400  # stored late rows: older than any silence of the scenario, within the lateness
SCHEMAS = {"card": CARD, "port": PORT, "step": STEP}
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)  # what msgpack can carry


@dataclass
class Garbage:
    what: str  # which kind of garbage
    after: int  # index of the simulator message it follows
    value: bytes | None = None  # the bytes sent; None: `msg` packed (after its time is made unique)
    msg: dict | None = None
    late_ms: int = 0  # for `msg`: how much older than the simulator message
    dead: bool = True  # must arrive on the dead-letter topic
    kept: dict[str, int] = field(default_factory=dict)  # rows the lake keeps, per dataset


def _columns(msg: dict, name: str, kind: str) -> np.ndarray:
    dtype = next(c.dtype for c in SCHEMAS[kind].columns if c.name == name)
    return np.frombuffer(msg["c"][name], dtype).copy()


def _put(msg: dict, name: str, values: np.ndarray) -> None:
    msg["c"][name] = values.tobytes()


def _without_events(msg: dict) -> dict:
    """A card message's copy without error events (a late event would still be judged)."""
    if msg["k"] == "card":
        msg["c"]["err_card"], msg["c"]["err_code"] = b"", b""
        msg["n"]["events"] = [0] * len(msg["srcs"])
    return msg


def _rows(msg: dict) -> int:
    return sum(msg["n"]["rows"])


def garbage(
    draw: st.DrawFn, good: list[Message], kinds: list[str], known: Callable[[str], bool], now_ms: int, after: int
) -> Garbage:
    """One odd message made from the simulator's message `after`."""
    source = good[after]
    kind = kinds[after]
    msg = msgpack.unpackb(source.value)
    ts = msg["ts"]
    choices = [
        "random bytes",
        "truncated",
        "schema version",
        "wrong kind",
        "mismatched arrays",
        "time ahead",
        "seconds for ms",
        "too late",
        "unknown sources",
        "duplicate",
    ]
    if kind == "step":
        choices.append("impossible step times")
    else:
        choices += [
            "late tick",
            "NaN gauges" if kind == "card" else "late tick",
            "impossible values",
            "wrapped counters",
            "one unknown source",
        ]
    what = draw(st.sampled_from(choices))
    if what == "random bytes":
        return Garbage(what, after, draw(st.binary(max_size=300)))
    if what == "truncated":
        return Garbage(what, after, source.value[: draw(st.integers(0, len(source.value) - 1))])
    if what == "duplicate":  # a producer's retry the broker had stored: the same bytes again
        return Garbage(what, after, source.value, dead=False)
    if what == "wrong kind":
        other = draw(
            st.sampled_from(
                [i for i in range(max(0, after - 40), min(len(good), after + 40)) if kinds[i] != kind] or [0]
            )
        )
        if kinds[other] == kind:
            return Garbage("random bytes", after, b"\xc1")
        return Garbage(what, after, good[other].value)
    if what == "schema version":
        msg["v"] = draw(
            st.one_of(
                st.integers(-(2**63), 2**64 - 1).filter(lambda v: v not in (1, 2)),
                st.floats(),
                st.booleans(),
                st.none(),
                TEXT,
                st.binary(max_size=4),
            )
        )
        return Garbage(what, after, msgpack.packb(msg))
    if what == "mismatched arrays":
        column = draw(st.sampled_from(sorted(msg["c"])))
        item = np.dtype(next(c.dtype for c in SCHEMAS[kind].columns if c.name == column)).itemsize
        if draw(st.booleans()) or not msg["c"][column]:
            msg["c"][column] += b"\x00" * item * draw(st.integers(1, 3))
        else:
            msg["c"][column] = msg["c"][column][:-item]
        return Garbage(what, after, msgpack.packb(msg))
    if what == "time ahead":
        msg["ts"] = draw(st.integers(now_ms + 86_400_000, 2**64 - 1))
        return Garbage(what, after, msgpack.packb(msg))
    if what == "seconds for ms":
        msg["ts"] = draw(st.integers(0, 10**12 - 1))
        return Garbage(what, after, msgpack.packb(msg))
    if what == "too late":
        msg["ts"] = ts - draw(st.integers(3_600_000 + 60_000, ts - 10**12))
        return Garbage(what, after, msgpack.packb(msg))
    if what == "unknown sources":
        name = draw(TEXT)
        msg["srcs"] = [f"{name}#{i}" for i in range(len(msg["srcs"]))]  # no topology name has a '#'
        assert not any(known(s) for s in msg["srcs"])
        return Garbage(what, after, msgpack.packb(msg))
    if what == "impossible step times":
        column = draw(st.sampled_from(["compute_s", "wait_s"]))
        values = _columns(msg, column, kind)
        values[:] = draw(st.sampled_from([math.nan, math.inf, -math.inf, -1.0]))
        _put(msg, column, values)
        return Garbage(what, after, msgpack.packb(msg))

    # the rest are kept, late, in part or whole
    msg = _without_events(msg)
    late_ms = draw(st.integers(LATE_MIN_S * 1000, LATE_MAX_S * 1000))
    rows = _rows(msg)
    dataset = kind
    if what == "late tick":  # a tick again, out of order (a collector's buffer flushed late)
        return Garbage(what, after, msg=msg, late_ms=late_ms, dead=False, kept={dataset: rows})
    if what == "NaN gauges":  # fields not reported: kept as NaN
        column = draw(st.sampled_from(["util", "sm_clock_mhz", "power_w", "temp_c", "mem_used_mib"]))
        values = _columns(msg, column, kind)
        values[draw(st.lists(st.integers(0, rows - 1), min_size=1, max_size=rows))] = np.nan
        _put(msg, column, values)
        return Garbage(what, after, msg=msg, late_ms=late_ms, dead=False, kept={dataset: rows})
    if what == "wrapped counters":  # counters below their last value: a reset
        column = draw(st.sampled_from([c.name for c in SCHEMAS[kind].columns if c.dtype == "<u8"]))
        values = _columns(msg, column, kind)
        values[:] = draw(st.integers(0, 5))
        _put(msg, column, values)
        return Garbage(what, after, msg=msg, late_ms=late_ms, dead=False, kept={dataset: rows})
    if what == "impossible values":  # inf gauges, negative counters, port states that do not exist
        bad_rows = sorted(set(draw(st.lists(st.integers(0, rows - 1), min_size=1, max_size=min(rows, 20)))))
        if kind == "card" and draw(st.booleans()):
            column, bad = (
                draw(st.sampled_from(["util", "power_w", "temp_c"])),
                draw(st.sampled_from([math.inf, -math.inf])),
            )
        elif kind == "port" and draw(st.booleans()):
            column, bad = "oper_up", draw(st.integers(3, 255))
        else:
            column = draw(st.sampled_from([c.name for c in SCHEMAS[kind].columns if c.dtype == "<u8"]))
            bad = draw(st.integers(2**63, 2**64 - 1))
        values = _columns(msg, column, kind)
        values[bad_rows] = bad
        _put(msg, column, values)
        return Garbage(what, after, msg=msg, late_ms=late_ms, kept={dataset: rows - len(bad_rows)})
    # one unknown source among known ones: the others are processed
    which = draw(st.integers(0, len(msg["srcs"]) - 1))
    counts = msg["n"]["rows"]
    if kind == "card" and counts[which] and draw(st.booleans()):  # a card index the node does not have
        first = sum(counts[:which])
        cards = _columns(msg, "card", kind)
        cards[first + draw(st.integers(0, counts[which] - 1))] = draw(st.integers(8, 255))
        _put(msg, "card", cards)
    else:
        msg["srcs"][which] = draw(TEXT.filter(lambda s: bool(s) and not known(s)))
    return Garbage(what, after, msg=msg, late_ms=late_ms, kept={dataset: rows - counts[which]})


def draw_garbage(
    good: list[Message], kinds: list[str], known: Callable[[str], bool], count: int, chunk: int = 1000
) -> Iterator[list[Garbage]]:
    """`count` distinct odd messages, one per hypothesis example, in chunks of about `chunk` as they
    are drawn (each chunk under its own seed: the same messages every run), each stamped."""
    from hypothesis import HealthCheck, Phase, given, seed, settings

    now_ms = int(time.time() * 1000)
    seen: set[bytes] = set()
    used: set[tuple[str, int]] = set()
    total = 0
    drawn: list[Garbage] = []  # one chunk's messages, cleared for each (the closure below fills it)
    for number in itertools.count():
        drawn.clear()

        @st.composite
        def one(draw: st.DrawFn) -> Garbage:  # a closure, so that hypothesis never shows the whole stream
            return garbage(draw, good, kinds, known, now_ms, draw(st.integers(0, len(good) - 1)))

        @seed(number)
        @settings(
            max_examples=chunk,
            database=None,
            deadline=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(one())
        def collect(found: Garbage) -> None:
            drawn.append(found)

        collect()
        out = []
        for g in drawn:  # the same bytes twice in a partition would be a repeat, dropped: keep each once
            if g.value is not None and g.what != "duplicate":
                if g.value in seen:
                    continue
                seen.add(g.value)
            out.append(g)
        out = out[: count - total]
        stamp(out, good, used)
        total += len(out)
        yield out
        if total >= count:
            return


def stamp(garbage_list: list[Garbage], good: list[Message], used: set[tuple[str, int]]) -> None:
    """Give each kept message a time of its own: late, between ticks, and no source at that time twice."""
    for g in garbage_list:
        if g.msg is None:
            continue
        ts = msgpack.unpackb(good[g.after].value)["ts"] - g.late_ms
        while ts % 1000 == 0 or any((s, ts) in used for s in g.msg["srcs"]):
            ts += 1
        used.update((s, ts) for s in g.msg["srcs"])
        g.msg["ts"] = ts
        g.value = msgpack.packb(g.msg)
