"""Benchmark: wall time from a GPU falling off a scraped node's page to the page at the webhook.

    .venv/bin/python -m bench.collect_latency

The embedded broker, a worker paging a webhook receiver in this process, the served 10,240-card
fleet (the built-in scenario: node1100's card 6 is lost at t = 20 s, node1200's card 0 at 45 s) and
one collector at 1 s. This process polls the two nodes' pages every 50 ms and notes when each card
leaves its page, then when its `card_failed` reaches the webhook.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from bench.latency import TimedReceiver, start_pipeline
from pipeline.ops.broker import EmbeddedBroker, free_port, stop_process
from producers.scenario import default_scenario
from producers.served_fleet import free_port_block

ROOT = Path(__file__).resolve().parents[1]
CARDS = {"node1100-card6": (1100, 6), "node1200-card0": (1200, 0)}


def main() -> None:
    scenario = default_scenario()
    topo = scenario.topology
    receiver = TimedReceiver("127.0.0.1", free_port(), echo=None)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    with (
        tempfile.TemporaryDirectory(prefix="clusterpulse-collect-latency-") as tmp_dir,
        EmbeddedBroker(log_path=Path(tmp_dir) / "broker.log") as broker,
    ):
        tmp = Path(tmp_dir)
        procs: list[subprocess.Popen] = []
        try:
            _, config, worker = start_pipeline(broker, tmp, "collect-latency", receiver.url + "hook", scenario)
            procs.append(worker)
            base = free_port_block(topo.nodes + len(topo.switch_names))
            scrape = tmp / "scrape.yml"
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "pipeline",
                        "simulate",
                        "--serve-exporters",
                        "--port-base",
                        str(base),
                        "--scrape-config",
                        str(scrape),
                    ],
                    cwd=ROOT,
                    stdout=open(tmp / "fleet.log", "wb"),
                    stderr=subprocess.STDOUT,
                )
            )
            while not scrape.exists():
                time.sleep(0.1)
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "pipeline",
                        "--config",
                        str(config),
                        "collect",
                        "--config",
                        str(scrape),
                        "--listen",
                        f"127.0.0.1:{free_port()}",
                    ],
                    cwd=ROOT,
                    stdout=open(tmp / "collect.log", "wb"),
                    stderr=subprocess.STDOUT,
                )
            )
            lost: dict[str, float] = {}
            paged: dict[str, float] = {}
            deadline = time.time() + 90
            while time.time() < deadline and len(paged) < len(CARDS):
                for card, (node, index) in CARDS.items():
                    if card in lost:
                        continue
                    try:
                        page = urllib.request.urlopen(f"http://127.0.0.1:{base + node}/metrics", timeout=2).read()
                    except OSError:
                        continue
                    if b"DCGM_FI_DEV_GPU_UTIL" in page and f'gpu="{index}"'.encode() not in page:
                        lost[card] = time.time()
                for at, _, body in list(receiver.arrivals):
                    for alert in body.get("alerts", [body]) if isinstance(body, dict) else []:
                        if alert.get("kind") == "card_failed" and alert.get("entity") in CARDS:
                            paged.setdefault(alert["entity"], at)
                time.sleep(0.05)
        finally:
            for proc in reversed(procs):
                stop_process(proc, timeout_s=10)
    print(f"collect latency, {time.strftime('%Y-%m-%d')}, command: .venv/bin/python -m bench.collect_latency")
    for card in CARDS:
        if card in lost and card in paged:
            print(f"| {card} | left its page at +0 s | paged at the webhook after {paged[card] - lost[card]:.1f} s |")
        else:
            print(f"| {card} | lost seen: {card in lost} | paged: {card in paged} |")


if __name__ == "__main__":
    main()
