"""The one format of saved state: detector sets and the correlator both save through it.

A snapshot is zlib-compressed pickle of `(MAGIC, kind, version, fingerprint, state)`:
- `kind` names what saved it (`"detectors"`, `"correlator"`), so one cannot load the other's;
- `version` is the saver's state layout, bumped whenever the layout changes (a class moves or gains
  a field): a snapshot of another version is ignored once and the state starts fresh, never loaded
  half-right;
- `fingerprint` ties the state to what it describes (the cluster's shape for detectors): state of
  another topology is ignored the same way.

It is read back with a restricted unpickler: only classes defined in `pipeline` modules and the
numpy array constructors, so a forged record on the state topic cannot run code. pickle because
detector state is numpy arrays and nested dataclasses; a snapshot of a 10,240-card partition is a
few MB, written in one piece after each Parquet flush.
"""

from __future__ import annotations

import io
import pickle
import zlib
from typing import Any

MAGIC = "clusterpulse-state"
_NUMPY = {
    ("numpy", "dtype"),
    ("numpy", "ndarray"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.multiarray", "scalar"),
}


class _SnapshotUnpickler(pickle.Unpickler):
    """Loads only classes defined in `pipeline` modules and numpy's array constructors."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _NUMPY:
            return super().find_class(module, name)
        if module.startswith("pipeline.") and "." not in name:
            found = super().find_class(module, name)
            if isinstance(found, type) and found.__module__ == module:
                return found
        raise pickle.UnpicklingError(f"a snapshot may not contain {module}.{name}")


def encode_state(kind: str, version: int, state: Any, fingerprint: Any = None) -> bytes:
    """A snapshot of `state`, as `decode_state` reads it back."""
    return zlib.compress(pickle.dumps((MAGIC, kind, version, fingerprint, state), protocol=5), 3)


def decode_state(data: bytes, kind: str, version: int, fingerprint: Any = None) -> Any | None:
    """The state of a snapshot of this kind, version and fingerprint; None for anything else (damaged,
    forged, another kind, an older layout, another topology): the caller starts fresh."""
    try:
        magic, found_kind, found_version, found_fingerprint, state = _SnapshotUnpickler(
            io.BytesIO(zlib.decompress(data))
        ).load()
    except Exception:  # damaged or foreign: pickle, zlib and the classes can raise almost anything
        return None
    if (magic, found_kind, found_version) != (MAGIC, kind, version) or found_fingerprint != fingerprint:
        return None
    return state
