"""Write a scenario straight into the Parquet lake, as a worker would (for benchmarks and demos).

Messages are assigned to partitions with Kafka's default partitioner (murmur2 of the key) and each
partition's buffer is flushed every `flush_every_ticks` ticks, so files look like a worker's at
real time with `sink.flush_seconds` = that many seconds. Alerts come from the offline detector
and correlation core.
"""

from __future__ import annotations

from pathlib import Path

from kafka.partitioner.default import murmur2

from pipeline.evaluate import OfflineCore
from pipeline.schemas import decode_batch
from pipeline.settings import Settings
from pipeline.sinks.parquet import ParquetSink
from producers.scenario import Scenario
from producers.simulator import Simulator


def partition_of(key: str, partitions: int) -> int:
    """Kafka's default partition for a key (kafka-python and the Java client agree)."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


def build_lake(
    scenario: Scenario, root: str | Path, settings: Settings, flush_every_ticks: int = 10, partitions: int = 12
) -> dict[str, int]:
    topo = scenario.topology
    sink = ParquetSink(root, flush_rows=10**9, flush_seconds=10**9, topology=topo)
    core = OfflineCore(topo, settings)
    offsets: dict[tuple[str, int], int] = {}
    alerts = 0
    prefix = settings.topic_prefix

    def add_alerts(found: list) -> None:
        nonlocal alerts
        for alert in found:
            key = (f"{prefix}.alerts", partition_of(alert.id, min(3, partitions)))
            offset = offsets.get(key, -1) + 1
            offsets[key] = offset
            sink.add_alert(*key, offset, alert)
            alerts += 1

    for tick, (ts_ms, messages) in enumerate(Simulator(scenario).ticks()):
        for message in messages:
            key = (f"{prefix}.{message.topic.suffix}", partition_of(message.key, partitions))
            offset = offsets.get(key, -1) + 1
            offsets[key] = offset
            batch = decode_batch(message.value)
            sink.add_batch(*key, offset, batch)
            add_alerts(core.push(batch))
        add_alerts(core.end_tick(ts_ms))
        if (tick + 1) % flush_every_ticks == 0:
            sink.flush_all()
    add_alerts(core.finish())
    sink.flush_all()
    return {"files": sink.files_written, "rows": sink.rows_written, "alerts": alerts}
