"""Scale-out against a real broker: two workers in one group give the same alerts as the offline
core (= one worker), and a worker joining and another leaving mid-stream lose no sample, no
detector state and no alert."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import duckdb
import pytest
import yaml

from pipeline.eval.evaluate import run_offline
from pipeline.model.schemas import Alert, decode_batch
from pipeline.ops.processes import consumer_lag
from pipeline.settings import load_settings
from producers.output import read_message_file
from producers.scenario import load_scenario
from tests.conftest import run_cli
from tests.kafka_helpers import read_until

pytestmark = pytest.mark.broker

CLUSTER = {"cards": 256, "cards_per_node": 8, "nodes_per_leaf": 8, "spines": 2}  # 32 nodes, 32 leaves
SCENARIO = {
    "name": "scale-out",
    "seed": 11,
    "duration_s": 150,
    "cluster": CLUSTER,
    "jobs": [
        {"name": "pretrain", "first_node": 0, "nodes": 20, "step_s": 1.0},
        {"name": "finetune", "first_node": 20, "nodes": 10, "step_s": 0.8},
    ],
    "faults": [
        {"kind": "card_failure", "target": "node0003-card2", "start_s": 15, "duration_s": 40},
        {"kind": "straggler", "target": "node0012-card5", "start_s": 20, "duration_s": 60, "severity": 0.25},
        {"kind": "node_failure", "target": "node0030", "start_s": 50, "duration_s": 30},
        {"kind": "switch_failure", "target": "leaf005", "start_s": 70, "duration_s": 30},
        {"kind": "link_flap", "target": "node0025-nic1~leaf007", "start_s": 90, "duration_s": 40},
        {"kind": "thermal_throttle", "target": "node0007-card4", "start_s": 100, "severity": 0.6},
    ],
}
KEYS = {"card": "node, card, ts", "step": "job, rank, step", "port": "switch, port, ts"}  # one row each


def identity(alert: Alert) -> tuple:
    return (alert.kind, alert.entity, alert.status, alert.starts_at, alert.ends_at, alert.root_cause)


@pytest.fixture
def scenario(tmp_path: Path) -> tuple[Path, Path, list[Alert], dict[str, int]]:
    """The scenario file, its messages in a file, the offline alerts and the samples per dataset."""
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(SCENARIO))
    messages = tmp_path / "scenario.msgs"
    done = run_cli("simulate", "--scenario", str(path), "--speed", "max", "--out", str(messages))
    assert done.returncode == 0, done.stderr
    rows = {"card": 0, "step": 0, "port": 0}
    for message in read_message_file(messages):
        for batch in decode_batch(message.value).split():
            rows[batch.kind] += batch.rows()
    offline = run_offline(load_scenario(path), load_settings({}, environ={}))
    assert {a.kind for a in offline} >= {
        "card_failed",
        "straggler",
        "node_down",
        "switch_down",
        "link_flapping",
        "thermal_throttle",
    }
    return path, messages, offline, rows


def settings_env(broker, prefix: str, lake: Path) -> dict[str, str]:  # noqa: ANN001
    return {
        "CLUSTERPULSE_BOOTSTRAP": broker.bootstrap,
        "CLUSTERPULSE_TOPIC_PREFIX": prefix,
        "CLUSTERPULSE_GROUP_ID": f"{prefix}-workers",
        "CLUSTERPULSE_DATA_DIR": str(lake),
        "CLUSTERPULSE_PARTITIONS": "4",
        "CLUSTERPULSE_SINK__FLUSH_SECONDS": "2",
        "CLUSTERPULSE_CLUSTER__CARDS": "256",
        "CLUSTERPULSE_CLUSTER__NODES_PER_LEAF": "8",
        "CLUSTERPULSE_CLUSTER__SPINES": "2",
        "CLUSTERPULSE_LOG_LEVEL": "info",
    }


def drained(broker, prefix: str, children, workers, expected_alerts: int, timeout_s: float = 240) -> list[Alert]:  # noqa: ANN001
    """Wait until the group has committed every telemetry message, finding and alert, and the
    alerts topic holds as many records as expected; return them."""
    topics = [f"{prefix}.telemetry.{k}" for k in ("card", "step", "port")] + [f"{prefix}.findings"]
    deadline = time.monotonic() + timeout_s
    while consumer_lag(broker.bootstrap, f"{prefix}-workers", topics) > 0:
        for w in workers:
            assert w.poll() is None, children.log_of(w)[-3000:]
        assert time.monotonic() < deadline, "the workers did not drain"
        time.sleep(1)
    records = read_until(
        broker.bootstrap,
        f"{prefix}.alerts",
        lambda rs: len(rs) >= expected_alerts,
        timeout_s=max(deadline - time.monotonic(), 30),
    )
    time.sleep(3)  # anything beyond the expected count (a duplicate) would show up now
    first = len(records)
    records = read_until(broker.bootstrap, f"{prefix}.alerts", lambda rs: len(rs) >= first, timeout_s=10)
    while consumer_lag(broker.bootstrap, f"{prefix}-workers", [f"{prefix}.alerts"]) > 0:
        assert time.monotonic() < deadline, "the alert sink did not commit"
        time.sleep(1)
    return [Alert.from_json(r.value) for r in records]


def assert_lake_has_every_sample_once(lake: Path, rows: dict[str, int]) -> None:
    for dataset, key in KEYS.items():
        files = f"'{lake}/{dataset}/**/*.parquet'"
        total, distinct = duckdb.execute(
            f"select count(*), count(distinct ({key})) from read_parquet({files})"
        ).fetchone()
        assert (total, distinct) == (rows[dataset], rows[dataset]), dataset


def test_two_workers_give_the_alerts_of_one(broker, prefix, children, tmp_path, scenario) -> None:
    path, messages, offline, rows = scenario
    env = settings_env(broker, prefix, tmp_path / "lake")
    assert children.start("topics", env=env, name="topics").wait(timeout=60) == 0
    workers = [children.start("worker", env=env, name=f"worker{i}") for i in range(2)]
    time.sleep(8)  # both join the group before the stream starts
    assert run_cli("replay", str(messages), env=env, timeout=120).returncode == 0
    alerts = drained(broker, prefix, children, workers, len(offline))
    assert sorted(map(identity, alerts)) == sorted(map(identity, offline))
    assert_lake_has_every_sample_once(tmp_path / "lake", rows)


@pytest.mark.slow
def test_a_worker_joining_and_one_leaving_mid_stream_lose_nothing(broker, prefix, children, tmp_path, scenario) -> None:
    path, messages, offline, rows = scenario
    env = settings_env(broker, prefix, tmp_path / "lake")
    assert children.start("topics", env=env, name="topics").wait(timeout=60) == 0
    first = children.start("worker", env=env, name="first")
    time.sleep(6)
    replay = children.start("replay", str(messages), "--speed", "5", env=env, name="replay")  # 150 s in 30 s
    time.sleep(8)
    second = children.start("worker", env=env, name="second")  # joins: partitions move to it
    time.sleep(10)
    first.send_signal(signal.SIGTERM)  # leaves: its partitions, detector state and held findings move
    assert first.wait(timeout=40) == 0, children.log_of(first)[-3000:]
    assert replay.wait(timeout=120) == 0, children.log_of(replay)[-2000:]
    alerts = drained(broker, prefix, children, [second], len(offline))
    got, want = sorted(map(identity, alerts)), sorted(map(identity, offline))
    assert got == want, (
        f"extra: {[a for a in got if a not in want]}; missing: {[a for a in want if a not in got]}; "
        f"duplicates: {len(got) - len(set(got))}"
    )
    assert_lake_has_every_sample_once(tmp_path / "lake", rows)
