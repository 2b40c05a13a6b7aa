"""The straggler checks of issue 25 on the development scenarios (offline, no broker): no alert
left firing 120 s after its rank recovered, none resolved while its fault lasts, one page each,
and stragglers of 15 % or more found within 10 of their job's steps in jobs of 32 ranks or more."""

import pytest

from pipeline.eval.evaluate import evaluate
from pipeline.settings import Settings
from producers.scenario import load_scenario
from tests.conftest import ROOT

SCENARIOS = [
    "straggler-12pct-ten-minutes-recovers",
    "straggler-15pct-small-jobs",
    "straggler-10pct-jitter5-ten-minutes",
    "straggler-10pct-jitter5-checkpoints",
]


@pytest.mark.slow
def test_stragglers_resolve_once_recovered_and_are_found_within_ten_steps(tmp_path) -> None:
    paths = [str(ROOT / "scenarios" / "dev" / f"{name}.yaml") for name in SCENARIOS]
    with open(tmp_path / "progress.log", "w") as progress:
        report = evaluate(paths, Settings(), offline=True, progress=progress)
    for path, scenario in zip(paths, report["scenarios"]):
        severity = {f.target: f.severity for f in load_scenario(path).faults}
        assert scenario["false_positive_alerts"] == [], scenario["scenario"]
        for fault in scenario["faults"]:
            what = (scenario["scenario"], fault["target"])
            assert fault["detected_by"] is not None, what
            assert fault["pages"] == 1 and not fault["resolved_early"] and fault["stuck"] is not True, (what, fault)
            if fault["kind"] == "straggler" and severity[fault["target"]] >= 0.15:
                assert fault["latency_steps"] <= 10, (what, fault)
