"""The collector's own `/metrics` (prometheus_client, a registry of its own)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class CollectMetrics:
    """Targets, scrapes, failures, scrape durations, samples, messages, rounds and their lag,
    remote_write requests."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r, p = self.registry, "clusterpulse_collect_"
        self.targets = Gauge(p + "targets", "Targets being scraped, by job", ["job"], registry=r)
        self.target_up = Gauge(
            p + "target_up", "1 if the target's last scrape succeeded, 0 if it failed", ["job", "instance"], registry=r
        )
        self.scrapes = Counter(p + "scrapes_total", "Scrapes attempted", ["job"], registry=r)
        self.failures = Counter(
            p + "scrape_failures_total",
            "Scrapes that failed, by reason (timeout, connection, http_status, too_large, bad_page)",
            ["job", "reason"],
            registry=r,
        )
        self.scrape_seconds = Histogram(
            p + "scrape_duration_seconds",
            "Time from request to the whole page",
            ["job"],
            registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.samples = Counter(
            p + "samples_total", "Rows (cards, ports) sent, by where they came from", ["source"], registry=r
        )
        self.messages = Counter(p + "messages_total", "Messages produced, by topic", ["topic"], registry=r)
        self.rounds = Counter(
            p + "rounds_total",
            "Scrape rounds: on_time (done within the interval), late, "
            "or skipped (a tick passed while the previous round ran)",
            ["job", "outcome"],
            registry=r,
        )
        self.round_lag = Gauge(
            p + "round_lag_seconds", "How late the job's last round started after its tick", ["job"], registry=r
        )
        self.unmapped = Counter(
            p + "unmapped_targets_total",
            "Targets whose scrapes named hosts the topology does not have (reported once each)",
            ["job"],
            registry=r,
        )
        self.remote_write = Counter(
            p + "remote_write_requests_total", "remote_write requests, by HTTP status", ["code"], registry=r
        )
        self.send_failures = Counter(p + "send_failures_total", "Messages the broker did not take", registry=r)

    def set_targets(self, per_job: dict[str, int]) -> None:
        self.targets.clear()
        for job, count in per_job.items():
            self.targets.labels(job).set(count)
