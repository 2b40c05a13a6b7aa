"""The fleet collector: scrape exporters and take Prometheus remote_write into Kafka."""
