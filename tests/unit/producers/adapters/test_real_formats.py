"""Adapters against real captures (tests/fixtures/SOURCES.md): concrete values read from the files."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from pipeline.detect.straggler import StragglerDetector
from pipeline.settings import StragglerSettings
from pipeline.topology.inventory import Host, Inventory, load_inventory
from pipeline.topology.synthetic import ClusterShape, Topology
from producers.adapters.exporters import ExporterConverter
from producers.adapters.kernel_log import KernelLogReport, parse_xids, xid_batches
from producers.adapters.prometheus import parse, parse_line
from producers.adapters.steps import read_bytedance_trace, read_pai_minibatch, to_batches

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures"
TOPO = Topology(ClusterShape(cards=1024, cards_per_node=8, nodes_per_leaf=32, spines=4))
INVENTORY = Inventory(
    hosts={
        "gpu-node-1": Host("node0000"),
        "cp-bm14r7": Host("node0002"),
        "ip-172-20-48-66": Host("node0003"),
        "npu-host": Host("node0004"),
        "xe9680": Host("node0005", gpus={"9b:00": 4, "18:00": 0}),
    }
)


def text(name: str) -> str:
    return (FIXTURES / name).read_text()


def test_exposition_lines_with_escapes_timestamps_and_special_values() -> None:
    s = parse_line('m{a="x\\"y",b="",c="1\\\\2"} +Inf 1606402000')
    assert (s.labels, s.value, s.ts_ms) == ({"a": 'x"y', "b": "", "c": "1\\2"}, math.inf, 1606402000)
    assert math.isnan(parse_line("m NaN").value) and parse_line("m{} 16.365000").value == 16.365
    bad = parse("ok 1\nbroken{a=} 2\nno_value\n")
    assert len(bad.samples) == 1 and [n for n, _ in bad.bad_lines] == [2, 3]


def test_dcgm_8x_h100_scrape() -> None:
    exp = parse(text("aicr_eks_8xH100_sampled.prom"))
    assert len(exp.samples) == 30 and not exp.bad_lines
    conv = ExporterConverter(TOPO, INVENTORY)
    [batch] = conv.convert(exp, 1_000)
    assert batch.source == "node0000" and batch.columns["card"].tolist() == list(range(8))
    assert batch.columns["temp_c"].tolist() == [30, 29, 26, 29, 28, 26, 28, 26]
    assert batch.columns["power_w"][0] == np.float32(113.611) and batch.columns["util"].tolist() == [0] * 8
    assert math.isnan(batch.columns["sm_clock_mhz"][0])  # not in this scrape: NaN, not 0
    assert conv.report.unknown_metrics == {"DCGM_FI_DEV_MEM_COPY_UTIL": 6}


def test_dcgm_scrape_without_help_and_type_lines() -> None:
    exp = parse(text("ericsson_T4_scrape.prom"))
    assert len(exp.samples) == 20 and exp.types == {}
    [batch] = ExporterConverter(TOPO, INVENTORY).convert(exp, 1_000)
    assert batch.source == "node0002"
    assert (batch.columns["util"][0], batch.columns["sm_clock_mhz"][0], batch.columns["temp_c"][0]) == (91, 660, 74)
    assert batch.columns["power_w"][0] == np.float32(68.244)


def test_full_default_counters_scrape_with_help_and_type() -> None:
    exp = parse(text("kops_aws_L4_full_scrape.prom"))
    assert len(exp.types) == 23 and exp.types["DCGM_FI_DEV_PCIE_REPLAY_COUNTER"] == "counter"
    conv = ExporterConverter(TOPO, Inventory())  # no inventory: the host is unknown, counted, not fatal
    assert conv.convert(exp, 1_000) == []
    assert sum(conv.report.unmapped_hosts.values()) == conv.report.samples - sum(conv.report.unknown_metrics.values())


def test_npu_exporter_with_explicit_timestamps_and_empty_labels() -> None:
    exp = parse(text("mind-cluster_npu-exporter_testdata_prometheus_metrics.prom"))
    chips = {s.labels["id"] for s in exp.samples if s.name.startswith("npu_chip_info_")}
    assert chips == {str(i) for i in range(8)}
    assert {s.ts_ms for s in exp.samples if s.name == "npu_chip_info_temperature"} == {1606402000}
    [batch] = ExporterConverter(TOPO, INVENTORY).convert(exp, 1_000, host_hint="npu-host")
    assert batch.source == "node0004" and batch.ts_ms == 1606402000 and len(batch.columns["card"]) == 8
    assert batch.rows("events") == 0  # the mock reports error code 0 everywhere


def test_xid_119_events_map_to_card_4_through_the_pci_id() -> None:
    report = KernelLogReport()
    events = parse_xids(text("gpud_dmesg-with-xid-119.log"), report=report)
    assert [e.xid for e in events] == [119] * 5 and {e.pci for e in events} == {"0000:9b:00"}
    assert np.datetime64(events[0].ts_ms, "ms") == np.datetime64("2025-02-23T16:24:18")
    batches = xid_batches(events, "xe9680", INVENTORY, report)
    assert [(b.source, b.columns["err_card"].tolist(), b.columns["err_code"].tolist(), b.rows()) for b in batches][
        0
    ] == ("node0005", [4], [119], 0)
    assert len(batches) == 5 and report.unmapped == {}


def test_xid_13_in_iso_format_and_kmsg_records() -> None:
    events = parse_xids(text("gpud_dmesg-xid13-iso.log"))
    assert {e.xid for e in events} == {13, 43} and len(events) == 17 and events[0].pci == "0000:38:00"
    assert np.datetime64(events[0].ts_ms, "ms") == np.datetime64("2025-01-21T04:41:44.283")
    report = KernelLogReport()
    batches = xid_batches(events, "xe9680", INVENTORY, report)
    assert batches == [] and report.unmapped == {"0000:38:00": len(events)}  # unknown PCI id: counted
    kmsg = KernelLogReport()
    assert parse_xids(text("gpud_kmsg.1.log"), boot_ms=0, report=kmsg) == [] and kmsg.lines == 47
    [ev] = parse_xids(
        "4,1234,5000000,-;NVRM: Xid (PCI:0000:9b:00): 79, pid=1, GPU has fallen off the bus.", boot_ms=1_000_000
    )
    assert (ev.ts_ms, ev.xid) == (1_005_000, 79)  # boot time + microseconds since boot


def straggling_ranks(records, **settings) -> set:  # noqa: ANN001
    detector = StragglerDetector(TOPO, StragglerSettings(**settings))
    alerts = [a for b in to_batches(records, TOPO) for a in detector.push(b)]
    return {(a.labels["job"], int(a.labels["rank"])) for a in alerts if a.status == "firing"}


def test_pai_job_1_worker_6_straggles_and_job_2_stays_quiet() -> None:
    records = read_pai_minibatch(FIXTURES / "job_1_norm.csv")
    assert len(records) == 3000 and {r.rank for r in records} == set(range(10))
    # worker 6 (the label); worker 2 during iterations ~750-1000, when workers 0-2 all ran 10-15 %
    # behind the median (a real slow period the labels leave out: GPUs shared at 25 %). Workers 1
    # and 3 were flagged too while a rank's usual was learned only from its fast steps (biased low)
    assert straggling_ranks(records) == {("job_1_norm", r) for r in (2, 6)}
    assert straggling_ranks(read_pai_minibatch(FIXTURES / "job_2_norm.csv")) == set()


def test_bytedance_traces_single_slow_worker_random_imbalance_and_slow_stage() -> None:
    ar = read_bytedance_trace(FIXTURES / "trace-AR.parquet")
    assert len({r.rank for r in ar}) == 16 and len({r.step for r in ar}) == 44
    assert straggling_ranks(ar) == {("trace-AR/stage0", 0)}  # upstream: dp rank 0 of stage 0
    assert straggling_ranks(read_bytedance_trace(FIXTURES / "trace-SE.parquet")) == set()
    assert straggling_ranks(read_bytedance_trace(FIXTURES / "trace-ST.parquet")) == set()
    # compared across stages, the slow last stage shows as both of its ranks, never one alone
    assert straggling_ranks(read_bytedance_trace(FIXTURES / "trace-ST.parquet", by_stage=False)) == {
        ("trace-ST", 6),
        ("trace-ST", 7),
    }


def test_inventory_file(tmp_path) -> None:
    path = tmp_path / "inv.yaml"
    path.write_text(
        'hosts:\n  a: node0001\n  b: {node: node0002, gpus: {"00000000:9B:00.0": 4}}\n'
        'switches:\n  "0x7CFE9003009CE5B0": leaf003\n'
    )
    inv = load_inventory(path)
    assert inv.node_of("a.example.com") == "node0001" and inv.card_of("b", None, "0000:9b:00") == 4
    assert inv.switch_of("0x7cfe9003009ce5b0") == "leaf003"
    path.write_text("hosts:\n  a: [1, 2]\n")
    with pytest.raises(ValueError, match="hosts.a"):
        load_inventory(path)


def test_nvidia_smi_query_gpu_csv_with_units_and_not_available_fields() -> None:
    from producers.adapters.nvidia_smi import parse_query_csv

    inv = Inventory(hosts={"h200": Host("node0001")})
    [idle] = parse_query_csv(text("nvidia-smi_h200_query-gpu_idle.csv"), "h200", inv, 0)
    [load] = parse_query_csv(text("nvidia-smi_h200_query-gpu_load.csv"), "h200", inv, 0)
    assert load.source == "node0001" and load.columns["card"].tolist() == [0]
    assert (load.columns["util"][0], load.columns["sm_clock_mhz"][0], load.columns["temp_c"][0]) == (100, 1980, 52)
    assert load.columns["power_w"][0] == np.float32(627.40) and load.columns["mem_used_mib"][0] == 32362
    assert idle.columns["temp_c"][0] == 28 and load.ts_ms - idle.ts_ms == 23_654  # 22:10:46.109 -> 22:11:09.763


def test_nvidia_smi_xml() -> None:
    from producers.adapters.nvidia_smi import parse_query_xml

    [batch] = parse_query_xml(text("telegraf_a10g.xml"), "a10g", Inventory(hosts={"a10g": Host("node0002")}), 0)
    assert batch.columns["card"].tolist() == [0]
    assert (batch.columns["temp_c"][0], batch.columns["sm_clock_mhz"][0], batch.columns["util"][0]) == (17, 210, 0)
    assert batch.columns["power_w"][0] == np.float32(25.58) and batch.columns["mem_used_mib"][0] == 22


def test_perfquery_extended_counters_of_a_two_port_switch() -> None:
    from producers.adapters.network import parse_perfquery

    topo = Topology(ClusterShape(cards=64, cards_per_node=8, nodes_per_leaf=4, spines=2))
    batch = parse_perfquery(text("perfquery__0x7cfe9003009ce5b0.out"), "leaf003", 0)
    assert batch.columns["port"].tolist() == [0, 1]
    assert batch.columns["tx_bytes"][0] == 36298026860928 * 4 and batch.columns["rx_bytes"][1] == 39078804993378 * 4
    assert batch.columns["pfc_pause"][0] == 22730501 and batch.columns["symbol_errors"].tolist() == [0, 0]
    from pipeline.topology.entities import check_entities

    check_entities(batch, topo)  # valid for the topology: ports exist on leaf003


def test_sysfs_infiniband_counters_of_an_h100_node(tmp_path) -> None:
    import tarfile

    from producers.adapters.network import read_sysfs

    with tarfile.open(FIXTURES / "gpud_sys-class-infiniband-h100.tar.gz") as tar:
        tar.extractall(tmp_path, filter="data")
    root = tmp_path / "sys-class-infiniband-h100.0"
    nics = {"mlx5_0": 0, "mlx5_1": 1, "mlx5_4": 2, "mlx5_5": 3, "mlx5_6": 4, "mlx5_7": 5, "mlx5_8": 6, "mlx5_9": 7}
    inv = Inventory(hosts={"h100": Host("node0100", nics=nics)})
    batches, unmapped = read_sysfs(root, "h100", inv, TOPO, 0)
    assert unmapped == ["mlx5_bond_0"] and len(batches) == 8
    first = batches[0]  # mlx5_0 = NIC 0 of node0100: the node reports it as its port 0
    assert (first.source, first.columns["port"].tolist()) == ("node0100", [0])
    assert TOPO.port_link("node0100", 0) == "node0100-nic0~leaf003"  # the host end of that link
    assert first.columns["tx_bytes"][0] == 230442669431839 * 4 and first.columns["crc_errors"][0] == 14
    assert first.columns["oper_up"][0] == 1 and first.columns["pfc_pause"][0] == 2489603687


def test_node_exporter_nic_counters_become_the_host_ends_of_the_links() -> None:
    # node_exporter's netdev and infiniband collectors (metric names as node_exporter exposes them)
    scrape = "\n".join(
        [
            "# TYPE node_network_receive_bytes_total counter",
            'node_network_receive_bytes_total{device="eth2"} 1.5e+12',
            'node_network_transmit_bytes_total{device="eth2"} 2.5e+12',
            'node_network_carrier_changes_total{device="eth2"} 4',
            'node_network_up{device="eth2"} 0',
            'node_infiniband_symbol_error_total{device="mlx5_0",port="1"} 7',
            'node_infiniband_port_errors_received_total{device="mlx5_0",port="1"} 3',
            'node_network_receive_bytes_total{device="lo"} 123',
        ]
    )
    inv = Inventory(hosts={"h": Host("node0100", nics={"eth2": 2, "mlx5_0": 0})})
    conv = ExporterConverter(TOPO, inv)
    batches = conv.convert(parse(scrape), 5_000, host_hint="h")
    [node] = [b for b in batches if b.kind == "port"]  # the host ends of its links, NIC j as port j
    assert node.source == "node0100" and node.columns["port"].tolist() == [0, 2]
    ib, eth = 0, 1
    assert node.columns["oper_up"].tolist() == [1, 0]
    assert (node.columns["rx_bytes"][eth], node.columns["carrier_transitions"][eth]) == (1_500_000_000_000, 4)
    assert (node.columns["symbol_errors"][ib], node.columns["crc_errors"][ib]) == (7, 3)
    assert [TOPO.port_link("node0100", p) for p in (0, 2)] == ["node0100-nic0~leaf003", "node0100-nic2~leaf011"]
    assert conv.report.unmapped_hosts == {"h:lo": 1}
