"""Detectors: plain Python / numpy over telemetry batches, no Kafka, no wall clock.

`DetectorSet` routes each batch to the detectors of its kind and returns the findings (alert
state changes before correlation). The Faust worker keeps one set per topic partition (so a
partition's state can be saved and restored on its own); the offline scorer and the tests use one
set for everything.
"""

from __future__ import annotations

from pipeline.detect.activity import NodeActivity
from pipeline.detect.card_failure import CardFailureDetector
from pipeline.detect.ecc import EccDetector
from pipeline.detect.links import LinkDetector
from pipeline.detect.repeats import RepeatWindow
from pipeline.detect.silence import NodeDownDetector, SwitchDownDetector
from pipeline.detect.straggler import StragglerDetector
from pipeline.detect.thermal import ThermalDetector
from pipeline.model.schemas import Alert, Batch
from pipeline.settings import DetectSettings
from pipeline.state.codec import decode_state, encode_state
from pipeline.topology.protocol import ClusterTopology

KINDS = ("card", "port", "step")
SNAPSHOT_VERSION = 11  # 3: link state in flat arrays over the ports of the switches seen; 4: per-card and


# per-rank usual offsets (thermal, straggler), degraded links by the ends that saw errors; 5: disabled ports;
# 6: the partition's window of recent message digests (pipeline.detect.repeats); 7: ports seen up, port names;
# 8: the one snapshot codec (pipeline.state.codec), classes in their packages (pipeline.detect.repeats);
# 9: each rank's newest step (a step is judged once every rank reporting has passed it); 10: nodes' busy
# flags (pipeline.detect.activity), jobs' step durations; 11: jobs' collective timeouts not yet taken
class DetectorSet:
    """Every detector of the given batch kinds."""

    def __init__(
        self, topology: ClusterTopology, settings: DetectSettings | None = None, kinds: tuple[str, ...] = KINDS
    ) -> None:
        s = settings or DetectSettings()
        self.topology = topology
        self.detectors: dict[str, list] = {}
        self.straggler: StragglerDetector | None = None
        self.activity: NodeActivity | None = None
        self.repeats = RepeatWindow()  # the partition's recent messages, to drop a producer's repeat
        if "card" in kinds:
            self.detectors["card"] = [
                CardFailureDetector(topology, s.card_failure),
                EccDetector(topology, s.ecc),
                ThermalDetector(topology, s.thermal),
                NodeDownDetector(topology, s.node_down),
            ]
            self.activity = NodeActivity(topology)
        if "port" in kinds:
            self.detectors["port"] = [LinkDetector(topology, s.link), SwitchDownDetector(topology, s.switch_down)]
        if "step" in kinds:
            self.straggler = StragglerDetector(topology, s.straggler)
            self.detectors["step"] = [self.straggler]

    def push(self, batch: Batch, stream: int = 0) -> list[Alert]:
        """Findings caused by one batch (one source's, or a collector's of many sources); `stream`
        names its ordered source (e.g. the partition). Detectors marked `multi_source` judge a
        collector's batch whole; the others get it source by source."""
        out: list[Alert] = []
        parts: list[Batch] | None = None
        reachable = batch.reachable()  # what the sources reported; who could not be reached is news to few
        if batch.kind == "card" and self.activity is not None and reachable is not None:
            self.activity.push(reachable)
        for detector in self.detectors[batch.kind]:
            if getattr(detector, "judges_unreachable", False):
                out += detector.push(batch, stream)
                continue
            if reachable is None:
                continue
            if reachable.parts is None or getattr(detector, "multi_source", False):
                out += detector.push(reachable, stream)
                continue
            if parts is None:
                parts = reachable.split()
            for part in parts:
                out += detector.push(part, stream)
        return out

    def take_placements(self) -> dict[str, list[str]]:
        """Nodes newly seen running each job since the last call (for blast radius)."""
        if self.straggler is None:
            return {}
        new = self.straggler.new_placements
        self.straggler.new_placements = {}
        return {job: [self.topology.node_name(n) for n in sorted(nodes)] for job, nodes in new.items()}

    def take_progress(self) -> dict[str, dict]:
        """Where each job that reported since the last call stands (`StragglerDetector.take_progress`)."""
        return self.straggler.take_progress() if self.straggler is not None else {}

    def take_timeouts(self) -> dict[str, list[list]]:
        """Each job's collective timeouts since the last call (`StragglerDetector.take_timeouts`)."""
        return self.straggler.take_timeouts() if self.straggler is not None else {}

    def take_activity(self) -> dict[str, tuple[bool, int]]:
        """Nodes whose cards turned busy or idle since the last call (`NodeActivity.take`)."""
        return self.activity.take() if self.activity is not None else {}

    # ---- state that survives a restart ---------------------------------------------------------
    def snapshot(self) -> bytes:
        """Every detector's state (`pipeline.state.codec`), for this cluster shape only."""
        state = (self.detectors, self.straggler, self.activity, self.repeats)
        return encode_state("detectors", SNAPSHOT_VERSION, state, fingerprint=self.topology.shape)

    def restore(self, data: bytes) -> bool:
        """Take the state of a snapshot of the same topology; False (state unchanged) otherwise."""
        state = decode_state(data, "detectors", SNAPSHOT_VERSION, fingerprint=self.topology.shape)
        if state is None:
            return False
        detectors, straggler, activity, repeats = state
        if set(detectors) != set(self.detectors):
            return False
        self.detectors, self.straggler, self.activity, self.repeats = detectors, straggler, activity, repeats
        return True
