"""Root cause and lifecycle: turn detector findings into the alerts people get.

- Dedup: a finding may come from several sources (both ends of a fabric link); an alert fires
  once when the first source fires and resolves once when the last one resolves.
- Grouping: symptoms (a link down, a straggler) wait `group_wait_s` of event time for a root cause
  (a dead leaf or node, a thermally throttled card, the down or degraded link of the NIC serving a
  straggler's card, `Topology.card_link`) like Alertmanager's group_wait; a symptom
  whose root cause is firing when it is released carries `root_cause` = that alert's id. With the
  first-tick rule on, a link down waits only `fabric_window_s` when neither of its ends can be
  dying by then (one of the end's witness links is still up).
- Blast radius: an ungrouped alert carries what it takes down (cards, nodes, links, jobs).
- Root cause from the first tick (`fabric_window_s`, null turns it off): when every link whose far
  end would see a switch or node die (`ClusterTopology.witness_links`, at least two) is down and at
  least 90 % of them went down within `fabric_window_s` of event time, that switch or node is
  declared down at once (source `fabric`), before its own silence rule (the fallback) would; its
  evidence says how many consequences are already known, so the notifier sends it without waiting.
  The links are judged by their down episodes at that event time (`link_episodes`), not by what is
  down now, so the order in which partitions are read does not matter. A switch_down or node_down of a detector
  waits until the clock reaches it, so that the links that went down before it have arrived and the
  fabric's earlier verdict wins. It resolves when its own detector sees it come back, or, where none
  fired, with its first link that came back (once the clock has passed that return).
- Unreachable is not dead: a node or switch whose collector could not reach it (a finding marked
  `unreachable`) is paged as down only once the fabric agrees, i.e. every link whose other end
  would see it die is down (`ClusterTopology.witness_links`); until then it is kept, not paged, and
  forgotten when it reports again. An exporter that crashed on a healthy host pages nothing here
  (the collector reports it on its own metrics and log).

Event time: the correlator's clock is the slowest active watermark of the sources whose findings
can be a root cause (card and port telemetry; step telemetry finds symptoms only). A source that has
read everything in its partition and whose watermark has not moved for 5 s (caught up: a
partition with no new data, a stalled job) cannot send anything older and does not hold the clock;
neither does one silent for `idle_s` of wall time (a dead worker). A source that lags, however
long, holds it. When every source is caught up or idle (the input stopped), what is held is
released after a short quiet period.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial

from pipeline.correlate.clock import QUIET_RELEASE_S, is_quiet, slowest_active
from pipeline.correlate.hang import HangWatch
from pipeline.correlate.hold import Held, iso_ms
from pipeline.correlate.radius import blast_radius, describe
from pipeline.correlate.rules import CAUSE_SOURCE_KINDS, ROOT_KINDS, STALLING_KINDS, SYMPTOMS, explanations
from pipeline.model.schemas import Alert, alert_id
from pipeline.settings import CorrelateSettings
from pipeline.state.codec import decode_state, encode_state
from pipeline.topology.protocol import ClusterTopology
from pipeline.topology.synthetic import UnknownEntity

log = logging.getLogger("clusterpulse.correlate")
# A consequence still firing this long (event time) after its cause resolved is paged on its own:
# twice the longest recovery hysteresis of a consequence (a link must stay up 30 s to resolve), so
# links and cards coming back with their switch or node resolve first and page nothing. Like
# Alertmanager, whose inhibition ends when the source alert resolves, but without the recovery flood.
ORPHAN_AFTER_S = 60.0
FABRIC = "fabric"  # the source of a switch or node declared down from its links (`_infer_for`)
STEPS = "steps"  # the source of a job_hang (`pipeline.correlate.hang`: the jobs' progress on this clock)
FABRIC_ROOTS = frozenset({"switch_down", "node_down"})
# Of a switch's or node's witness links, this share must go down together for the first-tick rule;
# the rest may have been down before (a cable out; a link still in its 30 s hysteresis after an
# earlier failure next to it). High, so that a device of few links (a node's 8, a small fabric's 3)
# needs all of them: with 3 links, a link in hysteresis plus two going down is not the device.
TOGETHER_SHARE = 0.9
EPISODES_KEPT_MS = 600_000  # a link's down episodes kept this long after they ended (event time)


def _due_hang(hang_id: str, clock: int, held: Held) -> bool:
    return held.alert.id == hang_id and held.release_ms <= clock


class Correlator:
    def __init__(
        self,
        topology: ClusterTopology,
        settings: CorrelateSettings | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.topo = topology
        self.settings = settings or CorrelateSettings()
        self.wall = clock
        self.held: dict[str, Held] = {}
        self.published: dict[str, Alert] = {}
        # published alerts that can explain others, with when they fired and resolved (event ms);
        # kept after they resolve so a symptom released late still finds the cause of its time
        self.roots: dict[str, tuple[Alert, int, int | None]] = {}
        self.sources: dict[str, set[str]] = {}
        self.watermarks: dict[str, int] = {}
        self.moved_at: dict[str, float] = {}  # wall time each source's watermark last moved
        self.caught_up: dict[str, bool] = {}  # source has read everything in its partition
        self.job_nodes: dict[str, set[str]] = {}
        # alert id -> when its last episode resolved (event ms): a finding replayed after a restart
        # (detectors re-judge what came after their last saved state) must not fire or resolve it again
        self.resolved: dict[str, int] = {}
        # grouped consequences whose cause resolved: id -> event ms when they page on their own
        self.orphans: dict[str, int] = {}
        # node_down / switch_down findings of sources that could not be reached, by id, with their
        # source: paged once the fabric agrees
        self.unconfirmed: dict[str, tuple[Alert, str]] = {}
        # link -> its recent down episodes [starts_at, ends_at or None, disabled], oldest first: what the
        # first-tick rule tests at the event time of a candidate, whatever order the findings came in
        self.link_episodes: dict[str, list[tuple[str, str | None, bool]]] = {}
        # a switch or node declared from its links, some of which were up again when it was: the
        # earliest such end, its resolution once the clock is there (no earlier end can come then)
        self.fabric_ends: dict[str, str] = {}
        self.restored_offset = -1  # the offset of the last finding the restored snapshot includes
        # the active silences covering an alert (pipeline.notify.silences.SilenceBook.silenced_by); none offline
        self.silences: Callable[[Alert], tuple[str, ...]] | None = None
        self.hangs = HangWatch(self.settings)  # jobs' progress and nodes' activity: job_hang

    # ---- state that survives a restart or a rebalance -------------------------------------------
    _STATE = (
        "held",
        "published",
        "roots",
        "sources",
        "watermarks",
        "caught_up",
        "job_nodes",
        "resolved",
        "orphans",
        "unconfirmed",
        "link_episodes",
        "fabric_ends",
        "hangs",
    )
    STATE_VERSION = 5  # 1: before the one codec (a bare pickle behind an 8-byte offset); 2: pipeline.state.codec;
    # 3: link down episodes; 4: the hang watch; 5: its collective timeouts

    def reset(self) -> None:
        """Forget everything (the findings partition moved to another worker)."""
        self.__init__(self.topo, self.settings, self.wall)  # type: ignore[misc]

    def snapshot(self, upto_offset: int = -1) -> bytes:
        """Everything the correlator remembers (`pipeline.state.codec`), with the offset of the last
        finding it includes (`restored_offset` after a restore)."""
        state = {name: getattr(self, name) for name in self._STATE}
        return encode_state("correlator", self.STATE_VERSION, {"upto_offset": upto_offset, "state": state})

    def restore(self, data: bytes) -> bool:
        """Take a snapshot's state (False: unreadable, state unchanged). Wall-clock marks restart now."""
        saved = decode_state(data, "correlator", self.STATE_VERSION)
        if not isinstance(saved, dict) or not isinstance(saved.get("state"), dict):
            return False
        state = saved["state"]
        if set(state) != set(self._STATE):
            return False
        for name, value in state.items():
            setattr(self, name, value)
        self.restored_offset = int(saved.get("upto_offset", -1))
        now = self.wall()
        self.moved_at = {src: now for src in self.watermarks}
        for held in self.held.values():
            held.held_at = now
        return True

    # ---- inputs ------------------------------------------------------------------------------
    def expect(self, sources: list[str]) -> None:
        """Sources that exist (every partition of every telemetry topic) hold the clock from now
        until they first report, are caught up or go idle: otherwise the first workers to report
        would run the clock ahead of a partition whose worker has not started reading yet."""
        now = self.wall()
        for source in sources:
            if source not in self.watermarks:
                self.watermarks[source] = -1
                self.moved_at[source] = now
                self.caught_up[source] = False

    def place(self, job: str, nodes: list[str]) -> None:
        """Nodes running a job (learned from step telemetry), for blast radius."""
        self.job_nodes.setdefault(job, set()).update(nodes)

    def progress(self, jobs: dict[str, dict]) -> None:
        """Where jobs stand (`StragglerDetector.take_progress`), for the hang watch at the next clock."""
        self.hangs.progress(jobs)

    def timeouts(self, jobs: dict[str, list]) -> None:
        """Ranks whose collective timed out (`StragglerDetector.take_timeouts`), for the hang watch."""
        self.hangs.timeouts(jobs)

    def activity(self, nodes: dict[str, tuple[bool, int]]) -> None:
        """Nodes whose cards turned busy or idle (`NodeActivity.take`)."""
        self.hangs.activity(nodes)

    def push(self, finding: Alert, source: str) -> list[Alert]:
        """One detector finding from `source`; returns alerts to publish now."""
        if finding.evidence.get("unreachable") and finding.id not in self.published:
            if finding.status != "firing":
                self.unconfirmed.pop(finding.id, None)  # it answers again: it was never paged
                return []
            if not self._fabric_agrees(finding):
                self.unconfirmed[finding.id] = (finding, source)
                return []
            finding = self._confirmed(finding)
        if finding.kind == "link_down" and self.settings.fabric_window_s is not None:
            self._record_episode(finding)
        out = self._push(finding, source)
        if finding.kind == "link_down" and finding.status == "firing":
            if self.unconfirmed:
                out += self._confirm_for(finding.entity)
            out += self._infer_for(finding.entity)
        elif finding.kind == "link_down" and finding.id not in self.sources:  # resolved at every end
            out = self._uninfer_for(finding) + out  # the switch or node first, its link with it
        return out

    def _record_episode(self, finding: Alert) -> None:
        """A link's down episode starts with its first firing finding and ends with a resolution
        (the last end's: the correlator resolves a link when every end that saw it down is up)."""
        ended = self.resolved.get(finding.id)
        if ended is not None and iso_ms(finding.starts_at) <= ended:
            return  # a replayed episode
        episodes = self.link_episodes.setdefault(finding.entity, [])
        if finding.status == "firing":
            if not episodes or episodes[-1][1] is not None:
                episodes.append((finding.starts_at, None, finding.labels.get("admin_down") == "true"))
                cutoff = iso_ms(finding.starts_at) - EPISODES_KEPT_MS
                while len(episodes) > 1 and (end := episodes[0][1]) is not None and iso_ms(end) < cutoff:
                    episodes.pop(0)
        elif episodes and episodes[-1][1] is None and len(self.sources.get(finding.id, ())) <= 1:
            start, _, disabled = episodes[-1]
            episodes[-1] = (start, finding.ends_at or finding.starts_at, disabled)

    def _link_causes(self, link: str) -> list[tuple[str, str]]:
        """The switches and nodes whose death would take this link down; none for a link the
        topology does not know."""
        try:
            return self.topo.link_causes(link)
        except UnknownEntity:
            return []

    def _down_together(
        self, links: list[str], around: str
    ) -> tuple[list[tuple[str, str | None]], list[tuple[str, str | None]]] | None:
        """The witness links' down episodes at `around` (an event time): (those that started within
        `fabric_window_s` of it, those down since earlier), if at least `TOGETHER_SHARE` of the links
        (and two) went down together, the rest were down already (a cable out for a while says
        nothing against the device dying now), none is a disabled port, and all were down when the
        last of them went down; else None."""
        window_ms = int((self.settings.fabric_window_s or 0) * 1000)
        at = iso_ms(around)
        together, already = [], []
        for link in links:
            episodes = self.link_episodes.get(link, ())
            near = [e for e in episodes if abs(iso_ms(e[0]) - at) <= window_ms]
            if near:
                start, end, disabled = min(near, key=lambda e: abs(iso_ms(e[0]) - at))
                together.append((start, end))
            else:
                before = [e for e in episodes if iso_ms(e[0]) < at and (e[1] is None or iso_ms(e[1]) > at)]
                if not before:
                    return None
                start, end, disabled = before[-1]
                already.append((start, end))
            if disabled:
                return None
        if len(together) < max(2, math.ceil(TOGETHER_SHARE * len(links))):
            return None
        starts = [iso_ms(start) for start, _ in together]
        last = max(starts)
        ends = [end for _, end in together + already]
        if last - min(starts) > window_ms or any(end is not None and iso_ms(end) <= last for end in ends):
            return None
        return together, already

    def _infer_for(self, link: str) -> list[Alert]:
        """The switches and nodes behind a link that just went down whose witness links are all down,
        most of them gone within `fabric_window_s` (`_down_together`): declared down now (see the
        module docstring). Tested on the
        links' down episodes at that event time, so a witness link that has come back since (read
        late from a slower partition) counts as it would have in event-time order."""
        out: list[Alert] = []
        if self.settings.fabric_window_s is None:
            return out
        causes = self._link_causes(link)
        episodes = self.link_episodes.get(link)
        if not episodes:
            return out
        around = episodes[-1][0]
        for kind, entity in causes:
            root_id = alert_id(kind, entity)
            held = self.held.get(root_id)  # its own detector's finding, waiting for the clock
            if (root_id in self.sources and held is None) or root_id in self.unconfirmed:
                continue  # already paged, or an unreachable source waiting for the fabric
            ended = self.resolved.get(root_id)
            if ended is not None and iso_ms(around) <= ended:
                continue  # an episode of it that has resolved already
            links = self.topo.witness_links(kind, entity)
            found = self._down_together(links, around) if len(links) >= 2 else None
            if found is None:
                continue
            chosen, already = found
            starts = [iso_ms(start) for start, _ in chosen]
            spread_s = (max(starts) - min(starts)) / 1000
            finding = Alert(
                kind=kind,
                entity=entity,
                status="firing",
                starts_at=min(start for start, _ in chosen),
                severity="critical",
                summary=f"{entity} down: {len(chosen)} of the {len(links)} links its neighbours see went down "
                f"within {spread_s:g} s ({len(already)} down before)"
                if already
                else f"{entity} down: all {len(links)} links its neighbours see went down within {spread_s:g} s",
                labels={"switch" if kind == "switch_down" else "node": entity},
                evidence={"witness_links_down": len(links), "inferred_from": FABRIC, "consequences_known": len(links)},
            )
            if held is not None:
                del self.held[root_id]
                if held.resolved is None:  # its detector still sees it: the fabric's verdict is earlier
                    self.sources[root_id].add(FABRIC)
                    out.append(self._publish(finding))
                    continue
                # its detector saw it come back while it waited: declared, then resolved as its detector said
                out += self._push(finding, FABRIC)
                out += self._push(held.resolved, FABRIC)
                continue
            out += self._push(finding, FABRIC)
            ends = [end for _, end in chosen + already if end is not None]
            if ends and root_id in self.published:  # a witness link is up again: resolved when the clock is there
                self.fabric_ends[root_id] = min(ends)
        return out

    def _fabric_resolutions(self, clock: int) -> list[Alert]:
        """Switches and nodes declared from links of which some were up again already: resolved at
        the earliest of those ends once the clock has passed it (a witness link still down then
        comes back later, in event time)."""
        out: list[Alert] = []
        for root_id, end in list(self.fabric_ends.items()):
            if iso_ms(end) <= clock:
                del self.fabric_ends[root_id]
                root = self.published.get(root_id)
                if root is not None and FABRIC in self.sources.get(root_id, set()):
                    out += self._push(replace(root, status="resolved", ends_at=end), FABRIC)
        return out

    def _uninfer_for(self, resolved_link: Alert) -> list[Alert]:
        """A witness link of a switch or node declared from the fabric resolved: the fabric no longer
        says it is down (its own detector, if it fired too, still has a say)."""
        out: list[Alert] = []
        causes = self._link_causes(resolved_link.entity)
        for kind, entity in causes:
            root_id = alert_id(kind, entity)
            if FABRIC not in self.sources.get(root_id, set()):
                continue
            root = self.published.get(root_id)
            if root is None:
                continue
            ends_at = resolved_link.ends_at or resolved_link.starts_at
            known = self.fabric_ends.pop(root_id, None)  # an earlier end of another of its links
            if known is not None and iso_ms(known) < iso_ms(ends_at):
                ends_at = known
            out += self._push(replace(root, status="resolved", ends_at=ends_at), FABRIC)
        return out

    def _fabric_agrees(self, finding: Alert) -> bool:
        """Are all the links that would see this node or switch die down (firing, held or paged)?"""
        try:
            links = self.topo.witness_links(finding.kind, finding.entity)
        except UnknownEntity:
            return False
        return bool(links) and all(alert_id("link_down", link) in self.sources for link in links)

    def _confirmed(self, finding: Alert) -> Alert:
        links = len(self.topo.witness_links(finding.kind, finding.entity))
        return replace(
            finding,
            summary=f"{finding.entity} down: its exporter does not answer "
            f"({finding.evidence.get('collector', 'collector')}) and all {links} links "
            "its neighbours see are down",
            evidence={**finding.evidence, "witness_links_down": links},
        )

    def _confirm_for(self, link: str) -> list[Alert]:
        """Unreachable nodes or switches behind a link that just went down, now that the fabric agrees."""
        out: list[Alert] = []
        causes = self._link_causes(link)
        for kind, entity in causes:
            waiting = self.unconfirmed.get(alert_id(kind, entity))
            if waiting is not None and self._fabric_agrees(waiting[0]):
                del self.unconfirmed[waiting[0].id]
                out += self._push(self._confirmed(waiting[0]), waiting[1])
        return out

    def _push(self, finding: Alert, source: str) -> list[Alert]:
        ended = self.resolved.get(finding.id)
        if ended is not None and iso_ms(finding.starts_at) <= ended:
            return []  # an episode that has already resolved, replayed
        if finding.status == "firing":
            seen = self.sources.get(finding.id)
            if seen is not None:
                seen.add(source)
                return []
            self.sources[finding.id] = {source}
            if finding.kind in SYMPTOMS:
                wait_ms = int(self.settings.group_wait_s * 1000)
                if finding.kind == "link_down" and self.settings.fabric_window_s is not None:
                    wait_ms = min(wait_ms, int(self.settings.fabric_window_s * 1000))  # see _cause_may_follow
                self.held[finding.id] = Held(finding, iso_ms(finding.starts_at) + wait_ms, self.wall())
                return []
            if finding.kind in FABRIC_ROOTS and source != FABRIC and self.settings.fabric_window_s is not None:
                # until the clock reaches it: every link that went down before it has arrived by
                # then, and the fabric's verdict (earlier) wins in any order of arrival
                self.held[finding.id] = Held(finding, iso_ms(finding.starts_at), self.wall())
                return []
            # not held: grouped only under a cause already firing (a card failing after its ECC errors)
            return [self._publish(finding, self._root_cause(finding, wait=False))]
        seen = self.sources.get(finding.id)
        if seen is not None:
            seen.discard(source)
            if seen == {FABRIC}:
                seen.discard(FABRIC)  # its own detector saw it come back: that outranks its links' hysteresis
            if seen:
                return []  # another source still sees it
            del self.sources[finding.id]
        held = self.held.get(finding.id)
        if held is not None:
            held.resolved = finding
            return []
        self._remember_resolved(finding)
        firing = self.published.pop(finding.id, None)
        self.orphans.pop(finding.id, None)
        if finding.id in self.roots:
            root, start_ms, _ = self.roots[finding.id]
            end_ms = iso_ms(finding.ends_at or finding.starts_at)
            self.roots[finding.id] = (root, start_ms, end_ms)
            self._prune_roots(start_ms)
            for alert in self.published.values():  # its consequences must now resolve on their own
                if alert.root_cause == finding.id and alert.entity != root.entity:  # not a flapping link's own
                    self.orphans[alert.id] = end_ms + int(ORPHAN_AFTER_S * 1000)
        if firing is None:
            return [finding]  # fired before a restart: pass the resolution on
        return [
            replace(
                finding,
                starts_at=firing.starts_at,  # the episode's start as paged (another source may have seen it first)
                root_cause=firing.root_cause,
                labels=firing.labels,
                evidence={**firing.evidence, **finding.evidence},
                silenced_by=firing.silenced_by,  # a firing no one was paged for resolves without a page too
            )
        ]

    def advance(self, source: str, ts_ms: int, caught_up: bool = False) -> list[Alert]:
        """A source's watermark (and whether it has read all its partition); release what is due."""
        if ts_ms > self.watermarks.get(source, -1) or source not in self.moved_at:
            self.watermarks[source] = max(ts_ms, self.watermarks.get(source, -1))
            self.moved_at[source] = self.wall()
        self.caught_up[source] = caught_up
        return self._due(self.clockiso_ms())

    def _due(self, clock: int) -> list[Alert]:
        """What the event-time clock has reached: fabric resolutions, held alerts, orphans."""
        out = self._fabric_resolutions(clock) if self.fabric_ends else []
        steps_clock = self._steps_clock()
        if steps_clock >= 0:
            for finding in self.hangs.check(steps_clock, self.job_nodes):
                out += self._push(finding, STEPS)
                if finding.status == "resolved":  # a hang judged late, over and due: out before the next one
                    out += self._release(partial(_due_hang, finding.id, steps_clock))
        self._wait_for_causes(clock)
        return out + self._release(lambda h: h.release_ms <= clock) + self._page_orphans(clock)

    def _wait_for_causes(self, clock: int) -> None:
        """A link down is held only `fabric_window_s`, not `group_wait_s`, when by then neither of
        its ends can be dying: a dying switch or node takes all its witness links down within the
        window, so one of them still up says it is alive (and the first-tick rule has declared one
        that did die). Where every witness link of an end is down, its silence rule may still
        declare it: the link waits the whole `group_wait_s` for it."""
        wait_ms = int(self.settings.group_wait_s * 1000)
        for held in self.held.values():
            alert = held.alert
            if alert.kind != "link_down" or held.release_ms > clock:
                continue
            start = iso_ms(alert.starts_at)
            if held.release_ms < start + wait_ms and self._cause_may_follow(alert.entity, start):
                held.release_ms = start + wait_ms

    def _cause_may_follow(self, link: str, start: int) -> bool:
        """Could a switch or node at an end of this link (not yet firing) be dying since `start`:
        is every one of its witness links down at that event time, or going down within the window?"""
        window_ms = int((self.settings.fabric_window_s or 0) * 1000)
        causes = self._link_causes(link)
        for kind, entity in causes:
            root = self.roots.get(alert_id(kind, entity))
            if root is not None and root[2] is None:
                continue  # firing already: the link is grouped under it when released
            links = self.topo.witness_links(kind, entity)
            if links and all(self._down_near(witness, start, window_ms) for witness in links):
                return True
        return False

    def _down_near(self, link: str, at: int, window_ms: int) -> bool:
        """Was the link down at event time `at`, or did it go down within `window_ms` after?"""
        return any(
            iso_ms(start) <= at + window_ms and (end is None or iso_ms(end) >= at)
            for start, end, _ in self.link_episodes.get(link, ())
        )

    def _page_orphans(self, clock: int) -> list[Alert]:
        """Consequences still firing `ORPHAN_AFTER_S` after their cause resolved: a firing record
        again, ungrouped (same id and start), so they page on their own."""
        out = []
        for orphan_id, due_ms in sorted(self.orphans.items(), key=lambda item: item[1]):
            if due_ms > clock:
                continue
            del self.orphans[orphan_id]
            alert = self.published.get(orphan_id)
            if alert is None or alert.root_cause is None:
                continue
            cause = self.roots.get(alert.root_cause)
            why = (
                f"still firing {ORPHAN_AFTER_S:g} s after {cause[0].kind} {cause[0].entity} resolved"
                if cause
                else f"still firing {ORPHAN_AFTER_S:g} s after its cause resolved"
            )
            base = alert.summary.split(" (consequence of ")[0]
            out.append(
                self._publish(
                    replace(
                        alert,
                        root_cause=None,
                        summary=f"{base} ({why})",
                        evidence={**alert.evidence, "was_grouped_under": alert.root_cause},
                    )
                )
            )
        return out

    def _quiet(self, source: str, now: float) -> bool:
        return is_quiet(self.caught_up.get(source, False), now - self.moved_at[source], self.settings.idle_s)

    def release_stale(self) -> list[Alert]:
        """When every source is caught up or idle (the input stopped), release what has been held a
        little while; otherwise what the clock says is due."""
        now = self.wall()
        if self.watermarks and all(self._quiet(src, now) for src in self.watermarks):
            out = self._hangs_at_end()  # no rank's timeout is on its way either
            return out + self._release(lambda h: now - h.held_at >= QUIET_RELEASE_S)
        return self._due(self.clockiso_ms())

    def unsilenced(self) -> list[Alert]:
        """Firing alerts whose silences ended: published again without `silenced_by`, so they page now."""
        if self.silences is None:
            return []
        out = []
        for alert in [a for a in self.published.values() if a.silenced_by]:
            now_by = self.silences(alert)
            if now_by == alert.silenced_by:
                continue
            self.published[alert.id] = replace(alert, silenced_by=now_by)
            if not now_by:
                out.append(self.published[alert.id])
        return out

    def flush(self) -> list[Alert]:
        """End of input: judge the collective timeouts still gathering, release everything held."""
        return self._hangs_at_end() + self._release(lambda h: True)

    def _hangs_at_end(self) -> list[Alert]:
        """The hang watch's collective timeouts still gathering, judged now that no more can come."""
        out: list[Alert] = []
        for finding in self.hangs.end(self.job_nodes):
            out += self._push(finding, STEPS)
        return out

    def clockiso_ms(self) -> int:
        """The slowest active watermark of the sources whose findings can be a root cause (-1 before
        any): card and port telemetry (`CAUSE_SOURCE_KINDS`). A step source finds symptoms only, and
        a job's steps end seconds apart, so its watermark lags: it need not hold a link waiting for
        its cause. Of every active source where none of those is active (step telemetry alone, or
        card and port partitions read to their end)."""
        now = self.wall()
        return slowest_active(
            self.watermarks, lambda src: self._quiet(src, now), lambda src: src.split("/")[0] in CAUSE_SOURCE_KINDS
        )

    def _steps_clock(self) -> int:
        """The slowest active watermark of every source, step telemetry included: a job's progress
        is sent with the step message that made it, so a hang is judged only once its step
        partition has been read that far (a lagging step partition must not look like a hang). A
        partition read to its end that never held anything (no job's steps go there) holds nothing."""
        now = self.wall()
        marks = {src: w for src, w in self.watermarks.items() if w >= 0 or not self.caught_up.get(src, False)}
        return slowest_active(marks, lambda src: self._quiet(src, now), lambda src: True)

    # ---- decisions ---------------------------------------------------------------------------
    def _release(self, due: Callable[[Held], bool]) -> list[Alert]:
        ready = sorted(  # switches and nodes first: the symptoms released with them find them
            (h for h in self.held.values() if due(h)),
            key=lambda h: (h.alert.kind not in FABRIC_ROOTS, h.alert.starts_at, h.alert.id),
        )
        out: list[Alert] = []
        for held in ready:
            del self.held[held.alert.id]
            root = self._root_cause(held.alert)
            log.debug(
                "release %s %s (held until %d) at clock %d, watermarks %s, root %s",
                held.alert.kind,
                held.alert.entity,
                held.release_ms,
                self.clockiso_ms(),
                self.watermarks,
                root and root.entity,
            )
            firing = self._publish(held.alert, root)
            out.append(firing)
            if held.resolved is not None:
                self.published.pop(firing.id, None)
                self._remember_resolved(held.resolved)
                out.append(
                    replace(
                        held.resolved,
                        root_cause=firing.root_cause,
                        labels=firing.labels,
                        silenced_by=firing.silenced_by,
                    )
                )
        return out

    def _publish(self, alert: Alert, root: Alert | None = None) -> Alert:
        labels = dict(alert.labels)
        if root is not None:
            alert = replace(
                alert,
                root_cause=root.id,
                labels=labels,
                summary=f"{alert.summary} (consequence of {root.kind} {root.entity})",
            )
        else:
            radius = self.blast_radius(alert)
            if radius:
                jobs = radius.get("jobs") or []
                if len(jobs) == 1:
                    labels.setdefault("job", jobs[0])
                alert = replace(
                    alert,
                    labels=labels,
                    evidence={**alert.evidence, "blast_radius": radius},
                    summary=f"{alert.summary}; {describe(radius)}",
                )
        if self.silences is not None:
            alert = replace(alert, silenced_by=self.silences(alert))
        self.published[alert.id] = alert
        if alert.kind in ROOT_KINDS:
            self.roots[alert.id] = (alert, iso_ms(alert.starts_at), None)
        return alert

    def _root_cause(self, alert: Alert, wait: bool = True) -> Alert | None:
        """A root alert firing when the symptom started (or, with `wait`, starting within group_wait after)."""
        at_ms = iso_ms(alert.starts_at)
        wait_ms = int(self.settings.group_wait_s * 1000) if wait else 0
        for kind, entity in self._explanations(alert):
            entry = self.roots.get(alert_id(kind, entity))
            if entry is None:
                continue
            root, start_ms, end_ms = entry
            if start_ms <= at_ms + wait_ms and (end_ms is None or end_ms >= at_ms):
                return root
        return None

    def _remember_resolved(self, finding: Alert, keep: int = 100_000) -> None:
        self.resolved[finding.id] = iso_ms(finding.ends_at or finding.starts_at)
        if len(self.resolved) > keep:  # bounded: the oldest episodes are forgotten first
            for key in sorted(self.resolved, key=self.resolved.__getitem__)[: keep // 10]:
                del self.resolved[key]

    def _prune_roots(self, now_ms: int, keep_ms: int = 600_000) -> None:
        for key in [k for k, (_, _, end) in self.roots.items() if end is not None and now_ms - end > keep_ms]:
            del self.roots[key]

    def _explanations(self, alert: Alert) -> list[tuple[str, str]]:
        if alert.kind == "job_hang":
            return self._stalling(alert.entity)
        return explanations(self.topo, alert)

    def _stalling(self, job: str) -> list[tuple[str, str]]:
        """Roots that stall a job: a dead card, node, host link or leaf of its nodes, not itself a
        consequence (a dead node's links are grouped under it: the hang is too), earliest first."""
        nodes = self.job_nodes.get(job, set())
        found = []
        for root, start_ms, _ in self.roots.values():
            if root.kind in STALLING_KINDS and root.root_cause is None and self._nodes_of(root) & nodes:
                found.append((start_ms, root.kind, root.entity))
        return [(kind, entity) for _, kind, entity in sorted(found)]

    def _nodes_of(self, root: Alert) -> set[str]:
        """The nodes whose ranks a dead card, node, host link or switch cuts off."""
        try:
            if root.kind == "node_down":
                return {root.entity}
            if root.kind == "card_failed":
                return {self.topo.node_name(self.topo.parse_card(root.entity)[0])}
            if root.kind == "link_down":
                what, node, _ = self.topo.resolve_link(root.entity)
                return {self.topo.node_name(node)} if what == "host" else set()
            if root.kind == "switch_down":
                return set(self.topo.switch_radius(root.entity)["node_names"])
        except UnknownEntity:
            pass
        return set()

    # ---- blast radius ------------------------------------------------------------------------
    def _jobs_of(self, nodes: set[str]) -> list[str]:
        return sorted(job for job, members in self.job_nodes.items() if members & nodes)

    def blast_radius(self, alert: Alert) -> dict | None:
        """What an ungrouped alert takes down; None when it is only about itself."""
        return blast_radius(self.topo, alert, self._jobs_of)
