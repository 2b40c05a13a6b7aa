"""What a worker takes of a well-formed batch: message times and row values (pipeline.stream.intake)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from pipeline.model.schemas import InvalidRecord, bundle
from pipeline.settings import IntakeSettings
from pipeline.stream.intake import admit, check_time
from tests.builders import START_MS, card_batch, port_batch, step_batch

RULES = IntakeSettings()
NOW = START_MS + 3_600_000


@pytest.mark.parametrize(
    "ts, newest, why",
    [
        (1_767_225_600, -1, "seconds sent as milliseconds"),
        (NOW + 601_000, -1, "601 s ahead of this worker's clock (intake.future_grace_s = 600)"),
        (START_MS, START_MS + 3_601_000, "3601 s older than its partition's newest sample"),
    ],
)
def test_times_no_sample_can_have_are_refused_with_the_reason(ts: int, newest: int, why: str) -> None:
    batch = card_batch()
    batch.ts_ms = ts
    with pytest.raises(InvalidRecord, match=re.escape(why)):
        check_time(batch, NOW, newest, RULES)


@pytest.mark.parametrize("ts, newest", [(NOW + 599_000, -1), (START_MS, START_MS + 3_599_000), (START_MS, -1)])
def test_a_skewed_clock_and_late_data_within_bounds_are_taken(ts: int, newest: int) -> None:
    batch = card_batch()
    batch.ts_ms = ts
    check_time(batch, NOW, newest, RULES)


def test_nan_gauges_are_not_reported_values_and_kept() -> None:
    batch = card_batch()
    batch.columns["temp_c"][3] = np.nan
    assert admit(batch, NOW, -1, RULES) == (batch, None)


def test_rows_with_impossible_values_are_dropped_and_named_the_rest_processed() -> None:
    rack = bundle([card_batch("node0000"), card_batch("node0001", errors=[(2, 79)]), card_batch("node0002")], "rack0")
    rack.columns["temp_c"][9] = np.inf  # node0001 card 1
    rack.columns["ecc_dbe"][10] = 2**64 - 3  # node0001 card 2: -3 written as unsigned
    rack.columns["util"][17] = -np.inf  # node0002 card 1
    kept, why = admit(rack, NOW, -1, RULES)
    assert why == (
        "3 rows with values no sample can have (node0001 card 1: temp_c = inf; node0001 card 2: "
        "ecc_dbe = 18446744073709551613; node0002 card 1: util = -inf); the other 21 rows were processed"
    )
    assert [(source, counts["rows"], counts["events"]) for source, counts in kept.parts] == [
        ("node0000", 8, 0),
        ("node0001", 6, 1),
        ("node0002", 7, 0),
    ]
    assert kept.rows() == 21 and list(kept.columns["err_code"]) == [79]
    assert [b.rows() for b in kept.split()] == [8, 6, 7]


def test_a_source_left_with_nothing_is_dropped_and_a_message_with_nothing_is_refused() -> None:
    rack = bundle([card_batch("node0000"), card_batch("node0001")], "rack0")
    rack.columns["power_w"][8:] = np.inf
    kept, _ = admit(rack, NOW, -1, RULES)
    assert [source for source, _ in kept.parts] == ["node0000"]
    single = card_batch()
    single.columns["power_w"][:] = np.inf
    with pytest.raises(InvalidRecord, match="8 rows with values no sample can have .*and 5 more"):
        admit(single, NOW, -1, RULES)


def test_port_states_and_step_times_that_cannot_be() -> None:
    ports = port_batch(ports=4)
    ports.columns["oper_up"][1] = 7
    kept, why = admit(ports, NOW, -1, RULES)
    assert kept.rows() == 3 and why.startswith("1 row with values no sample can have (leaf000 port 1: oper_up = 7)")
    steps = step_batch("node0000", "pretrain", 0, [0, 1, 2], 5, [1.0, np.nan, -0.5])
    kept, why = admit(steps, NOW, -1, RULES)
    assert list(kept.columns["rank"]) == [0]
    assert "node0000 rank 1 step 5: compute_s = nan; node0000 rank 2 step 5: compute_s = -0.5" in why
