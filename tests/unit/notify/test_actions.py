"""Actions without Slurm: what drains, what does not, the hourly limit, resume, dry run, restart."""

from pathlib import Path

import pytest

from pipeline.model.schemas import Alert
from pipeline.notify.actions import Actions
from pipeline.settings import ActionSettings, SettingsError, load_settings
from tests.builders import alert as build_alert
from tests.builders import small_topology

RULE = ActionSettings.model_validate(
    {"on": ["card_failed", "node_down"], "slurm": {"drain": True, "resume_when_resolved": True}, "max_per_hour": 2}
)


def alert(kind: str, entity: str, status: str = "firing", **extra: object) -> Alert:
    return build_alert(kind, entity, status, "2026-12-02T06:10:00.000Z", summary=f"{entity} {kind}", **extra)


class Recorder:
    def __init__(self) -> None:
        self.commands: list[list[str]] = []

    def __call__(self, argv: list[str]) -> tuple[int, str]:
        self.commands.append(argv)
        return 0, ""


def actions(tmp_path: Path, run: Recorder, dry_run: bool = False, clock: list[float] | None = None) -> Actions:
    now = clock or [1_800_000_000.0]
    names = {"node0001": "gpu-a01"}  # from the inventory; other nodes keep their topology name
    return Actions((RULE,), small_topology(), names, str(tmp_path), "w1", dry_run, run, lambda: now[0])


def test_a_root_cause_drains_its_node_and_its_resolution_resumes_only_that(tmp_path: Path) -> None:
    run = Recorder()
    act = actions(tmp_path, run)
    [drained] = act.take(alert("card_failed", "node0001-card3"))
    assert drained.action == "drain" and drained.slurm_node == "gpu-a01" and drained.ok
    assert run.commands == [
        ["scontrol", "update", "NodeName=gpu-a01", "State=DRAIN", "Reason=clusterpulse: node0001-card3 card_failed"]
    ]
    assert act.take(alert("card_failed", "node0002-card0", root_cause="abc")) == []  # a consequence: no action
    assert act.take(alert("node_down", "node0003", silenced_by=("s1",))) == []  # planned work: no action
    assert act.take(alert("thermal_throttle", "node0004-card1")) == []  # not a kind of this rule
    assert act.take(alert("card_failed", "node0002-card0", "resolved")) == []  # never drained: nothing to resume
    [resumed] = act.take(alert("card_failed", "node0001-card3", "resolved"))
    assert resumed.action == "resume" and run.commands[-1] == ["scontrol", "update", "NodeName=gpu-a01", "State=RESUME"]


def test_no_more_drains_an_hour_than_the_limit_and_the_rest_is_recorded(tmp_path: Path) -> None:
    run, now = Recorder(), [1_800_000_000.0]
    act = actions(tmp_path, run, clock=now)
    records = [act.take(alert("node_down", f"node000{n}"))[0] for n in (1, 2, 3)]
    assert [r.action for r in records] == ["drain", "drain", "skipped"] and len(run.commands) == 2
    assert "at the limit of 2" in records[2].detail
    now[0] += 3601  # an hour later the window has room again
    assert act.take(alert("node_down", "node0004"))[0].action == "drain"


def test_a_dry_run_records_what_it_would_run_and_runs_nothing(tmp_path: Path) -> None:
    run = Recorder()
    [record] = actions(tmp_path, run, dry_run=True).take(alert("node_down", "node0005"))
    assert record.dry_run and record.command[3] == "State=DRAIN" and run.commands == []
    assert '"dry_run": true' in (tmp_path / "_actions" / "w1.jsonl").read_text()


def test_a_restarted_worker_knows_what_was_drained_from_the_lake(tmp_path: Path) -> None:
    first = actions(tmp_path, Recorder())
    first.take(alert("card_failed", "node0001-card3"))
    run = Recorder()
    again = Actions((RULE,), small_topology(), {"node0001": "gpu-a01"}, str(tmp_path), "w2", False, run)
    assert again.drained == {"gpu-a01": alert("card_failed", "node0001-card3").id}
    [resumed] = again.take(alert("card_failed", "node0001-card3", "resolved"))
    assert resumed.action == "resume" and run.commands[0][3] == "State=RESUME"


def test_a_switch_alert_cannot_be_an_action() -> None:
    with pytest.raises(SettingsError, match="names no node to act on"):
        load_settings({"actions": [{"on": ["switch_down"]}]}, environ={})


def test_a_node_is_resumed_only_when_the_last_of_its_acting_alerts_is_over(tmp_path: Path) -> None:
    run = Recorder()
    act = actions(tmp_path, run)
    assert act.take(alert("card_failed", "node0001-card0"))[0].action == "drain"
    assert act.take(alert("card_failed", "node0001-card1"))[0].action == "skipped"  # already drained
    assert act.take(alert("card_failed", "node0001-card0", "resolved")) == []  # card1 still fails
    [resumed] = act.take(alert("card_failed", "node0001-card1", "resolved"))
    assert resumed.action == "resume" and len(run.commands) == 2


def test_a_worker_taking_over_the_alerts_knows_the_other_workers_drains_and_cap(tmp_path: Path) -> None:
    run_a, run_b, now = Recorder(), Recorder(), [1_800_000_000.0]
    names = {"node0001": "gpu-a01"}
    a = Actions((RULE,), small_topology(), names, str(tmp_path), "wa", False, run_a, lambda: now[0])
    b = Actions((RULE,), small_topology(), names, str(tmp_path), "wb", False, run_b, lambda: now[0])
    a.take(alert("card_failed", "node0001-card3"))  # worker a drains, then its alerts partition moves to b
    a.take(alert("node_down", "node0002"))
    assert b.take(alert("node_down", "node0003"))[0].action == "skipped"  # the cap counts a's drains
    [resumed] = b.take(alert("card_failed", "node0001-card3", "resolved"))  # b resumes what a drained
    assert resumed.action == "resume" and run_b.commands == [["scontrol", "update", "NodeName=gpu-a01", "State=RESUME"]]
