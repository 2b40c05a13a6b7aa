"""Kafka client settings that suit both Tansu (embedded, tests) and Apache Kafka (production).

Measured on this machine (see docs/operations.md, "Broker settings"): kafka-python needs `crc32c` installed
and lz4 compression for throughput; group members need short session, heartbeat and rebalance
timeouts or Tansu keeps them waiting ~30 s at join.
"""

from __future__ import annotations

from typing import Any

# Group membership against Tansu: default timeouts make the first join take ~30 s.
SESSION_TIMEOUT_S = 6.0
HEARTBEAT_INTERVAL_S = 1.0
REBALANCE_TIMEOUT_S = 6.0
# How long a member may go between polls before it is dropped from the group. A worker catching up
# on a large backlog applies back-pressure (Faust stops polling while its stream buffers are full)
# for well over 30 s; with a 30 s limit it was dropped, and the rejoin under load never finished
# (measured: a 10,240-card, 600 s scenario at --speed max stalled after 80 s). Kafka's default.
MAX_POLL_INTERVAL_S = 300.0


# TLS / SASL options of this process's Kafka clients (settings `kafka.*`), set once at start by
# `use_security`: every client below is built from a bootstrap address alone.
_SECURITY: dict[str, Any] = {}


def use_security(options: dict[str, Any]) -> None:
    """The kafka-python security options (KafkaSecuritySettings.client_options) every client gets."""
    _SECURITY.clear()
    _SECURITY.update(options)


def security_options() -> dict[str, Any]:
    return dict(_SECURITY)


def bootstrap_list(bootstrap: str) -> list[str]:
    return [s.strip() for s in bootstrap.split(",") if s.strip()]


def producer_config(bootstrap: str, client_id: str) -> dict[str, Any]:
    """kafka-python KafkaProducer settings: durable, batched, compressed."""
    return {
        "bootstrap_servers": bootstrap_list(bootstrap),
        "client_id": client_id,
        "acks": "all",
        # a broker outage (a restart, a network cut): messages wait in the producer's buffer (bounded
        # by KafkaOutput: kafka-python 3 has no buffer_memory) and are retried until delivered, or
        # fail loudly after delivery_timeout_ms (tests/reliability/test_broker_outage.py)
        "retries": 2_147_483_647,
        "delivery_timeout_ms": 120_000,
        "max_block_ms": 60_000,
        "compression_type": "lz4",
        "linger_ms": 20,
        "batch_size": 256 * 1024,
        "max_request_size": 8 * 1024 * 1024,
        "max_in_flight_requests_per_connection": 1,  # keep per-partition order across retries
        # no idempotence: Tansu on S3 storage, killed with a produce request in flight, came back
        # knowing the request's sequence number but not its records, and answered the retry as a
        # duplicate: one batch lost (tests/reliability/test_broker_outage.py). Without it a retry
        # may store a batch twice; the worker drops such repeats (pipeline/detect/repeats.py).
        "enable_idempotence": False,
        "request_timeout_ms": 30_000,
        **_SECURITY,
    }


def consumer_config(bootstrap: str, client_id: str, group_id: str | None) -> dict[str, Any]:
    """kafka-python KafkaConsumer settings with the short group timeouts Tansu needs."""
    cfg: dict[str, Any] = {
        "bootstrap_servers": bootstrap_list(bootstrap),
        "client_id": client_id,
        "auto_offset_reset": "earliest",
        "enable_auto_commit": False,
        "max_poll_interval_ms": int(MAX_POLL_INTERVAL_S * 1000),
        "session_timeout_ms": int(SESSION_TIMEOUT_S * 1000),
        "heartbeat_interval_ms": int(HEARTBEAT_INTERVAL_S * 1000),
        **_SECURITY,
    }
    if group_id:
        cfg["group_id"] = group_id
    return cfg


def faust_config(bootstrap: str, group_id: str, partitions: int, credentials: Any = None) -> dict[str, Any]:
    """faust.App keyword settings; `credentials`: KafkaSecuritySettings.faust_credentials()."""
    return {
        **({"broker_credentials": credentials} if credentials is not None else {}),
        "broker": [f"kafka://{server}" for server in bootstrap_list(bootstrap)],
        "store": "memory://",
        "key_serializer": "raw",
        "value_serializer": "raw",
        "topic_partitions": partitions,
        "topic_disable_leader": True,
        "consumer_auto_offset_reset": "earliest",
        "broker_session_timeout": SESSION_TIMEOUT_S,
        "broker_heartbeat_interval": HEARTBEAT_INTERVAL_S,
        "broker_rebalance_timeout": REBALANCE_TIMEOUT_S,
        "broker_max_poll_interval": MAX_POLL_INTERVAL_S,
        "broker_commit_interval": 1.0,
        "producer_compression_type": "lz4",
        "producer_acks": -1,
        "producer_max_request_size": 64
        * 1024
        * 1024,  # detector state snapshots (pipeline.model.topics.STATE_MAX_BYTES)
        "stream_wait_empty": False,  # otherwise a stop can hang forever in wait_empty
        "web_enabled": False,
    }
