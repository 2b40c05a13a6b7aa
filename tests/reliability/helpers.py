"""What the reliability tests share: a small scenario with faults of every layer, what the simulator
sends for it, the offline run's alerts, waiting for a worker to catch up, and the lake checks."""

from __future__ import annotations

import collections
import contextlib
import functools
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from pipeline.lake.store import LakeStore
from pipeline.notify.receiver import WebhookReceiver
from pipeline.ops.broker import free_port
from pipeline.ops.processes import consumer_lag

CLUSTER = {"cards": 256, "cards_per_node": 8, "nodes_per_leaf": 8, "spines": 2}
SCENARIO = {
    "name": "kill-me",
    "seed": 17,
    "duration_s": 150,
    "cluster": CLUSTER,
    "noise": {"nic_reports": 1},
    "jobs": [
        {"name": "pretrain", "first_node": 0, "nodes": 20, "step_s": 1.0},
        {"name": "finetune", "first_node": 20, "nodes": 10, "step_s": 0.8},
    ],
    "faults": [
        {"kind": "card_failure", "target": "node0003-card2", "start_s": 20, "duration_s": 40},
        {"kind": "switch_failure", "target": "leaf005", "start_s": 50, "duration_s": 30},
        {"kind": "link_degradation", "target": "node0025-nic1~leaf007", "start_s": 90, "severity": 0.4},
        {"kind": "node_failure", "target": "node0030", "start_s": 100, "duration_s": 30},
    ],
}
HOOK_SECRET = "hook-secret-5b1e0c"  # the webhook's signing secret: must never show in a log


@contextlib.contextmanager
def signed_receiver(port: int = 0) -> Iterator[WebhookReceiver]:
    """A webhook receiver that checks HOOK_SECRET's signature, serving until the block ends."""
    receiver = WebhookReceiver("127.0.0.1", port or free_port(), echo=None, secret=HOOK_SECRET.encode())
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    try:
        yield receiver
    finally:
        receiver.shutdown()
        receiver.server_close()


# what identifies a sample in each dataset: a row twice under the same key is a duplicate
KEYS = {
    "card": "node, card, ts",
    "card_events": "node, card, ts, code",
    "step": "job, rank, step",
    "port": "switch, port, ts",
}


@functools.lru_cache(maxsize=4)
def sent_rows(path: Path) -> dict[str, int]:
    """Rows per lake dataset of everything the simulator sends for the scenario."""
    from pipeline.model.schemas import decode_batch
    from producers.scenario import load_scenario
    from producers.simulator import Simulator

    rows: collections.Counter = collections.Counter()
    for _, messages in Simulator(load_scenario(path)).ticks():
        for m in messages:
            batch = decode_batch(m.value)
            rows[batch.kind] += batch.rows()
            if batch.kind == "card":
                rows["card_events"] += len(batch.columns["err_code"])
    return dict(rows)


@functools.lru_cache(maxsize=4)
def offline_alerts(path: Path) -> set[tuple[str, str, str, str]]:
    from pipeline.eval.evaluate import run_offline
    from pipeline.settings import load_settings
    from producers.scenario import load_scenario

    scenario = load_scenario(path)
    alerts = run_offline(scenario, load_settings({}, environ={}).for_scenario(scenario))
    return {(a.kind, a.entity, a.status, _ms(a.starts_at)) for a in alerts}


def _ms(iso: str) -> int:
    from datetime import datetime

    return round(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


def worker_env(bootstrap: str, prefix: str, data: Path | str, receiver_url: str) -> dict[str, str]:
    return {
        "CLUSTERPULSE_BOOTSTRAP": bootstrap,
        "CLUSTERPULSE_TOPIC_PREFIX": prefix,
        "CLUSTERPULSE_GROUP_ID": f"{prefix}-workers",
        "CLUSTERPULSE_DATA_DIR": str(data),
        "CLUSTERPULSE_PARTITIONS": "4",
        "CLUSTERPULSE_SINK__FLUSH_SECONDS": "1",
        "CLUSTERPULSE_LOG_LEVEL": "info",
        "HOOK_SECRET": HOOK_SECRET,
        "CLUSTERPULSE_NOTIFY__RECEIVERS": json.dumps(
            [{"name": "ops", "url": f"{receiver_url}hook", "secret_env": "HOOK_SECRET"}]
        ),
        **{f"CLUSTERPULSE_CLUSTER__{k.upper()}": str(v) for k, v in CLUSTER.items()},
    }


def wait_caught_up(
    bootstrap: str,
    prefix: str,
    worker,
    log: callable,
    why: str,  # noqa: ANN001
    timeout_s: float = 180,
) -> None:
    """Until the worker has committed every telemetry message, finding and alert; then a quiet
    moment for the correlator to release what it holds and the notifier to deliver it."""
    topics = [f"{prefix}.telemetry.{k}" for k in ("card", "port", "step")] + [f"{prefix}.findings"]
    deadline = time.monotonic() + timeout_s
    while consumer_lag(bootstrap, f"{prefix}-workers", topics) or consumer_lag(
        bootstrap, f"{prefix}-workers", [f"{prefix}.alerts"]
    ):
        assert worker.poll() is None, log(worker)[-3000:]
        assert time.monotonic() < deadline, f"the worker did not catch up {why}"
        time.sleep(1.0)
    time.sleep(8)


def check_lake(data: Path | str, scenario: Path, why: str, extra: dict[str, int] | None = None) -> dict[str, int]:
    """Every sample the simulator sent is in Parquet exactly once (plus `extra` rows per dataset
    that a test sent besides), and the alerts are the offline run's; returns the rows per dataset.
    `data`: a directory or an object store's URI."""
    expected = collections.Counter(sent_rows(scenario))
    expected.update(extra or {})
    found = {}
    store = LakeStore(data)
    con = store.duckdb()
    for dataset, key in KEYS.items():
        files = f"read_parquet('{store.uri}/{dataset}/**/*.parquet', hive_partitioning = true)"
        rows, distinct = con.execute(f"select count(*), count(distinct ({key})) from {files}").fetchone()
        assert rows == distinct, f"{dataset}: {rows - distinct} duplicate rows {why}"
        assert rows == expected[dataset], f"{dataset}: {rows} rows in Parquet, {expected[dataset]} expected {why}"
        found[dataset] = rows
    lake = con.execute(
        f"select kind, entity, status, epoch_ms(starts_at) from read_parquet('{store.uri}/alerts/**/*.parquet')"
    )
    found_alerts, offline = set(lake.fetchall()), offline_alerts(scenario)
    assert found_alerts == offline, (
        f"{why}: only in the lake {sorted(found_alerts - offline)}, only offline {sorted(offline - found_alerts)}"
    )
    return found


def check_pages(received: list[dict], scenario: Path, why: str) -> None:
    """Every root-cause page arrived, and each idempotency key always with the same body."""
    pages = [(entry["headers"].get("Idempotency-Key"), entry["body"]) for entry in received]
    bodies = collections.defaultdict(list)
    for key, body in pages:
        bodies[key].append(body)
    assert all(key for key, _ in pages) and all(b == found[0] for found in bodies.values() for b in found), why
    roots = {
        (a, e)
        for a, e, s, _ in offline_alerts(scenario)
        if s == "firing" and a in ("switch_down", "node_down", "card_failed")
    }
    paged = {(b["kind"], b["entity"]) for _, b in pages if b.get("status") == "firing"}
    assert roots <= paged, f"not paged: {roots - paged} {why}"


def check_no_secret(logs: list[Path], *secrets: str) -> None:
    """No log of the processes the test ran shows a secret."""
    for log in logs:
        text = log.read_text(errors="replace") if log.exists() else ""
        for secret in secrets:
            assert secret not in text, f"{log.name} shows a secret"
