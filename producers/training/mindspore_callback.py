"""A MindSpore `Callback` that reports each training step to a `StepReporter`.

    model.train(epochs, dataset, callbacks=[step_callback(StepReporter.from_env())])

MindSpore calls `on_train_step_begin` and `on_train_step_end` with a run context whose
`original_args()` carries `cur_step_num` (steps since training began). A step's time is taken
between the two calls; MindSpore tells a callback nothing of the time spent in collectives, so the
wait is 0 (the whole step counts as compute: a rank slower than its peers still stands out, its
peers' steps being as long as theirs plus their wait). In data-sink mode one call covers
`sink_size` steps: their time is shared out evenly over them.
"""

from __future__ import annotations

import time
from typing import Any

from producers.training.reporter import StepReporter


class StepTimer:
    """The callback's logic, apart from MindSpore's base class (MindSpore need not be installed)."""

    def __init__(self, reporter: StepReporter) -> None:
        self.reporter = reporter
        self._started: float | None = None
        self._last_step = 0

    def begin(self, run_context: Any) -> None:
        self._started = time.perf_counter()

    def end(self, run_context: Any) -> None:
        if self._started is None:
            return
        took = time.perf_counter() - self._started
        self._started = None
        try:
            step = int(run_context.original_args().cur_step_num)
        except (AttributeError, TypeError, ValueError):
            step = self._last_step + 1  # a context without a step number: count them
        steps = max(1, step - self._last_step)  # data-sink mode: several steps per call
        for n in range(steps):
            self.reporter.record(step - steps + n, took / steps, 0.0)
        self._last_step = step


def step_callback(reporter: StepReporter) -> Any:
    """A `mindspore.train.Callback` reporting each step (raises ImportError without MindSpore)."""
    from mindspore.train import Callback

    class StepReporterCallback(Callback):
        def __init__(self) -> None:
            super().__init__()
            self.timer = StepTimer(reporter)

        def on_train_step_begin(self, run_context: Any) -> None:
            self.timer.begin(run_context)

        def on_train_step_end(self, run_context: Any) -> None:
            self.timer.end(run_context)

        def on_train_end(self, run_context: Any) -> None:
            reporter.close()

    return StepReporterCallback()
