"""A real MindSpore training run (CPU) with the step callback: every step is reported."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.model.schemas import decode_batch
from producers.training import StepReporter

ms = pytest.importorskip(
    "mindspore",
    reason="MindSpore is not installed: `pip install -e '.[mindspore]'` (an 800 MB wheel, left out of "
    "`make test` to keep the suite within its time); the callback's contract is tested without it",
)


def test_a_mindspore_model_reports_each_training_step() -> None:
    from mindspore import dataset, nn
    from mindspore.train import Model

    from producers.training.mindspore_callback import step_callback

    ms.set_context(mode=ms.PYNATIVE_MODE, device_target="CPU")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 8)).astype(np.float32)
    y = x.sum(axis=1, keepdims=True).astype(np.float32)
    data = dataset.NumpySlicesDataset({"x": x, "y": y}, shuffle=False).batch(8)
    net = nn.Dense(8, 1)
    model = Model(net, loss_fn=nn.MSELoss(), optimizer=nn.SGD(net.trainable_params(), learning_rate=0.01))
    sent: list[bytes] = []
    reporter = StepReporter("ms-job", 0, "node0000", interval_s=60, send=lambda t, k, v: sent.append(v))
    model.train(2, data, callbacks=[step_callback(reporter)], dataset_sink_mode=False)
    steps = [s for value in sent for s in decode_batch(value).columns["step"].tolist()]
    assert steps == list(range(16))  # 2 epochs of 8 batches, each step once, in order
    assert all(c > 0 for value in sent for c in decode_batch(value).columns["compute_s"].tolist())
