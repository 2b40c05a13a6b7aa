"""Every canned query in sql/ against answers computed here, in plain Python, from the fixture's
own inputs (never by running SQL): a 31 s scenario on a tiny lake.

The scenario (seconds after START_MS):
- the fleet (node0000, node0001, leaf000, spine000) reports every second from 0 to 30;
- job `steady` (node0000, ranks 0..3) steps every second from 1 to 28, but none finish between 10
  and 16 (a 6 s stall); rank 2 computes 0.25 s slower;
- job `stalled` (node0001, ranks 0..3) steps every 2 s from 2 to 12; node0001 card 1 fails at 13
  (XID 79, no sample after) and the job makes no progress for the rest of the run;
- leaf000 reboots: silent at 18 and 19, back at 20 with every counter restarted from zero; its
  host link to node0001 had 1,000 CRC errors from before the run and gains more while it runs;
- alerts: the failed card, the leaf with two links as its consequences, and a straggler that fires
  twice (resolved in between).
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from pipeline.lake.parquet import ParquetSink
from pipeline.lake.query import run_query
from pipeline.model.schemas import PORT, Alert, Batch, iso_utc
from tests.builders import START_MS, card_batch, small_topology, step_batch
from tests.conftest import ROOT

SQL = ROOT / "sql"
TOPO = small_topology()
FLEET_TICKS = range(0, 31)  # every telemetry source reports at these seconds
NODES = ("node0000", "node0001")
FAILED_CARD = ("node0001", 1, 13)  # node, card, second it fails (an XID event, no sample from then on)
SWITCHES = ("leaf000", "spine000")
REBOOT = ("leaf000", (18, 19), 20)  # switch, seconds it is silent, second it is back with counters at 0
RANKS = (0, 1, 2, 3)
JOB_STEP_TIMES = {
    "steady": [t for t in range(1, 29) if not 10 < t < 16],
    "stalled": list(range(2, 13, 2)),
}
JOB_NODE = {"steady": "node0000", "stalled": "node0001"}
WAIT_S = 0.1


def ts(t: float) -> str:
    """The ISO time of second `t` of the scenario, as parameters are given."""
    return iso_utc(START_MS + int(t * 1000))


def sec(value: str) -> float:
    """Scenario seconds of a timestamp as the JSON output shows it."""
    ms = np.datetime64(value.replace(" ", "T").replace("+00:00", "").replace("Z", ""), "ms").astype(np.int64)
    return (int(ms) - START_MS) / 1000


# ---- inputs ----------------------------------------------------------------------------------


def compute_s(job: str, rank: int, step: int) -> float:
    """Compute time of one rank's step, exactly representable as float32 (the column's type)."""
    value = 1.0 + ((7 * rank + 3 * step) % 11) / 64 + rank / 256
    if job == "steady" and rank == 2:
        value += 0.25
    return float(np.float32(value))


def card_present(node: str, card: int, t: int) -> bool:
    f_node, f_card, f_t = FAILED_CARD
    return not (node == f_node and card == f_card and t >= f_t)


def temp_c(node: str, card: int, t: int) -> float:
    return 50.0 + card + (10 if node == "node0001" else 0) + 0.5 * t


@dataclass
class PortSample:
    switch: str
    port: int
    t: int
    oper_up: int
    rx_bytes: int
    crc_errors: int
    symbol_errors: int
    fec_corrected: int
    drops: int
    pfc_pause: int
    carrier_transitions: int


def port_samples() -> list[PortSample]:
    """Cumulative counters per (switch, port, second), with the leaf's reboot."""
    out = []
    leaf, silent, back = REBOOT
    for switch in SWITCHES:
        ports = TOPO.switch_ports(switch)
        for port in range(ports):
            base = {
                "crc_errors": 0,
                "symbol_errors": 0,
                "fec_corrected": 0,
                "drops": 0,
                "rx_bytes": 0,
                "pfc_pause": 0,
                "carrier_transitions": 0,
            }
            if (switch, port) == ("leaf000", 1):  # node0001-nic0~leaf000: errors from before the run
                base.update(crc_errors=1000, symbol_errors=40, fec_corrected=5000, drops=7)
            since = 0  # seconds of counting since the counters last started
            for t in FLEET_TICKS:
                if switch == leaf and t in silent:
                    continue
                if switch == leaf and t == back:
                    base = dict.fromkeys(base, 0)
                    since = 0
                s = since
                up = 0 if (switch, port) == ("spine000", 0) and t in silent else 1  # leaf000~spine000 seen down
                rates = {
                    "rx_bytes": 12_500_000_000 * (port + 1),
                    "pfc_pause": port,
                    "crc_errors": port % 3 + (4 if (switch, port) == ("leaf000", 1) else 0),
                    "symbol_errors": 1 if (switch, port) == ("leaf000", 1) else 0,
                    "fec_corrected": 10 + port,
                    "drops": 1 if port == 4 else 0,
                }
                values = {k: base[k] + rates.get(k, 0) * s for k in base}
                if (switch, port) == ("spine000", 0):
                    values["carrier_transitions"] = (1 if t >= silent[0] else 0) + (1 if t >= back else 0)
                out.append(PortSample(switch, port, t, up, **values))
                since += 1
    return out


def alerts() -> list[Alert]:
    def alert(
        kind: str,
        entity: str,
        t: float,
        status: str = "firing",
        root: Alert | None = None,
        end: float | None = None,
        evidence: dict | None = None,
    ) -> Alert:
        return Alert(
            kind=kind,
            entity=entity,
            status=status,
            starts_at=ts(t),
            ends_at=ts(end) if end is not None else None,
            severity="critical",
            summary=f"{entity} {kind}",
            root_cause=root.id if root else None,
            evidence=evidence or {},
        )

    leaf_down = alert(
        "switch_down",
        "leaf000",
        18,
        evidence={"blast_radius": {"cards": 4, "nodes": 4, "links": 6, "jobs": ["stalled", "steady"]}},
    )
    return [
        alert("straggler", "node0000-card2", 3, evidence={"blast_radius": {"cards": 1, "jobs": ["steady"]}}),
        alert("straggler", "node0000-card2", 3, "resolved", end=9),
        alert("card_failed", "node0001-card1", 13, evidence={"blast_radius": {"cards": 1, "jobs": ["stalled"]}}),
        leaf_down,
        alert("link_down", "leaf000~spine000", 18, root=leaf_down),
        alert("link_down", "node0001-nic0~leaf000", 18, root=leaf_down),
        alert("link_down", "node0001-nic0~leaf000", 18, "resolved", root=leaf_down, end=20),
        alert("switch_down", "leaf000", 18, "resolved", end=21),
        alert("straggler", "node0000-card2", 22, evidence={"blast_radius": {"cards": 1, "jobs": ["steady"]}}),
    ]


@dataclass
class StepRow:
    job: str
    step: int
    t: int
    rank: int
    compute_s: float


def step_rows() -> list[StepRow]:
    return [
        StepRow(job, i, t, r, compute_s(job, r, i))
        for job, times in JOB_STEP_TIMES.items()
        for i, t in enumerate(times)
        for r in RANKS
    ]


def card_rows() -> list[tuple[str, int, int]]:
    return [(n, c, t) for t in FLEET_TICKS for n in NODES for c in range(8) if card_present(n, c, t)]


def fleet_last_second() -> int:
    return max([t for _, _, t in card_rows()] + [p.t for p in port_samples()] + [s.t for s in step_rows()])


# ---- the lake ---------------------------------------------------------------------------------


def build_lake(root: Path) -> Path:
    sink = ParquetSink(root, topology=TOPO)
    offset = 0

    def add(topic: str, batch: Batch) -> None:
        nonlocal offset
        sink.add_batch(topic, 0, offset, batch)
        offset += 1

    for t in FLEET_TICKS:
        for node in NODES:
            cards = [c for c in range(8) if card_present(node, c, t)]
            errors = [(FAILED_CARD[1], 79)] if (node, t) == (FAILED_CARD[0], FAILED_CARD[2]) else []
            b = card_batch(node, t, cards=cards, errors=errors)
            b.columns["temp_c"] = np.array([temp_c(node, c, t) for c in cards], "<f4")
            add("cp.telemetry.card", b)
    samples = port_samples()
    for t in FLEET_TICKS:
        for switch in SWITCHES:
            rows = sorted((p for p in samples if p.switch == switch and p.t == t), key=lambda p: p.port)
            if not rows:
                continue
            cols = {c.name: np.zeros(len(rows), c.dtype) for c in PORT.columns}
            for name in cols:
                if name != "ecn_marks" and name != "tx_bytes":
                    cols[name] = np.array([getattr(p, name) for p in rows], cols[name].dtype)
            add("cp.telemetry.port", Batch(kind="port", source=switch, ts_ms=START_MS + t * 1000, columns=cols))
    for job, times in JOB_STEP_TIMES.items():
        for i, t in enumerate(times):
            add(
                "cp.telemetry.step",
                step_batch(JOB_NODE[job], job, t, list(RANKS), i, [compute_s(job, r, i) for r in RANKS], wait=WAIT_S),
            )
    for i, a in enumerate(alerts()):
        sink.add_alert("cp.alerts", 0, i, a)
    sink.flush_all()
    return root


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_lake(tmp_path_factory.mktemp("answers"))


def query(lake: Path, name: str, **params: str) -> list[dict]:
    return json.loads(run_query(lake, str(SQL / f"{name}.sql"), params, "json").text)


def close(actual: float | None, expected: float | None, decimals: int) -> bool:
    """Equal up to the query's rounding to `decimals` places."""
    if actual is None or expected is None:
        return actual is None and expected is None
    return abs(actual - expected) <= 0.5 * 10**-decimals + 1e-9


# ---- job_goodput ------------------------------------------------------------------------------


def expected_goodput(end: float | None = None) -> dict[str, dict]:
    """Per job, over its first step to the window's end (the end given, else the fleet's last sample)."""
    fleet_end = fleet_last_second()
    window_end = fleet_end if end is None else min(end, fleet_end)
    out = {}
    for job in JOB_STEP_TIMES:
        rows = [s for s in step_rows() if s.job == job and (end is None or s.t < end)]
        by_step: dict[int, list[StepRow]] = {}
        for s in rows:
            by_step.setdefault(s.step, []).append(s)
        times = [min(s.t for s in by_step[i]) for i in sorted(by_step)]
        straggler = sum(
            max(s.compute_s for s in v) - statistics.median(s.compute_s for s in v) for v in by_step.values()
        )
        intervals = [b - a for a, b in zip(times, times[1:])]
        median = statistics.median(intervals)
        gaps = intervals + [window_end - times[-1]]  # the last one: no step since, up to the window's end
        stall = sum(g - median for g in gaps if g > 3 * median)
        wall = window_end - times[0]
        out[job] = {
            "ranks": len(RANKS),
            "steps": len(times),
            "median_step_interval_s": median,
            "wall_s": wall,
            "stall_s": stall,
            "straggler_s": straggler,
            "goodput": 1 - (stall + straggler) / wall,
            "last_step_at": times[-1],
            "window_end": window_end,
        }
    return out


def check_job_goodput(rows: list[dict], expected: dict[str, dict]) -> None:
    assert sorted(r["job"] for r in rows) == sorted(expected)
    for row in rows:
        want = expected[row["job"]]
        assert (row["ranks"], row["steps"]) == (want["ranks"], want["steps"]), row
        assert close(row["median_step_interval_s"], want["median_step_interval_s"], 3), row
        assert close(row["wall_s"], want["wall_s"], 3), (row, want)
        assert close(row["stall_s"], want["stall_s"], 1), (row, want)
        assert close(row["straggler_s"], want["straggler_s"], 1), (row, want)
        assert close(row["goodput"], want["goodput"], 4), (row, want)
    assert [r["goodput"] for r in rows] == sorted(r["goodput"] for r in rows)


def test_job_goodput_counts_a_job_that_stopped_stepping_as_stalled_to_the_end(lake: Path) -> None:
    rows = {r["job"]: r for r in query(lake, "job_goodput")}
    # by hand from the scenario: steps every 2 s from 2 to 12, then nothing while the fleet reports to 30
    times = JOB_STEP_TIMES["stalled"]
    median = 2
    fleet_end = fleet_last_second()
    assert fleet_end == 30 and times[-1] == 12
    stall = (fleet_end - times[-1]) - median
    wall = fleet_end - times[0]
    straggler = sum(
        max(compute_s("stalled", r, i) for r in RANKS) - statistics.median(compute_s("stalled", r, i) for r in RANKS)
        for i in range(len(times))
    )
    stalled = rows["stalled"]
    assert (stalled["wall_s"], stalled["stall_s"]) == (wall, stall) == (28, 16)
    assert close(stalled["goodput"], 1 - (stall + straggler) / wall, 4)
    assert sec(stalled["last_step_at"]) == 12 and sec(stalled["window_end"]) == 30
    assert list(rows) == ["stalled", "steady"]  # worst first


def test_job_goodput_matches_python(lake: Path) -> None:
    check_job_goodput(query(lake, "job_goodput"), expected_goodput())


def test_job_goodput_window_ends_at_the_end_parameter(lake: Path) -> None:
    rows = query(lake, "job_goodput", end=ts(20))
    check_job_goodput(rows, expected_goodput(end=20))
    assert {sec(r["window_end"]) for r in rows} == {20}
    # an end past the data: the window still ends at the fleet's last sample
    check_job_goodput(query(lake, "job_goodput", end=ts(500)), expected_goodput(end=500))


# ---- top_stragglers ---------------------------------------------------------------------------


def expected_stragglers(job: str) -> list[dict]:
    rows = [s for s in step_rows() if s.job == job]
    median_of_step = {i: statistics.median(s.compute_s for s in rows if s.step == i) for i in {s.step for s in rows}}
    per_rank = []
    for rank in RANKS:
        mine = [s for s in rows if s.rank == rank]
        relative = [s.compute_s / median_of_step[s.step] for s in mine]
        per_rank.append(
            {
                "job": job,
                "node": JOB_NODE[job],
                "card": rank % 8,
                "rank": rank,
                "steps": len(mine),
                "median_relative_compute": statistics.median(relative),
                "p90_relative_compute": float(np.quantile(relative, 0.9)),
                "median_compute_s": statistics.median(s.compute_s for s in mine),
                "median_wait_s": float(np.float32(WAIT_S)),
            }
        )
    per_rank.sort(key=lambda r: (-r["median_relative_compute"], r["rank"]))
    return [dict(r, position=i + 1) for i, r in enumerate(per_rank)]


def test_top_stragglers(lake: Path) -> None:
    rows = query(lake, "top_stragglers")
    expected = [r for job in sorted(JOB_STEP_TIMES) for r in expected_stragglers(job)]
    assert [(r["job"], r["position"], r["node"], r["card"], r["rank"], r["steps"]) for r in rows] == [
        (r["job"], r["position"], r["node"], r["card"], r["rank"], r["steps"]) for r in expected
    ]
    for got, want in zip(rows, expected):
        for column in ("median_relative_compute", "p90_relative_compute", "median_compute_s", "median_wait_s"):
            assert close(got[column], want[column], 4), (column, got, want)
    assert rows[len(expected_stragglers("stalled"))]["rank"] == 2  # steady's slow rank leads its job
    # one job, two ranks
    assert [(r["job"], r["rank"]) for r in query(lake, "top_stragglers", job="steady", limit="2")] == [
        ("steady", r["rank"]) for r in expected_stragglers("steady")[:2]
    ]


# ---- link_health and link_history ---------------------------------------------------------------

COUNTERS = ("crc_errors", "symbol_errors", "fec_corrected", "drops")


def increments(samples: list[PortSample], name: str) -> list[int | None]:
    """Per-sample increase of a counter; one that went backwards restarted from zero."""
    out: list[int | None] = [None]
    for prev, cur in zip(samples, samples[1:]):
        a, b = getattr(prev, name), getattr(cur, name)
        out.append(b - a if b >= a else b)
    return out


def expected_link_health() -> dict[tuple[str, str], dict]:
    out = {}
    for switch in SWITCHES:
        for port in range(TOPO.switch_ports(switch)):
            samples = sorted((p for p in port_samples() if (p.switch, p.port) == (switch, port)), key=lambda p: p.t)
            seconds = samples[-1].t - samples[0].t
            row = {name: sum(increments(samples, name)[1:]) for name in COUNTERS}
            kind, _, nic = TOPO.parse_link(TOPO.port_link(switch, port))
            row.update(
                rail=nic if kind == "host" else None,
                seconds=seconds,
                errors_per_s=(row["crc_errors"] + row["symbol_errors"]) / seconds,
                up_share=sum(p.oper_up for p in samples) / len(samples),
            )
            out[(switch, TOPO.port_link(switch, port))] = row
    for row_key, row in out.items():  # rank(): 1 + how many in the same switch (rail) rate higher
        row["rank_in_switch"] = 1 + sum(
            other["errors_per_s"] > row["errors_per_s"] for k, other in out.items() if k[0] == row_key[0]
        )
        row["rank_in_rail"] = 1 + sum(
            other["errors_per_s"] > row["errors_per_s"] for other in out.values() if other["rail"] == row["rail"]
        )
    return out


def test_link_health_counts_errors_across_a_counter_reset(lake: Path) -> None:
    rows = query(lake, "link_health", limit="1000")
    expected = expected_link_health()
    assert len(rows) == len(expected)
    for row in rows:
        want = expected[(row["switch"], row["link"])]
        assert [row[c] for c in COUNTERS] == [want[c] for c in COUNTERS], (row, want)
        assert row["seconds"] == want["seconds"], row
        assert close(row["errors_per_s"], want["errors_per_s"], 4), (row, want)
        assert close(row["up_share"], want["up_share"], 4), (row, want)
        assert (row["rail"], row["rank_in_switch"], row["rank_in_rail"]) == (
            want["rail"],
            want["rank_in_switch"],
            want["rank_in_rail"],
        ), (row, want)
    rates = [r["errors_per_s"] for r in rows]
    assert rates == sorted(rates, reverse=True)
    # the rebooted leaf's link to node0001: 5 CRC errors a second while up, none of the 1,000 from before
    top = rows[0]
    assert (top["switch"], top["link"]) == ("leaf000", "node0001-nic0~leaf000")
    assert top["crc_errors"] == 5 * (len(FLEET_TICKS) - len(REBOOT[1]) - 2)  # no increase into the reboot


def expected_link_history(link: str, at: float, window_s: float) -> list[dict]:
    out = []
    for switch in SWITCHES:
        for port in range(TOPO.switch_ports(switch)):
            if TOPO.port_link(switch, port) != link:
                continue
            samples = sorted(
                (
                    p
                    for p in port_samples()
                    if (p.switch, p.port) == (switch, port) and at - window_s - 1 <= p.t <= at + window_s
                ),
                key=lambda p: p.t,
            )
            names = ("crc_errors", "symbol_errors", "fec_corrected", "drops", "pfc_pause", "carrier_transitions")
            inc = {name: increments(samples, name) for name in names}
            rx = increments(samples, "rx_bytes")
            for i, p in enumerate(samples):
                if p.t < at - window_s:
                    continue
                reset = i > 0 and p.rx_bytes < samples[i - 1].rx_bytes
                gbps = None if i == 0 or reset else rx[i] * 8 / 1e9 / (p.t - samples[i - 1].t)
                out.append(
                    {
                        "t": p.t,
                        "switch": switch,
                        "port": port,
                        "oper_up": p.oper_up,
                        "rx_gbps": gbps,
                        **{name: inc[name][i] for name in names},
                    }
                )
    return sorted(out, key=lambda r: (r["t"], r["switch"]))


@pytest.mark.parametrize("link", ["node0001-nic0~leaf000", "leaf000~spine000"])
def test_link_history_gives_increments_across_a_reboot(lake: Path, link: str) -> None:
    rows = query(lake, "link_history", link=link, at=ts(19), window_s="3")
    expected = expected_link_history(link, 19, 3)
    assert len(rows) == len(expected)
    for got, want in zip(rows, expected):
        assert sec(got["ts"]) == want["t"]
        for column in (
            "switch",
            "port",
            "oper_up",
            "crc_errors",
            "symbol_errors",
            "fec_corrected",
            "drops",
            "pfc_pause",
            "carrier_transitions",
        ):
            assert got[column] == want[column], (column, got, want)
        assert got["rx_gbps"] == pytest.approx(want["rx_gbps"]), (got, want)


# ---- alerts: fault_timeline, blast_radius, fleet_failure_rates -----------------------------------


def firing_in(start: float | None) -> list[Alert]:
    return [a for a in alerts() if a.status == "firing" and (start is None or sec(a.starts_at) >= start)]


def expected_timeline(start: float | None = None) -> list[dict]:
    every_firing = {a.id: a for a in alerts() if a.status == "firing"}
    out = []
    for a in firing_in(start):
        ends = [
            sec(r.ends_at)
            for r in alerts()
            if r.status == "resolved" and r.id == a.id and sec(r.ends_at) >= sec(a.starts_at)
        ]
        end = min(ends) if ends else None
        cause = every_firing.get(a.root_cause)
        out.append(
            {
                "starts_at": sec(a.starts_at),
                "ends_at": end,
                "duration_s": None if end is None else end - sec(a.starts_at),
                "kind": a.kind,
                "entity": a.entity,
                "is_root_cause": a.root_cause is None,
                "root_cause_kind": cause.kind if cause else None,
                "root_cause_entity": cause.entity if cause else None,
            }
        )
    return sorted(out, key=lambda r: (r["starts_at"], r["kind"], r["entity"]))


@pytest.mark.parametrize("start", [None, 10])
def test_fault_timeline(lake: Path, start: float | None) -> None:
    rows = query(lake, "fault_timeline", **({"start": ts(start)} if start is not None else {}))
    got = [
        {
            "starts_at": sec(r["starts_at"]),
            "ends_at": sec(r["ends_at"]) if r["ends_at"] else None,
            **{
                k: r[k]
                for k in ("duration_s", "kind", "entity", "is_root_cause", "root_cause_kind", "root_cause_entity")
            },
        }
        for r in rows
    ]
    assert got == expected_timeline(start)


def expected_blast_radius(start: float | None = None) -> list[dict]:
    firing = [a for a in alerts() if a.status == "firing"]
    out = []
    for root in (a for a in firing_in(start) if a.root_cause is None):
        consequences = {a.id: a.kind for a in firing if a.root_cause == root.id}
        radius = root.evidence.get("blast_radius", {})
        out.append(
            {
                "starts_at": sec(root.starts_at),
                "kind": root.kind,
                "entity": root.entity,
                "consequences": len(consequences),
                "consequence_kinds": sorted(set(consequences.values())) or None,
                "cards": radius.get("cards"),
                "nodes": radius.get("nodes"),
                "links": radius.get("links"),
                "jobs": ", ".join(radius["jobs"]) if "jobs" in radius else None,
            }
        )
    return sorted(
        out, key=lambda r: (-r["consequences"], -(r["cards"] if r["cards"] is not None else -1), r["starts_at"])
    )


@pytest.mark.parametrize("start", [None, 10])
def test_blast_radius(lake: Path, start: float | None) -> None:
    rows = query(lake, "blast_radius", **({"start": ts(start)} if start is not None else {}))
    got = [
        {
            "starts_at": sec(r["starts_at"]),
            "kind": r["kind"],
            "entity": r["entity"],
            "consequences": r["consequences"],
            "consequence_kinds": sorted(r["consequence_kinds"].split(", ")) if r["consequence_kinds"] else None,
            **{k: r[k] for k in ("cards", "nodes", "links", "jobs")},
        }
        for r in rows
    ]
    assert got == expected_blast_radius(start)


@pytest.mark.parametrize("start", [None, 10])
def test_fleet_failure_rates(lake: Path, start: float | None) -> None:
    rows = query(lake, "fleet_failure_rates", **({"start": ts(start)} if start is not None else {}))
    card_hours = sum(1 for _, _, t in card_rows() if start is None or t >= start) * 1.0 / 3600  # tick_s = 1
    incidents: dict[str, int] = {}
    for a in firing_in(start):
        if a.root_cause is None:
            incidents[a.kind] = incidents.get(a.kind, 0) + 1
    expected = sorted(((k, n, 1000 * n / card_hours) for k, n in incidents.items()), key=lambda e: (-e[2], e[0]))
    assert [(r["kind"], r["incidents"]) for r in rows] == [(k, n) for k, n, _ in expected]
    for row, (_, _, rate) in zip(rows, expected):
        assert close(row["card_hours"], card_hours, 2) and close(row["per_1000_card_hours"], rate, 3), row


# ---- card_history -----------------------------------------------------------------------------


def test_card_history_of_the_failed_card(lake: Path) -> None:
    node, card, failed_at = FAILED_CARD
    at, window = failed_at, 3
    rows = query(lake, "card_history", card=f"{node}-card{card}", at=ts(at), window_s=str(window))
    seconds = [t for t in FLEET_TICKS if at - window <= t <= at + window]
    expected = [
        (t, round(temp_c(node, card, t), 2) if card_present(node, card, t) else None, "79" if t == failed_at else None)
        for t in seconds
        if card_present(node, card, t) or t == failed_at
    ]
    assert [(sec(r["ts"]), r["temp_c"], r["error_codes"]) for r in rows] == expected
    assert [r["util"] for r in rows][:-1] == [95.0] * (len(expected) - 1)
