"""Clear errors around the broker: unreachable, port in use, invalid settings; topic creation."""

from __future__ import annotations

import pytest
from kafka import KafkaConsumer

from pipeline.ops.broker import BrokerError, EmbeddedBroker, check_reachable, create_topics, free_port
from pipeline.settings import load_settings
from tests.conftest import run_cli


def cli(*args: str, env: dict[str, str] | None = None):  # noqa: ANN201
    return run_cli(*args, env=env, timeout=60)


def test_unreachable_broker_names_the_address_and_the_embedded_broker() -> None:
    address = f"127.0.0.1:{free_port()}"
    with pytest.raises(BrokerError) as err:
        check_reachable(address, timeout_s=1)
    assert address in str(err.value) and "clusterpulse broker" in str(err.value)


def test_worker_against_an_unreachable_broker_exits_with_that_message() -> None:
    address = f"127.0.0.1:{free_port()}"
    done = cli("worker", "--bootstrap", address)
    assert done.returncode == 1
    assert f"cannot reach a Kafka broker at {address}" in done.stderr and "clusterpulse broker" in done.stderr
    assert "Traceback" not in done.stderr


def test_invalid_settings_exit_2_naming_setting_and_value() -> None:
    done = cli("topics", "--partitions", "0")
    assert done.returncode == 2
    assert "'partitions'" in done.stderr and "= 0" in done.stderr
    done = cli("worker", env={"CLUSTERPULSE_SINK__FLUSH_ROWS": "lots"})
    assert done.returncode == 2 and "CLUSTERPULSE_SINK__FLUSH_ROWS" in done.stderr and "'lots'" in done.stderr


@pytest.mark.broker
def test_port_in_use_is_a_clear_error(broker) -> None:
    with pytest.raises(BrokerError, match=f"port {broker.port} on 127.0.0.1 is already in use"):
        EmbeddedBroker(port=broker.port).start()
    done = cli("broker", "--port", str(broker.port))
    assert done.returncode == 1 and "already in use" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.broker
def test_create_topics_is_idempotent_with_documented_partitions(broker, prefix) -> None:
    settings = load_settings({"topic_prefix": prefix, "partitions": 6}, environ={})
    first = create_topics(settings, broker.bootstrap)
    assert create_topics(settings, broker.bootstrap) == first
    assert first == {
        f"{prefix}.telemetry.card": 6,
        f"{prefix}.telemetry.step": 6,
        f"{prefix}.telemetry.port": 6,
        f"{prefix}.findings": 1,
        f"{prefix}.state": 1,
        f"{prefix}.alerts": 1,
        f"{prefix}.deadletter": 3,
        f"{prefix}.notify.deadletter": 3,
        f"{prefix}.silences": 1,
    }
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap)
    try:
        described = {t: len(consumer.partitions_for_topic(t) or ()) for t in first}
    finally:
        consumer.close()
    assert described == first


def test_embedded_broker_starts_and_stops() -> None:
    with EmbeddedBroker() as b:
        check_reachable(b.bootstrap, timeout_s=2)
        proc = b.process
    assert proc is not None and proc.poll() is not None
