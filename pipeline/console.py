"""What `clusterpulse run` prints of the alert stream: each root cause and ungrouped alert as a
line, and its grouped consequences folded into one count under it ("groups 64 alerts: 64
link_down"), unless `verbose` asks for every line (indented under their root).

Consequences follow their root within the correlator's grouping hold, so they are counted until the
stream goes quiet (`flush`) or another line is printed, then summed up per root and status.
"""

from __future__ import annotations

from collections import Counter

from pipeline.schemas import Alert


class ConsoleAlerts:
    """Turns alert state changes into terminal lines; pure (no I/O), so tests need no broker."""

    def __init__(self, verbose: bool = False) -> None:
        self.verbose = verbose
        self.roots: dict[str, tuple[str, str]] = {}  # alert id -> (kind, entity), of the lines printed
        self._folded: dict[tuple[str, str], Counter[str]] = {}  # (root id, status) -> kinds of consequences

    def take(self, alert: Alert) -> list[str]:
        """The lines to print now for one alert record."""
        if alert.root_cause:
            if self.verbose:
                return [f"    {alert.line()}"]
            self._folded.setdefault((alert.root_cause, alert.status), Counter())[alert.kind] += 1
            return []
        self.roots[alert.id] = (alert.kind, alert.entity)
        return self.flush() + [alert.line()]

    def flush(self) -> list[str]:
        """One line per root and status for the consequences counted since the last flush."""
        lines = []
        for (root, status), kinds in self._folded.items():
            kind, entity = self.roots.get(root, ("alert", root))
            counts = ", ".join(f"{n} {k}" for k, n in kinds.most_common())
            total = sum(kinds.values())
            what = "groups" if status == "firing" else "resolved with it:"
            lines.append(
                f"    └ {kind} {entity} {what} {total} alert{'s' if total != 1 else ''}: {counts} "
                "(--verbose lists them)"
            )
        self._folded.clear()
        return lines
