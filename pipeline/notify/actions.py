"""Acting on a root cause: drain its node in Slurm (and resume it when it resolves, if asked).

Only a root cause acts, never a consequence (a dead leaf's links, a dead node's stragglers), and only
an alert whose entity names a node: the node itself (`node_down`) or one of its cards. A silenced
alert does not act (planned work). At most `max_per_hour` drains happen in any hour; what is over is
recorded as skipped, not done. Topology names become Slurm node names through the inventory (the
host whose `node` it is), or stay as they are. Resume undoes only a drain clusterpulse made, recorded
in the lake, so a node a person drained stays drained.

Every decision is a log line and a JSON line in `<lake>/_actions/<worker>.jsonl` (an object per
record in an object store; DuckDB:
`SELECT * FROM read_json_auto('<lake>/_actions/*.jsonl')`), read back at start and again whenever
another worker's file changed (the alerts partition moved here from it), to know what was drained
and how many drains the last hour holds.
"""

from __future__ import annotations

import json
import logging
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from pipeline.lake.store import LakeStore
from pipeline.model.schemas import Alert
from pipeline.settings import ActionSettings
from pipeline.topology.protocol import ClusterTopology
from pipeline.topology.synthetic import UnknownEntity

log = logging.getLogger("clusterpulse.actions")
FOLDER = "_actions"
REASON_CHARS = 200  # a drain reason shows in `sinfo -R`; keep it a line

Run = Callable[[list[str]], tuple[int, str]]  # argv -> (exit status, output)


@dataclass
class ActionRecord:
    at: str  # wall time (ISO, UTC)
    action: str  # drain | resume | skipped
    node: str  # the topology name
    slurm_node: str
    alert_id: str
    kind: str
    command: list[str]
    dry_run: bool
    ok: bool
    detail: str  # the command's output, or why it was skipped


def run_command(argv: list[str]) -> tuple[int, str]:
    """Run a command (scontrol) with a time limit; (status, output), never raises."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return 127, f"{type(exc).__name__}: {exc}"
    return done.returncode, (done.stdout + done.stderr).strip()[:500]


def node_of(topology: ClusterTopology, alert: Alert) -> str | None:
    """The topology node an alert is about (a card's node), or None."""
    try:
        if alert.kind == "node_down":
            topology.node_index(alert.entity)
            return alert.entity
        node, _ = topology.parse_card(alert.entity)
        return topology.node_name(node)
    except UnknownEntity:
        return None


class Actions:
    """Decides and runs the actions of the alerts it is given, in order."""

    def __init__(
        self,
        rules: tuple[ActionSettings, ...],
        topology: ClusterTopology,
        slurm_names: dict[str, str],
        lake: str | None,
        writer: str,
        dry_run: bool = False,
        run: Run = run_command,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.rules, self.topology, self.slurm_names = rules, topology, slurm_names
        self.dry_run, self.run, self.clock = dry_run, run, clock
        self.store = LakeStore(lake) if lake else None
        self.writer = writer
        self.drained: dict[str, str] = {}  # slurm node -> the alert id whose drain this was
        self.acting: dict[str, set[str]] = {}  # slurm node we drained -> its firing acting alerts
        self.drain_times: list[float] = []
        self._seen: dict[str, tuple[int, int]] = {}  # other writers' record files: (size, mtime) when read
        self._read_back()

    def take(self, alert: Alert) -> list[ActionRecord]:
        """The actions this alert state change causes (recorded), run unless dry."""
        if alert.root_cause or alert.silenced_by:
            return []
        self._refresh()
        out = []
        for rule in self.rules:
            if alert.kind not in rule.on:
                continue
            node = node_of(self.topology, alert)
            if node is None:
                continue
            slurm_node = self.slurm_names.get(node, node)
            if alert.status == "firing" and rule.slurm.drain:
                out.append(self._drain(rule, alert, node, slurm_node))
            elif alert.status == "resolved" and slurm_node in self.drained:
                still = self.acting.setdefault(slurm_node, set())
                still.discard(alert.id)
                if rule.slurm.resume_when_resolved and not still:  # the node's last acting alert is over
                    out.append(self._resume(rule, alert, node, slurm_node))
        return [r for r in out if r is not None]

    def _drain(self, rule: ActionSettings, alert: Alert, node: str, slurm_node: str) -> ActionRecord:
        reason = f"clusterpulse: {alert.summary}"[:REASON_CHARS]
        command = [rule.slurm.scontrol, "update", f"NodeName={slurm_node}", "State=DRAIN", f"Reason={reason}"]
        now = self.clock()
        self.drain_times = [t for t in self.drain_times if now - t < 3600]
        if slurm_node in self.drained:
            self.acting.setdefault(slurm_node, set()).add(alert.id)  # resumed only once this one is over too
            return self._record("skipped", alert, node, slurm_node, command, True, "already drained by clusterpulse")
        if len(self.drain_times) >= rule.max_per_hour:
            why = f"{len(self.drain_times)} drains in the last hour: at the limit of {rule.max_per_hour} (max_per_hour)"
            return self._record("skipped", alert, node, slurm_node, command, True, why)
        ok, detail = self._execute(command)
        if ok:
            self.drained[slurm_node] = alert.id
            self.acting[slurm_node] = {alert.id}
            self.drain_times.append(now)
        return self._record("drain", alert, node, slurm_node, command, ok, detail)

    def _resume(self, rule: ActionSettings, alert: Alert, node: str, slurm_node: str) -> ActionRecord:
        command = [rule.slurm.scontrol, "update", f"NodeName={slurm_node}", "State=RESUME"]
        ok, detail = self._execute(command)
        if ok:
            del self.drained[slurm_node]
            self.acting.pop(slurm_node, None)
        return self._record("resume", alert, node, slurm_node, command, ok, detail)

    def _execute(self, command: list[str]) -> tuple[bool, str]:
        if self.dry_run:
            return True, "dry run: not run"
        status, output = self.run(command)
        return status == 0, output or f"exit status {status}"

    def _record(
        self, action: str, alert: Alert, node: str, slurm_node: str, command: list[str], ok: bool, detail: str
    ) -> ActionRecord:
        at = datetime.fromtimestamp(self.clock(), UTC).isoformat(timespec="milliseconds")
        record = ActionRecord(at, action, node, slurm_node, alert.id, alert.kind, command, self.dry_run, ok, detail)
        level = logging.WARNING if action != "skipped" and ok else logging.ERROR if not ok else logging.INFO
        log.log(level, "action %s %s (%s) for %s %s: %s", action, slurm_node, node, alert.kind, alert.entity, detail)
        if self.store is not None:
            try:
                self.store.append_lines(FOLDER, self.writer, json.dumps(asdict(record)) + "\n")
            except OSError as exc:  # the log line above stays; the lake may be full
                log.error("could not record the action in %s/%s: %s", self.store.uri, FOLDER, exc)
        return record

    def _others(self) -> dict[str, tuple[int, int]]:
        """(size, mtime) of the other writers' record files (objects, in an object store)."""
        if self.store is None:
            return {}
        mine = (f"{self.writer}.jsonl", f"{self.writer}+")
        return {
            f.path: (f.size, f.mtime_ns)
            for f in self.store.files(FOLDER, ".jsonl", recursive=False)
            if not f.name.startswith(mine)
        }

    def _refresh(self) -> None:
        """Read every record again when another worker has acted since (the alerts partition moved
        here from it): its drains are resumed and counted against the hourly cap here too."""
        if self._others() != self._seen:
            self.drained, self.acting, self.drain_times = {}, {}, []
            self._read_back()

    def _read_back(self) -> None:
        """What was drained before, and when (every worker's file in the lake)."""
        self._seen = self._others()
        if self.store is None:
            return
        entries = []
        for line in self.store.read_lines(FOLDER):
            try:
                entries.append(json.loads(line))
            except ValueError:
                continue  # a line cut by a crash
        for entry in sorted(entries, key=lambda e: str(e.get("at", ""))):
            try:
                if entry["dry_run"] or not entry["ok"]:
                    continue
                node = entry["slurm_node"]
                if entry["action"] == "drain":
                    self.drained[node] = entry["alert_id"]
                    self.acting[node] = {entry["alert_id"]}
                    self.drain_times.append(datetime.fromisoformat(entry["at"]).timestamp())
                elif entry["action"] == "skipped" and node in self.drained:
                    self.acting[node].add(entry["alert_id"])
                elif entry["action"] == "resume":
                    self.drained.pop(node, None)
                    self.acting.pop(node, None)
            except (ValueError, KeyError, TypeError, AttributeError):
                continue  # not a record of ours
