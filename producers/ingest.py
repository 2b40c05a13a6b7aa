"""`clusterpulse ingest ...`: real telemetry into the pipeline's topics (or a file).

- `prometheus`: poll dcgm-exporter / npu-exporter `/metrics` endpoints (or read saved scrapes).
- `xid`: NVIDIA Xid lines from a kernel log (dmesg -T, dmesg ISO, /dev/kmsg).
- `steps`: per-rank step-time tables (Alibaba PAI CSV, ByteDance op traces).
Bad lines and unmapped devices are counted and reported; the rest is ingested.
"""

from __future__ import annotations

import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field

from pipeline.schemas import Batch, encode_batch
from pipeline.topics import CARD_TELEMETRY, PORT_TELEMETRY, STEP_TELEMETRY
from pipeline.topology import Topology
from producers.adapters.exporters import ExporterConverter
from producers.adapters.prometheus import parse
from producers.inventory import Inventory
from producers.simulator import Message


@dataclass
class IngestSummary:
    batches: int = 0
    errors: list[str] = field(default_factory=list)


def send_batches(batches: list[Batch], output, summary: IngestSummary) -> None:  # noqa: ANN001
    """Each batch to its topic with the key the simulator uses (node, job or switch)."""
    for b in batches:
        topic, key = {"card": (CARD_TELEMETRY, b.source), "step": (STEP_TELEMETRY, b.job),
                      "port": (PORT_TELEMETRY, b.source)}[b.kind]
        output.send(Message(topic, key, encode_batch(b)))
        summary.batches += 1


def scrape(url: str, timeout_s: float = 10.0) -> str:
    """One `/metrics` scrape; raises OSError with the address in the message."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            return resp.read().decode("utf-8", errors="replace")
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise OSError(f"cannot scrape {url}: {reason}") from None


def ingest_prometheus(targets: list[str], files: list[str], topology: Topology, inventory: Inventory,
                      output, host: str | None, interval_s: float, once: bool,  # noqa: ANN001
                      should_stop=lambda: False, log=sys.stderr) -> tuple[IngestSummary, ExporterConverter]:  # noqa: ANN001
    converter = ExporterConverter(topology, inventory)
    summary = IngestSummary()
    for path in files:
        with open(path) as fh:
            send_batches(converter.convert(parse(fh.read()), int(time.time() * 1000), host), output, summary)
    while targets and not should_stop():
        started = time.monotonic()
        for url in targets:
            try:
                text = scrape(url)
            except OSError as exc:
                summary.errors.append(str(exc))
                print(f"clusterpulse: {exc}", file=log, flush=True)
                continue
            target_host = host or url.split("//", 1)[-1].split("/", 1)[0].split(":")[0]
            send_batches(converter.convert(parse(text), int(time.time() * 1000), target_host), output, summary)
        output.flush()
        if once:
            break
        time.sleep(max(0.0, interval_s - (time.monotonic() - started)))
    return summary, converter
