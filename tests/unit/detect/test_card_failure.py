from pipeline.detect.card_failure import CardFailureDetector
from pipeline.settings import CardFailureSettings
from tests.builders import card_batch, small_topology


def run(detector: CardFailureDetector, batches: list) -> list:
    return [alert for b in batches for alert in detector.push(b)]


def test_fatal_xid_fires_at_the_sample_time_once() -> None:
    det = CardFailureDetector(small_topology())
    alerts = run(
        det,
        [
            card_batch("node0005", 19),
            card_batch("node0005", 20, errors=[(2, 79)]),
            card_batch("node0005", 21, errors=[(2, 79)]),
        ],
    )
    assert [(a.kind, a.entity, a.status, a.starts_at) for a in alerts] == [
        ("card_failed", "node0005-card2", "firing", "2026-01-01T00:00:20.000Z")
    ]
    assert alerts[0].evidence["error_code"] == 79 and alerts[0].labels["node"] == "node0005"


def test_non_fatal_code_does_not_fire() -> None:
    det = CardFailureDetector(small_topology())
    assert run(det, [card_batch("node0001", t, errors=[(1, 13)]) for t in range(10)]) == []


def test_a_card_silent_while_its_node_reports_fires_after_the_silence_limit() -> None:
    det = CardFailureDetector(small_topology(), CardFailureSettings(silence_s=3))
    others = [c for c in range(8) if c != 6]
    alerts = run(det, [card_batch("node0002", 0)] + [card_batch("node0002", t, cards=others) for t in range(1, 10)])
    assert [(a.entity, a.starts_at) for a in alerts] == [("node0002-card6", "2026-01-01T00:00:03.000Z")]


def test_a_silent_node_is_not_a_card_failure() -> None:
    det = CardFailureDetector(small_topology())
    assert run(det, [card_batch("node0002", 0), card_batch("node0002", 60)]) == []


def test_resolves_after_healthy_reports_and_replay_is_idempotent() -> None:
    det = CardFailureDetector(small_topology(), CardFailureSettings(recovery_s=5))
    batches = [card_batch("node0003", 0, errors=[(4, 79)])] + [card_batch("node0003", t) for t in range(1, 10)]
    alerts = run(det, batches)
    assert [(a.status, a.starts_at, a.ends_at) for a in alerts] == [
        ("firing", "2026-01-01T00:00:00.000Z", None),
        ("resolved", "2026-01-01T00:00:00.000Z", "2026-01-01T00:00:06.000Z"),
    ]
    assert alerts[0].id == alerts[1].id
    assert run(det, batches) == []  # the same batches again (a redelivery) change nothing


def test_detector_state_snapshots_restore_and_refuse_forged_ones() -> None:
    import os
    import pickle
    import zlib

    from pipeline.detect import DetectorSet
    from tests.builders import SMALL

    topo = small_topology()
    before = DetectorSet(topo, kinds=("card",))
    before.push(card_batch("node0001", 0, errors=[(1, 79)]))
    after = DetectorSet(topo, kinds=("card",))
    assert after.restore(before.snapshot())
    resolved = [a for t in range(1, 40) for a in after.push(card_batch("node0001", t))]
    assert [(a.entity, a.status) for a in resolved] == [("node0001-card1", "resolved")]

    class Evil:
        def __reduce__(self):  # noqa: ANN204
            return (os.system, ("echo pwned",))

    forged = zlib.compress(pickle.dumps((1, SMALL, {"card": [Evil()]}, None)))
    assert DetectorSet(topo, kinds=("card",)).restore(forged) is False
    assert DetectorSet(topo, kinds=("card",)).restore(b"not even zlib") is False
