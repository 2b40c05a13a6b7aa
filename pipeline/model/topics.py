"""The Kafka topics: names, keys, partition counts and what each carries. Defined once here."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TopicSpec:
    suffix: str
    key: str
    value: str
    doc: str
    telemetry: bool = False

    def name(self, prefix: str) -> str:
        return f"{prefix}.{self.suffix}"


CARD_TELEMETRY = TopicSpec(
    "telemetry.card",
    key="collector name (a rack: node0000..node0031) or node name",
    value="msgpack batch, kind card (pipeline.model.schemas.CARD)",
    doc="one message per collector per tick: every card of its nodes that reported",
    telemetry=True,
)
STEP_TELEMETRY = TopicSpec(
    "telemetry.step",
    key="job name",
    value="msgpack batch, kind step (pipeline.model.schemas.STEP)",
    doc="one message per job (or per node) per tick: the job steps its ranks finished; keyed by job so "
    "a job's ranks meet in one partition",
    telemetry=True,
)
PORT_TELEMETRY = TopicSpec(
    "telemetry.port",
    key="collector name (leaf000..leaf007) or switch name",
    value="msgpack batch, kind port (pipeline.model.schemas.PORT)",
    doc="one message per collector per tick: every port's status and counters of its switches",
    telemetry=True,
)
FINDINGS = TopicSpec(
    "findings",
    key="alert id, or the worker for watermarks",
    value="JSON: a detector finding, a watermark or a job placement (pipeline.stream.telemetry_agent)",
    doc="internal: detector findings on their way to the correlator; one partition, so that every "
    "finding meets its root cause",
)
DETECTOR_STATE = TopicSpec(
    "state",
    key="<telemetry topic>/<partition>",
    value="compressed detector state of that partition",
    doc="internal, compacted: the latest detector state of each telemetry partition, written after each "
    "Parquet flush and read when a worker is assigned the partition, so state survives restarts",
)
ALERTS = TopicSpec(
    "alerts",
    key="alert id",
    value="JSON alert (pipeline.model.schemas.Alert)",
    doc="one message per alert state change (firing, resolved)",
)
DEAD_LETTERS = TopicSpec(
    "deadletter",
    key="original key",
    value="original payload, unchanged",
    doc="messages a worker could not process; headers carry the reason and the original topic, partition and offset",
)

NOTIFY_DEAD_LETTERS = TopicSpec(
    "notify.deadletter",
    key="alert id",
    value='JSON {"receiver", "alert", "error", "attempts"}',
    doc="notifications a receiver did not accept after the last retry; `clusterpulse alerts replay` resends them",
)

SILENCES = TopicSpec(
    "silences",
    key="silence id",
    value="JSON silence, Alertmanager's API v2 shape (pipeline.notify.silences.Silence)",
    doc="compacted: every silence and each change to it (an expired one is written again with its new end); "
    "every worker reads it all, so all honour a silence and a restart reads them back",
)

ALL_TOPICS = (
    CARD_TELEMETRY,
    STEP_TELEMETRY,
    PORT_TELEMETRY,
    FINDINGS,
    DETECTOR_STATE,
    ALERTS,
    DEAD_LETTERS,
    NOTIFY_DEAD_LETTERS,
    SILENCES,
)
TELEMETRY_TOPICS = tuple(t for t in ALL_TOPICS if t.telemetry)

# Dead-letter headers (bytes values).
DLQ_REASON = "clusterpulse-reason"
DLQ_TOPIC = "clusterpulse-original-topic"
DLQ_PARTITION = "clusterpulse-original-partition"
DLQ_OFFSET = "clusterpulse-original-offset"


def partitions_for(spec: TopicSpec, telemetry_partitions: int) -> int:
    """Telemetry topics get the configured count (≥ workers); findings, state, alerts and silences
    one (alerts: one worker notifies and acts, so groups, robot rate limits and the action cap are
    the cluster's, not a worker's); dead letters few."""
    if spec in (FINDINGS, DETECTOR_STATE, ALERTS, SILENCES):
        return 1
    return telemetry_partitions if spec.telemetry else min(3, telemetry_partitions)


# Kafka topic configs beyond the broker's defaults.
# A partition's detector state grows with the cluster (1.3 MB compressed for a 100,000-card
# cluster's partition, measured): above Kafka's 1 MB default message limit.
STATE_MAX_BYTES = 64 * 1024 * 1024
TOPIC_CONFIGS = {
    DETECTOR_STATE: {"cleanup.policy": "compact", "max.message.bytes": str(STATE_MAX_BYTES)},
    SILENCES: {"cleanup.policy": "compact"},
}
