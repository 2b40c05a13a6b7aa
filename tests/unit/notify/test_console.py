"""What `clusterpulse run` prints: a root cause and a count of what it groups, not a line per
consequence (unless --verbose)."""

from pipeline.eval.evaluate import run_offline
from pipeline.notify.console import ConsoleAlerts
from pipeline.settings import Settings
from producers.scenario import parse_scenario

DEAD_LEAF = {
    "name": "dead-leaf",
    "seed": 3,
    "duration_s": 150,
    "noise": {"profile": "clean", "nic_reports": 1},
    "cluster": {"cards": 512, "cards_per_node": 8, "nodes_per_leaf": 16, "spines": 4},
    "jobs": [{"name": "train", "first_node": 0, "nodes": 64, "step_s": 1.0}],
    "faults": [{"kind": "switch_failure", "target": "leaf005", "start_s": 40, "duration_s": 60}],
}


def printed(verbose: bool) -> tuple[list[str], list]:
    scenario = parse_scenario(DEAD_LEAF)
    alerts = run_offline(scenario, Settings().for_scenario(scenario))
    console = ConsoleAlerts(verbose)
    lines: list[str] = []
    for alert in alerts:
        lines += console.take(alert)
    return lines + console.flush(), alerts


def test_a_dead_leaf_is_one_line_and_a_count_of_what_it_groups() -> None:
    lines, alerts = printed(verbose=False)
    grouped = [a for a in alerts if a.root_cause and a.status == "firing"]
    assert len(grouped) >= 16  # its host links at least: the point of folding them
    kinds = {a.kind for a in grouped}
    roots = [line for line in lines if "switch_down" in line and "leaf005:" in line]
    assert [r.split()[1] for r in roots] == ["FIRING", "RESOLVED"]
    counts = ", ".join(
        f"{n} {k}" for k, n in sorted(((k, sum(a.kind == k for a in grouped)) for k in kinds), key=lambda kn: -kn[1])
    )
    assert kinds == {"link_down", "job_hang"}  # the job behind the leaf stalls: its hang is the leaf's too
    assert f"    └ switch_down leaf005 groups {len(grouped)} alerts: {counts} (--verbose lists them)" in lines
    # the job goes on once its links are back, before the leaf's own recovery hysteresis ends
    assert "    └ switch_down leaf005 resolved with it: 1 alert: 1 job_hang (--verbose lists them)" in lines
    assert any(line.startswith("    └ switch_down leaf005 resolved with it: 20 alerts") for line in lines)
    assert len(lines) == 5, lines  # nothing else: no line per link


def test_verbose_prints_every_consequence_under_its_root() -> None:
    lines, alerts = printed(verbose=True)
    assert len(lines) == len(alerts)
    assert sum(line.startswith("    ") and "(caused by" in line for line in lines) == sum(
        a.root_cause is not None for a in alerts
    )
