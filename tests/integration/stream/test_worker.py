"""The worker against a real broker: simulator → topics → Faust agents → alerts topic and Parquet."""

from __future__ import annotations

import time
from pathlib import Path

import duckdb
import msgpack
import pytest
from kafka import KafkaProducer

from pipeline.model.schemas import Alert, encode_batch
from pipeline.model.topics import DLQ_OFFSET, DLQ_REASON, DLQ_TOPIC
from pipeline.ops.kafka_config import producer_config
from tests.builders import card_batch
from tests.conftest import ROOT, run_cli
from tests.kafka_helpers import read_until

pytestmark = pytest.mark.broker

SMALL_CLUSTER = {
    "CLUSTERPULSE_CLUSTER__CARDS": "64",
    "CLUSTERPULSE_CLUSTER__NODES_PER_LEAF": "4",
    "CLUSTERPULSE_CLUSTER__SPINES": "2",
}


def card_rows_sent(scenario: Path) -> int:
    """Card rows the simulator sends for the scenario (its realistic noise misses a few samples)."""
    from pipeline.model.schemas import decode_batch
    from producers.scenario import load_scenario
    from producers.simulator import Simulator

    return sum(
        batch.rows()
        for _, messages in Simulator(load_scenario(scenario)).ticks()
        for m in messages
        if (batch := decode_batch(m.value)).kind == "card"
    )


SMALL_CARD_ROWS = card_rows_sent(ROOT / "scenarios" / "card-failure-small.yaml")  # <= 64 x 60 - 40


def worker_env(bootstrap: str, prefix: str, data: Path) -> dict[str, str]:
    return {
        "CLUSTERPULSE_BOOTSTRAP": bootstrap,
        "CLUSTERPULSE_TOPIC_PREFIX": prefix,
        "CLUSTERPULSE_GROUP_ID": f"{prefix}-workers",
        "CLUSTERPULSE_DATA_DIR": str(data),
        "CLUSTERPULSE_PARTITIONS": "4",
        "CLUSTERPULSE_SINK__FLUSH_SECONDS": "1",
        "CLUSTERPULSE_LOG_LEVEL": "info",
        **SMALL_CLUSTER,
    }


def alive(children, *procs) -> callable:  # noqa: ANN001
    def check() -> str | None:
        for p in procs:
            if p.returncode is None and p.poll() is not None and p.returncode != 0:
                return f"process exited with {p.returncode}:\n{children.log_of(p)[-3000:]}"
        return None

    return check


def wait_for_rows(data: Path, dataset: str, sql: str, timeout_s: float = 60) -> list[tuple]:
    deadline = time.monotonic() + timeout_s
    while True:
        if list((data / dataset).glob("date=*/hour=*/*.parquet")):
            rows = duckdb.execute(sql.replace("{files}", f"'{data}/{dataset}/**/*.parquet'")).fetchall()
            if rows and rows[0][0]:
                return rows
        assert time.monotonic() < deadline, f"no {dataset} rows in {data} after {timeout_s} s"
        time.sleep(0.5)


def test_injected_card_failure_reaches_the_alerts_topic_and_parquet(broker, prefix, children, tmp_path) -> None:
    from pipeline.ops.broker import free_port

    data = tmp_path / "lake"
    env = {**worker_env(broker.bootstrap, prefix, data), "CLUSTERPULSE_HEALTH_PORT": str(free_port())}
    assert children.start("topics", env=env, name="topics").wait(timeout=60) == 0
    worker = children.start("worker", env=env, name="worker")
    sim = children.start(
        "simulate",
        "--scenario",
        str(ROOT / "scenarios" / "card-failure-small.yaml"),
        "--speed",
        "max",
        env=env,
        name="simulator",
    )

    records = read_until(
        broker.bootstrap,
        f"{prefix}.alerts",
        lambda rs: any(Alert.from_json(r.value).kind == "card_failed" for r in rs),
        alive=alive(children, worker, sim),
    )
    alerts = [Alert.from_json(r.value) for r in records]
    assert [(a.kind, a.entity, a.status) for a in alerts] == [("card_failed", "node0005-card2", "firing")]
    # at its fatal code (20 s), or, as this seed's failure is silent, once its 3 s of silence are up
    # (the collector's clock is skewed by a few milliseconds)
    assert "2026-01-01T00:00:20" <= alerts[0].starts_at <= "2026-01-01T00:00:23.1"
    assert records[0].key == alerts[0].id.encode()
    assert sim.wait(timeout=60) == 0

    # 8 nodes x 8 cards x 60 ticks, minus card 2 of node0005 from t = 20 s on, minus missed samples
    assert 64 * 60 - 40 - 100 < SMALL_CARD_ROWS <= 64 * 60 - 40
    rows = wait_for_rows(data, "card", "select count(*) from read_parquet({files})")
    deadline = time.monotonic() + 60
    while rows[0][0] < SMALL_CARD_ROWS and time.monotonic() < deadline:
        time.sleep(0.5)
        rows = wait_for_rows(data, "card", "select count(*) from read_parquet({files})")
    assert rows == [(SMALL_CARD_ROWS,)]
    wait_for_rows(data, "alerts", "select count(*) from read_parquet({files}) where kind = 'card_failed'")

    # the worker's own log: the alert as one line at info, no terminal escape codes; /healthz answers
    log = children.log_of(worker)
    assert f"alert {alerts[0].starts_at} FIRING   critical card_failed      node0005-card2" in log
    assert "\x1b" not in log
    import json
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{env['CLUSTERPULSE_HEALTH_PORT']}/healthz", timeout=5) as resp:
        health = json.loads(resp.read())
    assert health["ready"] is True and f"{prefix}.telemetry.card[0]" in health["partitions"]
    assert health["lag"].get(f"{prefix}.telemetry.card") == 0 and health["alerts"] == {"firing": 1}


def test_bad_messages_go_to_the_dead_letter_topic_and_good_ones_are_processed(
    broker, prefix, children, tmp_path
) -> None:
    data = tmp_path / "lake"
    env = worker_env(broker.bootstrap, prefix, data)
    assert children.start("topics", env=env, name="topics").wait(timeout=60) == 0
    worker = children.start("worker", env=env, name="worker")

    good_before = encode_batch(card_batch("node0001", 0, errors=[(3, 79)]))
    malformed = b"\x93not a batch"
    wrong_version = msgpack.packb({**msgpack.unpackb(good_before), "v": 99}, use_bin_type=True)
    unknown_entity = encode_batch(card_batch("node0999", 0))
    good_after = encode_batch(card_batch("node0002", 0, errors=[(1, 79)]))
    from pipeline.model.schemas import bundle

    half_known = encode_batch(bundle([card_batch("node0003", 0, errors=[(5, 79)]), card_batch("node0998", 0)], "rack"))
    topic = f"{prefix}.telemetry.card"
    producer = KafkaProducer(**producer_config(broker.bootstrap, "test"))
    try:  # one key: one partition, in this order, in one produce batch
        for value in (good_before, malformed, wrong_version, unknown_entity, good_after, half_known):
            producer.send(topic, key=b"mixed", value=value)
        producer.flush()
    finally:
        producer.close()

    dead = read_until(broker.bootstrap, f"{prefix}.deadletter", lambda rs: len(rs) >= 4, alive=alive(children, worker))
    reasons = {}
    for record in dead:
        headers = dict(record.headers)
        assert headers[DLQ_TOPIC].decode() == topic
        reasons[int(headers[DLQ_OFFSET])] = headers[DLQ_REASON].decode()
    assert sorted(reasons) == [1, 2, 3, 5]
    assert "not msgpack" in reasons[1] or "expected a map" in reasons[1]
    assert "unsupported schema version 99" in reasons[2]
    assert "unknown entity" in reasons[3] and "node0999" in reasons[3]
    assert "node0998" in reasons[5] and "the other 1 sources of the message were processed" in reasons[5]
    assert [r.value for r in sorted(dead, key=lambda r: int(dict(r.headers)[DLQ_OFFSET]))] == [
        malformed,
        wrong_version,
        unknown_entity,
        half_known,
    ]

    alerts = read_until(broker.bootstrap, f"{prefix}.alerts", lambda rs: len(rs) >= 3, alive=alive(children, worker))
    assert sorted(Alert.from_json(r.value).entity for r in alerts) == [
        "node0001-card3",
        "node0002-card1",
        "node0003-card5",
    ]
    rows = wait_for_rows(data, "card", "select count(distinct node), count(*) from read_parquet({files})")
    deadline = time.monotonic() + 30
    while rows != [(3, 24)] and time.monotonic() < deadline:
        time.sleep(0.5)
        rows = wait_for_rows(data, "card", "select count(distinct node), count(*) from read_parquet({files})")
    assert rows == [(3, 24)]  # the known node of the half-known collector message is in the lake
    assert worker.poll() is None, "a bad message must not stop the worker"


def lake_rows(lake: Path, dataset: str) -> int:
    return duckdb.execute(f"select count(*) from read_parquet('{lake}/{dataset}/**/*.parquet')").fetchall()[0][0]


@pytest.mark.slow
def test_the_readme_walkthrough_twice_loses_nothing_and_says_when_delivery_fails(tmp_path) -> None:
    """`run` twice into one data directory (the second time with a receiver that refuses every
    notification): both runs' lakes stay whole, the refusals are printed as they happen, counted
    per receiver, make `run` exit 1, and `alerts replay --data` delivers them after the run."""
    import threading

    from pipeline.notify.receiver import WebhookReceiver
    from pipeline.ops.broker import free_port

    data = tmp_path / "data"
    scenario = str(ROOT / "scenarios" / "card-failure-small.yaml")
    first = run_cli("run", "--scenario", scenario, "--speed", "max", "--data", str(data), timeout=240)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "FIRING   critical card_failed      node0005-card2" in first.stdout
    [first_lake] = [p for p in data.iterdir() if p.name.startswith("run-")]
    assert f"clusterpulse query --data {first_lake}" in first.stderr
    files_before = sorted(first_lake.rglob("*.parquet"))
    assert lake_rows(first_lake, "card") == SMALL_CARD_ROWS and lake_rows(first_lake, "alerts") == 1

    receiver = WebhookReceiver("127.0.0.1", free_port(), echo=None, secret=b"right")
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    try:
        receivers = f'[{{"name": "ops", "url": "{receiver.url}hook", "secret_env": "OPS_SECRET"}}]'
        unset = run_cli(
            "run",
            "--scenario",
            scenario,
            "--data",
            str(data),
            env={"CLUSTERPULSE_NOTIFY__RECEIVERS": receivers},
            timeout=60,
        )
        assert unset.returncode == 2 and "environment variable OPS_SECRET is not set" in unset.stderr
        second = run_cli(
            "run",
            "--scenario",
            scenario,
            "--speed",
            "max",
            "--data",
            str(data),
            env={"CLUSTERPULSE_NOTIFY__RECEIVERS": receivers, "OPS_SECRET": "wrong"},
            timeout=240,
        )
        assert second.returncode == 1, second.stderr[-3000:]
        assert (
            "NOT DELIVERED to receiver ops: card_failed node0005-card2 firing after 1 attempt(s): HTTP 401"
            in second.stderr
        )
        assert "receiver ops: 0 delivered, 1 failed (dead-lettered)" in second.stderr
        assert receiver.rejected == 1 and receiver.received == []

        assert sorted(first_lake.rglob("*.parquet")) == files_before  # the first run's lake is untouched
        assert lake_rows(first_lake, "card") == SMALL_CARD_ROWS and lake_rows(first_lake, "alerts") == 1
        second_lake = max(p for p in data.iterdir() if p.name.startswith("run-"))
        assert second_lake != first_lake and lake_rows(second_lake, "card") == SMALL_CARD_ROWS

        replay = run_cli(
            "alerts",
            "replay",
            "--data",
            str(data),
            env={"CLUSTERPULSE_NOTIFY__RECEIVERS": receivers, "OPS_SECRET": "right"},
        )
        assert replay.returncode == 0, replay.stderr
        assert f"reading {second_lake}" in replay.stderr and "replayed 1 notification;" in replay.stderr
        assert [(r["body"]["entity"], r["body"]["status"]) for r in receiver.received] == [("node0005-card2", "firing")]
        again = run_cli(
            "alerts",
            "replay",
            "--data",
            str(second_lake),
            env={"CLUSTERPULSE_NOTIFY__RECEIVERS": receivers, "OPS_SECRET": "right"},
        )
        assert "replayed 0 notifications;" in again.stderr and len(receiver.received) == 1
    finally:
        receiver.shutdown()
        receiver.server_close()


def test_detector_state_survives_a_worker_restart(broker, prefix, children, tmp_path) -> None:
    """A card failed before the restart; healthy reports after it resolve the alert, which only
    works if the new worker knows the card had failed."""
    from pipeline.stream.partition_state import read_snapshots

    data = tmp_path / "lake"
    env = worker_env(broker.bootstrap, prefix, data)
    assert children.start("topics", env=env, name="topics").wait(timeout=60) == 0
    topic = f"{prefix}.telemetry.card"
    producer = KafkaProducer(**producer_config(broker.bootstrap, "test"))

    def send(batches: list) -> None:
        for b in batches:
            producer.send(topic, key=b.source.encode(), value=encode_batch(b))
        producer.flush()

    try:
        first = children.start("worker", env=env, name="worker-1")
        send([card_batch("node0001", 0, errors=[(3, 79)])] + [card_batch("node0001", t) for t in range(1, 5)])
        alerts = f"{prefix}.alerts"
        read_until(broker.bootstrap, alerts, lambda rs: len(rs) >= 1, alive=alive(children, first))
        deadline = time.monotonic() + 60
        while not read_snapshots(broker.bootstrap, f"{prefix}.state"):
            assert time.monotonic() < deadline, "no detector state saved"
            time.sleep(0.5)
        first.terminate()
        assert first.wait(timeout=30) in (0, -15)

        second = children.start("worker", env=env, name="worker-2")
        send([card_batch("node0001", t) for t in range(5, 40)])
        records = read_until(broker.bootstrap, alerts, lambda rs: len(rs) >= 2, alive=alive(children, second))
    finally:
        producer.close()
    states = [(Alert.from_json(r.value).entity, Alert.from_json(r.value).status) for r in records]
    assert states == [("node0001-card3", "firing"), ("node0001-card3", "resolved")]
    assert "restored detector state" in children.log_of(second)


def test_a_jobs_nccl_watchdog_timeouts_through_kafka_page_its_hang_and_land_in_the_lake(
    broker, prefix, children, tmp_path
) -> None:
    """`clusterpulse ingest nccl` into a running worker: the timeouts travel in step messages, the
    hang watch judges them once nothing more comes (the cluster is otherwise quiet), and the lake
    keeps each rank's timeout."""
    from tests.unit.producers.test_nccl_log import watchdog

    data = tmp_path / "lake"
    env = worker_env(broker.bootstrap, prefix, data)
    assert children.start("topics", env=env, name="topics").wait(timeout=60) == 0
    worker = children.start("worker", env=env, name="worker")
    log = tmp_path / "gpt.log"
    log.write_text("\n".join(watchdog(rank, 1580, 600060) for rank in range(16) if rank != 11) + "\n")
    ingest = children.start("ingest", "nccl", str(log), "--job", "gpt", env=env, name="ingest")
    assert ingest.wait(timeout=60) == 0, children.log_of(ingest)[-3000:]
    records = read_until(
        broker.bootstrap,
        f"{prefix}.alerts",
        lambda rs: any(Alert.from_json(r.value).kind == "job_hang" for r in rs),
        alive=alive(children, worker),
    )
    [hang] = [Alert.from_json(r.value) for r in records]
    assert (hang.kind, hang.entity, hang.status) == ("job_hang", "gpt", "firing")
    assert hang.evidence["timed_out_ranks"] == 15 and hang.evidence["ranks_not_timed_out_listed"] == [11]
    rows = wait_for_rows(data, "step_timeouts", "select count(*), count(distinct rank) from read_parquet({files})")
    assert rows == [(15, 15)]
