"""The webhook receiver is down for the whole stream, longer than the delivery deadline: each page is
retried with backoff, then dead-lettered; once the receiver is back, `alerts replay` delivers every
one under the idempotency key it would have had, and a second replay sends nothing again."""

from __future__ import annotations

import json

import duckdb
import pytest
import yaml

from pipeline.model.schemas import Alert
from pipeline.model.topics import NOTIFY_DEAD_LETTERS
from pipeline.notify.payloads import idempotency_key
from pipeline.ops.broker import free_port, stop_process
from tests.conftest import run_cli
from tests.kafka_helpers import read_until
from tests.reliability.helpers import SCENARIO, check_pages, signed_receiver, wait_caught_up, worker_env

pytestmark = [pytest.mark.broker, pytest.mark.slow]


def test_pages_dead_lettered_while_the_receiver_is_down_are_all_replayed_once(
    broker, prefix, children, tmp_path
) -> None:
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(SCENARIO))
    data = tmp_path / "lake"
    port = free_port()  # nothing listens there until the end
    env = worker_env(broker.bootstrap, prefix, data, f"http://127.0.0.1:{port}/")
    env["CLUSTERPULSE_NOTIFY__RECEIVERS"] = json.dumps(
        [
            {
                "name": "ops",
                "url": f"http://127.0.0.1:{port}/hook",
                "secret_env": "HOOK_SECRET",
                "deadline_s": 1,
                "backoff_s": 0.1,
                "max_attempts": 50,
            }
        ]
    )
    assert children.start("topics", env=env, name="topics").wait(timeout=60) == 0
    worker = children.start("worker", env=env, name="worker")
    sim = children.start("simulate", "--scenario", str(path), "--speed", "16", env=env, name="simulator")
    assert sim.wait(timeout=120) == 0, children.log_of(sim)[-2000:]
    wait_caught_up(broker.bootstrap, prefix, worker, children.log_of, "(receiver down)")
    pages = duckdb.execute(
        f"select id, status from read_parquet('{data}/alerts/**/*.parquet') where root_cause is null"
    ).fetchall()
    letters = read_until(
        broker.bootstrap,
        NOTIFY_DEAD_LETTERS.name(prefix),  # one page after the other
        lambda found: len(found) >= len(pages),
        timeout_s=60,
        alive=lambda: None if worker.poll() is None else "the worker stopped",
    )
    stop_process(worker, timeout_s=30)
    entries = [json.loads(r.value) for r in letters]
    assert sorted((e["alert"]["id"], e["alert"]["status"]) for e in entries) == sorted(pages)
    assert all(e["attempts"] >= 2 and e["error"] for e in entries), entries[0]  # retried, then given up

    with signed_receiver(port) as receiver:
        first = run_cli("alerts", "replay", env=env)
        again = run_cli("alerts", "replay", env=env)
    assert first.returncode == 0, first.stderr
    assert f"replayed {len(pages)} notifications; 0 failed" in first.stdout + first.stderr
    assert again.returncode == 0 and "replayed 0 notifications" in again.stdout + again.stderr
    assert len(receiver.received) == len(pages)
    expected_keys = {idempotency_key(Alert(**e["alert"])) for e in entries}
    assert {r["headers"].get("Idempotency-Key") for r in receiver.received} == expected_keys
    check_pages(receiver.received, path, "(after the replay)")
