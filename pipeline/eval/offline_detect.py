"""`clusterpulse ingest ... --detect`: the detectors and root cause over what an ingest would send,
offline, and the alerts printed (a line each, or `--json`: one alert record of the contract per line).

Without a topology, switch ports are their own entities (`pipeline.topology.ports.PortEntities`): `<switch>:<ifName>`.
Nothing says which of them are cabled, so a port never seen up is not paged (an empty port, as
every switch has); their count is printed with the summary.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any, TextIO

from pipeline.eval.evaluate import OfflineCore
from pipeline.model.schemas import Alert, decode_batch
from pipeline.settings import Settings
from pipeline.topology.protocol import ClusterTopology


class DetectOutput:
    """An ingest output that keeps the messages, and at `close()` runs them through the detectors
    and the correlator in event-time order and prints the alerts."""

    def __init__(
        self, topology: Callable[[], ClusterTopology], settings: Settings, as_json: bool, stream: TextIO = sys.stdout
    ) -> None:
        self.topology = topology  # called at close: the port entities are known only then
        self.settings = settings
        self.as_json = as_json
        self.stream = stream
        self.values: list[bytes] = []
        self.alerts: list[Alert] = []
        self.never_up: list[str] = []  # ports reported, never up, not paged (no cable, as far as is known)

    def send(self, message: Any) -> None:
        self.values.append(message.value)

    def flush(self) -> None:
        pass

    def close(self) -> None:

        batches = sorted((decode_batch(v) for v in self.values), key=lambda b: b.ts_ms)
        core = OfflineCore(self.topology(), self.settings)
        kinds = {b.kind for b in batches}
        alerts: list[Alert] = []
        for i, batch in enumerate(batches):
            alerts += core.push(batch)
            if i + 1 == len(batches) or batches[i + 1].ts_ms != batch.ts_ms:
                alerts += core.end_tick(batch.ts_ms)
        alerts += core.finish()
        self.alerts = alerts
        self.never_up = [
            name for d in core.detectors.detectors.get("port", []) if hasattr(d, "never_up") for name in d.never_up()
        ]
        for alert in alerts:
            print(
                json.dumps(json.loads(alert.to_json())) if self.as_json else alert.line(), file=self.stream, flush=True
            )
        firing = sum(a.status == "firing" for a in alerts)
        print(
            f"clusterpulse: {len(alerts)} alert records ({firing} firing, {len(alerts) - firing} resolved) "
            f"from {len(batches)} batch{'es' if len(batches) != 1 else ''} of {', '.join(sorted(kinds)) or 'nothing'}",
            file=sys.stderr,
            flush=True,
        )
        if self.never_up:
            shown = ", ".join(self.never_up[:5]) + (", ..." if len(self.never_up) > 5 else "")
            count = f"{len(self.never_up)} port{'s' if len(self.never_up) != 1 else ''}"
            print(f"clusterpulse: {count} never up (no cable?), not paged: {shown}", file=sys.stderr, flush=True)
