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

Both inputs come as histories in event time: a job's progress with each step message, a node's
busy flag with each card message that flips it, each before the watermark that passes it. They are
judged only up to the correlator's clock over every source (steps included), so what is judged is
complete, and a replay at any speed (a job's steps read far ahead of its cards) finds the same
hangs at the same event times; a hang that began and ended between two checks fires and resolves
then. The clock runs on while the job's own step partition has nothing new.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from pipeline.detect.alert_book import AlertBook
from pipeline.model.schemas import Alert
from pipeline.settings import CorrelateSettings

KIND = "job_hang"
FORGET_AFTER_MS = 86_400_000  # a job silent a day (ended long ago, not hung) is forgotten
FLIPS_KEPT_MS = 3_600_000  # a node's flips kept this long behind the clock (a pause judged is shorter)
PRUNE_EVERY_MS = 60_000  # event time between prunings of the flips (each goes over every node)
# a collective's timeout is judged this long after its first rank's: the others' come within it
# (their watchdogs poll on their own; lines of 8 ranks seen spread over 0.9 s in published logs)
TIMEOUTS_GATHERED_MS = 5_000
RANKS_LISTED = 16  # ranks named in a page (their count is always given)


@dataclass
class _Progress:
    last_step: int
    last_report_ms: int
    step_s: float | None
    ranks: int
    behind: int
    behind_ranks: list[int]


@dataclass
class _Job:
    judged: _Progress  # the newest progress the clock has passed
    pending: list[_Progress] = field(default_factory=list)  # newer ones, in event time
    fired_after_ms: int = -1  # the progress whose pause last fired: judged once, also after it resolved
    fired_at_ms: int = -1  # when it fired: cards going idle after it resolve it

    @classmethod
    def unreported(cls) -> _Job:
        """A job known only by its collective timeouts: no step reported (yet)."""
        return cls(_Progress(-1, -1, None, 0, 0, []))

    def fired(self, at_ms: int) -> None:
        """A hang of its pause since the judged progress paged at `at_ms`: that pause pages no more."""
        self.fired_after_ms = self.judged.last_report_ms
        self.fired_at_ms = at_ms


class HangWatch:
    """Jobs' progress and nodes' activity in; `job_hang` findings (firing and resolved) out."""

    def __init__(self, settings: CorrelateSettings) -> None:
        self.settings = settings
        self.jobs: dict[str, _Job] = {}
        self.flips: dict[str, list[tuple[int, bool]]] = {}  # node -> its busy flag's changes (ms, busy)
        self.book = AlertBook()
        self.pruned_ms = -1  # the clock at the last pruning
        self.timed_out: dict[str, list[tuple]] = {}  # job -> collective timeouts not yet judged, in time order

    def progress(self, jobs: dict[str, dict]) -> None:
        """Where jobs stand (`StragglerDetector.take_progress`), judged once the clock passes it."""
        for name, state in jobs.items():
            news = _Progress(**state)
            job = self.jobs.get(name)
            if job is None:
                self.jobs[name] = _Job(news)
                continue
            newest = job.pending[-1] if job.pending else job.judged
            if (news.last_step, news.last_report_ms) == (newest.last_step, newest.last_report_ms):
                continue  # told again: a worker that took over from an older state (or none) re-reads
            if news.last_report_ms >= newest.last_report_ms:
                if news.step_s is None:  # its teller has judged no step yet (it just took over): as known
                    news.step_s = newest.step_s
                job.pending.append(news)

    def activity(self, nodes: dict[str, tuple[bool, int]]) -> None:
        """Nodes whose cards turned busy or idle (`NodeActivity.take`); a flag the node already had
        then changes nothing (its `since` stays: the busy-since-before-the-last-step rule needs it)."""
        for node, (busy, ts_ms) in nodes.items():
            known = self.busy(node, ts_ms)
            if known is not None and known[0] == busy:
                continue  # told again, not a change: a worker that took over from an older state re-reads
            flips = self.flips.setdefault(node, [])
            if not flips or ts_ms >= flips[-1][0]:
                flips.append((ts_ms, busy))
                continue
            i = bisect.bisect_right(flips, (ts_ms, busy))  # a card partition read late: in its place
            flips.insert(i, (ts_ms, busy))
            if i + 1 < len(flips) and flips[i + 1][1] == busy:
                del flips[i + 1]  # the change it told later happened here

    def busy(self, node: str, at_ms: int) -> tuple[bool, int] | None:
        """The node's flag at `at_ms` and since when (None: not known then)."""
        flips = self.flips.get(node)
        if not flips:
            return None
        i = bisect.bisect_right(flips, (at_ms, True)) - 1
        if i < 0:
            return None
        return flips[i][1], flips[i][0]

    def timeouts(self, jobs: dict[str, list]) -> None:
        """Ranks whose collective timed out (`StragglerDetector.take_timeouts`): [ts_ms, rank, seq, waited_s]."""
        for name, rows in jobs.items():
            self.timed_out.setdefault(name, []).extend(tuple(row) for row in rows)
            self.timed_out[name].sort(key=lambda row: row[0])

    def check(self, clock_ms: int, job_nodes: dict[str, set[str]]) -> list[Alert]:
        """Judge each job's progress up to event time `clock_ms`: hangs that began (and ended) by then.
        A job's collective timeouts are judged in event order with its progress, each group once
        `TIMEOUTS_GATHERED_MS` has passed (its other ranks' timeouts come within it)."""
        out: list[Alert] = []
        for name in list(self.timed_out):
            if name not in self.jobs and self.timed_out[name][0][0] <= clock_ms:
                self.jobs[name] = _Job.unreported()
        for name, job in list(self.jobs.items()):
            out += self._check_job(name, job, clock_ms, job_nodes.get(name, set()))
        self._prune(clock_ms)
        return out

    def end(self, job_nodes: dict[str, set[str]]) -> list[Alert]:
        """End of input: the collective timeouts not yet judged (their ranks' all came by now), each
        job's up to its last one's gathering time."""
        out: list[Alert] = []
        for name in list(self.timed_out):
            clock_ms = self.timed_out[name][-1][0] + TIMEOUTS_GATHERED_MS
            job = self.jobs.setdefault(name, _Job.unreported())
            out += self._check_job(name, job, clock_ms, job_nodes.get(name, set()))
        return out

    def _check_job(self, name: str, job: _Job, clock_ms: int, nodes: set[str]) -> list[Alert]:
        out: list[Alert] = []
        while True:
            timed_out = self.timed_out.get(name)
            until_ms = clock_ms if not timed_out else min(clock_ms, timed_out[0][0])
            out += self._judge_progress(name, job, until_ms, nodes)
            if not timed_out or clock_ms < timed_out[0][0] + TIMEOUTS_GATHERED_MS:
                break
            first_ms = timed_out[0][0]
            group = [row for row in timed_out if row[0] <= first_ms + TIMEOUTS_GATHERED_MS]
            del timed_out[: len(group)]
            if not timed_out:
                del self.timed_out[name]
            out += self._timed_out(name, job, first_ms, group, len(nodes))
        out += self._pause(name, job, until_ms, nodes)
        if clock_ms - job.judged.last_report_ms > FORGET_AFTER_MS and not self.book.is_firing(KIND, name):
            del self.jobs[name]
        return out

    def _judge_progress(self, name: str, job: _Job, until_ms: int, nodes: set[str]) -> list[Alert]:
        """The job's progress reported up to `until_ms`, in order: the pauses before each, and a
        firing hang resolved by a new step."""
        out: list[Alert] = []
        while job.pending and job.pending[0].last_report_ms <= until_ms:
            news = job.pending.pop(0)
            out += self._pause(name, job, news.last_report_ms, nodes)
            if news.last_step != job.judged.last_step and self.book.is_firing(KIND, name):
                how = "restarted from" if news.last_step < job.judged.last_step else "reported"
                resolved = self.book.resolve(
                    KIND, name, news.last_report_ms, reason=f"{how} step {news.last_step}: making progress again"
                )
                out += [resolved] if resolved else []
            job.judged = news
        return out

    def _timed_out(self, name: str, job: _Job, at_ms: int, group: list[tuple], nodes: int) -> list[Alert]:
        """Ranks' collective timeouts at `at_ms`: the job's own verdict that it hung, paged if this
        pause has not been (the watchdog's timeout is minutes; the pause rule is usually first)."""
        last = job.judged
        if self.book.is_firing(KIND, name) or job.fired_after_ms == last.last_report_ms >= 0:
            return []
        timed_out = {rank for _, rank, _, _ in group}
        ranks = sorted(timed_out)
        watchdog = [row for row in group if row[2]]
        listed = _listed(ranks[:RANKS_LISTED], len(ranks))
        if watchdog:
            seq = max(row[2] for row in watchdog)
            waits = [row[3] for row in watchdog if row[3] is not None]
            what = f"the NCCL watchdog of {len(ranks)} rank(s) ({listed}) timed out in collective {seq}" + (
                f" after {max(waits):.0f} s" if waits else ""
            )
        else:
            seq, waits = 0, []
            what = f"NCCL's transfers of {len(ranks)} rank(s) ({listed}) timed out"
        world = max(last.ranks, ranks[-1] + 1)  # at least: a rank below one that timed out exists
        silent = [rank for rank in range(world) if rank not in timed_out] if watchdog else []
        suspects = (
            f"; {len(silent)} of its {world} ranks did not time out, never reaching it "
            f"({_listed(silent[:RANKS_LISTED], len(silent))})"
            if silent
            else ""
        )
        after = f" after step {last.last_step}" if last.last_step >= 0 else ""
        fired = self.book.fire(
            KIND,
            name,
            at_ms,
            severity="critical",
            summary=f"job {name} hung{after}: {what}{suspects}",
            labels={"job": name},
            evidence={
                "last_step": last.last_step if last.last_step >= 0 else None,
                "last_report": last.last_report_ms if last.last_report_ms >= 0 else None,
                "timed_out_ranks": len(ranks),
                "timed_out_ranks_listed": ranks[:RANKS_LISTED],
                "collective_seq": seq or None,
                "waited_s": max(waits) if waits else None,
                "ranks_not_timed_out_listed": silent[:RANKS_LISTED],
                "source": "nccl_watchdog" if watchdog else "nccl_transport",
                "nodes": nodes,
            },
        )
        job.fired(at_ms)
        return [fired] if fired else []

    def _pause(self, name: str, job: _Job, until_ms: int, nodes: set[str]) -> list[Alert]:
        """A pause of the job from its judged progress until `until_ms`: a hang if it lasts long enough
        with the cards busy since before it; a firing hang resolves when the cards go idle in it."""
        out: list[Alert] = []
        last = job.judged
        if self.book.is_firing(KIND, name):
            idle_at = self._idle_at(nodes, max(last.last_report_ms, job.fired_at_ms), until_ms)
            if idle_at is not None:
                resolved = self.book.resolve(KIND, name, idle_at, reason="its cards went idle: the job stopped")
                out += [resolved] if resolved else []
            return out
        if last.step_s is None or job.fired_after_ms == last.last_report_ms:
            return out
        limit_s = max(self.settings.job_hang_steps * last.step_s, self.settings.job_hang_min_s)
        at_ms = last.last_report_ms + int(limit_s * 1000)
        if until_ms < at_ms:
            return out
        states = [state for state in (self.busy(node, at_ms) for node in nodes) if state is not None]
        # busy since before the last step: a checkpoint written from the host idles the cards,
        # and the step after it makes them busy again seconds before it is reported
        busy = sum(1 for is_busy, since in states if is_busy and since <= last.last_report_ms)
        if not states or 2 * busy < len(states):
            return out
        fired = self._fire(name, last, last.step_s, limit_s, at_ms, len(nodes), busy, len(states))
        job.fired(at_ms)
        out += [fired] if fired else []
        return out + self._pause(name, job, until_ms, nodes)  # and stopped within it: resolved too

    def _idle_at(self, nodes: set[str], after_ms: int, until_ms: int) -> int | None:
        """The first time in (after_ms, until_ms] at which most of the nodes' cards are idle."""
        times = sorted(
            {ts for node in nodes for ts, busy in self.flips.get(node, ()) if after_ms < ts <= until_ms and not busy}
        )
        for ts in times:
            states = [state for state in (self.busy(node, ts) for node in nodes) if state is not None]
            if states and 2 * sum(1 for is_busy, _ in states if is_busy) < len(states):
                return ts
        return None

    def _prune(self, clock_ms: int) -> None:
        """A node's flips older than FLIPS_KEPT_MS behind the clock, but its last one before."""
        if clock_ms < self.pruned_ms + PRUNE_EVERY_MS:
            return
        self.pruned_ms = clock_ms
        cutoff = clock_ms - FLIPS_KEPT_MS
        for flips in self.flips.values():
            while len(flips) > 1 and flips[1][0] <= cutoff:
                flips.pop(0)

    def _fire(
        self,
        name: str,
        job: _Progress,
        step_s: float,
        limit_s: float,
        at_ms: int,
        nodes: int,
        busy: int,
        reporting: int,
    ) -> Alert | None:
        behind = (
            f"; {job.behind} of {job.ranks} ranks never reported it ({_listed(job.behind_ranks, job.behind)})"
            if job.behind
            else f"; all {job.ranks} ranks reported it"
        )
        return self.book.fire(
            KIND,
            name,
            at_ms,  # when the rule was met, whatever the clock's granularity
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


def _listed(shown: list[int], count: int) -> str:
    """Ranks named in a page, `, ...` where they are fewer than `count`."""
    return ", ".join(map(str, shown)) + (", ..." if count > len(shown) else "")
