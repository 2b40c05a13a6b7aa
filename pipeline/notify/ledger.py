"""The notification ledger: every final delivery outcome as a JSON line in the lake.

Each worker (and each `alerts replay`) appends to its own file `<lake>/_notify/<writer>.jsonl`, so
what was delivered, what failed and the dead-lettered notifications themselves outlive the broker:
`clusterpulse run` counts them per receiver at its end, and `clusterpulse alerts replay --data LAKE`
resends what is still undelivered after the run's memory broker is gone. DuckDB reads it too:
``SELECT * FROM read_json_auto('data/<run>/_notify/*.jsonl')``.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.lake.store import LakeStore
from pipeline.model.schemas import Alert

FOLDER = "_notify"
BACKLOG_LINES = 10_000  # lines held while the lake's disk refuses them (older ones are dropped past this)

log = logging.getLogger("clusterpulse.notify")


def record(
    receiver: str,
    alert: Alert,
    delivered: bool,
    attempts: int,
    status: int | None,
    error: str | None,
    key: str,
    replay: bool = False,
) -> dict[str, Any]:
    """One ledger line; an undelivered one carries the whole alert so it can be resent."""
    line: dict[str, Any] = {
        "at": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "receiver": receiver,
        "key": key,
        "alert_id": alert.id,
        "kind": alert.kind,
        "entity": alert.entity,
        "status": alert.status,
        "delivered": delivered,
        "attempts": attempts,
        "http_status": status,
        "error": error,
        "replay": replay,
    }
    if not delivered:
        line["alert"] = json.loads(alert.to_json())
    return line


class Ledger:
    """Appends outcome lines to this writer's file (an object of its own per append in an object
    store, `LakeStore.append_lines`; thread-safe)."""

    def __init__(self, lake: str, writer: str) -> None:
        self.store: LakeStore | None = LakeStore(lake) if lake else None
        self.writer = writer
        self.path = f"{self.store.uri}/{FOLDER}/{writer}.jsonl" if self.store else None
        self._lock = threading.Lock()
        self._backlog: list[str] = []  # lines a full disk refused, written with the next line

    def append(self, line: dict[str, Any]) -> None:
        if self.store is None:
            return
        with self._lock:
            failed_before = bool(self._backlog)
            self._backlog = self._backlog[-BACKLOG_LINES:] + [json.dumps(line, sort_keys=True)]
            text = ("\n" if failed_before else "") + "".join(f"{entry}\n" for entry in self._backlog)
            try:  # after a failure, a half-written line ends on its own (reading skips it)
                self.store.append_lines(FOLDER, self.writer, text)
            except OSError as exc:
                if not failed_before:
                    log.error(
                        "cannot append to the notify ledger %s (%s): keeping up to %d lines in memory "
                        "until it can (older ones dropped); undelivered alerts are on the notify dead-letter topic too",
                        self.path,
                        exc,
                        BACKLOG_LINES,
                    )
                return
            self._backlog = []


def read(lake: str | Path) -> list[dict[str, Any]]:
    """Every ledger line of a lake, oldest first (unreadable lines are skipped)."""
    lines = []
    for text in LakeStore(lake).read_lines(FOLDER):
        try:
            entry = json.loads(text)
        except ValueError:
            continue  # an empty line, or one cut by a crash
        if isinstance(entry, dict) and "receiver" in entry and "key" in entry:
            lines.append(entry)
    return sorted(lines, key=lambda e: str(e.get("at", "")))


@dataclass
class ReceiverTally:
    delivered: int = 0
    failed: int = 0
    replayed: int = 0

    @property
    def lost(self) -> int:
        return self.failed


def tally(lines: list[dict[str, Any]]) -> dict[str, ReceiverTally]:
    """Per receiver: notifications delivered, and failed = still undelivered (after any replay)."""
    final: dict[tuple[str, str], dict[str, Any]] = {}
    counts: dict[str, ReceiverTally] = defaultdict(ReceiverTally)
    for entry in lines:
        final[(entry["receiver"], entry["key"])] = entry
        if entry.get("replay") and entry.get("delivered"):
            counts[entry["receiver"]].replayed += 1
    for (receiver, _), entry in final.items():
        if entry.get("delivered"):
            counts[receiver].delivered += 1
        else:
            counts[receiver].failed += 1
    return dict(counts)


def undelivered(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The latest line of each (receiver, notification) that is still not delivered."""
    final: dict[tuple[str, str], dict[str, Any]] = {}
    for entry in lines:
        final[(entry["receiver"], entry["key"])] = entry
    return [e for e in final.values() if not e.get("delivered") and isinstance(e.get("alert"), dict)]
