"""The lake in an object store (a local S3 server, moto's), as workers on several machines share it:
two workers write it, one is killed with SIGKILL mid-stream and started again; every sample lands
exactly once, the alerts are the offline run's, and every page reaches the webhook. Then what reads
and rewrites a lake works on the store too: `query`, the notify ledger, the live page's newest
values, `compact` with its rollups (still every sample once), and retention."""

from __future__ import annotations

import json
import random
import signal
import time

import pytest
import yaml

from pipeline.lake.compact import expire
from pipeline.lake.store import LakeStore
from pipeline.notify import ledger
from pipeline.ops.broker import stop_process
from pipeline.ui.latest import latest_values, newest_event_ms
from tests.conftest import run_cli
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


def test_two_workers_on_an_s3_lake_one_killed_lose_and_repeat_nothing(
    s3,
    broker,
    prefix,
    children,
    tmp_path,
    receiver,  # noqa: ANN001
) -> None:
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(SCENARIO))
    lake = f"s3://lake/{prefix}?endpoint_override={s3.removeprefix('http://')}&scheme=http"
    env = worker_env(broker.bootstrap, prefix, lake, receiver.url)
    kill_at = random.uniform(4, 9)  # seconds after the simulator starts
    why = f"(worker killed at {kill_at:.1f} s)"
    assert children.start("topics", env=env, name="topics").wait(timeout=60) == 0
    first = children.start("worker", env=env, name="worker-a")
    second = children.start("worker", env=env, name="worker-b")
    sim = children.start("simulate", "--scenario", str(path), "--speed", "8", env=env, name="simulator")
    started = time.monotonic()
    time.sleep(max(0.0, started + kill_at - time.monotonic()))
    second.send_signal(signal.SIGKILL)  # no flush, no commit, no goodbye
    second.wait(timeout=10)
    second = children.start("worker", env=env, name="worker-b")
    assert sim.wait(timeout=120) == 0, children.log_of(sim)[-2000:]
    wait_caught_up(broker.bootstrap, prefix, first, children.log_of, why)
    assert second.poll() is None, children.log_of(second)[-3000:]
    for worker in (first, second):
        stop_process(worker, timeout_s=30)  # a graceful stop: the worker flushes what it holds
    rows = check_lake(lake, path, why)
    check_pages(receiver.received, path, why)

    store = LakeStore(lake)
    manifest = json.loads(store.read_text("_lake.json") or "{}")
    assert manifest["topic_prefix"] == prefix  # whose lake this is, as in a directory
    delivered = [line for line in ledger.read(lake) if line["delivered"]]
    assert len(delivered) == len(receiver.received), "the ledger records each delivery in the store"

    counted = run_cli("query", "--data", lake, "--format", "json", "select count(*) as n from card", env=env)
    assert counted.returncode == 0, counted.stderr
    assert json.loads(counted.stdout) == [{"n": rows["card"]}]
    assert newest_event_ms(lake) is not None
    assert len(latest_values(lake, "util")) == SCENARIO["cluster"]["cards"]  # the live page's colors

    compacted = run_cli("compact", "--data", lake, "--older-than=-7200", env=env)  # the hours still open too
    assert compacted.returncode == 0, compacted.stderr
    assert "rolled up" in compacted.stdout, compacted.stdout
    assert not [f for f in store.files("card", ".parquet") if not f.name.startswith("compacted-")]
    assert check_lake(lake, path, "(after compaction)") == rows
    per_minute = run_cli("query", "--data", lake, "--format", "json", "select sum(samples) as n from card_1m", env=env)
    assert per_minute.returncode == 0, per_minute.stderr
    assert json.loads(per_minute.stdout) == [{"n": rows["card"]}]

    removed = expire(lake, {"card_events": 60}, now=time.time() + 3 * 3600)
    assert removed and not store.files("card_events", ".parquet")
    assert store.files("card", ".parquet"), "retention removes only the datasets it names"
    check_no_secret([log for _, log in children.procs] + list(tmp_path.glob("*.log")), HOOK_SECRET, S3_SECRET)
