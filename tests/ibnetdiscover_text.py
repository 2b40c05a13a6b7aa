"""Small ibnetdiscover dumps of our own for the tests, in the real tool's two forms (default
topology file with `vendid`/`devid` per node, and `--ports`), each link listed from both ends as a
full capture lists it. The writer is `pipeline.topology.writers`; these are its names as the tests
use them."""

from __future__ import annotations

from pipeline.topology.writers import IbCable as Cable
from pipeline.topology.writers import IbNode as Node
from pipeline.topology.writers import ibnetdiscover_default_form, ibnetdiscover_ports_form, node_guids

__all__ = ["Cable", "Node", "default_form", "guids", "ports_form"]


def guids(nodes: dict[str, Node]) -> dict[str, str]:
    """The node GUID the writer gives each node id."""
    return node_guids(nodes)


def default_form(nodes: dict[str, Node], cables: list[Cable]) -> str:
    return ibnetdiscover_default_form(nodes, cables)


def ports_form(nodes: dict[str, Node], cables: list[Cable]) -> str:
    return ibnetdiscover_ports_form(nodes, cables)
