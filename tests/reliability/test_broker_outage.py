"""The embedded broker on S3 storage (a local S3 server, moto's) killed with SIGKILL mid-stream and
started again 30 s later on the same port: the simulator buffers and retries, the worker
reconnects, and nothing is lost or repeated (the same checks as a worker kill)."""

from __future__ import annotations

import signal
import time

import pytest
import yaml

from pipeline.ops.broker import EmbeddedBroker, free_port, stop_process
from tests.reliability.conftest import S3_SECRET
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
OUTAGE_S = 30


def test_the_broker_down_for_30_s_mid_stream_loses_and_repeats_nothing(
    s3,
    prefix,
    children,
    tmp_path,  # noqa: ANN001
    receiver,
) -> None:
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(SCENARIO))
    data = tmp_path / "lake"
    port = free_port()
    broker = EmbeddedBroker(port=port, storage="s3://tansu/", log_path=tmp_path / "broker.log").start()
    env = worker_env(broker.bootstrap, prefix, data, receiver.url)
    why = f"(broker down {OUTAGE_S} s)"
    try:
        assert children.start("topics", env=env, name="topics").wait(timeout=60) == 0
        worker = children.start("worker", env=env, name="worker")
        sim = children.start("simulate", "--scenario", str(path), "--speed", "6", env=env, name="simulator")
        time.sleep(7)  # mid-stream: the worker is busy with what came so far
        broker.process.send_signal(signal.SIGKILL)  # type: ignore[union-attr]
        broker.process.wait(timeout=10)  # type: ignore[union-attr]
        broker.process = None
        time.sleep(OUTAGE_S)
        assert worker.poll() is None, children.log_of(worker)[-3000:]
        broker = EmbeddedBroker(port=port, storage="s3://tansu/", log_path=tmp_path / "broker.log").start()
        assert sim.wait(timeout=180) == 0, children.log_of(sim)[-3000:]
        assert "has not taken the buffered messages" in children.log_of(sim)  # said while it waited
        wait_caught_up(broker.bootstrap, prefix, worker, children.log_of, why)
        stop_process(worker, timeout_s=30)  # a graceful stop: the worker flushes what it holds
    finally:
        children.stop_all()
        broker.stop()
    check_lake(data, path, why)
    check_pages(receiver.received, path, why)
    check_no_secret([log for _, log in children.procs] + list(tmp_path.glob("*.log")), HOOK_SECRET, S3_SECRET)
