"""The worker's own metrics, for the Prometheus and Grafana operators already run: GET /metrics on
the worker's health port (`health_port`), in the Prometheus text format (prometheus_client).

Counted per message or per flush, never per sample: a label lookup and an add each. Consumer lag is
read when scraped. Dead letters are counted by their reason's class (InvalidRecord.reason_class), a
few fixed words: the reason text names entities and values, which would make a label without bound.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
disable_created_metrics()  # no `_created` series beside each counter


class _Lag(Collector):
    def __init__(self, lag: Callable[[], dict[str, int]]) -> None:
        self.lag = lag

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "clusterpulse_consumer_lag_messages",
            "Messages in this worker's assigned partitions not read yet, per topic",
            labels=["topic"],
        )
        for topic, lag in sorted(self.lag().items()):
            family.add_metric([topic], lag)
        yield family


class WorkerMetrics:
    """Every metric of one worker, in a registry of its own."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.messages = Counter(
            "clusterpulse_messages_consumed", "Telemetry messages read, per topic", ["topic"], registry=r
        )
        self.samples = Counter(
            "clusterpulse_samples_consumed", "Rows taken from telemetry messages, per kind", ["kind"], registry=r
        )
        self.batch_seconds = Histogram(
            "clusterpulse_batch_processing_seconds",
            "Time to decode, check, detect and buffer one telemetry message",
            ["kind"],
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0),
            registry=r,
        )
        self.flush_seconds = Histogram(
            "clusterpulse_parquet_flush_seconds",
            "Time to write one partition's buffer",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=r,
        )
        self.flush_bytes = Counter("clusterpulse_parquet_written_bytes", "Bytes of Parquet files written", registry=r)
        self.flush_rows = Counter("clusterpulse_parquet_written_rows", "Rows written to Parquet", registry=r)
        self.flush_failures = Counter(
            "clusterpulse_parquet_write_failures",
            "Parquet writes that failed (a full disk): rows held, offsets not committed",
            registry=r,
        )
        self.dead_letters = Counter(
            "clusterpulse_dead_letters", "Messages sent to the dead-letter topic, per reason", ["reason"], registry=r
        )
        self.alerts = Counter(
            "clusterpulse_alerts", "Alert state changes published, per kind and status", ["kind", "status"], registry=r
        )
        self.notify_attempts = Counter(
            "clusterpulse_notify_attempts", "Delivery attempts, per receiver", ["receiver"], registry=r
        )
        self.notify_delivered = Counter(
            "clusterpulse_notify_delivered", "Notifications delivered, per receiver", ["receiver"], registry=r
        )
        self.notify_failures = Counter(
            "clusterpulse_notify_failures",
            "Notifications given up on (dead-lettered), per receiver",
            ["receiver"],
            registry=r,
        )

    def watch_lag(self, lag: Callable[[], dict[str, int]]) -> None:
        self.registry.register(_Lag(lag))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
