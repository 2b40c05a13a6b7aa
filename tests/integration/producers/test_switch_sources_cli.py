"""`clusterpulse topology import` and the switch sources `ingest snmp|gnmic|ib-exporter|ufm`, with
`--detect` / `--json`: saved files and a live scrape of a local endpoint. Scrapes are written here
from each tool's documented metric names (no capture of their output is in ../shared/samples);
the fabric is the real OSC ibnetdiscover fixture and Selene when they are there."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests import if_mib_leaf as leaf
from tests.conftest import SAMPLES, run_cli, static_http

SELENE = SAMPLES / "selene_ib_topology" / "selene.compute.ibnetdiscover.txt.gz"
OSC = SAMPLES / "infiniband" / "osc_perfquery_fixtures"
T0 = 1_764_000_000_000


def snmp(ts_ms: int, ports: dict[str, tuple[int, int]]) -> str:
    """An if_mib scrape: port name -> (ifOperStatus, ifAdminStatus), 1 up, 2 down."""
    lines = []
    for i, (name, (oper, admin)) in enumerate(ports.items(), start=1):
        labels = f'ifAlias="",ifDescr="{name}",ifIndex="{i}",ifName="{name}"'
        lines += [
            f"ifOperStatus{{{labels}}} {oper} {ts_ms}",
            f"ifAdminStatus{{{labels}}} {admin} {ts_ms}",
            f"ifInErrors{{{labels}}} 0 {ts_ms}",
        ]
    return "\n".join(lines) + "\n"


def alerts_of(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


@pytest.mark.skipif(not SELENE.exists(), reason="../shared/samples/selene_ib_topology is not here")
def test_topology_import_json_and_the_file_it_writes(tmp_path: Path) -> None:
    out = tmp_path / "topology.yaml"
    done = run_cli("topology", "import", str(SELENE), "--format", "ibnetdiscover", "--out", str(out), "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert (summary["switches"], summary["host_ports"], summary["links"]) == (666, 3675, 12186)
    assert summary["tiers"] == {"leaf": 204, "spine": 322, "core": 140}  # management MLG/MSPINE as named
    again = json.loads(run_cli("topology", "import", str(out), "--json").stdout)  # the saved file reads back
    assert {k: again[k] for k in ("switches", "host_ports", "links", "tiers")} == {
        k: summary[k] for k in ("switches", "host_ports", "links", "tiers")
    }
    wrong = run_cli("topology", "import", str(SELENE), "--format", "ndt")
    assert wrong.returncode == 2 and "Traceback" not in wrong.stderr and wrong.stderr.count("\n") == 1


def test_snmp_without_a_topology_names_ports_and_pages_a_disabled_port_as_a_warning(tmp_path: Path) -> None:
    up = {"Ethernet1/3": (1, 1), "Ethernet1/4": (1, 1), "Ethernet1/5": (1, 1)}
    down = {"Ethernet1/3": (2, 1), "Ethernet1/4": (2, 2), "Ethernet1/5": (1, 1)}
    files = []
    for i, (t, ports) in enumerate(((0, up), (10, down), (20, up), (60, up))):
        files.append(tmp_path / f"scrape{i}.prom")
        files[-1].write_text(snmp(T0 + t * 1000, ports))
    done = run_cli("ingest", "snmp", *map(str, files), "--switch", "tor-a", "--detect", "--json")
    assert done.returncode == 0, done.stderr
    got = {(a["entity"], a["status"]): a for a in alerts_of(done.stdout)}
    assert set(got) == {(f"tor-a:Ethernet1/{p}", s) for p in (3, 4) for s in ("firing", "resolved")}
    broken, disabled = got[("tor-a:Ethernet1/3", "firing")], got[("tor-a:Ethernet1/4", "firing")]
    assert broken["kind"] == disabled["kind"] == "link_down"
    assert broken["severity"] == "critical" and "admin_down" not in broken["labels"]
    assert disabled["severity"] == "warning" and disabled["labels"]["admin_down"] == "true"
    assert got[("tor-a:Ethernet1/4", "resolved")]["ends_at"].startswith("2025-11-24T16:01:00")
    human = run_cli("ingest", "snmp", *map(str, files), "--switch", "tor-a", "--detect")
    assert "tor-a:Ethernet1/4 down (port Ethernet1/4 of tor-a is administratively disabled)" in human.stdout


def test_gnmic_openconfig_admin_down_and_a_live_scrape(tmp_path: Path) -> None:
    """Without a topology a port disabled since the first scrape is an unused port (not paged, but
    counted); one seen up and then disabled pages a warning labelled with its name."""

    def scrape(admin: str, oper: str) -> str:
        seven, eight = 'interface_name="Ethernet7"', 'interface_name="Ethernet8"'
        return (
            f'gnmic_interfaces_interface_state_oper_status{{{seven},oper_status="{oper}",source="spine-2"}} 1\n'
            f'gnmic_interfaces_interface_state_admin_status{{admin_status="{admin}",{seven},source="spine-2"}} 1\n'
            f'gnmic_interfaces_interface_state_oper_status{{{eight},oper_status="UP",source="spine-2"}} 1\n'
            f'gnmic_interfaces_interface_state_counters_in_errors{{{eight},source="spine-2"}} 3\n'
        )

    (tmp_path / "metrics").write_text(scrape("DOWN", "DOWN"))
    with static_http(tmp_path) as url:
        done = run_cli("ingest", "gnmic", "--target", f"{url}/metrics", "--once", "--detect", "--json")
    assert done.returncode == 0, done.stderr
    assert alerts_of(done.stdout) == []
    assert "1 port never up (no cable?), not paged: spine-2:Ethernet7" in done.stderr
    (tmp_path / "up.prom").write_text(scrape("UP", "UP"))
    done = run_cli("ingest", "gnmic", str(tmp_path / "up.prom"), str(tmp_path / "metrics"), "--detect", "--json")
    assert done.returncode == 0, done.stderr
    [alert] = alerts_of(done.stdout)
    assert (alert["kind"], alert["entity"], alert["severity"]) == ("link_down", "spine-2:Ethernet7", "warning")
    assert (alert["labels"]["admin_down"], alert["labels"]["port"]) == ("true", "Ethernet7")


@pytest.mark.skipif(not OSC.exists(), reason="../shared/samples/infiniband is not here")
def test_ufm_and_ib_exporter_counters_on_an_imported_fabric_name_its_links(tmp_path: Path) -> None:
    """Switches by GUID (UFM drops the 0x), ports by number, links by the fabric's names: rising
    receive errors on port 10 of ib-i1l1s01 (to o0001's HCA) degrade that link."""
    fabric = OSC / "ibnetdiscover__test.out"
    files = []
    for i in range(12):
        ts = T0 + i * 1000
        text = (
            f'PortRcvErrorsExtended{{node_guid="7cfe9003009ce5b0",port_num="10"}} {i * 40} {ts}\n'
            f'PortRcvErrorsExtended{{node_guid="0x7cfe9003009ce5b0",port_num="11"}} 2 {ts}\n'
            f'SymbolErrorCounterExtended{{node_guid="0x7cfe9003009ce5b0",port_num="1"}} 0 {ts}\n'
        )
        files.append(tmp_path / f"ufm{i}.prom")
        files[-1].write_text(text)
    done = run_cli("ingest", "ufm", *map(str, files), "--topology", str(fabric), "--detect", "--json")
    assert done.returncode == 0, done.stderr
    [alert] = alerts_of(done.stdout)
    assert (alert["kind"], alert["entity"]) == ("link_degraded", "o0001/HCA-1~ib-i1l1s01/10")
    assert alert["labels"]["node"] == "o0001" and alert["labels"]["switch"] == "ib-i1l1s01"

    exporter = tmp_path / "ib.prom"  # the infiniband_exporter names the switch in an info metric
    exporter.write_text(
        'infiniband_switch_info{guid="0x7cfe9003009ce5b0",switch="ib-i1l1s01"} 1\n'
        'infiniband_switch_port_receive_errors_total{guid="0x7cfe9003009ce5b0",port="10"} 5\n'
    )
    done = run_cli("ingest", "ib-exporter", str(exporter), "--topology", str(fabric), "--out", str(tmp_path / "m"))
    assert done.returncode == 0 and "1 batch " in done.stderr, done.stderr
    unknown = run_cli("ingest", "ib-exporter", str(exporter), "--topology", str(tmp_path / "nope.txt"), "--detect")
    assert unknown.returncode == 2 and "nope.txt" in unknown.stderr and "Traceback" not in unknown.stderr


def _leaf_scrapes(tmp_path: Path) -> list[str]:
    """The 36-port leaf's three hours of if_mib scrapes (tests/if_mib_leaf.py), a file each."""
    files = []
    for minute in range(leaf.MINUTES + 1):
        files.append(tmp_path / f"leaf7-{minute:03d}.prom")
        files[-1].write_text(leaf.scrape(minute, T0))
    return list(map(str, files))


def _at(minute: int) -> str:
    return f"2025-11-24T{16 + minute // 60:02d}:{minute % 60:02d}:00.000Z"


def test_a_real_leaf_without_a_topology_pages_its_two_shutdowns_by_port_name_and_not_its_empty_ports(
    tmp_path: Path,
) -> None:
    """Issue 25: 12 ports without a cable (admin up, oper down from the first scrape) are not
    faults; the shut port (ifIndex 3, the 25th port of the scrape) is named as the switch names it."""
    files = _leaf_scrapes(tmp_path)
    done = run_cli("ingest", "snmp", *files, "--switch", "leaf7", "--detect", "--json")
    assert done.returncode == 0, done.stderr
    alerts = alerts_of(done.stdout)
    got = [(a["kind"], a["entity"], a["status"], a["severity"], a["starts_at"], a["ends_at"]) for a in alerts]
    shut = "leaf7:HundredGigE0/0/0/10"
    assert got == [
        ("link_down", shut, "firing", "warning", _at(40), None),
        ("link_down", shut, "resolved", "warning", _at(40), _at(56)),
        ("link_down", shut, "firing", "warning", _at(110), None),
        ("link_down", shut, "resolved", "warning", _at(110), _at(151)),
    ]
    labels, summary = alerts[0]["labels"], alerts[0]["summary"]
    assert labels == {"switch": "leaf7", "link": shut, "port": "HundredGigE0/0/0/10", "admin_down": "true"}
    assert summary.startswith(f"{shut} down (port HundredGigE0/0/0/10 of leaf7 is administratively disabled)")
    assert "12 ports never up (no cable?), not paged: " in done.stderr


def test_a_real_leaf_on_an_lldp_fabric_pages_a_cabled_port_never_up_and_names_ports_as_the_switch_does(
    tmp_path: Path,
) -> None:
    """With a topology, a port the fabric cables pages link_down even if never seen up (a missing
    link); ports it does not cable do not. Alerts carry the switch's own port name."""
    hosts = [p for p in range(1, 22) if p not in leaf.UNCABLED or p == 5]  # port 5: cabled, never up
    lldp = {
        f"gpu-node{p + 1:02d}": {
            "lldp": [
                {
                    "interface": [
                        {
                            "name": "eth0",
                            "chassis": [{"name": [{"value": "leaf7"}]}],
                            "port": [{"id": [{"type": "ifname", "value": f"HundredGigE0/0/0/{p}"}]}],
                        }
                    ]
                }
            ]
        }
        for p in hosts
    }
    fabric = tmp_path / "lldp.json"
    fabric.write_text(json.dumps(lldp))
    files = _leaf_scrapes(tmp_path)
    done = run_cli("ingest", "snmp", *files, "--switch", "leaf7", "--topology", str(fabric), "--detect", "--json")
    assert done.returncode == 0, done.stderr
    alerts = alerts_of(done.stdout)
    got = [(a["entity"], a["status"], a["severity"], a["labels"].get("port")) for a in alerts]
    missing, shut = "gpu-node06/eth0~leaf7/HundredGigE0/0/0/5", "gpu-node11/eth0~leaf7/HundredGigE0/0/0/10"
    ten = "HundredGigE0/0/0/10"
    assert got == [
        (missing, "firing", "critical", "HundredGigE0/0/0/5"),
        (shut, "firing", "warning", ten),
        (shut, "resolved", "warning", ten),
        (shut, "firing", "warning", ten),
        (shut, "resolved", "warning", ten),
    ]
    assert alerts[1]["labels"]["node"] == "gpu-node11" and alerts[1]["labels"]["switch"] == "leaf7"
    assert "port HundredGigE0/0/0/10 of leaf7 is administratively disabled" in alerts[1]["summary"]
