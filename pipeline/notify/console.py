"""What `clusterpulse run` prints of the alert stream: each root cause and ungrouped alert as a
line, and its grouped consequences folded into one count under it ("groups 64 alerts: 64
link_down"), unless `verbose` asks for every line (indented under their root).

Consequences follow their root within the correlator's grouping hold, so they are counted until the
stream goes quiet (`flush`) or another line is printed, then summed up per root and status.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import Counter

from kafka import KafkaConsumer, TopicPartition

from pipeline.model.schemas import Alert
from pipeline.ops.kafka_config import consumer_config


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


class AlertPrinter(threading.Thread):
    """Reads the alerts and notify dead-letter topics from the beginning; prints each alert state
    change, and each notification a receiver did not take, as it happens."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        stream=sys.stdout,  # noqa: ANN001
        dead_letter_topic: str | None = None,
        verbose: bool = True,
    ) -> None:
        super().__init__(daemon=True, name="alert-printer")
        self.console = ConsoleAlerts(verbose)
        self.bootstrap, self.topic, self.stream = bootstrap, topic, stream
        self.dead_letter_topic = dead_letter_topic
        self.alerts: list[Alert] = []
        self.failed_deliveries = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        consumer = KafkaConsumer(**consumer_config(self.bootstrap, "clusterpulse-run-printer", None))
        topics = [t for t in (self.topic, self.dead_letter_topic) if t]
        try:
            assigned: list[TopicPartition] = []
            while not assigned and not self._stop_event.is_set():
                assigned = [
                    TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())
                ]
                if not assigned:
                    time.sleep(0.2)
            consumer.assign(assigned)
            consumer.seek_to_beginning()
            while not self._stop_event.is_set():
                polled = consumer.poll(timeout_ms=200)
                if not polled:  # quiet: sum up the consequences counted under their roots
                    self._print(self.console.flush())
                for tp, records in polled.items():
                    for record in records:
                        if tp.topic == self.topic:
                            self._alert(record.value)
                        else:
                            self._failed_delivery(record.value)
        finally:
            self._print(self.console.flush())
            consumer.close()

    def _print(self, lines: list[str]) -> None:
        for line in lines:
            print(line, file=self.stream, flush=True)

    def _alert(self, value: bytes) -> None:
        try:
            alert = Alert.from_json(value)
        except (ValueError, TypeError):
            return
        self.alerts.append(alert)
        self._print(self.console.take(alert))

    def _failed_delivery(self, value: bytes) -> None:
        try:
            entry = json.loads(value)
            alert = entry["alert"]
            what = f"{alert['kind']} {alert['entity']} {alert['status']}"
        except (ValueError, TypeError, KeyError):
            return
        self.failed_deliveries += 1
        print(
            f"NOT DELIVERED to receiver {entry.get('receiver')}: {what} after {entry.get('attempts')} "
            f"attempt(s): {entry.get('error')}",
            file=sys.stderr,
            flush=True,
        )

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=5)
