import numpy as np

from pipeline.detect.thermal import ThermalDetector
from pipeline.model.schemas import Batch
from pipeline.settings import ThermalSettings
from tests.builders import card_batch, small_topology


def batch(t: float, hot: dict[int, tuple[float, float]] | None = None, temp: float = 66, clock: float = 1980):  # noqa: ANN201
    b = card_batch("node0002", t)
    b.columns["temp_c"][:] = temp
    b.columns["sm_clock_mhz"][:] = clock
    for card, (dt, dclock) in (hot or {}).items():
        b.columns["temp_c"][card] += dt
        b.columns["sm_clock_mhz"][card] *= 1 - dclock
    return b


def run(batches: list) -> list:
    det = ThermalDetector(small_topology(), ThermalSettings(samples=3, recovery_samples=4))
    return [a for b in batches for a in det.push(b)]


def test_a_hot_slow_card_fires_after_three_samples_and_resolves() -> None:
    """After 30 samples that teach each card its usual place among its peers (before that only the
    absolute limit fires)."""
    batches = (
        [batch(t) for t in range(35)]
        + [batch(t, {5: (6, 0.08)}) for t in range(35, 42)]
        + [batch(t) for t in range(42, 50)]
    )
    alerts = run(batches)
    assert [(a.entity, a.status, a.starts_at[17:19]) for a in alerts] == [
        ("node0002-card5", "firing", "37"),
        ("node0002-card5", "resolved", "37"),
    ]
    assert alerts[0].evidence["temp_c"] == 72.0 and alerts[1].ends_at[17:19] == "45"
    early = [batch(t, {5: (6, 0.08)} if 5 <= t < 12 else None) for t in range(20)]
    assert run(early) == []  # its usual is not known yet
    assert [a.status for a in run([batch(t, {5: (30, 0.3)}) for t in range(5)])] == ["firing"]  # 96 °C: the limit


def test_spikes_and_whole_node_changes_do_not_fire() -> None:
    spikes = [batch(t, {3: (20, 0.0)} if t % 2 else None) for t in range(20)]  # hot, full clock, one sample
    assert run(spikes) == []
    checkpoint = [batch(t, temp=66 - t, clock=1980 - 20 * t) for t in range(20)]  # every card cools together
    assert run(checkpoint) == []


def test_a_card_that_always_runs_hotter_or_slower_than_its_peers_is_its_usual_self() -> None:
    """Airflow puts a node's cards degrees apart for good (the realistic profile); such a card fires
    only when it throttles beyond its own usual."""
    usual = {5: (3.5, 0.01), 2: (1.0, 0.025)}  # hotter at a near-full clock; slower at a near-usual temperature
    quiet = [batch(t, usual) for t in range(200)]
    assert run(quiet) == []
    throttled = {5: (3.5 + 4, 0.01 + 0.06), 2: usual[2]}
    alerts = run(quiet + [batch(t, throttled) for t in range(200, 210)])
    assert [(a.entity, a.status) for a in alerts] == [("node0002-card5", "firing")]
    assert 3.5 <= alerts[0].evidence["over_usual_c"] <= 4.5  # judged against its usual, not the node's median


def test_a_card_that_does_not_report_its_temperature_is_skipped_not_learned() -> None:
    """Exporters leave a field out as NaN: that card is not judged that tick, its usual place and
    its peers' medians are not poisoned, and it fires as before once it reports a throttle."""

    def gap(t: float) -> Batch:
        b = batch(t)
        b.columns["temp_c"][5] = np.nan  # card 5 does not report its temperature
        b.columns["sm_clock_mhz"][2] = np.nan  # card 2 not its clock
        return b

    batches = (
        [batch(t) if t % 3 else gap(t) for t in range(50)]
        + [gap(50)]
        + [batch(t, {5: (6, 0.08)}) for t in range(51, 57)]
    )
    assert [(a.entity, a.status, a.starts_at[17:19]) for a in run(batches)] == [("node0002-card5", "firing", "53")]
