"""Topology files as one graph: ibnetdiscover (both forms), cabling CSVs and LLDP; tiers and blast
radius. Hand-written files in each documented format, then the real dumps in ../shared/samples."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.topology.cabling_plan import parse_cabling_plan
from pipeline.topology.fabric import FabricError
from pipeline.topology.ibnetdiscover import load_ibnetdiscover, parse_ibnetdiscover
from pipeline.topology.lldp import load_lldp
from pipeline.topology.load import load_fabric
from tests.conftest import SAMPLES, run_cli

SELENE = SAMPLES / "selene_ib_topology" / "selene.compute.ibnetdiscover.txt.gz"

# Two leaves, one spine, two hosts with an HCA on each leaf, a SHARP node inside leaf A.
DEFAULT_FORM = """#
# Topology file: generated on Tue Feb 23 14:02:06 2021
#
vendid=0x2c9
switchguid=0xa000000000000001(a000000000000001)
Switch\t41 "S-a000000000000001"\t\t# "MF0;LA:MQM8700/U1" enhanced port 0 lid 1 lmc 0
[1]\t"H-c000000000000001"[1](c000000000000001) \t\t# "host-1 mlx5_0" lid 11 4xHDR
[2]\t"H-c000000000000003"[1](c000000000000003) \t\t# "host-2 mlx5_0" lid 13 4xHDR
[39]\t"S-b000000000000001"[1]\t\t# "MF0;SP:MQM8700/U1" lid 3 4xHDR
[41]\t"H-e000000000000001"[1](e000000000000001) \t\t# "Mellanox Technologies Aggregation Node" lid 9 4xHDR

switchguid=0xa000000000000002(a000000000000002)
Switch\t41 "S-a000000000000002"\t\t# "MF0;LB:MQM8700/U1" enhanced port 0 lid 2 lmc 0
[1]\t"H-c000000000000002"[1](c000000000000002) \t\t# "host-1 mlx5_1" lid 12 4xHDR
[2]\t"H-c000000000000004"[1](c000000000000004) \t\t# "host-2 mlx5_1" lid 14 4xHDR
[39]\t"S-b000000000000001"[2]\t\t# "MF0;SP:MQM8700/U1" lid 3 4xHDR

switchguid=0xb000000000000001(b000000000000001)
Switch\t41 "S-b000000000000001"\t\t# "MF0;SP:MQM8700/U1" enhanced port 0 lid 3 lmc 0
[1]\t"S-a000000000000001"[39]\t\t# "MF0;LA:MQM8700/U1" lid 1 4xHDR
[2]\t"S-a000000000000002"[39]\t\t# "MF0;LB:MQM8700/U1" lid 2 4xHDR

caguid=0xe000000000000001
Ca\t1 "H-e000000000000001"\t\t# "Mellanox Technologies Aggregation Node"
[1](e000000000000001) \t"S-a000000000000001"[41]\t\t# lid 9 lmc 0 "MF0;LA:MQM8700/U1" lid 1 4xHDR

caguid=0xc000000000000001
Ca\t1 "H-c000000000000001"\t\t# "host-1 mlx5_0"
[1](c000000000000001) \t"S-a000000000000001"[1]\t\t# lid 11 lmc 0 "MF0;LA:MQM8700/U1" lid 1 4xHDR

caguid=0xc000000000000002
Ca\t1 "H-c000000000000002"\t\t# "host-1 mlx5_1"
[1](c000000000000002) \t"S-a000000000000002"[1]\t\t# lid 12 lmc 0 "MF0;LB:MQM8700/U1" lid 2 4xHDR
"""

# The same fabric as `ibnetdiscover --ports` prints it (infiniband-diags dump_ports_report).
PORTS_FORM = (
    "\n".join(
        [
            "SW     1  1 0xa000000000000001 4x HDR - CA    11  1 0xc000000000000001 "
            "( 'MF0;LA:MQM8700/U1' - 'host-1 mlx5_0' )",
            "SW     1  2 0xa000000000000001 4x HDR - CA    13  1 0xc000000000000003 "
            "( 'MF0;LA:MQM8700/U1' - 'host-2 mlx5_0' )",
            "SW     1 39 0xa000000000000001 4x HDR - SW     3  1 0xb000000000000001 "
            "( 'MF0;LA:MQM8700/U1' - 'MF0;SP:MQM8700/U1' )",
            "SW     1 41 0xa000000000000001 4x HDR - CA     9  1 0xe000000000000001 "
            "( 'MF0;LA:MQM8700/U1' - 'Mellanox Technologies Aggregation Node' )",
            "SW     2  1 0xa000000000000002 4x HDR - CA    12  1 0xc000000000000002 "
            "( 'MF0;LB:MQM8700/U1' - 'host-1 mlx5_1' )",
            "SW     2  2 0xa000000000000002 4x HDR - CA    14  1 0xc000000000000004 "
            "( 'MF0;LB:MQM8700/U1' - 'host-2 mlx5_1' )",
            "SW     2 39 0xa000000000000002 4x HDR - SW     3  2 0xb000000000000001 "
            "( 'MF0;LB:MQM8700/U1' - 'MF0;SP:MQM8700/U1' )",
            "SW     3  1 0xb000000000000001 4x HDR - SW     1 39 0xa000000000000001 "
            "( 'MF0;SP:MQM8700/U1' - 'MF0;LA:MQM8700/U1' )",
            "SW     3  2 0xb000000000000001 4x HDR - SW     2 39 0xa000000000000002 "
            "( 'MF0;SP:MQM8700/U1' - 'MF0;LB:MQM8700/U1' )",
            "CA    11  1 0xc000000000000001 4x HDR - SW     1  1 0xa000000000000001 "
            "( 'host-1 mlx5_0' - 'MF0;LA:MQM8700/U1' )",
        ]
    )
    + "\n"
)

LINKS = {
    ("LA/1", "host-1/mlx5_0"),
    ("LA/2", "host-2/mlx5_0"),
    ("LA/39", "SP/1"),
    ("LB/1", "host-1/mlx5_1"),
    ("LB/2", "host-2/mlx5_1"),
    ("LB/39", "SP/2"),
}


def link_set(fabric) -> set[tuple[str, str]]:  # noqa: ANN001
    return {tuple(sorted((str(link.a), str(link.b)))) for link in fabric.links}


@pytest.mark.parametrize(
    "text", [DEFAULT_FORM, PORTS_FORM, DEFAULT_FORM.replace("\n", "\r\n").replace("\t", "")]
)  # a terminal log
def test_both_ibnetdiscover_forms_give_each_link_once_in_the_fabrics_own_names(text: str) -> None:
    fabric = parse_ibnetdiscover(text)
    assert link_set(fabric) == {tuple(sorted(pair)) for pair in LINKS}
    assert fabric.tiers() == {"host-1": 0, "host-2": 0, "LA": 1, "LB": 1, "SP": 2}
    assert fabric.dropped.get("link to a SHARP aggregation node")


def test_a_dead_leaf_takes_one_port_of_each_host_and_a_lone_spine_isolates_the_leaves() -> None:
    fabric = parse_ibnetdiscover(DEFAULT_FORM)
    leaf = fabric.blast_radius("LA")
    assert leaf["host_ports_down"] == ["host-1/mlx5_0", "host-2/mlx5_0"] and leaf["hosts_cut_off"] == []
    spine = fabric.blast_radius("SP")  # each leaf's only uplink: both leaves are cut off, not degraded
    assert spine["host_ports_down"] == [] and spine["switches_isolated"] == ["LA", "LB"] and spine["links"] == 2
    assert len(spine["host_ports_isolated"]) == 4 and spine["switches_degraded"] == []


def test_a_single_homed_host_behind_its_only_leaf_is_cut_off() -> None:
    text = DEFAULT_FORM.replace('"host-1 mlx5_1"', '"host-3 mlx5_1"')
    assert "host-1" in parse_ibnetdiscover(text).blast_radius("LA")["hosts_cut_off"]


def test_cabling_csvs_in_both_ndt_dialects() -> None:
    ndt = (
        "#StartDevice,StartPort,EndDevice,EndPort,LinkType\n"
        "host-1,host-1 mlx5_0,LA,Port 1, Data\nLA,Port 39,CHASSIS-A,Blade 16_Port 2/20,Data\n"
        "CHASSIS-A,Blade 16_Port 2/20,LA,Port 39,Data\n"
    )
    plan = parse_cabling_plan(ndt)
    assert link_set(plan) == {("LA/1", "host-1/mlx5_0"), ("CHASSIS-A/L16/U2/20", "LA/39")}  # listed twice, kept once
    assert plan.devices["host-1"].kind == "host" and plan.devices["CHASSIS-A"].kind == "switch"
    sheet = (
        ",rack #,U height,#Fields:StartDevice,StartPort,StartDeviceLocation,EndDevice,EndPort,EndDeviceLocation,,\n"
        ",R1,U41,LA,Port 21,F01,CH-1,Blade 1_Port 1/1,F02,junk,\n,,,,,,,,,,\n"
    )
    assert link_set(parse_cabling_plan(sheet)) == {("CH-1/L01/U1/1", "LA/21")}
    with pytest.raises(FabricError, match="no header row"):
        parse_cabling_plan("a,b,c\n1,2,3\n")


def test_lldp_dumps_per_host(tmp_path: Path) -> None:
    def neighbour(local: str, switch: str, port: str) -> dict:
        return {
            "name": local,
            "via": "LLDP",
            "chassis": [{"name": [{"value": switch}]}],
            "port": [{"id": [{"type": "ifname", "value": port}]}],
        }

    (tmp_path / "gpu-01.json").write_text(
        json.dumps(
            {
                "lldp": [
                    {
                        "interface": [
                            neighbour("ens11np0", "leaf-1", "Ethernet1/1"),
                            neighbour("ens12np0", "leaf-2", "Ethernet1/1"),
                        ]
                    }
                ]
            }
        )
    )
    (tmp_path / "leaf-1.json").write_text(
        json.dumps({"lldp": [{"interface": [neighbour("Ethernet1/33", "spine-1", "Ethernet1/1")]}]})
    )
    fabric = load_lldp(tmp_path)
    assert link_set(fabric) == {
        ("gpu-01/ens11np0", "leaf-1/Ethernet1/1"),
        ("gpu-01/ens12np0", "leaf-2/Ethernet1/1"),
        ("leaf-1/Ethernet1/33", "spine-1/Ethernet1/1"),
    }
    assert fabric.tiers() == {"gpu-01": 0, "leaf-1": 1, "leaf-2": 1, "spine-1": 2}
    assert load_fabric(tmp_path).summary()["links"] == 3
    (tmp_path / "bad.json").write_text('{"neighbors": []}')
    with pytest.raises(FabricError, match="bad.json: not `lldpcli"):
        load_lldp(tmp_path)


@pytest.mark.skipif(not SELENE.exists(), reason="../shared/samples/selene_ib_topology is not here")
def test_selene_loads_with_three_tiers_and_every_link_once() -> None:
    fabric = load_ibnetdiscover(SELENE)
    tiers = fabric.tiers()
    switches = [d for d in fabric.devices.values() if d.kind == "switch"]
    assert len(switches) == 666
    # 4,341 CA ports, 666 of them SHARP aggregation nodes (one per switch): 3,675 host ports
    assert fabric.summary()["host_ports"] == 3675 and fabric.dropped["SHARP aggregation node"] == 666
    assert len({link.key() for link in fabric.links}) == len(fabric.links)
    by_prefix = {(d.name.rstrip("0123456789-").rstrip("0123456789"), tiers[d.name]) for d in switches}
    # management leaves too: MLG01-05 has no host and hangs off MSPINE4-01, which hangs off the cores
    assert by_prefix == {("LG", 1), ("CSPINE", 2), ("CCORE", 3), ("MLG", 1), ("MSPINE", 2)}
    luna = [n for n, d in fabric.devices.items() if n.startswith("luna-")]
    ports = {end.port for link in fabric.links for end in (link.a, link.b) if end.device == "luna-0001"}
    # a DGX A100: eight compute HCAs, mlx5_4 and mlx5_5 are on the storage fabric
    assert len(luna) == 458 and ports == {f"mlx5_{i}" for i in (0, 1, 2, 3, 6, 7, 8, 9)}


@pytest.mark.skipif(not SELENE.exists(), reason="../shared/samples/selene_ib_topology is not here")
def test_selene_blast_radius_of_a_leaf_a_spine_and_a_core() -> None:
    fabric = load_ibnetdiscover(SELENE)
    leaf = fabric.blast_radius("LG01-01")
    assert leaf["tier"] == 1 and len(leaf["host_ports_down"]) == 20 and leaf["hosts_cut_off"] == []
    assert all(port.endswith("/mlx5_0") for port in leaf["host_ports_down"])  # one rail
    spine = fabric.blast_radius("CSPINE1-01")
    assert spine["tier"] == 2 and spine["host_ports_down"] == [] and spine["switches_degraded"]
    assert all(name.startswith("LG") for name in spine["switches_degraded"])
    core = fabric.blast_radius("CCORE1-001")
    assert core["tier"] == 3 and core["host_ports_down"] == [] and core["switches_isolated"] == []
    assert sum(name.startswith("CSPINE") for name in core["switches_degraded"]) == 32  # and a management spine
    assert all(name.startswith(("CSPINE", "MSPINE")) for name in core["switches_degraded"])


@pytest.mark.skipif(not SELENE.exists(), reason="../shared/samples/selene_ib_topology is not here")
def test_topology_show_and_radius_commands() -> None:
    out = run_cli("topology", "show", str(SELENE))
    assert out.returncode == 0 and "469 hosts, 204 leaves, 322 spines, 140 cores)" in out.stdout
    out = run_cli("topology", "radius", str(SELENE), "lg01-01", "--json")
    assert json.loads(out.stdout)["switch"] == "LG01-01"
    out = run_cli("topology", "radius", str(SELENE), "nope")
    assert out.returncode == 2 and "no switch 'nope'" in out.stderr and "Traceback" not in out.stderr


OSC = SAMPLES / "infiniband" / "osc_perfquery_fixtures"


@pytest.mark.skipif(not OSC.exists(), reason="../shared/samples/infiniband is not here")
def test_real_ports_form_excerpts_with_unconnected_ports_and_odd_descriptions() -> None:
    """infiniband_exporter's `ibnetdiscover -p` fixtures: links seen from both ends or one,
    unconnected ports, a SHARP node, descriptions with spaces around them."""
    osc = load_fabric(OSC / "ibnetdiscover__test.out")
    assert link_set(osc) == {
        ("ib-i1l1s01/10", "o0001/HCA-1"),
        ("ib-i1l1s01/11", "o0002/HCA-1"),
        ("ib-i4l1s01/35", "p0001/HCA-1"),
        ("ib-i1l1s01/1", "ib-i1l2s01/1"),
    }
    assert osc.dropped == {"unconnected port": 2}
    hdr = load_fabric(OSC / "ibnetdiscover__test2.out")
    assert link_set(hdr) == {("5FB0405-leaf-IB01/79", "worker20/mlx5_3")}
    assert hdr.dropped == {"link to a SHARP aggregation node": 2, "unconnected port": 3}
    assert load_fabric(OSC / "ibnetdiscover__test3.out").links == []  # one port, nothing cabled
