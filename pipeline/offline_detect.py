"""`clusterpulse ingest ... --detect`: the detectors and root cause over what an ingest would send,
offline, and the alerts printed (a line each, or `--json`: one alert record of the contract per line).

Without a topology, switch ports are their own entities (`PortEntities`): `<switch>:<ifName>`.
Nothing says which of them are cabled, so a port never seen up is not paged (an empty port, as
every switch has); their count is printed with the summary.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any, TextIO

from pipeline.schemas import Alert, decode_batch
from pipeline.settings import Settings
from pipeline.topology import UnknownEntity


class PortEntities:
    """A topology of switches only, each port its own entity `<switch>:<port name>`: what an
    adapter's scrapes show when no fabric is given. A dead switch explains its ports' links. Which
    ports have a cable is not known (`cabling_known`: the link detector pages only ports once up)."""

    cabling_known = False
    cards_per_node = 1
    rails = 0
    nodes = 0
    node_names: list[str] = []
    shape = ("ports",)

    def __init__(self, port_names: dict[str, list[str]]) -> None:
        self.ports = {switch: list(names) for switch, names in port_names.items()}
        self.switch_names = sorted(self.ports)
        self._index = {name: i for i, name in enumerate(self.switch_names)}
        self._links = {f"{s}:{p}": (s, i) for s, names in self.ports.items() for i, p in enumerate(names)}

    def node_index(self, name: str) -> int:
        raise UnknownEntity(f"unknown node {name!r} (no topology: only switch ports)")

    def switch_index(self, name: str) -> int:
        try:
            return self._index[name]
        except KeyError:
            raise UnknownEntity(f"unknown switch {name!r}") from None

    def parse_switch(self, name: str) -> tuple[str, int]:
        return "switch", self.switch_index(name)

    def switch_ports(self, switch: str) -> int:
        self.switch_index(switch)
        return len(self.ports[switch])

    def port_link(self, switch: str, port: int) -> str | None:
        names = self.ports.get(switch, [])
        return f"{switch}:{names[port]}" if 0 <= port < len(names) else None

    def resolve_link(self, name: str) -> tuple[str, int, int]:
        try:
            switch, port = self._links[name]
        except KeyError:
            raise UnknownEntity(f"unknown port {name!r}") from None
        return "port", self._index[switch], port

    def link_causes(self, name: str) -> list[tuple[str, str]]:
        return [("switch_down", self._links[name][0])] if name in self._links else []

    def link_card(self, name: str) -> None:
        return None

    def link_cards(self, name: str) -> list[str]:
        return []

    def card_link(self, name: str) -> None:
        return None

    def link_rail(self, name: str | None) -> int:
        return -1

    def switch_radius(self, name: str) -> dict:
        return {"cards": 0, "nodes": 0, "links": self.switch_ports(name), "node_names": []}


class DetectOutput:
    """An ingest output that keeps the messages, and at `close()` runs them through the detectors
    and the correlator in event-time order and prints the alerts."""

    def __init__(
        self, topology: Callable[[], Any], settings: Settings, as_json: bool, stream: TextIO = sys.stdout
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
        from pipeline.evaluate import OfflineCore

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
