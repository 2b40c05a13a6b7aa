"""Command line: `clusterpulse <command>` (also `python -m pipeline <command>`).

One module per group of verbs: `pipeline.cli.pipeline_cmds` (run, broker, worker, topics),
`simulation` (simulate, replay, eval), `ingest`, `collect`, `delivery` (alerts, receiver), `silence`, `lake` (query,
sql, compact) and `fabric` (topology). Each registers its verbs with `add_parsers(sub)`; the handler is `args.handler`.
User errors are one line on stderr and exit 2; nothing a user does prints a traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from typing import NoReturn

from pipeline.cli import collect, delivery, fabric, ingest, lake, pipeline_cmds, silence, simulation
from pipeline.cli.common import EXIT_USAGE, CommandError, UsageError, check_data_dir, one_line, settings_from
from pipeline.ops.broker import BrokerError
from pipeline.ops.kafka_config import use_security
from pipeline.settings import SettingsError

MODULES = (pipeline_cmds, simulation, ingest, collect, delivery, silence, lake, fabric)


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors that point at --help."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="clusterpulse",
        description=__doc__.split("\n")[0],
        epilog="examples:\n  clusterpulse run --scenario scenarios/card-failure-small.yaml --speed max\n"
        "  clusterpulse query fault_timeline\n  clusterpulse <command> --help",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--config", metavar="FILE", help="YAML settings file (env CLUSTERPULSE_CONFIG); also accepted after the command"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in MODULES:
        module.add_parsers(sub)
    return parser


def parse(argv: list[str] | None) -> argparse.Namespace:
    """Parse, accepting input files anywhere among the options (`ingest xid --host H FILE`)."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        strays = [a for a in extra if a.startswith("-") and a != "-"]
        if strays or not hasattr(args, "inputs"):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.inputs = list(args.inputs or []) + extra
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    settings = None
    try:
        settings = settings_from(args)
        _setup_logging(settings.log_level, args.command)
        use_security(settings.kafka.client_options())  # TLS / SASL for every Kafka client of this process
        if hasattr(args, "data_dir"):  # the verb reads or writes a lake
            check_data_dir(settings.data_dir)
        return args.handler(args, settings)
    except (UsageError, SettingsError) as exc:
        print(f"clusterpulse: {one_line(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except (CommandError, BrokerError) as exc:
        print(f"clusterpulse: {one_line(str(exc))}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # `clusterpulse query ... | head`: the reader left; exit quietly, as cat does
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        print("clusterpulse: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - a bug: one line, the traceback only when asked for
        if settings is not None and settings.log_level == "debug":
            traceback.print_exc()
        print(
            f"clusterpulse: {args.command} failed: {type(exc).__name__}: {one_line(str(exc))} "
            "(--log-level debug shows where)",
            file=sys.stderr,
        )
        return 1


def _setup_logging(level: str, command: str) -> None:
    """Plain one-line records (no terminal colours); Kafka client chatter only when asked for."""
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if command != "worker" or level != "debug":
        logging.getLogger("kafka").setLevel(max(logging.ERROR, logging.root.level))


if __name__ == "__main__":
    sys.exit(main())
