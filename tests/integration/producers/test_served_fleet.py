"""The simulated cluster served as a fleet of exporters (`simulate --serve-exporters`), and what a
collector makes of its pages."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request

from pipeline.model.schemas import encode_batch
from pipeline.topology.inventory import load_inventory
from producers.adapters.exporters import ExporterConverter
from producers.adapters.prometheus import SeriesCache
from producers.collect.config import discover, load_config
from producers.ingest import InputReport, _convert_scrape
from producers.served_fleet import ClusterExporters, FleetServer, free_port_block, write_scrape_config
from tests.builders import card_batch, small_topology


def test_a_lost_card_leaves_its_nodes_page_and_a_missed_sample_is_no_news():
    exporters = ClusterExporters(small_topology(), lost_cards="drop")
    exporters.apply([card_batch("node0001", 0)])
    exporters.apply([card_batch("node0001", 1, cards=[0, 1, 2, 4, 5, 6, 7])])
    page = exporters.scrape("node", "node0001").decode()
    assert 'gpu="3"' not in page and 'gpu="4"' in page
    exporters.apply([card_batch("node0001", 2, cards=[])])  # the simulator's missed sample: a report without rows
    assert exporters.scrape("node", "node0001").decode().count("DCGM_FI_DEV_GPU_UTIL{") == 7
    assert "train_step" not in page  # a collector maps no step gauges: the served fleet has none


def test_every_target_on_its_own_port_and_a_scrape_config_collect_reads():
    topo = small_topology()
    exporters = ClusterExporters(topo, lost_cards="drop")
    exporters.apply([card_batch(name, 0) for name in topo.node_names])
    fleet = FleetServer(exporters, "127.0.0.1", free_port_block(topo.nodes + len(topo.switch_names)))

    async def run(tmp_config: str) -> list[tuple[int, bytes]]:
        await fleet.start()
        try:
            loop = asyncio.get_running_loop()

            def get(port: int, path: str = "/metrics") -> tuple[int, bytes]:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
                        return resp.status, resp.read()
                except urllib.error.HTTPError as exc:
                    return exc.code, b""

            first_switch = fleet.port_base + topo.nodes
            return [
                await loop.run_in_executor(None, get, port, path)
                for port, path in (
                    (fleet.port_base + 1, "/metrics"),
                    (first_switch, "/metrics"),
                    (fleet.port_base, "/other"),
                )
            ]
        finally:
            await fleet.stop()

    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/scrape.yml"
        write_scrape_config(path, fleet, 1.0, 10.0)
        node, switch, other = asyncio.run(run(path))
        targets, problems = discover(load_config(path))
    assert node[0] == 200 and b'Hostname="node0001"' in node[1]
    assert switch[0] == 503  # a switch that has reported nothing yet: silent
    assert other[0] == 404
    assert not problems and len(targets) == topo.nodes + len(topo.switch_names)
    gpu = [t for t in targets if t.job == "gpu"]
    assert gpu[1].url == f"http://127.0.0.1:{fleet.port_base + 1}/metrics" and gpu[1].labels["node"] == "node0001"
    assert {t.interval_s for t in targets if t.job == "switch"} == {10.0}


def test_the_collectors_fast_path_gives_what_the_general_path_gives():
    """Series placed once and remembered (ExporterConverter.convert_page) against the general
    parser and converter, scrape after scrape, with an XID appearing and a card leaving."""
    topo = small_topology()
    exporters = ClusterExporters(topo, lost_cards="drop")
    fast, plain = ExporterConverter(topo, load_inventory(None)), ExporterConverter(topo, load_inventory(None))
    cache = SeriesCache()
    for t, (cards, errors) in enumerate([(None, []), (None, [(3, 79)]), ([0, 1, 2, 4, 5, 6, 7], []), (None, [])]):
        exporters.apply([card_batch("node0002", t, cards=cards, errors=errors)])
        page = exporters.scrape("node", "node0002").decode()
        quick = _convert_scrape(fast, page, None, InputReport("a"), None, 1000 * t, cache)
        slow = _convert_scrape(plain, page, None, InputReport("b"), None, 1000 * t)
        assert [encode_batch(b) for b in quick] == [encode_batch(b) for b in slow]
    assert len(cache.routes) == 8 * 9  # every series seen once: 8 cards, 9 metrics each
    assert fast.report.mapped == plain.report.mapped


def test_metric_relabel_configs_apply_once_per_series_on_both_paths():
    """Prometheus's own rules on the collector's pages: drop a metric, rename a label the
    converter reads (an exporter that names its host `host`, not `Hostname`)."""
    from producers.collect.config import RelabelConfig
    from producers.collect.scraper import metric_relabel

    topo = small_topology()
    rules = (
        RelabelConfig(source_labels=("__name__",), regex="DCGM_FI_DEV_GPU_TEMP", action="drop"),
        RelabelConfig(source_labels=("host",), target_label="Hostname"),
        RelabelConfig(regex="host", action="labeldrop"),
    )
    page = "".join(
        f'DCGM_FI_DEV_GPU_UTIL{{gpu="{c}",host="node0003"}} 50\n'
        f'DCGM_FI_DEV_GPU_TEMP{{gpu="{c}",host="node0003"}} 70\n'
        f'some_other_metric{{host="node0003"}} 1\n'
        for c in range(2)
    )
    converter = ExporterConverter(topo, load_inventory(None))
    cache = SeriesCache(relabel=metric_relabel(rules))
    for t in range(2):  # the first scrape places the series, the second reads values only
        [batch] = _convert_scrape(converter, page, None, InputReport("x"), None, 1000 * t, cache)
        assert batch.source == "node0003" and batch.columns["util"].tolist() == [50.0, 50.0]
        assert all(v != v for v in batch.columns["temp_c"].tolist())  # dropped: NaN, not 70
    assert cache.known['some_other_metric{host="node0003"}'] == ("some_other_metric", {"Hostname": "node0003"})


def test_the_fast_path_on_real_exporter_captures():
    """Real dcgm-exporter and npu-exporter scrapes (../shared/samples), scraped three times: the
    collector's remembered placement gives what the general parser and converter give."""
    import pytest

    from tests.conftest import SAMPLES

    pages = sorted((SAMPLES / "dcgm_exporter").glob("*.prom")) + sorted((SAMPLES / "npu_exporter").glob("*.prom"))
    if not pages:
        pytest.skip("../shared/samples/dcgm_exporter and npu_exporter are not here")
    topo = small_topology()
    for path in pages:
        text = path.read_text()
        fast, plain = ExporterConverter(topo, load_inventory(None)), ExporterConverter(topo, load_inventory(None))
        cache = SeriesCache()
        for t in range(3):
            quick = _convert_scrape(fast, text, "node0001", InputReport("a"), None, 1000 * t, cache)
            slow = _convert_scrape(plain, text, "node0001", InputReport("b"), None, 1000 * t)
            assert quick and [encode_batch(b) for b in quick] == [encode_batch(b) for b in slow], path.name
