"""A rank's wait in gradient all-reduces under PyTorch DistributedDataParallel, for `StepReporter`.

    model = DistributedDataParallel(model)
    watch_ddp(model, reporter)              # then `with reporter.step(): ...` as usual

It registers a DDP communication hook that all-reduces each gradient bucket as DDP does by default
(sum, then divide by the world size) and notes when the last bucket of a step was ready (this
rank's backward compute done) and when the last reduction completed: the time between is this
rank's wait for the others, counted into the step the reporter is timing. A rank slower than its
peers waits little and computes long; its peers wait for it. Wall time, measured where the gloo
backend completes its futures (on the CPU); with NCCL the future completes before the GPU work
does, so the wait it sees is not the GPU's (CUDA events would be needed: not done).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from producers.training.reporter import StepReporter


class DdpWaitHook:
    """The hook's state: per step, when the last bucket was ready and the last reduction done."""

    def __init__(self, process_group: Any = None) -> None:
        self.process_group = process_group
        self._lock = threading.Lock()
        self._ready = 0.0
        self._done = 0.0

    def reduce(self, bucket: Any) -> Any:
        """All-reduce one gradient bucket (sum / world size, DDP's default), noting the times."""
        import torch.distributed as dist

        group = self.process_group or dist.group.WORLD
        world = dist.get_world_size(group)
        ready = time.perf_counter()
        with self._lock:
            self._ready = max(self._ready, ready)
        tensor = bucket.buffer().div_(world)
        future = dist.all_reduce(tensor, group=group, async_op=True).get_future()

        def done(fut: Any) -> Any:
            finished = time.perf_counter()
            with self._lock:
                self._done = max(self._done, finished)
            return fut.value()[0]

        return future.then(done)

    def take_wait(self) -> float:
        """This step's wait (s): from the last bucket ready to the last reduction done; resets."""
        with self._lock:
            wait = self._done - self._ready if self._ready and self._done > self._ready else 0.0
            self._ready = self._done = 0.0
        return wait


def watch_ddp(model: Any, reporter: StepReporter, process_group: Any = None) -> DdpWaitHook:
    """Count a DDP model's all-reduce wait into each step `reporter` times."""
    hook = DdpWaitHook(process_group)
    # DDP checks a hook's annotations against its own types: a plain lambda has none
    model.register_comm_hook(state=None, hook=lambda state, bucket: hook.reduce(bucket))
    reporter.wait_sources.append(hook.take_wait)
    return hook
