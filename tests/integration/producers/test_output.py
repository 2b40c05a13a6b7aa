"""Simulator output: file format, pacing, Kafka delivery, `simulate` and `replay` commands."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.model.schemas import decode_batch
from pipeline.model.topics import CARD_TELEMETRY
from producers.output import DeliveryError, FileOutput, KafkaOutput, Pacer, parse_speed, pump, read_message_file
from producers.scenario import parse_scenario
from producers.simulator import Message, Simulator
from tests.conftest import ROOT
from tests.conftest import run_cli as cli
from tests.kafka_helpers import read_until

SMALL_SCENARIO = ROOT / "scenarios" / "card-failure-small.yaml"


def test_file_output_round_trips_and_rejects_foreign_files(tmp_path: Path) -> None:
    sim = Simulator(
        parse_scenario({"duration_s": 5, "cluster": {"cards": 64, "nodes_per_leaf": 4, "spines": 2}, "faults": []})
    )
    sent = [m for _, msgs in sim.ticks() for m in msgs]
    out = FileOutput(tmp_path / "m.bin")
    for m in sent:
        out.send(m)
    out.close()
    assert list(read_message_file(tmp_path / "m.bin")) == sent
    (tmp_path / "x.bin").write_bytes(b"PK\x03\x04zip")
    with pytest.raises(ValueError, match="not a ClusterPulse message file"):
        list(read_message_file(tmp_path / "x.bin"))


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.slept.append(round(s, 6))
        self.now += s


@pytest.mark.parametrize("speed, expected", [(1.0, [1.0, 1.0]), (20.0, [0.05, 0.05]), (None, [])])
def test_pacer_follows_event_time_at_any_speed(speed: float | None, expected: list[float]) -> None:
    t = FakeTime()
    pacer = Pacer(speed, clock=t.clock, sleep=t.sleep)
    for ts in (0, 1000, 2000):
        pacer.wait_until(ts)
    assert t.slept == expected


def test_speed_parsing() -> None:
    assert parse_speed("max") is None and parse_speed("20") == 20.0
    for bad in ("0", "-1", "fast"):
        with pytest.raises(ValueError, match="--speed must be a positive number or 'max'"):
            parse_speed(bad)


def test_simulate_to_file_is_deterministic_and_refuses_bad_scenarios(tmp_path: Path) -> None:
    for name in ("a.bin", "b.bin"):
        done = cli(
            "simulate",
            "--scenario",
            str(SMALL_SCENARIO),
            "--speed",
            "max",
            "--out",
            str(tmp_path / name),
            "--truth",
            str(tmp_path / "truth.jsonl"),
        )
        assert done.returncode == 0, done.stderr
    assert (tmp_path / "a.bin").read_bytes() == (tmp_path / "b.bin").read_bytes()
    assert "simulated 60 s of 64 cards" in done.stderr and "msg/s" in done.stderr
    assert '"kind": "card_failure"' in (tmp_path / "truth.jsonl").read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text("faults: [{kind: straggler, target: node9999-card0, start_s: 1}]\n")
    done = cli("simulate", "--scenario", str(bad), "--out", str(tmp_path / "c.bin"))
    assert done.returncode == 2 and "faults[0].target = 'node9999-card0'" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.broker
def test_replay_produces_a_file_into_kafka(broker, prefix, tmp_path: Path) -> None:
    path = tmp_path / "m.bin"
    assert cli("simulate", "--scenario", str(SMALL_SCENARIO), "--out", str(path), "--speed", "max").returncode == 0
    cards = [m for m in read_message_file(path) if m.topic == CARD_TELEMETRY]
    done = cli("replay", str(path), "--bootstrap", broker.bootstrap, "--topic-prefix", prefix)
    assert done.returncode == 0, done.stderr
    records = read_until(broker.bootstrap, f"{prefix}.telemetry.card", lambda rs: len(rs) >= len(cards))
    assert len(records) == len(cards)
    assert sorted(r.value for r in records) == sorted(m.value for m in cards)
    assert {decode_batch(r.value).source for r in records} == {r.key.decode() for r in records}


@pytest.mark.broker
def test_undeliverable_messages_are_reported_not_dropped(broker, prefix) -> None:
    out = KafkaOutput(broker.bootstrap, prefix)
    try:
        with pytest.raises(DeliveryError, match=r"cannot send 9,437,184 bytes to .*telemetry.card"):
            out.send(Message(CARD_TELEMETRY, "node0000", b"x" * 9 * 1024 * 1024))
    finally:
        out.producer.close(timeout=5)
    assert out.failed == 1


def test_pump_reports_progress_and_a_summary(tmp_path: Path) -> None:
    import io

    sim = Simulator(
        parse_scenario({"duration_s": 10, "cluster": {"cards": 64, "nodes_per_leaf": 4, "spines": 2}, "faults": []})
    )
    stream = io.StringIO()
    out = FileOutput(tmp_path / "m.bin")
    summary = pump(sim.ticks(), out, Pacer(None), progress_every_s=0.0, stream=stream)
    out.close()
    assert summary["ticks"] == 10 and summary["simulated_s"] == 9.0
    assert "x real time" in stream.getvalue() and "msg/s" in stream.getvalue()
