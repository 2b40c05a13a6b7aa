"""Detectors: plain Python / numpy over telemetry batches, no Kafka, no wall clock.

`DetectorSet` routes each batch to the detectors of its kind and returns the findings (alert
state changes before correlation). The Faust worker, the offline scorer and the tests all use it.
"""

from __future__ import annotations

from collections.abc import Callable

from pipeline.detect.card_failure import CardFailureDetector
from pipeline.detect.ecc import EccDetector
from pipeline.detect.links import LinkDetector
from pipeline.detect.silence import NodeDownDetector, SwitchDownDetector
from pipeline.detect.straggler import StragglerDetector
from pipeline.detect.thermal import ThermalDetector
from pipeline.schemas import Alert, Batch
from pipeline.settings import DetectSettings
from pipeline.topology import Topology


class DetectorSet:
    """Every detector, keyed by the batch kind it reads."""

    def __init__(self, topology: Topology, settings: DetectSettings | None = None) -> None:
        s = settings or DetectSettings()
        self.topology = topology
        self.straggler = StragglerDetector(topology, s.straggler)
        self.by_kind: dict[str, list[Callable[[Batch, int], list[Alert]]]] = {
            "card": [CardFailureDetector(topology, s.card_failure).push, EccDetector(topology, s.ecc).push,
                     ThermalDetector(topology, s.thermal).push, NodeDownDetector(topology, s.node_down).push],
            "port": [LinkDetector(topology, s.link).push, SwitchDownDetector(topology, s.switch_down).push],
            "step": [self.straggler.push],
        }

    def push(self, batch: Batch, stream: int = 0) -> list[Alert]:
        """Findings caused by one batch; `stream` names its ordered source (e.g. the partition)."""
        out: list[Alert] = []
        for detect in self.by_kind[batch.kind]:
            out += detect(batch, stream)
        return out

    def take_placements(self) -> dict[str, list[str]]:
        """Nodes newly seen running each job since the last call (for blast radius)."""
        new = self.straggler.new_placements
        self.straggler.new_placements = {}
        return {job: [self.topology.node_name(n) for n in sorted(nodes)] for job, nodes in new.items()}
