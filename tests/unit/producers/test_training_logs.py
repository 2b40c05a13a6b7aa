"""Megatron-LM and DeepSpeed log lines as step records, and following logs as they grow. Lines are
written from the projects' format strings (Megatron-LM `training_log`, DeepSpeed's timer breakdown
`log_dist`); the Megatron-LM iteration times of a real DGX H100 run (`../shared/samples`) where present."""

from __future__ import annotations

import gzip
import json
import statistics
from pathlib import Path

import pytest

from producers.adapters.training_logs import LogFollower, TrainingLogParser, read_training_log

SHARED = Path(__file__).resolve().parents[4] / "shared" / "samples" / "training_logs"
GOLDEN = SHARED / "megatron_deepseekv3_proxy_dgx_h100_golden_values.json.gz"


def megatron_line(iteration: int, ms: float, stamp: str | None = None, mean: float | None = None) -> str:
    """As Megatron-LM's training_log prints it (`mean`: newer releases' running mean after a /)."""
    head = f" [{stamp}]" if stamp else ""
    elapsed = f"{ms:.1f}" + (f"/{mean:.1f}" if mean is not None else "")
    return (
        f"{head} iteration {iteration:8d}/{500000:8d} | consumed samples: {iteration * 512:12d} |"
        f" elapsed time per iteration (ms): {elapsed} | learning rate: 1.500000E-05 | global batch size:   512 |"
        " lm loss: 1.083115E+01 | loss scale: 1.0 | grad norm: 13.563 |"
    )


def deepspeed_line(rank: int, forward: float, inner: float, allreduce: float, step: float, micro: bool = False) -> str:
    sfx = "_microstep" if micro else ""
    return (
        f"[2024-03-31 11:14:23,228] [INFO] [logging.py:69:log_dist] [Rank {rank}] rank={rank} time (ms) |"
        f" forward{sfx}: {forward:.2f} | backward{sfx}: {inner + allreduce:.2f} | backward_inner{sfx}: {inner:.2f} |"
        f" backward_allreduce{sfx}: {allreduce:.2f} | step{sfx}: {step:.2f}"
    )


def test_megatron_lines_of_every_release_give_the_iteration_and_its_time() -> None:
    parser = TrainingLogParser("megatron", "gpt", rank=7)
    record = parser.feed(megatron_line(100, 2318.6, stamp="2024-06-05 10:22:33"))
    assert record is not None
    assert (record.job, record.rank, record.step, record.compute_s, record.wait_s) == ("gpt", 7, 100, 2.3186, 0.0)
    old = parser.feed(megatron_line(110, 2300.0))  # before 2023: no time in brackets
    assert old is not None and old.step == 110 and old.ts_ms == record.ts_ms + 2300
    newer = parser.feed("[default3]:" + megatron_line(120, 1234.5, stamp="2024-06-05 10:22:56.123456", mean=1230.1))
    assert newer is not None and (newer.rank, newer.step, newer.compute_s) == (3, 120, 1.2345)
    assert newer.ts_ms - record.ts_ms == 23_123
    assert parser.feed(" > building GPT model ...") is None
    assert parser.feed("iteration 5 | elapsed time per iteration (ms): x") is None


def test_deepspeed_timer_lines_split_compute_from_the_allreduce_wait_and_count_steps_per_rank() -> None:
    parser = TrainingLogParser("deepspeed", "bert")
    first = parser.feed(deepspeed_line(3, 1425.20, 209.05, 1.99, 649.10))
    assert first is not None and (first.rank, first.step) == (3, 0)
    assert first.compute_s == pytest.approx(1.42520 + 0.20905 + 0.64910) and first.wait_s == pytest.approx(0.00199)
    second = parser.feed(deepspeed_line(3, 1400, 200, 50, 600, micro=True))  # older releases' names
    assert second is not None and second.step == 1 and second.wait_s == pytest.approx(0.05)
    assert (
        parser.feed("[2024-03-31 11:14:24,000] [INFO] [logging.py:96:log_dist] [Rank 3] step=40, skipped=0, lr=[1e-05]")
        is None
    )
    third = parser.feed(deepspeed_line(3, 1400, 200, 50, 600))
    assert third is not None and third.step == 41  # numbered from DeepSpeed's own count
    other = parser.feed(deepspeed_line(5, 1400, 200, 50, 600))
    assert other is not None and (other.rank, other.step) == (5, 0)


def test_a_followed_log_gives_each_completed_line_once_and_starts_over_when_truncated(tmp_path: Path) -> None:
    log = tmp_path / "rank0.log"
    log.write_text(megatron_line(1, 1000) + "\n")  # there before following starts: not read
    follower = LogFollower([str(log)])
    assert follower.lines() == []
    with open(log, "a") as fh:
        fh.write(megatron_line(2, 1000) + "\n" + megatron_line(3, 1000)[:40])  # the last line half written
    [(_, line)] = follower.lines()
    assert "iteration        2/" in line
    with open(log, "a") as fh:
        fh.write(megatron_line(3, 1000)[40:] + "\n")
    [(_, line)] = follower.lines()
    assert line == megatron_line(3, 1000)
    log.write_text(megatron_line(1, 900) + "\n")  # the job restarted and rewrote its log
    [(_, line)] = follower.lines()
    assert "iteration        1/" in line
    assert LogFollower([str(tmp_path / "not-yet.log")]).lines() == []


@pytest.mark.skipif(not GOLDEN.exists(), reason="needs ../shared/samples/training_logs (not in a fresh clone)")
def test_the_iteration_times_of_a_real_megatron_run_read_back_as_steps(tmp_path: Path) -> None:
    """The release test's `iteration-time` series (every 5th of 47,680 iterations, seconds) as the
    log lines Megatron-LM prints for them."""
    values = json.loads(gzip.decompress(GOLDEN.read_bytes()))["iteration-time"]["values"]
    series = {it: s for it, s in values.items() if isinstance(s, float)}  # iteration 1 and a few are "nan"
    log = tmp_path / "deepseekv3-proxy.log"
    log.write_text("".join(megatron_line(int(it), float(s) * 1000) + "\n" for it, s in series.items()))
    records = read_training_log(log, "megatron")
    assert len(records) == len(series) and records[0].job == "deepseekv3-proxy"
    assert [r.step for r in records] == [int(it) for it in series]
    times = [r.compute_s for r in records]
    assert 10 < statistics.median(times) < 14 and max(times) > 90  # ~12 s a step; restarts up to 99.8 s
