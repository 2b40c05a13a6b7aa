"""The lake's disk fills up mid-stream (a small tmpfs, filled): the worker stops committing, keeps
alerting and paging, leaves no half-written Parquet, says why in its log, and writes everything once
space returns: every simulated sample is in Parquet once and the alerts are the offline run's."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from pipeline.model.schemas import Alert
from pipeline.model.topics import ALERTS, TELEMETRY_TOPICS
from pipeline.ops.broker import stop_process
from pipeline.ops.processes import consumer_lag
from tests.kafka_helpers import read_until
from tests.reliability.helpers import SCENARIO, check_lake, check_pages, offline_alerts, wait_caught_up, worker_env

pytestmark = pytest.mark.broker


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 MiB tmpfs of its own, unmounted afterwards (mounting needs root, as CI runs)."""
    if os.geteuid() != 0:
        pytest.skip("a full disk is simulated with a small tmpfs, and mounting one needs root (CI runs as root)")
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64m", "clusterpulse-test", str(disk)], capture_output=True, text=True
    )
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def fill(disk: Path) -> Path:
    """Write a file until the disk refuses another byte."""
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as fh:
        for chunk in (1 << 20, 1 << 12, 1):
            try:
                while True:
                    fh.write(b"\0" * chunk)
            except OSError:
                pass
    return filler


def test_a_full_lake_disk_stops_commits_not_alerts_and_loses_nothing(
    broker, prefix, small_disk, children, tmp_path, receiver
) -> None:
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(SCENARIO))
    data = small_disk / "lake"
    env = worker_env(broker.bootstrap, prefix, data, receiver.url)
    telemetry = [t.name(prefix) for t in TELEMETRY_TOPICS]
    assert children.start("topics", env=env, name="topics").wait(timeout=60) == 0
    worker = children.start("worker", env=env, name="worker")
    deadline = time.monotonic() + 60
    while not (data / "_lake.json").exists():  # the worker has claimed the lake
        assert worker.poll() is None and time.monotonic() < deadline, children.log_of(worker)[-3000:]
        time.sleep(0.2)
    filler = fill(small_disk)
    sim = children.start("simulate", "--scenario", str(path), "--speed", "16", env=env, name="simulator")
    assert sim.wait(timeout=120) == 0, children.log_of(sim)[-2000:]

    roots = {(k, e) for k, e, s, _ in offline_alerts(path) if s == "firing"}
    published = read_until(
        broker.bootstrap,
        ALERTS.name(prefix),
        lambda found: roots <= {(a.kind, a.entity) for a in map(Alert.from_json, (r.value for r in found))},
        timeout_s=90,
        alive=lambda: None if worker.poll() is None else children.log_of(worker)[-3000:],
    )
    assert published, "no alert while the disk is full"
    log = children.log_of(worker)
    assert "cannot write Parquet to the lake" in log and "No space left on device" in log, log[-3000:]
    assert consumer_lag(broker.bootstrap, f"{prefix}-workers", telemetry) > 0  # nothing committed
    assert not [
        p for p in data.rglob("*") if p.is_file() and p.name != "_lake.json" and not p.is_relative_to(data / "_notify")
    ], "files written on a full disk"

    filler.unlink()  # space returns
    wait_caught_up(broker.bootstrap, prefix, worker, children.log_of, "after the disk had space again")
    assert "the lake takes writes again" in children.log_of(worker)
    assert worker.poll() is None
    stop_process(worker, timeout_s=30)
    assert "Traceback" not in children.log_of(worker)
    assert not list(data.rglob("*.tmp")), "half-written files left behind"
    check_lake(data, path, "(disk full, then space again)")
    check_pages(receiver.received, path, "(disk full)")
