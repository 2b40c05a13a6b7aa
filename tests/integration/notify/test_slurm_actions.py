"""The Slurm drain action against a real slurmctld and slurmd (Debian's slurm-wlm, with munge), all
started here: a root cause drains its node (named through the inventory) with the alert as the
reason, the hourly limit holds back a second drain and records it, and the resolution resumes only
what clusterpulse drained."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.ops.broker import free_port, stop_process
from tests.builders import card_batch
from tests.integration.notify.test_silences import send_cards, wait_for
from tests.integration.stream.test_worker import alive, worker_env

NEEDED = ("munged", "slurmctld", "slurmd", "scontrol")
MISSING = [name for name in NEEDED if shutil.which(name) is None]
pytestmark = [
    pytest.mark.broker,
    pytest.mark.skipif(
        bool(MISSING), reason=f"needs {', '.join(MISSING)} (make test installs slurm-wlm when run as root with apt)"
    ),
    pytest.mark.skipif(os.geteuid() != 0, reason="slurmd runs as root here (SlurmdUser=root)"),
]


@pytest.fixture
def slurm() -> Iterator[dict[str, str]]:
    """munged, slurmctld and slurmd for two nodes (gpu-a01 with its slurmd, gpu-a02 without), on free
    ports, in a short temporary directory (a unix socket path is at most 107 bytes)."""
    root = Path(tempfile.mkdtemp(prefix="cp-slurm-"))
    for sub in ("state", "spool", "log"):
        (root / sub).mkdir()
    (root / "munge.key").write_bytes(os.urandom(1024))
    (root / "munge.key").chmod(0o400)
    host = socket.gethostname().split(".")[0]
    conf = root / "slurm.conf"
    conf.write_text(
        f"""ClusterName=cptest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
AuthType=auth/munge
AuthInfo=socket={root}/munge.sock
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
ReturnToService=2
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
NodeName=gpu-a01 NodeHostname={host} NodeAddr=127.0.0.1 CPUs=1 RealMemory=100 State=UNKNOWN
NodeName=gpu-a02 NodeHostname={host} NodeAddr=127.0.0.1 CPUs=1 RealMemory=100 State=UNKNOWN
PartitionName=gpu Nodes=gpu-a01,gpu-a02 Default=YES State=UP
"""
    )
    env = {**os.environ, "SLURM_CONF": str(conf)}
    procs: list[subprocess.Popen] = []

    def start(*argv: str, name: str) -> None:
        log = open(root / "log" / f"{name}.out", "wb")
        procs.append(subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))

    try:
        start(
            "munged",
            "-F",
            "-f",
            f"--socket={root}/munge.sock",
            f"--key-file={root}/munge.key",
            f"--pid-file={root}/munged.pid",
            f"--seed-file={root}/munged.seed",
            name="munged",
        )
        wait_for("munged", lambda: (root / "munge.sock").exists(), timeout_s=20)
        start("slurmctld", "-D", "-i", "-f", str(conf), name="slurmctld")
        wait_for("slurmctld", lambda: scontrol(env, "ping").returncode == 0, timeout_s=30)
        start("slurmd", "-D", "-N", "gpu-a01", "-f", str(conf), name="slurmd")
        wait_for("gpu-a01 up", lambda: "State=IDLE" in scontrol(env, "show", "node", "gpu-a01").stdout, timeout_s=30)
        yield {"SLURM_CONF": str(conf)}
    finally:
        for proc in reversed(procs):
            stop_process(proc, timeout_s=10)
        shutil.rmtree(root, ignore_errors=True)


def scontrol(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["scontrol", *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=30)


def node_state(env: dict[str, str], node: str) -> str:
    return scontrol(env, "show", "node", node).stdout


def test_a_failed_card_drains_its_slurm_node_and_its_recovery_resumes_it(
    broker, prefix, children, tmp_path, slurm
) -> None:
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text("hosts:\n  gpu-a01: node0001\n  gpu-a02: node0002\n")
    actions = [{"on": ["card_failed", "node_down"], "slurm": {"resume_when_resolved": True}, "max_per_hour": 1}]
    lake = tmp_path / "lake"
    env = {
        **worker_env(broker.bootstrap, prefix, lake),
        "CLUSTERPULSE_INVENTORY": str(inventory),
        "CLUSTERPULSE_ACTIONS": json.dumps(actions),
        **slurm,
    }
    assert children.start("topics", env=env, name="topics").wait(timeout=60) == 0
    worker = children.start("worker", env=env, name="worker")
    up = alive(children, worker)
    topic = f"{prefix}.telemetry.card"

    send_cards(broker.bootstrap, topic, card_batch("node0001", 0, errors=[(3, 79)]))
    shown = wait_for("gpu-a01 drained", lambda: "DRAIN" in (s := node_state(slurm, "gpu-a01")) and s, alive_check=up)
    assert "Reason=clusterpulse: node0001-card3" in shown

    send_cards(broker.bootstrap, topic, card_batch("node0002", 0, errors=[(5, 79)]))  # over the hourly limit

    def records() -> list[dict]:
        return [json.loads(line) for path in sorted((lake / "_actions").glob("*.jsonl")) for line in path.open()]

    skipped = wait_for(
        "the held-back drain recorded", lambda: [r for r in records() if r["action"] == "skipped"], alive_check=up
    )
    assert skipped[0]["slurm_node"] == "gpu-a02" and "max_per_hour" in skipped[0]["detail"]
    assert "DRAIN" not in node_state(slurm, "gpu-a02")

    # the card reports healthy again for longer than card_failure.recovery_s (30 s of event time)
    send_cards(broker.bootstrap, topic, *[card_batch("node0001", t) for t in range(1, 40)])
    wait_for("gpu-a01 resumed", lambda: "DRAIN" not in node_state(slurm, "gpu-a01"), timeout_s=90, alive_check=up)
    assert [r["action"] for r in records() if r["slurm_node"] == "gpu-a01"] == ["drain", "resume"]
    assert worker.poll() is None
