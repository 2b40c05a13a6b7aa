"""The Faust worker, one module per agent; `pipeline.app.create_app` only wires them.

- `context`: what the agents share (settings, topology, sink, detectors, topics, publish).
- `guarantees`: dead letters with reasons; acknowledging telemetry only after its Parquet is on disk.
- `telemetry`: what happens to a card, step or port batch (decode, detect, findings, Parquet).
- `correlator`: findings and watermarks in, root-caused alerts out.
- `alert_sink`: alerts into the lake.
- `notify`: alerts to webhooks and Alertmanager, with the delivery ledger.
"""
