"""`clusterpulse collect` against real processes: a served fleet, a broker, a worker, a Prometheus."""

from __future__ import annotations

import http.server
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from bench.latency import TimedReceiver, start_pipeline
from pipeline.eval.evaluate import run_offline
from pipeline.model.schemas import decode_batch
from pipeline.model.topics import CARD_TELEMETRY
from pipeline.ops.broker import free_port, stop_process
from pipeline.settings import load_settings
from producers.adapters.prometheus import Sample
from producers.collect.remote_write import encode_write_request
from producers.scenario import load_scenario, parse_scenario
from producers.served_fleet import free_port_block
from tests.conftest import ROOT, clean_env, run_cli

pytestmark = pytest.mark.broker

# 32 nodes, 36 switches; one fault of each kind the issue names, apart enough to page on their own
SCENARIO = {
    "name": "served",
    "seed": 3,
    "duration_s": 75,
    "noise": {"profile": "realistic"},
    "cluster": {"cards": 256, "cards_per_node": 8, "nodes_per_leaf": 8, "spines": 4},
    "jobs": [{"name": "train", "first_node": 0, "nodes": 32, "step_s": 1.0}],
    "faults": [
        {"kind": "card_failure", "target": "node0005-card2", "start_s": 15},
        {"kind": "node_failure", "target": "node0020", "start_s": 25},
        {"kind": "switch_failure", "target": "leaf002", "start_s": 35},
        {"kind": "link_down", "target": "node0009-nic3~leaf013", "start_s": 45},
    ],
}
EXPECTED = {
    ("card_failed", "node0005-card2"),
    ("node_down", "node0020"),
    ("switch_down", "leaf002"),
    ("link_down", "node0009-nic3~leaf013"),
}


def start(args: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline", *args],
        cwd=ROOT,
        env=clean_env(env),
        stdout=open(log, "wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def pages(receiver: TimedReceiver) -> list[dict]:
    """Firing alerts that paged on their own (no root cause above them)."""
    out = []
    for _, _, body in list(receiver.arrivals):
        for alert in body.get("alerts", [body]) if isinstance(body, dict) else []:
            if alert.get("status") == "firing" and not alert.get("root_cause"):
                out.append(alert)
    return out


def wait_for(what, timeout_s: float, step_s: float = 0.5):  # noqa: ANN001, ANN201
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = what()
        if found:
            return found
        time.sleep(step_s)
    return what()


def metrics(address: str) -> str:
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as resp:
        return resp.read().decode()


def metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            if all(f'{k}="{v}"' in line for k, v in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
    return total


def listen_address(log: Path) -> str:
    def found() -> str | None:
        for line in log.read_text(errors="replace").splitlines():
            if "collector listening on " in line:
                return line.split("collector listening on ", 1)[1].split(" ", 1)[0]
        return None

    address = wait_for(found, 30, 0.2)
    assert address, log.read_text()
    return address


@pytest.fixture
def receiver() -> Iterator[TimedReceiver]:
    """A webhook receiver in this process, stopped after the test whatever happens."""
    hook = TimedReceiver("127.0.0.1", free_port(), echo=None)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    try:
        yield hook
    finally:
        hook.shutdown()
        hook.server_close()


def start_served(
    broker,
    tmp_path: Path,
    prefix: str,
    scenario_data: dict,
    receiver: TimedReceiver,  # noqa: ANN001
    procs: list[subprocess.Popen],
    *fleet_args: str,
) -> tuple[Path, int, Path]:
    """A worker paging `receiver` and the scenario's cluster served as exporters, their processes
    appended to `procs` (for the caller to stop): (the settings file, the fleet's first port, its
    scrape config)."""
    (tmp_path / "scenario.yaml").write_text(yaml.safe_dump(scenario_data))
    scenario = load_scenario(tmp_path / "scenario.yaml")
    _, config, worker = start_pipeline(broker, tmp_path, prefix, receiver.url + "hook", scenario, prefix)
    procs.append(worker)
    base = free_port_block(scenario.topology.nodes + len(scenario.topology.switch_names))
    scrape = tmp_path / "scrape.yml"
    procs.append(
        start(
            [
                "simulate",
                "--serve-exporters",
                "--scenario",
                str(tmp_path / "scenario.yaml"),
                "--port-base",
                str(base),
                "--scrape-config",
                str(scrape),
                *fleet_args,
            ],
            tmp_path / "fleet.log",
        )
    )
    assert wait_for(scrape.exists, 30, 0.2), (tmp_path / "fleet.log").read_text()
    return config, base, scrape


@pytest.mark.slow
def test_a_served_fleet_through_the_collector_pages_what_the_simulators_own_path_pages(
    broker, tmp_path, prefix, receiver
):
    """Card loss, node loss, a dead leaf and a downed host link: the same root causes, one page each,
    as the simulator's own batches through the same detectors (offline core, same scenario)."""
    scenario = parse_scenario(SCENARIO)
    offline = {
        (a.kind, a.entity)
        for a in run_offline(scenario, load_settings({}, environ={}).for_scenario(scenario))
        if a.status == "firing" and not a.root_cause
    }
    assert offline == EXPECTED
    procs: list[subprocess.Popen] = []
    try:
        config, base, scrape = start_served(
            broker, tmp_path, prefix, SCENARIO, receiver, procs, "--switch-interval", "2"
        )
        collect_log = tmp_path / "collect.log"
        collector = start(
            ["--config", str(config), "collect", "--config", str(scrape), "--listen", "127.0.0.1:0"], collect_log
        )
        procs.append(collector)
        address = listen_address(collect_log)
        found = wait_for(lambda: {(a["kind"], a["entity"]) for a in pages(receiver)} >= EXPECTED, 150, 1)
        seen = [(a["kind"], a["entity"]) for a in pages(receiver)]
        assert found, (seen, collect_log.read_text()[-3000:])
        assert sorted(seen) == sorted(EXPECTED), seen  # one page per root cause, nothing else
        text = metrics(address)
        assert metric(text, "clusterpulse_collect_targets", job="gpu") == 32
        assert metric(text, "clusterpulse_collect_target_up", job="gpu", instance=f"127.0.0.1:{base + 20}") == 0
        assert metric(text, "clusterpulse_collect_rounds_total", job="gpu", outcome="on_time") > 30
        before = len(collect_log.read_text())
        collector.send_signal(signal.SIGTERM)
        assert collector.wait(timeout=10) == 0
        assert "collector stopped" in collect_log.read_text()
        assert "Connector is closed" not in collect_log.read_text()[before:]  # its own session, not the fleet
    finally:
        for proc in reversed(procs):
            stop_process(proc, timeout_s=10)


def dcgm_page(node: str, cards: int = 8) -> bytes:
    lines = [f'DCGM_FI_DEV_GPU_UTIL{{gpu="{c}",Hostname="{node}"}} 90' for c in range(cards)]
    lines += [f'DCGM_FI_DEV_GPU_TEMP{{gpu="{c}",Hostname="{node}"}} 60' for c in range(cards)]
    return ("\n".join(lines) + "\n").encode()


class Fleet(http.server.ThreadingHTTPServer):
    """Stand-in exporters on one port: /good/<node>, /hang (never answers), /html (not an exposition)."""

    daemon_threads = True
    release = threading.Event()


class FleetHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        if self.path.startswith("/hang"):
            self.server.release.wait(60)  # type: ignore[attr-defined]
            return
        body = (
            dcgm_page(self.path.rsplit("/", 1)[1])
            if self.path.startswith("/good/")
            else b"<html><body>login</body></html>"
        )
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def read_card_messages(bootstrap: str, prefix: str) -> list:
    from bench.latency import read_all

    return [decode_batch(r.value) for r in read_all(bootstrap, [CARD_TELEMETRY.name(prefix)])]


def test_file_sd_changes_a_hanging_target_and_garbage_pages(broker, tmp_path, prefix):
    fleet = Fleet(("127.0.0.1", 0), FleetHandler)
    threading.Thread(target=fleet.serve_forever, daemon=True).start()
    address = f"127.0.0.1:{fleet.server_address[1]}"
    sd = tmp_path / "targets.yml"

    def targets(*paths: str) -> None:
        groups = [
            {"targets": [address], "labels": {"__metrics_path__": path, "node": node, "instance": node}}
            for path, node in paths
        ]
        sd.write_text(yaml.safe_dump(groups))

    targets(("/good/node0001", "node0001"), ("/hang", "node0002"), ("/html", "node0003"))
    scrape = tmp_path / "scrape.yml"
    scrape.write_text(
        yaml.safe_dump(
            {
                "scrape_configs": [
                    {
                        "job_name": "gpu",
                        "scrape_interval": "1s",
                        "scrape_timeout": "1s",
                        "file_sd_configs": [{"files": [str(tmp_path / "target*.yml")]}],
                    }
                ]
            }
        )
    )
    settings = tmp_path / "settings.yaml"
    settings.write_text(
        yaml.safe_dump(
            {
                "bootstrap": broker.bootstrap,
                "topic_prefix": prefix,
                "cluster": {"cards": 64, "nodes_per_leaf": 4, "spines": 2},
            }
        )
    )
    log = tmp_path / "collect.log"
    collector = start(["--config", str(settings), "collect", "--config", str(scrape), "--listen", "127.0.0.1:0"], log)
    try:
        listen = listen_address(log)
        assert wait_for(
            lambda: metric(metrics(listen), "clusterpulse_collect_scrape_failures_total", reason="timeout") >= 3, 30
        ), log.read_text()
        targets(
            ("/good/node0001", "node0001"), ("/hang", "node0002"), ("/html", "node0003"), ("/good/node0004", "node0004")
        )
        assert wait_for(lambda: "file_sd file changed" in log.read_text(), 15), log.read_text()
        assert wait_for(lambda: metric(metrics(listen), "clusterpulse_collect_target_up", instance="node0004") == 1, 15)
        time.sleep(4)
        text = metrics(listen)
        assert metric(text, "clusterpulse_collect_targets", job="gpu") == 4
        assert metric(text, "clusterpulse_collect_scrape_failures_total", job="gpu", reason="bad_page") >= 3
        collector.send_signal(signal.SIGINT)  # mid-round: a scrape of /hang is always open
        assert collector.wait(timeout=10) == 0
    finally:
        stop_process(collector, timeout_s=10)
        Fleet.release.set()
        fleet.shutdown()
    out = log.read_text()
    assert "HTML page" in out and "no answer within 1 s" in out and "reported as unreachable: node0002" in out
    messages = read_card_messages(broker.bootstrap, prefix)
    good = sorted({m.ts_ms for m in messages for s, c in m.parts if s == "node0001" and c["rows"] == 8})
    hung = [m for m in messages if "node0002" in m.unreachable]
    assert hung and all(not c["rows"] for m in hung for s, c in m.parts if s == "node0002")
    # node0001 shares its group with the hanging target, yet reports every round: one a second
    assert len(good) >= 6 and all(b - a == 1000 for a, b in zip(good, good[1:])), good
    assert any(s == "node0004" for m in messages for s, _ in m.parts)


def test_remote_write_in_takes_good_bodies_and_refuses_garbage_with_the_reason(broker, tmp_path, prefix):
    settings = tmp_path / "settings.yaml"
    settings.write_text(
        yaml.safe_dump(
            {
                "bootstrap": broker.bootstrap,
                "topic_prefix": prefix,
                "cluster": {"cards": 64, "nodes_per_leaf": 4, "spines": 2},
            }
        )
    )
    log = tmp_path / "collect.log"
    collector = start(["--config", str(settings), "collect", "--listen", "127.0.0.1:0"], log)
    try:
        listen = listen_address(log)

        def post(body: bytes, encoding: str = "snappy") -> tuple[int, str]:
            request = urllib.request.Request(
                f"http://{listen}/api/v1/write",
                data=body,
                method="POST",
                headers={
                    "Content-Encoding": encoding,
                    "Content-Type": "application/x-protobuf",
                    "X-Prometheus-Remote-Write-Version": "0.1.0",
                },
            )
            try:
                with urllib.request.urlopen(request, timeout=10) as resp:
                    return resp.status, resp.read().decode()
            except urllib.error.HTTPError as exc:
                return exc.code, exc.read().decode()

        now = int(time.time() * 1000)
        samples = [
            Sample(
                "DCGM_FI_DEV_GPU_UTIL",
                {"gpu": str(c), "Hostname": "node0001", "instance": "h1:9400", "job": "gpu"},
                90.0,
                now + t * 1000,
            )
            for t in range(3)
            for c in range(8)
        ]
        assert post(encode_write_request(samples))[0] == 204
        code, reason = post(b"\x00garbage that is not snappy")
        assert code == 400 and "snappy" in reason
        code, reason = post(encode_write_request(samples), encoding="gzip")
        assert code == 400 and "gzip" in reason
        assert wait_for(
            lambda: metric(metrics(listen), "clusterpulse_collect_samples_total", source="remote_write") >= 16, 20
        )
        text = metrics(listen)
        assert metric(text, "clusterpulse_collect_remote_write_requests_total", code="400") == 2
        assert collector.poll() is None  # garbage is counted, not fatal
    finally:
        stop_process(collector, timeout_s=10)
    messages = read_card_messages(broker.bootstrap, prefix)
    assert {m.ts_ms for m in messages} >= {now, now + 1000}
    assert all(c["rows"] == 8 for m in messages for s, c in m.parts)  # each scrape whole, never split


@pytest.mark.slow
@pytest.mark.skipif(not shutil.which("prometheus"), reason="needs Debian prometheus (make test installs it as root)")
def test_a_real_prometheus_remote_writing_into_collect_pages_a_lost_card(broker, tmp_path, prefix, receiver):
    scenario_data = {**SCENARIO, "duration_s": 60, "faults": [SCENARIO["faults"][0]]}
    procs: list[subprocess.Popen] = []
    try:
        config, _, scrape = start_served(broker, tmp_path, prefix, scenario_data, receiver, procs)
        collect_log = tmp_path / "collect.log"
        procs.append(start(["--config", str(config), "collect", "--listen", "127.0.0.1:0"], collect_log))
        listen = listen_address(collect_log)
        prom = yaml.safe_load(scrape.read_text())
        prom["global"] = {"scrape_interval": "1s", "scrape_timeout": "1s"}
        prom["remote_write"] = [
            {
                "url": f"http://{listen}/api/v1/write",
                "queue_config": {"batch_send_deadline": "1s", "max_samples_per_send": 2000},
            }
        ]
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(prom))
        procs.append(
            subprocess.Popen(
                [
                    "prometheus",
                    f"--config.file={tmp_path / 'prometheus.yml'}",
                    f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{free_port()}",
                ],
                stdout=open(tmp_path / "prometheus.log", "wb"),
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
        found = wait_for(lambda: [a for a in pages(receiver) if a["entity"] == "node0005-card2"], 120, 1)
        assert found and found[0]["kind"] == "card_failed", (
            pages(receiver),
            collect_log.read_text()[-2000:],
            (tmp_path / "prometheus.log").read_text()[-2000:],
        )
        assert [(a["kind"], a["entity"]) for a in pages(receiver)] == [("card_failed", "node0005-card2")]
        assert metric(metrics(listen), "clusterpulse_collect_samples_total", source="remote_write") > 0
    finally:
        for proc in reversed(procs):
            stop_process(proc, timeout_s=10)


def test_collect_config_errors_are_one_line(tmp_path):
    scrape = tmp_path / "scrape.yml"
    scrape.write_text(yaml.safe_dump({"scrape_configs": [{"job_name": "gpu", "kubernetes_sd_configs": [{}]}]}))
    out = run_cli("collect", "--config", str(scrape), "--bootstrap", "127.0.0.1:1", timeout=60)
    assert out.returncode == 2 and "kubernetes_sd_configs" in out.stderr and len(out.stderr.strip().splitlines()) == 1
    out = run_cli("collect", "--config", str(scrape), "--shard", "4/4", timeout=60)
    assert out.returncode == 2 and "4/4" in out.stderr and "Traceback" not in out.stderr
