"""Where a lake lives and whose it is: run directories, the lake manifest, the newest run.

- `clusterpulse run` with the embedded (memory) broker writes each run into its own directory
  under the data directory (`data/run-20261125T120102Z-default/`), so a second run never touches
  the first one's files; `query`, `sql` and `compact` given the data directory use the newest run.
- A lake records whose it is in `_lake.json` (cluster shape, topic prefix). A worker refuses a lake
  that belongs to another cluster unless told to append (`--append`, setting `sink.append`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from pipeline.lake.datasets import NAMES
from pipeline.lake.store import LakeStore

MANIFEST = "_lake.json"
RUN_PREFIX = "run-"


class LakeError(ValueError):
    """The lake cannot be used as asked; the message says why and what to do."""


def new_run_dir(root: str | Path, scenario_name: str, now: datetime | None = None) -> Path:
    """A fresh directory for one `clusterpulse run` under `root` (never an existing one)."""
    now = now or datetime.now(UTC)
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", scenario_name).strip("-") or "run"
    base = Path(root) / f"{RUN_PREFIX}{now:%Y%m%dT%H%M%SZ}-{safe}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    path.mkdir(parents=True)
    return path


def is_lake(path: Path) -> bool:
    return (path / MANIFEST).is_file() or has_data(path)


def has_data(path: Path) -> bool:
    return any((path / d).is_dir() for d in NAMES)


def runs_in(root: Path) -> list[Path]:
    """Run directories under `root`, oldest first."""
    if not root.is_dir():
        return []
    return sorted(
        (p for p in root.iterdir() if p.is_dir() and p.name.startswith(RUN_PREFIX) and is_lake(p)), key=lambda p: p.name
    )


@dataclass
class ResolvedLake:
    path: str
    note: str | None = None  # said to the user when the lake is not the directory they named


def resolve_lake(data_dir: str) -> ResolvedLake:
    """The lake to read for a data directory: itself, or the newest run directory inside it."""
    if "://" in data_dir:
        return ResolvedLake(data_dir)
    root = Path(data_dir)
    if has_data(root):
        return ResolvedLake(data_dir)
    runs = runs_in(root)
    if not runs:
        return ResolvedLake(data_dir)
    newest = runs[-1]
    others = f"; {len(runs) - 1} earlier run(s) there, choose one with --data" if len(runs) > 1 else ""
    return ResolvedLake(str(newest), f"reading {newest} (the newest run in {root}{others})")


def lake_identity(cluster: dict[str, Any], topic_prefix: str, fabric: str | None = None) -> dict[str, Any]:
    """Whose lake this is: the cluster settings and topics; an imported fabric by its file name and
    digest (absent for the synthetic shape, so older lakes stay theirs)."""
    identity = {"cluster": dict(cluster), "topic_prefix": topic_prefix}
    if fabric:
        identity["fabric"] = fabric
    return identity


def claim_lake(data_dir: str, identity: dict[str, Any], append: bool = False, record: bool = True) -> str | None:
    """Make sure this lake is ours (or may be appended to) and, with `record`, write down whose it
    is (a check before anything else can fail, then the record once the worker starts). A lake in
    an object store is checked the same way (`_lake.json` at its prefix).

    Returns a note for the user, or None. Raises LakeError for a lake of another cluster."""
    store = LakeStore(data_dir)
    where = store.uri
    try:
        text = store.read_text(MANIFEST)
    except OSError as exc:
        raise LakeError(f"{where}/{MANIFEST} cannot be read ({exc})") from None
    if text is not None:
        try:
            found = json.loads(text)
        except ValueError as exc:
            raise LakeError(f"{where}/{MANIFEST} cannot be read ({exc}); move it away if this lake is yours") from None
        keys = set(identity) | {"fabric"}
        if {k: found.get(k) for k in keys} == {k: identity.get(k) for k in keys}:
            return None
        if not append:
            raise LakeError(
                f"{where} holds the lake of another cluster ({_describe(found)}; this worker: "
                f"{_describe(identity)}): give another --data, or --append to add to it anyway"
            )
        return f"appending to {where}, which holds the lake of another cluster ({_describe(found)})"
    runs = runs_in(Path(data_dir)) if store.local else []
    if runs and not append:
        root = Path(data_dir)
        raise LakeError(
            f"{root} holds {len(runs)} run director{'y' if len(runs) == 1 else 'ies'} of `clusterpulse run`: "
            f"a lake written beside them would hide them from `query --data {root}`; give this one "
            f"its own --data (e.g. {root / 'worker'})"
        )
    if any(store.is_dir(d) for d in NAMES) and not append:
        raise LakeError(
            f"{where} holds Parquet data of an unknown cluster (no {MANIFEST}): give another "
            "--data, or --append to add to it anyway"
        )
    if not record:
        return None
    manifest = {**identity, "created_at": datetime.now(UTC).isoformat(timespec="seconds")}
    store.write_bytes(MANIFEST, (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode())
    return None


def _describe(identity: dict[str, Any]) -> str:
    c = identity.get("cluster") or {}
    shape = (
        f"{c.get('cards', '?')} cards, {c.get('cards_per_node', '?')} per node, "
        f"{c.get('nodes_per_leaf', '?')} nodes per leaf, {c.get('spines', '?')} spines"
    )
    if identity.get("fabric"):
        shape = f"fabric {identity['fabric']}, {c.get('cards_per_node', '?')} cards per node"
    return f"{shape}, topics {identity.get('topic_prefix', '?')}.*"


def duckdb_connection(location: str | Path = ".") -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB that reads the lake at `location` (`LakeStore.duckdb`)."""
    return LakeStore(location).duckdb()
