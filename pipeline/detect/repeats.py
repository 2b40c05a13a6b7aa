"""Messages a partition holds twice: a producer that retried a request the broker had stored but not
acknowledged (a broker crash, a network cut) appends the same bytes again. Kafka producers without
idempotence are at-least-once; the worker drops the repeat so the lake holds every sample once.

Repeats of a retried request follow their first copy closely (the producer has one request in
flight per connection), so a bounded window of recent message digests per partition finds them.
The window is part of the partition's saved detector state, so a repeat whose first copy came
before a worker restart or a rebalance is found too; what it remembers from at or after the offset
a restarted worker resumes at is forgotten, since those messages are read again.
"""

from __future__ import annotations

import hashlib

WINDOW = 4096  # recent messages remembered per partition
SAVED = 1024  # of which the newest are kept in the saved state (a retried request is a few messages)


class RepeatWindow:
    """`seen(value, offset)` is True for a message whose bytes the partition held at an earlier
    offset within the last `window` messages."""

    def __init__(self, window: int = WINDOW) -> None:
        self.window = window
        self.recent: dict[bytes, int] = {}  # digest -> offset, oldest first
        self.repeats = 0

    def seen(self, value: bytes, offset: int) -> bool:
        digest = hashlib.blake2b(value or b"", digest_size=16).digest()
        first = self.recent.get(digest)
        if first is not None and first < offset:
            self.repeats += 1
            return True
        if first is None:
            self.recent[digest] = offset
            if len(self.recent) > self.window:
                del self.recent[next(iter(self.recent))]
        return False

    def resume_at(self, offset: int) -> None:
        """The partition is read again from `offset`: those messages are not repeats of themselves."""
        self.recent = {d: o for d, o in self.recent.items() if o < offset}

    def __getstate__(self) -> dict:
        newest = list(self.recent.items())[-SAVED:]
        return {"window": self.window, "recent": dict(newest), "repeats": self.repeats}
