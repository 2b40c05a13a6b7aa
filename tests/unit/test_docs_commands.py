"""The commands the README and docs/ show still exist: every `clusterpulse ...` command of a code
block parses (verb and flags, as `clusterpulse` parses them), and every `python -m X` names a module
that imports. Running them is left to the tests of each command; this catches a renamed flag or a
moved module cheaply."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import re
import shlex

import pytest

from pipeline.cli import parse
from tests.conftest import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def code_lines(text: str) -> list[str]:
    """The lines of fenced code blocks, continuation lines (`\\`) joined."""
    lines: list[str] = []
    inside = False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            inside = not inside
            continue
        if inside:
            if lines and lines[-1].endswith("\\"):
                lines[-1] = lines[-1][:-1] + " " + line.strip()
            else:
                lines.append(line.strip())
    return lines


def shown_commands() -> list[tuple[str, str]]:
    found = []
    for page in PAGES:
        for line in code_lines(page.read_text()):
            line = re.split(r"\s+#\s", line)[0]  # no comment
            for command in re.split(r"\s*(?:&&|;|\|)\s*", line):  # each command of a chain or pipe
                command = command.rstrip("& ").strip()  # not in background
                if command.startswith((".venv/bin/clusterpulse ", "clusterpulse ")):
                    found.append((page.name, command))
    return found


@pytest.mark.parametrize(("page", "command"), shown_commands())
def test_a_shown_command_parses(page: str, command: str) -> None:
    args = shlex.split(command)[1:]
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            parse(args)
    except SystemExit as exc:
        pytest.fail(f"{page}: `{command}` does not parse (exit {exc.code}): {err.getvalue().strip()}")


def test_every_module_run_with_python_m_exists() -> None:
    modules = {m for page in PAGES for m in re.findall(r"python -m ([a-z_][\w.]*[a-z_])", page.read_text())}
    assert modules, "no python -m command found"
    missing = sorted(m for m in modules if importlib.util.find_spec(m) is None)
    assert not missing, f"documented but not importable: {missing}"
