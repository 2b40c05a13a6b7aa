"""YAML syntax errors on one line, for the messages of every file a user gives (settings, scenarios,
inventories, saved topologies)."""

from __future__ import annotations

import yaml


def yaml_problem(exc: yaml.YAMLError) -> str:
    """Where and what, on one line: "line 3, column 4: expected ',' or ']', but got ':' (while
    parsing a flow sequence started at line 2, column 7)". PyYAML's own text spans several lines
    and quotes the document as "<unicode string>"."""
    if not isinstance(exc, yaml.MarkedYAMLError):
        return " ".join(str(exc).split())
    mark = exc.problem_mark or exc.context_mark
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    text = where + " ".join((exc.problem or exc.context or "invalid YAML").split())
    if exc.problem and exc.context:
        started = exc.context_mark
        at = (
            f" started at line {started.line + 1}, column {started.column + 1}"
            if started is not None and started is not mark
            else ""
        )
        text += f" ({exc.context}{at})"
    return text
