"""The newest values the live page colors by, from the lake: a card metric or step compute time for
every card, each job's recent steps, each switch's error rate, the event time of the newest sample.

Reads only the newest files of each stream partition (a file is one flush: the partition's sources
over about `sink.flush_seconds`), so a scrape costs a few files whatever the lake's size.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.lake.parquet import partition_files
from pipeline.lake.store import LakeStore

METRICS = {
    "util": "utilization, %",
    "temp_c": "temperature, °C",
    "power_w": "power, W",
    "sm_clock_mhz": "SM clock, MHz",
    "mem_used_mib": "memory used, MiB",
    "compute_s": "step compute time, s",
}  # the last from the step dataset
UNITS = {name: label.rpartition(", ")[2] for name, label in METRICS.items()}  # e.g. temp_c -> °C


def newest_files(lake: str | Path | LakeStore, dataset: str = "card", per_writer: int = 1) -> list[str]:
    """The newest `per_writer` files of each writer partition of a lake's dataset (as DuckDB reads
    them through `LakeStore.duckdb`)."""
    store = lake if isinstance(lake, LakeStore) else LakeStore(lake)
    listing = partition_files(store.fs, store.path(dataset))
    return sorted(store.url(path) for found in listing.values() for _, path in sorted(found)[-per_writer:])


def _read(lake: str | Path, sql: str, files: list[str], *params: object) -> list[tuple]:
    """The rows of `sql` over `files` (its first parameter) of the lake."""
    con = LakeStore(lake).duckdb()
    try:
        return con.execute(sql, [files, *params]).fetchall()
    finally:
        con.close()


def newest_event_ms(lake: str | Path) -> int | None:
    """Epoch ms of the newest sample (card, port or step) in the newest files of the lake; None
    before any file."""
    store = LakeStore(lake)
    files = [f for dataset in ("card", "port", "step") for f in newest_files(store, dataset)]
    if not files:
        return None
    query = "select max(epoch_ms(ts)) from read_parquet(?, union_by_name = true)"
    ((newest,),) = _read(lake, query, files)  # an aggregate without group by: always one row
    return None if newest is None else int(newest)


def latest_values(lake: str | Path, metric: str, cards_per_node: int = 8) -> dict[str, float]:
    """card name -> its newest value of `metric` (NaN readings skipped); {} before any file. Step
    compute time is its rank's: rank r runs on card r % cards_per_node of its node."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r} (one of {', '.join(METRICS)})")
    step = metric == "compute_s"
    files = newest_files(lake, "step" if step else "card")
    if not files:
        return {}
    card, newest = (f"rank % {int(cards_per_node)}", "step") if step else ("card", "ts")  # two steps may share a tick
    rows = _read(
        lake,
        f"select node || '-card' || ({card}), arg_max({metric}, {newest}) from read_parquet(?) "
        f"where not isnan({metric}) group by all",
        files,
    )
    return {card: float(value) for card, value in rows}


def step_history(
    lake: str | Path, ranks: dict[str, set[int]], last_steps: int = 60, recent_files: int = 12
) -> dict[str, dict]:
    """Per job, its last `last_steps` steps: the median compute time over its ranks and the compute
    time of each rank in `ranks[job]` (the straggling ones), from the newest `recent_files` step
    files of each writer partition (a file is one flush, ~10 s)."""
    files = newest_files(lake, "step", recent_files)
    if not files:
        return {}
    rows = _read(
        lake,
        "with s as (select job, step, rank, compute_s from read_parquet(?)), "
        "last as (select job, max(step) - ? as since from s group by job) "
        "select s.job, s.step, median(compute_s), list(rank), list(compute_s) from s join last using (job) "
        "where s.step > last.since group by all order by 1, 2",
        files,
        last_steps,
    )
    out: dict[str, dict] = {}
    for job, step, median, rank_list, compute in rows:
        entry = out.setdefault(job, {"steps": [], "median": [], "ranks": {str(r): [] for r in ranks.get(job, ())}})
        entry["steps"].append(int(step))
        entry["median"].append(round(float(median), 4))
        by_rank = dict(zip(rank_list, compute))
        for r in ranks.get(job, ()):
            value = by_rank.get(r)
            entry["ranks"][str(r)].append(None if value is None else round(float(value), 4))
    return out


def switch_error_rates(lake: str | Path) -> dict[str, dict]:
    """switch -> CRC errors per second over its newest samples (summed over its ports), and its
    worst link with that link's rate; from the newest port file of each writer partition. A counter
    that went backwards in the file (a reset) counts as no errors."""
    files = newest_files(lake, "port")
    if not files:
        return {}
    rows = _read(
        lake,
        "with per_port as (select switch, any_value(link) as link, "
        "greatest(arg_max(crc_errors::double, ts) - arg_min(crc_errors::double, ts), 0) "
        "/ nullif(epoch(max(ts)) - epoch(min(ts)), 0) as rate from read_parquet(?) group by switch, port) "
        "select switch, sum(rate), arg_max(link, rate), max(rate) from per_port where rate is not null "
        "group by switch",
        files,
    )
    return {
        switch: {"crc_per_s": round(total, 3), "worst_link": link, "worst_per_s": round(worst, 3)}
        for switch, total, link, worst in rows
    }
