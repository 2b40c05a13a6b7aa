"""Verbs of silences: silence add, silence list, silence expire (as amtool's)."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from datetime import UTC, datetime
from typing import Any

from pipeline.cli.common import CommandError, UsageError, new_verb
from pipeline.model.matchers import Matcher, MatcherError
from pipeline.model.topics import SILENCES
from pipeline.notify.silence_store import read_silences, write_silence
from pipeline.notify.silences import Silence, SilenceError, parse_duration, parse_time
from pipeline.ops.broker import check_reachable
from pipeline.settings import Settings


def add_parsers(sub: Any) -> None:
    p = new_verb(
        sub,
        "silence",
        "silences: planned work that must not page (`add`, `list`, `expire`)",
        "clusterpulse silence add --match switch=leaf007 --duration 2h --comment 'firmware upgrade' --author ops\n"
        "clusterpulse silence add --match 'node=~node00(1[0-9])' --match kind=node_down --until 2026-12-02T08:00:00Z "
        "--comment 'rack 3 repair'\n"
        "clusterpulse silence list                 # active and pending (--all: expired too; --json)\n"
        "clusterpulse silence expire 2f6c1b4e-...  # ends it now",
        settings=("bootstrap", "topic_prefix"),
    )
    p.add_argument("action", choices=["add", "list", "expire"])
    p.add_argument("inputs", nargs="*", metavar="ID", help="expire: the silences to end")
    p.add_argument(
        "--match",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="add: NAME=VALUE, NAME!=VALUE, NAME=~REGEX or NAME!~REGEX over kind, entity, severity and any "
        "label (node, switch, card, port, job, ...); repeat: all must match",
    )
    p.add_argument("--duration", help="add: how long from --start (e.g. 2h, 30m, 1h30m, 1d)")
    p.add_argument("--until", help="add: when it ends (ISO 8601, e.g. 2026-12-02T08:00:00Z)")
    p.add_argument("--start", help="add: when it starts (default now)")
    p.add_argument("--comment", help="add: why (required)")
    p.add_argument("--author", help="add: who (default: the login name)")
    p.add_argument("--all", action="store_true", help="list: expired silences too")
    p.add_argument("--json", action="store_true", help="list, add: JSON (Alertmanager's API v2 silence shape)")
    p.set_defaults(handler=cmd_silence)


def cmd_silence(args: argparse.Namespace, settings: Settings) -> int:
    bootstrap = settings.require_bootstrap()
    check_reachable(bootstrap)
    topic = settings.topic(SILENCES)
    try:
        if args.action == "add":
            return _add(args, bootstrap, topic)
        if args.action == "expire":
            return _expire(args, bootstrap, topic)
        return _list(args, bootstrap, topic)
    except (SilenceError, MatcherError) as exc:
        raise UsageError(str(exc)) from None


def _add(args: argparse.Namespace, bootstrap: str, topic: str) -> int:
    if args.inputs:
        raise UsageError(f"silence add takes no ids ({' '.join(args.inputs)}): give --match NAME=VALUE")
    if bool(args.duration) == bool(args.until):
        raise UsageError("silence add needs one of --duration (e.g. 2h) or --until TIME")
    now = datetime.now(UTC)
    start = parse_time(args.start) if args.start else now
    end = start + parse_duration(args.duration) if args.duration else parse_time(args.until)
    if end <= now:
        raise UsageError(f"the silence would end in the past ({end.isoformat()})")
    author = args.author or _login()
    silence = Silence.new([Matcher.parse(m) for m in args.match], start, end, author, args.comment or "", now)
    write_silence(bootstrap, topic, silence)
    print(json.dumps(silence.to_dict(now)) if args.json else silence.id)
    return 0


def _expire(args: argparse.Namespace, bootstrap: str, topic: str) -> int:
    if not args.inputs:
        raise UsageError("silence expire needs the ids of the silences to end (see silence list)")
    known = {s.id: s for s in read_silences(bootstrap, topic)}
    missing = [i for i in args.inputs if i not in known]
    if missing:
        raise CommandError(f"no silence {', '.join(missing)} on {topic}")
    now = datetime.now(UTC)
    for silence_id in args.inputs:
        silence = known[silence_id]
        if silence.state(now) == "expired":
            print(f"{silence_id}: already expired at {silence.to_dict(now)['endsAt']}", file=sys.stderr)
            continue
        write_silence(bootstrap, topic, silence.expired(now))
        print(f"{silence_id}: expired", file=sys.stderr)
    return 0


def _list(args: argparse.Namespace, bootstrap: str, topic: str) -> int:
    now = datetime.now(UTC)
    shown = [s for s in read_silences(bootstrap, topic) if args.all or s.state(now) != "expired"]
    if args.json:
        print(json.dumps([s.to_dict(now) for s in shown], indent=1))
        return 0
    for silence in shown:
        print(silence.line(now))
    if not shown:
        print("no silences" + ("" if args.all else " (active or pending; --all shows expired ones)"), file=sys.stderr)
    return 0


def _login() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name in this environment (a container without passwd)
        return "unknown"
