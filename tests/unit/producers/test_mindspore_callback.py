"""The MindSpore callback's contract, without MindSpore: run contexts as MindSpore hands them over
(`original_args().cur_step_num`, counted from 1; several steps per call in data-sink mode)."""

from __future__ import annotations

import time
from types import SimpleNamespace

from pipeline.model.schemas import decode_batch
from producers.training import StepReporter
from producers.training.mindspore_callback import StepTimer


class RunContext:
    def __init__(self, step: int) -> None:
        self.params = SimpleNamespace(cur_step_num=step, cur_epoch_num=1)

    def original_args(self) -> SimpleNamespace:
        return self.params


def test_each_step_between_begin_and_end_is_reported_and_a_sink_call_shares_its_time() -> None:
    sent: list[bytes] = []
    reporter = StepReporter("ms", 2, "node0000", interval_s=60, send=lambda topic, key, value: sent.append(value))
    timer = StepTimer(reporter)
    for step in (1, 2, 3):
        timer.begin(RunContext(step))
        time.sleep(0.01)
        timer.end(RunContext(step))
    timer.begin(RunContext(7))  # data-sink mode: one call for steps 4 to 7
    time.sleep(0.04)
    timer.end(RunContext(7))
    timer.end(RunContext(8))  # an end without a begin is ignored
    reporter.close()
    batch = decode_batch(sent[0])
    assert batch.columns["step"].tolist() == [0, 1, 2, 3, 4, 5, 6]
    assert batch.columns["rank"].tolist() == [2] * 7 and not batch.columns["wait_s"].any()
    assert all(c >= 0.01 for c in batch.columns["compute_s"][:3].tolist())
    assert len(set(batch.columns["compute_s"][3:].tolist())) == 1  # the sink call's time, shared out
