"""Per-rank step telemetry from a training loop, sent without ever blocking or breaking it.

    reporter = StepReporter.from_env()        # job, rank, node and broker from the environment
    with reporter.step():                     # around each training step
        train_step(batch)

`step()` times the step (its compute is the step's time less what `wait()` or a framework hook,
`producers.training.torch_ddp`, counted as waiting in collectives); `record(step, compute_s, wait_s)`
takes times measured elsewhere. Steps are buffered in memory and a background thread sends them
once a second (or every `max_steps`), one message of the step schema (`docs/topics.md`: rank,
step, compute_s, wait_s; source = the rank's node, key = the job, as the simulator sends them).

Nothing raises into training: if the broker cannot be reached, the buffer keeps the newest
`max_buffered` steps, counts the ones it drops (`dropped`) and says so in one log line; sending
resumes when the broker is back. `close()` (also at exit) sends what is left, within a deadline.
"""

from __future__ import annotations

import atexit
import logging
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

import numpy as np

from pipeline.model.schemas import Batch, encode_batch
from pipeline.model.topics import STEP_TELEMETRY

log = logging.getLogger("clusterpulse.reporter")

# where each value comes from when the caller does not say (first set wins)
JOB_VARS = ("CLUSTERPULSE_JOB", "TORCHELASTIC_RUN_ID", "SLURM_JOB_NAME", "MS_JOB_NAME")
RANK_VARS = ("CLUSTERPULSE_RANK", "RANK", "RANK_ID", "SLURM_PROCID", "OMPI_COMM_WORLD_RANK")
NODE_VARS = ("CLUSTERPULSE_NODE",)  # else the host name: the topology's name of this node
BOOTSTRAP_VARS = ("CLUSTERPULSE_BOOTSTRAP", "KAFKA_BOOTSTRAP")

Send = Callable[[str, bytes, bytes], None]  # (topic, key, value): raises when it cannot


@dataclass(frozen=True)
class _Step:
    seq: int  # order of recording: what was sent is taken off the buffer by it
    step: int
    compute_s: float
    wait_s: float
    ts_ms: int


def _env(names: tuple[str, ...], default: str | None = None) -> str | None:
    for name in names:
        value = os.environ.get(name)
        if value and value.lower() != "none":  # torchrun's TORCHELASTIC_RUN_ID is "none" when unset
            return value
    return default


class StepReporter:
    """One rank's steps to Kafka. Thread-safe; one per training process."""

    def __init__(
        self,
        job: str,
        rank: int,
        node: str,
        bootstrap: str = "localhost:9092",
        topic_prefix: str = "clusterpulse",
        interval_s: float = 1.0,
        max_steps: int = 256,
        max_buffered: int = 10_000,
        send: Send | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.job, self.rank, self.node = job, int(rank), node
        self.topic = STEP_TELEMETRY.name(topic_prefix)
        self.interval_s, self.max_steps = interval_s, max_steps
        self.bootstrap = bootstrap
        self.clock = clock
        self._send = send
        self._buffer: deque[_Step] = deque()
        self._max_buffered = max_buffered
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._next_step = 0
        self._seq = 0
        self._waiting_s = 0.0  # collective wait counted during the current step
        # framework hooks that know a step's collective wait (`torch_ddp.watch_ddp`): asked, and
        # reset, at the end of each step `step()` times
        self.wait_sources: list[Callable[[], float]] = []
        self.sent = 0  # steps delivered
        self.dropped = 0  # steps dropped because the buffer was full (the broker away)
        self._failing = False
        self._thread = threading.Thread(target=self._run, name="clusterpulse-step-reporter", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    @classmethod
    def from_env(cls, **overrides: object) -> StepReporter:
        """A reporter whose job, rank, node and broker come from the launcher's environment:
        CLUSTERPULSE_JOB (else torchrun's TORCHELASTIC_RUN_ID, Slurm's SLURM_JOB_NAME), CLUSTERPULSE_RANK
        (else RANK, MindSpore's RANK_ID, SLURM_PROCID), CLUSTERPULSE_NODE (else the host name) and
        CLUSTERPULSE_BOOTSTRAP (else localhost:9092); keyword arguments override them."""
        values: dict[str, object] = {
            "job": _env(JOB_VARS, "job"),
            "rank": int(_env(RANK_VARS, "0") or 0),
            "node": _env(NODE_VARS) or socket.gethostname().split(".")[0],
            "bootstrap": _env(BOOTSTRAP_VARS, "localhost:9092"),
            "topic_prefix": os.environ.get("CLUSTERPULSE_TOPIC_PREFIX", "clusterpulse"),
        }
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]

    # ---- the training loop's side: cheap, never raises ------------------------------------------
    @contextmanager
    def step(self, step: int | None = None) -> Iterator[None]:
        """Time one training step (numbered from 0 unless given); its compute is its time less the
        collective wait counted during it (`wait()`, `add_wait`)."""
        started = time.perf_counter()
        self._waiting_s = 0.0
        try:
            yield
        finally:
            total = time.perf_counter() - started
            wait = min(self._waiting_s + self._hooked_wait(), total)
            self.record(self._next_step if step is None else step, total - wait, wait)

    @contextmanager
    def wait(self) -> Iterator[None]:
        """Time spent inside waits for other ranks (a collective, a barrier) during a step."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.add_wait(time.perf_counter() - started)

    def _hooked_wait(self) -> float:
        wait = 0.0
        for source in self.wait_sources:
            try:
                wait += max(0.0, float(source()))
            except Exception:  # a hook's bug must not break training: that step counts no wait from it
                continue
        return wait

    def add_wait(self, seconds: float) -> None:
        """Count `seconds` of collective wait in the current step (framework hooks call this)."""
        self._waiting_s += max(0.0, seconds)

    def record(self, step: int, compute_s: float, wait_s: float = 0.0) -> None:
        """One finished step of this rank, timed by the caller."""
        try:
            item = _Step(0, int(step), float(compute_s), float(wait_s), int(self.clock() * 1000))
        except (TypeError, ValueError, OverflowError):
            return  # not a step: nothing to report, and training goes on
        with self._lock:
            self._seq += 1
            item = replace(item, seq=self._seq)
            if len(self._buffer) >= self._max_buffered:
                self._buffer.popleft()
                self.dropped += 1
            self._buffer.append(item)
            full = len(self._buffer) >= self.max_steps
        self._next_step = item.step + 1
        if full:
            self._wake.set()

    def close(self, timeout_s: float = 5.0) -> None:
        """Send what is buffered (within `timeout_s`) and stop the sending thread."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._wake.set()
        self._thread.join(timeout_s)

    # ---- the sending thread ------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            self._wake.wait(self.interval_s)
            self._wake.clear()
            closing = self._closed.is_set()
            self._flush()
            if closing:
                return

    def _flush(self) -> None:
        with self._lock:
            steps = list(self._buffer)
        for first in range(0, len(steps), self.max_steps):
            chunk = steps[first : first + self.max_steps]
            try:
                self._deliver(chunk)
            except Exception as exc:  # the broker away, or anything else: keep the steps, say it once
                if not self._failing:
                    log.warning(
                        "clusterpulse: cannot send step telemetry to %s (%s); keeping up to %d steps",
                        self.bootstrap,
                        str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
                        self._max_buffered,
                    )
                self._failing = True
                return
            if self._failing:
                log.warning("clusterpulse: step telemetry sent again (%d steps dropped meanwhile)", self.dropped)
            self._failing = False
            last = chunk[-1].seq
            with self._lock:
                while self._buffer and self._buffer[0].seq <= last:
                    self._buffer.popleft()
            self.sent += len(chunk)

    def _deliver(self, steps: list[_Step]) -> None:
        """One message of the step schema for the steps (its time: the newest step's end)."""
        batch = Batch(
            "step",
            self.node,
            max(s.ts_ms for s in steps),
            {
                "rank": np.full(len(steps), self.rank, "<u4"),
                "step": np.array([s.step for s in steps], "<u4"),
                "compute_s": np.array([s.compute_s for s in steps], "<f4"),
                "wait_s": np.array([s.wait_s for s in steps], "<f4"),
            },
            job=self.job,
        )
        if self._send is None:
            self._send = _kafka_sender(self.bootstrap)
        self._send(self.topic, self.job.encode(), encode_batch(batch))


def _kafka_sender(bootstrap: str) -> Send:
    """A kafka-python producer's send, waiting for the broker's acknowledgement (on this thread)."""
    from kafka import KafkaProducer

    from pipeline.ops.kafka_config import producer_config

    config = {**producer_config(bootstrap, "clusterpulse-step-reporter"), "max_block_ms": 10_000}
    producer = KafkaProducer(**config)

    def send(topic: str, key: bytes, value: bytes) -> None:
        producer.send(topic, key=key, value=value).get(timeout=30)

    return send
