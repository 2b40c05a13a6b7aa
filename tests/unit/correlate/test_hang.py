"""`job_hang` through the detectors and the correlator (no broker): a job whose steps stop while its
cards stay busy pages once; a stop with idle cards (a restart, the end) pages nothing; a dead card
of the job explains it; a new step resolves it; its ranks' NCCL watchdog timeouts page it where
nothing else can judge it, once."""

from __future__ import annotations

import numpy as np

from pipeline.correlate.correlator import Correlator
from pipeline.detect import DetectorSet
from pipeline.model.schemas import Alert
from pipeline.settings import CorrelateSettings
from producers.adapters.nccl_log import CollectiveTimeout
from producers.adapters.steps import timeout_batches
from tests.builders import START_MS, card_batch, small_topology, step_batch

TOPO = small_topology()  # 8 nodes of 8 cards
NODES = [TOPO.node_name(n) for n in range(8)]


class Cluster:
    """One job of 64 ranks on the 8 nodes, a step a second; the test says what each second brings."""

    def __init__(self) -> None:
        self.detectors = DetectorSet(TOPO)
        self.correlator = Correlator(TOPO, CorrelateSettings(), clock=lambda: 0.0)
        self.step = 0
        self.alerts: list[Alert] = []

    def second(
        self,
        t: int,
        steps: bool = True,
        util: float = 95.0,
        silent: tuple[str, ...] = (),
        timed_out: tuple[int, ...] = (),
        seq: int = 4321,
    ) -> None:
        """`timed_out`: ranks whose collective `seq` times out this second (seq 0: NCCL's transport)."""
        timeouts = [
            CollectiveTimeout("train", rank, seq, 600.0 if seq else float("nan"), START_MS + t * 1000, "ALLREDUCE")
            for rank in timed_out
        ]
        for batch in timeout_batches(timeouts, TOPO):
            self._push(batch)
        for node in NODES:
            if node in silent:
                continue
            batch = card_batch(node, t)
            batch.columns["util"] = np.full(8, util, "<f4")
            self._push(batch)
            if steps:
                first = NODES.index(node) * 8
                self._push(step_batch(node, "train", t, list(range(first, first + 8)), self.step, 0.85, wait=0.15))
        self.step += steps
        for job, nodes in self.detectors.take_placements().items():
            self.correlator.place(job, nodes)
        self.correlator.activity(self.detectors.take_activity())
        self.correlator.progress(self.detectors.take_progress())
        self.correlator.timeouts(self.detectors.take_timeouts())
        for kind in ("card", "port", "step"):
            self.alerts += self.correlator.advance(kind, START_MS + t * 1000)

    def _push(self, batch) -> None:  # noqa: ANN001
        for finding in self.detectors.push(batch):
            self.alerts += self.correlator.push(finding, batch.kind)

    def hangs(self) -> list[Alert]:
        return [a for a in self.alerts if a.kind == "job_hang"]


def test_a_job_whose_steps_stop_while_its_cards_spin_pages_once_then_resolves_with_its_next_step() -> None:
    cluster = Cluster()
    for t in range(60):
        cluster.second(t)
    for t in range(60, 120):
        cluster.second(t, steps=False)  # the collective never completes; the cards poll at 95 %
    [hang] = cluster.hangs()
    assert hang.status == "firing" and hang.entity == "train" and hang.root_cause is None
    assert hang.starts_at == "2026-01-01T00:01:29.000Z"  # 30 s (the floor) after the last step, at 59 s
    assert hang.evidence["last_step"] == 59 and hang.evidence["ranks"] == 64 and hang.evidence["ranks_behind"] == 0
    assert hang.labels["job"] == "train" and hang.evidence["blast_radius"]["cards"] == 64
    for t in range(120, 125):
        cluster.second(t)
    [_, resolved] = cluster.hangs()
    assert resolved.status == "resolved" and resolved.ends_at == "2026-01-01T00:02:00.000Z"


def test_a_job_that_stops_with_idle_cards_restarting_or_ended_pages_nothing() -> None:
    cluster = Cluster()
    for t in range(60):
        cluster.second(t)
    for t in range(60, 200):
        cluster.second(t, steps=False, util=3.0)
    assert cluster.hangs() == []


def test_a_pause_shorter_than_ten_usual_steps_and_30_s_pages_nothing() -> None:
    cluster = Cluster()
    for t in range(60):
        cluster.second(t)
    for t in range(60, 85):  # a 25 s checkpoint with the cards busy
        cluster.second(t, steps=False)
    for t in range(85, 120):
        cluster.second(t)
    assert cluster.hangs() == []


def test_a_job_stalled_by_its_dead_node_is_grouped_under_the_node() -> None:
    cluster = Cluster()
    for t in range(60):
        cluster.second(t)
    for t in range(60, 120):  # node0003 dies: the others spin in the collective
        cluster.second(t, steps=False, silent=("node0003",))
    [node_down] = [a for a in cluster.alerts if a.kind == "node_down" and a.status == "firing"]
    [hang] = cluster.hangs()
    assert hang.root_cause == node_down.id and "consequence of node_down node0003" in hang.summary


def test_a_job_with_no_card_telemetry_is_not_judged_by_its_steps_alone() -> None:
    cluster = Cluster()
    cluster.correlator.hangs.flips.clear()
    cluster.detectors.activity = None  # no card telemetry reaches the correlator
    for t in range(60):
        cluster.second(t)
    for t in range(60, 120):
        cluster.second(t, steps=False)
    assert cluster.hangs() == []


def test_a_checkpoint_written_from_the_host_then_its_step_pages_nothing() -> None:
    cluster = Cluster()
    for t in range(60):
        cluster.second(t)
    for t in range(60, 92):  # the host writes the checkpoint: the cards idle
        cluster.second(t, steps=False, util=3.0)
    for t in range(92, 96):  # the step after it: busy, not reported yet, 32-35 s after the last one
        cluster.second(t, steps=False)
    for t in range(96, 110):
        cluster.second(t)
    assert cluster.hangs() == []


def test_a_job_without_card_telemetry_whose_watchdogs_time_out_pages_once_naming_the_rank_that_never_came() -> None:
    cluster = Cluster()
    cluster.detectors.activity = None  # steps only: the pause rule cannot judge it
    for t in range(60):
        cluster.second(t)
    for t in range(60, 100):
        cluster.second(t, steps=False)
    assert cluster.hangs() == []
    others = tuple(rank for rank in range(64) if rank != 13)  # rank 13 never entered the collective
    cluster.second(100, steps=False, timed_out=others[:40])
    cluster.second(101, steps=False, timed_out=others[40:])  # the other watchdogs, a second later
    for t in range(102, 110):
        cluster.second(t, steps=False)
    [hang] = cluster.hangs()
    assert hang.status == "firing" and hang.starts_at == "2026-01-01T00:01:40.000Z"
    assert hang.evidence["timed_out_ranks"] == 63 and hang.evidence["ranks_not_timed_out_listed"] == [13]
    assert hang.evidence["collective_seq"] == 4321 and hang.evidence["last_step"] == 59
    assert "rank(s)" in hang.summary and "never reaching it (13)" in hang.summary
    cluster.step = 40  # restarted from its checkpoint of step 40
    for t in range(110, 113):
        cluster.second(t)
    [_, resolved] = cluster.hangs()
    assert resolved.status == "resolved" and resolved.ends_at == "2026-01-01T00:01:50.000Z"


def test_watchdog_timeouts_of_a_hang_already_paged_page_nothing_more() -> None:
    cluster = Cluster()
    for t in range(60):
        cluster.second(t)
    for t in range(60, 100):
        cluster.second(t, steps=False)
    cluster.second(100, steps=False, timed_out=tuple(range(64)))
    for t in range(101, 110):
        cluster.second(t, steps=False)
    [hang] = cluster.hangs()
    assert hang.starts_at == "2026-01-01T00:01:29.000Z"  # the pause rule's, 30 s after the last step


def test_transport_timeouts_of_a_job_that_reports_no_steps_page_it() -> None:
    cluster = Cluster()
    cluster.detectors.activity = None
    for t in range(30):
        cluster.second(t, steps=False)
    cluster.second(30, steps=False, timed_out=(3, 9), seq=0)
    for t in range(31, 40):
        cluster.second(t, steps=False)
    [hang] = cluster.hangs()
    assert hang.evidence["source"] == "nccl_transport" and hang.evidence["last_step"] is None
    assert hang.summary == (
        "job train hung: NCCL's transfers of 2 rank(s) (3, 9) timed out; affects 16 cards, 2 nodes; jobs stalled: train"
    )


def test_a_busy_flag_told_again_by_a_worker_that_took_over_keeps_the_nodes_busy_since_before_the_stall() -> None:
    cluster = Cluster()
    for t in range(60):
        cluster.second(t)
    for t in range(60, 70):
        cluster.second(t, steps=False)
    # a worker that took the card partitions over from an older snapshot (or none) re-reads them:
    # its fresh activity flags tell the correlator again that the nodes are busy, now
    cluster.correlator.activity({node: (True, START_MS + 70_000) for node in NODES})
    for t in range(70, 100):
        cluster.second(t, steps=False)
    [hang] = cluster.hangs()
    assert hang.status == "firing" and hang.starts_at == "2026-01-01T00:01:29.000Z"


def test_a_late_flag_in_its_place_takes_over_the_later_telling_of_the_same_change() -> None:
    from pipeline.correlate.hang import HangWatch

    watch = HangWatch(CorrelateSettings())
    watch.activity({"node0000": (True, 0)})
    watch.activity({"node0000": (False, 50)})
    watch.activity({"node0000": (False, 40)})  # its partition read late: idle since 40, not 50
    assert watch.flips["node0000"] == [(0, True), (40, False)]
    assert watch.busy("node0000", 45) == (False, 40)


def test_progress_told_again_without_the_usual_step_time_keeps_the_one_known() -> None:
    cluster = Cluster()
    for t in range(60):
        cluster.second(t)
    for t in range(60, 70):
        cluster.second(t, steps=False)
    told = cluster.correlator.hangs.jobs["train"].judged
    # a worker that took the step partition over re-reads the last step: it has judged too few to know the pace
    again = {"last_step": told.last_step, "last_report_ms": told.last_report_ms, "step_s": None}
    cluster.correlator.progress({"train": {**again, "ranks": 64, "behind": 0, "behind_ranks": []}})
    cluster.correlator.progress(
        {"train": {**again, "last_report_ms": told.last_report_ms + 1, "ranks": 64, "behind": 0, "behind_ranks": []}}
    )
    for t in range(70, 100):
        cluster.second(t, steps=False)
    [hang] = cluster.hangs()
    assert hang.status == "firing" and hang.evidence["usual_step_s"] == told.step_s
