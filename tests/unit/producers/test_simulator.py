"""The simulator: deterministic, names per the spec, faults touch only their targets (and the
documented consequences), confounders leave no persistent anomaly, counters are monotonic."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest

from pipeline.model.schemas import PORT, decode_batch
from pipeline.model.topics import CARD_TELEMETRY, PORT_TELEMETRY, STEP_TELEMETRY
from producers.scenario import parse_scenario
from producers.simulator import Simulator, poisson

SMALL = {"cards": 64, "cards_per_node": 8, "nodes_per_leaf": 4, "spines": 2}
# 8 nodes; 2 leaves per rail -> 16 leaves; node i, NIC j on leaf 2j + i // 4
JOBS = [
    {"name": "a", "first_node": 0, "nodes": 4, "step_s": 1.0},
    {"name": "b", "first_node": 4, "nodes": 2, "step_s": 0.8},
]  # nodes 6, 7 idle
START_MS = 1_767_225_600_000


def sec(ts_ms: int) -> int:
    return (ts_ms - START_MS) // 1000


def small(faults: list[dict], **over: object) -> dict:
    return {"seed": 5, "duration_s": 60, "cluster": SMALL, "jobs": JOBS, "faults": faults, **over}


def messages(data: dict) -> list[tuple[int, str, str, bytes]]:
    sim = Simulator(parse_scenario(data))
    return [(ts, m.topic.suffix, m.key, m.value) for ts, msgs in sim.ticks() for m in msgs]


def signals(data: dict) -> dict[tuple[str, str], list]:
    """(dataset, entity) -> [(ts, values...)] for every card, card event, link end and rank."""
    sc = parse_scenario(data)
    topo = sc.topology
    out: dict[tuple[str, str], list] = defaultdict(list)
    for ts, msgs in Simulator(sc).ticks():
        for m, b in ((message, b) for message in msgs for b in decode_batch(message.value).split()):
            if m.topic == CARD_TELEMETRY:
                rows = [c.name for c in b.schema.group_columns("rows")]
                for i, card in enumerate(b.columns["card"].tolist()):
                    out[("card", f"{b.source}-card{card}")].append((ts, *(b.columns[c][i].item() for c in rows)))
                for card, code in zip(b.columns["err_card"].tolist(), b.columns["err_code"].tolist()):
                    out[("event", f"{b.source}-card{card}")].append((ts, code))
            elif m.topic == PORT_TELEMETRY:
                cols = [c.name for c in PORT.columns]
                for i, port in enumerate(b.columns["port"].tolist()):
                    link = topo.port_link(b.source, port)
                    out[("port", f"{b.source}:{link}")].append((ts, *(b.columns[c][i].item() for c in cols)))
            else:
                assert m.topic == STEP_TELEMETRY
                for i, rank in enumerate(b.columns["rank"].tolist()):
                    out[("step", f"{b.job}/{rank}")].append(
                        (
                            ts,
                            b.columns["step"][i].item(),
                            b.columns["compute_s"][i].item(),
                            b.columns["wait_s"][i].item(),
                        )
                    )
    return out


def changed(faults: list[dict]) -> set[tuple[str, str]]:
    base, hit = signals(small([])), signals(small(faults))
    return {key for key in base.keys() | hit.keys() if base.get(key) != hit.get(key)}


def job_consequences(job: str, nodes: range) -> set[tuple[str, str]]:
    """What a stalled job changes: its ranks' steps, its cards' load, its links' and the fabric's traffic."""
    sig = signals(small([]))
    node_names = {f"node{n:04d}" for n in nodes}
    return {
        key
        for key in sig
        if (key[0] == "step" and key[1].startswith(f"{job}/"))
        or (key[0] == "card" and key[1].split("-")[0] in node_names)
        or (key[0] == "port" and (key[1].split(":")[1].split("-")[0] in node_names or "spine" in key[1]))
    }


def test_same_scenario_and_seed_give_identical_bytes() -> None:
    faults = [
        {"kind": "straggler", "target": "node0001-card3", "start_s": 5},
        {"kind": "link_flap", "target": "node0002-nic1~leaf002", "start_s": 10},
    ]
    first = messages(small(faults))
    assert first == messages(small(faults))
    assert first != messages(small(faults, seed=6))


def test_ground_truth_is_apart_from_the_telemetry() -> None:
    data = small([{"kind": "card_failure", "target": "node0001-card3", "start_s": 20}])
    sim = Simulator(parse_scenario(data))
    assert [(t.kind, t.target, t.start, t.end) for t in sim.ground_truth()] == [
        ("card_failure", "node0001-card3", "2026-01-01T00:00:20.000Z", "2026-01-01T00:01:00.000Z")
    ]
    for _, _, key, value in messages(data):
        assert b"card_failure" not in value and b"fault" not in value
        assert key.startswith(("node", "leaf", "spine", "a", "b"))


def test_straggler_slows_only_its_rank_and_makes_peers_wait() -> None:
    diff = changed(
        [{"kind": "straggler", "target": "node0001-card3", "start_s": 20, "duration_s": 20, "severity": 0.3}]
    )
    assert diff and all(k[0] == "step" and k[1].startswith("a/") for k in diff)
    hit = signals(
        small([{"kind": "straggler", "target": "node0001-card3", "start_s": 20, "duration_s": 20, "severity": 0.3}])
    )
    during = [r for r in hit[("step", "a/11")] if 25 <= sec(r[0]) <= 38]
    peer = [r for r in hit[("step", "a/0")] if 25 <= sec(r[0]) <= 38]
    assert np.mean([r[2] for r in during]) > 1.2 * np.mean([r[2] for r in peer])  # its compute
    assert np.mean([r[3] for r in peer]) > 0.2  # peers wait for it


def test_thermal_throttle_heats_its_card_and_slows_its_rank() -> None:
    fault = {"kind": "thermal_throttle", "target": "node0001-card3", "start_s": 10, "duration_s": 40}
    diff = changed([fault])
    assert ("card", "node0001-card3") in diff
    assert diff <= {("card", "node0001-card3")} | {k for k in diff if k[0] == "step" and k[1].startswith("a/")}
    rows = signals(small([fault]))[("card", "node0001-card3")]
    temp = {sec(r[0]): r[2 + 3] for r in rows}  # card, util, clock, power, temp
    clock = {sec(r[0]): r[2 + 1] for r in rows}
    assert temp[49] > temp[9] + 8 and clock[49] < clock[9] - 150


@pytest.mark.parametrize(
    "link, ends",
    [
        ("node0001-nic2~leaf004", {"leaf004"}),
        ("leaf003~spine001", {"leaf003", "spine001"}),
    ],
)
def test_link_degradation_changes_only_that_link(link: str, ends: set[str]) -> None:
    diff = changed([{"kind": "link_degradation", "target": link, "start_s": 20, "severity": 0.5}])
    assert diff == {("port", f"{end}:{link}") for end in ends}


def test_link_down_and_flap_stall_the_job_behind_the_link() -> None:
    link = "node0001-nic2~leaf004"
    allowed = {("port", f"leaf004:{link}")} | job_consequences("a", range(0, 4))
    for kind in ("link_down", "link_flap"):
        diff = changed([{"kind": kind, "target": link, "start_s": 20, "duration_s": 20}])
        assert ("port", f"leaf004:{link}") in diff and diff <= allowed, kind
        assert not any(k[1].startswith(("b/", "node0004", "node0006")) for k in diff if k[0] != "port")


def test_card_failure_reports_a_fatal_code_then_silence() -> None:
    fault = {"kind": "card_failure", "target": "node0001-card3", "start_s": 20, "duration_s": 20}
    diff = changed([fault])
    assert diff <= {("card", "node0001-card3"), ("event", "node0001-card3")} | job_consequences("a", range(0, 4))
    sig = signals(small([fault]))
    assert [(sec(ts), code) for ts, code in sig[("event", "node0001-card3")]] == [(20, 79)]
    seen = {sec(r[0]) for r in sig[("card", "node0001-card3")]}
    assert seen == set(range(0, 20)) | set(range(40, 60))


def test_ascend_clusters_report_ascend_error_codes() -> None:
    sig = signals(
        small(
            [{"kind": "card_failure", "target": "node0001-card3", "start_s": 20}], cluster={**SMALL, "vendor": "ascend"}
        )
    )
    assert [code for _, code in sig[("event", "node0001-card3")]] == [0x8C03A000]


def test_ecc_error_raises_the_double_bit_counter_of_its_card_only() -> None:
    fault = {"kind": "ecc_error", "target": "node0006-card1", "start_s": 20, "severity": 2.0}
    diff = changed([fault])
    assert diff == {("card", "node0006-card1"), ("event", "node0006-card1")}
    sig = signals(small([fault]))
    dbe = [r[1 + 7] for r in sig[("card", "node0006-card1")]]  # card, util, clock, power, temp, mem, sbe, dbe
    assert dbe[19] == 0 and dbe[20] >= 1 and dbe == sorted(dbe)
    assert {code for _, code in sig[("event", "node0006-card1")]} == {48}


def test_node_failure_silences_every_card_and_downs_its_links() -> None:
    fault = {"kind": "node_failure", "target": "node0005", "start_s": 20, "duration_s": 20}
    diff = changed([fault])
    own = {k for k in signals(small([])) if "node0005" in k[1]}
    assert diff <= own | job_consequences("b", range(4, 6))
    sig = signals(small([fault]))
    assert {sec(r[0]) for r in sig[("card", "node0005-card0")]} == set(range(20)) | set(range(40, 60))
    port = sig[("port", "leaf009:node0005-nic4~leaf009")]  # rail 4: leaf 2 * 4 + 5 // 4
    oper = {sec(r[0]): r[2] for r in port}
    assert oper[19] == 1 and oper[20] == 0 and oper[39] == 0 and oper[40] == 1


def test_leaf_failure_silences_the_leaf_and_stalls_the_jobs_behind_it() -> None:
    fault = {"kind": "switch_failure", "target": "leaf004", "start_s": 20, "duration_s": 20}  # rail 2, nodes 0-3
    diff = changed([fault])
    allowed = {k for k in signals(small([])) if "leaf004" in k[1]} | job_consequences("a", range(0, 4))
    assert diff <= allowed and ("port", "leaf004:node0001-nic2~leaf004") in diff
    sig = signals(small([fault]))
    seen = {sec(r[0]) for r in sig[("port", "leaf004:node0001-nic2~leaf004")]}
    assert seen == set(range(20)) | set(range(40, 60))
    uplink = {sec(r[0]): r[2] for r in sig[("port", "spine000:leaf004~spine000")]}
    assert uplink[19] == 1 and uplink[20] == 0 and uplink[40] == 1


def test_spine_failure_touches_only_its_fabric_links() -> None:
    diff = changed([{"kind": "switch_failure", "target": "spine001", "start_s": 20, "duration_s": 20}])
    assert diff and all(k[0] == "port" and k[1].endswith("~spine001") for k in diff)


def test_counters_never_decrease_except_on_a_documented_reset() -> None:
    faults = [
        {"kind": "node_failure", "target": "node0002", "start_s": 10, "duration_s": 10},
        {"kind": "switch_failure", "target": "leaf005", "start_s": 15, "duration_s": 10},
        {"kind": "link_degradation", "target": "node0003-nic0~leaf000", "start_s": 5},
        {"kind": "ecc_error", "target": "node0007-card7", "start_s": 5},
    ]
    sig = signals(small(faults, noise={"transient_spikes_per_hour": 3600, "background_crc_per_hour": 3600}))
    counter_cols = {"card": range(7, 11), "port": range(3, 12)}
    decreased = set()
    for (dataset, entity), rows in sig.items():
        if dataset not in counter_cols:
            continue
        values = np.array([[r[i] for i in counter_cols[dataset]] for r in rows], dtype=np.float64)
        if (np.diff(values, axis=0) < 0).any():
            decreased.add(entity)
    # node0002 restarts at t=20 (its card counters reset); leaf005 at t=25 (its ports' counters reset)
    assert decreased and all(e.startswith("node0002-card") or e.startswith("leaf005:") for e in decreased)


def test_confounders_leave_no_persistent_anomaly() -> None:
    noise = {
        "transient_spikes_per_hour": 1800,
        "background_crc_per_hour": 600,
        "checkpoint_every_s": 60,
        "checkpoint_s": 10,
        "step_jitter": 0.03,
    }
    sig = signals(small([], duration_s=300, noise=noise))
    spikes = 0
    for (dataset, entity), rows in sig.items():
        if dataset == "card":
            hot = np.array([r[5] for r in rows]) > 80  # temperature spike
            spikes += hot.sum()
            assert not (hot[1:] & hot[:-1]).any(), f"{entity} hot two ticks in a row"
        if dataset == "port":
            crc = np.diff([r[5] for r in rows]) > 0
            assert not (crc[1:] & crc[:-1]).any(), f"{entity} CRC errors two ticks in a row"
    assert spikes > 20  # the confounders did happen
    by_step: dict[tuple[str, int], list[float]] = defaultdict(list)
    for (dataset, entity), rows in sig.items():
        if dataset == "step":
            for _, step, compute, _ in rows:
                by_step[(entity.split("/")[0], step)].append(compute)
    medians = {k: np.median(v) for k, v in by_step.items()}
    assert max(medians.values()) > 5 * min(medians.values())  # checkpoint steps are long for every rank
    worst = max(max(v) / medians[k] for k, v in by_step.items())
    assert worst < 1 + 6 * noise["step_jitter"]  # no rank stands out, checkpoint or not


def test_poisson_draws_a_fixed_amount_whatever_the_rate() -> None:
    a, b = np.random.default_rng(3), np.random.default_rng(3)
    poisson(a, np.full(100, 0.01))
    poisson(b, np.full(100, 25.0))
    assert a.random() == b.random()
    x = poisson(np.random.default_rng(4), np.full(100_000, 4.0))
    assert abs(x.mean() - 4.0) < 0.05 and abs(x.var() - 4.0) < 0.15


def test_collector_messages_fit_kafkas_default_limit_at_100k_cards() -> None:
    """A rack, up to 512 nodes of a job, up to 8 switches or 4,096 ports per message: under Kafka's
    1 MB default even for a 100,000-card cluster, and every source always under the same key."""
    from pathlib import Path

    from producers.scenario import load_scenario

    sim = Simulator(load_scenario(Path(__file__).resolve().parents[3] / "scenarios" / "cluster-100k.yaml"))
    key_of: dict[tuple[str, str], str] = {}
    for _, (_, msgs) in zip(range(3), sim.ticks()):
        for m in msgs:
            assert len(m.value) < 1_000_000, (m.topic.suffix, m.key, len(m.value))
            for part in decode_batch(m.value).split():
                assert key_of.setdefault((m.topic.suffix, part.source), m.key) == m.key
    assert len({s for t, s in key_of if t == "telemetry.card"}) == 12_500


def test_the_realistic_profile_makes_a_healthy_cluster_untidy() -> None:
    """Persistent per-card offsets, healthy links with errors now and then, missed samples,
    counter resets and a job-wide step time that drifts (`noise: {profile: realistic}`); raised
    rates here so a 5-minute run shows each."""
    noise = {
        "profile": "realistic",
        "link_errors_per_hour": 60,
        "missing_sample_rate": 0.02,
        "counter_resets_per_hour": 120,
        "checkpoint_every_s": 0,
        "transient_spikes_per_hour": 0,
    }
    sig = signals(small([], duration_s=300, noise=noise))
    temps = {e: np.array([r[5] for r in rows]) for (d, e), rows in sig.items() if d == "card"}
    first = {e: v[60:180].mean() for e, v in temps.items()}
    second = {e: v[180:].mean() for e, v in temps.items()}
    names = sorted(first)
    assert np.corrcoef([first[e] for e in names], [second[e] for e in names])[0, 1] > 0.9  # offsets persist
    assert min(len(v) for v in temps.values()) < 300  # some samples were never sent
    crc = [rows[-1][5] - rows[0][5] for (d, _), rows in sig.items() if d == "port"]
    assert sum(1 for c in crc if c > 0) > len(crc) / 4  # healthy links see errors
    resets = [
        e
        for (d, e), rows in sig.items()
        if d in ("card", "port")
        and (np.diff(np.array([r[7 if d == "card" else 3] for r in rows], np.float64)) < 0).any()
    ]
    assert resets  # counters started again at 0 somewhere
    steps: dict[int, list[float]] = defaultdict(list)
    for (d, e), rows in sig.items():
        if d == "step" and e.startswith("a/"):
            for _, step, compute, _ in rows:
                steps[step].append(compute)
    pace = np.array([np.median(steps[s]) for s in sorted(steps)])
    assert np.corrcoef(pace[:-1], pace[1:])[0, 1] > 0.5  # slow and fast stretches, not white noise
    clean = signals(small([], duration_s=60))
    assert clean == signals(small([], duration_s=60, noise={"profile": "clean"}))


def test_late_messages_and_collector_clocks_of_the_realistic_profile() -> None:
    """A late message arrives after the next tick's, stamped with its own time; each collector
    stamps with its own clock, off by at most 2 sd; nothing is lost."""
    noise = {"late_message_rate": 0.05, "clock_skew_ms": 40}
    sim = Simulator(parse_scenario(small([], noise=noise)))
    offsets: dict[str, set[int]] = defaultdict(set)
    late = 0
    for ts, msgs in sim.ticks():
        for m in msgs:
            if m.topic == STEP_TELEMETRY:
                continue
            behind = ts - decode_batch(m.value).ts_ms
            late += behind > 500
            offsets[m.key].add(behind - 1000 if behind > 500 else behind)
    assert late > 5
    assert all(len(o) == 1 and abs(next(iter(o))) <= 80 for o in offsets.values()), offsets  # one clock each
    assert len({next(iter(o)) for o in offsets.values()}) > 3
    count = lambda data: sum(1 for _ in messages(data))  # noqa: E731
    assert count(small([], noise=noise)) == count(small([], noise={"clock_skew_ms": 40}))


@pytest.mark.parametrize("silent", [0.0, 1.0])
def test_card_failures_with_and_without_a_fatal_code(silent: float) -> None:
    sig = signals(
        small(
            [{"kind": "card_failure", "target": "node0002-card3", "start_s": 20}],
            noise={"silent_failure_share": silent},
        )
    )
    assert max(ts for ts, *_ in sig[("card", "node0002-card3")]) == START_MS + 19_000
    assert sig[("event", "node0002-card3")] == ([] if silent else [(START_MS + 20_000, 79)])
    data = small(
        [{"kind": "card_failure", "target": "node0002-card3", "start_s": 20}], noise={"silent_failure_share": silent}
    )
    assert Simulator(parse_scenario(data)).silent_card_failures() == ({"node0002-card3"} if silent else set())


def test_an_ecc_fault_whose_card_fails_after_it() -> None:
    noise = {"ecc_failure_share": 1.0, "ecc_failure_after_s": 15, "silent_failure_share": 0.0}
    sig = signals(small([{"kind": "ecc_error", "target": "node0002-card3", "start_s": 20}], noise=noise))
    assert max(ts for ts, *_ in sig[("card", "node0002-card3")]) == START_MS + 34_000
    events = sig[("event", "node0002-card3")]
    assert events[0] == (START_MS + 20_000, 48) and events[-1] == (START_MS + 35_000, 79)


def test_job_restarts_resume_from_the_last_checkpoint_after_a_pause() -> None:
    noise = {
        "job_restarts_per_hour": 30,
        "restart_s": 30,
        "restart_warmup_steps": 2,
        "checkpoint_every_s": 40,
        "checkpoint_s": 2,
        "step_jitter": 0.0,
    }
    sig = signals(small([], duration_s=600, noise=noise))
    rows = sig[("step", "a/0")]
    steps = [step for _, step, _, _ in rows]
    back = [i for i in range(1, len(steps)) if steps[i] <= steps[i - 1]]
    assert back, "no restart in 10 minutes at 30 an hour"
    i = back[0]
    assert rows[i][0] - rows[i - 1][0] >= 30_000  # paused for the restart
    assert rows[i][2] > 1.8 * rows[i + 2][2]  # a warm-up step is twice as slow
    assert steps[i] >= 1 and all(steps[j] == steps[j - 1] + 1 for j in range(i + 1, i + 5))
