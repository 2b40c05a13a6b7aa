"""The worker's window of a partition's recent messages, to drop a producer's retry stored twice."""

import pickle

from pipeline.detect import DetectorSet
from pipeline.detect.repeats import SAVED, RepeatWindow
from tests.builders import small_topology


def test_a_repeat_is_the_same_bytes_at_a_later_offset_within_the_window() -> None:
    w = RepeatWindow(window=3)
    assert not w.seen(b"a", 0) and not w.seen(b"b", 1)
    assert w.seen(b"a", 2) and w.repeats == 1  # the same bytes again
    assert not w.seen(b"a", 0)  # the same message read again (a restart) is not its own repeat
    for offset, value in enumerate((b"c", b"d", b"e"), 3):
        w.seen(value, offset)
    assert not w.seen(b"a", 6)  # out of the window: taken as new


def test_the_window_survives_a_restart_without_what_is_read_again() -> None:
    """Saved with the partition's detector state; a worker resuming at offset 7 forgets what it
    remembered from 7 on (read again) and still knows the messages before."""
    before = DetectorSet(small_topology(), kinds=("port",))
    for offset in range(10):
        before.repeats.seen(f"message {offset}".encode(), offset)
    after = DetectorSet(small_topology(), kinds=("port",))
    assert after.restore(before.snapshot())
    after.repeats.resume_at(7)
    assert after.repeats.seen(b"message 3", 12)  # stored before the restart, repeated after it
    assert not after.repeats.seen(b"message 8", 8)  # read again after the restart: processed
    assert not after.repeats.seen(b"message 8", 8)


def test_the_saved_window_keeps_the_newest_messages() -> None:
    w = RepeatWindow()
    for offset in range(SAVED + 10):
        w.seen(str(offset).encode(), offset)
    restored = pickle.loads(pickle.dumps(w))
    assert len(restored.recent) == SAVED and min(restored.recent.values()) == 10
