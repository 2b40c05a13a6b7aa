"""`clusterpulse ingest` says why an input gave nothing (issue 12, item 6): per input, one line on
stderr (not recognised and what is expected, empty, binary, unmapped rows with their reasons); exit 1
when nothing usable came in at all, 0 on partial success (which still reports what was skipped)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from pipeline.model.schemas import decode_batch
from producers.output import read_message_file
from tests.conftest import ROOT, SAMPLES, run_cli, static_http

FIXTURES = ROOT / "tests" / "fixtures"
H200_CAPTURE = SAMPLES / "nvidia_smi" / "linux-x86_64__nvidia-h200__590.48.01.txt"
QUERY_HINT = "nvidia-smi --query-gpu=timestamp,index,pci.bus_id,utilization.gpu"
UNKNOWN_ONLY = (
    "# TYPE go_goroutines gauge\ngo_goroutines 12\n"
    'node_cpu_seconds_total{cpu="0",mode="idle"} 1234.5\nprocess_open_fds 10\n'
)


@pytest.fixture
def inventory(tmp_path: Path) -> Path:
    """h200 maps GPU index -> card (no gpus map); xe9680 and h200p map some PCI ids, not all."""
    path = tmp_path / "inventory.yaml"
    path.write_text(
        'hosts:\n  gpu-node-1: {node: node0000, gpus: {"00000000:53:00.0": 0}}\n'
        '  h200: node0001\n  h200p: {node: node0002, gpus: {"0000:9b:00": 4, "0000:18:00": 0}}\n'
        '  xe9680: {node: node0005, gpus: {"0000:9b:00": 4}}\n'
        'switches:\n  "0x7cfe9003009ce5b0": leaf003\n'
    )
    return path


def cli(*args: str) -> subprocess.CompletedProcess:
    done = run_cli(*args)
    assert "Traceback" not in done.stderr, done.stderr
    return done


def reason_lines(done: subprocess.CompletedProcess) -> list[str]:
    return [line for line in done.stderr.splitlines() if line.startswith("clusterpulse: ")]


def smi(path: Path | str, inventory: Path, out: Path, host: str = "h200") -> subprocess.CompletedProcess:
    return cli("ingest", "nvidia-smi", "--host", host, str(path), "--inventory", str(inventory), "--out", str(out))


# ---- nvidia-smi: the inputs the issue names ------------------------------------------------------


def test_a_binary_file_is_named_as_binary_and_fails(tmp_path: Path, inventory: Path) -> None:
    blob = tmp_path / "smi.bin"
    blob.write_bytes(bytes(range(256)) * 8)
    done = smi(blob, inventory, tmp_path / "o.bin")
    assert done.returncode == 1, done.stderr
    assert f"clusterpulse: {blob}: binary data, not text" in done.stderr
    gz = tmp_path / "smi.csv.gz"
    gz.write_bytes(b"\x1f\x8b\x08\x00" + bytes(64))
    done = smi(gz, inventory, tmp_path / "o.bin")
    assert done.returncode == 1 and "gzip-compressed data (decompress it first), not text" in done.stderr


def test_an_empty_file_is_named_as_empty_and_fails(tmp_path: Path, inventory: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    done = smi(empty, inventory, tmp_path / "o.bin")  # nothing to read at all: a user error, one line (issue 25)
    assert done.returncode == 2 and done.stderr == f"clusterpulse: {empty}: empty file; nothing ingested\n"


def test_a_junk_csv_says_what_it_lacks_and_what_to_save(tmp_path: Path, inventory: Path) -> None:
    junk = tmp_path / "junk.csv"
    junk.write_text("name,colour,size\napple,red,3\npear,green,2\n")
    done = smi(junk, inventory, tmp_path / "o.bin")
    assert done.returncode == 1
    [line] = [ln for ln in reason_lines(done) if str(junk) in ln]
    assert "a CSV whose header (name, colour, size) has none of the --query-gpu fields" in line
    assert QUERY_HINT in line and "nvidia-smi -q -x" in line


def test_csv_saved_without_its_header_is_named(tmp_path: Path, inventory: Path) -> None:
    rows = (FIXTURES / "nvidia-smi_h200_query-gpu_load.csv").read_text().splitlines()[1:]
    bare = tmp_path / "noheader.csv"
    bare.write_text("\n".join(rows) + "\n")
    done = smi(bare, inventory, tmp_path / "o.bin")
    assert done.returncode == 1 and "CSV without a header line (saved with --format=csv,noheader?)" in done.stderr


@pytest.mark.parametrize(
    "name, kind",
    [("nvidia-smi_h200_default-table.txt", "the default table"), ("nvidia-smi_h200_q_excerpt.txt", "`nvidia-smi -q`")],
)
def test_human_readable_h200_output_is_refused_with_what_to_save(
    name: str, kind: str, tmp_path: Path, inventory: Path
) -> None:
    done = smi(FIXTURES / name, inventory, tmp_path / "o.bin")
    assert done.returncode == 1, done.stderr
    [line] = [ln for ln in reason_lines(done) if name in ln]
    assert f"human-readable nvidia-smi output ({kind}), not --query-gpu CSV" in line
    assert QUERY_HINT in line and "--format=csv` or `nvidia-smi -q -x`" in line
    assert "0 batches from 1 input" in done.stderr


@pytest.mark.skipif(not H200_CAPTURE.exists(), reason="../shared/samples/nvidia_smi is not here")
def test_the_whole_h200_capture_points_at_its_csv_section(tmp_path: Path, inventory: Path) -> None:
    done = smi(H200_CAPTURE, inventory, tmp_path / "o.bin")
    assert done.returncode == 1, done.stderr
    assert "human-readable nvidia-smi output (the default table and `nvidia-smi -q`)" in done.stderr
    line_no = (
        H200_CAPTURE.read_text()
        .splitlines()
        .index(next(ln for ln in H200_CAPTURE.read_text().splitlines() if ln.startswith("timestamp, ")))
        + 1
    )
    assert f"its --query-gpu CSV section starts at line {line_no}: save that section alone" in done.stderr


def test_good_and_bad_inputs_together_exit_0_and_still_name_the_bad_ones(tmp_path: Path, inventory: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("\n\n")
    out = tmp_path / "o.bin"
    done = cli(
        "ingest",
        "nvidia-smi",
        str(FIXTURES / "nvidia-smi_h200_query-gpu_load.csv"),
        "--host",
        "h200",
        str(empty),
        str(FIXTURES / "nvidia-smi_h200_default-table.txt"),
        "--inventory",
        str(inventory),
        "--out",
        str(out),
    )
    assert done.returncode == 0, done.stderr
    assert f"{empty}: empty file (only whitespace)" in done.stderr
    assert "nvidia-smi_h200_default-table.txt: human-readable nvidia-smi output" in done.stderr
    assert "1 batch from 3 inputs" in done.stderr
    [batch] = [decode_batch(m.value) for m in read_message_file(out)]
    assert batch.source == "node0001" and batch.columns["card"].tolist() == [0]


# ---- a partial gpus map names the GPU, not the host ------------------------------------------


def test_nvidia_smi_partial_gpus_map_names_the_unmapped_gpu(tmp_path: Path, inventory: Path) -> None:
    done = smi(FIXTURES / "nvidia-smi_h200_query-gpu_load.csv", inventory, tmp_path / "o.bin", host="h200p")
    assert done.returncode == 1
    assert (
        "skipped 1 row: GPU PCI id 00000000:83:00.0 not in host h200p's gpus map (which maps: 18:00, 9b:00)"
        in done.stderr
    )
    assert "not in the inventory" not in done.stderr
    done = smi(FIXTURES / "telegraf_a10g.xml", inventory, tmp_path / "o.bin", host="h200p")
    assert done.returncode == 1 and "1 GPU: GPU PCI id 00000000:00:1E.0 not in host h200p's gpus map" in done.stderr


def test_prometheus_partial_gpus_map_names_the_gpus_not_the_host(tmp_path: Path, inventory: Path) -> None:
    out = tmp_path / "o.bin"
    done = cli(
        "ingest",
        "prometheus",
        str(FIXTURES / "aicr_eks_8xH100_sampled.prom"),
        "--inventory",
        str(inventory),
        "--out",
        str(out),
    )
    assert done.returncode == 0, done.stderr  # card 0 (53:00) mapped: partial success
    assert "unmapped hosts: none" in done.stderr
    assert (
        "21 samples: GPU PCI ids 00000000:64:00.0, 00000000:75:00.0, 00000000:86:00.0, 00000000:97:00.0 and 3 "
        "more not in host gpu-node-1's gpus map (which maps: 53:00)"
    ) in done.stderr
    assert "'gpu-node-1 00000000:CA:00.0': 3" in done.stderr  # the summary's unmapped GPUs
    [batch] = [decode_batch(m.value) for m in read_message_file(out)]
    assert batch.source == "node0000" and batch.columns["card"].tolist() == [0]


def test_xid_partial_gpus_map_and_no_gpus_map(tmp_path: Path, inventory: Path) -> None:
    log = str(FIXTURES / "gpud_dmesg-xid13-iso.log")
    done = cli("ingest", "xid", "--host", "xe9680", log, "--inventory", str(inventory), "--out", str(tmp_path / "o"))
    assert done.returncode == 1
    assert "17 Xid lines: GPU PCI id 0000:38:00 not in host xe9680's gpus map (which maps: 9b:00)" in done.stderr
    done = cli("ingest", "xid", "--host", "h200", log, "--inventory", str(inventory), "--out", str(tmp_path / "o"))
    assert done.returncode == 1 and "host h200 has no gpus map in the inventory" in done.stderr


# ---- the other sources -------------------------------------------------------------------------


def test_a_kernel_log_without_xid_lines(tmp_path: Path, inventory: Path) -> None:
    done = cli(
        "ingest",
        "xid",
        "--host",
        "xe9680",
        str(FIXTURES / "gpud_kmsg.1.log"),
        "--inventory",
        str(inventory),
        "--out",
        str(tmp_path / "o.bin"),
    )
    assert done.returncode == 1, done.stderr
    assert "gpud_kmsg.1.log: a kernel log with no NVIDIA Xid lines among 47 lines" in done.stderr
    assert "nothing ingested from 1 input" in done.stderr


def test_kmsg_xid_records_without_boot_time_say_so(tmp_path: Path, inventory: Path) -> None:
    kmsg = tmp_path / "kmsg.log"
    kmsg.write_text("4,1234,5000000,-;NVRM: Xid (PCI:0000:9b:00): 79, pid=1, GPU has fallen off the bus.\n")
    args = ("ingest", "xid", "--host", "xe9680", str(kmsg), "--inventory", str(inventory), "--out", str(tmp_path / "o"))
    done = cli(*args)
    assert (
        done.returncode == 1
        and "1 Xid line: /dev/kmsg records carry microseconds since boot: give --boot-time" in done.stderr
    )
    assert cli(*args, "--boot-time", "2026-01-01T00:00:00Z").returncode == 0


def test_a_scrape_of_unknown_metrics_only(tmp_path: Path, inventory: Path) -> None:
    scrape = tmp_path / "node.prom"
    scrape.write_text(UNKNOWN_ONLY)
    done = cli(
        "ingest",
        "prometheus",
        str(scrape),
        "--host",
        "gpu-node-1",
        "--inventory",
        str(inventory),
        "--out",
        str(tmp_path / "o.bin"),
    )
    assert done.returncode == 1, done.stderr
    assert (
        "only metrics ClusterPulse does not map (3 samples of 3 metrics: go_goroutines, node_cpu_seconds_total, "
        "process_open_fds); expected dcgm-exporter DCGM_FI_DEV_*"
    ) in done.stderr


def test_prometheus_files_that_are_not_expositions(tmp_path: Path, inventory: Path) -> None:
    files = {
        "empty.prom": b"",
        "blob.prom": bytes(range(256)),
        "api.json": b'{"status": "success"}\n',
        "notes.txt": b"hello world\n",
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    done = cli(
        "ingest",
        "prometheus",
        *(str(tmp_path / n) for n in files),
        "--host",
        "gpu-node-1",
        "--out",
        str(tmp_path / "o.bin"),
    )
    assert done.returncode == 1
    assert [ln.split(": ", 2)[2] for ln in reason_lines(done)[:4]] == [
        "empty file",
        "binary data, not text",
        "JSON, not Prometheus text exposition (a Prometheus API response? save the exporter's /metrics)",
        "not Prometheus text exposition: no line parses (line 1: bad value or timestamp 'world'; "
        "first line 'hello world')",
    ]
    assert reason_lines(done)[-1] == "clusterpulse: nothing ingested from 4 inputs"


def test_a_scrape_of_an_unknown_host(tmp_path: Path, inventory: Path) -> None:
    done = cli(
        "ingest",
        "prometheus",
        str(FIXTURES / "kops_aws_L4_full_scrape.prom"),
        "--inventory",
        str(inventory),
        "--out",
        str(tmp_path / "o.bin"),
    )
    assert done.returncode == 1
    assert "nothing usable: skipped 6 samples: host 'i-030791dc5a37cd257' not in the inventory" in done.stderr


@pytest.fixture
def www(tmp_path: Path):
    root = tmp_path / "www"
    root.mkdir()
    (root / "node").write_text(UNKNOWN_ONLY)
    (root / "empty").write_text("")
    shutil.copy(FIXTURES / "aicr_eks_8xH100_sampled.prom", root / "dcgm")
    with static_http(root) as url:
        yield url


def test_live_scrapes_say_why_per_target(www: str, tmp_path: Path, inventory: Path) -> None:
    base = ("ingest", "prometheus", "--once", "--inventory", str(inventory), "--out", str(tmp_path / "o.bin"))
    done = cli(*base, "--target", f"{www}/node", "--target", f"{www}/empty")
    assert done.returncode == 1, done.stderr
    assert f"clusterpulse: {www}/node: only metrics ClusterPulse does not map" in done.stderr
    assert f"clusterpulse: {www}/empty: empty response" in done.stderr
    done = cli(*base, "--target", f"{www}/empty", "--target", f"{www}/dcgm")
    assert done.returncode == 0, done.stderr  # one target delivered
    assert f"{www}/empty: empty response" in done.stderr and "1 batch from 30 samples" in done.stderr


def test_perfquery_sysfs_and_steps_say_why_too(tmp_path: Path, inventory: Path) -> None:
    empty = tmp_path / "empty.out"
    empty.write_text("")
    basic = tmp_path / "basic.out"
    basic.write_text("# Port counters: Lid 1 port 1 (CapMask: 0x5300)\nPortSelect:......................1\n")
    done = cli("ingest", "perfquery", "--switch", "leaf003", str(empty), str(basic), "--out", str(tmp_path / "o"))
    assert done.returncode == 1
    assert f"{empty}: empty file" in done.stderr and f"{basic}: perfquery output without -x" in done.stderr
    inv = tmp_path / "ib.yaml"
    inv.write_text("hosts:\n  h100: {node: node0100, nics: {mlx5_0: 0}}\n")
    done = cli("ingest", "sysfs", "--host", "h100", str(empty), "--inventory", str(inv), "--out", str(tmp_path / "o"))
    assert done.returncode == 2 and done.stderr.count("\n") == 1  # an empty file alone: a user error (issue 25)
    assert f"{empty}: not a directory: expected a copy of /sys/class/infiniband" in done.stderr
    done = cli(
        "ingest",
        "steps",
        str(empty),
        str(FIXTURES / "trace-AR.parquet"),
        "--format",
        "pai",
        "--out",
        str(tmp_path / "o"),
    )
    assert done.returncode == 1
    assert f"{empty}: empty file; expected a PAI mini-batch CSV" in done.stderr
    assert "trace-AR.parquet: a Parquet file, not text: use --format bytedance" in done.stderr


def test_sysfs_unmapped_nics_are_named(tmp_path: Path) -> None:
    import tarfile

    with tarfile.open(FIXTURES / "gpud_sys-class-infiniband-h100.tar.gz") as tar:
        tar.extractall(tmp_path, filter="data")
    inv = tmp_path / "ib.yaml"
    inv.write_text("hosts:\n  h100: {node: node0100, nics: {mlx5_0: 0, mlx5_1: 1}}\n  bare: node0101\n")
    root = str(tmp_path / "sys-class-infiniband-h100.0")
    done = cli("ingest", "sysfs", "--host", "h100", root, "--inventory", str(inv), "--out", str(tmp_path / "o"))
    assert done.returncode == 0, done.stderr
    assert (
        "2 batches; skipped 7 devices: NICs mlx5_4, mlx5_5, mlx5_6, mlx5_7 and 3 more not in host h100's "
        "nics map (which maps: mlx5_0, mlx5_1)"
    ) in done.stderr
    done = cli("ingest", "sysfs", "--host", "bare", root, "--inventory", str(inv), "--out", str(tmp_path / "o"))
    assert done.returncode == 1 and "9 devices: host bare has no nics map in the inventory" in done.stderr


def test_an_unknown_host_or_switch_is_a_usage_error(tmp_path: Path, inventory: Path) -> None:
    log = str(FIXTURES / "gpud_dmesg-with-xid-119.log")
    done = cli("ingest", "xid", "--host", "nowhere", log, "--inventory", str(inventory), "--out", str(tmp_path / "o"))
    assert done.returncode == 2 and "--host 'nowhere' is neither in inventory" in done.stderr
    done = cli(
        "ingest",
        "perfquery",
        "--switch",
        "0xdead",
        str(FIXTURES / "perfquery__0x7cfe9003009ce5b0.out"),
        "--out",
        str(tmp_path / "o"),
    )
    assert done.returncode == 2 and "--switch '0xdead' is neither a switch of the topology" in done.stderr


# ---- options before and after the files ---------------------------------------------------------


def _messages(path: Path) -> list[bytes]:
    return [m.value for m in read_message_file(path)]


def test_xid_host_before_or_after_the_files(tmp_path: Path, inventory: Path) -> None:
    log, quiet = str(FIXTURES / "gpud_dmesg-with-xid-119.log"), str(FIXTURES / "gpud_kmsg.1.log")
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    first = cli("ingest", "xid", "--host", "xe9680", log, "--inventory", str(inventory), quiet, "--out", str(a))
    second = cli("ingest", "xid", log, "--inventory", str(inventory), "--host", "xe9680", quiet, "--out", str(b))
    for done in (first, second):
        assert done.returncode == 0, done.stderr  # partial success
        assert "5 Xid lines in 90 lines -> 5 event batches" in done.stderr
        assert f"clusterpulse: {quiet}: a kernel log with no NVIDIA Xid lines among 47 lines" in done.stderr
    assert len(_messages(a)) == len(_messages(b)) == 5


def test_perfquery_switch_before_or_after_the_files(tmp_path: Path, inventory: Path) -> None:
    out, empty = str(FIXTURES / "perfquery__0x7cfe9003009ce5b0.out"), tmp_path / "empty.out"
    empty.write_text("")
    guid = "0x7cfe9003009ce5b0"
    for args in (("--switch", guid, out, str(empty)), (out, "--switch", guid, str(empty))):
        target = tmp_path / "pq.bin"
        done = cli("ingest", "perfquery", *args, "--inventory", str(inventory), "--out", str(target))
        assert done.returncode == 0 and "1 batch from 2 inputs" in done.stderr, done.stderr
        assert f"clusterpulse: {empty}: empty file" in done.stderr
        [batch] = [decode_batch(v) for v in _messages(target)]
        assert batch.source == "leaf003" and batch.columns["port"].tolist() == [0, 1]


def test_steps_detect_before_or_after_the_files(tmp_path: Path) -> None:
    trace, empty = str(FIXTURES / "trace-AR.parquet"), tmp_path / "empty.csv"
    empty.write_text("")
    before = cli("ingest", "steps", "--detect", trace, str(empty))
    after = cli("ingest", "steps", trace, "--detect", str(empty))
    for done in (before, after):
        assert done.returncode == 0, done.stderr
        assert "1 straggler alert on 1 rank: trace-AR/stage0 rank 0" in done.stdout
        assert f"clusterpulse: {empty}: empty file; expected a PAI mini-batch CSV" in done.stderr
    assert before.stdout == after.stdout


def test_steps_detect_reports_a_bad_input_and_goes_on(tmp_path: Path) -> None:
    junk = tmp_path / "junk.csv"
    junk.write_text("a,b\n1,2\n")
    done = cli("ingest", "steps", str(junk), "--detect", str(FIXTURES / "job_2_norm.csv"))
    assert done.returncode == 0, done.stderr
    assert f"clusterpulse: {junk}: not a PAI mini-batch CSV: its header (a, b) lacks worker, time" in done.stderr
    assert "job_2_norm.csv: 0 straggler alerts on 0 ranks: none" in done.stdout
    done = cli("ingest", "steps", "--detect", str(junk))
    assert done.returncode == 1 and "no steps in 1 input: nothing to detect" in done.stderr


def test_an_unreadable_input_is_one_line(tmp_path: Path, inventory: Path) -> None:
    folder = tmp_path / "not-a-file.csv"
    folder.mkdir()
    done = smi(folder, inventory, tmp_path / "o.bin")  # a user error: exit 2 (issue 25)
    assert (
        done.returncode == 2
        and done.stderr == f"clusterpulse: {folder}: cannot read: Is a directory; nothing ingested\n"
    )
