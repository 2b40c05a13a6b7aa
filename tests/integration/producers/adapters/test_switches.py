"""Switch port telemetry adapters: snmp_exporter if_mib, gnmic OpenConfig, infiniband_exporter and
UFM Telemetry. Fixtures written here from each tool's documented metric names (no capture of
their output is in ../shared/samples); the UFM message is the real one when it is there."""

from __future__ import annotations

import pytest

from pipeline.topology.inventory import Inventory
from pipeline.topology.synthetic import ClusterShape, Topology
from producers.adapters import FormatError
from producers.adapters.prometheus import parse
from producers.adapters.switches import SwitchConverter, ufm_messages
from tests.conftest import SAMPLES, run_cli

TOPO = Topology(ClusterShape(cards=256, cards_per_node=8, nodes_per_leaf=8, spines=4))  # leaves: 12 ports
INVENTORY = Inventory(
    switches={"tor-a.example": "leaf001", "0x506b4b03005c2740": "leaf003", "0x248a070300ef19a0": "leaf004"}
)
UFM_SAMPLE = SAMPLES / "infiniband" / "ufm_telemetry_message_sample.json"


def snmp_scrape(fcs: int, in_errors: int, discards: int, status: int = 1) -> str:
    labels = 'ifAlias="to node0010",ifDescr="Ethernet1/3",ifIndex="3",ifName="Ethernet1/3"'
    return f"""# HELP ifOperStatus The current operational state of the interface. - 1.3.6.1.2.1.2.2.1.8
# TYPE ifOperStatus gauge
ifOperStatus{{{labels}}} {status}
ifOperStatus{{ifAlias="",ifDescr="mgmt0",ifIndex="99",ifName="mgmt0"}} 1
# TYPE ifHCInOctets counter
ifHCInOctets{{{labels}}} 9.876543210123e+12
# TYPE ifInErrors counter
ifInErrors{{{labels}}} {in_errors}
# TYPE ifInDiscards counter
ifInDiscards{{{labels}}} {discards}
# TYPE dot3StatsFCSErrors counter
dot3StatsFCSErrors{{dot3StatsIndex="3"}} {fcs}
"""


def rows(batches) -> dict:  # noqa: ANN001
    out = {}
    for b in batches:
        for i, port in enumerate(b.columns["port"].tolist()):
            out[(b.source, port)] = {name: int(col[i]) for name, col in b.columns.items() if name != "port"}
    return out


def test_snmp_if_mib_ports_status_and_32_bit_wraps() -> None:
    conv = SwitchConverter(TOPO, INVENTORY)
    first = rows(conv.convert(parse(snmp_scrape(4294967290, 4294967200, 7)), 1_000, "tor-a.example"))
    port = first[("leaf001", 2)]  # Ethernet1/3 -> port 2
    assert port["oper_up"] == 1 and port["rx_bytes"] == 9876543210123
    assert port["crc_errors"] == 4294967290  # FCS errors preferred over ifInErrors (which includes them)
    assert "mgmt0" in " ".join(conv.skips.reasons)  # no port number in its name: skipped with the reason
    second = rows(conv.convert(parse(snmp_scrape(10, 4294967300 - 2**32, 3, status=2)), 2_000, "tor-a.example"))
    port = second[("leaf001", 2)]
    assert port["crc_errors"] == 2**32 + 10 and conv.report.wraps == 2  # wrapped: still rising
    assert port["drops"] == 3  # fell from 7: an agent restart, passed on as a reset
    assert port["oper_up"] == 0


def test_snmp_without_a_switch_says_so() -> None:
    conv = SwitchConverter(TOPO, INVENTORY)
    assert conv.convert(parse(snmp_scrape(1, 1, 1)), 1_000) == []
    assert any("--switch" in reason for reason in conv.skips.reasons)


def test_gnmic_openconfig_interfaces_with_a_prefix() -> None:
    text = """gnmic_interfaces_interface_state_counters_in_fcs_errors{interface_name="Ethernet2",source="leaf002"} 12
gnmic_interfaces_interface_state_counters_in_errors{interface_name="Ethernet2",source="leaf002"} 15
gnmic_interfaces_interface_state_counters_carrier_transitions{interface_name="Ethernet2",source="leaf002"} 4
gnmic_interfaces_interface_state_oper_status{interface_name="Ethernet2",oper_status="DOWN",source="leaf002"} 1
gnmic_interfaces_interface_state_counters_in_octets{interface_name="Ethernet3",source="leaf002"} 1000
gnmic_interfaces_interface_state_oper_status{interface_name="Ethernet3",oper_status="UP",source="leaf002"} 1
"""
    got = rows(SwitchConverter(TOPO, INVENTORY).convert(parse(text), 5_000))
    assert got[("leaf002", 1)]["crc_errors"] == 12 and got[("leaf002", 1)]["carrier_transitions"] == 4
    assert got[("leaf002", 1)]["oper_up"] == 0 and got[("leaf002", 2)]["oper_up"] == 1


def test_infiniband_exporter_switch_ports_named_by_switch_info() -> None:
    """Values of the OSC switch ib-i4l1s01 as its real `perfquery -x` capture gives them
    (osc_perfquery_fixtures/perfquery__0x506b4b03005c2740.out), in infiniband_exporter's names."""
    text = """infiniband_switch_info{guid="0x506b4b03005c2740",lid="2052",switch="ib-i4l1s01"} 1
infiniband_switch_port_link_downed_total{guid="0x506b4b03005c2740",port="1"} 1
infiniband_switch_port_transmit_discards_total{guid="0x506b4b03005c2740",port="1"} 20046
infiniband_switch_port_transmit_wait_total{guid="0x506b4b03005c2740",port="1"} 41864608
infiniband_switch_port_symbol_error_total{guid="0x506b4b03005c2740",port="1"} 0
infiniband_switch_port_receive_data_bytes_total{guid="0x506b4b03005c2740",port="1"} 178762341961629
infiniband_switch_port_link_downed_total{guid="0x7cfe9003009ce5b0",port="1"} 0
"""
    conv = SwitchConverter(TOPO, INVENTORY)
    got = rows(conv.convert(parse(text), 5_000))
    port = got[("leaf003", 0)]
    assert (port["carrier_transitions"], port["drops"], port["pfc_pause"]) == (1, 20046, 41864608)
    assert port["rx_bytes"] == 178762341961629
    assert conv.report.unmapped_switches == {"0x7cfe9003009ce5b0": 1}


@pytest.mark.skipif(not UFM_SAMPLE.exists(), reason="../shared/samples/infiniband is not here")
def test_the_real_ufm_telemetry_message() -> None:
    exposition, ts_ms = ufm_messages(UFM_SAMPLE.read_text())
    assert ts_ms == 1709652347161
    small = SwitchConverter(TOPO, INVENTORY)
    small.convert(exposition, ts_ms)  # ports 23 and 36 are beyond a 12-port leaf: skipped, with the reason
    assert any("port '23'" in reason for reason in small.skips.reasons)
    conv = SwitchConverter(Topology(ClusterShape(cards=2048, cards_per_node=8, nodes_per_leaf=32, spines=8)), INVENTORY)
    got = rows(conv.convert(exposition, ts_ms))
    assert [p for s, p in got if s == "leaf004"] == [0, 22, 35]
    assert got[("leaf004", 0)]["carrier_transitions"] == 1 and got[("leaf004", 22)]["carrier_transitions"] == 3
    assert got[("leaf004", 35)]["crc_errors"] == 0
    assert set(conv.report.unmapped_switches) == {"0x0c42a103007ab890", "0x7cfe900300292356", "0xe41d2d030003e3b0"}
    with pytest.raises(FormatError, match="no `values` list"):
        ufm_messages('{"timestamp": "x"}')


@pytest.mark.skipif(not UFM_SAMPLE.exists(), reason="../shared/samples/infiniband is not here")
def test_ingest_ufm_command(tmp_path) -> None:  # noqa: ANN001
    inventory = tmp_path / "inv.yaml"
    inventory.write_text('switches:\n  "0x248a070300ef19a0": leaf004\n')
    out = run_cli("ingest", "ufm", str(UFM_SAMPLE), "--inventory", str(inventory), "--out", str(tmp_path / "u.msgs"))
    assert out.returncode == 0, out.stderr
    assert "1 batch" in out.stderr and "Traceback" not in out.stderr


def test_ingest_prometheus_takes_a_saved_snmp_scrape_with_its_switch(tmp_path) -> None:  # noqa: ANN001
    scrape = tmp_path / "tor.prom"
    scrape.write_text(snmp_scrape(5, 5, 0))
    out = run_cli("ingest", "prometheus", str(scrape), "--switch", "leaf001", "--out", str(tmp_path / "s.msgs"))
    assert out.returncode == 0, out.stderr
    assert "1 batch" in out.stderr and "mgmt0" in out.stderr
    out = run_cli("ingest", "prometheus", str(scrape), "--out", str(tmp_path / "t.msgs"))
    assert out.returncode == 1 and "--switch" in out.stderr and "Traceback" not in out.stderr


def test_a_counter_that_is_not_a_count_is_skipped_with_its_reason() -> None:
    text = """infiniband_switch_port_symbol_error_total{guid="0x506b4b03005c2740",port="1"} +Inf
infiniband_switch_port_link_downed_total{guid="0x506b4b03005c2740",port="1"} 2
infiniband_switch_port_receive_errors_total{guid="0x506b4b03005c2740",port="2"} NaN
"""
    conv = SwitchConverter(TOPO, INVENTORY)
    got = rows(conv.convert(parse(text), 5_000))
    assert got[("leaf003", 0)]["carrier_transitions"] == 2 and got[("leaf003", 0)]["symbol_errors"] == 0
    assert any("is inf (not a count)" in reason for reason in conv.skips.reasons)
    assert any("is nan (not a count)" in reason for reason in conv.skips.reasons)


def test_a_nic_counter_that_is_not_a_count_does_not_stop_the_ingest(tmp_path) -> None:  # noqa: ANN001
    scrape = tmp_path / "host.prom"
    scrape.write_text(
        'node_network_receive_bytes_total{device="eth0"} +Inf\nnode_network_transmit_bytes_total{device="eth0"} 1000\n'
    )
    inventory = tmp_path / "inv.yaml"
    inventory.write_text("hosts:\n  h: {node: node0001, nics: {eth0: 0}}\n")
    out = run_cli(
        "ingest",
        "prometheus",
        str(scrape),
        "--host",
        "h",
        "--inventory",
        str(inventory),
        "--out",
        str(tmp_path / "h.msgs"),
    )
    assert out.returncode == 0, out.stderr
    assert "1 batch" in out.stderr and "not a count" in out.stderr and "Error" not in out.stderr


def test_port_names_go_with_a_switchs_batch_when_its_ports_are_news_not_with_every_scrape() -> None:
    """Names are per port, not per sample: sent with the first scrape, again when a port is new (or
    renamed), and every NAMES_EVERY_MS; with a topology the name is the device's, not our number."""
    from producers.adapters.switches import NAMES_EVERY_MS

    def scrape(*names: str) -> str:
        return "".join(
            f'ifOperStatus{{ifDescr="{n}",ifIndex="{40 + i}",ifName="{n}"}} 1\n' for i, n in enumerate(names)
        )

    for topology in (None, TOPO):
        conv = SwitchConverter(topology, INVENTORY)
        sent = []
        for ts, names in (
            (0, ("Ethernet1/3", "Ethernet1/5")),
            (1000, ("Ethernet1/3", "Ethernet1/5")),
            (2000, ("Ethernet1/3", "Ethernet1/5", "Ethernet1/2")),
            (3000, ("Ethernet1/3",)),
            (3000 + NAMES_EVERY_MS, ("Ethernet1/3",)),
        ):
            [batch] = conv.convert(parse(scrape(*names)), ts, "tor-a.example")
            assert batch.source == "leaf001"
            sent.append(batch.port_names)
        # with a topology ports go by number (rows in its order), without in the order first seen
        three, five, two = "Ethernet1/3", "Ethernet1/5", "Ethernet1/2"
        assert sent[0] == (three, five) and sent[2] == ((two, three, five) if topology else (three, five, two))
        assert sent[1] is None and sent[3] is None and sent[4] == ("Ethernet1/3",)
