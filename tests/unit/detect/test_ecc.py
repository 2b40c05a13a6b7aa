import numpy as np

from pipeline.detect.ecc import EccDetector
from pipeline.settings import EccSettings
from tests.builders import card_batch, small_topology


def with_dbe(batch, values):  # noqa: ANN001, ANN201
    batch.columns["ecc_dbe"] = np.asarray(values, "<u8")
    return batch


def test_counter_increase_fires_and_a_reset_does_not() -> None:
    det = EccDetector(small_topology(), EccSettings(quiet_s=10))
    base = [5] * 8
    alerts = []
    for t in range(3):
        alerts += det.push(with_dbe(card_batch("node0004", t), base))
    alerts += det.push(with_dbe(card_batch("node0004", 3), [0] * 8))  # driver reload: counters reset
    assert alerts == []
    alerts += det.push(with_dbe(card_batch("node0004", 4), [0, 0, 2, 0, 0, 0, 0, 0]))
    assert [(a.kind, a.entity, a.status, a.evidence["dbe_increase"]) for a in alerts] == [
        ("card_ecc", "node0004-card2", "firing", 2)
    ]
    for t in range(5, 16):
        alerts += det.push(with_dbe(card_batch("node0004", t), [0, 0, 2, 0, 0, 0, 0, 0]))
    assert alerts[-1].status == "resolved" and alerts[-1].ends_at == "2026-01-01T00:00:14.000Z"


def test_an_uncorrectable_error_event_fires_with_its_action() -> None:
    det = EccDetector(small_topology())
    alerts = det.push(card_batch("node0001", 0, errors=[(6, 48)]))
    assert [(a.entity, a.evidence["action"]) for a in alerts] == [("node0001-card6", "reset_gpu")]
    assert det.push(card_batch("node0001", 1, errors=[(5, 79), (4, 13)])) == []  # not ECC codes


def test_a_card_that_fails_after_its_errors_keeps_its_ecc_alert() -> None:
    """Quiet means reporting without new errors: a card that went silent cannot be judged quiet."""
    det = EccDetector(small_topology(), EccSettings(quiet_s=10))
    alerts = det.push(with_dbe(card_batch("node0004", 0), [0] * 8))
    alerts += det.push(with_dbe(card_batch("node0004", 1), [0, 0, 1, 0, 0, 0, 0, 0]))
    for t in range(2, 30):  # card 2 fell off the bus: the node reports its other cards
        alerts += det.push(with_dbe(card_batch("node0004", t, cards=[0, 1, 3, 4, 5, 6, 7]), [0] * 7))
    assert [(a.entity, a.status) for a in alerts] == [("node0004-card2", "firing")]
