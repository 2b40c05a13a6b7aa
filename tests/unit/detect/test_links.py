import numpy as np

from pipeline.detect.links import LinkDetector
from pipeline.settings import LinkSettings
from tests.builders import counters_batch, small_topology

TOPO = small_topology()
PORTS = TOPO.leaf_ports()  # 4 host ports, 2 uplinks
LINK = "node0001-nic0~leaf000"  # leaf000 port 1


def run(
    crc_per_tick: dict[int, int] | None = None,
    oper_by_tick: dict[int, list[int]] | None = None,
    ticks: int = 60,
    settings: LinkSettings | None = None,
    resets: set[int] = frozenset(),
) -> list:
    det = LinkDetector(TOPO, settings or LinkSettings())
    crc = np.zeros(PORTS, np.int64)
    out = []
    for t in range(ticks):
        if t in resets:
            crc[:] = 0
        crc[1] += (crc_per_tick or {}).get(t, 0)
        oper = (oper_by_tick or {}).get(t, [1] * PORTS)
        out += det.push(counters_batch("leaf000", t, PORTS, crc=crc.copy(), oper=oper))
    return out


def test_a_down_port_fires_link_down_at_once_and_resolves_after_the_hold() -> None:
    down = {t: [1, 0, 1, 1, 1, 1] for t in range(10, 15)}
    alerts = run(oper_by_tick=down, ticks=60, settings=LinkSettings(down_resolve_s=30))
    assert [(a.kind, a.entity, a.status, a.starts_at[17:19]) for a in alerts] == [
        ("link_down", LINK, "firing", "10"),
        ("link_down", LINK, "resolved", "10"),
    ]
    assert alerts[1].ends_at[17:19] == "45"


def test_repeated_downs_become_one_flapping_alert_beside_the_link_down_until_stable() -> None:
    """The link_down stays firing while the link flaps (the correlator groups the flapping under it:
    one page); both resolve once the link has stayed up: link_down after 30 s, flapping once no
    down is left in its 120 s window."""
    down = {t: [1, 0, 1, 1, 1, 1] for t in (10, 11, 20, 21, 30, 31, 40)}
    alerts = run(oper_by_tick=down, ticks=200)
    assert [(a.kind, a.status, a.starts_at[17:19]) for a in alerts] == [
        ("link_down", "firing", "10"),
        ("link_flapping", "firing", "30"),
        ("link_down", "resolved", "10"),
        ("link_flapping", "resolved", "30"),
    ]
    assert [a.ends_at[14:19] for a in alerts[2:]] == ["01:11", "02:40"]


def test_persistent_crc_errors_fire_degraded_and_clear_with_hysteresis() -> None:
    errors = {t: 5 for t in range(10, 30)}
    alerts = run(crc_per_tick=errors, ticks=70, settings=LinkSettings(error_clear_samples=30))
    assert [(a.kind, a.entity, a.status, a.starts_at[17:19]) for a in alerts] == [
        ("link_degraded", LINK, "firing", "16"),
        ("link_degraded", LINK, "resolved", "16"),
    ]
    assert alerts[0].evidence["errors_in_window"] == 35  # 7 samples of 10 with errors: sustained
    assert alerts[1].ends_at[17:19] == "59"


def test_a_burst_a_stray_error_and_a_counter_reset_do_not_fire() -> None:
    assert run(crc_per_tick={20: 500}) == []  # one burst: one sample
    assert run(crc_per_tick={t: 4 for t in (20, 21, 22, 35, 36, 37)}) == []  # multi-sample bursts, apart
    assert run(crc_per_tick={t: 3 for t in (20, 21, 22, 25, 26, 27)}) == []  # two 3-sample bursts within 10 s
    assert run(crc_per_tick={5: 1, 25: 1, 45: 1}) == []  # background errors
    assert run(crc_per_tick={t: 0 for t in range(60)} | {3: 1000}, resets={30}) == []  # reset to zero


def test_errors_seen_at_one_end_of_a_fabric_link_fire_once_while_the_clean_end_reports() -> None:
    """Errors are counted where frames arrive: the spine's end of leaf000~spine001 sees them and
    leaf000's end stays clean; the clean end must not resolve what the other end fired."""
    det = LinkDetector(TOPO, LinkSettings())
    leaf_crc, spine_crc = np.zeros(PORTS, np.int64), np.zeros(TOPO.leaves, np.int64)
    out = []
    for t in range(80):
        if 10 <= t < 20:
            spine_crc[0] += 3  # spine001 port 0 = leaf000's uplink
        out += det.push(counters_batch("leaf000", t, PORTS, crc=leaf_crc.copy()))
        out += det.push(counters_batch("spine001", t, TOPO.leaves, crc=spine_crc.copy()))
    assert [(a.kind, a.entity, a.status) for a in out] == [
        ("link_degraded", "leaf000~spine001", "firing"),
        ("link_degraded", "leaf000~spine001", "resolved"),
    ]
    assert out[1].ends_at[17:19] == "49"  # 30 clean samples of the end that saw the errors


def test_without_cabling_a_port_never_up_is_not_paged_and_pages_once_it_was_up() -> None:
    """Issue 25: ports of scrapes without a topology (`PortEntities`: nothing says which are
    cabled). Ethernet1/3 never comes up: an empty port, listed, not paged. Ethernet1/2 is down from
    the first sample, comes up at 20 s: its going down at 40 s pages, and resolves."""
    from pipeline.topology.ports import PortEntities

    det = LinkDetector(PortEntities({"tor-a": ["Ethernet1/1", "Ethernet1/2", "Ethernet1/3"]}), LinkSettings())
    out = []
    for t in range(120):
        batch = counters_batch("tor-a", t, 3, oper=[1, int(20 <= t < 40 or t >= 50), 0])
        if t == 0:  # names come once
            batch.port_names = ("Ethernet1/1", "Ethernet1/2", "Ethernet1/3")
        out += det.push(batch)
    assert [(a.kind, a.entity, a.status, a.severity) for a in out] == [
        ("link_down", "tor-a:Ethernet1/2", "firing", "critical"),
        ("link_down", "tor-a:Ethernet1/2", "resolved", "critical"),
    ]
    assert out[0].starts_at[17:19] == "40" and out[1].ends_at[17:19] == "20"  # up at 50 s, held 30 s
    assert out[0].labels["port"] == "Ethernet1/2" and "(port Ethernet1/2 of tor-a reports oper down)" in out[0].summary
    assert det.never_up() == ["tor-a:Ethernet1/3"]


def test_with_a_topology_a_cabled_port_down_from_the_first_sample_pages_at_once() -> None:
    """The fabric says the port has a link: never seen up is a missing link, not an empty port."""
    alerts = run(oper_by_tick={t: [1, 0, 1, 1, 1, 1] for t in range(20)}, ticks=60)
    assert [(a.kind, a.entity, a.status, a.starts_at[17:19]) for a in alerts] == [
        ("link_down", LINK, "firing", "00"),
        ("link_down", LINK, "resolved", "00"),
    ]
    assert "port" not in alerts[0].labels and "(port 1 of leaf000 reports oper down)" in alerts[0].summary


def test_alerts_name_the_port_as_the_device_does_from_its_batches_else_from_the_fabrics_link() -> None:
    """Names the batches brought (once) win; without them, the switch's end of an imported
    fabric's link name (`h1/HCA-1~sw1/10`): IB port 10 is our port 9."""
    from pipeline.topology.fabric import Device, Endpoint, Fabric, Link
    from pipeline.topology.imported import FabricTopology

    fabric = Fabric()
    for name, kind in (("h1", "host"), ("h2", "host"), ("sw1", "switch")):
        fabric.add_device(Device(name, kind))
    fabric.add_link(Link(Endpoint("h1", "HCA-1"), Endpoint("sw1", "10")))
    fabric.add_link(Link(Endpoint("h2", "HCA-1"), Endpoint("sw1", "11")))
    topo = FabricTopology(fabric)
    for names, port in ((None, "10"), (("", "", "", "", "", "", "", "", "", "Eth1/10", ""), "Eth1/10")):
        det = LinkDetector(topo, LinkSettings())
        crc = np.zeros(11, np.int64)
        out = []
        for t in range(20):
            crc[9] += 5
            batch = counters_batch("sw1", t, 11, crc=crc.copy())
            batch.port_names = names if t == 0 else None
            out += det.push(batch)
        [alert] = out
        assert (alert.kind, alert.entity, alert.labels["port"], alert.labels["node"]) == (
            "link_degraded",
            "h1/HCA-1~sw1/10",
            port,
            "h1",
        )
        assert alert.summary.endswith(f"(seen by sw1 port {port})")
