"""`job_hang`: a job whose ranks all stop completing steps while its cards stay busy.

A job hangs without a hardware fault when a collective never completes (a deadlock, a rank stuck
in its data loader while the others wait for it): no rank finishes a step, and the cards keep
spinning in the collective's kernel (near 100 % utilisation). A job that stops for a restart, that
writes a checkpoint from the host or that ended has no steps either, but its cards idle. So a job
is hung when, on the correlator's event-time clock:

- no rank has reported for `job_hang_steps` times its usual step time (the median duration of its
  last judged steps, `pipeline.detect.straggler`), and at least `job_hang_min_s`; and
- at least half of its nodes whose cards report are busy (`pipeline.detect.activity`), and have
  been since before its last step (a checkpoint written from the host idles the cards; the step
  after it makes them busy seconds before it is reported).

It fires once, with the job, its last step, when it was reported and the ranks behind it (the
suspects: ranks that never reported the step the others finished), and resolves when the job
reports a new step (also a lower one: restarted from a checkpoint) or its cards go idle (stopped).
A job none of whose nodes' cards report is not judged: steps alone cannot tell a hang from an end.
The correlator holds it like any symptom, so a dead card, node, link or switch of the job that
fired explains it (`Correlator._explanations`).

The clock is the correlator's (card and port partitions' watermarks), so a hang is found when the
job's own step partition has nothing new, and replay at any speed finds it at the same event time.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.detect.alert_book import AlertBook
from pipeline.model.schemas import Alert
from pipeline.settings import CorrelateSettings

KIND = "job_hang"
FORGET_AFTER_MS = 86_400_000  # a job silent a day (ended long ago, not hung) is forgotten
CHECK_EVERY_MS = 1_000  # event time between checks (a job's nodes are counted at each; hangs take >= 30 s)


@dataclass
class _Job:
    last_step: int
    last_report_ms: int
    step_s: float | None
    ranks: int
    behind: int
    behind_ranks: list[int]


class HangWatch:
    """Jobs' progress and nodes' activity in; `job_hang` findings (firing and resolved) out."""

    def __init__(self, settings: CorrelateSettings) -> None:
        self.settings = settings
        self.jobs: dict[str, _Job] = {}
        self.busy: dict[str, tuple[bool, int]] = {}  # node -> (its cards busy, sample ms)
        self.book = AlertBook()
        self.checked_ms = -1  # the clock at the last check

    def progress(self, jobs: dict[str, dict]) -> list[Alert]:
        """Where jobs stand (`StragglerDetector.take_progress`); resolves the hang of a job that moved."""
        out: list[Alert] = []
        for name, state in jobs.items():
            old = self.jobs.get(name)
            if old is not None and state["last_report_ms"] < old.last_report_ms:
                continue  # older news (a partition read again after a restart)
            new = _Job(**state)
            self.jobs[name] = new
            if old is not None and new.last_step != old.last_step and self.book.is_firing(KIND, name):
                how = "restarted from" if new.last_step < old.last_step else "reported"
                alert = self.book.resolve(
                    KIND, name, new.last_report_ms, reason=f"{how} step {new.last_step}: making progress again"
                )
                if alert:
                    out.append(alert)
        return out

    def activity(self, nodes: dict[str, tuple[bool, int]]) -> None:
        """Nodes whose cards turned busy or idle (`NodeActivity.take`)."""
        for node, (busy, ts_ms) in nodes.items():
            if ts_ms >= self.busy.get(node, (False, -1))[1]:
                self.busy[node] = (busy, ts_ms)

    def check(self, clock_ms: int, job_nodes: dict[str, set[str]]) -> list[Alert]:
        """Jobs that hang by event time `clock_ms`, and hung jobs whose cards went idle."""
        out: list[Alert] = []
        if clock_ms < self.checked_ms + CHECK_EVERY_MS:
            return out
        self.checked_ms = clock_ms
        for name, job in list(self.jobs.items()):
            firing = self.book.is_firing(KIND, name)
            silent_ms = clock_ms - job.last_report_ms
            if silent_ms > FORGET_AFTER_MS and not firing:
                del self.jobs[name]
                continue
            states = [self.busy[node] for node in job_nodes.get(name, ()) if node in self.busy]
            flags = [busy for busy, _ in states]
            if firing:
                if flags and 2 * sum(flags) < len(flags):
                    alert = self.book.resolve(KIND, name, clock_ms, reason="its cards went idle: the job stopped")
                    if alert:
                        out.append(alert)
                continue
            # busy since before the last step: a checkpoint written from the host idles the cards
            # and a step after it makes them busy again seconds before it is reported
            busy = sum(1 for is_busy, since in states if is_busy and since <= job.last_report_ms)
            if job.step_s is None or not states or 2 * busy < len(states):
                continue
            limit_s = max(self.settings.job_hang_steps * job.step_s, self.settings.job_hang_min_s)
            if silent_ms < limit_s * 1000:
                continue
            alert = self._fire(name, job, job.step_s, limit_s, len(job_nodes.get(name, ())), busy, len(states))
            if alert:
                out.append(alert)
        return out

    def _fire(
        self, name: str, job: _Job, step_s: float, limit_s: float, nodes: int, busy: int, reporting: int
    ) -> Alert | None:
        behind = (
            f"; {job.behind} of {job.ranks} ranks never reported it ({', '.join(map(str, job.behind_ranks))}"
            + (", ..." if job.behind > len(job.behind_ranks) else "")
            + ")"
            if job.behind
            else f"; all {job.ranks} ranks reported it"
        )
        return self.book.fire(
            KIND,
            name,
            job.last_report_ms + int(limit_s * 1000),  # when the rule was met, whatever the clock's granularity
            severity="critical",
            summary=f"job {name} hung: no step for {limit_s:.0f} s ({limit_s / step_s:.0f}x its usual "
            f"{step_s:.3g} s) after step {job.last_step}{behind}, and {busy} of its {reporting} nodes' "
            "cards busy (spinning in a collective)",
            labels={"job": name},
            evidence={
                "last_step": job.last_step,
                "last_report": job.last_report_ms,
                "usual_step_s": step_s,
                "silent_s": limit_s,
                "ranks": job.ranks,
                "ranks_behind": job.behind,
                "ranks_behind_listed": job.behind_ranks,
                "nodes": nodes,
                "nodes_busy": busy,
            },
        )
