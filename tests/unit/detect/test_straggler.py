import numpy as np

from pipeline.detect.straggler import StragglerDetector
from pipeline.settings import StragglerSettings
from pipeline.topology.synthetic import ClusterShape, Topology
from tests.builders import step_batch

BIG = Topology(ClusterShape(cards=8192, cards_per_node=8, nodes_per_leaf=32, spines=8))


def run_job(
    steps: int,
    slow: dict[int, float] | None = None,
    everyone: dict[int, float] | None = None,
    spikes: dict[tuple[int, int], float] | None = None,
    jitter: float = 0.03,
    seed: int = 0,
) -> list:
    """A 8,192-rank job; `slow` = {rank: factor from step 5 on}; `everyone` = {step: factor}."""
    det = StragglerDetector(BIG, StragglerSettings())
    rng = np.random.default_rng(seed)
    ranks = np.arange(8192)
    out = []
    for step in range(steps):
        compute = 1.7 * (1 + jitter * rng.standard_normal(8192)) * (everyone or {}).get(step, 1.0)
        for rank, factor in (slow or {}).items():
            if step >= 5:
                compute[rank] *= factor
        for (rank, s), factor in (spikes or {}).items():
            if s == step:
                compute[rank] *= factor
        for node in range(1024):
            r = ranks[node * 8 : (node + 1) * 8]
            out += det.push(
                step_batch(BIG.node_name(node), "pretrain", 2.0 * step, r.tolist(), step, compute[r].tolist())
            )
    return out


def test_a_ten_percent_straggler_among_8192_ranks_fires_within_ten_steps() -> None:
    alerts = run_job(20, slow={1234: 1.10})
    assert [(a.kind, a.entity, a.status) for a in alerts] == [("straggler", "node0154-card2", "firing")]
    fired_at_step = alerts[0].evidence["step"]
    assert 5 <= fired_at_step < 15, fired_at_step
    assert alerts[0].labels == {"job": "pretrain", "node": "node0154", "card": "2", "rank": "1234"}


def test_every_rank_slowing_together_and_single_slow_steps_do_not_fire() -> None:
    assert run_job(25, everyone={10: 12.0, 11: 12.0, 17: 1.5}) == []  # checkpoint, slow input pipeline
    spikes = {(rank, step): 1.6 for rank, step in ((7, 6), (7, 14), (500, 9), (4000, 12))}
    assert run_job(25, spikes=spikes) == []


def test_a_straggler_that_recovers_resolves() -> None:
    det_alerts = run_job(40, slow={42: 1.3})
    assert [a.status for a in det_alerts] == ["firing"]
    # recovery: the same rank back to normal after step 20
    det = StragglerDetector(BIG, StragglerSettings())
    rng = np.random.default_rng(1)
    out = []
    for step in range(40):
        compute = 1.0 * (1 + 0.03 * rng.standard_normal(16))
        if 3 <= step < 20:
            compute[5] *= 1.3
        out += det.push(step_batch("node0000", "small", step, list(range(8)), step, compute[:8].tolist()))
        out += det.push(step_batch("node0001", "small", step, list(range(8, 16)), step, compute[8:].tolist()))
    assert [(a.entity, a.status) for a in out] == [("node0000-card5", "firing"), ("node0000-card5", "resolved")]


def test_a_job_restarted_from_a_checkpoint_is_judged_again_from_its_earlier_step() -> None:
    """Step numbers go back after a restart (resumed from the last checkpoint), with newer times:
    the steps are judged again, and a straggler after the restart is still found."""
    topo = Topology(ClusterShape(cards=256, cards_per_node=8, nodes_per_leaf=32, spines=8))
    det = StragglerDetector(topo, StragglerSettings())
    rng = np.random.default_rng(3)
    out, t = [], 0.0
    for step in list(range(0, 60)) + list(range(40, 120)):  # restarted at step 40 after step 59
        t += 2.0 if step != 40 or t < 100 else 120.0
        compute = 1.7 * (1 + 0.03 * rng.standard_normal(256))
        if t > 200:  # slow from the restart on
            compute[77] *= 1.3
        for node in range(32):
            r = list(range(node * 8, node * 8 + 8))
            out += det.push(step_batch(topo.node_name(node), "j", t, r, step, compute[r].tolist()))
    assert [(a.entity, a.status) for a in out] == [("node0009-card5", "firing")]
    assert 40 <= out[0].evidence["step"] < 55  # not only once the numbers pass the old ones


SMALL = Topology(ClusterShape(cards=256, cards_per_node=8, nodes_per_leaf=32, spines=8))


def run_small_job(
    factor_of_step,
    steps: int,
    jitter: float = 0.05,
    seed: int = 5,
    rank: int = 45,
    offset: float = 0.0,
    det: StragglerDetector | None = None,
    job: str = "j",
    first_step: int = 0,
    t0: float = 0.0,
    other_job: bool = False,
) -> list:
    """A 64-rank job with 1 s steps under `jitter`; `factor_of_step(step)` slows `rank` (which is
    `offset` slower than its peers for good). `other_job` adds a healthy 64-rank job `k` that
    keeps stepping (the detector's clock while `j` makes no step: factor None)."""
    det = det or StragglerDetector(SMALL, StragglerSettings())
    rng = np.random.default_rng(seed)
    out = []
    for step in range(first_step, first_step + steps):
        t = t0 + step - first_step
        factor = factor_of_step(step)
        if factor is not None:
            compute = 1.0 * (1 + jitter * rng.standard_normal(64))
            compute[rank] *= (1 + offset) * factor
            for node in range(8):
                r = list(range(node * 8, node * 8 + 8))
                out += det.push(step_batch(SMALL.node_name(node), job, t, r, step, compute[r].tolist()))
        if other_job:
            compute = 1.0 * (1 + jitter * rng.standard_normal(64))
            for node in range(8):
                r = list(range(node * 8, node * 8 + 8))
                out += det.push(step_batch(SMALL.node_name(8 + node), "k", t, r, step, compute[r].tolist()))
    return out


def test_a_ten_percent_straggler_under_five_percent_jitter_stays_firing_through_fast_steps() -> None:
    """Steps at its peers' pace (a checkpoint step and noise: seven of eleven here, as a held-out
    run had) do not resolve a rank still 10 % slow, so it does not fire again (before the fix two
    of these four seeds resolved and fired again); steps back at its usual pace do."""
    fast = set(range(200, 205)) | {206, 208}
    for seed in range(5, 9):
        alerts = run_small_job(lambda step: 1.10 if 100 <= step < 300 and step not in fast else 1.0, 360, seed=seed)
        assert [(a.entity, a.status) for a in alerts] == [
            ("node0005-card5", "firing"),
            ("node0005-card5", "resolved"),
        ], seed
        assert 100 <= alerts[0].evidence["step"] < 140
        resolved_at = (alerts[1].ends_at or "")[14:19]  # mm:ss of 2026-01-01T00:mm:ss.sssZ
        assert "05:00" <= resolved_at <= "05:40", alerts[1].ends_at  # steps 300-340 of 1 s from 00:00


def test_a_rank_usually_slower_than_its_peers_resolves_once_back_at_its_own_pace() -> None:
    alerts = run_small_job(lambda step: 1.15 if 100 <= step < 200 else 1.0, 300, jitter=0.03, offset=0.03)
    assert [a.status for a in alerts] == ["firing", "resolved"]
    assert "03:20" <= (alerts[1].ends_at or "")[14:19] <= "03:50"


def test_a_straggler_of_a_job_that_stops_making_steps_resolves_after_stale_s() -> None:
    """The job stalls (a failed node elsewhere in it) while its straggler fires: another job's
    steps keep the clock, and the alert resolves `stale_s` later instead of staying firing."""
    alerts = run_small_job(
        lambda step: None if step >= 150 else (1.2 if step >= 100 else 1.0), 400, jitter=0.03, other_job=True
    )
    mine = [a for a in alerts if a.entity == "node0005-card5"]
    assert [a.status for a in mine] == ["firing", "resolved"]
    assert "made no step for 90 s" in (mine[1].summary or "")
    assert "04:00" <= (mine[1].ends_at or "")[14:19] <= "04:01"  # last step 149 at 00:02:29, + 90 s
    assert [a for a in alerts if a.entity != "node0005-card5"] == []


def rank_messages(
    det: StragglerDetector, job: str, steps: int, slow_rank: int, slow_from: int, seed: int = 9, restart_at: int = -1
) -> list:
    """8 ranks of one node, each sending its own message once a second with the ~20 steps it made
    (as `StepReporter` does), the ranks' messages in a different order and a few ms apart each second."""
    rng = np.random.default_rng(seed)
    compute = 0.05 * (1 + 0.02 * rng.standard_normal((steps, 8)))
    compute[slow_from:, slow_rank] *= 1.2
    numbers = list(range(steps)) if restart_at < 0 else list(range(restart_at)) + list(range(restart_at - 40, steps))
    out = []
    for second, first in enumerate(range(0, len(numbers), 20)):
        chunk = numbers[first : first + 20]
        for n, rank in enumerate(rng.permutation(8).tolist()):
            batch = step_batch("node0000", job, second + n * 0.003, [rank] * len(chunk), 0, 0.0)
            batch.columns["step"] = np.asarray(chunk, "<u4")
            batch.columns["compute_s"] = compute[chunk, rank].astype("<f4")
            batch.columns["wait_s"] = np.full(len(chunk), 0.02, "<f4")
            out += det.push(batch)
    return out


def test_ranks_reporting_many_steps_each_in_their_own_messages_are_judged_together() -> None:
    """A rank's message carries a second of its steps: a step is judged once every rank has reported
    it, so no rank's first message is judged alone; a 20 % straggler fires within 10 steps, a
    healthy job not at all, and a restart (step numbers going back) is not a straggler either."""
    topo = Topology(ClusterShape(cards=64, cards_per_node=8, nodes_per_leaf=4, spines=2))
    det = StragglerDetector(topo, StragglerSettings())
    assert rank_messages(det, "healthy", 200, slow_rank=3, slow_from=10_000) == []
    assert det.jobs["healthy"].filled == 200  # every step judged, with all 8 ranks
    [alert] = rank_messages(det, "slow", 120, slow_rank=3, slow_from=50)
    assert (alert.entity, alert.status) == ("node0000-card3", "firing")
    assert 50 <= alert.evidence["step"] <= 60
    restarted = StragglerDetector(topo, StragglerSettings())
    assert rank_messages(restarted, "r", 200, slow_rank=3, slow_from=10_000, restart_at=100) == []
    assert restarted.jobs["r"].last_step == 199
