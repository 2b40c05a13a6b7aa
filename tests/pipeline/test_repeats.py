"""The worker's filter of messages a partition holds twice (a producer's retry stored twice)."""

from pipeline.repeats import RepeatFilter


def test_a_repeat_is_found_within_the_window_per_partition() -> None:
    f = RepeatFilter(window=3)
    assert not f.seen("t", 0, b"a") and not f.seen("t", 0, b"b")
    assert f.seen("t", 0, b"a") and f.repeats == 1  # the same bytes again
    assert not f.seen("t", 1, b"a")  # another partition is another stream
    for value in (b"c", b"d", b"e"):
        f.seen("t", 0, value)
    assert not f.seen("t", 0, b"a")  # out of the window: taken as new
    f.forget("t", 1)
    assert not f.seen("t", 1, b"a")
