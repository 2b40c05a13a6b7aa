"""Root-cause rules as data: which alerts can explain which, most specific first.

A symptom (`SYMPTOMS`) is held for its cause; a root (`ROOT_KINDS`) is remembered, also after it
resolves, so a symptom released late still finds the cause of its time. `CAUSES` maps an alert kind to
the (kind, entity) pairs that would explain an alert of that kind on that entity.
"""

from __future__ import annotations

from collections.abc import Callable

from pipeline.model.schemas import Alert
from pipeline.topology.protocol import ClusterTopology
from pipeline.topology.synthetic import UnknownEntity

SYMPTOMS = frozenset({"link_down", "link_flapping", "straggler", "job_hang"})
ROOT_KINDS = frozenset(
    {"switch_down", "node_down", "thermal_throttle", "card_ecc", "card_failed", "link_down", "link_degraded"}
)
# roots that stall every job with a rank behind them (`Correlator._stalling`): a job_hang's causes
STALLING_KINDS = frozenset({"switch_down", "node_down", "card_failed", "link_down"})
# telemetry whose detectors find root kinds (step telemetry finds stragglers, symptoms only): the
# sources a held symptom's cause can still come from, so the ones that hold the release clock
CAUSE_SOURCE_KINDS = frozenset({"card", "port"})

Causes = Callable[[ClusterTopology, str], list[tuple[str, str]]]


def _link_serving(topo: ClusterTopology, card: str) -> list[tuple[str, str]]:
    link = topo.card_link(card)  # the link of the NIC serving the card (maybe shared by several cards)
    return [("link_down", link), ("link_degraded", link)] if link else []


CAUSES: dict[str, Causes] = {
    # a dead switch or node takes its links down
    "link_down": lambda topo, link: topo.link_causes(link),
    # a link that went down and now flaps: one page (the link_down), the flapping grouped under it
    "link_flapping": lambda topo, link: topo.link_causes(link) + [("link_down", link)],
    # a straggler's card is hot, or the link of its NIC is down or degraded
    "straggler": lambda topo, card: [("thermal_throttle", card)] + _link_serving(topo, card),
    # a card failing after its ECC errors
    "card_failed": lambda topo, card: [("card_ecc", card)],
}


def explanations(topo: ClusterTopology, alert: Alert) -> list[tuple[str, str]]:
    """(kind, entity) of alerts that would explain this one, most specific first."""
    causes = CAUSES.get(alert.kind)
    if causes is None:
        return []
    try:
        return causes(topo, alert.entity)
    except UnknownEntity:
        return []
