"""What every verb shares: settings options, one-line user errors, plurals, output closing."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from pipeline.settings import Settings, load_settings

EXIT_USAGE = 2


class UsageError(Exception):
    """A user error: printed as one line on stderr, exit status 2."""


class CommandError(Exception):
    """A failure that is not the user's input (unreachable broker, lost messages): one line, exit 1."""


def one_line(message: str) -> str:
    """A message as the one line a user error is: its lines joined, blank ones dropped."""
    return "; ".join(line.strip() for line in message.splitlines() if line.strip())


def check_data_dir(data_dir: str) -> None:
    """A local data directory must be a directory, or a path that can become one: a UsageError
    naming a file in the way (`--data results.csv`, `--data results.csv/lake`); an object store
    must answer."""
    from pathlib import Path

    if "://" in data_dir:
        from pipeline.lake.store import LakeStore

        try:
            LakeStore(data_dir).check()
        except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError: a URI it cannot take
            raise UsageError(f"data directory {data_dir!r}: {str(exc).splitlines()[0]}") from None
        return
    path = Path(data_dir)
    for part in (path, *path.parents):
        if part.exists():
            if not part.is_dir():
                where = "" if part == path else f": {part} is a file"
                raise UsageError(
                    f"data directory {data_dir!r} (--data, env CLUSTERPULSE_DATA_DIR) is not a directory{where}"
                )
            return


def plural(n: int, word: str, many: str | None = None) -> str:
    """'1 alert', '2 alerts', '1,024 batches'."""
    return f"{n:,} {word if n == 1 else (many or word + 's')}"


def say(text: str) -> None:
    """A status line for the user (stderr, so stdout stays the command's data)."""
    print(text, file=sys.stderr, flush=True)


# The settings a verb may take as flags; each verb lists the ones that apply to it.
SETTING_FLAGS: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "bootstrap": (("--bootstrap",), {"help": "Kafka bootstrap HOST:PORT (env CLUSTERPULSE_BOOTSTRAP)"}),
    "data_dir": (
        ("--data",),
        {"dest": "data_dir", "metavar": "DIR", "help": "the Parquet lake (env CLUSTERPULSE_DATA_DIR; default ./data)"},
    ),
    "partitions": (("--partitions",), {"type": int, "help": "partitions per telemetry topic (default 12)"}),
    "topic_prefix": (("--topic-prefix",), {"help": "topic name prefix (default clusterpulse)"}),
    "group_id": (("--group-id",), {"help": "the workers' consumer group (default clusterpulse-worker)"}),
    "broker_storage": (
        ("--storage", "--broker-storage"),
        {
            "metavar": "URL",
            "help": "the embedded broker's storage: memory://tansu/ (default; a restart loses "
            "every message) or s3://BUCKET/ on any S3-compatible store, endpoint and credentials from AWS_ENDPOINT, "
            "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION, AWS_ALLOW_HTTP "
            "(env CLUSTERPULSE_BROKER_STORAGE)",
        },
    ),
    "topology": (
        ("--topology",),
        {
            "metavar": "FILE",
            "help": "the real fabric (ibnetdiscover, LLDP json0, NDT "
            "cabling CSV or `topology import --out` YAML) instead of the synthetic cluster "
            "shape (env CLUSTERPULSE_TOPOLOGY)",
        },
    ),
}


def new_verb(
    sub: Any, name: str, help_text: str, example: str, settings: tuple[str, ...] = (), log_level: bool = True
) -> argparse.ArgumentParser:
    """A sub-command with only its own settings flags, --config (also accepted after the verb)
    and an example in its --help."""
    parser = sub.add_parser(
        name,
        help=help_text,
        description=help_text,
        epilog="example:\n  " + example.replace("\n", "\n  "),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    group = parser.add_argument_group("settings (flags > CLUSTERPULSE_* environment > --config file)")
    group.add_argument(
        "--config", default=argparse.SUPPRESS, metavar="FILE", help="YAML settings file (env CLUSTERPULSE_CONFIG)"
    )
    for key in settings:
        flags, kwargs = SETTING_FLAGS[key]
        group.add_argument(*flags, **{"dest": key, **kwargs})
    if log_level:
        group.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    return parser


def settings_from(args: argparse.Namespace, **extra: Any) -> Settings:
    flags = {key: getattr(args, key, None) for key in (*SETTING_FLAGS, "log_level")}
    flags.update(extra)
    return load_settings(flags, config_file=getattr(args, "config", None))


def need_bootstrap(settings: Settings, what: str) -> str:
    if not settings.bootstrap:
        raise UsageError(
            f"{what} needs --bootstrap HOST:PORT or CLUSTERPULSE_BOOTSTRAP "
            "(start the embedded broker with `clusterpulse broker`)"
        )
    return settings.bootstrap


def close_output(output: Any) -> bool:
    """Flush and close a producer output; False (reported) if any message was not delivered."""
    from producers.output import DeliveryError

    try:
        output.close()
    except DeliveryError as exc:
        say(f"clusterpulse: {exc}")
        return False
    return True


def parse_speed_arg(value: str) -> str:
    """argparse type for --speed: 1 = real time, N, or max."""
    from producers.output import parse_speed

    try:
        parse_speed(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def positive_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {value!r}") from None
    if not number > 0 or number == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {value!r}")
    return number


def topology_and_inventory(settings: Settings, inventory_path: str | None) -> tuple[Any, Any]:
    """The settings' topology and the inventory file's mapping, or a one-line UsageError."""
    from pipeline.settings import SettingsError
    from pipeline.topology.inventory import InventoryError, load_inventory

    try:
        topology = settings.build_topology()
    except SettingsError as exc:
        raise UsageError(str(exc)) from None
    try:
        return topology, load_inventory(inventory_path)
    except InventoryError as exc:
        raise UsageError(str(exc)) from None
