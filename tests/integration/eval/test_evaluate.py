"""The detectors against the scorer's targets on scenarios the project has never seen: random
seeds, placements, severities and job layouts; and Kafka mode agreeing with offline mode."""

from __future__ import annotations

import concurrent.futures
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from pipeline.eval.evaluate import faults_of, run_offline, skew_tolerance_s
from pipeline.eval.scorer import score
from pipeline.settings import load_settings
from producers.random_scenario import KINDS, random_scenario
from producers.scenario import parse_scenario
from tests.conftest import run_cli

SEEDS = (101, 202, 303, 404)


def _healthy_untidy() -> dict:
    """A healthy cluster, untidy as real ones are, with loud confounders: nothing may fire."""
    return random_scenario(7) | {
        "faults": [],
        "duration_s": 600,
        "noise": {
            "profile": "realistic",
            "transient_spikes_per_hour": 600,
            "background_crc_per_hour": 120,
            "checkpoint_every_s": 120,
            "checkpoint_s": 15,
            "step_jitter": 0.04,
        },
    }


def _offline_run(seed: int | None) -> tuple:
    scenario = parse_scenario(random_scenario(seed, "realistic") if seed is not None else _healthy_untidy())
    return scenario, run_offline(scenario, load_settings({}, environ={}))


@pytest.fixture(scope="module")
def all_offline_runs() -> list:
    """The healthy scenario's run (the longest, started first), then the unseen ones': two at a
    time, one per core."""
    with concurrent.futures.ProcessPoolExecutor(2) as pool:
        return list(pool.map(_offline_run, (None,) + SEEDS))


@pytest.fixture(scope="module")
def offline_runs(all_offline_runs: list) -> list:
    return all_offline_runs[1:]


def test_unseen_scenarios_meet_the_targets(offline_runs: list) -> None:
    report = score([(faults_of(sc), alerts, sc.start_ms, None, skew_tolerance_s(sc)) for sc, alerts in offline_runs])
    for kind, stats in report["by_kind"].items():
        assert stats["recall"] >= 0.95 and stats["precision"] >= 0.95, (kind, stats)
    for kind in ("card_failure", "ecc_error", "node_failure", "switch_failure", "link_down", "link_flap"):
        assert report["by_kind"][kind]["latency_p95_s"] <= 5, (kind, report["by_kind"][kind])
    assert report["by_kind"]["link_degradation"]["latency_p95_s"] <= 15
    for sc, alerts in offline_runs:  # stragglers: within 10 steps of their job
        jobs = {j.name: j for j in sc.jobs}
        for fault in sc.faults:
            if fault.kind != "straggler":
                continue
            node = int(fault.target[4:8])
            job = next(j for j in jobs.values() if j.first_node <= node < j.first_node + j.nodes)
            hit = [a for a in alerts if a.kind == "straggler" and a.entity == fault.target and a.status == "firing"]
            latency_s = (
                np.datetime64(hit[0].starts_at[:-1]) - np.datetime64(sc.start.replace(tzinfo=None))
            ) / np.timedelta64(1, "s") - fault.start_s
            # ten steps (a straggling step lasts up to 1.15 x step_s longer), plus a checkpoint pause if one fell in
            allowed = 10 * job.step_s * (1.15 + fault.severity)
            every = sc.noise.checkpoint_every_s
            if every and int(fault.start_s // every) != int((fault.start_s + allowed) // every):
                allowed += sc.noise.checkpoint_s
            assert latency_s <= allowed, (fault, latency_s, allowed)


def test_a_switch_failure_is_one_ungrouped_alert(offline_runs: list) -> None:
    for sc, alerts in offline_runs:
        [fault] = [f for f in sc.faults if f.kind == "switch_failure"]
        start = sc.start_ms + int((fault.start_s - skew_tolerance_s(sc)) * 1000)  # a collector's clock may run ahead
        window = [
            a
            for a in alerts
            if a.status == "firing"
            and start <= int(np.datetime64(a.starts_at[:-1], "ms").astype(np.int64)) <= start + 20_000
        ]
        ungrouped = [(a.kind, a.entity) for a in window if a.root_cause is None]
        assert ungrouped == [("switch_down", fault.target)], (sc.name, ungrouped)
        if fault.target.startswith("leaf"):
            assert sum(1 for a in window if a.root_cause) >= 4  # its uplinks at least, grouped
            # the hosts see their links to the dead leaf go down (their NICs report): grouped under it
            topo = sc.topology
            _, leaf = topo.parse_switch(fault.target)
            rail = leaf // topo.leaves_per_rail
            host_links = {topo.host_link_name(n, rail) for n in topo.leaf_host_nodes(leaf).tolist()}
            root = next(a for a in window if a.kind == "switch_down")
            assert {a.entity for a in window if a.root_cause == root.id and a.kind == "link_down"} >= host_links


def test_healthy_untidy_cluster_with_loud_confounders_raises_nothing(all_offline_runs: list) -> None:
    _, alerts = all_offline_runs[0]
    assert [(a.kind, a.entity) for a in alerts] == []


@pytest.mark.broker
@pytest.mark.slow
def test_kafka_mode_agrees_with_offline_mode(tmp_path: Path) -> None:
    data = random_scenario(101) | {"cluster": {"cards": 256, "cards_per_node": 8, "nodes_per_leaf": 8, "spines": 2}}
    data["jobs"] = [
        {"name": "pretrain", "first_node": 0, "nodes": 20, "step_s": 1.0},
        {"name": "finetune", "first_node": 20, "nodes": 10, "step_s": 0.8},
    ]
    data["faults"] = [
        {"kind": "card_failure", "target": "node0003-card2", "start_s": 20, "duration_s": 40},
        {"kind": "straggler", "target": "node0012-card5", "start_s": 40, "duration_s": 60, "severity": 0.2},
        {"kind": "switch_failure", "target": "leaf005", "start_s": 110, "duration_s": 30},
        {"kind": "link_degradation", "target": "node0025-nic1~leaf007", "start_s": 150, "severity": 0.4},
        {"kind": "job_hang", "target": "finetune", "start_s": 160, "duration_s": 45},
        {"kind": "node_failure", "target": "node0030", "start_s": 200, "duration_s": 30},
    ]
    data["duration_s"] = 260
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(data))
    reports = {}
    for mode in ("offline", "kafka"):
        out = tmp_path / f"{mode}.json"
        args = ["eval", str(path), "--report", str(out)] + (["--offline"] if mode == "offline" else [])
        done = run_cli(*args, env={"CLUSTERPULSE_PARTITIONS": "4"}, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        reports[mode] = json.loads(out.read_text())

    def firing(report: dict) -> list:
        return sorted(
            (a["kind"], a["entity"], a["starts_at"], bool(a["root_cause"]))
            for a in report["scenarios"][0]["alerts"]
            if a["status"] == "firing"
        )

    assert firing(reports["kafka"]) == firing(reports["offline"])
    assert reports["kafka"]["overall"]["recall"] == 1.0 and reports["kafka"]["overall"]["precision"] == 1.0


def test_eval_draws_fresh_seeds_prints_them_and_replays_one(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    done = run_cli("eval", "--offline", "--random", "1", "--seed", "7", "--json", "--report", str(report), timeout=300)
    assert done.returncode == 0, done.stderr
    [drawn] = [line for line in done.stderr.splitlines() if line.startswith("random seeds:")]
    seed = int(drawn.split(":")[1].split()[0])
    names = [s["scenario"] for s in json.loads(report.read_text())["scenarios"]]
    assert names == [f"random-{seed}", "random-7"]
    printed = json.loads(done.stdout)
    assert printed["overall"]["injected"] == 2 * len(KINDS) and "pages_per_fault" in printed["overall"]
    again = run_cli("eval", "--offline", "--seed", "7", "--json", timeout=300)
    assert json.loads(again.stdout)["scenarios"][0]["faults"] == printed["scenarios"][1]["faults"]
