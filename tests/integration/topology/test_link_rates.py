"""Links below the usual speed or width of their kind: two compute links that trained down, among
storage hosts whose older HCAs all run slower (and must not be called degraded); `topology check`
without a plan and the `topology import` summary name them. Then the real dumps, which have none."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.topology.ibnetdiscover import parse_ibnetdiscover
from pipeline.topology.link_rates import Rate, parse_rate, slow_link_report
from tests.conftest import SAMPLES, run_cli
from tests.ibnetdiscover_text import Cable, Node, default_form, ports_form

# Two leaves and a spine (Quantum); four GPU hosts with a ConnectX-6 on each leaf (4xHDR), of which
# gpu-03's second link is at 4xSDR and gpu-04's first at 4xEDR; two storage hosts with ConnectX-5
# HCAs (devid 0x1017, at most EDR) on both leaves at 4xEDR, as they should be.
NODES = {name: Node(f"MF0;{name}:MQM8700/U1", switch=True) for name in ("leaf-1", "leaf-2", "spine-1")}
CABLES = []
for i in range(1, 5):
    for rail, leaf in enumerate(("leaf-1", "leaf-2")):
        NODES[f"gpu-0{i}/{rail}"] = Node(f"gpu-0{i} mlx5_{rail}", switch=False, devid="0x101b")
        rate = {(3, 1): "4xSDR", (4, 0): "4xEDR"}.get((i, rail), "4xHDR")
        CABLES.append(Cable(f"gpu-0{i}/{rail}", 1, leaf, i, rate))
for i in range(1, 3):
    for rail, leaf in enumerate(("leaf-1", "leaf-2")):
        NODES[f"st-0{i}/{rail}"] = Node(f"st-0{i} HCA-{rail + 1}", switch=False, devid="0x1017")
        CABLES.append(Cable(f"st-0{i}/{rail}", 1, leaf, 10 + i, "4xEDR"))
CABLES += [Cable(leaf, 33 + k, "spine-1", 2 * n + k + 1) for n, leaf in enumerate(("leaf-1", "leaf-2")) for k in (0, 1)]

SLOW = [
    {"link": "gpu-03/mlx5_1~leaf-2/3", "rate": "4xSDR", "usual": "4xHDR"},
    {"link": "gpu-04/mlx5_0~leaf-1/4", "rate": "4xEDR", "usual": "4xHDR"},
]


def test_rates_read_from_both_forms() -> None:
    assert parse_rate("4xHDR") == Rate(4, "HDR") and parse_rate("1x SDR") == Rate(1, "SDR")
    assert parse_rate("4x???") is None and parse_rate(None) is None
    assert Rate(1, "HDR").below(Rate(4, "HDR")) and Rate(4, "EDR").below(Rate(4, "HDR"))
    assert not Rate(4, "HDR").below(Rate(4, "EDR"))


@pytest.mark.parametrize("form", [default_form, ports_form])  # --ports: no devid, the host family tells
def test_two_slow_compute_links_and_no_slower_storage_host(form) -> None:  # noqa: ANN001
    fabric = parse_ibnetdiscover(form(NODES, CABLES))
    assert slow_link_report(fabric) == SLOW


def test_a_narrow_link_or_a_collapse_to_sdr_is_slow_whatever_its_kind() -> None:
    """The storage hosts' kind is all 4xEDR; one of their links at 1x and one at SDR are still slow."""
    cables = [
        Cable(c.a, c.a_port, c.b, c.b_port, {"st-01/0": "1xEDR", "st-02/1": "4xSDR"}.get(c.a, c.rate)) for c in CABLES
    ]
    slow = slow_link_report(parse_ibnetdiscover(default_form(NODES, cables)))
    assert {(row["link"], row["rate"]) for row in slow} >= {
        ("st-01/HCA-1~leaf-1/11", "1xEDR"),
        ("st-02/HCA-2~leaf-2/12", "4xSDR"),
    }


def test_topology_check_without_a_plan_reports_slow_links(tmp_path: Path) -> None:
    dump = tmp_path / "ibnetdiscover.txt"
    dump.write_text(default_form(NODES, CABLES))
    out = run_cli("topology", "check", "--found", str(dump), "--json")
    assert out.returncode == 1, out.stderr
    assert json.loads(out.stdout) == {"links": len(CABLES), "slow_links": SLOW}
    out = run_cli("topology", "check", "--found", str(dump))
    assert out.returncode == 1 and "slow link   gpu-03/mlx5_1~leaf-2/3   4xSDR (usual 4xHDR)" in out.stdout
    fine = tmp_path / "fine.txt"
    fine.write_text(
        default_form(
            NODES, [Cable(c.a, c.a_port, c.b, c.b_port, "4xEDR" if c.a.startswith("st") else "4xHDR") for c in CABLES]
        )
    )
    out = run_cli("topology", "check", "--found", str(fine))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 slow links" in out.stdout


def test_topology_check_with_a_plan_reports_both(tmp_path: Path) -> None:
    dump = tmp_path / "ibnetdiscover.txt"
    dump.write_text(default_form(NODES, CABLES))
    plan = tmp_path / "plan.ndt"
    plan.write_text(
        "#StartDevice,StartPort,EndDevice,EndPort,LinkType\n"
        "gpu-01,gpu-01 mlx5_0,leaf-1,Port 1,Data\ngpu-01,gpu-01 mlx5_1,leaf-2,Port 1,Data\n"
    )
    out = run_cli("topology", "check", "--plan", str(plan), "--found", str(dump), "--json")
    assert out.returncode == 1, out.stderr
    report = json.loads(out.stdout)
    assert report["matched"] == 2 and report["counts"] == {"miswired": 0, "missing": 0, "unexpected": len(CABLES) - 2}
    assert set(report) == {"matched", "miswired", "missing", "unexpected", "counts", "slow_links"}
    assert report["slow_links"] == SLOW
    out = run_cli("topology", "check", "--found", str(tmp_path / "nope.txt"))
    assert out.returncode == 2 and "no such file" in out.stderr and "Traceback" not in out.stderr


def test_topology_import_summary_names_slow_links(tmp_path: Path) -> None:
    dump = tmp_path / "ibnetdiscover.txt"
    dump.write_text(default_form(NODES, CABLES))
    out = run_cli("topology", "import", str(dump), "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["slow_links"] == SLOW
    out = run_cli("topology", "import", str(dump), "--out", str(tmp_path / "fabric.yaml"))
    assert out.returncode == 0, out.stderr
    assert ", 2 slow links" in out.stdout.splitlines()[0]
    assert "  slow link   gpu-04/mlx5_0~leaf-1/4   4xEDR (usual 4xHDR)" in out.stdout.splitlines()
    out = run_cli("topology", "check", "--found", str(tmp_path / "fabric.yaml"), "--json")  # the saved file keeps rates
    assert out.returncode == 1 and json.loads(out.stdout)["slow_links"] == SLOW


REAL = {
    "fabric_dumps/cs8500_hdr_ibdiagnet_lst.txt.gz": 2352,  # 64 storage links at 4xEDR: older HCAs
    "selene_ib_topology/selene.storage.ibnetdiscover.txt.gz": 3286,  # 320 ai400x links at 4xEDR: all of them
    "ufm_ndt_cabling/ibnetdiscover_director.txt.gz": 5523,
}  # the UFM hosts' 4 links at 4xEDR


@pytest.mark.parametrize("dump", sorted(REAL))
def test_real_dumps_whose_slower_links_are_whole_kinds_have_no_slow_link(dump: str) -> None:
    path = SAMPLES / dump
    if not path.exists():
        pytest.skip(f"../shared/samples/{dump} is not here")
    out = run_cli("topology", "check", "--found", str(path), "--json")
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr
    assert json.loads(out.stdout) == {"links": REAL[dump], "slow_links": []}
