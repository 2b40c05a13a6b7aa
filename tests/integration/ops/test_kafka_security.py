"""Kafka TLS / SASL settings: validated, the password read from its environment variable and never
kept or shown, and passed through to kafka-python and to Faust (aiokafka)."""

from __future__ import annotations

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

from pipeline.ops.kafka_config import consumer_config, faust_config, producer_config, use_security
from pipeline.settings import SettingsError, load_settings
from tests.conftest import run_cli

SASL = {
    "CLUSTERPULSE_KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
    "CLUSTERPULSE_KAFKA__SASL_MECHANISM": "SCRAM-SHA-512",
    "CLUSTERPULSE_KAFKA__SASL_USERNAME": "clusterpulse",
    "CLUSTERPULSE_KAFKA__SASL_PASSWORD_ENV": "KAFKA_PASSWORD",
}


@pytest.mark.parametrize(
    "env,why",
    [
        (
            {"CLUSTERPULSE_KAFKA__SECURITY_PROTOCOL": "SASL_SSL"},
            "needs sasl_mechanism, sasl_username and sasl_password_env",
        ),
        ({"CLUSTERPULSE_KAFKA__SASL_USERNAME": "u"}, "need security_protocol SASL_PLAINTEXT or SASL_SSL"),
        ({"CLUSTERPULSE_KAFKA__SECURITY_PROTOCOL": "SSL", "CLUSTERPULSE_KAFKA__SSL_CERTFILE": "c.pem"}, "go together"),
        ({"CLUSTERPULSE_KAFKA__SSL_CAFILE": "ca.pem"}, "need security_protocol SSL or SASL_SSL"),
        ({"CLUSTERPULSE_KAFKA__SECURITY_PROTOCOL": "TLS"}, "security_protocol"),
        ({**SASL, "CLUSTERPULSE_KAFKA__SASL_MECHANISM": "GSSAPI"}, "sasl_mechanism"),
    ],
)
def test_incomplete_or_contradicting_security_settings_are_refused(env: dict, why: str) -> None:
    with pytest.raises(SettingsError, match=why):
        load_settings({}, environ=env)


def test_sasl_over_tls_reaches_every_client_and_the_password_stays_out_of_sight() -> None:
    settings = load_settings({}, environ=SASL)
    assert "hunter2-9f" not in repr(settings) and "hunter2-9f" not in settings.model_dump_json()
    with pytest.raises(SettingsError, match="environment variable KAFKA_PASSWORD is not set"):
        settings.kafka.client_options(environ={})
    options = settings.kafka.client_options(environ={"KAFKA_PASSWORD": "hunter2-9f"})
    assert options == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "clusterpulse",
        "sasl_plain_password": "hunter2-9f",
    }
    try:
        use_security(options)
        producer, consumer = producer_config("k:9093", "p"), consumer_config("k:9093", "c", "g")
    finally:
        use_security({})
    assert producer["sasl_plain_password"] == consumer["sasl_plain_password"] == "hunter2-9f"
    for client, config in ((KafkaProducer, producer), (KafkaConsumer, consumer)):  # names they accept
        assert set(config) <= set(client.DEFAULT_CONFIG), set(config) - set(client.DEFAULT_CONFIG)
    assert set(options) <= set(KafkaAdminClient.DEFAULT_CONFIG)
    assert "sasl_plain_password" not in producer_config("k:9093", "p")  # reset

    import faust

    credentials = settings.kafka.faust_credentials(environ={"KAFKA_PASSWORD": "hunter2-9f"})
    assert isinstance(credentials, faust.SASLCredentials) and credentials.ssl_context is not None
    app = faust.App("security-test", **faust_config("k:9093", "g", 4, credentials))
    assert app.conf.broker_credentials is credentials
    assert credentials.mechanism.value == "SCRAM-SHA-512" and credentials.username == "clusterpulse"


def test_a_missing_password_is_one_line_naming_the_variable_not_a_value() -> None:
    done = run_cli("topics", "--bootstrap", "127.0.0.1:1", env=SASL)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "environment variable KAFKA_PASSWORD is not set" in done.stderr
