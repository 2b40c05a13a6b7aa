"""The findings message between the telemetry agents and the correlator."""

import pytest

from pipeline.model.findings import (
    Finding,
    Placement,
    Timeouts,
    Watermarks,
    decode_findings_record,
    encode_finding,
    encode_placement,
    encode_timeouts,
    encode_watermarks,
)
from pipeline.model.schemas import Alert, InvalidRecord


def test_each_record_reads_back_as_it_was_sent() -> None:
    alert = Alert(
        kind="card_failed",
        entity="node0003-card2",
        status="firing",
        starts_at="2026-01-01T00:00:15.000Z",
        severity="critical",
        summary="failed",
    )
    assert decode_findings_record(encode_finding(alert, "card/4")) == Finding(alert, "card/4")
    assert decode_findings_record(encode_placement("job-a", ["node0001"])) == Placement("job-a", ["node0001"])
    marks = {"card/0": (1_767_225_600_000, True), "step/1": (-1, False)}
    assert decode_findings_record(encode_watermarks(marks)) == Watermarks(marks)
    assert decode_findings_record(b'{"t": "watermarks", "marks": {"card/0": 5}}') == Watermarks({"card/0": (5, False)})
    timeouts = {"gpt": [[1_767_225_600_000, 3, 1580, 600.06], [1_767_225_600_000, 4, 0, None]]}
    assert decode_findings_record(encode_timeouts(timeouts)) == Timeouts(
        {"gpt": [(1_767_225_600_000, 3, 1580, 600.06), (1_767_225_600_000, 4, 0, None)]}
    )


@pytest.mark.parametrize(
    "value",
    [
        b"\xff\x00",
        b"[]",
        b'{"t": "gossip"}',
        b'{"t": "finding", "src": "card/0", "alert": {"kind": 1}}',
        b'{"t": "timeouts", "jobs": {"gpt": [[1, 2]]}}',
    ],
)
def test_anything_else_is_refused_with_a_reason(value: bytes) -> None:
    with pytest.raises(InvalidRecord) as refused:
        decode_findings_record(value)
    assert refused.value.reason.startswith("not a findings record: ") and refused.value.reason_class == "not_a_finding"
