"""Blast radius: what an ungrouped alert takes down (cards, nodes, links, jobs), and its words."""

from __future__ import annotations

from collections.abc import Callable

from pipeline.model.schemas import Alert
from pipeline.topology.protocol import ClusterTopology
from pipeline.topology.synthetic import UnknownEntity


def blast_radius(topo: ClusterTopology, alert: Alert, jobs_of: Callable[[set[str]], list[str]]) -> dict | None:
    """What an ungrouped alert takes down; None when it is only about itself."""
    try:
        if alert.kind == "switch_down":
            radius = topo.switch_radius(alert.entity)
            nodes = radius.pop("node_names")
            return {**radius, "jobs": jobs_of(set(nodes))}
        if alert.kind == "node_down":
            return {
                "cards": topo.cards_per_node,
                "nodes": 1,
                "links": topo.node_links(topo.node_index(alert.entity)),
                "jobs": jobs_of({alert.entity}),
            }
        if alert.kind in ("card_failed", "card_ecc", "thermal_throttle", "straggler"):
            node, _ = topo.parse_card(alert.entity)
            impact = "stalled" if alert.kind == "card_failed" else "slowed"
            return {
                "cards": 1,
                "nodes": 0,
                "links": 0,
                "jobs": jobs_of({topo.node_name(node)}),
                "impact": impact,
            }
        if alert.kind == "job_hang":  # the job's own cards, none of them dead
            nodes = int(alert.evidence.get("nodes", 0))
            return {"cards": nodes * topo.cards_per_node, "nodes": nodes, "links": 0, "jobs": [alert.entity]}
        if alert.kind in ("link_down", "link_flapping"):
            what, a, b = topo.resolve_link(alert.entity)
            if what == "host":  # every card its NIC serves (several where the host has fewer NICs)
                cards = topo.link_cards(alert.entity)
                return {
                    "cards": len(cards),
                    "nodes": 0,
                    "links": 1,
                    "jobs": jobs_of({topo.node_name(a)}),
                    **({"card_names": cards} if cards else {}),
                }
            return {"cards": 0, "nodes": 0, "links": 1, "jobs": []}
    except UnknownEntity:
        return None
    return None


def describe(radius: dict) -> str:
    parts = []
    if radius.get("cards"):
        rail = f" (rail {radius['rail']})" if "rail" in radius else ""
        parts.append(f"{_count(radius['cards'], 'card')}{rail}")
    if radius.get("nodes"):
        parts.append(_count(radius["nodes"], "node"))
    if radius.get("links"):
        parts.append(_count(radius["links"], "link"))
    jobs = radius.get("jobs") or []
    text = "affects " + ", ".join(parts) if parts else "affects no cards"
    if jobs:
        text += f"; jobs {radius.get('impact', 'stalled')}: {', '.join(jobs)}"
    return text


def _count(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"
