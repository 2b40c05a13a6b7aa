"""A symptom held back: it waits `group_wait_s` of event time for its root cause to fire."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.model.schemas import Alert


def iso_ms(iso: str) -> int:
    """Milliseconds since the epoch of an alert's ISO time."""
    return int(np.datetime64(iso.replace("Z", ""), "ms").astype(np.int64))


@dataclass
class Held:
    alert: Alert
    release_ms: int  # event time at which it goes out, grouped under a root or on its own
    held_at: float  # wall time it was held (the quiet release when the input stops)
    resolved: Alert | None = None  # it resolved while held: both go out together
