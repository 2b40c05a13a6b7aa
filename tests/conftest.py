"""Shared fixtures: a real Tansu broker process per test session, unique topics per test,
and child processes (workers, simulators) that are always stopped, also when a test fails."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.ops.broker import EmbeddedBroker, stop_process

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT.parent / "shared" / "samples"


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """One embedded broker for the session; tests isolate themselves with a topic prefix."""
    log = tmp_path_factory.mktemp("broker") / "broker.log"
    b = EmbeddedBroker(log_path=log).start()
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture
def prefix() -> str:
    """A topic prefix (and group id stem) no other test uses."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session", autouse=True)
def commands_keep_their_temp_files_under_pytest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """What commands under test leave in the temp directory on purpose (eval's logs, drawn random
    scenarios) lands in pytest's own temp tree, which pytest prunes, not in /tmp."""
    before = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = str(tmp_path_factory.mktemp("commands-tmp"))
    yield
    if before is None:
        os.environ.pop("TMPDIR", None)
    else:
        os.environ["TMPDIR"] = before


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This environment without CLUSTERPULSE_* settings, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLUSTERPULSE_")}
    env.update(extra or {})
    return env


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """`python -m pipeline ARGS` to completion, output captured. On timeout the command gets
    SIGTERM first, so that `run` and `eval` stop the broker and workers they started."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", *args],
        cwd=ROOT,
        env=clean_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop_process(proc, timeout_s=30)
        proc.communicate()
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@contextlib.contextmanager
def static_http(root: Path) -> Iterator[str]:
    """Serve the files under `root` on a loopback port (a stand-in exporter); yields the base URL."""
    from functools import partial
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(SimpleHTTPRequestHandler, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class Children:
    """Starts `python -m pipeline ...` processes and stops exactly those at teardown."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: list[tuple[subprocess.Popen, Path]] = []

    def start(self, *args: str, env: dict[str, str] | None = None, name: str = "child") -> subprocess.Popen:
        log = self.tmp / f"{name}-{len(self.procs)}.log"
        full_env = clean_env(env)
        full_env["PYTHONUNBUFFERED"] = "1"
        proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline", *args],
            cwd=ROOT,
            env=full_env,
            stdout=open(log, "wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append((proc, log))
        return proc

    def log_of(self, proc: subprocess.Popen) -> str:
        for p, log in self.procs:
            if p is proc:
                return log.read_text(errors="replace")
        raise KeyError(proc)

    def stop_all(self) -> None:
        for proc, _ in self.procs:
            stop_process(proc, timeout_s=15)


@pytest.fixture
def children(tmp_path: Path) -> Iterator[Children]:
    c = Children(tmp_path)
    try:
        yield c
    finally:
        c.stop_all()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say how many tests skipped for want of the real captures in ../shared/samples/ (a fresh
    clone has none), so a green run does not hide that they did not run."""
    skipped = terminalreporter.stats.get("skipped", [])
    reasons = [str(r.longrepr[2]) if isinstance(r.longrepr, tuple) else str(r.longrepr) for r in skipped]
    missing = sorted(
        {
            reason.split("samples/", 1)[1].split()[0].split("/")[0]
            for reason in reasons
            if "../shared/samples" in reason and "samples/" in reason
        }
    )
    count = sum("../shared/samples" in reason for reason in reasons)
    if count:
        terminalreporter.write_sep("-", "real captures not found")
        terminalreporter.write_line(
            f"{count} test(s) skipped: they read real captures from {SAMPLES}/ ({', '.join(missing)}), "
            "which is not beside this checkout (sources: tests/fixtures/SOURCES.md)"
        )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Test files with a test marked `slow` first, in their order. xdist's `--dist loadfile` (as
    `make test` runs) then hands out files with more tests first, so this decides only among files
    of as many tests. `--no-loadscope-reorder` would keep this order, but it runs the long,
    process-heavy files side by side: measured 2026-12-02 on a slow day, 983 s against 1,061 s, and
    the load failed the DDP test's healthy job and lost rows in the S3 lake test, so it is not used."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)
