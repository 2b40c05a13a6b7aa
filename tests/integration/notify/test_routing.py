"""The routing tree end to end: a worker with a `notify.route` sends each alert to the receivers its
routes choose, and nowhere else."""

from __future__ import annotations

import json
import threading

import pytest

from pipeline.notify.receiver import WebhookReceiver
from pipeline.ops.broker import free_port
from tests.builders import card_batch
from tests.integration.notify.test_silences import send_cards, wait_for
from tests.integration.stream.test_worker import alive, worker_env

pytestmark = pytest.mark.broker


def routed_worker(broker, prefix, children, tmp_path, receivers: list, route: dict):  # noqa: ANN001, ANN201
    """A worker with these receivers and route, sent three failed cards: node0001 card1, then
    node0001 card2 a second later, and node0005 card3."""
    env = {
        **worker_env(broker.bootstrap, prefix, tmp_path / "lake"),
        "CLUSTERPULSE_NOTIFY__RECEIVERS": json.dumps(receivers),
        "CLUSTERPULSE_NOTIFY__ROUTE": json.dumps(route),
    }
    assert children.start("topics", env=env, name="topics").wait(timeout=60) == 0
    worker = children.start("worker", env=env, name="worker")
    send_cards(
        broker.bootstrap,
        f"{prefix}.telemetry.card",
        card_batch("node0001", 0, errors=[(1, 79)]),
        card_batch("node0001", 1, errors=[(2, 79)]),
        card_batch("node0005", 0, errors=[(3, 79)]),
    )
    return worker


def test_a_worker_sends_each_alert_where_its_route_says(broker, prefix, children, tmp_path) -> None:
    servers = {name: WebhookReceiver("127.0.0.1", free_port(), echo=None) for name in ("rack", "default", "audit")}
    for server in servers.values():
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        receivers = [{"name": n, "url": f"{s.url}hook", "group_wait_s": 0} for n, s in servers.items()]
        route = {
            "receiver": "default",
            "routes": [
                {"matchers": ["node=~node000[0-1]"], "receiver": "rack", "continue": True},
                {"matchers": ["entity=~.*-card1"], "receiver": "audit"},
            ],
        }
        # node0001 card1: rack, and on: audit; node0001 card2 (a later sample): rack only; node0005: the default
        worker = routed_worker(broker, prefix, children, tmp_path, receivers, route)

        def got() -> dict[str, list[str]] | None:
            seen = {}
            for name, server in servers.items():
                with server.lock:
                    seen[name] = sorted(r["body"]["entity"] for r in server.received)
            return seen if sum(len(v) for v in seen.values()) >= 4 else None

        seen = wait_for("the pages", got, alive_check=alive(children, worker))
        assert seen == {
            "rack": ["node0001-card1", "node0001-card2"],
            "audit": ["node0001-card1"],
            "default": ["node0005-card3"],
        }
    finally:
        for server in servers.values():
            server.shutdown()
            server.server_close()


def test_a_worker_sends_a_group_of_alerts_in_one_notification(broker, prefix, children, tmp_path) -> None:
    server = WebhookReceiver("127.0.0.1", free_port(), echo=None)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        receivers = [{"name": "rack", "url": f"{server.url}hook"}]
        route = {"receiver": "rack", "group_by": ["node"], "group_wait": "3s"}
        worker = routed_worker(broker, prefix, children, tmp_path, receivers, route)  # node0001 twice, node0005

        def got() -> list[dict] | None:
            with server.lock:
                bodies = [r["body"] for r in server.received]
            return bodies if sum(len(b["alerts"]) for b in bodies) >= 3 else None

        bodies = wait_for("the group notifications", got, alive_check=alive(children, worker))
        groups = {b["group_labels"]["node"]: sorted(a["entity"] for a in b["alerts"]) for b in bodies}
        assert groups == {"node0001": ["node0001-card1", "node0001-card2"], "node0005": ["node0005-card3"]}
        assert len(bodies) == 2 and all(b["status"] == "firing" for b in bodies)
    finally:
        server.shutdown()
        server.server_close()
