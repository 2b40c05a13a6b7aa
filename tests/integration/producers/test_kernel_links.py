"""A real-kernel proof: two network namespaces joined by a veth pair stand for a host NIC and its
switch port. `ingest sysfs --interval` polls the host side's /sys/class/net (a sysfs mounted from
inside its namespace), the worker judges it, and flapping the switch side with `ip link set down/up`
(under `tc netem` loss) raises `link_down` then `link_flapping` on that host link and resolves
both once the link has stayed up."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from pipeline.model.schemas import Alert
from tests.kafka_helpers import read_until

NEEDS = ("ip", "nsenter", "mount", "umount", "tc")
pytestmark = [
    pytest.mark.broker,
    pytest.mark.skipif(
        os.geteuid() != 0 or not all(shutil.which(t) for t in NEEDS),
        reason="needs root and iproute2, tc, nsenter, mount (network namespaces and veth pairs)",
    ),
]
LINK = "node0003-nic0~leaf000"  # node0003's NIC 0 in a 256-card cluster with 8 nodes per leaf


def sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True, timeout=30)


@pytest.fixture
def veth(tmp_path: Path) -> Iterator[tuple[str, str, Path]]:
    """Namespaces (host, switch), the host's end `eth0`, the switch's `swp1`; the host's sysfs."""
    tag = uuid.uuid4().hex[:6]
    host, switch = f"cp-host-{tag}", f"cp-sw-{tag}"
    sysfs = tmp_path / "sys"
    sysfs.mkdir()
    mounted = False
    try:
        sh("ip", "netns", "add", host)
        sh("ip", "netns", "add", switch)
        sh("ip", "link", "add", "eth0", "netns", host, "type", "veth", "peer", "name", "swp1", "netns", switch)
        sh("ip", "-n", host, "addr", "add", "10.250.0.1/30", "dev", "eth0")
        sh("ip", "-n", switch, "addr", "add", "10.250.0.2/30", "dev", "swp1")
        sh("ip", "-n", host, "link", "set", "eth0", "up")
        sh("ip", "-n", switch, "link", "set", "swp1", "up")
        netem = subprocess.run(
            ["tc", "-n", host, "qdisc", "add", "dev", "eth0", "root", "netem", "loss", "20%", "delay", "1ms"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if netem.returncode:  # a kernel without sch_netem (this sandbox's): the flaps still run, without loss
            warnings.warn(f"tc netem not available, no loss added: {netem.stderr.strip()}", stacklevel=1)
        sh("nsenter", f"--net=/run/netns/{host}", "mount", "-t", "sysfs", "sysfs", str(sysfs))
        mounted = True
        yield host, switch, sysfs
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(sysfs)], capture_output=True, timeout=30)
        for ns in (host, switch):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)


def event_s(iso: str) -> float:
    return float(np.datetime64(iso.replace("Z", ""), "ms").astype(np.int64)) / 1000


@pytest.mark.slow
def test_flapping_a_veth_link_raises_and_resolves_its_alerts(broker, prefix, children, tmp_path, veth) -> None:  # noqa: ANN001
    host, switch, sysfs = veth
    env = {
        "CLUSTERPULSE_BOOTSTRAP": broker.bootstrap,
        "CLUSTERPULSE_TOPIC_PREFIX": prefix,
        "CLUSTERPULSE_GROUP_ID": f"{prefix}-workers",
        "CLUSTERPULSE_DATA_DIR": str(tmp_path / "lake"),
        "CLUSTERPULSE_PARTITIONS": "2",
        "CLUSTERPULSE_CLUSTER__CARDS": "256",
        "CLUSTERPULSE_CLUSTER__NODES_PER_LEAF": "8",
        "CLUSTERPULSE_CLUSTER__SPINES": "2",
        # shorter holds than production's so the test takes a minute: a link must stay up 5 s to
        # resolve, flapping is 3 downs in 20 s, a symptom waits 1 s for a cause
        "CLUSTERPULSE_DETECT__LINK__DOWN_RESOLVE_S": "5",
        "CLUSTERPULSE_DETECT__LINK__FLAP_WINDOW_S": "20",
        "CLUSTERPULSE_DETECT__CORRELATE__GROUP_WAIT_S": "1",
        "CLUSTERPULSE_LOG_LEVEL": "info",
    }
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text("hosts:\n  gpu-a: {node: node0003, nics: {eth0: 0}}\n")
    assert children.start("topics", env=env, name="topics").wait(timeout=60) == 0
    worker = children.start("worker", env=env, name="worker")
    poller = children.start(
        "ingest",
        "sysfs",
        str(sysfs / "class" / "net"),
        "--sysfs-kind",
        "net",
        "--host",
        "gpu-a",
        "--inventory",
        str(inventory),
        "--interval",
        "0.5",
        env=env,
        name="poller",
    )

    def alive() -> str | None:
        for proc, name in ((worker, "worker"), (poller, "poller")):
            if proc.poll() is not None:
                return f"{name} exited: {children.log_of(proc)[-2000:]}"
        return None

    read_until(broker.bootstrap, f"{prefix}.telemetry.port", lambda rs: len(rs) >= 10, alive=alive)
    time.sleep(8)  # the worker has joined and judged the healthy link
    ping = (
        subprocess.Popen(
            ["ip", "netns", "exec", host, "ping", "-q", "-i", "0.2", "10.250.0.2"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if shutil.which("ping")
        else None
    )
    try:
        went_down = time.time()
        for down_s, up_s in ((3, 3), (1, 2), (1, 2), (1, 0)):  # down once, then flapping
            sh("ip", "-n", switch, "link", "set", "swp1", "down")
            time.sleep(down_s)
            sh("ip", "-n", switch, "link", "set", "swp1", "up")
            time.sleep(up_s)
        stable_from = time.time()

        def resolved(records: list) -> bool:
            alerts = [Alert.from_json(r.value) for r in records]
            return {(a.kind, a.status) for a in alerts if a.entity == LINK} >= {
                ("link_down", "resolved"),
                ("link_flapping", "resolved"),
            }

        records = read_until(broker.bootstrap, f"{prefix}.alerts", resolved, timeout_s=120, alive=alive)
    finally:
        if ping is not None:
            ping.terminate()
            ping.wait(timeout=10)
    alerts = [Alert.from_json(r.value) for r in records]
    mine = [(a.kind, a.status) for a in alerts if a.entity == LINK]
    assert mine == [
        ("link_down", "firing"),
        ("link_flapping", "firing"),
        ("link_down", "resolved"),
        ("link_flapping", "resolved"),
    ], mine
    down, flapping = (
        next(a for a in alerts if a.kind == k and a.status == "firing") for k in ("link_down", "link_flapping")
    )
    assert event_s(down.starts_at) - went_down <= 5  # seen within 5 s of the first down (event time)
    assert flapping.root_cause == down.id  # one page: the flapping rides on the link_down
    ends = [event_s(a.ends_at) for a in alerts if a.entity == LINK and a.status == "resolved"]
    assert all(end >= stable_from for end in ends)  # resolved only once it was stable
    assert {a.entity for a in alerts} == {LINK}  # nothing else: loss under netem and the other ports
