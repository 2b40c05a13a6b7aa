"""The shared vocabulary: telemetry batches and their wire format, alerts, topics, the findings message."""
