"""An imported fabric as the pipeline's topology: names, wiring, and the simulator, detectors and
root cause running on it. A hand-written three-tier fabric first, then NVIDIA's Selene."""

from __future__ import annotations

import collections

import pytest

from pipeline.eval.evaluate import run_offline
from pipeline.settings import load_settings
from pipeline.topology.fabric import Device, Endpoint, Fabric, Link
from pipeline.topology.ibnetdiscover import load_ibnetdiscover
from pipeline.topology.imported import FabricTopology, load_topology
from pipeline.topology.synthetic import UnknownEntity
from producers.scenario import ScenarioError, parse_scenario
from tests.conftest import SAMPLES

SELENE = SAMPLES / "selene_ib_topology" / "selene.compute.ibnetdiscover.txt.gz"


def three_tier() -> Fabric:
    """Two hosts x two NICs, two leaves (one per rail), two spines, one core; a leaf has two ports
    to spine-a (parallel links)."""
    f = Fabric()
    for name in ("gpu-10", "gpu-2"):
        f.add_device(Device(name, "host"))
    for name in ("leaf-1", "leaf-2", "spine-a", "spine-b", "core-1"):
        f.add_device(Device(name, "switch"))
    for host, first in (("gpu-2", 1), ("gpu-10", 2)):
        f.add_link(Link(Endpoint(host, "mlx5_0"), Endpoint("leaf-1", str(first))))
        f.add_link(Link(Endpoint("leaf-2", str(first)), Endpoint(host, "mlx5_1")))  # switch end first
    f.add_link(Link(Endpoint("leaf-1", "33"), Endpoint("spine-a", "1")))
    f.add_link(Link(Endpoint("leaf-1", "34"), Endpoint("spine-a", "2")))
    f.add_link(Link(Endpoint("spine-b", "1"), Endpoint("leaf-2", "33")))  # upper end first
    f.add_link(Link(Endpoint("spine-a", "32"), Endpoint("core-1", "1")))
    f.add_link(Link(Endpoint("spine-b", "32"), Endpoint("core-1", "2")))
    return f


def test_names_and_wiring_of_an_imported_fabric_are_the_fabrics_own() -> None:
    topo = FabricTopology(three_tier(), cards_per_node=2)
    assert topo.node_names == ["gpu-2", "gpu-10"]  # natural order
    assert topo.switch_names == ["leaf-1", "leaf-2", "spine-a", "spine-b", "core-1"]  # by tier
    assert topo.cards == 4 and topo.rails == 2
    assert [topo.kind_of(n) for n in ("leaf-2", "spine-b", "core-1", "gpu-10", "gpu-10-card1")] == [
        "leaf",
        "spine",
        "core",
        "node",
        "card",
    ]
    # port N of the fabric is our port N-1, as the telemetry adapters number them
    assert topo.port_link("leaf-1", 0) == "gpu-2/mlx5_0~leaf-1/1"
    assert topo.port_link("leaf-2", 32) == "leaf-2/33~spine-b/1"  # the lower tier's end first
    assert topo.port_link("leaf-1", 5) is None and topo.switch_ports("leaf-1") == 34
    assert topo.port_link("gpu-10", 1) == "gpu-10/mlx5_1~leaf-2/2"  # a node reports its NICs
    assert topo.link_causes("gpu-10/mlx5_1~leaf-2/2") == [("node_down", "gpu-10"), ("switch_down", "leaf-2")]
    assert topo.link_causes("spine-a/32~core-1/1") == [("switch_down", "spine-a"), ("switch_down", "core-1")]
    assert topo.link_card("gpu-10/mlx5_1~leaf-2/2") == "gpu-10-card1"
    radius = topo.switch_radius("leaf-1")
    assert radius == {
        "cards": 2,
        "nodes": 2,
        "links": 4,
        "rail": 0,
        "card_names": ["gpu-2-card0", "gpu-10-card0"],
        "node_names": ["gpu-10", "gpu-2"],
    }
    assert topo.switch_radius("spine-a")["links"] == 3
    with pytest.raises(UnknownEntity):
        topo.parse_card("gpu-10-card2")
    with pytest.raises(UnknownEntity):
        topo.resolve_link("gpu-10/mlx5_9~leaf-2/2")


def _settings_for(scenario):  # noqa: ANN001, ANN202
    return load_settings({}, environ={}).for_scenario(scenario)


def test_a_scenario_on_an_imported_fabric_pages_each_switch_once(tmp_path) -> None:  # noqa: ANN001
    """The simulator runs the fabric: a dead core takes its two links, each seen down from the spine
    end and grouped under the core's switch_down; a dead leaf's host links are seen from the hosts."""
    import yaml

    path = tmp_path / "fabric.yaml"
    path.write_text(yaml.safe_dump(_fabric_yaml(three_tier())))
    scenario = parse_scenario(
        {
            "name": "tiny-fabric",
            "seed": 5,
            "duration_s": 150,
            "noise": {"nic_reports": 1},
            "cluster": {"topology": str(path), "cards_per_node": 2},
            "jobs": [{"name": "train", "first_node": 0, "nodes": 2, "step_s": 1.0}],
            "faults": [
                {"kind": "switch_failure", "target": "core-1", "start_s": 20, "duration_s": 40},
                {"kind": "switch_failure", "target": "leaf-1", "start_s": 90, "duration_s": 40},
            ],
        }
    )
    alerts = run_offline(scenario, _settings_for(scenario))
    firing = [a for a in alerts if a.status == "firing"]
    pages = [a for a in firing if a.root_cause is None]
    assert [(a.kind, a.entity) for a in pages] == [("switch_down", "core-1"), ("switch_down", "leaf-1")]
    under = collections.defaultdict(set)
    for a in firing:
        if a.root_cause:
            under[a.root_cause].add(a.entity)
    assert under[pages[0].id] == {"spine-a/32~core-1/1", "spine-b/32~core-1/2"}
    assert under[pages[1].id] == {  # its links, and the job stalled behind it (a hang after 30 s)
        "train",
        "gpu-2/mlx5_0~leaf-1/1",
        "gpu-10/mlx5_0~leaf-1/2",
        "leaf-1/33~spine-a/1",
        "leaf-1/34~spine-a/2",
    }
    assert pages[1].evidence["blast_radius"]["card_names"] == ["gpu-2-card0", "gpu-10-card0"]
    assert {a.entity for a in alerts if a.status == "resolved" and a.kind == "switch_down"} == {"core-1", "leaf-1"}


def _fabric_yaml(fabric: Fabric) -> dict:
    from pipeline.topology.saved import fabric_document

    return fabric_document(fabric)


def test_a_scenario_names_what_an_imported_fabric_does_not_have(tmp_path) -> None:  # noqa: ANN001
    import yaml

    path = tmp_path / "fabric.yaml"
    path.write_text(yaml.safe_dump(_fabric_yaml(three_tier())))
    with pytest.raises(ScenarioError, match="give cards_per_node only"):
        parse_scenario({"cluster": {"topology": str(path), "cards": 64}})
    with pytest.raises(ScenarioError, match="'leaf-9' is not a host, switch, card or link of the fabric"):
        parse_scenario({"cluster": {"topology": str(path)}, "faults": [{"kind": "switch_failure", "target": "leaf-9"}]})
    with pytest.raises(ScenarioError, match="(?i)no such file"):
        parse_scenario({"cluster": {"topology": str(tmp_path / "nope.txt")}})


@pytest.mark.skipif(not SELENE.exists(), reason="../shared/samples/selene_ib_topology is not here")
def test_selene_drives_root_cause_for_a_leaf_a_spine_and_a_core() -> None:
    """Telemetry simulated on Selene's real wiring: each dead switch is one page whose blast radius
    is the fabric's, with every one of its links grouped under it."""
    topo = load_topology(SELENE)
    assert (topo.nodes, len(topo.switch_names), topo.rails) == (469, 666, 8)
    scenario = parse_scenario(
        {
            "name": "selene-switches",
            "seed": 3,
            "duration_s": 160,
            "noise": {"profile": "realistic"},
            "cluster": {"topology": str(SELENE)},
            "jobs": [{"name": "pretrain", "first_node": 0, "nodes": 400, "step_s": 2.0}],
            # apart: a link resolves 30 s after it is up again, so the next switch's links are new alerts
            "faults": [
                {"kind": "switch_failure", "target": "LG01-01", "start_s": 10, "duration_s": 20},
                {"kind": "switch_failure", "target": "CSPINE1-01", "start_s": 65, "duration_s": 20},
                {"kind": "switch_failure", "target": "CCORE1-001", "start_s": 120, "duration_s": 15},
            ],
        }
    )
    alerts = run_offline(scenario, _settings_for(scenario))
    fabric = load_ibnetdiscover(SELENE)
    pages = [a for a in alerts if a.status == "firing" and a.root_cause is None]
    assert [(a.kind, a.entity) for a in pages] == [
        ("switch_down", "LG01-01"),
        ("switch_down", "CSPINE1-01"),
        ("switch_down", "CCORE1-001"),
    ]
    for page in pages:
        truth = fabric.blast_radius(page.entity)
        radius = page.evidence["blast_radius"]
        assert radius["links"] == truth["links"]
        assert radius["cards"] == len(truth["host_ports_down"])
        grouped = {a.entity for a in alerts if a.root_cause == page.id and a.status == "firing"}
        index = topo.switch_index(page.entity)
        hosts, low, high, ports = topo.switch_wiring(index)
        links = {topo.port_link(page.entity, int(p)) for p in ports}
        assert grouped == links and len(links) == truth["links"]
    leaf = pages[0].evidence["blast_radius"]
    assert leaf["rail"] == 0 and leaf["nodes"] == 20 and leaf["jobs"] == ["pretrain"]


def test_run_on_an_imported_fabric_through_kafka_lands_the_fabrics_names_in_the_lake(tmp_path) -> None:  # noqa: ANN001
    """`run` with a scenario on an imported fabric: broker, simulator and worker all take the fabric
    (the worker from the settings' topology); alerts and the lake's port links carry its names, and
    `topology export` with --topology writes the dimension tables they join."""
    import duckdb
    import yaml

    from tests.conftest import run_cli

    fabric = tmp_path / "fabric.yaml"
    fabric.write_text(yaml.safe_dump(_fabric_yaml(three_tier())))
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(
        yaml.safe_dump(
            {
                "name": "tiny-fabric",
                "seed": 5,
                "duration_s": 50,
                "noise": {"nic_reports": 1},
                "cluster": {"topology": "fabric.yaml", "cards_per_node": 2},  # relative to the scenario file
                "jobs": [{"name": "train", "first_node": 0, "nodes": 2, "step_s": 1.0}],
                "faults": [{"kind": "switch_failure", "target": "core-1", "start_s": 15, "duration_s": 20}],
            }
        )
    )
    data = tmp_path / "data"
    done = run_cli("run", "--scenario", str(scenario), "--speed", "max", "--data", str(data), timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "FIRING   critical switch_down      core-1" in done.stdout
    [lake] = [p for p in data.iterdir() if p.name.startswith("run-")]
    exported = run_cli("topology", "export", "--topology", str(fabric), "--data", str(lake))
    assert exported.returncode == 0, exported.stderr
    rows = duckdb.execute(f"""
        select f.link, count(*) from read_parquet('{lake}/port/**/*.parquet') p
        join read_parquet('{lake}/fabric_links/*.parquet') f on f.link = p.link
        where p.switch = 'core-1' group by f.link order by 1""").fetchall()
    assert [link for link, _ in rows] == ["spine-a/32~core-1/1", "spine-b/32~core-1/2"]
    alerts = duckdb.execute(
        f"select kind, entity, root_cause is null from read_parquet('{lake}/alerts/**/*.parquet') "
        "where status = 'firing' order by 1, 2"
    ).fetchall()
    assert alerts == [
        ("link_down", "spine-a/32~core-1/1", False),
        ("link_down", "spine-b/32~core-1/2", False),
        ("switch_down", "core-1", True),
    ]
