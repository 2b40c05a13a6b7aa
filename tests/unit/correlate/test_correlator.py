"""Root cause, dedup and lifecycle on hand-made findings (no detectors, no broker)."""

from dataclasses import replace

import pytest

from pipeline.correlate.correlator import Correlator
from pipeline.model.schemas import Alert, iso_utc
from pipeline.settings import CorrelateSettings
from pipeline.topology.synthetic import ClusterShape, Topology
from tests.builders import START_MS

TOPO = Topology(ClusterShape(cards=10240, cards_per_node=8, nodes_per_leaf=32, spines=32))


def finding(kind: str, entity: str, t: float, status: str = "firing") -> Alert:
    ts = iso_utc(START_MS + int(t * 1000))
    return Alert(
        kind=kind,
        entity=entity,
        status=status,
        starts_at=ts,
        ends_at=ts if status == "resolved" else None,
        severity="critical",
        summary=f"{entity} {kind}",
    )


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def correlator(clock: Clock | None = None, idle_s: float = 3) -> Correlator:
    settings = CorrelateSettings(group_wait_s=5, idle_s=idle_s, fabric_window_s=2)
    c = Correlator(TOPO, settings, clock=clock or Clock())
    c.place("pretrain-a", [TOPO.node_name(n) for n in range(0, 1024)])
    c.place("finetune-b", [TOPO.node_name(n) for n in range(1024, 1152)])
    return c


def tick(c: Correlator, t: float) -> list[Alert]:
    return c.advance("port/0", START_MS + int(t * 1000)) + c.advance("card/0", START_MS + int(t * 1000))


def test_a_dead_leaf_is_one_ungrouped_alert_with_its_blast_radius() -> None:
    c = correlator()
    out = tick(c, 240)
    for spine in range(32):  # the spines see the leaf's uplinks go down first
        out += c.push(finding("link_down", f"leaf017~spine{spine:03d}", 240), f"port/{spine % 12}")
    out += tick(c, 242)
    out += c.push(finding("switch_down", "leaf017", 243), "port/5")  # the leaf's own silence, 3 s later
    out += tick(c, 250)
    ungrouped = [a for a in out if a.root_cause is None]
    assert [(a.kind, a.entity) for a in ungrouped] == [("switch_down", "leaf017")]
    leaf = ungrouped[0]
    radius = leaf.evidence["blast_radius"]
    assert (radius["cards"], radius["nodes"], radius["links"], radius["rail"]) == (32, 32, 64, 0)
    assert radius["jobs"] == ["pretrain-a"] and "node0544-card0" in radius["card_names"]
    assert "jobs stalled: pretrain-a" in leaf.summary
    grouped = [a for a in out if a.root_cause]
    assert len(grouped) == 32 and {a.root_cause for a in grouped} == {leaf.id}


def test_a_dead_node_explains_its_host_links() -> None:
    c = correlator()
    out = []
    for nic in range(8):
        link = TOPO.host_link_name(1100, nic)
        out += c.push(finding("link_down", link, 150), f"port/{nic}")
    out += c.push(finding("node_down", "node1100", 152), "card/3")
    out += tick(c, 156)
    assert [(a.kind, a.root_cause is None) for a in out].count(("node_down", True)) == 1
    assert sum(1 for a in out if a.kind == "link_down" and a.root_cause == out[0].id) == 8
    assert out[0].evidence["blast_radius"]["jobs"] == ["finetune-b"]


def test_a_link_down_whose_ends_are_alive_waits_only_the_fabric_window() -> None:
    """Neither end can be dying (its other links are up): nothing could explain it later."""
    c = correlator()
    link = TOPO.host_link_name(154, 3)
    assert c.push(finding("link_down", link, 200), "port/1") == []
    assert tick(c, 201.9) == []
    [alert] = tick(c, 202)
    assert alert.root_cause is None and alert.starts_at == iso_utc(START_MS + 200_000)
    assert alert.evidence["blast_radius"]["card_names"] == ["node0154-card3"]


def test_a_throttled_card_explains_its_straggler() -> None:
    c = correlator()
    out = c.push(finding("thermal_throttle", "node0310-card1", 110), "card/2")
    out += c.push(finding("straggler", "node0310-card1", 112), "step/0")
    out += tick(c, 120)
    assert [(a.kind, a.root_cause) for a in out] == [("thermal_throttle", None), ("straggler", out[0].id)]


@pytest.mark.parametrize("root", ["link_down", "link_degraded"])
def test_a_shared_nics_bad_link_explains_the_stragglers_of_every_card_it_serves(root: str) -> None:
    """node0154's cards 0-3 share NIC 0 (an inventory's nic_cards): one page, the link, with their
    four stragglers under it; card 4 (its own NIC) and another node's card 0 page on their own."""
    topo = TOPO.with_card_nics({"node0154": {c: 0 for c in range(4)}})
    c = Correlator(topo, CorrelateSettings(group_wait_s=5, idle_s=3), clock=Clock())
    link = topo.host_link_name(154, 0)
    out = c.push(finding(root, link, 200), "port/1")
    for card in (
        "node0154-card0",
        "node0154-card1",
        "node0154-card2",
        "node0154-card3",
        "node0154-card4",
        "node0155-card0",
    ):
        out += c.push(finding("straggler", card, 203), "step/0")
    out += tick(c, 210)
    pages = [a for a in out if a.root_cause is None]
    link_page = next(a for a in pages if a.entity == link)
    assert {a.entity for a in out if a.root_cause == link_page.id} == {f"node0154-card{j}" for j in range(4)}
    assert sorted(a.entity for a in pages) == sorted([link, "node0154-card4", "node0155-card0"])
    if root == "link_down":
        assert link_page.evidence["blast_radius"]["card_names"] == [f"node0154-card{j}" for j in range(4)]


def test_both_ends_of_a_link_fire_once_and_resolve_once() -> None:
    c = correlator()
    link = "leaf099~spine017"
    out = c.push(finding("link_degraded", link, 300), "port/1")
    out += c.push(finding("link_degraded", link, 300), "port/7")
    assert len(out) == 1
    assert c.push(finding("link_degraded", link, 400, "resolved"), "port/1") == []
    [resolved] = c.push(finding("link_degraded", link, 401, "resolved"), "port/7")
    assert resolved.status == "resolved" and resolved.id == out[0].id


def test_a_symptom_resolved_while_held_is_still_reported_and_released_when_input_stops() -> None:
    clock = Clock()
    c = correlator(clock)
    link = TOPO.host_link_name(5, 0)
    c.push(finding("link_down", link, 10), "port/0")
    c.push(finding("link_down", link, 11, "resolved"), "port/0")
    assert tick(c, 11.5) == []  # before the fabric window ends
    assert c.release_stale() == []  # input still flowing
    clock.now = 6.0  # every stream stopped for idle_s, and all quiet for 5 s: what is held is released
    out = c.release_stale()
    assert [a.status for a in out] == ["firing", "resolved"]


def test_an_idle_source_does_not_hold_the_clock_but_a_slow_one_does() -> None:
    clock = Clock()
    c = correlator(clock)
    c.advance("card/7", START_MS)  # a worker that died at t = 0: its partition stops
    c.advance("port/3", START_MS + 90_000)  # a partition that is behind but moving
    c.push(finding("link_down", TOPO.host_link_name(5, 0), 100), "port/0")
    clock.now = 2.0
    c.advance("port/3", START_MS + 95_000)
    assert tick(c, 106) == []  # port/3 at 95 s holds the clock
    clock.now = 3.5
    released = c.advance("port/3", START_MS + 105_000)
    assert len(released) == 1  # card/7 idle for 3.5 s (ignored), port/3 at 105 s


def test_a_caught_up_source_does_not_hold_the_clock_once_it_stays_still() -> None:
    clock = Clock()
    c = correlator(clock, idle_s=30)
    c.advance("card/7", START_MS, caught_up=True)  # read everything its partition has
    c.push(finding("link_down", TOPO.host_link_name(5, 0), 100), "port/0")
    assert tick(c, 106) == []  # only for a moment, maybe: its next message may be on its way
    clock.now = 2.5
    assert tick(c, 106) == []  # a producer stalled for 2 s (a loaded machine) is not the end of it
    clock.now = 5.5  # still nothing new after 5 s: nothing older will come
    assert len(tick(c, 106)) == 1
    c2 = correlator()
    c2.advance("port/9", START_MS + 90_000)  # lagging: its next findings may be older than 105 s
    c2.push(finding("link_down", TOPO.host_link_name(5, 0), 100), "port/0")
    assert tick(c2, 106) == []


def test_a_partition_whose_worker_has_not_reported_yet_holds_the_clock() -> None:
    """Two workers: the one reading the ports races to the end while the one reading the cards has
    not started; the node's death (seen on the cards) must still group its links."""
    clock = Clock()
    c = correlator(clock, idle_s=30)
    c.expect(["port/0", "card/0", "card/1"])
    c.push(finding("link_down", TOPO.host_link_name(5, 0), 100), "port/0")
    assert c.advance("port/0", START_MS + 150_000, caught_up=True) == []  # card/0 and card/1: silent
    c.advance("card/1", -1, caught_up=True)  # an empty partition: caught up from the start
    clock.now = 5.5
    assert c.release_stale() == [] and c.advance("card/1", -1, caught_up=True) == []  # card/0 holds it
    released = c.push(finding("node_down", TOPO.node_name(5), 102), "card/0")
    released += c.advance("card/0", START_MS + 150_000)
    assert [(a.kind, a.root_cause is not None) for a in released] == [("node_down", False), ("link_down", True)]
    idle = correlator(clock)
    idle.expect(["port/0", "card/0"])  # a worker that never reports goes idle like a dead one
    idle.push(finding("link_down", TOPO.host_link_name(5, 0), 100), "port/0")
    idle.advance("port/0", START_MS + 150_000)
    clock.now += 3.5
    assert len(idle.advance("port/0", START_MS + 151_000)) == 1


def test_state_survives_a_move_and_replayed_findings_change_nothing() -> None:
    """A new owner restores the snapshot; a finding the detectors re-emit after their own restore
    (firing or resolution of an episode already resolved) publishes nothing twice."""
    from pipeline.correlate.correlator import Correlator
    from pipeline.model.schemas import Alert
    from pipeline.topology.synthetic import ClusterShape, Topology

    topo = Topology(ClusterShape(64, 8, 4, 2))
    firing = Alert(
        kind="card_failed",
        entity="node0003-card2",
        status="firing",
        starts_at="2026-01-01T00:00:15.000Z",
        severity="critical",
        summary="failed",
    )
    resolved = Alert(**{**vars(firing), "status": "resolved", "ends_at": "2026-01-01T00:01:25.000Z"})
    before = Correlator(topo, clock=lambda: 0.0)
    assert [a.status for a in before.push(firing, "card/0")] == ["firing"]
    after = Correlator(topo, clock=lambda: 0.0)
    assert after.restore(before.snapshot())
    [out] = after.push(resolved, "card/0")
    assert out.status == "resolved" and out.labels == before.published[firing.id].labels  # the firing is known
    assert after.push(firing, "card/0") == [] and after.push(resolved, "card/0") == []  # replays
    later = Alert(**{**vars(firing), "starts_at": "2026-01-01T00:03:00.000Z"})
    assert [a.status for a in after.push(later, "card/0")] == ["firing"]  # a new episode fires
    assert not Correlator(topo).restore(b"not a snapshot")


def test_a_card_failing_after_its_ecc_errors_is_grouped_under_them() -> None:
    c = correlator()
    out = c.push(finding("card_ecc", "node0200-card5", 100), "card/1")
    out += c.push(finding("card_failed", "node0200-card5", 160), "card/1")
    out += c.push(finding("card_failed", "node0201-card5", 161), "card/1")  # another card: its own page
    assert [(a.kind, a.entity, a.root_cause) for a in out] == [
        ("card_ecc", "node0200-card5", None),
        ("card_failed", "node0200-card5", out[0].id),
        ("card_failed", "node0201-card5", None),
    ]


def test_a_flapping_link_pages_once_its_flapping_grouped_under_its_link_down() -> None:
    c = correlator()
    link = TOPO.host_link_name(154, 3)
    out = c.push(finding("link_down", link, 200), "port/1")
    out += tick(c, 206)
    out += c.push(finding("link_flapping", link, 220), "port/1")
    out += tick(c, 226)
    assert [(a.kind, a.root_cause) for a in out] == [("link_down", None), ("link_flapping", out[0].id)]


def test_a_consequence_still_firing_a_minute_after_its_cause_resolved_pages_on_its_own() -> None:
    """A spine comes back but one of its links stays down: that link_down, grouped until now, is
    published again ungrouped; links that come back with the spine page nothing."""
    c = correlator()
    out = c.push(finding("switch_down", "spine003", 100), "port/0")
    for leaf in range(3):
        out += c.push(finding("link_down", f"leaf{leaf:03d}~spine003", 100), "port/1")
    out += tick(c, 106)
    assert [a.root_cause for a in out] == [None] + [out[0].id] * 3
    out = c.push(finding("switch_down", "spine003", 200, "resolved"), "port/0")
    for leaf in range(2):
        out += c.push(finding("link_down", f"leaf{leaf:03d}~spine003", 230, "resolved"), "port/1")
    out += tick(c, 259)
    assert [(a.kind, a.entity, a.status) for a in out] == [
        ("switch_down", "spine003", "resolved"),
        ("link_down", "leaf000~spine003", "resolved"),
        ("link_down", "leaf001~spine003", "resolved"),
    ]
    [again] = tick(c, 260)
    assert (again.entity, again.status, again.root_cause) == ("leaf002~spine003", "firing", None)
    assert "still firing 60 s after switch_down spine003 resolved" in again.summary
    [done] = c.push(finding("link_down", "leaf002~spine003", 300, "resolved"), "port/1")
    assert done.root_cause is None and done.id == again.id


def unreachable(kind: str, entity: str, t: float, status: str = "firing") -> Alert:
    alert = finding(kind, entity, t, status)
    alert.evidence = {"unreachable": True, "collector": "gpu:node0000"}
    return alert


def test_an_unreachable_exporter_pages_only_when_the_fabric_agrees() -> None:
    c = correlator()
    out = tick(c, 100)
    # node0100's exporter stops answering, its host links stay up: an exporter down, no page
    out += c.push(unreachable("node_down", "node0100", 100), "card/0")
    out += tick(c, 130)
    out += c.push(unreachable("node_down", "node0100", 130, "resolved"), "card/0")
    assert out == [] and c.unconfirmed == {}
    # node0200 is unreachable and then every link its leaves see goes down: the node is down, once
    out += c.push(unreachable("node_down", "node0200", 140), "card/0")
    links = TOPO.witness_links("node_down", "node0200")
    for link in links:
        out += c.push(finding("link_down", link, 141), "port/3")
    assert [(a.kind, a.entity) for a in out] == [("node_down", "node0200")]
    assert f"all {len(links)} links" in out[0].summary
    out = tick(c, 150)
    assert {a.kind for a in out} == {"link_down"} and all(
        a.root_cause == c.published[next(iter(k for k, v in c.published.items() if v.kind == "node_down"))].id
        for a in out
    )
    # a dead leaf whose target cannot be reached, seen down by every spine: one page
    out = c.push(unreachable("switch_down", "leaf017", 160), "port/0")
    for spine in range(32):
        out += c.push(finding("link_down", f"leaf017~spine{spine:03d}", 160), "port/1")
    out += tick(c, 170)
    assert [(a.kind, a.entity, a.root_cause) for a in out if a.root_cause is None] == [("switch_down", "leaf017", None)]


def test_a_leaf_whose_uplinks_all_go_at_once_is_declared_down_in_that_tick() -> None:
    c = correlator()
    uplinks = [f"leaf017~spine{spine:03d}" for spine in range(32)]
    out = tick(c, 240)
    for n, link in enumerate(uplinks):  # seen by 32 spines, each at its own phase within the tick
        out += c.push(finding("link_down", link, 240 + n / 32), f"port/{n % 12}")
    [leaf] = out  # before the leaf's own silence rule, and before any group timer
    assert (leaf.kind, leaf.entity, leaf.root_cause) == ("switch_down", "leaf017", None)
    assert leaf.evidence["inferred_from"] == "fabric" and leaf.evidence["consequences_known"] == 32
    assert "all 32 links its neighbours see went down" in leaf.summary and leaf.evidence["blast_radius"]["nodes"] == 32
    assert c.push(finding("switch_down", "leaf017", 243), "port/5") == []  # its silence rule: the same alert
    out = tick(c, 250)
    assert len(out) == 32 and {a.root_cause for a in out} == {leaf.id}  # its links, grouped under it
    [back] = c.push(finding("switch_down", "leaf017", 400, "resolved"), "port/5")  # its own detector says so
    assert (back.kind, back.status) == ("switch_down", "resolved")


def test_a_switch_declared_by_the_fabric_alone_resolves_with_its_first_link() -> None:
    c = correlator()
    uplinks = [f"leaf017~spine{spine:03d}" for spine in range(32)]
    for n, link in enumerate(uplinks):  # no telemetry of the leaf itself: no silence rule behind it
        c.push(finding("link_down", link, 240), f"port/{n % 12}")
    tick(c, 250)
    first = c.push(finding("link_down", uplinks[0], 430, "resolved"), "port/0")
    assert [(a.kind, a.status) for a in first] == [("switch_down", "resolved"), ("link_down", "resolved")]


def test_links_lost_one_by_one_are_not_a_switch_dying() -> None:
    c = correlator()
    out = []
    for spine in range(32):  # a rolling maintenance: an uplink every 10 s
        out += c.push(finding("link_down", f"leaf017~spine{spine:03d}", 240 + 10 * spine), f"port/{spine % 12}")
        out += tick(c, 240 + 10 * spine)
    assert not [a for a in out if a.kind == "switch_down"]


def test_a_node_whose_host_links_all_go_at_once_is_declared_down() -> None:
    c = correlator()
    out = []
    for nic in range(8):
        out += c.push(finding("link_down", TOPO.host_link_name(1100, nic), 150 + nic / 10), f"port/{nic}")
    assert [(a.kind, a.entity) for a in out] == [("node_down", "node1100")]
    one_nic = correlator()
    assert one_nic.push(finding("link_down", TOPO.host_link_name(1100, 0), 150), "port/0") == []  # a cable


def test_disabled_ports_are_not_a_switch_dying() -> None:
    c = correlator()
    out = []
    for spine in range(32):
        down = finding("link_down", f"leaf017~spine{spine:03d}", 240)
        down.labels["admin_down"] = "true"
        out += c.push(down, f"port/{spine % 12}")
    assert not [a for a in out if a.kind == "switch_down"]


@pytest.mark.parametrize("apart_s", [0.1, 0.0])  # each NIC's leaf at its own phase, or all in one tick
def test_a_node_declared_from_links_read_far_apart_is_the_one_of_event_time_order(apart_s: float) -> None:
    """Half of a node's host links come from a partition read long before the other half: they
    have gone down and come back (30 s up) before the others arrive. The rule tests each link's
    down episode at the event time, so the node is declared, and resolves, as in event-time order."""
    links = [TOPO.host_link_name(1100, nic) for nic in range(8)]
    findings = [(finding("link_down", link, 150 + nic * apart_s), f"port/{nic}") for nic, link in enumerate(links)]
    findings += [
        (finding("link_down", link, 200 + nic * apart_s, "resolved"), f"port/{nic}") for nic, link in enumerate(links)
    ]
    in_order = sorted(findings, key=lambda f: f[0].ends_at or f[0].starts_at)
    fast, slow = [f for f in findings if int(f[1][5:]) < 4], [f for f in findings if int(f[1][5:]) >= 4]

    def run(order: list[tuple[Alert, str]]) -> list[tuple]:
        c = correlator()
        out = []
        for found, source in order:
            out += c.push(found, source)
        out += tick(c, 300)
        return sorted(
            (a.kind, a.entity, a.status, a.starts_at, a.ends_at, a.summary) for a in out if a.kind == "node_down"
        )

    expected = run(in_order)
    assert [(kind, status) for kind, _, status, *_ in expected] == [("node_down", "firing"), ("node_down", "resolved")]
    assert run(fast + slow) == expected
    assert run(slow + fast) == expected


def test_a_switch_whose_detector_resolved_while_it_waited_resolves_as_its_detector_said() -> None:
    c = correlator()
    uplinks = [f"leaf017~spine{spine:03d}" for spine in range(32)]
    out = c.push(finding("switch_down", "leaf017", 243), "port/5")  # its silence rule, held for the clock
    back = replace(finding("switch_down", "leaf017", 243), status="resolved", ends_at=iso_utc(START_MS + 260_000))
    out += c.push(back, "port/5")  # back before the clock got there
    for n, link in enumerate(uplinks):  # its links, from partitions read later
        out += c.push(finding("link_down", link, 240), f"port/{n % 12}")
    leaf = [(a.status, a.starts_at, a.ends_at) for a in out if a.kind == "switch_down"]
    start = iso_utc(START_MS + 240_000)
    assert leaf == [("firing", start, None), ("resolved", start, back.ends_at)]


def test_a_leaf_with_an_uplink_down_for_a_while_is_still_declared_when_it_dies() -> None:
    c = correlator()
    uplinks = [f"leaf017~spine{spine:03d}" for spine in range(32)]
    assert c.push(finding("link_down", uplinks[0], 100), "port/0") == []  # a cable out since t = 100
    out = tick(c, 240)
    for n, link in enumerate(uplinks[1:]):
        out += c.push(finding("link_down", link, 240), f"port/{n % 12}")
    leaf = [a for a in out if a.kind == "switch_down"]
    assert [(a.entity, a.starts_at) for a in leaf] == [("leaf017", iso_utc(START_MS + 240_000))]
    assert "31 of the 32 links its neighbours see went down within 0 s (1 down before)" in leaf[0].summary


def test_a_node_with_a_link_down_before_is_left_to_its_silence_rule() -> None:
    """A node's 8 links must all go at once: with one down before (or still in its hysteresis after
    a failure next to it), seven going down is not enough evidence for so few links."""
    c = correlator()
    links = [TOPO.host_link_name(1100, nic) for nic in range(8)]
    out = c.push(finding("link_down", links[0], 100), "port/0")
    for nic, link in enumerate(links[1:], start=1):
        out += c.push(finding("link_down", link, 500), f"port/{nic}")
    assert not [a for a in out if a.kind == "node_down"]


def test_host_links_wait_group_wait_when_their_node_may_still_be_found_dead() -> None:
    """Every link of node1100 is down (one since earlier, so the first-tick rule does not declare
    it): the node's silence rule may still, so its links wait group_wait and go under it."""
    c = correlator()
    links = [TOPO.host_link_name(1100, nic) for nic in range(8)]
    out = c.push(finding("link_down", links[0], 100), "port/0")
    out += tick(c, 105)  # that cable alone, released on its own
    assert [(a.entity, a.root_cause) for a in out] == [(links[0], None)]
    for nic, link in enumerate(links[1:], start=1):
        out += c.push(finding("link_down", link, 500), f"port/{nic}")
    assert tick(c, 504) == []  # past the fabric window: held for the node's silence rule
    out = c.push(finding("node_down", "node1100", 503), "card/3") + tick(c, 505)
    [node] = [a for a in out if a.root_cause is None]
    assert (node.kind, node.entity) == ("node_down", "node1100")
    assert sorted(a.entity for a in out if a.root_cause == node.id) == sorted(links[1:])


def test_a_jobs_step_source_lagging_does_not_hold_a_link_but_a_port_source_does() -> None:
    """Step telemetry finds no root cause: its watermark (a job's last step, seconds old) does not
    hold the release of a link waiting for one; a port partition behind does."""
    c = correlator()
    link = TOPO.host_link_name(154, 3)
    c.push(finding("link_down", link, 200), "port/1")
    c.advance("step/0", START_MS + 197_000)  # pretrain-a's last step ended 3 s before
    c.advance("port/2", START_MS + 201_000)  # a switch read a tick behind
    assert tick(c, 203) == []
    [alert] = c.advance("port/2", START_MS + 202_000)
    assert alert.entity == link


def test_a_straggler_of_a_job_whose_hosts_send_nothing_else_is_released_by_its_steps() -> None:
    """A training job reporting its steps where no card or port telemetry flows (their partitions
    are empty, caught up): the step sources run the clock."""
    clock = Clock()
    c = correlator(clock, idle_s=30)
    c.expect(["card/0", "port/0", "step/0"])
    c.advance("card/0", -1, caught_up=True)
    c.advance("port/0", -1, caught_up=True)
    c.push(finding("straggler", "node0310-card1", 100), "step/0")
    assert c.advance("step/0", START_MS + 104_000) == []
    clock.now = 6.0  # the empty partitions have been still for 5 s
    [alert] = c.advance("step/0", START_MS + 105_000)
    assert (alert.kind, alert.root_cause) == ("straggler", None)
