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
