"""Training jobs report their own steps: `StepReporter` for any loop, hooks for PyTorch DDP and MindSpore."""

from producers.training.reporter import StepReporter

__all__ = ["StepReporter"]
