"""NCCL collective timeouts from training logs: PyTorch's watchdog lines of three releases and NCCL's
transport warnings, written from their format strings (`ProcessGroupNCCL.cpp`'s watchdog message,
NCCL's `WARN` header and `NET/IB : Got completion from peer` warning) with our own hosts and
numbers; the real `NCCL_DEBUG=INFO` logs of two healthy all-reduce benchmarks (`../shared/samples`)
give none."""

from __future__ import annotations

import math
from datetime import datetime

import pytest

from producers.adapters.nccl_log import NcclLogParser, read_nccl_log
from producers.adapters.steps import START_MS
from tests.conftest import SAMPLES


def watchdog(rank: int, seq: int, ran_ms: int, release: str = "2.5", op: str = "ALLREDUCE") -> str:
    """The watchdog's timeout line as each PyTorch release prints it."""
    work = f"WorkNCCL(SeqNum={seq}, OpType={op}, NumelIn=1048576, NumelOut=1048576, Timeout(ms)=600000)"
    text = f"Watchdog caught collective operation timeout: {work} ran for {ran_ms} milliseconds before timing out."
    if release == "1.13":
        return f"[E ProcessGroupNCCL.cpp:737] [Rank {rank}] " + text.replace(" NumelIn=1048576, NumelOut=1048576,", "")
    group = "[PG ID 0 PG GUID 0(default_pg) Rank" if release == "2.5" else "[Rank"
    return f"[rank{rank}]:[E1201 12:00:05.{rank:03d}456789 ProcessGroupNCCL.cpp:616] {group} {rank}] {text}"


def transport(device: int, status: int = 12) -> str:
    return (
        f"gpu-node-07:3468:3905 [{device}] ib_plugin.c:1615 NCCL WARN NET/IB : Got completion from peer "
        f"10.0.3.2<54862> with status={status} opcode=0 len=0 vendor err 129 (Recv) localGid ::ffff:10.0.3.1"
    )


def test_watchdog_timeouts_of_every_release_give_the_rank_the_collective_and_the_wait() -> None:
    parser = NcclLogParser("gpt", rank=0, year=2026)
    new = parser.feed(watchdog(3, 1580, 600060))
    assert new is not None and (new.job, new.rank, new.seq, new.waited_s, new.what) == (
        "gpt",
        3,
        1580,
        600.06,
        "ALLREDUCE",
    )
    assert new.ts_ms == int(datetime(2026, 12, 1, 12, 0, 5, 3456).timestamp() * 1000)  # local time, as logged
    mid = parser.feed(watchdog(4, 1580, 600013, release="2.2", op="_REDUCE_SCATTER_BASE"))
    assert mid is not None and (mid.rank, mid.what) == (4, "_REDUCE_SCATTER_BASE")
    old = parser.feed(watchdog(6, 469508, 1802212, release="1.13"), read_ms=1_800_000_000_000)
    assert old is not None and (old.rank, old.seq, old.waited_s, old.ts_ms) == (6, 469508, 1802.212, 1_800_000_000_000)
    assert parser.feed(watchdog(3, 1580, 600061)) is None  # told once per rank and collective
    assert parser.feed(watchdog(3, 1581, 600061)) is not None


def test_nccl_transport_timeouts_take_the_launchers_rank_not_the_device_and_count_once_a_minute() -> None:
    parser = NcclLogParser("gpt", rank=2)
    first = parser.feed(transport(device=4), read_ms=START_MS)
    assert first is not None and (first.rank, first.seq) == (2, 0) and math.isnan(first.waited_s)
    assert first.what.startswith("NET/IB : Got completion from peer 10.0.3.2")
    assert parser.feed(transport(device=5), read_ms=START_MS + 30_000) is None  # its other connections
    assert parser.feed(transport(device=4), read_ms=START_MS + 61_000) is not None
    prefixed = parser.feed("[rank5]:" + transport(device=4), read_ms=START_MS)
    assert prefixed is not None and prefixed.rank == 5
    assert parser.feed(transport(device=4, status=5), read_ms=START_MS + 200_000) is None  # flushed: not a timeout
    info = "gpu-node-07:3468:3905 [4] NCCL INFO proxy.cc:874 -> 6 [Progress Thread]"
    assert parser.feed(info) is None


@pytest.mark.parametrize(
    "name", ["jeanzay_v100_16node_nccl_info_all_reduce_bench.txt", "jeanzay_a100_4node_nccl_info_all_reduce_bench.txt"]
)
def test_real_nccl_info_logs_of_healthy_runs_give_no_timeout(name: str) -> None:
    path = SAMPLES / "training_logs" / name
    if not path.exists():
        pytest.skip(f"the real capture ../shared/samples/training_logs/{name} is not here")
    lines = path.read_text(errors="replace").splitlines()
    assert sum(" NCCL INFO " in line for line in lines) > 100  # real NCCL lines were read
    timeouts, nccl_lines = read_nccl_log(path, "bench")
    assert timeouts == [] and nccl_lines >= sum(" NCCL INFO " in line for line in lines)
