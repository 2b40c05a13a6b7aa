"""The worker's GET /metrics: what it counts for a known mix of good and bad messages, and a real
Prometheus (Debian's `prometheus`) scraping it."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import msgpack
import pytest
from kafka import KafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from pipeline.model.schemas import InvalidRecord, bundle, decode_batch, encode_batch
from pipeline.ops.broker import free_port, stop_process
from pipeline.ops.kafka_config import producer_config
from pipeline.settings import IntakeSettings
from pipeline.stream.intake import check_time
from tests.builders import START_MS, card_batch
from tests.conftest import Children
from tests.integration.stream.test_worker import alive, worker_env
from tests.kafka_helpers import read_until

PROMETHEUS = shutil.which("prometheus")


def test_dead_letter_reasons_fall_into_a_few_classes() -> None:
    def reason_class(payload: bytes) -> str:
        with pytest.raises(InvalidRecord) as caught:
            decode_batch(payload)
        return caught.value.reason_class

    good = encode_batch(card_batch())
    assert reason_class(b"") == "empty"
    assert reason_class(b"\xc1") == "not_msgpack"
    assert reason_class(msgpack.packb([1])) == "not_a_map"
    assert reason_class(msgpack.packb({**msgpack.unpackb(good), "v": 9})) == "schema_version"
    assert reason_class(msgpack.packb({**msgpack.unpackb(good), "k": "nope"})) == "unknown_kind"
    assert reason_class(msgpack.packb({**msgpack.unpackb(good), "src": 3})) == "bad_field"
    assert reason_class(msgpack.packb({**msgpack.unpackb(good), "c": {}})) == "bad_columns"
    late, ahead, seconds = card_batch(), card_batch(), card_batch()
    ahead.ts_ms = START_MS + 10**9
    seconds.ts_ms = START_MS // 1000
    classes = []
    for batch, newest in ((late, START_MS + 10**8), (ahead, -1), (seconds, -1)):
        with pytest.raises(InvalidRecord) as caught:
            check_time(batch, START_MS, newest, IntakeSettings())
        classes.append(caught.value.reason_class)
    assert classes == ["too_late", "time_ahead", "time_unit"]
    assert InvalidRecord("something new").reason_class == "other"


@pytest.fixture(scope="module")
def metered(broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:  # noqa: ANN001
    """A worker with its health port, fed 6 card messages: 3 good (one with an unknown source beside
    a known one), a malformed one, one of schema version 99 and one of an unknown node. Yields the
    metrics URL and the card topic, once the worker has written the good rows."""
    tmp = tmp_path_factory.mktemp("metrics")
    prefix = f"m{int(time.time() * 1000) % 10**9}"
    children = Children(tmp)
    port = free_port()
    env = worker_env(broker.bootstrap, prefix, tmp / "lake") | {"CLUSTERPULSE_HEALTH_PORT": str(port)}
    try:
        assert children.start("topics", env=env, name="topics").wait(timeout=60) == 0
        worker = children.start("worker", env=env, name="worker")
        first = encode_batch(card_batch("node0001", 0, errors=[(3, 79)]))
        values = [
            first,
            b"\x93not a batch",
            msgpack.packb({**msgpack.unpackb(first), "v": 99}),
            encode_batch(card_batch("node0999", 0)),
            encode_batch(card_batch("node0002", 0, errors=[(1, 79)])),
            encode_batch(bundle([card_batch("node0003", 0, errors=[(5, 79)]), card_batch("node0998", 0)], "rack")),
        ]
        topic = f"{prefix}.telemetry.card"
        producer = KafkaProducer(**producer_config(broker.bootstrap, "test"))
        try:
            for value in values:
                producer.send(topic, key=b"mixed", value=value)
            producer.flush()
        finally:
            producer.close()
        read_until(broker.bootstrap, f"{prefix}.alerts", lambda rs: len(rs) >= 3, alive=alive(children, worker))
        url = f"http://127.0.0.1:{port}/metrics"
        deadline = time.monotonic() + 60
        while _value(scrape(url), "clusterpulse_parquet_written_rows_total") < 24:  # the card rows are on disk
            assert worker.poll() is None and time.monotonic() < deadline, children.log_of(worker)[-3000:]
            time.sleep(0.5)
        yield url, topic
    finally:
        children.stop_all()


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    with urllib.request.urlopen(url, timeout=5) as resp:
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = resp.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.mark.broker
def test_metrics_count_messages_samples_dead_letters_alerts_and_writes(metered: tuple[str, str]) -> None:
    url, topic = metered
    m = scrape(url)
    assert _value(m, "clusterpulse_messages_consumed_total", topic=topic) == 6
    assert _value(m, "clusterpulse_samples_consumed_total", kind="card") == 24  # 3 known nodes x 8 cards
    dead = {labels[0][1]: v for (name, labels), v in m.items() if name == "clusterpulse_dead_letters_total"}
    assert dead == {"not_msgpack": 1, "schema_version": 1, "unknown_entity": 2} or dead == {
        "not_a_map": 1,
        "schema_version": 1,
        "unknown_entity": 2,
    }
    assert _value(m, "clusterpulse_alerts_total", kind="card_failed", status="firing") == 3
    assert _value(m, "clusterpulse_parquet_written_bytes_total") > 0
    assert _value(m, "clusterpulse_parquet_flush_seconds_count") >= 1
    assert _value(m, "clusterpulse_batch_processing_seconds_count", kind="card") == 4  # all that decode
    assert _value(m, "clusterpulse_consumer_lag_messages", topic=topic) == 0


@pytest.mark.broker
@pytest.mark.skipif(
    PROMETHEUS is None, reason="needs Debian's prometheus (make test installs it when run as root with apt)"
)
def test_a_real_prometheus_scrapes_the_worker(metered: tuple[str, str], tmp_path: Path) -> None:
    url, topic = metered
    target = url.removeprefix("http://").removesuffix("/metrics")
    config = tmp_path / "prometheus.yml"
    config.write_text(
        f"global: {{scrape_interval: 1s}}\nscrape_configs:\n"
        f"  - job_name: clusterpulse-worker\n    static_configs: [{{targets: ['{target}']}}]\n"
    )
    web = f"127.0.0.1:{free_port()}"
    log = open(tmp_path / "prometheus.log", "wb")
    server = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address={web}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        query = f"http://{web}/api/v1/query?query=clusterpulse_messages_consumed_total"
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, (tmp_path / "prometheus.log").read_text()[-2000:]
            try:
                with urllib.request.urlopen(query, timeout=5) as resp:
                    result = json.loads(resp.read())["data"]["result"]
            except OSError:
                result = []
            if result:
                break
            assert time.monotonic() < deadline, "Prometheus never stored a scrape of the worker"
            time.sleep(0.5)
        [series] = [r for r in result if r["metric"].get("topic") == topic]
        assert series["metric"]["job"] == "clusterpulse-worker" and float(series["value"][1]) == 6
    finally:
        stop_process(server, timeout_s=10)
        log.close()
