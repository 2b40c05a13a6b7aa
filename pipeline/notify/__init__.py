"""Alert delivery: webhooks (signed, retried, dead-lettered) and Alertmanager's API v2."""
