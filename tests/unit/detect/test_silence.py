from pipeline.detect.silence import NodeDownDetector, SwitchDownDetector
from pipeline.settings import SilenceSettings
from tests.builders import card_batch, counters_batch, small_topology


def feed(det, batches) -> list:  # noqa: ANN001
    return [a for b, stream in batches for a in det.push(b, stream)]


def test_a_node_silent_while_others_report_is_down_then_back() -> None:
    det = NodeDownDetector(small_topology(), SilenceSettings(silence_s=3, recovery_s=5))
    batches = []
    for t in range(30):
        batches.append((card_batch("node0001", t), 0))
        if t < 10 or t >= 20:
            batches.append((card_batch("node0002", t), 0))
    alerts = feed(det, batches)
    assert [(a.kind, a.entity, a.status, a.starts_at) for a in alerts] == [
        ("node_down", "node0002", "firing", "2026-01-01T00:00:12.000Z"),
        ("node_down", "node0002", "resolved", "2026-01-01T00:00:12.000Z"),
    ]
    assert alerts[1].ends_at == "2026-01-01T00:00:25.000Z"


def test_a_stalled_producer_is_not_a_dead_cluster() -> None:
    det = NodeDownDetector(small_topology())
    batches = [(card_batch(f"node000{n}", t), 0) for t in list(range(5)) + list(range(60, 65)) for n in range(8)]
    assert feed(det, batches) == []  # every node paused together: the stream's clock paused too


def test_silence_is_judged_on_the_nodes_own_stream() -> None:
    det = NodeDownDetector(small_topology())
    # node0003 lives on stream 1, which lags far behind stream 0: not silent
    batches = [(card_batch("node0001", t), 0) for t in range(20)] + [(card_batch("node0003", t), 1) for t in range(3)]
    assert feed(det, batches) == []


def test_a_silent_switch_and_a_switch_with_every_port_down() -> None:
    topo = small_topology()
    det = SwitchDownDetector(topo, SilenceSettings(silence_s=3))
    ports = topo.leaf_ports()
    batches = []
    for t in range(10):
        batches.append((counters_batch("leaf000", t, ports), 0))
        if t < 4:
            batches.append((counters_batch("leaf001", t, ports), 0))
        batches.append((counters_batch("leaf002", t, ports, oper=[0] * ports if t >= 6 else None), 1))
    alerts = feed(det, batches)
    assert [(a.entity, a.starts_at[17:19]) for a in alerts] == [("leaf001", "06"), ("leaf002", "06")]
    assert "no telemetry" in alerts[0].summary and "all 6 ports report down" in alerts[1].summary


def test_a_source_is_judged_against_its_own_cadence() -> None:
    """A switch scraped every 10 s beside one scraped every second is not down between its reports;
    it is once it has missed three of them."""
    topo = small_topology()
    det = SwitchDownDetector(topo, SilenceSettings(silence_s=3))
    ports = topo.leaf_ports()
    batches = []
    for t in range(120):
        batches.append((counters_batch("leaf000", t, ports), 0))
        if t % 10 == 0 and t < 60:
            batches.append((counters_batch("leaf001", t, ports), 0))
    alerts = feed(det, batches)
    assert [(a.entity, a.status) for a in alerts] == [("leaf001", "firing")]
    assert alerts[0].starts_at[14:19] == "01:20"  # last report at 50 s, three 10 s reports missed


def test_an_unreachable_node_is_a_finding_marked_unreachable_not_silence() -> None:
    from pipeline.model.schemas import bundle

    det = NodeDownDetector(small_topology(), SilenceSettings(silence_s=3, recovery_s=2))
    alerts = []
    for t in range(20):
        batch = bundle([card_batch("node0001", t), card_batch("node0002", t, cards=[])], "gpu:node0001")
        if 5 <= t < 10:  # the collector could not reach node0002: a part without rows, named unreachable
            batch.unreachable = ("node0002",)
        alerts += det.push(batch, 0)
    assert [(a.entity, a.status, a.evidence.get("unreachable")) for a in alerts] == [
        ("node0002", "firing", True),
        ("node0002", "resolved", True),
    ]
    assert alerts[0].starts_at[17:19] == "05" and alerts[1].ends_at[17:19] == "12"
