"""The telemetry agent's entity step without a broker: what of a collector's message is taken."""

from pipeline.model.schemas import bundle
from pipeline.stream.telemetry_agent import known_parts
from tests.builders import card_batch, port_batch, small_topology


def test_a_known_message_is_taken_whole() -> None:
    batch = bundle([port_batch("leaf000", ports=6), port_batch("spine001", ports=8)], "collector")
    parts, why = known_parts(batch, small_topology())
    assert parts == [batch] and why is None


def test_the_known_sources_of_a_collector_message_go_on_and_the_unknown_are_named() -> None:
    batch = bundle([port_batch("leaf000", ports=6), port_batch("leaf099", ports=6)], "collector")
    parts, why = known_parts(batch, small_topology())
    assert [part.source for part in parts] == ["leaf000"]
    assert why is not None and "leaf099" in why and why.endswith("the other 1 sources of the message were processed")


def test_a_single_source_message_of_an_unknown_node_is_not_taken() -> None:
    parts, why = known_parts(card_batch("node0008"), small_topology())  # 8 nodes: 0..7
    assert parts == [] and why is not None and "unknown entity" in why


def test_a_card_message_and_a_host_port_message_of_the_same_nodes_are_each_checked_as_their_kind() -> None:
    topology = small_topology()
    # the same sources and rows of each: two cards of each node, two NICs of each host
    cards = bundle([card_batch("node0001", cards=[0, 1]), card_batch("node0002", cards=[0, 1])], "rack")
    ports = bundle([port_batch("node0001", ports=2), port_batch("node0002", ports=2)], "rack")
    for _ in range(2):  # the second time, from what the first remembered
        assert known_parts(ports, topology) == ([ports], None)
        assert known_parts(cards, topology) == ([cards], None)


def test_a_remembered_source_list_still_refuses_a_port_its_switch_does_not_have() -> None:
    topology = small_topology()
    good = bundle([port_batch("leaf000", ports=6), port_batch("spine001", ports=8)], "collector")
    assert known_parts(good, topology) == ([good], None)
    bad = bundle([port_batch("leaf000", ports=6), port_batch("spine001", ports=8)], "collector")
    bad.columns["port"] = bad.columns["port"].copy()
    bad.columns["port"][-1] = 999
    parts, why = known_parts(bad, topology)
    assert why is not None and "spine001 has no port 999" in why and [p.source for p in parts] == ["leaf000"]
