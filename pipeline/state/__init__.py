"""State that survives a restart: one versioned snapshot codec for detectors and the correlator."""
