"""Small builders for test batches (names and shapes as the simulator makes them)."""

from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.model.schemas import CARD, PORT, Alert, Batch
from pipeline.topology.synthetic import ClusterShape, Topology

SMALL = ClusterShape(cards=64, cards_per_node=8, nodes_per_leaf=4, spines=2)
START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def card_batch(
    node: str = "node0000",
    t_s: float = 0.0,
    cards: list[int] | None = None,
    errors: list[tuple[int, int]] = (),
    cards_per_node: int = 8,
) -> Batch:
    """A healthy card batch; `errors` = [(card, code)] events."""
    idx = np.arange(cards_per_node) if cards is None else np.asarray(cards)
    n = len(idx)
    cols = {c.name: np.zeros(n, c.dtype) for c in CARD.group_columns("rows")}
    cols["card"] = idx.astype("<u1")
    cols["util"][:] = 95.0
    cols["temp_c"][:] = 60.0
    cols["err_card"] = np.array([c for c, _ in errors], "<u1")
    cols["err_code"] = np.array([code for _, code in errors], "<u4")
    return Batch(kind="card", source=node, ts_ms=START_MS + int(t_s * 1000), columns=cols)


def port_batch(switch: str = "leaf000", t_s: float = 0.0, ports: int = 6) -> Batch:
    cols = {c.name: np.zeros(ports, c.dtype) for c in PORT.columns}
    cols["port"] = np.arange(ports, dtype="<u2")
    cols["oper_up"][:] = 1
    return Batch(kind="port", source=switch, ts_ms=START_MS + int(t_s * 1000), columns=cols)


def small_topology() -> Topology:
    return Topology(SMALL)


def step_batch(
    node: str, job: str, t_s: float, ranks: list[int], step: int, compute: list[float] | float, wait: float = 0.1
) -> Batch:
    from pipeline.model.schemas import STEP

    n = len(ranks)
    comp = np.broadcast_to(np.asarray(compute, dtype="<f4"), (n,)).copy()
    cols = {
        "rank": np.asarray(ranks, "<u4"),
        "step": np.full(n, step, "<u4"),
        "compute_s": comp,
        "wait_s": np.full(n, wait, "<f4"),
    }
    assert set(cols) == {c.name for c in STEP.group_columns("rows")}
    return Batch(kind="step", source=node, ts_ms=START_MS + int(t_s * 1000), columns=cols, job=job)


def counters_batch(
    switch: str, t_s: float, ports: int, crc: np.ndarray | None = None, oper: np.ndarray | None = None
) -> Batch:
    """A port batch with given cumulative CRC counters and oper status."""
    b = port_batch(switch, t_s, ports)
    if crc is not None:
        b.columns["crc_errors"] = np.asarray(crc, "<u8")
    if oper is not None:
        b.columns["oper_up"] = np.asarray(oper, "<u1")
    return b


def alert(
    kind: str, entity: str, status: str = "firing", ends_at: str = "2026-12-02T06:05:00.000Z", **fields: Any
) -> Alert:
    """A critical alert that started 2026-12-02T06:00Z (resolved at `ends_at`); `fields` override
    the rest (summary, labels, evidence, root_cause, ...)."""
    return Alert(
        **{
            "kind": kind,
            "entity": entity,
            "status": status,
            "starts_at": "2026-12-02T06:00:00.000Z",
            "ends_at": ends_at if status == "resolved" else None,
            "severity": "critical",
            "summary": f"{kind} {entity}",
            **fields,
        }
    )


def link_alert(entity: str, switch: str = "leaf003", status: str = "firing", kind: str = "link_down") -> Alert:
    """A firing (or resolved) link alert on `switch`, as the correlator publishes one."""
    return alert(kind, entity, status, labels={"switch": switch})


def leaf_down_alert() -> Alert:
    """leaf007 down as the correlator publishes it: its blast radius in evidence and summary."""
    return alert(
        "switch_down",
        "leaf007",
        summary="leaf007 down; affects 32 cards, 32 links",
        labels={"switch": "leaf007"},
        evidence={"blast_radius": {"cards": 32, "nodes": 0, "links": 32, "jobs": ["pretrain-a"]}},
    )
