"""`clusterpulse ingest ...`: real telemetry into the pipeline's topics (or a file).

- `prometheus`: poll dcgm-exporter / npu-exporter `/metrics` endpoints (or read saved scrapes).
- `xid`: NVIDIA Xid lines from a kernel log (dmesg -T, dmesg ISO, /dev/kmsg).
- `nvidia-smi`, `perfquery`, `sysfs`: saved tool output and sysfs trees.
- `steps`: per-rank step-time tables (Alibaba PAI CSV, ByteDance op traces).
Bad lines and unmapped devices are counted and reported; the rest is ingested. Every input gets an
`InputReport`: how many batches came from it and, when something was skipped or nothing came at
all, why (one line for the user).
"""

from __future__ import annotations

import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field

from pipeline.model.schemas import Batch, InvalidRecord, encode_batch
from pipeline.model.topics import CARD_TELEMETRY, PORT_TELEMETRY, STEP_TELEMETRY
from pipeline.topology.entities import check_entities
from pipeline.topology.inventory import Inventory
from pipeline.topology.synthetic import Topology
from producers.adapters import FormatError, Skips, decode_text, first_line, plural, read_text
from producers.adapters.exporters import ExporterConverter
from producers.adapters.prometheus import SeriesCache, parse
from producers.simulator import Message


@dataclass
class IngestSummary:
    batches: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass
class InputReport:
    """What came of one input (a file, directory or scrape target)."""

    name: str
    batches: int = 0
    problem: str | None = None  # why the input as a whole gave nothing (format, empty, binary, unreadable)
    skips: Skips = field(default_factory=Skips)
    printed: str | None = None  # the last line already shown (live targets report as they go)
    nothing_found: str | None = None  # why giving nothing is what this input should give (a healthy log)

    def line(self) -> str | None:
        """One line for the user, or None when there is nothing to say (all of it ingested)."""
        name = self.name
        if self.problem:  # some messages name the input themselves ("cannot scrape URL: ...")
            named = self.problem.startswith(f"{name}:") or f" {name}:" in self.problem
            return self.problem if named else f"{name}: {self.problem}"
        if self.batches == 0 and self.nothing_found:
            return f"{name}: {self.nothing_found}"
        if self.batches == 0:
            return f"{name}: nothing usable: " + (f"skipped {self.skips.describe()}" if self.skips else "no data")
        if self.skips:
            return f"{name}: {plural(self.batches, 'batch')}; skipped {self.skips.describe()}"
        return None


def send_batches(
    batches: list[Batch],
    output,
    summary: IngestSummary,  # noqa: ANN001
    topology: Topology | None = None,
    report: InputReport | None = None,
) -> None:
    """Each batch to its topic with the key the simulator uses (node, job or switch). With a
    topology, a batch naming a card, node or port the cluster does not have is skipped (the workers
    would reject it) and counted in `report`."""
    for b in batches:
        if topology is not None:
            try:
                check_entities(b, topology)
            except InvalidRecord as exc:
                if report is not None:
                    report.skips.add(exc.reason, "batch")
                continue
        topic, key = {
            "card": (CARD_TELEMETRY, b.source),
            "step": (STEP_TELEMETRY, b.job),
            "port": (PORT_TELEMETRY, b.source),
        }[b.kind]
        output.send(Message(topic, key, encode_batch(b)))
        summary.batches += 1
        if report is not None:
            report.batches += 1


def ingest_inputs(
    paths: list[str],
    convert: Callable[[str, Skips], list[Batch]],
    output,  # noqa: ANN001
    topology: Topology | None = None,
) -> tuple[IngestSummary, list[InputReport]]:
    """`convert(path, skips)` for each input; an input that is unreadable or not the expected
    format is reported (its `problem`) and the others still ingested."""
    summary, reports = IngestSummary(), []
    for path in paths:
        report = InputReport(path)
        reports.append(report)
        try:
            batches = convert(path, report.skips)
        except OSError as exc:
            report.problem = f"cannot read: {exc.strerror or exc}"
            continue
        except ValueError as exc:  # FormatError, UnknownEntity, a table that is not the format
            report.problem = str(exc)
            continue
        send_batches(batches, output, summary, topology, report)
    return summary, reports


def scrape(url: str, timeout_s: float = 10.0) -> bytes:
    """One `/metrics` scrape; raises OSError with the address in the message."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            return resp.read()
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise OSError(f"cannot scrape {url}: {reason}") from None


_EXPECTED_METRICS = (
    "expected dcgm-exporter DCGM_FI_DEV_*, npu-exporter npu_chip_info_*, node_exporter "
    "node_network_* / node_infiniband_*, snmp_exporter if_mib (ifHCInOctets, ifInErrors, ...), "
    "gnmic OpenConfig interfaces_interface_state_*, infiniband_switch_port_* or UFM "
    "*CounterExtended metrics"
)


def _exposition_problem(text: str, exposition) -> str | None:  # noqa: ANN001
    """Why a scrape is not Prometheus text exposition at all, or None."""
    if exposition.samples:
        return None
    head = text.lstrip()[:200].lower()
    if head.startswith(("<!doctype html", "<html")) or "<html" in head:
        return "an HTML page, not Prometheus text exposition: is this the exporter's /metrics?"
    if head.startswith(("{", "[")):
        return "JSON, not Prometheus text exposition (a Prometheus API response? save the exporter's /metrics)"
    if exposition.bad_lines:
        number, reason = exposition.bad_lines[0]
        return (
            f"not Prometheus text exposition: no line parses (line {number}: {reason}; first line {first_line(text)})"
        )
    return "no samples (only comments)"


def _convert_scrape(
    converter: ExporterConverter,
    text: str,
    host: str | None,
    report: InputReport,
    switch: str | None = None,
    scrape_ts_ms: int | None = None,
    cache: SeriesCache | None = None,
) -> list[Batch]:
    """One scrape's batches, stamped `scrape_ts_ms` (default now) or the exposition's own times;
    `cache`: the target's series seen before (`parse`)."""
    stamp = int(time.time() * 1000) if scrape_ts_ms is None else scrape_ts_ms
    if cache is not None:  # a collector's target: GPU series placed once (ExporterConverter.convert_page)
        batches = converter.convert_page(text, cache, stamp, host, switch)
        if batches is not None:
            report.skips.merge(converter.skips)
            return batches
    exposition = parse(text, cache)
    problem = _exposition_problem(text, exposition)
    if problem:
        raise FormatError(problem)
    batches = converter.convert(exposition, stamp, host, switch)
    report.skips.merge(converter.skips)
    if (
        not batches
        and converter.skips
        and all(
            r.startswith("metrics ClusterPulse does not map") or r == "unparseable" for r in converter.skips.reasons
        )
    ):
        names = sorted({s.name for s in exposition.samples})
        shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
        raise FormatError(
            f"only metrics ClusterPulse does not map ({plural(len(exposition.samples), 'sample')} "
            f"of {plural(len(names), 'metric')}: {shown}); {_EXPECTED_METRICS}"
        )
    return batches


def ingest_prometheus(
    targets: list[str],
    files: list[str],
    topology: Topology,
    inventory: Inventory,
    output,
    host: str | None,
    interval_s: float,
    once: bool,  # noqa: ANN001
    should_stop=lambda: False,
    log=sys.stderr,
    switch: str | None = None,  # noqa: ANN001
    ports_as_entities: bool = False,
) -> tuple[IngestSummary, ExporterConverter, list[InputReport]]:
    """Saved scrapes, then the targets (once, or every `interval_s` until `should_stop()`).
    Polling, a target's new problem is printed to `log` as it happens (`InputReport.printed`).
    `ports_as_entities`: switch ports are their own entities (no topology to check them against)."""
    converter = ExporterConverter(topology, inventory, ports_as_entities)
    checked = None if ports_as_entities else topology

    def convert_file(path: str, skips: Skips) -> list[Batch]:
        report = InputReport(path, skips=skips)
        return _convert_scrape(converter, read_text(path), host, report, switch)

    summary, reports = ingest_inputs(files, convert_file, output, checked)
    live = {url: InputReport(url) for url in targets}
    reports += live.values()
    while targets and not should_stop():
        started = time.monotonic()
        for url in targets:
            report, poll = live[url], InputReport(url)
            try:
                text = decode_text(scrape(url), empty="empty response")
                target_host = host or url.split("//", 1)[-1].split("/", 1)[0].split(":")[0]
                batches = _convert_scrape(converter, text, target_host, poll, switch)
                send_batches(batches, output, summary, checked, poll)
            except OSError as exc:
                summary.errors.append(str(exc))
                poll.problem = str(exc)
            except ValueError as exc:
                poll.problem = str(exc)
            report.batches += poll.batches
            report.skips.merge(poll.skips)
            report.problem = poll.problem if report.batches == 0 or once else None
            line = poll.line()
            if not once and line and not poll.batches and line != report.printed:
                print(f"clusterpulse: {line}", file=log, flush=True)  # polling: say it when it starts
                report.printed = line
        output.flush()
        if once:
            break
        time.sleep(max(0.0, interval_s - (time.monotonic() - started)))
    return summary, converter, reports
