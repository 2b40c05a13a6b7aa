"""The strict scorer (../shared/specs/scenario.md, "Scoring (strict)") on hand-made alerts."""

from pipeline.eval.scorer import Fault, match, score, table
from pipeline.model.schemas import Alert, alert_id, iso_utc
from tests.builders import START_MS


def alert(
    kind: str, entity: str, t: float, root: str | None = None, status: str = "firing", end: float | None = None
) -> Alert:
    ends = iso_utc(START_MS + int(end * 1000)) if end is not None else None
    return Alert(
        kind=kind,
        entity=entity,
        status=status,
        starts_at=iso_utc(START_MS + int(t * 1000)),
        ends_at=ends,
        severity="critical",
        summary="",
        root_cause=root,
    )


FAULTS = [
    Fault("card_failure", "node0001-card1", 20, 900),
    Fault("straggler", "node0002-card3", 100, 200, 2.0),
    Fault("link_flap", "node0003-nic0~leaf000", 50, 80),
    Fault("switch_failure", "leaf001", 300, 400),
]


def test_detection_latency_and_false_positives() -> None:
    alerts = [
        alert("card_failed", "node0001-card1", 20),
        alert("card_failed", "node0001-card1", 10, status="resolved", end=10),  # resolved records never count
        alert("straggler", "node0002-card3", 115),
        alert("straggler", "node0002-card4", 115),  # wrong card: false positive
        alert("link_down", "node0003-nic0~leaf000", 51),  # accepted for a flap
        alert("link_flapping", "node0003-nic0~leaf000", 70),  # the documented pair: tolerated
        alert("link_down", "leaf001~spine000", 300, root="abc"),  # grouped under no detector: FP
        alert("switch_down", "leaf001", 470),  # after end + 60 s: false positive
    ]
    result = match(FAULTS, alerts, START_MS, end_s=1000, holds={"straggler": 5.0})
    assert [o.latency_s for o in result.outcomes] == [0.0, 15.0, 1.0, None]
    assert [o.latency_steps for o in result.outcomes] == [None, 7.5, None, None]
    assert result.outcomes[1].notify_latency_s == 20.0  # the straggler waited 5 s for a root cause
    assert sorted((a.kind, a.entity) for a in result.false_positives) == [
        ("link_down", "leaf001~spine000"),
        ("straggler", "node0002-card4"),
        ("switch_down", "leaf001"),
    ]
    assert [(a.kind) for a in result.tolerated] == ["link_flapping"]
    assert result.outcomes[2].pages == 2  # link_down then link_flapping: two pages for one fault
    report = score([(FAULTS, alerts, START_MS, 1000.0)])
    o = report["overall"]
    assert (o["injected"], o["detected"], o["recall"], o["false_positives"], o["grouped"]) == (4, 3, 0.75, 3, 0)
    assert o["precision"] == round(3 / 6, 4)
    assert report["by_kind"]["straggler"]["precision"] == 0.5
    assert report["by_kind"]["switch_failure"]["recall"] == 0.0
    assert o["latency_p50_s"] == 1.0 and o["latency_max_s"] == 15.0
    assert "overall" in table(report)


def test_re_fires_and_extra_kinds_are_false_positives_and_one_record_detects_one_fault() -> None:
    faults = [Fault("thermal_throttle", "node0005-card0", 10, 100), Fault("straggler", "node0005-card0", 12, 60)]
    alerts = [
        alert("thermal_throttle", "node0005-card0", 12),
        alert("straggler", "node0005-card0", 13),  # detects the straggler fault, not the thermal one
        alert("straggler", "node0005-card0", 40, status="resolved", end=40),
        alert("straggler", "node0005-card0", 45),  # fired again: a re-fire
        alert("card_ecc", "node0005-card0", 50),  # another kind on the same target
    ]
    result = match(faults, alerts, START_MS)
    assert [o.alert.kind for o in result.outcomes] == ["thermal_throttle", "straggler"]
    assert [(a.kind, a.starts_at[-9:-5]) for a in result.false_positives] == [
        ("straggler", "0:45"),
        ("card_ecc", "0:50"),
    ]
    assert result.outcomes[1].resolved_early  # resolved at 40 s, the fault lasted until 60 s
    two = match([faults[0]], alerts[:1], START_MS)
    assert two.outcomes[0].alert is not None and not two.false_positives


def test_grouped_consequences_count_only_under_an_alert_that_detected_a_fault() -> None:
    root = alert("node_down", "node0007", 30)
    faults = [Fault("node_failure", "node0007", 29, 90)]
    alerts = (
        [root]
        + [
            alert("link_down", f"node0007-nic{i}~leaf00{i}", 29, root=alert_id("node_down", "node0007"))
            for i in range(8)
        ]
        + [alert("link_down", "node0009-nic0~leaf000", 29, root="0123456789abcdef")]
    )
    result = match(faults, alerts, START_MS, end_s=400)
    assert result.grouped == 8 and [a.entity for a in result.false_positives] == ["node0009-nic0~leaf000"]
    assert result.outcomes[0].pages == 1
    assert result.outcomes[0].stuck is True  # never resolved, and the run went on 310 s past the fault
    loud = match(faults, [root] + [alert("link_down", f"node0007-nic{i}~leaf00{i}", 29) for i in range(8)], START_MS)
    assert loud.outcomes[0].pages == 9 and len(loud.false_positives) == 8  # ungrouped symptoms page


def test_an_alert_before_the_fault_does_not_detect_it_and_one_left_firing_is_stuck() -> None:
    result = match([Fault("node_failure", "node0009", 100, 200)], [alert("node_down", "node0009", 99)], START_MS)
    assert result.outcomes[0].alert is None and len(result.false_positives) == 1
    fault = Fault("card_failure", "node0001-card1", 10, 50)
    fired = alert("card_failed", "node0001-card1", 11)
    late = alert("card_failed", "node0001-card1", 11, status="resolved", end=200)
    assert match([fault], [fired, late], START_MS, end_s=300).outcomes[0].stuck is True
    on_time = alert("card_failed", "node0001-card1", 11, status="resolved", end=60)
    assert match([fault], [fired, on_time], START_MS, end_s=300).outcomes[0].stuck is False
    assert match([fault], [fired], START_MS, end_s=100).outcomes[0].stuck is None  # the run ended first


def test_latency_in_steps_counts_the_steps_the_job_reported_when_their_times_are_known() -> None:
    """A straggler from 100 s found at 130 s in a 1 s-step job that paused 20 s for a checkpoint
    (no step reported 101-121 s): 10 steps, not 30."""
    times = tuple(float(t) for t in list(range(90, 101)) + list(range(121, 140)))
    fault = Fault("straggler", "node0002-card3", 100, 200, 1.0, times)
    [outcome] = match([fault], [alert("straggler", "node0002-card3", 130)], START_MS, end_s=400).outcomes
    assert (outcome.latency_s, outcome.latency_steps) == (30.0, 10.0)
    nominal = Fault("straggler", "node0002-card3", 100, 200, 1.0)
    assert (
        match([nominal], [alert("straggler", "node0002-card3", 130)], START_MS, end_s=400).outcomes[0].latency_steps
        == 30.0
    )
