"""Detector state that survives a worker restart: one `DetectorSet` per telemetry partition,
saved to the compacted state topic after each Parquet flush and read back when a worker is
assigned the partition (the same idea as a Faust table's changelog, at partition granularity so
that numpy state is saved in one piece).

A restored partition re-reads the records after its last committed offset; detectors ignore
samples older than what they have judged, so the replay changes nothing.
"""

from __future__ import annotations

import logging
from typing import Any

from pipeline.detect import DetectorSet
from pipeline.ops.topic_reader import read_to_end
from pipeline.settings import DetectSettings
from pipeline.topology.protocol import ClusterTopology

log = logging.getLogger("clusterpulse.state")


def state_key(topic: str, partition: int) -> str:
    return f"{topic}/{partition}"


class PartitionDetectors:
    """The detector sets of the telemetry partitions this worker owns."""

    def __init__(self, topology: ClusterTopology, settings: DetectSettings, kind_of_topic: dict[str, str]) -> None:
        self.topology = topology
        self.settings = settings
        self.kind_of_topic = kind_of_topic
        self.sets: dict[tuple[str, int], DetectorSet] = {}
        self.restored = 0

    def snapshot(self, topic: str, partition: int) -> bytes | None:
        found = self.sets.get((topic, partition))
        return found.snapshot() if found is not None else None

    def drop(self, topic: str, partition: int) -> None:
        self.sets.pop((topic, partition), None)

    def load(self, snapshots: dict[str, bytes], assigned: list[tuple[str, int]]) -> int:
        """Restore the assigned partitions that have a snapshot; return how many were restored."""
        restored = 0
        for topic, partition in assigned:
            if topic not in self.kind_of_topic:
                continue
            data = snapshots.get(state_key(topic, partition))
            fresh = DetectorSet(self.topology, self.settings, kinds=(self.kind_of_topic[topic],))
            if data is not None and fresh.restore(data):
                restored += 1
            elif data is not None:
                log.warning("ignored the saved state of %s[%d]: another topology or version", topic, partition)
            self.sets[(topic, partition)] = fresh
        self.restored += restored
        return restored


def read_snapshots(bootstrap: str, topic: str, timeout_s: float = 20.0) -> dict[str, bytes]:
    """The latest snapshot per key in the state topic (read to its end)."""
    latest: dict[str, bytes] = {}

    def keep(record: Any) -> None:
        if record.key is not None:
            latest[record.key.decode()] = record.value

    if not read_to_end(bootstrap, topic, "clusterpulse-state-reader", keep, timeout_s):
        log.error("reading detector state from %s timed out; partitions start fresh", topic)
    return latest
