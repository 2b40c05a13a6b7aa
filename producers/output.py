"""Where simulated or ingested messages go: Kafka (kafka-python) or a file, and pacing."""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO, Protocol, TextIO

import msgpack
from kafka import KafkaProducer
from kafka.errors import KafkaError, KafkaTimeoutError

from pipeline.model.topics import ALL_TOPICS
from pipeline.ops.kafka_config import producer_config
from producers.simulator import Message

log = logging.getLogger("clusterpulse.producer")
FILE_MAGIC = b"CPMSG1\n"


class DeliveryError(RuntimeError):
    """Messages the broker did not acknowledge; never dropped silently."""


class Output(Protocol):
    def send(self, message: Message) -> None: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...


FLUSH_REPORT_S = 5
DELIVERY_TIMEOUT_S = 120  # producer_config delivery_timeout_ms
BUFFER_BYTES = 64 * 1024 * 1024  # messages the broker has not acknowledged yet, at most


class KafkaOutput:
    """Produces to Kafka with acks=all; counts and reports every failed delivery."""

    def __init__(self, bootstrap: str, topic_prefix: str, client_id: str = "clusterpulse-producer") -> None:
        try:
            self.producer = KafkaProducer(**producer_config(bootstrap, client_id))
        except KafkaError as exc:
            raise DeliveryError(f"cannot connect a producer to {bootstrap}: {exc}") from None
        self.prefix = topic_prefix
        self.sent = 0
        self.failed = 0
        self.first_error: str | None = None
        self.pending_bytes = 0  # sent, not yet acknowledged (or failed)
        self.pending = 0  # messages of those
        self._lock = threading.Lock()  # callbacks run on the producer's I/O thread

    def _done(self, size: int) -> None:
        with self._lock:
            self.pending_bytes -= size
            self.pending -= 1

    def _on_error(self, exc: BaseException) -> None:
        self.failed += 1
        if self.first_error is None:
            self.first_error = f"{type(exc).__name__}: {exc}"
            log.error("delivery failed: %s", self.first_error)

    def send(self, message: Message) -> None:
        topic = message.topic.name(self.prefix)
        try:
            future = self.producer.send(topic, key=message.key.encode(), value=message.value)
        except KafkaError as exc:
            self.failed += 1
            raise DeliveryError(
                f"cannot send {len(message.value):,} bytes to {topic} (key {message.key}): {type(exc).__name__}: {exc}"
            ) from None
        future.add_errback(self._on_error)
        size = len(message.value)
        with self._lock:
            self.pending_bytes += size
            self.pending += 1
        future.add_both(lambda _: self._done(size))
        self.sent += 1
        if self.pending_bytes > BUFFER_BYTES:  # bounded memory: wait for the broker to take what is buffered
            log.warning(
                "%d MiB wait for the broker: holding new messages until it takes them", self.pending_bytes >> 20
            )
            self.flush()

    def flush(self) -> None:
        waited = 0
        while True:  # say so while the broker does not take what is buffered (an outage, a restart)
            try:
                self.producer.flush(timeout=FLUSH_REPORT_S)
                break
            except KafkaTimeoutError:
                waited += FLUSH_REPORT_S
                log.warning(
                    "the broker has not taken the buffered messages for %d s (%d sent so far): "
                    "retrying until each is delivered or %d s old",
                    waited,
                    self.sent,
                    DELIVERY_TIMEOUT_S,
                )
        if waited:
            log.warning("the broker took the buffered messages after %d s", waited)
        if self.failed:
            raise DeliveryError(
                f"{self.failed} of {self.sent} messages were not delivered; first error: {self.first_error}"
            )

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self.producer.close(timeout=10)

    def close_within(self, seconds: float) -> int:
        """Close, waiting at most `seconds` for the broker; returns the messages it did not take."""
        try:
            self.producer.flush(timeout=seconds)
        except KafkaTimeoutError:
            pass
        lost = self.pending + self.failed
        self.producer.close(timeout=0)
        return lost


class FileOutput:
    """Writes the same messages to a file: a magic line, then msgpack [topic, key, value] records."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.fh: BinaryIO = open(self.path, "wb")
        self.fh.write(FILE_MAGIC)
        self.packer = msgpack.Packer(use_bin_type=True)
        self.sent = 0
        self.failed = 0

    def send(self, message: Message) -> None:
        self.fh.write(self.packer.pack([message.topic.suffix, message.key, message.value]))
        self.sent += 1

    def flush(self) -> None:
        self.fh.flush()

    def close(self) -> None:
        self.fh.close()


def read_message_file(path: str | Path) -> Iterator[Message]:
    """Messages of a file written by FileOutput; raises ValueError on a foreign or damaged file."""
    by_suffix = {t.suffix: t for t in ALL_TOPICS}
    with open(path, "rb") as fh:
        if fh.read(len(FILE_MAGIC)) != FILE_MAGIC:
            raise ValueError(f"{path} is not a ClusterPulse message file (written by `simulate --out`)")
        unpacker = msgpack.Unpacker(fh, raw=False, max_buffer_size=64 * 1024 * 1024)
        for i, record in enumerate(unpacker):
            if (
                not isinstance(record, list)
                or len(record) != 3
                or record[0] not in by_suffix
                or not isinstance(record[1], str)
                or not isinstance(record[2], bytes)
            ):
                raise ValueError(f"{path}: record {i} is damaged")
            yield Message(by_suffix[record[0]], record[1], record[2])


class Pacer:
    """Sleeps so that event time advances at `speed` x real time (None = as fast as possible)."""

    def __init__(
        self,
        speed: float | None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.speed = speed
        self.clock = clock
        self.sleep = sleep
        self._origin: tuple[float, int] | None = None

    def wait_until(self, ts_ms: int) -> None:
        if self.speed is None:
            return
        if self._origin is None:
            self._origin = (self.clock(), ts_ms)
            return
        wall0, ts0 = self._origin
        delay = wall0 + (ts_ms - ts0) / 1000 / self.speed - self.clock()
        if delay > 0:
            self.sleep(delay)


def parse_speed(text: str) -> float | None:
    """'max' -> None; a positive number -> that multiple of real time."""
    if text == "max":
        return None
    try:
        speed = float(text)
    except ValueError:
        raise ValueError(f"--speed must be a positive number or 'max', got {text!r}") from None
    if not speed > 0:
        raise ValueError(f"--speed must be a positive number or 'max', got {text!r}")
    return speed


def pump(
    ticks: Iterable[tuple[int, list[Message]]],
    output: Output,
    pacer: Pacer,
    progress_every_s: float = 10.0,
    stream: TextIO = sys.stderr,
    should_stop: Callable[[], bool] = lambda: False,
) -> dict[str, float]:
    """Send every tick's messages at the pacer's speed; print progress; return a summary."""
    started = last = time.monotonic()
    messages = nbytes = ticks_done = 0
    first_ts: int | None = None
    last_ts: int | None = None
    for ts_ms, batch in ticks:
        if should_stop():
            break
        pacer.wait_until(ts_ms)
        for message in batch:
            output.send(message)
            nbytes += len(message.value)
        messages += len(batch)
        ticks_done += 1
        first_ts = ts_ms if first_ts is None else first_ts
        last_ts = ts_ms
        now = time.monotonic()
        if now - last >= progress_every_s:
            last = now
            sim_s = (ts_ms - first_ts) / 1000
            print(
                f"simulated {sim_s:,.0f} s ({sim_s / (now - started):.1f}x real time), {messages:,} messages, "
                f"{messages / (now - started):,.0f} msg/s",
                file=stream,
                flush=True,
            )
    output.flush()
    elapsed = max(time.monotonic() - started, 1e-9)
    simulated = ((last_ts - first_ts) / 1000 + 0.0) if first_ts is not None and last_ts is not None else 0.0
    return {
        "ticks": ticks_done,
        "messages": messages,
        "bytes": nbytes,
        "elapsed_s": elapsed,
        "simulated_s": simulated,
        "msgs_per_s": messages / elapsed,
    }
