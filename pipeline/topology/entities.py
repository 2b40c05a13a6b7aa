"""Does a batch name only entities its topology has? The check producers and the worker run before
a batch goes on."""

from __future__ import annotations

import weakref

import numpy as np

from pipeline.model.schemas import Batch, InvalidRecord
from pipeline.topology.protocol import ClusterTopology
from pipeline.topology.synthetic import UnknownEntity

MAX_KNOWN = 4096  # source lists remembered per topology (a collector sends the same list every tick)
# topology -> (kind, sources, row counts) of a multi-source message -> each row's port limit (None for nodes)
_known: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def check_entities(batch: Batch, topology: ClusterTopology) -> None:
    """Raise InvalidRecord if the batch (any of its sources) names an entity the topology does not have."""
    if batch.parts is not None:
        if _known_sources(batch, topology):
            return
        if _card_overflow(batch, topology) or (batch.schema.source == "switch" and _port_overflow(batch, topology)):
            for part in batch.split():  # the rare case: name the first bad source
                check_entities(part, topology)
        try:
            if batch.schema.source == "node":
                for source, _ in batch.parts:
                    topology.node_index(source)
        except UnknownEntity as exc:
            raise InvalidRecord(f"unknown entity: {exc}", "unknown_entity") from None
        _remember(batch, topology)
        return
    try:
        if batch.schema.source == "node":
            topology.node_index(batch.source)
            if batch.kind == "card":
                for name in ("card", "err_card"):
                    cards = batch.columns[name]
                    if len(cards) and int(cards.max()) >= topology.cards_per_node:
                        raise UnknownEntity(
                            f"{batch.source} has no card {int(cards.max())} (cards_per_node={topology.cards_per_node})"
                        )
        else:
            ports = batch.columns["port"]
            limit = topology.switch_ports(batch.source)
            if len(ports) and int(ports.max()) >= limit:
                raise UnknownEntity(f"{batch.source} has no port {int(ports.max())} ({limit} ports)")
    except UnknownEntity as exc:
        raise InvalidRecord(f"unknown entity: {exc}", "unknown_entity") from None


def _port_overflow(batch: Batch, topology: ClusterTopology) -> bool:
    """Does any switch of this (multi-source) port batch name a port it does not have, or is any
    switch unknown? Whole-batch numpy: one comparison against each row's switch's port count."""
    try:
        limits = [topology.switch_ports(source) for source, _ in batch.parts or ()]
    except UnknownEntity:
        return True
    counts = [c["rows"] for _, c in batch.parts or ()]
    ports = batch.columns["port"]
    return len(ports) != sum(counts) or bool(np.any(ports >= np.repeat(np.asarray(limits, np.int64), counts)))


def _card_overflow(batch: Batch, topology: ClusterTopology) -> bool:
    """Does any card index of this (multi-source) card batch exceed the node's cards?"""
    if batch.kind != "card":
        return False
    return any(
        len(batch.columns[name]) and int(batch.columns[name].max()) >= topology.cards_per_node
        for name in ("card", "err_card")
    )


def _known_sources(batch: Batch, topology: ClusterTopology) -> bool:
    """Are this message's sources known good (checked in an earlier message with the same sources
    and row counts), and its rows within them (ports below each switch's count, cards below the
    node's)? Two numpy comparisons instead of a look-up per source."""
    try:
        cache = _known.get(topology)
    except TypeError:  # a topology that cannot be weakly referenced: check every time
        return False
    key = (batch.kind, *batch.layout())  # a host's port batch has the node names of its card batch
    if cache is None or key not in cache:
        return False
    limits = cache[key]  # None: node sources
    if limits is not None and (len(batch.columns["port"]) != len(limits) or (batch.columns["port"] >= limits).any()):
        return False
    return not _card_overflow(batch, topology)


def _remember(batch: Batch, topology: ClusterTopology) -> None:
    """A multi-source message whose every source the topology has."""
    try:
        cache = _known.setdefault(topology, {})
    except TypeError:
        return
    if len(cache) >= MAX_KNOWN:
        cache.clear()
    sources, counts = batch.layout()
    limits = None
    if batch.schema.source == "switch":
        limits = np.repeat(np.asarray([topology.switch_ports(s) for s in sources], np.int64), counts)
    cache[(batch.kind, sources, counts)] = limits
