"""Per-minute and per-hour rollups of the raw telemetry, written by compaction as datasets of their own.

A week of 10,240 cards is ~30 billion raw samples; a question over a week (which links erred most,
which ranks straggled) does not need each second. When `clusterpulse compact` has compacted an
hour of `card`, `port` or `step`, it writes that hour's rollups: one row per entity and minute
(`*_1m`), then per entity and hour from those (`*_1h`), with the number of samples, the first and
last sample time, min / max / mean / last of each gauge, and the increase of each counter (a counter
that went backwards was reset and counts from zero; the increase from the previous hour's last
sample to this hour's first is counted in this hour). `ts` is the start of the minute (hour).

| rollup (and `_1h`) | one row per | gauges | counters |
|---|---|---|---|
| `card_1m` | node, card, minute | util, clocks, power, temperature, memory | ECC, PCIe replay, link errors |
| `port_1m` | switch, port, minute (+ link, rail) | oper_up; `up_samples`: samples up | every port counter |
| `step_1m` | job, node, rank, minute (with its card) | step, compute_s, wait_s, relative_compute | |

`relative_compute` is a step's compute time over the median of its job's ranks for the same step,
as `sql/top_stragglers.sql` computes it from raw steps. A rollup is rewritten when its hour's raw
files change (late files merged by a later compaction); the canned queries read the rollup for
hours that have one when the window they are asked about is long (docs/lake.md).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.lake.parquet import TIME_TYPE, dataset_schema
from pipeline.lake.store import LakeStore
from pipeline.model.schemas import SCHEMAS

FILE = "rollup.parquet"
PREVIOUS_TAIL_S = 300  # the previous hour's samples read for the first increase of each entity


@dataclass(frozen=True)
class Rollup:
    name: str
    source: str  # the raw dataset
    keys: tuple[str, ...]  # one row per these and minute
    carried: tuple[str, ...]  # constant per key: one value kept
    gauges: tuple[str, ...]
    counters: tuple[str, ...]
    counts: tuple[tuple[str, str], ...] = ()  # (column, condition): samples of the minute it holds for
    period: str = "1m"  # 1h rollups are made from the hour's 1m rollup

    def schema(self) -> pa.Schema:
        """The rollup file's columns, in file order; the path adds date and hour."""
        raw = dataset_schema(self.source)
        fields = [pa.field("ts", TIME_TYPE)]
        fields += [raw.field(k) for k in self.keys]
        fields += [pa.field("samples", pa.int64()), pa.field("first_ts", TIME_TYPE), pa.field("last_ts", TIME_TYPE)]
        fields += [raw.field(c) for c in self.carried]
        for gauge in self.gauges:
            kind = pa.float64() if gauge == "relative_compute" else raw.field(gauge).type
            fields += [pa.field(f"{gauge}_min", kind), pa.field(f"{gauge}_max", kind)]
            fields += [pa.field(f"{gauge}_mean", pa.float64()), pa.field(f"{gauge}_last", kind)]
        fields += [pa.field(f"{counter}_increase", pa.uint64()) for counter in self.counters]
        fields += [pa.field(name, pa.int64()) for name, _ in self.counts]
        return pa.schema(fields)


def _gauges(kind: str) -> tuple[str, ...]:
    return tuple(c.name for c in SCHEMAS[kind].group_columns("rows") if np.dtype(c.dtype).kind == "f")


def _counters(kind: str) -> tuple[str, ...]:
    return tuple(c.name for c in SCHEMAS[kind].group_columns("rows") if np.dtype(c.dtype) == np.dtype("<u8"))


MINUTELY = (
    Rollup("card_1m", "card", ("node", "card"), (), _gauges("card"), _counters("card")),
    Rollup(
        "port_1m",
        "port",
        ("switch", "port"),
        ("link", "rail"),
        ("oper_up",),
        _counters("port"),
        (("up_samples", "oper_up = 1"),),
    ),
    Rollup("step_1m", "step", ("job", "node", "rank"), ("card",), ("step", *_gauges("step"), "relative_compute"), ()),
)
HOURLY = tuple(replace(r, name=r.name.replace("_1m", "_1h"), period="1h") for r in MINUTELY)
ROLLUPS = MINUTELY + HOURLY
BY_SOURCE = {r.source: (r, h) for r, h in zip(MINUTELY, HOURLY)}  # raw dataset -> (its 1m, its 1h)
NAMES = tuple(r.name for r in ROLLUPS)


def _quote(path: str) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def rollup_sql(rollup: Rollup, files: list[str], previous: list[str], hour_start_ms: int) -> str:
    """The SELECT of one hour's rollup from its raw files (and the tail of the previous hour's)."""
    keys = ", ".join(rollup.keys)
    columns = ", ".join(["ts", *rollup.keys, *rollup.carried, *rollup.gauges, *rollup.counters])
    if "relative_compute" in rollup.gauges:
        columns = columns.replace(", relative_compute", "")
    start = f"make_timestamp({hour_start_ms}::bigint * 1000)"
    sources = f"select {columns} from read_parquet([{', '.join(map(_quote, files))}], union_by_name = true)"
    if previous:
        sources += (
            f" union all by name select {columns} from read_parquet([{', '.join(map(_quote, previous))}], "
            f"union_by_name = true) where ts >= {start} - interval {PREVIOUS_TAIL_S} second and ts < {start}"
        )
    if "relative_compute" in rollup.gauges:
        sources = (
            f"select *, compute_s / nullif(median(compute_s) over (partition by job, step), 0) as relative_compute "
            f"from ({sources})"
        )
    window = f"over (partition by {keys} order by ts)"
    deltas = "".join(f", {c}::hugeint - lag({c}) {window}::hugeint as {c}__delta" for c in rollup.counters)
    parts = [
        "time_bucket(interval 1 minute, ts) as ts",
        *rollup.keys,
        "count(*) as samples",
        "min(ts) as first_ts",
        "max(ts) as last_ts",
        *(f"any_value({c}) as {c}" for c in rollup.carried),
    ]
    for g in rollup.gauges:
        parts += [f"min({g}) as {g}_min", f"max({g}) as {g}_max", f"avg({g}) as {g}_mean"]
        parts.append(f"arg_max({g}, ts) as {g}_last")
    for c in rollup.counters:
        parts.append(
            f"sum(case when {c}__delta is null then 0 when {c}__delta >= 0 then {c}__delta else {c} end)::ubigint"
            f" as {c}_increase"
        )
    parts += [f"count(*) filter (where {condition}) as {name}" for name, condition in rollup.counts]
    return (
        f"select {', '.join(parts)} from (select *{deltas} from ({sources})) "
        f"where ts >= {start} group by all order by {keys}, ts"
    )


def hourly_sql(rollup: Rollup, minutely: str) -> str:
    """The SELECT of one hour's 1h rollup from its 1m rollup."""
    keys = ", ".join(rollup.keys)
    parts = [
        "time_bucket(interval 1 hour, ts) as ts",
        *rollup.keys,
        "sum(samples) as samples",
        "min(first_ts) as first_ts",
        "max(last_ts) as last_ts",
        *(f"any_value({c}) as {c}" for c in rollup.carried),
    ]
    for g in rollup.gauges:
        parts += [f"min({g}_min) as {g}_min", f"max({g}_max) as {g}_max"]
        parts.append(f"sum({g}_mean * samples) / sum(samples) filter (where {g}_mean is not null) as {g}_mean")
        parts.append(f"arg_max({g}_last, last_ts) as {g}_last")
    parts += [f"sum({c}_increase)::ubigint as {c}_increase" for c in rollup.counters]
    parts += [f"sum({name})::bigint as {name}" for name, _ in rollup.counts]
    return (
        f"select {', '.join(parts)} from read_parquet({_quote(minutely)}, hive_partitioning = false) "
        f"group by all order by {keys}, ts"
    )


def output(rollup: Rollup, hour: str) -> str:
    """Where a rollup of an hour (`date=.../hour=...`) lives in the lake."""
    return f"{rollup.name}/{hour}/{FILE}"


def write_hourly(store: LakeStore, rollup: Rollup, minutely: Rollup, hour: str) -> str:
    """The 1h rollup of an hour from its 1m rollup (`minutely`, written before)."""
    sql = hourly_sql(rollup, store.url(store.path(output(minutely, hour))))
    return _write(store, rollup, sql, output(rollup, hour))


def _write(store: LakeStore, rollup: Rollup, sql: str, out: str) -> str:
    con = store.duckdb()
    try:
        con.execute("set timezone = 'UTC'")
        table = con.sql(sql).to_arrow_table()
    finally:
        con.close()
    table = table.cast(rollup.schema())
    staged = store.staging_file(out)
    try:
        pq.write_table(table, staged, compression="zstd", row_group_size=131072)
    except OSError:
        staged.unlink(missing_ok=True)
        raise
    store.publish(staged, out)
    return out


def write_rollup(store: LakeStore, rollup: Rollup, hour: str, hour_start: datetime, previous: str | None) -> str | None:
    """Roll up one hour (`date=.../hour=...`) of `rollup.source` into `<rollup>/<hour>/rollup.parquet`
    (written whole or not at all); None when the hour has no files. `previous`: the hour before."""
    files = [store.url(f.path) for f in store.files(f"{rollup.source}/{hour}", ".parquet")]
    if not files:
        return None
    before = [store.url(f.path) for f in store.files(f"{rollup.source}/{previous}", ".parquet")] if previous else []
    hour_start_ms = int(hour_start.timestamp() * 1000)
    return _write(store, rollup, rollup_sql(rollup, files, before, hour_start_ms), output(rollup, hour))


def stale(store: LakeStore, rollups: tuple[Rollup, ...], hour: str) -> bool:
    """The hour has raw files newer than one of its rollups (or one was not written yet)."""
    newest = max((f.mtime_ns for f in store.files(f"{rollups[0].source}/{hour}", ".parquet")), default=None)
    if newest is None:
        return False
    for rollup in rollups:
        written = store.files(f"{rollup.name}/{hour}", FILE)
        if not written or written[0].mtime_ns < newest:
            return True
    return False
