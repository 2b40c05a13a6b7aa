"""bench/peer: the incumbent's view of the simulated cluster, and a real Prometheus and Alertmanager
paging on it."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
import yaml

from bench.latency import TimedReceiver
from bench.peer.pages import Page, alertmanager_page, related, score
from bench.peer.run import Incumbent
from pipeline.model.schemas import decode_batch
from pipeline.ops.broker import free_port
from producers.adapters.prometheus import parse
from producers.scenario import parse_scenario
from producers.served_fleet import ClusterExporters, ExporterServer
from producers.simulator import Simulator
from tests.builders import card_batch, small_topology

SCENARIO = {
    "name": "peer-test",
    "seed": 3,
    "duration_s": 60,
    "cluster": {"cards": 64, "cards_per_node": 8, "nodes_per_leaf": 4, "spines": 2},
    "noise": {"silent_failure_share": 0},
    "faults": [
        {"kind": "card_failure", "target": "node0003-card5", "start_s": 5},
        {"kind": "link_degradation", "target": "node0001-nic2~leaf004", "start_s": 5, "severity": 1},
    ],
}


def values(text: bytes, metric: str) -> dict[frozenset, float]:
    return {frozenset(s.labels.items()): s.value for s in parse(text.decode()).samples if s.name == metric}


def simulated(ticks: int) -> tuple[ClusterExporters, list]:
    scenario = parse_scenario(SCENARIO)
    exporters, seen = ClusterExporters(scenario.topology), []
    for _, (_ts_ms, messages) in zip(range(ticks), Simulator(scenario).ticks()):
        batches = [decode_batch(m.value) for m in messages]
        exporters.apply(batches)
        seen.append(batches)
    return exporters, seen


def test_node_target_serves_the_simulated_cards_and_steps_as_dcgm_exporter_does():
    exporters, ticks = simulated(4)
    card = next(b for b in ticks[-1] if b.kind == "card")
    name, counts = card.parts[0]
    text = exporters.scrape("node", name)
    temps = {dict(k)["gpu"]: v for k, v in values(text, "DCGM_FI_DEV_GPU_TEMP").items()}
    rows = counts["rows"]
    expected = {str(c): round(float(t), 3) for c, t in zip(card.columns["card"][:rows], card.columns["temp_c"][:rows])}
    assert temps == pytest.approx(expected, abs=1e-3)
    assert set(dict(k)["Hostname"] for k in values(text, "DCGM_FI_DEV_XID_ERRORS")) == {name}
    steps = [b for tick in ticks for b in tick if b.kind == "step"]
    compute = values(exporters.scrape("node", steps[-1].parts[0][0]), "train_step_compute_seconds")
    assert {dict(k)["training_job"] for k in compute} == {steps[-1].job} and len(compute) == 8
    assert not any("job" in dict(k) for k in compute)  # Prometheus's own target label: it would be renamed


def test_switch_target_names_each_port_and_its_far_end():
    exporters, ticks = simulated(2)
    port = next(b for b in ticks[-1] if b.kind == "port" and b.parts and b.parts[0][0].startswith("leaf"))
    name, counts = port.parts[0]
    text = exporters.scrape("switch", name)
    status = values(text, "ifOperStatus")
    assert len(status) == counts["rows"] and set(status.values()) == {1.0}
    topo = exporters.topo
    for labels in status:
        link = topo.port_link(name, int(dict(labels)["ifIndex"]) - 1)
        assert dict(labels)["ifAlias"] in link.split("~") and dict(labels)["ifAlias"] != name


def test_a_silent_node_answers_nothing_and_a_lost_card_keeps_its_last_xid():
    topo = small_topology()
    exporters = ClusterExporters(topo, silent_after=2)
    exporters.apply([card_batch("node0000", 0, errors=[(3, 79)]), card_batch("node0001", 0)])
    exporters.apply([card_batch("node0000", 1, cards=[0, 1, 2, 4, 5, 6, 7]), card_batch("node0001", 1)])
    xid = {dict(k)["gpu"]: v for k, v in values(exporters.scrape("node", "node0000"), "DCGM_FI_DEV_XID_ERRORS").items()}
    assert xid["3"] == 79 and xid["0"] == 0
    for t in (2, 3, 4):
        exporters.apply([card_batch("node0001", t)])
    assert exporters.scrape("node", "node0000") is None and exporters.scrape("node", "node0001") is not None
    assert exporters.scrape("node", "node9999") is None
    # a late batch never rolls a counter back
    late = card_batch("node0001", 0)
    late.columns["ecc_sbe"][:] = 0
    ahead = card_batch("node0001", 5)
    ahead.columns["ecc_sbe"][:] = 9
    exporters.apply([ahead])
    exporters.apply([late])
    assert set(values(exporters.scrape("node", "node0001"), "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL").values()) == {9.0}
    # ... but its error event is news: a late XID is shown, and never over a newer one
    exporters.apply([card_batch("node0001", 6, errors=[(2, 48)])])
    exporters.apply([card_batch("node0001", 3, errors=[(2, 79), (4, 79)])])
    xid = {dict(k)["gpu"]: v for k, v in values(exporters.scrape("node", "node0001"), "DCGM_FI_DEV_XID_ERRORS").items()}
    assert xid["2"] == 48 and xid["4"] == 79


def test_pages_are_scored_by_the_entity_their_labels_name():
    topo = small_topology()
    leaf = topo.leaf_name(0)
    body = {
        "status": "firing",
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": "SwitchPortDown", "instance": topo.spine_name(0), "ifIndex": "1"},
            },
            {"status": "firing", "labels": {"alertname": "GpuXidError", "Hostname": "node0001", "gpu": "2"}},
        ],
    }
    page = alertmanager_page(body, 10.0, topo)
    assert page.entities == {f"{leaf}~{topo.spine_name(0)}", "node0001-card2"}
    assert alertmanager_page({"status": "resolved", "alerts": []}, 11.0, topo) is None
    down = {
        "status": "firing",
        "alerts": [{"status": "firing", "labels": {"alertname": "TargetDown", "job": "snmp", "instance": leaf}}],
    }
    assert alertmanager_page(down, 12.0, topo).entities == {leaf}
    assert related(f"{leaf}~{topo.spine_name(0)}", leaf, topo) and related("node0001-card2", leaf, topo)
    assert not related("node0007-card2", leaf, topo)
    fault = parse_scenario({**SCENARIO, "faults": [{"kind": "switch_failure", "target": leaf, "start_s": 5}]}).faults[0]
    pages = [Page(9.0, frozenset({leaf})), Page(10.0, page.entities), Page(12.0, frozenset({leaf}))]
    result = score(fault, 9.5, pages, topo)
    assert result.latency_s == pytest.approx(2.5) and result.pages == 2


@pytest.mark.skipif(
    not (shutil.which("prometheus") and shutil.which("prometheus-alertmanager")),
    reason="needs Debian prometheus and prometheus-alertmanager (make test installs them as root)",
)
def test_a_real_prometheus_and_alertmanager_page_the_lost_cards_xid(tmp_path):
    """The one rule without a `for` hold (the others hold a minute or more)."""
    scenario = parse_scenario(SCENARIO)
    topo = scenario.topology
    exporters = ClusterExporters(topo)
    server = ExporterServer(exporters)
    receiver = TimedReceiver("127.0.0.1", free_port(), echo=None)
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in (server, receiver)]
    for thread in threads:
        thread.start()
    incumbent = Incumbent(1, tmp_path, server.address, topo, f"{receiver.url}prometheus-1s", group_wait="1s")
    stop = threading.Event()

    def feed() -> None:  # the simulated cluster at 5x real time, then held
        for _ts_ms, messages in Simulator(scenario).ticks():
            if stop.is_set():
                return
            exporters.apply([decode_batch(m.value) for m in messages])
            time.sleep(0.2)

    try:
        incumbent.start()
        threading.Thread(target=feed, daemon=True).start()
        deadline, entities = time.monotonic() + 120, set()
        while time.monotonic() < deadline and "node0003-card5" not in entities:
            time.sleep(1)
            for at, path, body in list(receiver.arrivals):
                page = alertmanager_page(body, at, topo) if path == "/prometheus-1s" else None
                entities |= set(page.entities) if page else set()
        assert "node0003-card5" in entities, f"pages named {sorted(entities)}; logs in {incumbent.dir}"
        cpu, rss = incumbent.stats()
        assert cpu > 0 and rss > 0
    finally:
        stop.set()
        incumbent.stop()
        for http in (server, receiver):
            http.shutdown()
            http.server_close()


@pytest.mark.skipif(
    not shutil.which("promtool"), reason="needs Debian prometheus's promtool (make test installs it as root)"
)
def test_the_slow_rank_rule_compares_a_rank_with_its_own_job(tmp_path):
    """As Prometheus stores the series: its own `job` label is the scrape job, the same for all."""
    rules = Path(__file__).resolve().parents[3] / "bench" / "peer" / "rules.yml"

    def series(job: str, rank: int, value: float) -> dict:
        return {
            "series": f'train_step_compute_seconds{{job="dcgm",instance="node000{rank}",training_job="{job}",'
            f'rank="{rank}",Hostname="node000{rank}",gpu="0"}}',
            "values": f"{value}+0x20",
        }

    fast = [series("a", r, 0.85) for r in range(3)] + [series("a", 3, 1.3)]  # rank 3: 53 % over its job's median
    slow = [series("b", r, 1.7) for r in range(4, 9)]  # a slower job, more ranks: the cluster's median is 1.7
    test = {
        "rule_files": [str(rules)],
        "evaluation_interval": "15s",
        "tests": [
            {
                "interval": "15s",
                "input_series": fast + slow,
                "alert_rule_test": [
                    {"eval_time": "1m", "alertname": "TrainingRankSlow", "exp_alerts": []},  # held for 2 min first
                    {
                        "eval_time": "3m",
                        "alertname": "TrainingRankSlow",
                        "exp_alerts": [
                            {
                                "exp_labels": {
                                    "severity": "warning",
                                    "job": "dcgm",
                                    "instance": "node0003",
                                    "training_job": "a",
                                    "rank": "3",
                                    "Hostname": "node0003",
                                    "gpu": "0",
                                },
                                "exp_annotations": {"summary": "a rank 3 on node0003 is slow"},
                            }
                        ],
                    },
                ],
            }
        ],
    }
    path = tmp_path / "test.yml"
    path.write_text(yaml.safe_dump(test))
    done = subprocess.run(["promtool", "test", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
