"""A worker killed with SIGKILL at two random points mid-stream, and restarted each time: every
simulated sample lands in Parquet exactly once, the alerts are the offline run's, and every page
reaches the webhook at least once under one idempotency key per state change."""

from __future__ import annotations

import collections
import random
import signal
import threading
import time
from pathlib import Path

import duckdb
import pytest
import yaml

from pipeline.broker import free_port
from pipeline.receiver import WebhookReceiver
from pipeline.run import consumer_lag
from tests.conftest import clean_env  # noqa: F401  (children use it)

pytestmark = pytest.mark.broker

CLUSTER = {"cards": 256, "cards_per_node": 8, "nodes_per_leaf": 8, "spines": 2}
SCENARIO = {
    "name": "kill-me", "seed": 17, "duration_s": 150, "cluster": CLUSTER, "noise": {"nic_reports": 1},
    "jobs": [{"name": "pretrain", "first_node": 0, "nodes": 20, "step_s": 1.0},
             {"name": "finetune", "first_node": 20, "nodes": 10, "step_s": 0.8}],
    "faults": [{"kind": "card_failure", "target": "node0003-card2", "start_s": 20, "duration_s": 40},
               {"kind": "switch_failure", "target": "leaf005", "start_s": 50, "duration_s": 30},
               {"kind": "link_degradation", "target": "node0025-nic1~leaf007", "start_s": 90, "severity": 0.4},
               {"kind": "node_failure", "target": "node0030", "start_s": 100, "duration_s": 30}],
}
# what identifies a sample in each dataset: a row twice under the same key is a duplicate
KEYS = {"card": "node, card, ts", "card_events": "node, card, ts, code", "step": "job, rank, step",
        "port": "switch, port, ts"}


def sent_rows(path: Path) -> dict[str, int]:
    """Rows per lake dataset of everything the simulator sends for the scenario."""
    from pipeline.schemas import decode_batch
    from producers.scenario import load_scenario
    from producers.simulator import Simulator

    rows: collections.Counter = collections.Counter()
    for _, messages in Simulator(load_scenario(path)).ticks():
        for m in messages:
            batch = decode_batch(m.value)
            rows[batch.kind] += batch.rows()
            if batch.kind == "card":
                rows["card_events"] += len(batch.columns["err_code"])
    return dict(rows)


def offline_alerts(path: Path) -> set[tuple[str, str, str, str]]:
    from pipeline.evaluate import run_offline
    from pipeline.settings import load_settings
    from producers.scenario import load_scenario

    scenario = load_scenario(path)
    alerts = run_offline(scenario, load_settings({}, environ={}).for_scenario(scenario))
    return {(a.kind, a.entity, a.status, _ms(a.starts_at)) for a in alerts}


def _ms(iso: str) -> int:
    from datetime import datetime

    return round(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


def test_a_worker_killed_twice_mid_stream_loses_and_repeats_nothing(broker, prefix, children, tmp_path) -> None:
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(SCENARIO))
    data = tmp_path / "lake"
    receiver = WebhookReceiver("127.0.0.1", free_port(), echo=None, secret=b"s3cret")
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    env = {"CLUSTERPULSE_BOOTSTRAP": broker.bootstrap, "CLUSTERPULSE_TOPIC_PREFIX": prefix,
           "CLUSTERPULSE_GROUP_ID": f"{prefix}-workers", "CLUSTERPULSE_DATA_DIR": str(data),
           "CLUSTERPULSE_PARTITIONS": "4", "CLUSTERPULSE_SINK__FLUSH_SECONDS": "1",
           "CLUSTERPULSE_LOG_LEVEL": "info", "HOOK_SECRET": "s3cret",
           "CLUSTERPULSE_NOTIFY__RECEIVERS":
               f'[{{"name": "ops", "url": "{receiver.url}hook", "secret_env": "HOOK_SECRET"}}]',
           **{f"CLUSTERPULSE_CLUSTER__{k.upper()}": str(v) for k, v in CLUSTER.items()}}
    rng = random.Random()
    kills = sorted([rng.uniform(4, 10), rng.uniform(13, 20)])  # seconds after the simulator starts
    try:
        assert children.start("topics", env=env, name="topics").wait(timeout=60) == 0
        worker = children.start("worker", env=env, name="worker")
        sim = children.start("simulate", "--scenario", str(path), "--speed", "6", env=env, name="simulator")
        started = time.monotonic()
        for at in kills:
            time.sleep(max(0.0, started + at - time.monotonic()))
            worker.send_signal(signal.SIGKILL)  # no flush, no commit, no goodbye
            worker.wait(timeout=10)
            worker = children.start("worker", env=env, name="worker")
        assert sim.wait(timeout=120) == 0, children.log_of(sim)[-2000:]
        topics = [f"{prefix}.telemetry.{k}" for k in ("card", "port", "step")] + [f"{prefix}.findings"]
        deadline = time.monotonic() + 120
        while consumer_lag(broker.bootstrap, f"{prefix}-workers", topics) or \
                consumer_lag(broker.bootstrap, f"{prefix}-workers", [f"{prefix}.alerts"]):
            assert worker.poll() is None, children.log_of(worker)[-3000:]
            assert time.monotonic() < deadline, f"the worker did not catch up (kills at {kills})"
            time.sleep(1.0)
        time.sleep(8)  # held symptoms are released once the input is quiet, then delivered
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
    finally:
        receiver.shutdown()
        receiver.server_close()

    why = f"(kills at {', '.join(f'{k:.1f}' for k in kills)} s)"
    expected = sent_rows(path)
    for dataset, key in KEYS.items():
        files = f"read_parquet('{data}/{dataset}/**/*.parquet', hive_partitioning = true)"
        rows, distinct = duckdb.execute(f"select count(*), count(distinct ({key})) from {files}").fetchone()
        assert rows == distinct, f"{dataset}: {rows - distinct} duplicate rows {why}"
        assert rows == expected[dataset], f"{dataset}: {rows} rows in Parquet, {expected[dataset]} sent {why}"

    lake = duckdb.execute(f"select kind, entity, status, epoch_ms(starts_at) "
                          f"from read_parquet('{data}/alerts/**/*.parquet')")
    assert set(lake.fetchall()) == offline_alerts(path), why

    pages = [(entry["headers"].get("Idempotency-Key"), entry["body"]) for entry in receiver.received]
    bodies = collections.defaultdict(list)
    for key, body in pages:
        bodies[key].append(body)
    assert all(key for key, _ in pages) and all(b == found[0] for found in bodies.values() for b in found), why
    firing = {(a, e) for a, e, s, _ in offline_alerts(path) if s == "firing" and a in ("switch_down", "node_down",
                                                                                       "card_failed")}
    paged = {(b["kind"], b["entity"]) for _, b in pages if b.get("status") == "firing"}
    assert firing <= paged, f"not paged: {firing - paged} {why}"
