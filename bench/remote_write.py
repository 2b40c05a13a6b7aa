"""Benchmark: Prometheus remote_write into one `clusterpulse collect`.

    .venv/bin/python -m bench.remote_write [--rounds 20] [--clients 2]

The embedded broker and one collector (remote_write only, the built-in 10,240-card topology).
The requests are what a Prometheus scraping the served fleet sends: every node's dcgm-exporter
page and every switch's if_mib page of `--rounds` consecutive seconds of the simulated cluster,
with the target labels (`instance`, `job`, `node` / `switch`), in requests of up to 2,000 series
(Prometheus's `max_samples_per_send`), encoded beforehand. `--clients` threads post them as fast
as the collector answers. Prints samples/s accepted, the collector's CPU per second and peak RSS,
and the rows it produced.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from bench.collect import scrape_metrics, total
from bench.pipeline import proc_stats
from pipeline.model.schemas import decode_batch
from pipeline.ops.broker import EmbeddedBroker, create_topics, free_port, stop_process
from pipeline.settings import load_settings
from producers.adapters.prometheus import Sample, parse
from producers.collect.remote_write import encode_write_request
from producers.scenario import default_scenario
from producers.served_fleet import ClusterExporters
from producers.simulator import Simulator

ROOT = Path(__file__).resolve().parents[1]
PER_REQUEST = 2000


def requests(rounds: int) -> tuple[list[bytes], list[int]]:
    """Encoded WriteRequests of `rounds` seconds of the served fleet, and the samples in each."""
    scenario = default_scenario()
    exporters = ClusterExporters(scenario.topology, lost_cards="drop")
    bodies, counts = [], []
    base_ms = int(time.time() * 1000)
    for i, (_, messages) in enumerate(Simulator(scenario).ticks()):
        if i >= rounds:
            break
        exporters.apply([decode_batch(m.value) for m in messages])
        samples: list[Sample] = []
        targets = [("node", n, "gpu") for n in scenario.topology.node_names]
        if i == 0 or i % 10 == 0:  # switches every 10 s
            targets += [("switch", s, "switch") for s in scenario.topology.switch_names]
        for kind, name, job in targets:
            text = exporters.scrape(kind, name)
            if text is None:
                continue
            extra = {"instance": f"{name}:9400", "job": job, kind: name}
            samples += [
                Sample(s.name, {**s.labels, **extra}, s.value, base_ms + i * 1000) for s in parse(text.decode()).samples
            ]
        for start in range(0, len(samples), PER_REQUEST):
            chunk = samples[start : start + PER_REQUEST]
            bodies.append(encode_write_request(chunk))
            counts.append(len(chunk))
    return bodies, counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20, help="seconds of the cluster to send (default 20)")
    parser.add_argument("--clients", type=int, default=2, help="posting threads (default 2)")
    args = parser.parse_args()
    print("encoding the requests ...", file=sys.stderr, flush=True)
    bodies, counts = requests(args.rounds)
    with (
        tempfile.TemporaryDirectory(prefix="clusterpulse-bench-rw-") as tmp_dir,
        EmbeddedBroker(log_path=Path(tmp_dir) / "broker.log") as broker,
    ):
        tmp = Path(tmp_dir)
        settings = load_settings({"bootstrap": broker.bootstrap}, environ={})
        create_topics(settings)
        listen = f"127.0.0.1:{free_port()}"
        collector = subprocess.Popen(
            [sys.executable, "-m", "pipeline", "collect", "--bootstrap", broker.bootstrap, "--listen", listen],
            cwd=ROOT,
            stdout=open(tmp / "collect.log", "wb"),
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.time() + 30
            while time.time() < deadline:
                try:
                    scrape_metrics(listen)
                    break
                except OSError:
                    time.sleep(0.2)
            before = scrape_metrics(listen)
            cpu0 = proc_stats(collector.pid)[0]
            index, lock, accepted, refused = [0], threading.Lock(), [0], [0]

            def post() -> None:
                while True:
                    with lock:
                        i = index[0]
                        index[0] += 1
                    if i >= len(bodies):
                        return
                    request = urllib.request.Request(
                        f"http://{listen}/api/v1/write",
                        data=bodies[i],
                        method="POST",
                        headers={"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf"},
                    )
                    with urllib.request.urlopen(request, timeout=60) as resp:
                        ok = resp.status == 204
                    with lock:
                        (accepted if ok else refused)[0] += counts[i] if ok else 1

            started = time.time()
            threads = [threading.Thread(target=post) for _ in range(args.clients)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            elapsed = time.time() - started
            cpu, rss = proc_stats(collector.pid)
            time.sleep(6)  # the last scrapes settle and are converted
            after = scrape_metrics(listen)
        finally:
            stop_process(collector, timeout_s=10)
    rows = total(after, "clusterpulse_collect_samples_total", source="remote_write") - total(
        before, "clusterpulse_collect_samples_total", source="remote_write"
    )
    print(
        f"remote_write benchmark, {time.strftime('%Y-%m-%d')}, command: .venv/bin/python -m bench.remote_write "
        f"{' '.join(sys.argv[1:])}"
    )
    print(
        f"| {len(bodies):,} requests, {sum(counts):,} samples ({args.rounds} s of 10,240 cards and the fabric) | "
        f"{accepted[0] / elapsed:,.0f} samples/s accepted in {elapsed:.1f} s ({refused[0]} refused) | collector CPU "
        f"{(cpu - cpu0) / elapsed:.2f} core, peak RSS {rss:,.0f} MiB | {rows:,.0f} card and port rows out |"
    )


if __name__ == "__main__":
    main()
