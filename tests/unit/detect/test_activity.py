"""A node's busy flag from its cards' utilisation, handed on only when it changes."""

import numpy as np

from pipeline.detect.activity import NodeActivity
from tests.builders import START_MS, card_batch, small_topology


def with_util(node: str, t_s: float, util: list[float]):  # noqa: ANN201
    batch = card_batch(node, t_s)
    batch.columns["util"] = np.asarray(util, "<f4")
    return batch


def test_a_node_is_busy_when_its_cards_mean_util_is_half_or_more_and_only_changes_are_handed_on() -> None:
    activity = NodeActivity(small_topology())
    activity.push(with_util("node0000", 0, [95.0] * 8))
    activity.push(with_util("node0001", 0, [3.0] * 8))
    assert activity.take() == {"node0000": (True, START_MS), "node0001": (False, START_MS)}  # first learned
    activity.push(with_util("node0000", 1, [95.0] * 7 + [0.0]))  # one card's dip: still busy
    assert activity.take() == {}
    activity.push(with_util("node0000", 2, [4.0] * 8))
    [(node, (busy, ts))] = activity.take().items()
    assert (node, busy, ts) == ("node0000", False, START_MS + 2000)


def test_unknown_util_says_nothing() -> None:
    activity = NodeActivity(small_topology())
    activity.push(with_util("node0002", 0, [float("nan")] * 8))
    assert activity.take() == {}
