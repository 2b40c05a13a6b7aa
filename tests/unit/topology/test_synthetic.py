import numpy as np
import pytest

from pipeline.topology.synthetic import ClusterShape, Topology, UnknownEntity

BIG = Topology(ClusterShape(cards=10240, cards_per_node=8, nodes_per_leaf=32, spines=32))


def test_names_follow_the_scenario_spec() -> None:
    assert BIG.nodes == 1280
    assert BIG.card_name(154, 3) == "node0154-card3"
    # leaves_per_rail = 40: rail 3, node 154 // 32 = 4 -> leaf 124
    assert BIG.host_link_name(154, 3) == "node0154-nic3~leaf124"
    assert BIG.leaf_name(99) == "leaf099"
    assert BIG.spine_name(17) == "spine017"
    assert BIG.fabric_link_name(99, 17) == "leaf099~spine017"


def test_padding_grows_with_the_cluster() -> None:
    huge = Topology(ClusterShape(cards=8 * 20000, cards_per_node=8, nodes_per_leaf=32, spines=4))
    assert huge.node_name(7) == "node00007"
    small = Topology(ClusterShape(cards=64, cards_per_node=8, nodes_per_leaf=4, spines=2))
    assert small.node_name(7) == "node0007"
    assert small.leaf_name(3) == "leaf003"


def test_parse_round_trips_and_rejects_unknown_names() -> None:
    assert BIG.parse_card("node0154-card3") == (154, 3)
    assert BIG.kind_of("node0154-nic3~leaf124") == "link"
    assert BIG.kind_of("leaf017") == "leaf"
    assert BIG.kind_of("spine003") == "spine"
    assert BIG.kind_of("node0003") == "node"
    with pytest.raises(UnknownEntity):
        BIG.parse_card("node1280-card0")  # one past the last node
    with pytest.raises(UnknownEntity):
        BIG.parse_card("node0001-card8")
    with pytest.raises(UnknownEntity):
        BIG.parse_link("node0154-nic3~leaf123")  # that NIC is not cabled to leaf123


def test_leaf_ports_map_to_host_and_fabric_links() -> None:
    leaf = BIG.leaf_of(154, 3)
    name = BIG.leaf_name(leaf)
    assert BIG.port_link(name, 154 % 32) == "node0154-nic3~leaf124"
    assert BIG.port_link(name, 32 + 5) == "leaf124~spine005"
    assert BIG.port_link("spine005", 124) == "leaf124~spine005"
    assert 154 in BIG.leaf_host_nodes(leaf)
    assert np.all(BIG.leaf_host_nodes(leaf) // 32 == 4)
