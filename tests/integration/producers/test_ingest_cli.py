"""`clusterpulse ingest`: live scrapes, unreachable endpoints, bad input counted, file output."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.model.schemas import decode_batch
from pipeline.ops.broker import free_port
from producers.output import read_message_file
from tests.conftest import ROOT, static_http
from tests.conftest import run_cli as cli

FIXTURES = ROOT / "tests" / "fixtures"


@pytest.fixture
def inventory(tmp_path: Path) -> Path:
    path = tmp_path / "inventory.yaml"
    path.write_text(
        'hosts:\n  gpu-node-1: node0000\n  cp-bm14r7: node0002\n  xe9680: {node: node0005, gpus: {"0000:9b:00": 4}}\n'
    )
    return path


@pytest.fixture
def metrics_server(tmp_path: Path):
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "metrics").write_bytes((FIXTURES / "aicr_eks_8xH100_sampled.prom").read_bytes())
    with static_http(tmp_path / "www") as url:
        yield f"{url}/metrics"


def test_one_poll_of_a_live_exporter(metrics_server: str, inventory: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.bin"
    done = cli(
        "ingest", "prometheus", "--target", metrics_server, "--once", "--inventory", str(inventory), "--out", str(out)
    )
    assert done.returncode == 0, done.stderr
    assert "1 batch from 30 samples (24 mapped)" in done.stderr
    [message] = list(read_message_file(out))
    batch = decode_batch(message.value)
    assert batch.source == "node0000" and len(batch.columns["card"]) == 8


def test_an_unreachable_endpoint_is_a_clear_error(inventory: Path, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/metrics"
    done = cli(
        "ingest",
        "prometheus",
        "--target",
        url,
        "--once",
        "--inventory",
        str(inventory),
        "--out",
        str(tmp_path / "m.bin"),
    )
    assert done.returncode == 1 and f"cannot scrape {url}" in done.stderr and "Traceback" not in done.stderr


def test_unparseable_lines_are_counted_and_the_rest_ingested(inventory: Path, tmp_path: Path) -> None:
    scrape = tmp_path / "scrape.prom"
    good = (FIXTURES / "ericsson_T4_scrape.prom").read_text()
    scrape.write_text("this is { not exposition\n" + good + 'DCGM_FI_DEV_GPU_TEMP{gpu="0" 12\n')
    done = cli("ingest", "prometheus", str(scrape), "--inventory", str(inventory), "--out", str(tmp_path / "m.bin"))
    assert done.returncode == 0, done.stderr
    assert "2 unparseable lines" in done.stderr and "1 batch from" in done.stderr
    assert "2 lines: unparseable (first: line 1: " in done.stderr  # and the input says what it skipped


def test_xid_log_to_events_and_a_bad_inventory(inventory: Path, tmp_path: Path) -> None:
    out = tmp_path / "x.bin"
    done = cli(
        "ingest",
        "xid",
        str(FIXTURES / "gpud_dmesg-with-xid-119.log"),
        "--host",
        "xe9680",
        "--inventory",
        str(inventory),
        "--out",
        str(out),
    )
    assert done.returncode == 0 and "5 Xid lines" in done.stderr
    batches = [decode_batch(m.value) for m in read_message_file(out)]
    assert {(b.source, int(b.columns["err_card"][0]), int(b.columns["err_code"][0])) for b in batches} == {
        ("node0005", 4, 119)
    }
    bad = tmp_path / "bad.yaml"
    bad.write_text("hosts: [oops\n")
    done = cli(
        "ingest",
        "xid",
        str(FIXTURES / "gpud_dmesg-with-xid-119.log"),
        "--host",
        "x",
        "--inventory",
        str(bad),
        "--out",
        str(out),
    )
    assert done.returncode == 2 and "not valid YAML" in done.stderr


def test_step_tables_report_their_stragglers() -> None:
    done = cli("ingest", "steps", str(FIXTURES / "trace-AR.parquet"), "--detect")
    assert done.returncode == 0 and "1 straggler alert on 1 rank: trace-AR/stage0 rank 0" in done.stdout


def test_unreadable_step_tables_and_xml_are_clear_errors(tmp_path: Path, inventory: Path) -> None:
    csv = tmp_path / "wrong.csv"
    csv.write_text("a,b\n1,2\n")
    done = cli("ingest", "steps", str(csv), "--detect")
    assert done.returncode == 1 and "wrong.csv: not a PAI mini-batch CSV: its header (a, b) lacks" in done.stderr
    assert "Traceback" not in done.stderr
    parquet = FIXTURES / "job_2_norm.csv"  # not a parquet file
    done = cli("ingest", "steps", str(parquet), "--format", "bytedance", "--out", str(tmp_path / "s.bin"))
    assert done.returncode == 1 and "not a StragglerAnalysis op trace" in done.stderr
    xml = tmp_path / "smi.xml"
    xml.write_text("<?xml version='1.0'?><nvidia_smi_log><gpu>")
    done = cli(
        "ingest",
        "nvidia-smi",
        str(xml),
        "--host",
        "gpu-node-1",
        "--inventory",
        str(inventory),
        "--out",
        str(tmp_path / "n.bin"),
    )
    assert done.returncode == 1 and "not nvidia-smi -q -x XML" in done.stderr and "Traceback" not in done.stderr
