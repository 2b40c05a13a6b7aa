"""What a worker accepts of a well-formed telemetry batch: times and values a sample can have.

`decode_batch` checks the shape of a message; this checks its content, per message and per row,
with whole-column numpy (a few array passes per message, not per sample):

- the message time: milliseconds after 2001-09-09 (smaller values are seconds sent as ms), not
  more than `future_grace_s` ahead of the worker's clock (Mimir and Loki reject samples ahead of
  now by 10 minutes too), and not older than the newest of its partition by more than
  `allowed_lateness_s` (later data goes to the dead-letter topic, as Flink's late side output);
- each row: gauges finite or NaN (NaN is "not reported", as exporters leave a field out), never
  infinite; counters below 2^63 (a negative count written as unsigned is not a count); port state
  0, 1 or 2; step times finite and not negative.

A message with some bad rows has its good rows processed and is dead-lettered whole with the bad
rows named, like a collector's message naming an unknown source.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

from pipeline.model.schemas import SCHEMAS, Batch, InvalidRecord
from pipeline.settings import IntakeSettings

EARLIEST_MS = 1_000_000_000_000  # 2001-09-09T01:46:40Z: a smaller time is seconds, not ms
MAX_COUNTER = 2**63  # a counter at or above this is a negative number read as unsigned
PORT_STATES = 2  # oper_up: 0 down, 1 up, 2 administratively down
MAX_NAMED = 3  # bad rows named in a reason
IMPOSSIBLE = "impossible_values"  # the reason class of rows no sample can have


def check_time(batch: Batch, now_ms: int, newest_ms: int, rules: IntakeSettings) -> None:
    """Raise InvalidRecord if the message's time cannot be right or is later than the partition
    can still take (`newest_ms`: the partition's newest message time, -1 for none yet)."""
    ts = batch.ts_ms
    if ts < EARLIEST_MS:
        raise InvalidRecord(
            f"timestamp {ts} is before 2001-09-09 in milliseconds: seconds sent as milliseconds?", "time_unit"
        )
    ahead_s = (ts - now_ms) / 1000
    if ahead_s > rules.future_grace_s:
        raise InvalidRecord(
            f"timestamp {_iso(ts)} is {ahead_s:.0f} s ahead of this worker's clock "
            f"(intake.future_grace_s = {rules.future_grace_s:g})",
            "time_ahead",
        )
    late_s = (newest_ms - ts) / 1000 if newest_ms >= 0 else 0.0
    if late_s > rules.allowed_lateness_s:
        raise InvalidRecord(
            f"timestamp {_iso(ts)} is {late_s:.0f} s older than its partition's newest "
            f"sample (intake.allowed_lateness_s = {rules.allowed_lateness_s:g})",
            "too_late",
        )


_GAUGES = {kind: [c.name for c in schema.group_columns("rows") if c.dtype == "<f4"] for kind, schema in SCHEMAS.items()}
_COUNTERS = {
    kind: [c.name for c in schema.group_columns("rows") if c.dtype == "<u8"] for kind, schema in SCHEMAS.items()
}


def _all_good(batch: Batch) -> bool:
    """The common case in a few numpy calls for the whole message: no value that cannot be."""
    cols = batch.columns
    gauges = [cols[name] for name in _GAUGES[batch.kind]]
    if gauges:
        values = np.concatenate(gauges) if len(gauges) > 1 else gauges[0]
        if batch.kind == "step":
            if not (np.isfinite(values).all() and (values >= 0).all()):
                return False
        elif np.isinf(values).any():
            return False
    counters = [cols[name] for name in _COUNTERS[batch.kind]]
    if counters and len(counters[0]) and int(np.concatenate(counters).max()) >= MAX_COUNTER:
        return False
    return "oper_up" not in cols or not len(cols["oper_up"]) or int(cols["oper_up"].max()) <= PORT_STATES


def bad_rows(batch: Batch) -> tuple[np.ndarray, list[str]]:
    """A mask of the rows (group `rows`) no sample can have, and up to MAX_NAMED of them named."""
    n = batch.rows("rows")
    if _all_good(batch):
        return np.zeros(n, bool), []
    bad = np.zeros(n, bool)
    why: dict[str, np.ndarray] = {}
    for col in batch.schema.group_columns("rows"):
        values = batch.columns[col.name]
        if col.dtype == "<f4":
            wrong = ~np.isfinite(values) if batch.kind == "step" else np.isinf(values)
            if batch.kind == "step":
                wrong |= values < 0
        elif col.dtype == "<u8":
            wrong = values >= MAX_COUNTER
        elif col.name == "oper_up":
            wrong = values > PORT_STATES
        else:
            continue
        if wrong.any():
            bad |= wrong
            why[col.name] = wrong
    if not why:
        return bad, []
    sources = _row_sources(batch)
    named = []
    for row in np.flatnonzero(bad)[:MAX_NAMED].tolist():
        cols = ", ".join(f"{name} = {_value(batch.columns[name][row])}" for name, w in why.items() if w[row])
        named.append(f"{sources[row]} {_row_name(batch, row)}: {cols}")
    return bad, named


def keep_rows(batch: Batch, keep: np.ndarray) -> Batch | None:
    """The batch with only the rows `keep` marks (group `rows`; events stay); sources left with no
    row and no event are dropped. None when nothing is left."""
    columns = {
        c.name: (batch.columns[c.name][keep] if c.group == "rows" else batch.columns[c.name])
        for c in batch.schema.columns
    }
    names = None if batch.port_names is None else tuple(np.asarray(batch.port_names, object)[keep].tolist())
    if batch.parts is None:
        if not keep.any() and not any(len(batch.columns[c.name]) for c in batch.schema.columns if c.group != "rows"):
            return None
        return Batch(batch.kind, batch.source, batch.ts_ms, columns, batch.job, port_names=names)
    counts = np.array([part["rows"] for _, part in batch.parts], np.int64)
    owner = np.repeat(np.arange(len(batch.parts)), counts)
    kept = np.bincount(owner[keep], minlength=len(batch.parts))
    parts = []
    gone = set(batch.unreachable)  # unreachable sources have no rows and stay what they are
    for (source, part), rows in zip(batch.parts, kept.tolist()):
        if rows or any(v for g, v in part.items() if g != "rows") or source in gone:
            parts.append((source, {**part, "rows": rows}))
    if not parts:
        return None
    return Batch(batch.kind, batch.source, batch.ts_ms, columns, batch.job, parts, batch.unreachable, names)


def admit(batch: Batch, now_ms: int, newest_ms: int, rules: IntakeSettings) -> tuple[Batch, str | None]:
    """The rows of a decoded batch to process, and why the message is dead-lettered (None: it is
    not). Raises InvalidRecord when nothing of it can be taken."""
    check_time(batch, now_ms, newest_ms, rules)
    bad, named = bad_rows(batch)
    if not named:
        return batch, None
    count = int(bad.sum())
    what = f"{count} row{'s' if count > 1 else ''} with values no sample can have ({'; '.join(named)}" + (
        f"; and {count - len(named)} more)" if count > len(named) else ")"
    )
    kept = keep_rows(batch, ~bad)
    if kept is None:
        raise InvalidRecord(what, IMPOSSIBLE)
    return kept, f"{what}; the other {len(bad) - count} rows were processed"


def _row_sources(batch: Batch) -> list[str]:
    if batch.parts is None:
        return [batch.source] * batch.rows("rows")
    return [source for source, part in batch.parts for _ in range(part["rows"])]


def _row_name(batch: Batch, row: int) -> str:
    if batch.kind == "card":
        return f"card {int(batch.columns['card'][row])}"
    if batch.kind == "port":
        return f"port {int(batch.columns['port'][row])}"
    return f"rank {int(batch.columns['rank'][row])} step {int(batch.columns['step'][row])}"


def _value(value: np.generic) -> str:
    return repr(float(value)) if isinstance(value, np.floating) else str(int(value))


def _iso(ts_ms: int) -> str:
    try:
        return datetime.fromtimestamp(ts_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return f"{ts_ms} ms"
