"""ibnetdiscover quirks of real fabrics: HCAs whose description names no host, and director chassis
whose internal links (line card to spine blade) every dump lists from both blades."""

from __future__ import annotations

import pytest

from pipeline.topology.ibnetdiscover import load_ibnetdiscover, parse_ibnetdiscover
from pipeline.topology.imported import FabricTopology
from tests.conftest import SAMPLES
from tests.ibnetdiscover_text import Cable, Node, default_form, guids, ports_form

UNNAMED = {
    "leaf-1": Node("MF0;leaf-1:MQM8700/U1", switch=True),
    "leaf-2": Node("MF0;leaf-2:MQM8700/U1", switch=True),
    "gpu-01a": Node("gpu-01 mlx5_0", switch=False, devid="0x101b"),
    "gpu-01b": Node("gpu-01 mlx5_1", switch=False, devid="0x101b"),
    "old": Node("MT25408 ConnectX Mellanox Technologies", switch=False, devid="0x673c"),  # two ports
    "cx6": Node("MT4123 ConnectX6   Mellanox Technologies", switch=False, devid="0x101b"),
}
UNNAMED_CABLES = [
    Cable("gpu-01a", 1, "leaf-1", 1),
    Cable("gpu-01b", 1, "leaf-2", 1),
    Cable("old", 1, "leaf-1", 7),
    Cable("old", 2, "leaf-2", 7, "4xQDR"),
    Cable("cx6", 1, "leaf-1", 9),
]


@pytest.mark.parametrize("form", [default_form, ports_form])
def test_an_hca_that_names_no_host_is_named_by_its_guid_and_port_number(form) -> None:  # noqa: ANN001
    fabric = parse_ibnetdiscover(form(UNNAMED, UNNAMED_CABLES))
    guid = guids(UNNAMED)
    topo = FabricTopology(fabric, cards_per_node=2)
    names = set(topo.link_names_by_key.values())
    assert f"H-{guid['cx6']}/1~leaf-1/9" in names
    assert all(" " not in name for name in names), sorted(names)
    if form is default_form:  # both ports of the one HCA are one host (the --ports form has port GUIDs only)
        assert {f"H-{guid['old']}/1~leaf-1/7", f"H-{guid['old']}/2~leaf-2/7"} <= names
        assert fabric.devices[f"H-{guid['old']}"].description == "MT25408 ConnectX Mellanox Technologies"
    assert "gpu-01/mlx5_0~leaf-1/1" in names


NDT = SAMPLES / "ufm_ndt_cabling"


@pytest.mark.skipif(not NDT.exists(), reason="../shared/samples/ufm_ndt_cabling is not here")
def test_the_sites_unnamed_connectx6_hcas_are_hosts_named_by_guid() -> None:
    fabric = load_ibnetdiscover(NDT / "ibnetdiscover_director.txt.gz")
    unnamed = [d for d in fabric.devices.values() if d.description.startswith("MT4123")]
    assert len(unnamed) == 103 and all(d.name == f"H-{d.guid}" and d.devid == "0x101b" for d in unnamed)
    ports = {end.port for link in fabric.links for end in (link.a, link.b) if end.device.startswith("H-")}
    assert ports == {"1"}


# A leaf with two hosts, cabled to both line cards of a director chassis with two line cards (L01,
# L02) and two spine blades (S01, S02), every line card to every spine blade: 4 internal links.
DIRECTOR = {
    "leaf": Node("MF0;leaf-1:MQM8700/U1", switch=True),
    "L1": Node("MF0;dir-1:MCS8500/L01/U1", switch=True),
    "L2": Node("MF0;dir-1:MCS8500/L02/U1", switch=True),
    "S1": Node("MF0;dir-1:MCS8500/S01/U1", switch=True),
    "S2": Node("MF0;dir-1:MCS8500/S02/U1", switch=True),
    "h1": Node("gpu-01 mlx5_0", switch=False, devid="0x101b"),
    "h2": Node("gpu-02 mlx5_0", switch=False, devid="0x101b"),
}
DIRECTOR_CABLES = [
    Cable("h1", 1, "leaf", 1),
    Cable("h2", 1, "leaf", 2),
    Cable("leaf", 21, "L1", 1),
    Cable("leaf", 22, "L2", 1),
    Cable("L1", 21, "S1", 1),
    Cable("L1", 22, "S2", 1),
    Cable("L2", 21, "S1", 2),
    Cable("L2", 22, "S2", 2),
]


@pytest.mark.parametrize("form", [default_form, ports_form])
def test_each_link_inside_a_director_is_left_out_and_counted_once(form) -> None:  # noqa: ANN001
    fabric = parse_ibnetdiscover(form(DIRECTOR, DIRECTOR_CABLES))  # each internal link from both blades
    assert fabric.dropped == {"link inside a director chassis": 4}
    assert sorted(str(link) for link in fabric.links if "dir-1" in str(link)) == [
        "leaf-1/21 - dir-1/L01/U1/1",
        "leaf-1/22 - dir-1/L02/U1/1",
    ]
    assert fabric.summary()["by_tier"] == {"host": 2, "leaf": 1, "spine": 1}


@pytest.mark.skipif(not NDT.exists(), reason="../shared/samples/ufm_ndt_cabling is not here")
def test_the_sites_director_links_are_counted_once() -> None:
    """Four MCS8500 chassis, 40 line cards x 20 spine blades each: 3,200 internal links (6,400 port lines)."""
    fabric = load_ibnetdiscover(NDT / "ibnetdiscover_director.txt.gz")
    assert fabric.dropped == {"link inside a director chassis": 3200}
