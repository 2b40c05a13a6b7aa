"""The cabling check: a plan against the discovered fabric, on hand-made files and on UFM NDT's own
test case (a real site's plans and ibnetdiscover dump, with the upstream tool's expected report)."""

from __future__ import annotations

import json

import pytest

from pipeline.topology.cabling_check import check_cabling
from pipeline.topology.cabling_plan import load_cabling_plan, parse_cabling_plan
from pipeline.topology.ibnetdiscover import load_ibnetdiscover, parse_ibnetdiscover
from tests.conftest import SAMPLES, run_cli
from tests.integration.topology.test_topology_files import DEFAULT_FORM

NDT = SAMPLES / "ufm_ndt_cabling"
PLAN = "#StartDevice,StartPort,EndDevice,EndPort,LinkType\n"


def test_miswired_missing_and_unexpected_links() -> None:
    found = parse_ibnetdiscover(DEFAULT_FORM)
    plan = parse_cabling_plan(
        PLAN + "host-1,host-1 mlx5_0,la,Port 2,Data\n"  # found on port 1: miswired
        "host-2,host-2 mlx5_1,LB,Port 2,Data\n"  # as found (case aside)
        "host-3,host-3 mlx5_0,LB,Port 7,Data\n"  # nowhere: missing
        "LA,Port 39,SP,Port 1,Data\nLB,Port 39,SP,Port 2,Data\n"
    )
    report = check_cabling(plan, found)
    assert report.matched == 3
    assert [(str(p), str(f)) for p, f in report.miswired] == [("host-1/mlx5_0 - la/2", "LA/1 - host-1/mlx5_0")]
    assert [str(link) for link in report.missing] == ["host-3/mlx5_0 - LB/7"]
    # LA port 2 has host-2's mlx5_0 and LB port 1 host-1's mlx5_1: cabled, not planned
    assert sorted(str(link) for link in report.unexpected) == ["LA/2 - host-2/mlx5_0", "LB/1 - host-1/mlx5_1"]
    assert not report.clean and check_cabling(found, found).clean


@pytest.mark.skipif(not NDT.exists(), reason="../shared/samples/ufm_ndt_cabling is not here")
def test_the_ufm_ndt_test_case_gives_the_upstream_report() -> None:
    """Compared as link sets (the upstream report's expected/actual sides are not used
    consistently, and it names never-named HCAs `MT4123` where we add their GUID)."""
    found = load_ibnetdiscover(NDT / "ibnetdiscover_director.txt.gz")
    plan = load_cabling_plan(NDT / "switch_to_host_topo1.ndt", NDT / "switch_to_switch_topo2.ndt")
    report = check_cabling(plan, found)
    expected = json.loads((NDT / "expected_report.json").read_text())["report"]

    def ends(text: str) -> frozenset:
        out = []
        for side in text.split(" - "):
            device, port = side.split("/", 1)
            port = " ".join(port.split())
            port = port[len(device) + 1 :] if port.lower().startswith(device.lower() + " ") else port
            out.append((device.lower(), port.lower()))
        return frozenset(out)

    def mine(link) -> frozenset:  # noqa: ANN001
        return frozenset((e.device.lower(), e.port.lower()) for e in (link.a, link.b))

    assert {ends(m["expected"]) | ends(m["actual"]) for m in expected["miss_wired"]} == {
        mine(p) | mine(f) for p, f in report.miswired
    }
    assert {ends(x) for x in expected["missing_in_ufm"]} == {mine(link) for link in report.missing}
    switch_ends = {e for x in expected["missing_in_ndt"] for e in ends(x) if "ib" in e[0] and e[1].isdigit()}
    assert len(report.unexpected) == len(expected["missing_in_ndt"]) == 107
    assert {
        e
        for link in report.unexpected
        for e in mine(link)
        if found.devices[next(d for d in (link.a.device, link.b.device) if d.lower() == e[0])].kind == "switch"
    } == switch_ends
    assert report.matched == 5414  # 2,223 host links + 3,195 leaf-director links, less the 4 above


@pytest.mark.skipif(not NDT.exists(), reason="../shared/samples/ufm_ndt_cabling is not here")
def test_topology_check_command_exits_1_on_differences() -> None:
    out = run_cli(
        "topology",
        "check",
        "--plan",
        str(NDT / "switch_to_host_topo1.ndt"),
        "--plan",
        str(NDT / "switch_to_switch_topo2.ndt"),
        "--found",
        str(NDT / "ibnetdiscover_director.txt.gz"),
        "--json",
    )
    assert out.returncode == 1, out.stderr
    assert json.loads(out.stdout)["counts"] == {"miswired": 2, "missing": 2, "unexpected": 107}
    out = run_cli("topology", "check", "--plan", str(NDT / "expected_report.json"), "--found", str(NDT))
    assert out.returncode == 2 and "no header row" in out.stderr
