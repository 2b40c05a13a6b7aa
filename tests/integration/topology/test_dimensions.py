"""The fabric's dimension tables in the lake, and the SQL over them."""

from __future__ import annotations

import pytest

from pipeline.lake.dimensions import fabric_of_topology, write_dimensions
from pipeline.lake.query import run_query
from pipeline.topology.ibnetdiscover import load_ibnetdiscover
from pipeline.topology.synthetic import ClusterShape, Topology
from tests.conftest import run_cli
from tests.integration.topology.test_topology_files import SELENE

TOPO = Topology(ClusterShape(cards=256, cards_per_node=8, nodes_per_leaf=8, spines=2))


def test_the_synthetic_topology_as_tables_named_as_the_pipeline_names_links(tmp_path) -> None:  # noqa: ANN001
    fabric, names = fabric_of_topology(TOPO)
    write_dimensions(fabric, tmp_path, names)
    counts = run_query(tmp_path, "select tier, count(*) from devices group by tier order by tier", {}, "json")
    assert [tuple(r) for r in counts.rows] == [(0, 32), (1, 32), (2, 2)]  # nodes, leaves, spines
    reach = run_query(tmp_path, "switch_reach", {"switch": "LEAF005"}, "json")
    links = [dict(zip(reach.columns, r))["link"] for r in reach.rows]
    # leaf005 = rail 1, nodes 8-15: the pipeline's own link names, so they join port.link
    assert (
        links == [TOPO.port_link("leaf005", p) for p in range(8)] == [f"node{n:04d}-nic1~leaf005" for n in range(8, 16)]
    )
    up = run_query(tmp_path, "select count(*) from fabric_links where a_tier = 1 and b_tier = 2", {}, "json")
    assert up.rows[0][0] == 32 * 2  # every leaf to every spine


@pytest.mark.skipif(not SELENE.exists(), reason="../shared/samples/selene_ib_topology is not here")
def test_selene_exported_and_queried(tmp_path) -> None:  # noqa: ANN001
    out = run_cli("topology", "export", str(SELENE), "--data", str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert "1,135 devices and 12,186 links" in out.stderr
    reach = run_query(tmp_path, "switch_reach", {"switch": "lg01-01"}, "json")
    rows = [dict(zip(reach.columns, r)) for r in reach.rows]
    assert len(rows) == 20 and {r["neighbour_port"] for r in rows} == {"mlx5_0"}
    assert len(rows) == len(load_ibnetdiscover(SELENE).blast_radius("LG01-01")["host_ports_down"])
    spines = run_query(tmp_path, "switch_reach", {"switch": "CCORE1-001"}, "json")
    assert {dict(zip(spines.columns, r))["neighbour_tier"] for r in spines.rows} == {2}
