"""The reliability tests' webhook receiver, stopped after the test whatever happens."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pipeline.notify.receiver import WebhookReceiver
from tests.reliability.helpers import signed_receiver


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with signed_receiver() as hook:
        yield hook
