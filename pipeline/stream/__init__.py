"""The Faust worker: the app, one module per agent, intake checks, dead letters and checkpoints."""
