"""StepReporter: batching, a bounded buffer while the broker is away, never raising into training."""

from __future__ import annotations

import threading
import time

import pytest

from pipeline.model.schemas import decode_batch
from producers.training import StepReporter


class Broker:
    """Records what is sent; raises while `down`."""

    def __init__(self) -> None:
        self.down = False
        self.messages: list[tuple[str, bytes, bytes]] = []
        self.sent = threading.Event()

    def __call__(self, topic: str, key: bytes, value: bytes) -> None:
        if self.down:
            raise ConnectionError("no broker at 127.0.0.1:9092")
        self.messages.append((topic, key, value))
        self.sent.set()


def test_steps_go_out_as_one_message_of_the_step_schema_per_flush() -> None:
    broker = Broker()
    reporter = StepReporter("train", 3, "node0000", topic_prefix="t", interval_s=60, send=broker)
    for step in range(5):
        reporter.record(step, 0.05, 0.01)
    reporter.close()
    [(topic, key, value)] = broker.messages
    batch = decode_batch(value)
    assert (topic, key, batch.kind, batch.source, batch.job) == (
        "t.telemetry.step",
        b"train",
        "step",
        "node0000",
        "train",
    )
    assert batch.columns["rank"].tolist() == [3] * 5 and batch.columns["step"].tolist() == [0, 1, 2, 3, 4]
    assert reporter.sent == 5 and reporter.dropped == 0


def test_a_full_batch_is_sent_without_waiting_for_the_interval() -> None:
    broker = Broker()
    reporter = StepReporter("train", 0, "node0000", interval_s=60, max_steps=4, send=broker)
    for step in range(4):
        reporter.record(step, 0.05)
    assert broker.sent.wait(10)
    reporter.close()
    assert sum(len(decode_batch(v).columns["step"]) for _, _, v in broker.messages) == 4


def test_while_the_broker_is_away_the_newest_steps_are_kept_and_the_dropped_counted() -> None:
    broker = Broker()
    broker.down = True
    reporter = StepReporter("train", 0, "node0000", interval_s=0.05, max_buffered=100, max_steps=30, send=broker)
    for step in range(250):
        reporter.record(step, 0.05)  # never raises, never blocks
    time.sleep(0.2)  # a few failed flushes
    assert reporter.dropped == 150 and reporter.sent == 0
    broker.down = False
    reporter.close()
    steps = [s for _, _, v in broker.messages for s in decode_batch(v).columns["step"].tolist()]
    assert steps == list(range(150, 250)) and reporter.sent == 100
    assert max(len(decode_batch(v).columns["step"]) for _, _, v in broker.messages) <= 30


def test_step_times_its_compute_apart_from_the_wait_counted_in_it() -> None:
    broker = Broker()
    reporter = StepReporter("train", 0, "node0000", interval_s=60, send=broker)
    reporter.wait_sources.append(lambda: 0.02)  # a framework hook's all-reduce wait
    with reporter.step():
        time.sleep(0.05)
        with reporter.wait():
            time.sleep(0.03)
    reporter.wait_sources.append(lambda: 1 / 0)  # a broken hook does not break training
    with reporter.step():
        pass
    reporter.close()
    batch = decode_batch(broker.messages[0][2])
    assert batch.columns["step"].tolist() == [0, 1]
    compute, wait = batch.columns["compute_s"].tolist(), batch.columns["wait_s"].tolist()
    assert wait[0] >= 0.05 and compute[0] >= 0.03  # 0.05 s of work less the hook's 0.02 s
    assert compute[1] >= 0 and wait[1] <= 0.02  # the broken hook counted nothing; the step was still recorded


def test_job_rank_and_node_come_from_the_launchers_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "none")  # torchrun's value when no run id was given
    monkeypatch.setenv("SLURM_JOB_NAME", "pretrain")
    monkeypatch.setenv("RANK", "5")
    monkeypatch.setenv("CLUSTERPULSE_NODE", "node0007")
    monkeypatch.delenv("CLUSTERPULSE_JOB", raising=False)
    monkeypatch.delenv("CLUSTERPULSE_RANK", raising=False)
    reporter = StepReporter.from_env(send=Broker())
    reporter.close()
    assert (reporter.job, reporter.rank, reporter.node) == ("pretrain", 5, "node0007")
