"""Step times from the logs of training jobs nobody can change: Megatron-LM and DeepSpeed.

Megatron-LM (`training_log` in megatron/training/training.py) prints, on its last rank, every
`--log-interval` iterations::

     [2024-05-01 12:00:00] iteration      100/  500000 | consumed samples:        51200 |
     elapsed time per iteration (ms): 1234.5 | ...          (one line)

(releases before 2023 without the time in brackets; newer ones `(ms): 1234.5/1230.1`, the second
the running mean). The elapsed time is the mean over the interval; it counts as compute (the log
says nothing of the wait in collectives).

DeepSpeed with `wall_clock_breakdown: true` prints each step's timers, on rank 0 or on every rank::

    [2024-03-31 11:14:23,228] [INFO] [logging.py:69:log_dist] [Rank 0] rank=0 time (ms) |
    forward: 1425.20 | backward: 211.12 | backward_inner: 209.05 | backward_allreduce: 1.99 | step: 649.10
                                                                                       (one line)

compute = forward + backward_inner + step (the microstep names of older releases too), wait =
backward_allreduce; its `[Rank N] step=K, skipped=...` lines (every `steps_per_print`) number
the steps, which are counted per rank in between.

A line's rank: a launcher's prefix (`[default3]:` from torchrun --tee, `[rank3]:` from PyTorch),
DeepSpeed's `[Rank N]`, else the reader's `rank` (one log file per rank). A line's time: its own
(read as this machine's local time), else the time it was read (following a log), else one step
after the rank's last (a file read whole, from 2026-01-01).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TypeVar

from producers.adapters.steps import START_MS, StepRecord

T = TypeVar("T")

PREFIX = re.compile(r"^\[(?:default|rank)(\d+)\]:\s?")
STAMP = re.compile(r"^\s*\[(\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d)(?:[.,](\d+))?\]")
MEGATRON = re.compile(
    r"\biteration\s+(\d+)\s*/\s*(?:\d+|infinity)\s*\|.*?elapsed time per iteration \(ms\):\s*([0-9.]+)", re.I
)
DEEPSPEED_RANK = re.compile(r"\[Rank (\d+)\]")
DEEPSPEED_TIMES = re.compile(r"time \(ms\) \|(.*)$")
DEEPSPEED_STEP = re.compile(r"\[Rank (\d+)\] step=(\d+),")
COMPUTE_TIMERS = {"forward", "backward_inner", "step"}
WAIT_TIMERS = {"backward_allreduce"}


def _timers(text: str) -> dict[str, float]:
    """`forward: 1425.20 | backward: 211.12 | ...` (ms) as {name: seconds}; `_microstep` dropped."""
    out = {}
    for part in text.split("|"):
        name, _, value = part.partition(":")
        try:
            out[name.strip().removesuffix("_microstep")] = float(value) / 1000
        except ValueError:
            continue
    return out


@dataclass
class TrainingLogParser:
    """Turns a job's log lines into step records; keeps per-rank counts between lines."""

    fmt: str  # "megatron" or "deepspeed"
    job: str
    rank: int = 0  # the rank of lines that name none
    last_step: dict[int, int] = field(default_factory=dict)
    last_ms: dict[int, int] = field(default_factory=dict)

    def feed(self, line: str, read_ms: int | None = None) -> StepRecord | None:
        """The step a line reports, or None. `read_ms`: when a followed line was read."""
        rank = self.rank
        prefix = PREFIX.match(line)
        if prefix:
            rank, line = int(prefix.group(1)), line[prefix.end() :]
        if self.fmt == "megatron":
            found = MEGATRON.search(line)
            if not found:
                return None
            step, compute, wait = int(found.group(1)), float(found.group(2)) / 1000, 0.0
        else:
            named = DEEPSPEED_RANK.search(line)
            rank = int(named.group(1)) if named else rank
            numbered = DEEPSPEED_STEP.search(line)
            if numbered:
                self.last_step[rank] = int(numbered.group(2))
                return None
            times = DEEPSPEED_TIMES.search(line)
            if not times:
                return None
            timers = _timers(times.group(1))
            if not COMPUTE_TIMERS & timers.keys():
                return None
            step = self.last_step.get(rank, -1) + 1
            compute = sum(v for k, v in timers.items() if k in COMPUTE_TIMERS)
            wait = sum(v for k, v in timers.items() if k in WAIT_TIMERS)
        self.last_step[rank] = step
        ts = self._time(line, rank, compute + wait, read_ms)
        self.last_ms[rank] = ts
        return StepRecord(self.job, rank, step, compute, wait, ts)

    def _time(self, line: str, rank: int, took_s: float, read_ms: int | None) -> int:
        stamp = STAMP.match(line)
        if stamp:
            try:
                base = datetime.strptime(stamp.group(1).replace("T", " "), "%Y-%m-%d %H:%M:%S").timestamp()
                fraction = float(f"0.{stamp.group(2)}") if stamp.group(2) else 0.0
                return int((base + fraction) * 1000)
            except ValueError:
                pass
        if read_ms is not None:
            return read_ms
        return self.last_ms.get(rank, START_MS) + max(1, int(took_s * 1000))


def read_log(path: str | Path, feed: Callable[[str], T | None]) -> list[T]:
    """What `feed` makes of each line of a whole log file (undecodable bytes replaced), in order."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        return [found for line in fh if (found := feed(line.rstrip("\n"))) is not None]


def read_training_log(path: str | Path, fmt: str, job: str | None = None, rank: int = 0) -> list[StepRecord]:
    """Every step a whole log file reports (the job named after the file unless given)."""
    return read_log(path, TrainingLogParser(fmt, job or Path(path).stem, rank).feed)


class LogFollower:
    """New complete lines of files as they grow (`tail -F`: from their end when following starts;
    a file truncated or replaced is read again from its start)."""

    def __init__(self, paths: list[str], from_start: bool = False) -> None:
        self.positions: dict[str, tuple[int, int]] = {}  # path -> (inode, offset)
        self.partial: dict[str, bytes] = {}
        for path in paths:
            try:
                st = Path(path).stat()
                self.positions[path] = (st.st_ino, 0 if from_start else st.st_size)
            except OSError:
                self.positions[path] = (-1, 0)

    def lines(self) -> list[tuple[str, str]]:
        """(path, line) of the lines completed since the last call."""
        out = []
        for path, (inode, offset) in self.positions.items():
            try:
                st = Path(path).stat()
                if st.st_ino != inode or st.st_size < offset:  # rotated or truncated: from the start
                    inode, offset = st.st_ino, 0
                    self.partial.pop(path, None)
                with open(path, "rb") as fh:
                    fh.seek(offset)
                    data = fh.read()
            except OSError:
                continue  # not there (yet, or any more): looked at again next time
            self.positions[path] = (inode, offset + len(data))
            text = self.partial.pop(path, b"") + data
            *complete, rest = text.split(b"\n")
            if rest:
                self.partial[path] = rest
            out += [(path, line.decode("utf-8", "replace")) for line in complete]
        return out
