"""Scoring detection against a scenario's ground truth, offline and through Kafka."""
