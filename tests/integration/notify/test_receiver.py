import json
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from pipeline.notify.receiver import WebhookReceiver


@pytest.fixture
def receiver(tmp_path: Path):
    server = WebhookReceiver("127.0.0.1", 0, tmp_path / "hooks.jsonl", echo=None)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def post(url: str, data: bytes) -> int:
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_records_json_posts_and_rejects_non_json(receiver: WebhookReceiver, tmp_path: Path) -> None:
    assert post(receiver.url + "hook", json.dumps({"status": "firing"}).encode()) == 200
    assert post(receiver.url + "hook", b"{not json") == 400
    with urllib.request.urlopen(receiver.url + "received", timeout=5) as resp:
        [entry] = json.loads(resp.read())
        assert (entry["path"], entry["body"]) == ("/hook", {"status": "firing"})
    lines = (tmp_path / "hooks.jsonl").read_text().splitlines()
    assert [json.loads(line)["body"] for line in lines] == [{"status": "firing"}]
    with urllib.request.urlopen(receiver.url + "healthz", timeout=5) as resp:
        assert resp.status == 200
