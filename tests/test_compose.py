"""docker-compose.yml: valid for Compose, and every service we build runs a real CLI command."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from pipeline.cli import build_parser
from tests.conftest import ROOT

COMPOSE = ROOT / "docker-compose.yml"


def services() -> dict:
    return yaml.safe_load(COMPOSE.read_text())["services"]


@pytest.mark.skipif(shutil.which("docker-compose") is None,
                    reason="docker-compose is not installed (Debian package docker-compose; "
                           "`make test` installs it when run as root with apt)")
def test_compose_file_is_valid() -> None:
    done = subprocess.run(["docker-compose", "-f", str(COMPOSE), "config", "-q"], capture_output=True,
                          text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr


def test_every_service_we_build_runs_a_real_cli_command() -> None:
    ours = {name: svc for name, svc in services().items() if "build" in svc}
    assert set(ours) >= {"topics", "worker", "simulator", "receiver"}
    parser = build_parser()
    for name, svc in ours.items():
        args = parser.parse_args(svc["command"])  # exits (fails the test) on an unknown command or flag
        assert args.command == svc["command"][0], name


def test_workers_scale_within_the_partitions() -> None:
    svc = services()
    worker = svc["worker"]
    assert "container_name" not in worker and "ports" not in worker, "a fixed name or port stops --scale"
    assert int(worker["environment"]["CLUSTERPULSE_PARTITIONS"]) >= 3
    assert svc["kafka"]["image"].startswith("apache/kafka:")
    assert worker["depends_on"]["topics"]["condition"] == "service_completed_successfully"
    assert "healthcheck" in svc["kafka"] and "healthcheck" in svc["receiver"]


def test_dockerfile_entrypoint_is_the_cli() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["clusterpulse"]' in text
