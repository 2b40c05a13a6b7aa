"""The newest value of a card metric for every card, from the lake, for the live page's coloring.

Reads only the newest card file of each stream partition (a file is one flush: the partition's nodes
over about `sink.flush_seconds`), so a scrape costs a few files whatever the lake's size.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

METRICS = {"util": "utilization, %", "temp_c": "temperature, °C", "power_w": "power, W",
           "sm_clock_mhz": "SM clock, MHz", "mem_used_mib": "memory used, MiB"}


def newest_files(lake: Path) -> list[str]:
    """The newest card file of each writer partition (file names: `<owner>+<first offset>.parquet`)."""
    newest: dict[str, tuple[int, str]] = {}
    for path in (lake / "card").glob("date=*/hour=*/*.parquet"):
        owner, _, first = path.name[:-len(".parquet")].rpartition("+")
        if owner and first.isdigit() and int(first) >= newest.get(owner, (-1, ""))[0]:
            newest[owner] = (int(first), str(path))
    return sorted(path for _, path in newest.values())


def latest_values(lake: str | Path, metric: str) -> dict[str, float]:
    """card name -> its newest value of `metric` (NaN readings skipped); {} before any file."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r} (one of {', '.join(METRICS)})")
    files = newest_files(Path(lake))
    if not files:
        return {}
    rows = duckdb.execute(
        f"select node || '-card' || card, arg_max({metric}, ts) from read_parquet(?) "
        f"where not isnan({metric}) group by all", [files]).fetchall()
    return {card: float(value) for card, value in rows}
