"""What each system's webhook received, read as pages about entities, and scored per fault.

A page is one POST to the webhook that announces something firing: one Alertmanager notification
(one alert group, however many alerts it holds) or one ClusterPulse alert record. A fault counts as
caught by the first page, after the fault began, that names its target: the card, link, node or
switch of the scenario (for an incumbent alert, the entity its labels point at).
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.topology.synthetic import Topology, UnknownEntity
from producers.scenario import Fault


@dataclass(frozen=True)
class Page:
    at: float  # wall clock, s
    entities: frozenset[str]  # what its firing alerts are about


def incumbent_entity(labels: dict[str, str], topology: Topology) -> str | None:
    """The card, link, node or switch an incumbent alert's labels point at."""
    host, gpu, instance = labels.get("Hostname"), labels.get("gpu"), labels.get("instance", "")
    if host and gpu is not None:
        return f"{host}-card{gpu}"
    if "ifIndex" in labels:
        try:
            return topology.port_link(instance, int(labels["ifIndex"]) - 1)
        except (UnknownEntity, ValueError):
            return None
    return instance or None


def alertmanager_page(body: dict, at: float, topology: Topology) -> Page | None:
    """An Alertmanager webhook notification as a page, or None if nothing in it is firing."""
    if body.get("status") != "firing":
        return None
    entities = {
        incumbent_entity(a.get("labels", {}), topology) for a in body.get("alerts", []) if a.get("status") == "firing"
    }
    entities.discard(None)
    return Page(at, frozenset(entities))  # type: ignore[arg-type]


def clusterpulse_page(body: dict, at: float) -> Page | None:
    if body.get("status") != "firing":
        return None
    return Page(at, frozenset({body.get("entity", "")}))


def related(entity: str, target: str, topology: Topology) -> bool:
    """Whether an alert about `entity` is about the fault at `target` or a symptom of it: the target
    itself, a link with the target at one end, a card of a target node, and for a leaf the nodes and
    cards whose links run to it."""
    ends = entity.split("~")
    hosts = {end.split("-")[0] for end in ends}  # node0001-card3 / node0001-nic3 -> node0001
    return entity == target or target in ends or target in hosts or bool(hosts & _behind(target, topology))


def _behind(target: str, topology: Topology) -> set[str]:
    """Names of the nodes whose host links run to a leaf `target` (none for anything else)."""
    try:
        kind, index = topology.parse_switch(target)
    except UnknownEntity:
        return set()
    return {topology.node_name(int(n)) for n in topology.leaf_host_nodes(index)} if kind == "leaf" else set()


@dataclass(frozen=True)
class FaultResult:
    latency_s: float | None  # fault's first tick produced -> first page naming its target
    pages: int  # pages about the target or its symptoms from the fault's start on


def score(fault: Fault, started_at: float, pages: list[Page], topology: Topology) -> FaultResult:
    """How one system's pages answered one fault that began (its first faulty tick) at `started_at`."""
    after = [p for p in pages if p.at >= started_at]
    caught = [p.at for p in after if fault.target in p.entities]
    about = [p for p in after if any(related(e, fault.target, topology) for e in p.entities)]
    return FaultResult(min(caught) - started_at if caught else None, len(about))
