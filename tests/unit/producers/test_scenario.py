from pathlib import Path

import pytest
import yaml

from producers.scenario import FAULT_KINDS, ScenarioError, load_scenario, parse_scenario
from tests.conftest import ROOT

SMALL = {"cards": 64, "cards_per_node": 8, "nodes_per_leaf": 4, "spines": 2}


def test_faults_only_is_a_healthy_default_cluster() -> None:
    sc = parse_scenario({"faults": []})
    assert (sc.shape.cards, sc.shape.cards_per_node, sc.shape.nodes_per_leaf, sc.shape.spines) == (10240, 8, 32, 32)
    assert [(j.name, j.first_node, j.nodes, j.step_s) for j in sc.jobs] == [("train", 0, 1280, 2.0)]
    assert (sc.duration_s, sc.tick_s, sc.vendor, sc.seed) == (900.0, 1.0, "nvidia", 0)
    assert sc.noise.checkpoint_every_s == 300 and sc.noise.background_crc_per_hour == 2
    assert sc.start.isoformat() == "2026-01-01T00:00:00+00:00"


def test_fault_defaults() -> None:
    sc = parse_scenario({"cluster": SMALL, "faults": [{"kind": "straggler", "target": "node0001-card2", "start_s": 5}]})
    [f] = sc.faults
    assert (f.duration_s, f.severity, f.end_s(sc.duration_s)) == (None, FAULT_KINDS["straggler"][1], 900.0)


def scenario(**over: object) -> dict:
    base = {
        "duration_s": 60,
        "cluster": dict(SMALL),
        "faults": [{"kind": "card_failure", "target": "node0001-card2", "start_s": 10}],
    }
    base.update(over)
    return base


def fault(**over: object) -> dict:
    return scenario(faults=[{"kind": "card_failure", "target": "node0001-card2", "start_s": 10, **over}])


@pytest.mark.parametrize(
    "data, needles",
    [
        (fault(kind="meltdown"), ["faults[0].kind", "'meltdown'", "unknown fault kind"]),
        (fault(target="node0099-card2"), ["faults[0].target", "'node0099-card2'", "unknown target"]),
        (fault(target="node0001-card8"), ["faults[0].target", "'node0001-card8'"]),
        (fault(kind="link_down"), ["faults[0].target", "needs a link"]),
        (fault(kind="switch_failure", target="node0001"), ["needs a leaf or spine"]),
        (fault(target="node0001-nic2~leaf003"), ["faults[0].target", "node0001-nic2~leaf003"]),  # nic2 is on leaf004
        (fault(start_s=60), ["faults[0].start_s", "60", "outside the run"]),
        (fault(start_s=-1), ["faults[0].start_s", "-1"]),
        (fault(start_s="soon"), ["faults[0].start_s", "'soon'", "expected a number"]),
        (fault(duration_s=0), ["faults[0].duration_s", "0"]),
        (fault(severity=True), ["faults[0].severity", "True"]),
        (fault(colour="red"), ["faults[0].colour", "unknown field"]),
        (scenario(duration_s="ten"), ["duration_s", "'ten'"]),
        (scenario(tick_s=0), ["tick_s", "0"]),
        (scenario(duration_s=10.5), ["duration_s", "whole number of ticks"]),
        (scenario(start="yesterday"), ["start", "'yesterday'", "ISO 8601"]),
        (scenario(start="2026-01-01T00:00:00"), ["start", "timezone"]),
        (scenario(seed=1.5), ["seed", "1.5", "integer"]),
        (scenario(cluster={**SMALL, "vendor": "amd"}), ["cluster.vendor", "'amd'"]),
        (scenario(cluster={**SMALL, "cards": 60}), ["cards", "60"]),
        (scenario(cluster={**SMALL, "racks": 2}), ["cluster.racks", "unknown field"]),
        (
            scenario(jobs=[{"name": "a", "first_node": 0, "nodes": 4}, {"name": "b", "first_node": 3, "nodes": 2}]),
            ["jobs[1].first_node", "node0003", "already in job 'a'"],
        ),
        (scenario(jobs=[{"name": "a", "first_node": 6, "nodes": 4}]), ["jobs[0].nodes", "exceeds"]),
        (scenario(jobs=[{"name": "a"}, {"name": "a", "first_node": 2}]), ["jobs[1].name", "duplicate"]),
        (scenario(noise={"checkpoint_s": 400}), ["noise.checkpoint_s", "400"]),
        (scenario(noise={"step_jitter": -0.1}), ["noise.step_jitter", "-0.1"]),
        (scenario(noise={"profile": "noisy"}), ["noise.profile", "'noisy'", "clean or realistic"]),
        (scenario(noise={"profile": "realistic", "step_autocorr": 1.2}), ["noise.step_autocorr", "1.2", "below 1"]),
        (scenario(noise={"missing_sample_rate": 2}), ["noise.missing_sample_rate", "2", "at most 1"]),
        (scenario(noise={"silent_failure_share": 1.5}), ["noise.silent_failure_share", "1.5", "at most 1"]),
        (scenario(noise={"restart_warmup_steps": 2.5}), ["noise.restart_warmup_steps", "2.5", "whole number"]),
        (scenario(faults={"kind": "straggler"}), ["faults", "expected a list"]),
        (["not", "a", "mapping"], ["scenario", "expected a mapping"]),
    ],
)
def test_bad_scenarios_are_refused_naming_field_and_value(data: object, needles: list[str]) -> None:
    with pytest.raises(ScenarioError) as err:
        parse_scenario(data)
    for needle in needles:
        assert needle in str(err.value), str(err.value)


def test_bad_files_are_refused_with_their_path(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("faults: [\n")
    with pytest.raises(ScenarioError, match="broken.yaml.*not valid YAML"):
        load_scenario(broken)
    with pytest.raises(ScenarioError, match="cannot read scenario"):
        load_scenario(tmp_path / "missing.yaml")
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(yaml.safe_dump(fault(kind="meltdown")))
    with pytest.raises(ScenarioError, match=r"wrong.yaml: faults\[0\].kind"):
        load_scenario(wrong)
    unfinished = tmp_path / "unfinished.yaml"  # would run the 900 s default cluster with nothing in it
    unfinished.write_text("name: x\n")
    with pytest.raises(ScenarioError, match=r"unfinished.yaml: faults: missing; .*`faults: \[\]` for none"):
        load_scenario(unfinished)


def test_json_is_valid_yaml(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text('{"cluster": {"cards": 64, "nodes_per_leaf": 4, "spines": 2}, "faults": []}')
    assert load_scenario(path).shape.cards == 64


@pytest.mark.parametrize("path", sorted((ROOT / "scenarios").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_scenarios_are_valid(path: Path) -> None:
    sc = load_scenario(path)
    assert sc.name == path.stem


def test_shipped_scenarios_cover_every_fault_kind() -> None:
    kinds = {f.kind for p in (ROOT / "scenarios").glob("*.yaml") for f in load_scenario(p).faults}
    assert kinds == set(FAULT_KINDS)
    assert {"healthy.yaml", "leaf-failure-under-load.yaml", "mixed-hour.yaml"} <= {
        p.name for p in (ROOT / "scenarios").glob("*.yaml")
    }
