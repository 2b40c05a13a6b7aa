"""Messages a partition holds twice: a producer that retried a request the broker had stored but not
acknowledged (a broker crash, a network cut) appends the same bytes again. Kafka producers without
idempotence are at-least-once; the worker drops the repeat so the lake holds every sample once.

Repeats of a retried request follow their first copy closely (the producer has one request in
flight per connection), so a bounded window of recent message digests per partition finds them.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

WINDOW = 4096  # recent messages remembered per partition


class RepeatFilter:
    """`seen(partition, value)` is True for a message whose bytes arrived in that partition within
    the last `window` messages."""

    def __init__(self, window: int = WINDOW) -> None:
        self.window = window
        self.recent: dict[tuple[str, int], OrderedDict[bytes, None]] = {}
        self.repeats = 0

    def seen(self, topic: str, partition: int, value: bytes) -> bool:
        digest = hashlib.blake2b(value, digest_size=16).digest()
        recent = self.recent.setdefault((topic, partition), OrderedDict())
        if digest in recent:
            self.repeats += 1
            return True
        recent[digest] = None
        if len(recent) > self.window:
            recent.popitem(last=False)
        return False

    def forget(self, topic: str, partition: int) -> None:
        """The partition moved to another worker (it reads from the committed offset, afresh)."""
        self.recent.pop((topic, partition), None)
