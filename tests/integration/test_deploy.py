"""deploy/: the Prometheus scrape config is valid and points at the port the Compose workers serve
/metrics on, and the Grafana dashboard asks only for metrics a worker exports, from the provisioned
data source."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from pipeline.ops.metrics import WorkerMetrics
from tests.conftest import ROOT

DEPLOY = ROOT / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "clusterpulse-pipeline.json"


def exported_names() -> set[str]:
    """Every series name a worker's /metrics can show (counters' _total, histograms' _bucket, ...)."""
    metrics = WorkerMetrics()
    metrics.watch_lag(lambda: {"t": 0})
    metrics.messages.labels("t")
    metrics.samples.labels("card")
    metrics.batch_seconds.labels("card").observe(0.001)
    metrics.flush_seconds.observe(0.1)
    for counter in (metrics.dead_letters, metrics.notify_attempts, metrics.notify_delivered, metrics.notify_failures):
        counter.labels("x")
    metrics.alerts.labels("card_failed", "firing")
    text = metrics.exposition().decode()
    return {s.name for family in text_string_to_metric_families(text) for s in family.samples}


def test_the_dashboard_asks_only_for_exported_metrics_from_the_provisioned_source() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    asked = {name for expr in exprs for name in re.findall(r"clusterpulse_[a-z_]+", expr)}
    assert asked and asked <= exported_names(), asked - exported_names()
    [source] = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text())["datasources"]
    assert {p["datasource"]["uid"] for p in dashboard["panels"]} == {source["uid"]}
    assert source["url"] == "http://prometheus:9090"


def test_prometheus_scrapes_the_port_the_compose_workers_serve() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus/prometheus.yml").read_text())
    [job] = [j for j in config["scrape_configs"] if j["job_name"] == "clusterpulse-worker"]
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert job["dns_sd_configs"][0]["names"] == ["worker"]
    assert job["dns_sd_configs"][0]["port"] == int(services["worker"]["environment"]["CLUSTERPULSE_HEALTH_PORT"])
    mounts = " ".join(services["prometheus"]["volumes"]) + " " + " ".join(services["grafana"]["volumes"])
    assert "./deploy/prometheus/prometheus.yml:" in mounts and "./deploy/grafana/dashboards:" in mounts


@pytest.mark.skipif(
    shutil.which("promtool") is None,
    reason="needs promtool (Debian's prometheus; make test installs it when run as root with apt)",
)
def test_promtool_accepts_the_scrape_config() -> None:
    done = subprocess.run(
        ["promtool", "check", "config", str(DEPLOY / "prometheus/prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
