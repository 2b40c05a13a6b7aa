"""10,000 malformed and odd messages, drawn by hypothesis while a simulated stream runs and sent into it,
each after the simulated message it was made from: each
is dead-lettered with a reason or handled as docs/topics.md says, the worker never restarts, every
simulated sample is in Parquet once, and the alerts are the offline run's."""

from __future__ import annotations

import collections
import heapq
import queue
import threading
import time

import duckdb
import pytest
import yaml

from pipeline.model.topics import DEAD_LETTERS, DLQ_REASON, DLQ_TOPIC
from pipeline.ops.broker import stop_process
from producers.output import KafkaOutput
from producers.scenario import load_scenario
from producers.simulator import Message, Simulator
from tests.kafka_helpers import read_all
from tests.reliability.garbage import draw_garbage
from tests.reliability.helpers import SCENARIO, check_lake, wait_caught_up, worker_env

pytestmark = [pytest.mark.broker, pytest.mark.slow]

COUNT = 10_000
SPEED = 6  # simulated seconds per second: the stream lasts about as long as hypothesis draws


def test_garbage_at_volume_is_dead_lettered_or_handled_and_loses_nothing(
    broker, prefix, children, tmp_path, receiver
) -> None:
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(SCENARIO))
    scenario = load_scenario(path)
    topology = scenario.topology
    data = tmp_path / "lake"
    env = worker_env(broker.bootstrap, prefix, data, receiver.url)
    assert children.start("topics", env=env, name="topics").wait(timeout=60) == 0
    worker = children.start("worker", env=env, name="worker")  # starts while the garbage is drawn

    ticks = [(t, m) for t, messages in Simulator(scenario).ticks() for m in messages]
    good = [m for _, m in ticks]
    kinds = [m.topic.suffix.rsplit(".", 1)[1] for m in good]
    chunks: queue.Queue = queue.Queue()  # hypothesis draws while the stream runs

    def draw() -> None:
        try:
            for chunk in draw_garbage(good, kinds, lambda name: _known(topology, name), COUNT):
                chunks.put(chunk)
            chunks.put(None)
        except BaseException as exc:  # raised by the test, not lost in the thread
            chunks.put(exc)

    threading.Thread(target=draw, daemon=True).start()

    out = KafkaOutput(broker.bootstrap, prefix, client_id="garbage-test")
    garbage: list = []
    waiting: list = []  # drawn, its simulator message not sent yet (a heap by message index)
    drawing = True
    started, first_tick = time.monotonic(), ticks[0][0]
    for i, (tick, message) in enumerate(ticks + [(None, None)]):
        while drawing and (message is None or not chunks.empty()):
            chunk = chunks.get(timeout=300)
            if isinstance(chunk, BaseException):
                raise chunk
            if chunk is None:
                drawing = False
                break
            for g in chunk:
                heapq.heappush(waiting, (g.after, len(garbage), g))
                garbage.append(g)
        if message is not None:
            time.sleep(max(0.0, started + (tick - first_tick) / 1000 / SPEED - time.monotonic()))
            out.send(message)
        sent = len(ticks) if message is None else i + 1
        while waiting and waiting[0][0] < sent:  # under its message's key: the same partition, after it
            g = heapq.heappop(waiting)[2]
            source = good[g.after]
            out.send(Message(source.topic, source.key, g.value))
    assert len(garbage) == COUNT and not waiting
    out.flush()
    out.producer.close()

    wait_caught_up(broker.bootstrap, prefix, worker, children.log_of, "(garbage)")
    assert worker.poll() is None, "the worker stopped"
    stop_process(worker, timeout_s=30)

    log = children.log_of(worker)
    assert "Traceback" not in log, log[log.index("Traceback") :][:3000]
    assert sum(1 for p, _ in children.procs if p.args[3:4] == ["worker"]) == 1  # never restarted

    expected_dead = collections.Counter(g.value for g in garbage if g.dead)
    letters = read_all(broker.bootstrap, DEAD_LETTERS.name(prefix))  # the worker has stopped: all of them
    reasons = collections.Counter()
    for record in letters:
        headers = dict(record.headers)
        assert headers.get(DLQ_REASON) and headers.get(DLQ_TOPIC), record
        reasons[headers[DLQ_REASON].decode().split(":")[0][:40]] += 1
    assert collections.Counter(r.value for r in letters) == expected_dead, (
        f"{len(letters)} dead letters, {sum(expected_dead.values())} expected"
    )

    kept = collections.Counter()
    for g in garbage:
        kept.update(g.kept)
    found = check_lake(data, path, "(garbage)", extra=dict(kept))
    late = duckdb.execute(
        f"select count(*) from read_parquet('{data}/card/**/*.parquet', hive_partitioning = true) "
        "where epoch_ms(ts) % 1000 <> 0"
    ).fetchone()[0]
    assert late == kept["card"] > 0
    print(
        f"{COUNT} garbage messages: {sum(expected_dead.values())} dead-lettered, rows kept {dict(kept)}; "
        f"lake {found}; reasons {reasons.most_common(12)}"
    )


def _known(topology, name: str) -> bool:  # noqa: ANN001
    for lookup in (topology.node_index, topology.switch_ports):
        try:
            lookup(name)
            return True
        except Exception:  # UnknownEntity, or a name no lookup can parse
            pass
    return False
