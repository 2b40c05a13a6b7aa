"""Silences without a broker: matchers as Alertmanager's, states, and what the correlator and the
notifier do with an alert a silence covers."""

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from pipeline.correlate.correlator import Correlator
from pipeline.model.matchers import Matcher, MatcherError
from pipeline.model.schemas import Alert
from pipeline.notify.delivery import Notifier
from pipeline.notify.silences import Silence, SilenceBook, SilenceError, parse_duration
from pipeline.settings import ReceiverSettings
from pipeline.topology.synthetic import ClusterShape, Topology

NOW = datetime(2026, 12, 2, 6, 0, tzinfo=UTC)


def alert(kind: str = "switch_down", entity: str = "leaf007", **labels: str) -> Alert:
    return Alert(
        kind=kind,
        entity=entity,
        status="firing",
        starts_at="2026-12-02T06:00:00.000Z",
        severity="critical",
        summary=f"{kind} {entity}",
        labels=labels or {"switch": entity},
    )


def silence(*matchers: str, minutes: int = 60, start: datetime = NOW) -> Silence:
    return Silence.new(
        [Matcher.parse(m) for m in matchers], start, start + timedelta(minutes=minutes), "ops", "firmware", NOW
    )


def test_matchers_are_alertmanagers_equality_and_anchored_regex() -> None:
    fields = {"switch": "leaf007", "kind": "switch_down"}
    assert Matcher.parse("switch=leaf007").matches(fields)
    assert not Matcher.parse("switch!=leaf007").matches(fields)
    assert Matcher.parse("switch=~leaf00[0-9]").matches(fields)
    assert not Matcher.parse("switch=~leaf").matches(fields)  # anchored: the whole value
    assert Matcher.parse("switch!~spine.*").matches(fields)
    assert Matcher.parse('node=""').matches(fields)  # a label it lacks is the empty string
    assert str(Matcher.parse("node=~node00(1[0-9])")) == "node=~node00(1[0-9])"
    for bad in ("switch", "=leaf", "switch=~(", "1abc=x"):
        with pytest.raises(MatcherError):
            Matcher.parse(bad)


def test_a_silence_is_pending_active_then_expired_and_covers_only_what_all_its_matchers_match() -> None:
    s = silence("switch=leaf007", "kind=~switch_down|link_down", start=NOW + timedelta(minutes=5))
    assert s.state(NOW) == "pending" and not s.covers(alert(), NOW)
    later = NOW + timedelta(minutes=10)
    assert s.state(later) == "active" and s.covers(alert(), later)
    assert not s.covers(alert(entity="leaf008"), later)
    assert not s.covers(alert(kind="card_failed", entity="node0001-card3", node="node0001"), later)
    assert s.state(NOW + timedelta(hours=2)) == "expired"
    ended = s.expired(later + timedelta(minutes=1))
    assert ended.state(later + timedelta(minutes=1)) == "expired" and ended.id == s.id


def test_the_json_is_alertmanagers_silence_and_reads_back() -> None:
    s = silence("switch=leaf007", "job!=eval-c")
    data = s.to_dict(NOW)
    assert data["matchers"][1] == {"name": "job", "value": "eval-c", "isRegex": False, "isEqual": False}
    assert data["status"] == {"state": "active"} and data["createdBy"] == "ops"
    assert Silence.from_dict(data) == s


def test_a_silence_must_say_what_why_and_for_how_long() -> None:
    with pytest.raises(SilenceError, match="at least one matcher"):
        Silence.new([], NOW, NOW + timedelta(hours=1), "ops", "why", NOW)
    with pytest.raises(SilenceError, match="match every alert"):
        silence("node=~.*")
    with pytest.raises(SilenceError, match="comment"):
        Silence.new([Matcher.parse("node=node0001")], NOW, NOW + timedelta(hours=1), "ops", " ", NOW)
    with pytest.raises(SilenceError, match="end after it starts"):
        silence("node=node0001", minutes=0)
    assert parse_duration("1h30m") == timedelta(minutes=90) and parse_duration("2d") == timedelta(days=2)
    with pytest.raises(SilenceError):
        parse_duration("soon")


def test_the_correlator_marks_what_is_silenced_and_publishes_it_again_when_the_silence_ends() -> None:
    book = SilenceBook()
    clock = {"now": NOW}
    correlator = Correlator(Topology(ClusterShape(64, 8, 4, 2)), clock=lambda: 0.0)
    correlator.silences = lambda a: book.silenced_by(a, clock["now"])
    s = silence("node=node0003")
    book.apply(s)
    failed = replace(alert("card_failed", "node0003-card2", node="node0003", card="2"))
    [out] = correlator.push(failed, "card/0")
    assert out.silenced_by == (s.id,)
    assert correlator.unsilenced() == []  # still silenced
    clock["now"] = NOW + timedelta(minutes=61)  # the silence is over; the card still fails
    [again] = correlator.unsilenced()
    assert again.id == out.id and again.status == "firing" and again.silenced_by == ()
    resolved = replace(failed, status="resolved", ends_at="2026-12-02T07:30:00.000Z")
    [done] = correlator.push(resolved, "card/0")
    assert done.silenced_by == ()  # it paged, so its resolution pages too


def test_a_silenced_firing_resolves_silently() -> None:
    book = SilenceBook()
    correlator = Correlator(Topology(ClusterShape(64, 8, 4, 2)), clock=lambda: 0.0)
    correlator.silences = lambda a: book.silenced_by(a, NOW)
    book.apply(silence("node=node0003"))
    failed = alert("card_failed", "node0003-card2", node="node0003", card="2")
    correlator.push(failed, "card/0")
    [done] = correlator.push(replace(failed, status="resolved", ends_at="2026-12-02T06:10:00.000Z"), "card/0")
    assert done.silenced_by  # no one was paged for the firing: its resolution pages no one either


def test_the_notifier_sends_a_silenced_alert_to_no_receiver() -> None:
    async def nowhere(*args: object) -> None:
        return None

    async def run() -> Notifier:
        receiver = ReceiverSettings(name="ops", url="http://127.0.0.1:9/hook")
        notifier = Notifier([receiver], nowhere)
        assert await notifier.submit(replace(alert(), silenced_by=("s1",))) == 0
        return notifier

    notifier = asyncio.run(run())
    assert notifier.stats["ops"].silenced == 1 and notifier.stats["ops"].delivered == 0


def test_an_expired_pending_silence_reads_back_expired_and_bad_records_are_refused_in_one_line() -> None:
    pending = silence("node=node0003", start=NOW + timedelta(hours=1))
    ended = pending.expired(NOW)
    assert Silence.from_dict(ended.to_dict(NOW)).state(NOW + timedelta(hours=2)) == "expired"  # never turns on
    bad_regex = {**pending.to_dict(NOW), "matchers": [{"name": "node", "value": "(", "isRegex": True}]}
    with pytest.raises(SilenceError, match="not a regular expression"):
        Silence.from_dict(bad_regex)
    string_flag = {**pending.to_dict(NOW), "matchers": [{"name": "node", "value": "x", "isEqual": "false"}]}
    with pytest.raises(SilenceError, match="must be true or false"):
        Silence.from_dict(string_flag)
