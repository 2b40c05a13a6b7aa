"""Alerts from a running pipeline reach a signed webhook receiver (a real process) and a real
Alertmanager (Debian's prometheus-alertmanager), fire and resolve; dead letters replay."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from pipeline.ops.broker import free_port, stop_process
from tests.conftest import run_cli
from tests.kafka_helpers import read_until

AM_BIN = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
SCENARIO = {
    "name": "card-fails",
    "seed": 4,
    "duration_s": 40,
    "cluster": {"cards": 64, "cards_per_node": 8, "nodes_per_leaf": 4, "spines": 2},
    "jobs": [{"name": "train", "first_node": 0, "nodes": 8, "step_s": 1.0}],
    "faults": [{"kind": "card_failure", "target": "node0005-card2", "start_s": 20}],
}


def get_json(url: str):  # noqa: ANN201
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())


def wait_for(what: str, check, timeout_s: float = 90, alive=lambda: None):  # noqa: ANN001, ANN201
    deadline = time.monotonic() + timeout_s
    while True:
        problem = alive()
        assert problem is None, problem
        try:
            value = check()
        except OSError:
            value = None
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


@pytest.fixture
def alertmanager(tmp_path: Path):
    if AM_BIN is None:
        pytest.skip(
            "prometheus-alertmanager is not installed (Debian package prometheus-alertmanager; "
            "`make test` installs it when run as root with apt)"
        )
    port = free_port()
    config = tmp_path / "am.yml"
    config.write_text(
        yaml.safe_dump({"route": {"receiver": "null", "group_wait": "1s"}, "receivers": [{"name": "null"}]})
    )
    proc = subprocess.Popen(
        [
            AM_BIN,
            f"--config.file={config}",
            f"--storage.path={tmp_path / 'am-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        stdout=open(tmp_path / "am.log", "wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for("alertmanager", lambda: urllib.request.urlopen(url + "/-/ready", timeout=2).status == 200, 30)
        yield url
    finally:
        stop_process(proc, 10)


@pytest.mark.broker
def test_pipeline_alerts_reach_a_signed_webhook_and_alertmanager(
    broker, prefix, children, tmp_path, alertmanager
) -> None:
    port = free_port()
    receiver = children.start(
        "receiver",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--secret-env",
        "HOOK_SECRET",
        "--out",
        str(tmp_path / "hooks.jsonl"),
        env={"HOOK_SECRET": "s3cret"},
        name="receiver",
    )
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(yaml.safe_dump(SCENARIO))
    config = tmp_path / "settings.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "bootstrap": broker.bootstrap,
                "topic_prefix": prefix,
                "group_id": f"{prefix}-w",
                "partitions": 4,
                "data_dir": str(tmp_path / "lake"),
                "cluster": SCENARIO["cluster"],
                "notify": {
                    "receivers": [
                        {"name": "ops", "url": f"http://127.0.0.1:{port}/hook", "secret_env": "HOOK_SECRET"},
                        {"name": "am", "url": alertmanager, "type": "alertmanager"},
                    ]
                },
            }
        )
    )
    env = {"CLUSTERPULSE_CONFIG": str(config), "HOOK_SECRET": "s3cret"}
    assert children.start("topics", env=env, name="topics").wait(timeout=60) == 0
    worker = children.start("worker", env=env, name="worker")
    wait_for("the receiver", lambda: get_json(f"http://127.0.0.1:{port}/healthz"), 30)
    children.start("simulate", "--scenario", str(scenario), "--speed", "max", env=env, name="simulator")

    def alive() -> str | None:
        return None if worker.poll() is None else f"worker exited:\n{children.log_of(worker)[-3000:]}"

    def am_alerts() -> list:
        return [a for a in get_json(alertmanager + "/api/v2/alerts") if a["labels"].get("alertname") == "card_failed"]

    [active] = wait_for("the alert in Alertmanager", am_alerts, alive=alive)
    assert active["labels"]["entity"] == "node0005-card2" and active["labels"]["severity"] == "critical"
    assert active["labels"]["node"] == "node0005" and active["startsAt"].startswith("2026-01-01T00:00:20")
    assert active["status"]["state"] == "active"

    # the card comes back: every node reports all its cards for 40 more seconds
    from kafka import KafkaProducer

    from pipeline.model.schemas import encode_batch
    from pipeline.ops.kafka_config import producer_config
    from tests.builders import card_batch

    producer = KafkaProducer(**producer_config(broker.bootstrap, "t"))
    from pipeline.model.schemas import bundle

    for t in range(40, 80):  # as the simulator sends them: one message per rack (4 nodes), same keys
        for first in (0, 4):
            rack = f"node{first:04d}..node{first + 3:04d}"
            producer.send(
                f"{prefix}.telemetry.card",
                key=rack.encode(),
                value=encode_batch(bundle([card_batch(f"node{n:04d}", t) for n in range(first, first + 4)], rack)),
            )
    producer.flush()
    producer.close()

    received = wait_for(
        "firing and resolved at the webhook",
        lambda: (r := get_json(f"http://127.0.0.1:{port}/received")) and len(r) >= 2 and r,
        alive=alive,
    )
    assert [(r["body"]["kind"], r["body"]["entity"], r["body"]["status"]) for r in received] == [
        ("card_failed", "node0005-card2", "firing"),
        ("card_failed", "node0005-card2", "resolved"),
    ]
    assert all(r["headers"].get("Idempotency-Key", "").startswith(received[0]["body"]["id"]) for r in received)
    wait_for("the alert to resolve in Alertmanager", lambda: am_alerts() == [] or None, alive=alive)
    assert receiver.poll() is None


@pytest.mark.broker
def test_dead_lettered_notifications_replay_once(broker, prefix, children, tmp_path) -> None:
    from kafka import KafkaProducer

    from pipeline.model.schemas import encode_batch
    from pipeline.ops.kafka_config import producer_config
    from tests.builders import card_batch

    port = free_port()  # nothing listens here yet: delivery fails and is dead-lettered
    config = tmp_path / "settings.yaml"
    settings = {
        "bootstrap": broker.bootstrap,
        "topic_prefix": prefix,
        "group_id": f"{prefix}-w",
        "partitions": 2,
        "data_dir": str(tmp_path / "lake"),
        "cluster": SCENARIO["cluster"],
        "notify": {
            "receivers": [{"name": "ops", "url": f"http://127.0.0.1:{port}/hook", "max_attempts": 2, "backoff_s": 0.1}]
        },
    }
    config.write_text(yaml.safe_dump(settings))
    env = {"CLUSTERPULSE_CONFIG": str(config)}
    assert children.start("topics", env=env, name="topics").wait(timeout=60) == 0
    worker = children.start("worker", env=env, name="worker")
    producer = KafkaProducer(**producer_config(broker.bootstrap, "t"))
    producer.send(
        f"{prefix}.telemetry.card", key=b"node0003", value=encode_batch(card_batch("node0003", 0, errors=[(1, 79)]))
    )
    producer.flush()
    producer.close()
    dead = read_until(
        broker.bootstrap,
        f"{prefix}.notify.deadletter",
        lambda rs: len(rs) >= 1,
        alive=lambda: None if worker.poll() is None else children.log_of(worker)[-2000:],
    )
    entry = json.loads(dead[0].value)
    assert entry["receiver"] == "ops" and entry["attempts"] == 2 and entry["alert"]["entity"] == "node0003-card1"

    receiver = children.start("receiver", "--host", "127.0.0.1", "--port", str(port), name="receiver")
    wait_for("the receiver", lambda: get_json(f"http://127.0.0.1:{port}/healthz"), 30)
    replay = run_cli("--config", str(config), "alerts", "replay")
    assert replay.returncode == 0, replay.stderr
    assert "replayed 1 notification;" in replay.stderr
    again = run_cli("--config", str(config), "alerts", "replay")
    assert "replayed 0 notifications;" in again.stderr
    got = get_json(f"http://127.0.0.1:{port}/received")
    assert [(r["body"]["entity"], r["body"]["status"]) for r in got] == [("node0003-card1", "firing")]
    assert receiver.poll() is None


@pytest.mark.broker
def test_a_notification_pending_at_a_worker_restart_is_delivered_after_it(broker, prefix, children, tmp_path) -> None:
    from kafka import KafkaProducer

    from pipeline.model.schemas import encode_batch
    from pipeline.ops.kafka_config import producer_config
    from tests.builders import card_batch

    port = free_port()  # the receiver is down while the first worker tries, with retries for minutes
    config = tmp_path / "settings.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "bootstrap": broker.bootstrap,
                "topic_prefix": prefix,
                "group_id": f"{prefix}-w",
                "partitions": 2,
                "data_dir": str(tmp_path / "lake"),
                "cluster": SCENARIO["cluster"],
                "shutdown_timeout_s": 5,
                "notify": {
                    "receivers": [
                        {
                            "name": "ops",
                            "url": f"http://127.0.0.1:{port}/hook",
                            "max_attempts": 1000,
                            "backoff_s": 0.2,
                            "max_backoff_s": 0.5,
                            "deadline_s": 600,
                        }
                    ]
                },
            }
        )
    )
    env = {"CLUSTERPULSE_CONFIG": str(config)}
    assert children.start("topics", env=env, name="topics").wait(timeout=60) == 0
    first = children.start("worker", env=env, name="worker-1")
    producer = KafkaProducer(**producer_config(broker.bootstrap, "t"))
    producer.send(
        f"{prefix}.telemetry.card", key=b"node0003", value=encode_batch(card_batch("node0003", 0, errors=[(1, 79)]))
    )
    producer.flush()
    producer.close()
    read_until(
        broker.bootstrap,
        f"{prefix}.alerts",
        lambda rs: len(rs) >= 1,
        alive=lambda: None if first.poll() is None else children.log_of(first)[-2000:],
    )
    wait_for("a failed delivery attempt", lambda: "retry" in children.log_of(first), 30)
    stop_process(first, 20)

    receiver = children.start("receiver", "--host", "127.0.0.1", "--port", str(port), name="receiver")
    wait_for("the receiver", lambda: get_json(f"http://127.0.0.1:{port}/healthz"), 30)
    second = children.start("worker", env=env, name="worker-2")
    got = wait_for(
        "the delivery after the restart",
        lambda: get_json(f"http://127.0.0.1:{port}/received"),
        alive=lambda: None if second.poll() is None else children.log_of(second)[-2000:],
    )
    assert [(r["body"]["entity"], r["body"]["status"]) for r in got] == [("node0003-card1", "firing")]
    assert receiver.poll() is None
