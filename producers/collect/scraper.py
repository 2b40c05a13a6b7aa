"""Scrape a fleet of exporters concurrently, a round per job per `scrape_interval`, into Kafka.

A round starts on every tick of the job's interval (aligned to the wall clock); its groups of
`group_size` targets start spread over the interval (group i of n at i/n of it, as Prometheus
spreads its targets), each group's targets at once (asyncio, keep-alive connections). A group
becomes one message per batch kind when its targets have answered or timed out, stamped with the
group's scheduled start (or the exposition's own timestamps). A target that
fails is named in its group's message as `unreachable` (`Batch.unreachable`) with the nodes or
switches it served: not a report, and not a death either (docs/operations.md). A round that ends
after the next was due skips the ticks it missed and says so (log, `rounds_total{outcome}`): a
late collector never looks like silent nodes, since a late round moves every source's clock.
"""

from __future__ import annotations

import asyncio
import enum
import gc
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import aiohttp
import numpy as np

from pipeline.model.schemas import SCHEMAS, Batch, InvalidRecord, bundle, encode_batch
from pipeline.model.topics import CARD_TELEMETRY, PORT_TELEMETRY, STEP_TELEMETRY
from pipeline.topology.entities import check_entities
from pipeline.topology.inventory import Inventory
from pipeline.topology.synthetic import Topology, UnknownEntity
from producers.adapters import FormatError, decode_text
from producers.adapters.exporters import ExporterConverter
from producers.adapters.prometheus import SeriesCache
from producers.collect.config import ScrapeConfig, Target, apply_relabel, discover, file_sd_paths, load_config
from producers.collect.metrics import CollectMetrics
from producers.ingest import InputReport, _convert_scrape
from producers.simulator import Message

log = logging.getLogger("clusterpulse.collect")
TOPIC_OF = {"card": CARD_TELEMETRY, "port": PORT_TELEMETRY, "step": STEP_TELEMETRY}
REPEAT_LOG_S = 60.0  # a target that keeps failing is logged when it starts, then once a minute


# a scrape that tells nothing about its target (see Scraper._scrape): like a failed one, its nodes
# or switches are named unreachable, so a collector that falls behind never looks like silent nodes
class _NoNews(enum.Enum):
    NO_NEWS = enum.auto()


NO_NEWS = _NoNews.NO_NEWS
BUSY_LAG_S = 0.2  # the collector's loop waking this late is a stall of its own
# a group's message waits this fraction of the interval after its first target answered for the rest
GROUP_WAIT = 0.25
MAX_BODY = 64 * 1024 * 1024  # a page larger than this is refused (a real dcgm-exporter page is ~100 KB)


@dataclass
class TargetState:
    """What the collector knows of one target across rounds and reloads."""

    target: Target
    entities: tuple[str, ...] = ()  # nodes / switches its last good scrape named
    up: bool | None = None
    failures: int = 0
    logged_at: float = -math.inf
    unmapped_said: bool = False
    bad_page: str | None = None  # why its last page was not usable (said once)
    series: SeriesCache = field(default_factory=SeriesCache)  # its pages' series, parsed once
    in_flight: bool = False  # a scrape of it is still open (a target slower than its interval)


@dataclass
class JobPlan:
    name: str
    interval_s: float
    groups: list[list[TargetState]] = field(default_factory=list)


class Mapper:
    """Which topology names a target's scrapes are about: its `node` / `switch` label, its host
    through the inventory, or what its exposition says (dcgm-exporter's `Hostname`)."""

    def __init__(self, topology: Topology, inventory: Inventory) -> None:
        self.topo = topology
        self.inventory = inventory

    def node(self, name: str | None) -> str | None:
        if not name:
            return None
        mapped = self.inventory.node_of(name) if self.inventory.host(name) else name
        try:
            self.topo.node_index(mapped or "")
            return mapped
        except UnknownEntity:
            return None

    def switch(self, name: str | None) -> str | None:
        if not name:
            return None
        mapped = self.inventory.switch_of(name) or name
        try:
            self.topo.switch_index(mapped)
            return mapped
        except UnknownEntity:
            return None

    def batch_kind(self, entity: str) -> str:
        """The batch kind that reports this node ("card") or switch ("port")."""
        return "port" if self.switch(entity) else "card"

    def hints(self, target: Target) -> tuple[str | None, str | None]:
        """(host hint, switch hint) for the converter: the target's labels, else its instance's host."""
        labels = target.labels
        host = (labels.get("instance") or target.address).rsplit(":", 1)[0]
        node = self.node(labels.get("node")) or self.node(labels.get("hostname")) or self.node(host)
        switch = self.switch(labels.get("switch")) or self.switch(labels.get("instance")) or self.switch(host)
        return node or labels.get("node") or host, switch

    def declared(self, target: Target) -> tuple[str, ...]:
        """Entities the target's own labels name (known before it ever answers)."""
        node, switch = self.node(target.labels.get("node")), self.switch(target.labels.get("switch"))
        return tuple(name for name in (node, switch) if name)


def empty_batch(kind: str, source: str, ts_ms: int) -> Batch:
    schema = SCHEMAS[kind]
    return Batch(kind, source, ts_ms, {c.name: np.zeros(0, c.dtype) for c in schema.columns}, "", [])


def group_messages(collector: str, batches: list[Batch], gone: dict[str, list[str]], ts_ms: int) -> list[Message]:
    """One message per batch kind (and job, for steps) of a group's batches, with the sources it
    could not reach listed as `unreachable` (no rows). All stamped `ts_ms`, or the newest
    exposition time of the group when that is later."""
    out: list[Message] = []
    by_kind: dict[tuple[str, str], list[Batch]] = {}
    for batch in batches:
        by_kind.setdefault((batch.kind, batch.job), []).append(batch)
    for kind in ("card", "port"):
        if gone.get(kind) and not any(k == kind for k, _ in by_kind):
            by_kind[(kind, "")] = []
    for (kind, job), members in by_kind.items():
        stamp = max([ts_ms] + [b.ts_ms for b in members])
        merged = bundle(members, collector) if members else empty_batch(kind, collector, stamp)
        merged.ts_ms = stamp
        missing = [name for name in gone.get(kind, ()) if all(name != s for s, _ in merged.parts or ())]
        if missing and not job:
            groups = list(dict.fromkeys(c.group for c in SCHEMAS[kind].columns))
            merged.parts = list(merged.parts or []) + [(name, dict.fromkeys(groups, 0)) for name in missing]
            merged.unreachable = tuple(missing)
        out.append(Message(TOPIC_OF[kind], collector, encode_batch(merged)))
    return out


class Scraper:
    """The scrape loop of `clusterpulse collect --config`: discovery, rounds, reloads."""

    def __init__(
        self,
        config_path: str,
        shard: tuple[int, int] | None,
        topology: Topology,
        inventory: Inventory,
        send: Callable[[Message], None],
        metrics: CollectMetrics,
        group_size: int = 32,
        say: Callable[[str], None] = print,
    ) -> None:
        self.config_path = config_path
        self.shard = shard
        self.topo = topology
        self.mapper = Mapper(topology, inventory)
        self.converter = ExporterConverter(topology, inventory)
        self.send = send
        self.metrics = metrics
        self.group_size = group_size
        self.say = say
        self.config: ScrapeConfig | None = None
        self.states: dict[str, TargetState] = {}  # by URL
        self.jobs: list[JobPlan] = []
        self.sd_mtimes: dict[str, float] = {}
        self.reload_requested = False
        self.partial_said: set[tuple[str, str]] = set()
        self.busy_since = -math.inf  # the last time the loop stalled (`_watch_loop`)
        self.session: aiohttp.ClientSession | None = None
        self.stopping: asyncio.Event | None = None  # set when the collector stops: failures then are ours

    # ---- configuration -----------------------------------------------------------------------
    def load(self) -> None:
        """Read the config and discover the targets; ConfigError if the config is bad."""
        config = load_config(self.config_path)
        targets, problems = discover(config, self.shard)
        for problem in problems:
            self.say(f"clusterpulse: {problem}")
        self.config = config
        self.sd_mtimes = self._mtimes()
        for job in config.jobs:
            if job.honor_labels:
                self.say(
                    f"clusterpulse: job {job.name}: honor_labels changes nothing here (a target's labels "
                    "name what it serves; they are not attached to its samples)"
                )
        states: dict[str, TargetState] = {}
        for target in targets:
            old = self.states.get(target.url)
            state = TargetState(target) if old is None else old
            if old is None or old.target.metric_relabel != target.metric_relabel:
                state.series = SeriesCache(relabel=metric_relabel(target.metric_relabel))
            state.target = target
            if not state.entities:
                state.entities = self.mapper.declared(target)
            states[target.url] = state
        self.states = states
        jobs: dict[str, JobPlan] = {}
        for state in states.values():
            plan = jobs.setdefault(state.target.job, JobPlan(state.target.job, state.target.interval_s))
            if not plan.groups or len(plan.groups[-1]) >= self.group_size:
                plan.groups.append([])
            plan.groups[-1].append(state)
        self.jobs = list(jobs.values())
        self.metrics.set_targets({job.name: sum(len(g) for g in job.groups) for job in self.jobs})
        shard = f" (shard {self.shard[0]}/{self.shard[1]})" if self.shard else ""
        self.say(
            f"clusterpulse: collecting {len(states):,} targets{shard} from {self.config_path}: "
            + ", ".join(
                f"{job.name} {sum(len(g) for g in job.groups):,} every {job.interval_s:g} s" for job in self.jobs
            )
        )

    def _mtimes(self) -> dict[str, float]:
        import os

        found = {}
        for path in file_sd_paths(self.config) if self.config else []:
            try:
                found[path] = os.stat(path).st_mtime
            except OSError:
                continue
        return found

    def sd_changed(self) -> bool:
        return self._mtimes() != self.sd_mtimes

    # ---- running -----------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Rounds until `stop` is set; SIGHUP (`reload_requested`) and file_sd changes reload."""
        self.stopping = stop
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, enable_cleanup_closed=True)
        async with aiohttp.ClientSession(connector=connector, auto_decompress=True) as session:
            self.session = session
            while not stop.is_set():
                tasks = [asyncio.create_task(self._job_loop(job, stop), name=f"job {job.name}") for job in self.jobs]
                longest = max((job.interval_s for job in self.jobs), default=1.0) * 2 + 1
                tasks.append(asyncio.create_task(freeze_when_warm(stop, longest)))
                tasks.append(asyncio.create_task(self._watch_loop(stop)))
                try:
                    while not stop.is_set():
                        await _wait(stop, 1.0)
                        if self.reload_requested or self.sd_changed():
                            break
                finally:
                    for task in tasks:
                        task.cancel()
                    await asyncio.gather(*tasks, return_exceptions=True)
                if stop.is_set():
                    break
                why = "SIGHUP" if self.reload_requested else "a file_sd file changed"
                self.reload_requested = False
                try:
                    self.load()
                    self.say(f"clusterpulse: reloaded {self.config_path} ({why})")
                except ValueError as exc:  # ConfigError: keep the running config
                    self.sd_mtimes = self._mtimes()
                    self.say(f"clusterpulse: reload failed, still running the previous config: {exc}")

    async def _watch_loop(self, stop: asyncio.Event, every_s: float = 0.05) -> None:
        """Notes when the collector's own loop stalls (it woke BUSY_LAG_S late): a scrape that
        timed out meanwhile may have had its answer waiting, unread."""
        while not stop.is_set():
            before = time.monotonic()
            await asyncio.sleep(every_s)
            now = time.monotonic()
            if now - before - every_s > BUSY_LAG_S:
                self.busy_since = now

    async def _job_loop(self, job: JobPlan, stop: asyncio.Event) -> None:
        """A round on every tick of the job's interval, each on its own: a round still waiting on a
        slow target does not hold up the next (that target sits the next round out instead)."""
        interval = job.interval_s
        due = math.ceil(time.time() / interval) * interval
        rounds: set[asyncio.Task] = set()
        try:
            while not stop.is_set():
                await _wait(stop, max(0.0, due - time.time()))
                if stop.is_set():
                    return
                self.metrics.round_lag.labels(job.name).set(max(0.0, time.time() - due))
                task = asyncio.create_task(self._round(job, due))
                rounds.add(task)
                task.add_done_callback(rounds.discard)
                due += interval
                if time.time() > due:  # the loop itself is behind (an overloaded collector): skip ahead
                    missed = math.floor((time.time() - due) / interval) + 1
                    due += missed * interval
                    self.metrics.rounds.labels(job.name, "skipped").inc(missed)
                    log.warning(
                        "job %s: skipped %d round(s) of %g s: the collector is falling behind (shard the "
                        "targets: --shard I/N)",
                        job.name,
                        missed,
                        interval,
                    )
        finally:  # a reload lets the rounds under way finish; a stop ends them
            if stop.is_set():
                for task in list(rounds):
                    task.cancel()
                await asyncio.gather(*rounds, return_exceptions=True)

    async def _round(self, job: JobPlan, due: float) -> None:
        """One round: group i of n starts i/n of the way into the interval (as Prometheus spreads
        its targets), stamped with its own start, so a thousand scrapes do not all start at once."""
        count = len(job.groups)
        took = await asyncio.gather(
            *(self._group_at(job, group, due + job.interval_s * i / count) for i, group in enumerate(job.groups))
        )
        # a target that times out ends its group at the timeout (at most the interval): late is
        # what the collector adds beyond that
        late = max(took, default=0.0) > job.interval_s * (1 + GROUP_WAIT)
        self.metrics.rounds.labels(job.name, "late" if late else "on_time").inc()
        if late:
            log.warning(
                "job %s: a group of the round of %s ended %.2f s after its start (interval %g s): the "
                "collector is falling behind",
                job.name,
                time.strftime("%H:%M:%S", time.localtime(due)),
                max(took),
                job.interval_s,
            )

    async def _group_at(self, job: JobPlan, group: list[TargetState], start: float) -> float:
        """The group's scrape at `start` (wall s); returns how long after `start` it ended."""
        delay = start - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        await self._group(job, group, int(start * 1000))
        return time.time() - start

    async def _group(self, job: JobPlan, group: list[TargetState], stamp_ms: int) -> None:
        """The group's scrapes as one message per kind, once all have answered or failed, or a
        moment after the first answered: a target that hangs is sent on its own when it ends, and
        does not hold up the others for its whole timeout."""
        tasks = {asyncio.ensure_future(self._scrape(state)): state for state in group if not state.in_flight}
        behind = [(state, NO_NEWS) for state in group if state.in_flight]  # still on the last round's scrape
        if behind:
            self._send_group(job, group, behind, stamp_ms)
        pending = set(tasks)
        first = True
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            if first and pending:  # the rest of the group may take up to a quarter of the interval
                first = False
                more, pending = await asyncio.wait(pending, timeout=max(0.05, job.interval_s * GROUP_WAIT))
                done |= more
            self._send_group(job, group, [(tasks[t], t.result()) for t in done], stamp_ms)

    def _send_group(
        self,
        job: JobPlan,
        group: list[TargetState],
        results: Sequence[tuple[TargetState, str | _NoNews | None]],
        stamp_ms: int,
    ) -> None:
        batches: list[Batch] = []
        gone: dict[str, list[str]] = {"card": [], "port": []}
        for state, body in results:
            if body is None or body is NO_NEWS:  # no report this tick: owed, not a silence to judge
                for entity in state.entities:
                    gone[self.mapper.batch_kind(entity)].append(entity)
                continue
            batches += self._convert(state, body, stamp_ms)
        if not batches and not gone["card"] and not gone["port"]:
            return
        first = group[0].target
        collector = f"{job.name}:{first.labels.get('node') or first.labels.get('switch') or first.address}"
        for message in group_messages(collector, batches, gone, stamp_ms):
            self.send(message)
            self.metrics.messages.labels(message.topic.suffix).inc()

    async def _scrape(self, state: TargetState) -> str | _NoNews | None:
        """The target's page; None if it failed (recorded, logged when it starts, then each minute);
        NO_NEWS if it answered with something unusable, or timed out while the collector itself was
        too busy to read answers (then the target is not to blame)."""
        target = state.target
        assert self.session is not None
        started = time.perf_counter()
        started_mono = time.monotonic()
        problem = None
        state.in_flight = True
        try:
            async with self.session.get(
                target.url,
                timeout=aiohttp.ClientTimeout(total=target.timeout_s),
                headers={"Accept": "text/plain;version=0.0.4"},
            ) as resp:
                if resp.status != 200:
                    problem, reason = f"HTTP {resp.status}", "http_status"
                else:
                    raw = await _read_all(resp.content, MAX_BODY)  # read(n) returns what has come so far
                    if raw is None:
                        problem, reason = f"page over {MAX_BODY >> 20} MiB", "too_large"
        except TimeoutError:
            problem, reason = f"no answer within {target.timeout_s:g} s", "timeout"
        except aiohttp.ClientError as exc:
            problem, reason = f"{type(exc).__name__}: {exc}", "connection"
        except OSError as exc:
            problem, reason = f"{exc.strerror or exc}", "connection"
        finally:
            state.in_flight = False
        took = time.perf_counter() - started
        self.metrics.scrape_seconds.labels(target.job).observe(took)
        self.metrics.scrapes.labels(target.job).inc()
        if problem is not None:
            if self.stopping is not None and self.stopping.is_set():  # our own session closed under it
                return NO_NEWS
            stalled = self.busy_since >= started_mono or took > target.timeout_s + BUSY_LAG_S
            if reason == "timeout" and stalled:  # our loop stalled (the timeout itself fired late), not the target
                self.metrics.failures.labels(target.job, "collector_busy").inc()
                return NO_NEWS
            self._failed(state, problem, reason)
            return None
        assert raw is not None  # read: `problem` is set whenever it is not
        try:
            text = decode_text(raw, empty="empty response")
        except FormatError as exc:  # it answered: not unreachable, but nothing to take
            self._bad_page(state, str(exc))
            return NO_NEWS
        if state.up is False:
            self.say(f"clusterpulse: target {target.url} answers again after {state.failures} failed scrapes")
        state.up, state.failures = True, 0
        self.metrics.target_up.labels(target.job, target.labels.get("instance", target.address)).set(1)
        return text

    def _bad_page(self, state: TargetState, problem: str) -> None:
        self.metrics.failures.labels(state.target.job, "bad_page").inc()
        if state.bad_page != problem:
            self.say(f"clusterpulse: target {state.target.url} (job {state.target.job}): not usable: {problem}")
            state.bad_page = problem

    def _failed(self, state: TargetState, problem: str, reason: str) -> None:
        target = state.target
        self.metrics.failures.labels(target.job, reason).inc()
        self.metrics.target_up.labels(target.job, target.labels.get("instance", target.address)).set(0)
        state.failures += 1
        now = time.monotonic()
        if state.up is not False or now - state.logged_at >= REPEAT_LOG_S:
            repeat = f" ({state.failures} failed scrapes in a row)" if state.up is False else ""
            named = (
                f"; reported as unreachable: {', '.join(state.entities)}"
                if state.entities
                else "; it names no node or switch yet (give it a node or switch label, or an inventory line)"
            )
            self.say(f"clusterpulse: target {target.url} (job {target.job}): {problem}{repeat}{named}")
            state.logged_at = now
        state.up = False

    def _convert(self, state: TargetState, text: str, stamp_ms: int) -> list[Batch]:
        target = state.target
        host, switch = self.mapper.hints(target)
        report = InputReport(target.url)
        try:
            batches = _convert_scrape(self.converter, text, host, report, switch, stamp_ms, state.series)
        except (FormatError, ValueError) as exc:  # it answered: not unreachable, but nothing to take
            self._bad_page(state, str(exc))
            return []
        state.bad_page = None
        if not target.honor_timestamps:  # the exposition's own timestamps are ignored, as Prometheus does
            for batch in batches:
                batch.ts_ms = stamp_ms
        kept = []
        for batch in batches:
            try:
                check_entities(batch, self.topo)
                kept.append(batch)
            except InvalidRecord as exc:
                report.skips.add(exc.reason, "batch")
        samples = sum(b.rows() for b in kept)
        self.metrics.samples.labels("scrape").inc(samples)
        entities = tuple(dict.fromkeys(b.source for b in kept if b.kind in ("card", "port")))
        if entities:
            state.entities = entities
        if report.skips and not state.unmapped_said:
            if not kept:  # each such target once, with the fix
                self.say(
                    f"clusterpulse: target {target.url} (job {target.job}): nothing usable: skipped "
                    f"{report.skips.describe()}. Map its hosts to topology names with an inventory line "
                    "(hosts: {<host>: {node: <node>}}, docs/inventory.md) or give the target a node or switch "
                    "label."
                )
                self.metrics.unmapped.labels(target.job).inc()
            elif (target.job, report.skips.describe()) not in self.partial_said:  # the same skips: once a job
                self.partial_said.add((target.job, report.skips.describe()))
                self.say(
                    f"clusterpulse: job {target.job}: {target.url} and maybe others: skipped {report.skips.describe()}"
                )
            state.unmapped_said = True
        return kept


def metric_relabel(configs: tuple) -> Callable[[str, dict[str, str]], tuple[str, dict[str, str]] | None] | None:
    """A target's `metric_relabel_configs` as a function of (name, labels) for its SeriesCache,
    which applies it once per series: None when there are none."""
    if not configs:
        return None

    def relabel(name: str, labels: dict[str, str]) -> tuple[str, dict[str, str]] | None:
        out = apply_relabel(configs, {**labels, "__name__": name})
        if out is None or not out.get("__name__"):
            return None
        return out.pop("__name__"), out

    return relabel


async def _read_all(content: aiohttp.StreamReader, limit: int) -> bytes | None:
    """The whole body, or None if it is longer than `limit` bytes."""
    chunks, size = [], 0
    async for chunk in content.iter_chunked(1 << 16):
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def freeze_when_warm(stop: asyncio.Event, warm_after_s: float) -> None:
    """As the caches of series fill, move what lives on out of the garbage collector's way, until
    `warm_after_s`: full collections over the caches of a 1,280-target fleet paused the loop for
    100-190 ms several times a minute, long enough to time scrapes out (measured)."""
    waited = 0.0
    for after in (2.0, 4.0, 8.0, 16.0, 32.0, 64.0):
        await _wait(stop, after - waited)
        waited = after
        if stop.is_set():
            return
        gc.collect()
        gc.freeze()
        if after >= warm_after_s:
            return


async def _wait(event: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(event.wait(), timeout=seconds)
    except TimeoutError:
        pass
