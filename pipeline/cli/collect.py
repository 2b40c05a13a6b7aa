"""`clusterpulse collect`: a fleet of exporters (and Prometheus remote_write) into Kafka."""

from __future__ import annotations

import argparse
import asyncio
import gc
import signal
from typing import Any

from pipeline.cli.common import SETTING_FLAGS, CommandError, UsageError, say, topology_and_inventory
from pipeline.ops.broker import check_reachable, create_topics
from pipeline.settings import Settings

NETWORK = ("bootstrap", "partitions", "topic_prefix", "topology")
DEFAULT_LISTEN = "127.0.0.1:9201"


def add_parsers(sub: Any) -> None:
    example = (
        "clusterpulse collect --config served-fleet.yml --bootstrap 127.0.0.1:9092\n"
        "clusterpulse collect --config prometheus.yml --shard 0/4 --inventory inventory.yaml\n"
        "clusterpulse collect --listen 0.0.0.0:9201      # only remote_write: "
        "remote_write: [{url: http://HOST:9201/api/v1/write}]"
    )
    p = sub.add_parser(
        "collect",
        help="scrape a fleet of exporters (Prometheus scrape_configs) and take Prometheus remote_write, into Kafka",
        description="Scrape a fleet of exporters concurrently (a subset of Prometheus's "
        "scrape_configs: docs/operations.md) and take Prometheus remote_write, into "
        "Kafka. The settings file goes before the verb: clusterpulse --config "
        "settings.yaml collect ...",
        epilog="example:\n  " + example.replace("\n", "\n  "),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--config",
        dest="scrape_config",
        metavar="SCRAPE.yml",
        help="Prometheus-style scrape_configs (a whole prometheus.yml is fine)",
    )
    p.add_argument(
        "--shard",
        metavar="I/N",
        help="take only the targets whose address hashes to I of N (Prometheus hashmod): N collectors split a fleet",
    )
    p.add_argument(
        "--listen",
        default=DEFAULT_LISTEN,
        metavar="HOST:PORT",
        help=f"/metrics and POST /api/v1/write (remote_write) here (default {DEFAULT_LISTEN}; port 0 picks a free one)",
    )
    p.add_argument("--no-remote-write", action="store_true", help="refuse remote_write (404) on --listen")
    p.add_argument("--inventory", help="hosts and switches to topology names (YAML, docs/inventory.md)")
    p.add_argument(
        "--group-size", type=int, default=32, help="targets per Kafka message (per kind), like a rack's (default 32)"
    )
    group = p.add_argument_group("settings (flags > CLUSTERPULSE_* environment > clusterpulse --config FILE collect)")
    for key in NETWORK:
        flags, kwargs = SETTING_FLAGS[key]
        group.add_argument(*flags, **{"dest": key, **kwargs})
    group.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    p.set_defaults(handler=cmd_collect)


def raise_open_files_limit() -> None:
    """A connection per target: take the hard limit of open files (a soft limit of 1,024 would
    make a 1,632-target fleet look unreachable)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass


def run_async(main: Any) -> Any:
    """asyncio.run on uvloop where it is installed (libuv's loop: about twice the HTTP requests a
    second of asyncio's own on one core), else on asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def _listen_address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise UsageError(f"--listen wants HOST:PORT, got {text!r}")
    return host or "0.0.0.0", int(port)


def cmd_collect(args: argparse.Namespace, settings: Settings) -> int:
    from producers.collect.config import ConfigError, load_config, parse_shard

    if not args.scrape_config and args.no_remote_write:
        raise UsageError("nothing to collect: give --config SCRAPE.yml, or leave remote_write on")
    shard = None
    if args.shard:
        if not args.scrape_config:
            raise UsageError("--shard splits the targets of --config; remote_write has none")
        try:
            shard = parse_shard(args.shard)
        except ConfigError as exc:
            raise UsageError(str(exc)) from None
    if args.group_size < 1:
        raise UsageError(f"--group-size must be 1 or more, not {args.group_size}")
    listen = _listen_address(args.listen)
    raise_open_files_limit()
    if args.scrape_config:
        try:
            load_config(args.scrape_config)  # a bad config fails before anything starts
        except ConfigError as exc:
            raise UsageError(str(exc)) from None
    topology, inventory = topology_and_inventory(settings, args.inventory)
    if not settings.bootstrap:
        raise UsageError("give --bootstrap HOST:PORT (or CLUSTERPULSE_BOOTSTRAP): the Kafka to produce into")
    check_reachable(settings.bootstrap)
    create_topics(settings)
    from producers.output import DeliveryError, KafkaOutput

    try:
        output = KafkaOutput(settings.bootstrap, settings.topic_prefix, "clusterpulse-collect")
    except DeliveryError as exc:
        raise CommandError(str(exc)) from None
    try:
        return run_async(_run(args, shard, listen, topology, inventory, output))
    except OSError as exc:  # the listen port taken
        raise CommandError(f"cannot listen on {args.listen}: {exc.strerror or exc}") from None
    finally:
        undelivered = output.close_within(0.5)
        if undelivered:
            say(f"clusterpulse: {undelivered} messages were not delivered before the collector stopped")


async def _run(
    args: argparse.Namespace,
    shard: tuple[int, int] | None,
    listen: tuple[str, int],
    topology: Any,
    inventory: Any,
    output: Any,
) -> int:
    from aiohttp import web

    from producers.collect.listener import RemoteWriteIntake, flush_every, make_app
    from producers.collect.metrics import CollectMetrics
    from producers.collect.scraper import Scraper, freeze_when_warm

    metrics = CollectMetrics()
    # a hundred thousand samples a second live for a moment (until their scrape is converted): with
    # the default thresholds (700, 10, 10) the garbage collector took ~1.2 us of every remote_write
    # sample's ~5 us (measured with bench/remote_write.py's requests, in process); at these, ~0.1
    gc.set_threshold(100_000, 50, 100)

    def send(message: Any) -> None:
        try:
            output.send(message)
        except Exception as exc:  # DeliveryError: counted and said, the collector goes on
            metrics.send_failures.inc()
            say(f"clusterpulse: {exc}")

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    scraper = None
    if args.scrape_config:
        scraper = Scraper(args.scrape_config, shard, topology, inventory, send, metrics, args.group_size, say)
        scraper.load()

        def reload() -> None:
            scraper.reload_requested = True

        loop.add_signal_handler(signal.SIGHUP, reload)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    intake = None if args.no_remote_write else RemoteWriteIntake(topology, inventory, send, metrics, say=say)
    runner = web.AppRunner(make_app(metrics, intake), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, listen[0], listen[1])
    await site.start()
    bound = runner.addresses[0][:2] if runner.addresses else listen
    say(
        f"clusterpulse: collector listening on {bound[0]}:{bound[1]} (/metrics"
        + ("" if intake is None else f", remote_write: http://{bound[0]}:{bound[1]}/api/v1/write")
        + ")"
    )
    tasks = [asyncio.create_task(flush_every(intake, stop))] if intake else []
    if scraper is None:  # remote_write only: its label caches fill as series arrive
        tasks.append(asyncio.create_task(freeze_when_warm(stop, 64.0)))
    if scraper is not None:
        tasks.append(asyncio.create_task(scraper.run(stop)))
    try:
        await stop.wait()
    finally:
        await asyncio.wait(tasks, timeout=0.3)
        for task in tasks:
            task.cancel()
        await runner.cleanup()
    say("clusterpulse: collector stopped")
    return 0
