"""Silences end to end against real processes: the CLI writes them to the broker, every worker
follows them, the correlator marks what they cover, no receiver is paged for it, a restart keeps
them, and an expired silence lets what still fires page; the worker's /api/silences with its token."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from kafka import KafkaProducer

from pipeline.model.schemas import Alert, encode_batch
from pipeline.notify.receiver import WebhookReceiver
from pipeline.ops.broker import free_port
from pipeline.ops.kafka_config import producer_config
from tests.builders import card_batch
from tests.conftest import run_cli
from tests.integration.stream.test_worker import alive, worker_env
from tests.kafka_helpers import read_until

pytestmark = pytest.mark.broker
TOKEN = "s3cret-token"


@pytest.fixture
def hooks() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver("127.0.0.1", free_port(), echo=None)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    try:
        yield receiver
    finally:
        receiver.shutdown()
        receiver.server_close()


def env_of(broker, prefix: str, data: Path, hooks: WebhookReceiver, health_port: int) -> dict[str, str]:  # noqa: ANN001
    return {
        **worker_env(broker.bootstrap, prefix, data),
        "CLUSTERPULSE_HEALTH_PORT": str(health_port),
        "CLUSTERPULSE_API_TOKEN_ENV": "SILENCE_TOKEN",
        "SILENCE_TOKEN": TOKEN,
        "CLUSTERPULSE_NOTIFY__RECEIVERS": json.dumps([{"name": "ops", "url": f"{hooks.url}hook", "group_wait_s": 0}]),
    }


def send_cards(bootstrap: str, topic: str, *batches) -> None:  # noqa: ANN002
    producer = KafkaProducer(**producer_config(bootstrap, "test"))
    try:
        for batch in batches:
            producer.send(topic, key=batch.source.encode(), value=encode_batch(batch))
        producer.flush()
    finally:
        producer.close()


def api(port: int, path: str, method: str = "GET", body: dict | None = None, token: str | None = None) -> tuple:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=json.dumps(body).encode() if body is not None else None,
        method=method,
        headers={"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def wait_for(what: str, check, timeout_s: float = 60, alive_check=lambda: None):  # noqa: ANN001, ANN201
    deadline = time.monotonic() + timeout_s
    while True:
        problem = alive_check()
        assert problem is None, problem
        try:
            found = check()
        except (OSError, ValueError):  # the worker's port is not up yet
            found = None
        if found:
            return found
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.5)


def pages(hooks: WebhookReceiver) -> list[tuple[str, str]]:
    with hooks.lock:
        return [(r["body"]["entity"], r["body"]["status"]) for r in hooks.received]


def test_a_silence_holds_on_every_worker_across_a_restart_and_its_end_lets_what_still_fires_page(
    broker, prefix, children, tmp_path, hooks
) -> None:
    data = tmp_path / "lake"
    ports = [free_port(), free_port()]
    envs = [env_of(broker, prefix, data, hooks, port) for port in ports]
    assert children.start("topics", env=envs[0], name="topics").wait(timeout=60) == 0
    workers = [children.start("worker", env=env, name=f"worker-{i}") for i, env in enumerate(envs)]
    up = alive(children, *workers)

    added = run_cli(
        "silence",
        "add",
        "--match",
        "node=node0001",
        "--duration",
        "2h",
        "--comment",
        "card swap",
        "--author",
        "test-ops",
        env=envs[0],
    )
    assert added.returncode == 0, added.stderr
    silence_id = added.stdout.strip()
    for port in ports:  # every worker knows it
        wait_for(
            f"the silence on :{port}",
            lambda p=port: any(s["id"] == silence_id for s in api(p, "/api/silences")[1]),
            alive_check=up,
        )
    listed = run_cli("silence", "list", env=envs[0])
    assert silence_id in listed.stdout and "node=node0001" in listed.stdout and "active" in listed.stdout

    topic = f"{prefix}.telemetry.card"
    send_cards(
        broker.bootstrap,
        topic,
        card_batch("node0001", 0, errors=[(3, 79)]),
        card_batch("node0002", 0, errors=[(1, 79)]),
    )
    records = read_until(broker.bootstrap, f"{prefix}.alerts", lambda rs: len(rs) >= 2, alive=up)
    alerts = {Alert.from_json(r.value).entity: Alert.from_json(r.value) for r in records}
    assert alerts["node0001-card3"].silenced_by == (silence_id,) and alerts["node0002-card1"].silenced_by == ()
    wait_for("node0002's page", lambda: ("node0002-card1", "firing") in pages(hooks), alive_check=up)

    for worker in workers:  # both stop; new workers read the silence back from the topic
        worker.terminate()
        assert worker.wait(timeout=60) == 0
    workers = [children.start("worker", env=env, name=f"worker-again-{i}") for i, env in enumerate(envs)]
    up = alive(children, *workers)
    for port in ports:
        wait_for(
            f"the silence on :{port} after the restart",
            lambda p=port: any(s["id"] == silence_id for s in api(p, "/api/silences")[1]),
            alive_check=up,
        )
    send_cards(broker.bootstrap, topic, card_batch("node0001", 1, errors=[(5, 79)]))
    records = read_until(broker.bootstrap, f"{prefix}.alerts", lambda rs: len(rs) >= 3, alive=up)
    later = Alert.from_json(records[-1].value)
    assert later.entity == "node0001-card5" and later.silenced_by == (silence_id,)
    assert all(entity.startswith("node0002") for entity, _ in pages(hooks))  # node0001 paged no one

    expired = run_cli("silence", "expire", silence_id, env=envs[0])
    assert expired.returncode == 0, expired.stderr
    wait_for(
        "node0001's cards paging once the silence ended",
        lambda: {("node0001-card3", "firing"), ("node0001-card5", "firing")} <= set(pages(hooks)),
        timeout_s=90,
        alive_check=up,
    )
    assert "active" not in run_cli("silence", "list", "--all", env=envs[0]).stdout

    # every change, with its author, in the lake's silences dataset
    def changes() -> list[tuple]:
        files = list((data / "silences").glob("date=*/hour=*/*.parquet"))
        if not files:
            return []
        return duckdb.execute(
            f"select id, created_by, matchers from read_parquet('{data}/silences/**/*.parquet') order by ts"
        ).fetchall()

    rows = wait_for("the silence changes in the lake", lambda: len(changes()) >= 2 and changes(), alive_check=up)
    assert [(r[0], r[1], list(r[2])) for r in rows] == [(silence_id, "test-ops", ["node=node0001"])] * 2


def test_the_worker_api_takes_silences_with_its_token_only(broker, prefix, children, tmp_path, hooks) -> None:
    port = free_port()
    env = env_of(broker, prefix, tmp_path / "lake", hooks, port)
    assert children.start("topics", env=env, name="topics").wait(timeout=60) == 0
    worker = children.start("worker", env=env, name="worker")
    up = alive(children, worker)
    wait_for("the worker's API", lambda: api(port, "/api/silences")[0] == 200, alive_check=up)
    body = {
        "matchers": [{"name": "switch", "value": "leaf00[0-3]", "isRegex": True, "isEqual": True}],
        "startsAt": "2026-01-01T00:00:00Z",
        "endsAt": "2099-01-01T00:00:00Z",
        "createdBy": "api-test",
        "comment": "leaf firmware",
    }
    assert api(port, "/api/silences", "POST", body)[0] == 401  # no token
    assert api(port, "/api/silences", "POST", body, token="wrong")[0] == 401
    status, answer = api(port, "/api/silences", "POST", {**body, "comment": ""}, token=TOKEN)
    assert status == 400 and "comment" in answer["error"]
    status, answer = api(port, "/api/silences", "POST", body, token=TOKEN)
    assert status == 200
    silence_id = answer["silenceID"]
    listed = run_cli("silence", "list", "--json", env=env)
    [shown] = json.loads(listed.stdout)
    assert shown["id"] == silence_id and shown["status"]["state"] == "active" and shown["createdBy"] == "api-test"
    assert api(port, f"/api/silences/{silence_id}", "DELETE")[0] == 401
    status, answer = api(port, f"/api/silences/{silence_id}", "DELETE", token=TOKEN)
    assert status == 200 and answer["status"]["state"] == "expired"
    assert api(port, "/api/silences/no-such-id", "DELETE", token=TOKEN)[0] == 404
    assert json.loads(run_cli("silence", "list", "--json", env=env).stdout) == []  # expired: not listed
    assert worker.poll() is None
