"""A worker killed with SIGKILL at two random points mid-stream, and restarted each time: every
simulated sample lands in Parquet exactly once, the alerts are the offline run's, and every page
reaches the webhook at least once under one idempotency key per state change."""

from __future__ import annotations

import random
import signal
import time

import pytest
import yaml

from pipeline.ops.broker import stop_process
from tests.reliability.helpers import (
    HOOK_SECRET,
    SCENARIO,
    check_lake,
    check_no_secret,
    check_pages,
    wait_caught_up,
    worker_env,
)

pytestmark = [pytest.mark.broker, pytest.mark.slow]


def test_a_worker_killed_twice_mid_stream_loses_and_repeats_nothing(
    broker, prefix, children, tmp_path, receiver
) -> None:
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(SCENARIO))
    data = tmp_path / "lake"
    env = worker_env(broker.bootstrap, prefix, data, receiver.url)
    kills = sorted([random.uniform(3, 7), random.uniform(10, 15)])  # seconds after the simulator starts
    why = f"(kills at {', '.join(f'{k:.1f}' for k in kills)} s)"
    assert children.start("topics", env=env, name="topics").wait(timeout=60) == 0
    worker = children.start("worker", env=env, name="worker")
    sim = children.start("simulate", "--scenario", str(path), "--speed", "8", env=env, name="simulator")
    started = time.monotonic()
    for at in kills:
        time.sleep(max(0.0, started + at - time.monotonic()))
        worker.send_signal(signal.SIGKILL)  # no flush, no commit, no goodbye
        worker.wait(timeout=10)
        worker = children.start("worker", env=env, name="worker")
    assert sim.wait(timeout=120) == 0, children.log_of(sim)[-2000:]
    wait_caught_up(broker.bootstrap, prefix, worker, children.log_of, why)
    stop_process(worker, timeout_s=30)  # a graceful stop: the worker flushes what it holds
    check_lake(data, path, why)
    check_pages(receiver.received, path, why)
    check_no_secret([log for _, log in children.procs] + list(tmp_path.glob("*.log")), HOOK_SECRET)
