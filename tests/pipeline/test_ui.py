"""The live page: what it shows for a stream of alerts (pipeline.ui.view), and the page itself during
a `clusterpulse run`, loaded in a real headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from pipeline.broker import free_port, stop_process
from pipeline.schemas import Alert
from pipeline.topology import ClusterShape, Topology
from pipeline.ui.view import ClusterView
from tests.conftest import ROOT, clean_env, run_cli

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def alert(kind: str, entity: str, status: str = "firing", root: str | None = None, at: str = "01") -> Alert:
    return Alert(kind=kind, entity=entity, status=status, starts_at=f"2026-01-01T00:00:{at}.000Z",
                 severity="critical" if kind != "straggler" else "warning", summary=f"{entity} {kind}",
                 root_cause=root)


def test_cards_take_the_worst_state_their_alerts_give_and_symptoms_fold_under_their_root() -> None:
    view = ClusterView(Topology(ClusterShape(cards=64, cards_per_node=8, nodes_per_leaf=4, spines=2)))
    leaf = alert("switch_down", "leaf001")
    for a in (leaf, alert("card_failed", "node0003-card2", root=leaf.id, at="02"), alert("node_down", "node0005"),
              alert("straggler", "node0001-card4"), alert("thermal_throttle", "node0001-card4"),
              alert("card_failed", "node0999-card1")):  # another cluster's card: not on this page
        view.apply(a)
    state = view.snapshot()
    grid = [state["cards"][r * 8:(r + 1) * 8] for r in range(8)]  # rail by rail, one digit per node
    assert grid[2] == "00030400" and grid[4] == "02000400" and grid[0] == "00000400"
    assert state["counts"] == {"ok": 54, "throttled": 1, "failed": 1, "silent": 8}
    assert [g["leaf"] for g in state["leaves"]] == ["leaf000", "leaf001"]
    roots = state["active"]
    assert [(r["kind"], [g["entity"] for g in r["grouped"]]) for r in roots][:1] == [("switch_down", ["node0003-card2"])]
    assert [s["name"] for s in state["switches"] if s["down"]] == ["leaf001"]
    # its blast radius: card 0 (rail 0) of nodes 4-7, grid columns 4-7; the silent node's card too
    assert state["radius"] == [4, 5, 6, 7]
    view.apply(alert("switch_down", "leaf001", status="resolved"))
    state = view.snapshot()
    assert state["resolved"][0]["entity"] == "leaf001" and "node0003-card2" in {r["entity"] for r in state["active"]}
    assert state["radius"] == []


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return resp.read()


@pytest.mark.broker
def test_the_page_during_a_run_shows_the_failed_card_and_its_alert(tmp_path: Path) -> None:
    scenario = {"name": "ui-card-fails", "seed": 3, "duration_s": 90,
                "cluster": {"cards": 64, "cards_per_node": 8, "nodes_per_leaf": 4, "spines": 2},
                "jobs": [{"name": "train", "first_node": 0, "nodes": 8, "step_s": 1.0}],
                "faults": [{"kind": "card_failure", "target": "node0005-card2", "start_s": 10},
                           {"kind": "switch_failure", "target": "leaf003", "start_s": 10}]}  # rail 1 of nodes 4-7
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(scenario))
    port = free_port()
    log = open(tmp_path / "run.log", "wb")
    run = subprocess.Popen([sys.executable, "-m", "pipeline", "run", "--scenario", str(path), "--speed", "3",
                            "--ui-port", str(port), "--data", str(tmp_path / "data")], cwd=ROOT,
                           env=clean_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 90
        state: dict = {}
        while not {"node0005-card2", "leaf003"} <= {a["entity"] for a in state.get("active", [])}:
            assert run.poll() is None, (tmp_path / "run.log").read_text()[-3000:]
            assert time.monotonic() < deadline, f"the page never showed the failure: {state.get('counts')}"
            time.sleep(0.5)
            try:
                state = json.loads(get(url + "api/state"))
            except OSError:
                pass
        assert f"live page: {url}" in (tmp_path / "run.log").read_text()
        page = get(url).decode()
        assert not re.search(r"""(src|href)=["']?(https?:)?//""", page), "the page loads something from elsewhere"
        assert state["counts"]["failed"] == 1
        deadline = time.monotonic() + 30
        temps: dict = {}
        while len(temps) < 60 and time.monotonic() < deadline:  # the worker's first flushes
            temps = json.loads(get(url + "api/metric?name=temp_c"))["values"]
            time.sleep(0.5)
        assert len(temps) >= 60 and all(20 < t < 100 for t in temps.values()), temps
        with pytest.raises(urllib.error.HTTPError, match="400"):
            get(url + "api/metric?name=nonsense")
        jobs: dict = {}
        while "train" not in jobs and time.monotonic() < deadline + 30:
            jobs = json.loads(get(url + "api/jobs"))["jobs"]
            time.sleep(0.5)
        assert jobs["train"]["steps"] and len(jobs["train"]["median"]) == len(jobs["train"]["steps"])
        if CHROMIUM is None:
            pytest.skip("the page's data is checked; a browser check needs chromium (make test installs it when "
                        "run as root with apt)")
        browser = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                   "--virtual-time-budget=4000", "--window-size=1400,1000"]
        dom = subprocess.run(browser + ["--dump-dom", url], capture_output=True, text=True, timeout=90).stdout
        assert '<ul id="cards-failed"><li>node0005-card2</li></ul>' in dom, dom[-3000:]
        assert 'data-entity="node0005-card2"' in dom  # the alert is listed
        assert 'data-job="train"' in dom  # its step-time chart
        cut = re.search(r'<ul id="cards-cut">(.*?)</ul>', dom).group(1)  # the failed leaf's blast radius
        assert sorted(re.findall(r"<li>(.*?)</li>", cut)) == [f"node000{n}-card1" for n in range(4, 8)], cut
        assert re.search(r'data-switch="leaf003" class="down"', dom)
        shot = tmp_path / "page.png"
        subprocess.run(browser + [f"--screenshot={shot}", url], capture_output=True, timeout=90)
        assert shot.exists() and shot.stat().st_size > 10_000, "no screenshot"
    finally:
        stop_process(run, timeout_s=30)
        log.close()


def test_ui_without_a_broker_says_what_it_needs_in_one_line() -> None:
    done = run_cli("ui", "--ui-port", str(free_port()))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == ["clusterpulse: ui reads the alerts topic of a running pipeline: give "
                                                "--bootstrap HOST:PORT (`clusterpulse run` serves the page itself)"]


def test_the_newest_value_of_each_card_comes_from_each_partition_s_newest_file(tmp_path: Path) -> None:
    import numpy as np

    from pipeline.sinks.parquet import ParquetSink
    from pipeline.ui.latest import latest_values
    from tests.builders import card_batch

    sink = ParquetSink(tmp_path)
    for offset, (t, temp) in enumerate([(0, 50.0), (1, 60.0)]):  # two flushes: two files of partition 0
        batch = card_batch("node0001", t)
        batch.columns["temp_c"][:] = temp
        batch.columns["temp_c"][3] = np.nan  # card 3 does not report its temperature
        sink.add_batch("cp.telemetry.card", 0, offset, batch)
        sink.flush("cp.telemetry.card", 0)
    sink.add_batch("cp.telemetry.card", 1, 0, card_batch("node0002", 0))  # another partition
    sink.flush("cp.telemetry.card", 1)
    values = latest_values(tmp_path, "temp_c")
    assert values["node0001-card0"] == 60.0 and "node0001-card3" not in values and values["node0002-card5"] == 60.0
    assert len(values) == 15 and latest_values(tmp_path / "nothing", "util") == {}


def test_step_history_gives_each_job_its_median_and_its_straggling_ranks(tmp_path: Path) -> None:
    from pipeline.sinks.parquet import ParquetSink
    from pipeline.ui.latest import step_history
    from tests.builders import step_batch

    sink = ParquetSink(tmp_path, topology=Topology(ClusterShape(cards=64, cards_per_node=8, nodes_per_leaf=4, spines=2)))
    for step in range(5):
        compute = [1.0] * 8
        compute[3] = 1.5  # rank 3 is slow
        sink.add_batch("cp.telemetry.step", 0, step, step_batch("node0000", "train", step, list(range(8)), step, compute))
        sink.flush("cp.telemetry.step", 0)
    history = step_history(tmp_path, {"train": {3}}, last_steps=3)
    assert history == {"train": {"steps": [2, 3, 4], "median": [1.0, 1.0, 1.0], "ranks": {"3": [1.5, 1.5, 1.5]}}}
    assert step_history(tmp_path / "none", {}) == {}
    from pipeline.ui.latest import latest_values
    compute = latest_values(tmp_path, "compute_s", cards_per_node=8)  # rank r on card r % 8
    assert compute["node0000-card3"] == 1.5 and compute["node0000-card0"] == 1.0 and len(compute) == 8


def test_each_switch_s_crc_rate_comes_from_its_newest_samples(tmp_path: Path) -> None:
    from pipeline.sinks.parquet import ParquetSink
    from pipeline.ui.latest import switch_error_rates
    from tests.builders import port_batch

    topo = Topology(ClusterShape(cards=64, cards_per_node=8, nodes_per_leaf=4, spines=2))
    sink = ParquetSink(tmp_path, topology=topo)
    for t in range(11):  # port 2 of leaf000 gains 30 errors a second; port 4's counter resets at t=5
        batch = port_batch("leaf000", t)
        batch.columns["crc_errors"][2] = 30 * t
        batch.columns["crc_errors"][4] = 1000 if t < 5 else t
        sink.add_batch("cp.telemetry.port", 0, t, batch)
        sink.add_batch("cp.telemetry.port", 0, t, port_batch("spine000", t))
    sink.flush("cp.telemetry.port", 0)
    rates = switch_error_rates(tmp_path)
    assert rates["leaf000"] == {"crc_per_s": 30.0, "worst_link": topo.port_link("leaf000", 2), "worst_per_s": 30.0}
    assert rates["spine000"]["crc_per_s"] == 0
    assert switch_error_rates(tmp_path / "none") == {}
