"""`clusterpulse ingest megatron|deepspeed|nccl`: training logs read whole (--detect finds a straggler in
a DeepSpeed log of 8 ranks, a hung job in its ranks' NCCL watchdog timeouts) and followed as they grow
(--follow). Lines written from the projects' format strings (tests/unit/producers/test_training_logs.py,
tests/unit/producers/test_nccl_log.py)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from pipeline.model.schemas import decode_batch
from producers.output import read_message_file
from tests.conftest import ROOT, clean_env
from tests.conftest import run_cli as cli
from tests.unit.producers.test_nccl_log import transport, watchdog
from tests.unit.producers.test_training_logs import deepspeed_line, megatron_line


def follow(log: Path, out: Path, source: list[str], lines: list[str], size: int) -> str:
    """`clusterpulse ingest SOURCE LOG --follow --out OUT` while `lines` are appended to the log,
    until OUT holds `size` bytes; stopped with SIGTERM (it must exit 0). Its stderr."""
    follower = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "ingest", source[0], str(log), "--follow", *source[1:], "--out", str(out)],
        cwd=ROOT,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(3)  # the follower has started and taken the log's end
        with open(log, "a") as fh:
            fh.write("".join(line + "\n" for line in lines))
        deadline = time.monotonic() + 30
        while (not out.exists() or out.stat().st_size < size) and time.monotonic() < deadline:
            time.sleep(0.5)
    finally:
        follower.send_signal(signal.SIGTERM)
        _, err = follower.communicate(timeout=30)
    assert follower.returncode == 0, err
    return err


def test_a_slow_rank_in_a_deepspeed_log_of_eight_ranks_is_a_straggler(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    lines = []
    for step in range(120):
        for rank in range(8):  # log_dist(ranks=[-1]): every rank prints its timers, prefixed by torchrun --tee
            slow = 1.25 if rank == 5 and step >= 60 else 1.0
            forward = 400 * slow * (1 + 0.02 * rng.standard_normal())
            lines.append(f"[default{rank}]:" + deepspeed_line(rank, forward, 300 * slow, 40, 100))
    log = tmp_path / "bert-large.log"
    log.write_text("\n".join(lines) + "\n")
    done = cli("ingest", "deepspeed", str(log), "--detect", "--json")
    assert done.returncode == 0, done.stderr
    alerts = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    firing = [(a["kind"], a["entity"], a["labels"]["job"]) for a in alerts if a["status"] == "firing"]
    assert firing == [("straggler", "node0000-card5", "bert-large")]
    assert 60 <= next(a for a in alerts if a["status"] == "firing")["evidence"]["step"] <= 70


def test_a_followed_megatron_log_sends_each_new_iteration_until_stopped(tmp_path: Path) -> None:
    log = tmp_path / "gpt.log"
    log.write_text(megatron_line(10, 1500) + "\n")  # written before following: left alone
    out = tmp_path / "steps.msgs"
    err = follow(log, out, ["megatron", "--rank", "7"], [megatron_line(it, 1500) for it in (20, 30, 40)], 100)
    batches = [decode_batch(m.value) for m in read_message_file(out)]
    steps = sorted(s for b in batches for s in b.columns["step"].tolist())
    assert steps == [20, 30, 40] and {b.job for b in batches} == {"gpt"}
    assert {int(r) for b in batches for r in b.columns["rank"].tolist()} == {7}
    assert "following" in err and "of steps" in err


def test_the_watchdog_timeouts_of_a_hung_job_page_it_naming_the_rank_that_never_reached_the_collective(
    tmp_path: Path,
) -> None:
    log = tmp_path / "gpt.log"
    noise = "gpu-node-07:3468:3905 [4] NCCL INFO proxy.cc:874 -> 6 [Progress Thread]"
    log.write_text("\n".join([noise] + [watchdog(rank, 1580, 600060) for rank in range(16) if rank != 11]) + "\n")
    done = cli("ingest", "nccl", str(log), "--detect", "--json")
    assert done.returncode == 0, done.stderr
    [hang] = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert (hang["kind"], hang["entity"], hang["status"]) == ("job_hang", "gpt", "firing")
    assert hang["evidence"]["ranks_not_timed_out_listed"] == [11] and hang["evidence"]["collective_seq"] == 1580


def test_a_followed_log_sends_its_ranks_transport_timeouts(tmp_path: Path) -> None:
    log = tmp_path / "rank3.log"
    log.write_text("")
    out = tmp_path / "timeouts.msgs"
    lines = [transport(device=3), transport(device=3)]  # the second: the same minute
    err = follow(log, out, ["nccl", "--rank", "3", "--job", "gpt"], lines, 50)
    [batch] = [decode_batch(m.value) for m in read_message_file(out)]
    assert batch.job == "gpt" and batch.source == "node0000" and batch.rows() == 0
    assert batch.columns["timeout_rank"].tolist() == [3] and batch.columns["timeout_seq"].tolist() == [0]
    assert "of collective timeouts" in err


def test_a_healthy_jobs_nccl_log_is_no_failure_and_a_log_without_nccl_says_nothing_was_usable(tmp_path: Path) -> None:
    healthy = tmp_path / "rank0.log"
    healthy.write_text(
        "gpu-node-07:3468:3468 [0] NCCL INFO Bootstrap : Using eth0:10.0.3.1<0>\n"
        "gpu-node-07:3468:3468 [0] NCCL INFO comm 0x55d0 rank 0 nranks 16 cudaDev 0 busId 18000 - Init COMPLETE\n"
    )
    done = cli("ingest", "nccl", str(healthy), "--detect")
    assert done.returncode == 0, done.stderr
    assert (
        f"{healthy}: no collective timeout in its 2 NCCL lines" in done.stderr and "nothing ingested" not in done.stderr
    )
    other = tmp_path / "train.log"
    other.write_text(megatron_line(10, 1500) + "\n")
    done = cli("ingest", "nccl", str(other), "--out", str(tmp_path / "x.msgs"))
    assert done.returncode == 1 and f"{other}: nothing usable: no data" in done.stderr
