"""The one snapshot format: a snapshot loads only as what saved it, at its version and topology."""

import os
import pickle
import zlib

from pipeline.correlate.correlator import Correlator
from pipeline.state.codec import MAGIC, decode_state, encode_state
from pipeline.topology.synthetic import ClusterShape, Topology


def test_a_snapshot_loads_only_as_its_kind_version_and_fingerprint() -> None:
    data = encode_state("detectors", 8, {"a": [1, 2]}, fingerprint=("shape", 64))
    assert decode_state(data, "detectors", 8, fingerprint=("shape", 64)) == {"a": [1, 2]}
    assert decode_state(data, "correlator", 8, fingerprint=("shape", 64)) is None
    assert decode_state(data, "detectors", 7, fingerprint=("shape", 64)) is None
    assert decode_state(data, "detectors", 8, fingerprint=("shape", 128)) is None
    assert decode_state(b"not zlib", "detectors", 8) is None


def test_a_forged_snapshot_cannot_run_code() -> None:
    class Evil:
        def __reduce__(self):  # noqa: ANN204
            return (os.system, ("echo pwned",))

    forged = zlib.compress(pickle.dumps((MAGIC, "detectors", 8, None, Evil())))
    assert decode_state(forged, "detectors", 8) is None


def test_the_correlator_keeps_the_offset_of_the_last_finding_its_state_includes() -> None:
    topo = Topology(ClusterShape(64, 8, 4, 2))
    saved = Correlator(topo, clock=lambda: 0.0).snapshot(upto_offset=41)
    after = Correlator(topo, clock=lambda: 0.0)
    assert after.restore(saved) and after.restored_offset == 41
    before_codec = (41).to_bytes(8, "big", signed=True) + zlib.compress(pickle.dumps({}))  # version 1's layout
    assert not Correlator(topo).restore(before_codec)
