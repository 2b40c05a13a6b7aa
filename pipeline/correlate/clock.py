"""The correlator's event-time clock: the slowest active source's watermark.

A source that has read everything in its partition and whose watermark has not moved for
`CAUGHT_UP_GRACE_S` (a partition with no new data, a stalled job) cannot send anything older and does
not hold the clock; neither does one silent for `idle_s` of wall time (a dead worker). A source that
lags, however long, holds it.
"""

from __future__ import annotations

from collections.abc import Callable

QUIET_RELEASE_S = 5.0  # wall seconds a symptom waits once every source is caught up or idle
# A source that has read all its partition stops holding the clock only after its watermark has not
# moved for this long: a partition being written to (a collector's message a second, a replay) is
# often read to its end for a moment, and must still hold the clock until its next message, also
# when a loaded machine stalls its producer for a few seconds (2 s was seen to be too short in CI:
# a node's links paged ungrouped). It costs latency only where a partition really stops.
CAUGHT_UP_GRACE_S = 5.0


def is_quiet(caught_up: bool, still_s: float, idle_s: float) -> bool:
    """Does a source whose watermark has not moved for `still_s` wall seconds stop holding the clock?"""
    return (caught_up and still_s >= CAUGHT_UP_GRACE_S) or still_s >= idle_s


def slowest_active(
    watermarks: dict[str, int], quiet: Callable[[str], bool], counts: Callable[[str], bool] = lambda src: True
) -> int:
    """The slowest watermark of the sources that are not quiet (-1 before any), of those that
    `counts` if any of them is active. All quiet: nothing moves the clock past the slowest source
    (the quiet release decides)."""
    if not watermarks:
        return -1
    active = {src: w for src, w in watermarks.items() if not quiet(src)}
    chosen = [w for src, w in active.items() if counts(src)] or list(active.values())
    return min(chosen) if chosen else min(watermarks.values())
