import json
import random

import pytest

from pipeline.model.schemas import Alert
from pipeline.notify.delivery import backoff_s, request_for
from pipeline.notify.payloads import alertmanager_webhook_body, idempotency_key
from pipeline.notify.routing import matches
from pipeline.notify.signing import SignatureError, sign, verify
from pipeline.settings import ReceiverSettings


def alert(kind: str = "switch_down", severity: str = "critical", status: str = "firing", **labels: str) -> Alert:
    return Alert(
        kind=kind,
        entity="leaf017",
        status=status,
        starts_at="2026-01-01T00:04:00.000Z",
        ends_at="2026-01-01T00:09:00.000Z" if status == "resolved" else None,
        severity=severity,
        summary="leaf017 down",
        labels=dict(labels),
        evidence={"blast_radius": {"cards": 32}},
    )


def test_signature_verifies_and_refuses_tampering_and_replays() -> None:
    body = b'{"kind":"switch_down"}'
    header = sign(b"s3cret", body, timestamp=1_000)
    verify(b"s3cret", body, header, now=1_010)
    with pytest.raises(SignatureError, match="does not match"):
        verify(b"s3cret", body + b" ", header, now=1_010)
    with pytest.raises(SignatureError, match="does not match"):
        verify(b"other", body, header, now=1_010)
    with pytest.raises(SignatureError, match="a replay"):
        verify(b"s3cret", body, header, now=1_000 + 3_600)
    with pytest.raises(SignatureError, match="missing"):
        verify(b"s3cret", body, None)


def test_routing_by_kind_severity_and_labels() -> None:
    r = ReceiverSettings(
        name="net",
        url="http://x/",
        kinds=("switch_down", "link_down"),
        severities=("critical",),
        labels={"job": "pretrain-a"},
    )
    assert matches(r, alert(job="pretrain-a"))
    assert not matches(r, alert(job="eval-c"))
    assert not matches(r, alert(kind="straggler", job="pretrain-a"))
    assert not matches(r, alert(severity="warning", job="pretrain-a"))
    assert matches(ReceiverSettings(name="all", url="http://x/"), alert(kind="straggler"))


def test_payload_shapes() -> None:
    firing, resolved = alert(), alert(status="resolved")
    assert idempotency_key(firing) != idempotency_key(resolved)
    am = ReceiverSettings(name="am", url="http://am:9093/", type="alertmanager")
    url, body, headers = request_for(am, firing)
    [item] = json.loads(body)
    assert url == "http://am:9093/api/v2/alerts" and item["labels"]["alertname"] == "switch_down"
    assert item["labels"]["entity"] == "leaf017" and item["startsAt"] == firing.starts_at
    assert item["endsAt"] > firing.starts_at and json.loads(item["annotations"]["blast_radius"]) == {"cards": 32}
    [item] = json.loads(request_for(am, resolved)[1])
    assert item["endsAt"] == "2026-01-01T00:09:00.000Z"
    shaped = json.loads(alertmanager_webhook_body(resolved, "ops"))
    assert shaped["version"] == "4" and shaped["status"] == "resolved" and shaped["receiver"] == "ops"
    assert shaped["alerts"][0]["labels"]["alertname"] == "switch_down"
    ours = json.loads(request_for(ReceiverSettings(name="w", url="http://w/"), firing)[1])
    assert ours["id"] == firing.id and ours["evidence"]["blast_radius"] == {"cards": 32}
    assert headers["Idempotency-Key"] == idempotency_key(firing)


def test_backoff_grows_exponentially_with_full_jitter_and_a_cap() -> None:
    r = ReceiverSettings(name="w", url="http://w/", backoff_s=1, max_backoff_s=8)
    rng = random.Random(1)
    for attempt, cap in ((1, 1), (2, 2), (3, 4), (4, 8), (9, 8)):
        draws = [backoff_s(r, attempt, rng) for _ in range(200)]
        assert 0 <= min(draws) and max(draws) <= cap and max(draws) > cap * 0.8


def test_secrets_come_from_environment_or_file_and_stay_out_of_repr(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HOOK_SECRET", "abc")
    r = ReceiverSettings(name="w", url="http://w/", secret_env="HOOK_SECRET")
    assert r.secret() == b"abc" and "abc" not in repr(r)
    path = tmp_path / "secret"
    path.write_text("xyz\n")
    assert ReceiverSettings(name="f", url="http://w/", secret_file=str(path)).secret() == b"xyz"


def test_a_stale_or_future_signature_says_which_way_the_clock_is_off() -> None:
    import pytest as _pytest

    from pipeline.notify.signing import SignatureError, sign, verify

    header = sign(b"k", b"{}", timestamp=1_000_000)
    with _pytest.raises(SignatureError, match=r"signed 400 s ago .*a replay, or the sender's clock is behind"):
        verify(b"k", b"{}", header, now=1_000_400)
    with _pytest.raises(SignatureError, match=r"signed 400 s in the future .*the sender's clock is ahead"):
        verify(b"k", b"{}", header, now=999_600)
