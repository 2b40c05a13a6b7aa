"""`topology write`: the synthetic cluster in each real format reads back (`topology import`, `show`,
`radius`, `check`) into the cluster's own wiring, computed here from `pipeline.topology.synthetic`, not from
the writer."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from pipeline.topology.ibnetdiscover import parse_ibnetdiscover
from pipeline.topology.load import load_fabric
from pipeline.topology.synthetic import ClusterShape, Topology
from pipeline.topology.writers import INFINIBAND_NDR, ibnetdiscover_text, name_guid, synthetic_fabric
from tests.conftest import run_cli

SHAPE = ClusterShape(cards=256, cards_per_node=8, nodes_per_leaf=16, spines=4)
TOPO = Topology(SHAPE)  # 32 nodes, 16 leaves (2 per rail), 4 spines
SCENARIO = "cluster: {cards: 256, cards_per_node: 8, nodes_per_leaf: 16, spines: 4}\nfaults: []\n"
FORMATS = ("ibnetdiscover", "ibnetdiscover-ports", "lldp", "ndt")
PORT_NAMES = {"lldp": ("eth{}", "swp{}")}  # host interface of NIC j, switch port p (from 1); else IB's
OUT = {
    "ibnetdiscover": "ibnetdiscover.txt",
    "ibnetdiscover-ports": "ibnetdiscover-ports.txt",
    "lldp": "lldp",
    "ndt": "hosts.ndt",
}


def expected_links(form: str, topo: Topology = TOPO) -> set[tuple[tuple[str, str], tuple[str, str]]]:
    """Every link of the synthetic wiring as (end, end), ends (device, port) sorted: NIC j of node i
    on leaf port i mod nodes_per_leaf, leaf L's port nodes_per_leaf + s to spine s's port L, ports
    numbered from 1 in the file."""
    host, switch = PORT_NAMES.get(form, ("mlx5_{}", "{}"))
    links = set()
    for node in range(topo.nodes):
        for nic in range(topo.rails):
            ends = (
                (topo.node_name(node), host.format(nic)),
                (topo.leaf_name(topo.leaf_of(node, nic)), switch.format(node % topo.nodes_per_leaf + 1)),
            )
            links.add(tuple(sorted(ends)))
    for leaf in range(topo.leaves):
        for spine in range(topo.spines):
            ends = (
                (topo.leaf_name(leaf), switch.format(topo.nodes_per_leaf + spine + 1)),
                (topo.spine_name(spine), switch.format(leaf + 1)),
            )
            links.add(tuple(sorted(ends)))
    return links


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The small cluster in every format, written by the CLI from a scenario's `cluster:` shape."""
    folder = tmp_path_factory.mktemp("written")
    scenario = folder / "small.yaml"
    scenario.write_text(SCENARIO)
    paths = {}
    for form in FORMATS:
        paths[form] = folder / OUT[form]
        result = run_cli("topology", "write", "--format", form, "--out", str(paths[form]), "--scenario", str(scenario))
        assert result.returncode == 0, result.stderr
        assert "32 hosts with 256 host ports, 16 leaves, 4 spines, 320 links" in result.stdout
    return paths


@pytest.mark.parametrize("form", FORMATS)
def test_import_reads_back_the_synthetic_clusters_counts_and_tiers(written: dict[str, Path], form: str) -> None:
    result = run_cli("topology", "import", str(written[form]), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["hosts"] == TOPO.nodes == 32
    assert summary["host_ports"] == TOPO.nodes * TOPO.rails == 256
    assert summary["tiers"] == {"leaf": TOPO.leaves, "spine": TOPO.spines} == {"leaf": 16, "spine": 4}
    assert summary["switches"] == 20
    assert summary["links"] == 256 + 16 * 4
    assert summary["switch_tier"] == {
        **{TOPO.leaf_name(i): "leaf" for i in range(16)},
        **{TOPO.spine_name(i): "spine" for i in range(4)},
    }
    assert summary["dropped"] == {} and summary["slow_links"] == []


@pytest.mark.parametrize("form", FORMATS)
def test_every_link_is_the_synthetic_wiring(written: dict[str, Path], form: str) -> None:
    fabric = load_fabric(written[form])
    found = [tuple(sorted(((link.a.device, link.a.port), (link.b.device, link.b.port)))) for link in fabric.links]
    assert len(found) == len(set(found))
    assert set(found) == expected_links(form)
    kinds = {name: d.kind for name, d in fabric.devices.items()}
    assert kinds == {**dict.fromkeys(TOPO.node_names, "host"), **dict.fromkeys(TOPO.switch_names, "switch")}


@pytest.mark.parametrize("form", FORMATS)
def test_a_leafs_radius_is_its_16_host_ports(written: dict[str, Path], form: str) -> None:
    result = run_cli("topology", "radius", str(written[form]), "leaf001", "--json")
    assert result.returncode == 0, result.stderr
    radius = json.loads(result.stdout)
    host = PORT_NAMES.get(form, ("mlx5_{}",))[0].format(0)  # leaf001 is rail 0's second leaf
    assert radius["tier"] == 1 and radius["links"] == 16 + 4
    assert sorted(radius["host_ports_down"]) == [f"{TOPO.node_name(i)}/{host}" for i in range(16, 32)]
    assert radius["hosts_cut_off"] == [] and radius["switches_isolated"] == []
    text = run_cli("topology", "radius", str(written[form]), "spine003")
    assert text.returncode == 0 and "spine003 (spine): 16 links down" in text.stdout
    assert "16 switches below lose some uplinks" in text.stdout


@pytest.mark.parametrize("found", ["ibnetdiscover", "ibnetdiscover-ports"])
def test_the_written_plan_checks_clean_against_the_written_discovery(written: dict[str, Path], found: str) -> None:
    result = run_cli("topology", "check", "--plan", str(written["ndt"]), "--found", str(written[found]))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "320 links as planned; 0 miswired, 0 missing, 0 unexpected; 0 slow links"
    report = json.loads(
        run_cli("topology", "check", "--plan", str(written["ndt"]), "--found", str(written[found]), "--json").stdout
    )
    assert report["matched"] == 320 and report["slow_links"] == []


def test_a_plan_for_another_shape_does_not_check_clean(written: dict[str, Path], tmp_path: Path) -> None:
    """The check above is not clean by accident: a plan with a fifth spine misses its 16 links."""
    scenario = tmp_path / "five-spines.yaml"
    scenario.write_text(SCENARIO.replace("spines: 4", "spines: 5"))
    plan = tmp_path / "five.ndt"
    assert (
        run_cli("topology", "write", "--format", "ndt", "--out", str(plan), "--scenario", str(scenario)).returncode == 0
    )
    result = run_cli("topology", "check", "--plan", str(plan), "--found", str(written["ibnetdiscover"]))
    assert result.returncode == 1
    assert "320 links as planned; 0 miswired, 16 missing, 0 unexpected" in result.stdout


def test_show_and_the_default_forms_details(written: dict[str, Path]) -> None:
    shown = run_cli("topology", "show", str(written["ibnetdiscover"]))
    assert shown.stdout.strip() == (
        f"{written['ibnetdiscover']}: 52 devices (32 hosts, 16 leaves, 4 spines); "
        "320 links, 256 host ports; 2 switch tiers"
    )
    text = written["ibnetdiscover"].read_text()
    g = name_guid("leaf000")
    assert (
        f'switchguid=0x{g}({g})\nSwitch\t20 "S-{g}"\t\t# "MF0;leaf000:MQM9700/U1" enhanced port 0 lid 1 lmc 0' in text
    )
    assert text.count("\nCa\t1 ") == 256 and text.count("\nSwitch\t") == 20
    assert text.count(" 4xNDR\n") == 2 * 320  # every link from both ends
    fabric = load_fabric(written["ibnetdiscover"])
    assert fabric.devices["spine002"].guid == name_guid("spine002")
    assert fabric.devices["leaf000"].model == "MQM9700" and fabric.devices["leaf000"].devid == "0xd2f2"
    assert fabric.devices["node0000"].devid == "0x1021"
    assert json.loads((written["lldp"] / "node0000.json").read_text())["lldp"][0]["interface"][0]["name"] == "eth0"
    assert sorted(p.stem for p in written["lldp"].glob("*.json")) == sorted(TOPO.node_names + TOPO.switch_names)


def test_the_settings_shape_is_written_and_writing_again_gives_the_same_bytes(tmp_path: Path) -> None:
    env = {
        "CLUSTERPULSE_CLUSTER__CARDS": "256",
        "CLUSTERPULSE_CLUSTER__NODES_PER_LEAF": "16",
        "CLUSTERPULSE_CLUSTER__SPINES": "4",
    }
    first, second = tmp_path / "a.txt", tmp_path / "b.txt"
    for out in (first, second):
        assert run_cli("topology", "write", "--format", "ibnetdiscover", "--out", str(out), env=env).returncode == 0
    assert first.read_bytes() == second.read_bytes()
    fabric = load_fabric(first)
    found = {tuple(sorted(((link.a.device, link.a.port), (link.b.device, link.b.port)))) for link in fabric.links}
    assert found == expected_links("ibnetdiscover")


def test_the_default_cluster_is_written_and_read_back_quickly() -> None:
    """1,280 hosts x 8 HCAs, 320 leaves, 32 spines: linear work, not a scan of every cable per node."""
    topo = Topology()
    started = time.perf_counter()
    text = ibnetdiscover_text(synthetic_fabric(topo, INFINIBAND_NDR))
    written_s = time.perf_counter() - started
    fabric = parse_ibnetdiscover(text)
    summary = fabric.summary()
    assert summary["by_tier"] == {"host": 1280, "leaf": 320, "spine": 32}
    assert summary["host_ports"] == 10240 and summary["links"] == 10240 + 320 * 32
    assert written_s < 10, f"writing the default cluster took {written_s:.1f} s"


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--format", "ndt", "--out", "{tmp}/no-such-dir/plan.ndt"],
            "cannot write --out {tmp}/no-such-dir/plan.ndt: No such file or directory",
        ),
        (["--format", "ibnetdiscover", "--out", "{tmp}"], "cannot write --out {tmp}: Is a directory"),
        (["--format", "lldp", "--out", "{tmp}/file.txt"], "{tmp}/file.txt is a file: lldp writes a directory"),
        (["--format", "lldp", "--out", "{tmp}/mixed"], "{tmp}/mixed already holds 1 .json file(s) of other machines"),
        (
            ["--format", "ndt", "--out", "{tmp}/x.ndt", "--scenario", "{tmp}/none.yaml"],
            "invalid scenario: cannot read scenario '{tmp}/none.yaml'",
        ),
        (["--format", "ndt", "--out", "{tmp}/x.ndt", "--scenario", "{tmp}/bad.yaml"], "invalid scenario: "),
        (
            ["--format", "ndt", "--out", "{tmp}/x.ndt", "--scenario", "{tmp}/imported.yaml"],
            "its cluster is an imported fabric",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "mixed").mkdir()
    (tmp_path / "mixed" / "tor-a.json").write_text("{}")
    (tmp_path / "bad.yaml").write_text("cluster: {cards: 100, cards_per_node: 8}\nfaults: []\n")
    (tmp_path / "fabric.txt").write_text(ibnetdiscover_text(synthetic_fabric(TOPO)))
    (tmp_path / "imported.yaml").write_text("cluster: {topology: fabric.txt}\nfaults: []\n")
    result = run_cli("topology", "write", *[a.format(tmp=tmp_path) for a in args])
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.count("\n") == 1 and message.format(tmp=tmp_path) in result.stderr, result.stderr
    assert not (tmp_path / "x.ndt").exists()
