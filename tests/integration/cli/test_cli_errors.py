"""Every verb answers bad input with one line on stderr and exit 2, never a traceback; each
--help shows only the verb's own options and an example; options and files in any order."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.cli import build_parser
from tests.conftest import ROOT, clean_env, run_cli

RECEIVERS = '[{"name": "ops", "url": "http://127.0.0.1:9/hook"}]'


@pytest.fixture
def binary(tmp_path: Path) -> Path:
    path = tmp_path / "settings.yaml"
    path.write_bytes(bytes(range(256)) * 4)
    return path


BAD_INPUT = [
    (["run", "--duration", "-1"], "must be a positive number"),
    (["run", "--speed", "fast"], "--speed must be a positive number or 'max'"),
    (["run", "--scenario", "no-such.yaml"], "no-such.yaml"),
    (["broker", "--port", "http"], "invalid int value"),
    (["broker", "--storage", "postgres://x"], "'^(memory|s3)://.+'"),
    (["broker", "--storage", "s3://tansu/"], "needs the S3 endpoint and credentials in the environment: AWS_ENDPOINT"),
    (["run", "--broker-storage", "s3://tansu/"], "needs the S3 endpoint and credentials"),
    (["worker"], "needs --bootstrap"),
    (["topics"], "needs --bootstrap"),
    (["simulate", "--scenario", "no-such.yaml"], "no-such.yaml"),
    (["simulate", "--scenario", "scenarios/healthy.yaml"], "needs --bootstrap"),
    (["replay", "no-such.msgs", "--bootstrap", "127.0.0.1:1"], "no such file"),
    (["eval", "no-such.yaml"], "no-such.yaml"),
    (["ingest", "xid", "--host", "h1"], "needs input files"),
    (["ingest", "perfquery", "tests/fixtures/perfquery__0x7cfe9003009ce5b0.out", "--out", "/dev/null"], "--switch"),
    (["ingest", "toaster"], "invalid choice"),
    (["alerts", "replay"], "no receivers configured"),
    (["alerts", "replay", "--receiver", "pager"], "no receivers configured"),
    (["receiver", "--secret-env", "CLUSTERPULSE_TEST_UNSET"], "is not set"),
    (["query", "no_such_query"], "no canned query named 'no_such_query'; there are: blast_radius"),
    (["query", "SELEC 1"], "syntax error"),
    (["query", "fault_timeline", "--param", "start"], "--param wants NAME=VALUE"),
    (
        ["compact", "--data", "s3://lake/x?endpoint_override=127.0.0.1:1&scheme=http"],
        "cannot reach the lake at s3://lake/x",
    ),
    (["sql", "--partitions", "3"], "unrecognized arguments"),
]


@pytest.mark.parametrize("args,reason", BAD_INPUT, ids=[" ".join(a) for a, _ in BAD_INPUT])
def test_bad_input_is_one_line_and_exit_2(args: list[str], reason: str, tmp_path: Path) -> None:
    result = (
        run_cli(*args, "--data", str(tmp_path), timeout=60)
        if args[0] in ("query", "sql")
        else run_cli(*args, timeout=60)
    )
    assert "Traceback" not in result.stderr
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert reason in lines[0]


def test_an_unreachable_broker_is_one_line_without_waiting_for_a_timeout() -> None:
    result = run_cli(
        "alerts", "replay", "--bootstrap", "127.0.0.1:1", env={"CLUSTERPULSE_NOTIFY__RECEIVERS": RECEIVERS}, timeout=30
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and "cannot reach a Kafka broker at 127.0.0.1:1" in result.stderr


@pytest.mark.parametrize("where", ["before", "after"])
def test_config_is_read_before_or_after_the_verb_and_a_binary_one_is_refused(
    where: str, binary: Path, tmp_path: Path
) -> None:
    args = ["--config", str(binary), "topics"] if where == "before" else ["topics", "--config", str(binary)]
    result = run_cli(*args)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == f"clusterpulse: config file {str(binary)!r} is not text (expected YAML)"
    bad = tmp_path / "bad.yaml"
    bad.write_text("partitions: 0\n")
    result = run_cli("simulate", "--check", "--scenario", "scenarios/healthy.yaml", "--config", str(bad))
    assert result.returncode == 2 and "setting 'partitions'" in result.stderr


def test_a_query_piped_into_head_ends_quietly(tmp_path: Path) -> None:
    command = (
        f"{sys.executable} -m pipeline query --data {tmp_path} 'SELECT range FROM range(200000)' --format csv | head -2"
    )
    result = subprocess.run(
        ["sh", "-c", command], cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=60
    )
    assert result.stdout.splitlines() == ["range", "0"]
    assert result.stderr == ""


def test_each_help_shows_only_its_own_options_and_an_example() -> None:
    parser = build_parser()
    verbs = parser._subparsers._group_actions[0].choices  # noqa: SLF001 - argparse keeps them here
    for name, sub in verbs.items():
        text = sub.format_help()
        if name == "ingest":
            text = sub._subparsers._group_actions[0].choices["xid"].format_help()  # noqa: SLF001
        assert "example:" in text, name
    query = verbs["query"].format_help()
    for foreign in ("--partitions", "--bootstrap", "--topic-prefix"):
        assert foreign not in query
    assert "--interval" not in verbs["ingest"]._subparsers._group_actions[0].choices["xid"].format_help()  # noqa: SLF001


def test_the_receiver_listens_on_loopback_unless_told() -> None:
    assert build_parser().parse_args(["receiver"]).host == "127.0.0.1"


def test_counts_are_in_words_that_agree() -> None:
    result = run_cli("simulate", "--check", "--scenario", "scenarios/card-failure-small.yaml")
    assert result.returncode == 0
    assert "1 fault" in result.stdout and "1 faults" not in result.stdout


def test_a_canned_query_by_name_and_the_sql_session_dot_commands(tmp_path: Path) -> None:
    from pipeline.lake.parquet import ParquetSink
    from pipeline.model.schemas import Alert

    sink = ParquetSink(tmp_path)
    sink.add_alert(
        "clusterpulse.alerts",
        0,
        0,
        Alert(
            kind="card_failed",
            entity="node0001-card2",
            status="firing",
            starts_at="2026-01-01T00:00:20.000Z",
            severity="critical",
            summary="failed",
        ),
    )
    sink.flush_all()
    result = run_cli("query", "fault_timeline", "--data", str(tmp_path), "--format", "csv")
    assert result.returncode == 0, result.stderr
    assert "node0001-card2" in result.stdout
    session = subprocess.run(
        [sys.executable, "-m", "pipeline", "sql", "--data", str(tmp_path)],
        cwd=ROOT,
        env=clean_env(),
        input=".tables\n.help\n.nonsense\nSELECT 41 + 1 AS answer;\n.quit\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert session.returncode == 0 and "Traceback" not in session.stderr
    assert "unknown command '.nonsense'" in session.stdout and "42" in session.stdout
    assert ".schema VIEW" in session.stdout


INVALID_YAML = "name: x\nseed: [1, 2\nfoo: bar\n"  # the flow sequence opened on line 2 is never closed
YAML_PROBLEM = (
    "line 3, column 4: expected ',' or ']', but got ':' (while parsing a flow sequence started at line 2, column 7)"
)
# (arguments, with <binary>, <invalid.yaml>, <empty>, <dir> for files made in tmp_path; what the one line says)
BAD_FILES = [
    (["run", "--scenario", "<binary>"], "scenario '<binary>' is not text (expected YAML)"),
    (["simulate", "--check", "--scenario", "<binary>"], "scenario '<binary>' is not text (expected YAML)"),
    (["eval", "--offline", "<binary>"], "scenario '<binary>' is not text (expected YAML)"),
    (["run", "--scenario", "<invalid.yaml>"], f"scenario '<invalid.yaml>' is not valid YAML: {YAML_PROBLEM}"),
    (["simulate", "--check", "--scenario", "<invalid.yaml>"], f"is not valid YAML: {YAML_PROBLEM}"),
    (["eval", "--offline", "<invalid.yaml>"], f"is not valid YAML: {YAML_PROBLEM}"),
    (["topics", "--config", "<invalid.yaml>"], f"config file '<invalid.yaml>' is not valid YAML: {YAML_PROBLEM}"),
    (["run", "--config", "<invalid.yaml>"], f"config file '<invalid.yaml>' is not valid YAML: {YAML_PROBLEM}"),
    (
        ["run", "--data", "<empty>", "--duration", "1"],
        "data directory '<empty>' (--data, env CLUSTERPULSE_DATA_DIR) is not a directory",
    ),
    (["run", "--data", "<empty>/lake", "--duration", "1"], "is not a directory: <empty> is a file"),
    (["query", "fault_timeline", "--data", "<empty>"], "data directory '<empty>'"),
    (["sql", "--data", "<binary>"], "data directory '<binary>'"),
    (["compact", "--data", "<empty>"], "data directory '<empty>'"),
    (["eval", "--offline", "scenarios/healthy.yaml", "--data", "<empty>"], "data directory '<empty>'"),
    (["query", "<binary>.sql"], "query file '<binary>.sql' is not text (expected SQL)"),
    (["ingest", "xid", "<empty>", "--host", "node0000", "--out", "/dev/null"], "<empty>: empty file; nothing ingested"),
    (
        ["ingest", "xid", "<dir>", "--host", "node0000", "--out", "/dev/null"],
        "<dir>: cannot read: Is a directory; nothing",
    ),
    (["ingest", "prometheus", "<empty>", "--out", "/dev/null"], "<empty>: empty file; nothing ingested"),
    (
        ["ingest", "prometheus", "<dir>", "<empty>", "--out", "/dev/null"],
        "nothing ingested from 2 inputs: <dir>: cannot read: Is a directory; <empty>: empty file",
    ),
    (
        ["ingest", "nvidia-smi", "<dir>", "--host", "node0000", "--out", "/dev/null"],
        "<dir>: cannot read: Is a directory",
    ),
    (["ingest", "perfquery", "<empty>", "--switch", "leaf000", "--out", "/dev/null"], "<empty>: empty file"),
    (["ingest", "steps", "<empty>", "--detect"], "<empty>: empty file; expected a PAI mini-batch CSV"),
    (["ingest", "ufm", "<empty>", "--detect"], "<empty>: empty file; nothing ingested"),
    (["ingest", "snmp", "<empty>", "--switch", "leaf000", "--detect"], "<empty>: empty file; nothing ingested"),
    (["ingest", "steps", "<dir>", "--out", "/dev/null"], "<dir>: cannot read: Is a directory; nothing ingested"),
    (["ingest", "xid", "<empty>", "--host", "node0000", "--inventory", "<binary>"], "inventory '<binary>' is not text"),
    (
        ["ingest", "xid", "<empty>", "--host", "node0000", "--inventory", "<invalid.yaml>"],
        f"inventory '<invalid.yaml>' is not valid YAML: {YAML_PROBLEM}",
    ),
    (["replay", "<binary>", "--bootstrap", "127.0.0.1:1"], "'<binary>' is not a ClusterPulse message file"),
    (["replay", "<empty>", "--bootstrap", "127.0.0.1:1"], "'<empty>' is empty (replay takes a file written by"),
    (["replay", "<dir>", "--bootstrap", "127.0.0.1:1"], "'<dir>' is a directory, not a message file"),
    (["topology", "show", "<invalid.yaml>"], "not a topology file this knows"),
    (
        ["collect", "--config", "<invalid.yaml>", "--bootstrap", "127.0.0.1:1"],
        "bad YAML: expected ',' or ']', but got ':' at line 3, column 4",
    ),
]


@pytest.fixture
def bad_files(tmp_path: Path) -> dict[str, str]:
    """A binary file, invalid YAML, an empty file and a directory, by their placeholder names."""
    (tmp_path / "binary").write_bytes(bytes(range(128, 256)) * 8)
    (tmp_path / "binary.sql").write_bytes(bytes(range(128, 256)) * 8)
    (tmp_path / "invalid.yaml").write_text(INVALID_YAML)
    (tmp_path / "empty").write_text("")
    (tmp_path / "dir").mkdir()
    return {
        "<binary>": str(tmp_path / "binary"),
        "<invalid.yaml>": str(tmp_path / "invalid.yaml"),
        "<empty>": str(tmp_path / "empty"),
        "<dir>": str(tmp_path / "dir"),
    }


def _placed(text: str, files: dict[str, str]) -> str:
    for name in sorted(files, key=len, reverse=True):  # <invalid.yaml> before a shorter name inside it
        text = text.replace(name, files[name])
    return text


@pytest.mark.parametrize("args,reason", BAD_FILES, ids=[" ".join(a) for a, _ in BAD_FILES])
def test_a_bad_file_is_one_line_naming_it_and_exit_2(
    args: list[str], reason: str, bad_files: dict[str, str], tmp_path: Path
) -> None:
    """Binary, invalid YAML, empty files and directories where a verb wants a file (or a file where
    it wants the lake's directory): one line on stderr, exit 2, never a traceback or PyYAML's dump."""
    extra = ["--data", str(tmp_path)] if args[0] in ("query",) and "--data" not in args else []
    result = run_cli(*[_placed(a, bad_files) for a in args], *extra, timeout=60)
    assert "Traceback" not in result.stderr
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert _placed(reason, bad_files) in lines[0]
