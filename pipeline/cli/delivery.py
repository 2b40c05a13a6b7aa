"""Verbs of alert delivery: alerts replay, receiver."""

from __future__ import annotations

import argparse
import os
import signal
import threading
from pathlib import Path
from typing import Any

from pipeline.cli.common import CommandError, UsageError, new_verb, plural, say
from pipeline.settings import Settings


def add_parsers(sub: Any) -> None:
    p = new_verb(
        sub,
        "alerts",
        "alert delivery: `alerts replay` resends dead-lettered notifications, once",
        "clusterpulse alerts replay --config prod.yaml --bootstrap kafka:9092   # from the topic\n"
        "clusterpulse alerts replay --config receivers.yaml --data data/run-20260101T000000Z-default"
        "   # from a lake",
        settings=("bootstrap", "data_dir", "topic_prefix", "group_id"),
    )
    p.add_argument("action", choices=["replay"])
    p.add_argument("--receiver", help="only this receiver's notifications (default: all)")
    p.set_defaults(handler=cmd_alerts)

    p = new_verb(
        sub,
        "receiver",
        "a webhook receiver that verifies signatures and prints alerts",
        "OPS_SECRET=s3cret clusterpulse receiver --port 8080 --secret-env OPS_SECRET --out hooks.jsonl",
    )
    p.add_argument(
        "--host", default="127.0.0.1", help="listen address (default 127.0.0.1; 0.0.0.0 to accept other machines)"
    )
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--out", help="also append each notification as a JSON line to this file")
    p.add_argument("--secret-env", help="verify signatures with the secret in this environment variable")
    p.add_argument("--secret-file", help="verify signatures with the secret in this file")
    p.set_defaults(handler=cmd_receiver)


def cmd_alerts(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.lake.dirs import resolve_lake
    from pipeline.notify.replay import replay_dead_letters, replay_from_lake
    from pipeline.ops.broker import check_reachable

    if not settings.notify.receivers:
        raise UsageError("no receivers configured (notify.receivers in --config, or CLUSTERPULSE_NOTIFY__RECEIVERS)")
    known = {r.name for r in settings.notify.receivers}
    if args.receiver and args.receiver not in known:
        raise UsageError(f"no receiver named {args.receiver!r}; configured: {', '.join(sorted(known))}")
    for receiver in settings.notify.receivers:
        receiver.check()
    if settings.bootstrap:
        check_reachable(settings.bootstrap)
        summary = replay_dead_letters(settings, args.receiver)
        where = "the notify dead-letter topic"
    else:
        lake = resolve_lake(settings.data_dir)
        if lake.note:
            say(lake.note)
        if not Path(lake.path).is_dir():
            raise UsageError(f"no lake at {lake.path}: give --data DIR, or --bootstrap to read the topic")
        summary = replay_from_lake(lake.path, settings, args.receiver)
        where = f"the lake {lake.path}"
    say(
        f"from {where}: replayed {plural(summary['delivered'], 'notification')}; {summary['failed']} failed "
        f"again (dead-lettered anew); {summary['skipped']} for other or unknown receivers"
    )
    return 1 if summary["failed"] else 0


def cmd_receiver(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.notify.receiver import WebhookReceiver

    secret = None
    if args.secret_env:
        if args.secret_env not in os.environ:
            raise UsageError(f"environment variable {args.secret_env} is not set")
        secret = os.environ[args.secret_env].encode()
    elif args.secret_file:
        try:
            secret = Path(args.secret_file).read_bytes().strip()
        except OSError as exc:
            raise UsageError(f"cannot read {args.secret_file}: {exc.strerror}") from None
    try:
        server = WebhookReceiver(args.host, args.port, Path(args.out) if args.out else None, secret=secret)
    except OSError as exc:
        raise CommandError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from None
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(
        f"webhook receiver on {server.url} (GET /healthz, GET /received)"
        + ("; verifying signatures" if secret else ""),
        flush=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
