"""Collective timeouts from the logs of jobs nobody can change: PyTorch's NCCL watchdog and NCCL's warnings.

PyTorch's watchdog thread (`ProcessGroupNCCL.cpp`) prints, on each rank whose collective did not
complete within the process group's timeout (10 min by default), before it aborts the job::

    [rank3]:[E1201 12:00:05.123456789 ProcessGroupNCCL.cpp:616] [Rank 3] Watchdog caught collective
    operation timeout: WorkNCCL(SeqNum=1580, OpType=ALLREDUCE, NumelIn=1, NumelOut=1,
    Timeout(ms)=600000) ran for 600060 milliseconds before timing out.          (one line)

(releases before 2.2: `[E ProcessGroupNCCL.cpp:737] [Rank 3] Watchdog caught ...`, no time and no
Numel; newer ones name the group, `[PG ID 0 PG GUID 0(default_pg) Rank 3]`). The rank that never
reached the collective (stuck in its data loader, its card dead) prints none for it: the ranks that
did not time out are the suspects.

NCCL itself (`NCCL_DEBUG=WARN` or `INFO`) warns when a transfer times out at the transport::

    gpu-node-07:3468:3905 [4] NCCL WARN NET/IB : Got completion from peer 10.0.3.2<54862> with
    status=12 opcode=0 len=0 vendor err 129 (Recv) localGid ...                 (one line)

status 12 is `IBV_WC_RETRY_EXC_ERR` (the transport's retries ran out: the peer or the path is
gone; older releases print `with error 12`); warnings that say a connection or operation timed out
count too. `[4]` is the CUDA device, not the rank: such a line's rank comes from a launcher's
prefix (`[rank3]:`, `[default3]:`) or the reader's `rank` (one log file per rank). Every other
line (INFO, other warnings) is skipped; a rank's transport timeouts count once a minute (NCCL
repeats them per connection), a watchdog timeout once per collective.

A line's time: the watchdog's glog stamp (`E1201 12:00:05.123`: month, day and time of this
machine's local time, in the reader's `year`), else the time it was read (following a log), else
`START_MS` (a file read whole).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from producers.adapters.steps import START_MS
from producers.adapters.training_logs import read_log

PREFIX = re.compile(r"^\[(?:default|rank)(\d+)\]:\s?")
WATCHDOG = re.compile(
    r"Rank (\d+)\] Watchdog caught collective operation timeout: WorkNCCL\(SeqNum=(\d+), OpType=(\w+)"
    r".*?\) ran for (\d+) milliseconds"
)
GLOG_STAMP = re.compile(r"\[[EWIF](\d\d)(\d\d) (\d\d:\d\d:\d\d)(?:\.(\d+))? ")
NCCL_WARN = re.compile(r"^\S+:\d+:\d+ \[\d+\](?: \S+)? NCCL WARN (.*)$")
TRANSPORT_TIMEOUT = re.compile(r"status=12\b|with error 12\b|timed out|[Tt]imeout", re.I)
REPEAT_MS = 60_000  # a rank's transport timeouts within this count once (one per connection and retry)


@dataclass(frozen=True)
class CollectiveTimeout:
    """One rank's collective that did not complete in time."""

    job: str
    rank: int
    seq: int  # the collective's sequence number in its process group (0: not known, a transport's)
    waited_s: float  # how long it had waited (NaN: not known)
    ts_ms: int
    what: str  # `ALLREDUCE`, or NCCL's warning: for people, not on the wire


@dataclass
class NcclLogParser:
    """Turns a job's log lines into collective timeouts; remembers what it has told per rank."""

    job: str
    rank: int = 0  # the rank of lines that name none
    year: int = field(default_factory=lambda: datetime.now().year)
    seen: set[tuple[int, int]] = field(default_factory=set)  # (rank, seq) of watchdog timeouts told
    transport_ms: dict[int, int] = field(default_factory=dict)  # rank -> its last transport timeout told
    nccl_lines: int = 0  # lines of NCCL or its PyTorch process group read (a log of a healthy job has only these)

    def feed(self, line: str, read_ms: int | None = None) -> CollectiveTimeout | None:
        """The timeout a line reports, or None. `read_ms`: when a followed line was read."""
        rank = self.rank
        prefix = PREFIX.match(line)
        if prefix:
            rank, line = int(prefix.group(1)), line[prefix.end() :]
        if "NCCL" in line:
            self.nccl_lines += 1
        found = WATCHDOG.search(line)
        if found:
            rank, seq = int(found.group(1)), int(found.group(2))
            if (rank, seq) in self.seen:
                return None
            self.seen.add((rank, seq))
            waited = int(found.group(4)) / 1000
            return CollectiveTimeout(self.job, rank, seq, waited, self._time(line, read_ms), found.group(3))
        warning = NCCL_WARN.match(line)
        if not warning or not TRANSPORT_TIMEOUT.search(warning.group(1)):
            return None
        ts = self._time(line, read_ms)
        if ts - self.transport_ms.get(rank, ts - REPEAT_MS) < REPEAT_MS:
            return None
        self.transport_ms[rank] = ts
        return CollectiveTimeout(self.job, rank, 0, math.nan, ts, warning.group(1).strip()[:160])

    def _time(self, line: str, read_ms: int | None) -> int:
        stamp = GLOG_STAMP.search(line)
        if stamp:
            month, day, clock, fraction = stamp.groups()
            try:
                base = datetime.strptime(f"{self.year}-{month}-{day} {clock}", "%Y-%m-%d %H:%M:%S").timestamp()
                return int((base + (float(f"0.{fraction}") if fraction else 0.0)) * 1000)
            except ValueError:
                pass
        return read_ms if read_ms is not None else START_MS


def read_nccl_log(
    path: str | Path, job: str | None = None, rank: int = 0, year: int | None = None
) -> tuple[list[CollectiveTimeout], int]:
    """Every collective timeout a whole log file reports (the job named after the file unless
    given), and how many of its lines were NCCL's."""
    parser = NcclLogParser(job or Path(path).stem, rank, year or datetime.now().year)
    return read_log(path, parser.feed), parser.nccl_lines
