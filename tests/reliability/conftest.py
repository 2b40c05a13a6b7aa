"""The reliability tests' webhook receiver and local S3 server, stopped after the test whatever happens."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from pipeline.notify.receiver import WebhookReceiver
from pipeline.ops.broker import free_port, stop_process
from tests.reliability.helpers import signed_receiver


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with signed_receiver() as hook:
        yield hook


S3_SECRET = "aws-secret-9d2c71"  # the local S3 server's secret key: must never show in a log
BUCKETS = ("tansu", "lake")  # the broker's storage; the Parquet lake


@pytest.fixture
def s3(tmp_path, monkeypatch) -> Iterator[str]:  # noqa: ANN001
    """A local S3 server (moto's) with the buckets `tansu` and `lake`; the AWS_* environment that
    the broker and pyarrow read points at it. Yields its endpoint URL."""
    boto3 = pytest.importorskip("boto3", reason="moto[server] (test dependency) is not installed")
    port = free_port()
    log = open(tmp_path / "s3.log", "wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        endpoint = f"http://127.0.0.1:{port}"
        env = {
            "AWS_ENDPOINT": endpoint,
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": S3_SECRET,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ALLOW_HTTP": "true",
        }
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id="test",
            aws_secret_access_key=S3_SECRET,
            region_name="us-east-1",
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                client.list_buckets()
                break
            except Exception:  # not listening yet
                assert server.poll() is None and time.monotonic() < deadline, "the S3 server did not start"
                time.sleep(0.3)
        for bucket in BUCKETS:
            client.create_bucket(Bucket=bucket)
        yield endpoint
    finally:
        stop_process(server, timeout_s=10)
        log.close()
