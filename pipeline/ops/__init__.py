"""Running it: the broker, Kafka client settings, child processes, health and metrics."""
