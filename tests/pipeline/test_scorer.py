from pipeline.schemas import Alert, iso_utc
from pipeline.scorer import Fault, match, score, table
from tests.builders import START_MS


def alert(kind: str, entity: str, t: float, root: str | None = None, status: str = "firing") -> Alert:
    return Alert(kind=kind, entity=entity, status=status, starts_at=iso_utc(START_MS + int(t * 1000)),
                 severity="critical", summary="", root_cause=root)


FAULTS = [Fault("card_failure", "node0001-card1", 20, 900), Fault("straggler", "node0002-card3", 100, 200),
          Fault("link_flap", "node0003-nic0~leaf000", 50, 80), Fault("switch_failure", "leaf001", 300, 400)]


def test_detection_latency_and_false_positives() -> None:
    alerts = [
        alert("card_failed", "node0001-card1", 20),
        alert("card_failed", "node0001-card1", 10, status="resolved"),   # resolved records never count
        alert("straggler", "node0002-card3", 115),
        alert("straggler", "node0002-card4", 115),                        # wrong card: false positive
        alert("link_down", "node0003-nic0~leaf000", 51),                  # accepted for a flap
        alert("link_flapping", "node0003-nic0~leaf000", 70),              # same fault again: not against
        alert("link_down", "leaf001~spine000", 300, root="abc"),          # grouped: neither
        alert("switch_down", "leaf001", 470),                             # after end + 60 s: false positive
    ]
    outcomes, fps = match(FAULTS, alerts, START_MS)
    assert [o.latency_s for o in outcomes] == [0.0, 15.0, 1.0, None]
    assert sorted((a.kind, a.entity) for a in fps) == [("straggler", "node0002-card4"), ("switch_down", "leaf001")]
    report = score([(FAULTS, alerts, START_MS)])
    o = report["overall"]
    assert (o["injected"], o["detected"], o["recall"], o["false_positives"], o["grouped"]) == (4, 3, 0.75, 2, 1)
    assert o["precision"] == round(3 / 5, 4)
    assert report["by_kind"]["straggler"]["precision"] == 0.5
    assert report["by_kind"]["switch_failure"]["recall"] == 0.0
    assert o["latency_p50_s"] == 1.0 and o["latency_max_s"] == 15.0
    assert "overall" in table(report)


def test_an_alert_before_the_fault_does_not_detect_it() -> None:
    outcomes, fps = match([Fault("node_failure", "node0009", 100, 200)], [alert("node_down", "node0009", 99)], START_MS)
    assert outcomes[0].alert is None and len(fps) == 1
