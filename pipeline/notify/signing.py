"""HMAC-SHA256 signatures over a webhook body with a timestamp, so a receiver can check who sent it
and refuse replays: header ``X-ClusterPulse-Signature: t=<unix seconds>,v1=<hex digest>`` where the
digest is HMAC-SHA256(secret, f"{t}." + body)."""

from __future__ import annotations

import hashlib
import hmac
import time

HEADER = "X-ClusterPulse-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"
TOLERANCE_S = 300


class SignatureError(ValueError):
    """A signature that does not verify; the message says why."""


def sign(secret: bytes, body: bytes, timestamp: int | None = None) -> str:
    t = int(time.time()) if timestamp is None else int(timestamp)
    digest = hmac.new(secret, f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


def verify(
    secret: bytes, body: bytes, header: str | None, now: float | None = None, tolerance_s: float = TOLERANCE_S
) -> None:
    """Raise SignatureError unless `header` signs `body` with `secret` within the tolerance."""
    if not header:
        raise SignatureError(f"missing {HEADER} header")
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        t = int(parts["t"])
        given = parts["v1"]
    except (KeyError, ValueError):
        raise SignatureError(f"malformed {HEADER} header") from None
    now = time.time() if now is None else now
    age = now - t
    if age > tolerance_s:
        raise SignatureError(
            f"signed {age:.0f} s ago (timestamp {t}; tolerance {tolerance_s:g} s): a replay, "
            "or the sender's clock is behind"
        )
    if -age > tolerance_s:
        raise SignatureError(
            f"signed {-age:.0f} s in the future (timestamp {t}; tolerance {tolerance_s:g} s): "
            "the sender's clock is ahead"
        )
    expected = hmac.new(secret, f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, given):
        raise SignatureError("signature does not match the body")
