"""10,000 malformed and odd messages, drawn by hypothesis, mixed into a live simulated stream: each
is dead-lettered with a reason or handled as docs/topics.md says, the worker never restarts, every
simulated sample is in Parquet once, and the alerts are the offline run's."""

from __future__ import annotations

import collections
import threading
import time

import duckdb
import pytest
import yaml

from pipeline.broker import free_port, stop_process
from pipeline.receiver import WebhookReceiver
from pipeline.topics import DEAD_LETTERS, DLQ_REASON, DLQ_TOPIC
from producers.output import KafkaOutput
from producers.scenario import load_scenario
from producers.simulator import Message, Simulator
from tests.kafka_helpers import read_until
from tests.reliability.garbage import draw_garbage, stamp
from tests.reliability.helpers import HOOK_SECRET, SCENARIO, check_lake, wait_caught_up, worker_env

pytestmark = pytest.mark.broker

COUNT = 10_000
SPEED = 8  # simulated seconds per second


def test_garbage_at_volume_is_dead_lettered_or_handled_and_loses_nothing(broker, prefix, children,
                                                                         tmp_path) -> None:
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(SCENARIO))
    scenario = load_scenario(path)
    topology = scenario.topology
    data = tmp_path / "lake"
    receiver = WebhookReceiver("127.0.0.1", free_port(), echo=None, secret=HOOK_SECRET.encode())
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    env = worker_env(broker.bootstrap, prefix, data, receiver.url)
    try:
        assert children.start("topics", env=env, name="topics").wait(timeout=60) == 0
        worker = children.start("worker", env=env, name="worker")  # starts while the garbage is drawn

        ticks = [(t, m) for t, messages in Simulator(scenario).ticks() for m in messages]
        good = [m for _, m in ticks]
        kinds = [m.topic.suffix.rsplit(".", 1)[1] for m in good]
        garbage = draw_garbage(good, kinds, lambda name: _known(topology, name), COUNT)
        stamp(garbage, good)
        assert len(garbage) == COUNT
        following = collections.defaultdict(list)
        for g in garbage:
            following[g.after].append(g)

        out = KafkaOutput(broker.bootstrap, prefix, client_id="garbage-test")
        started, first_tick = time.monotonic(), ticks[0][0]
        for i, (tick, message) in enumerate(ticks):
            time.sleep(max(0.0, started + (tick - first_tick) / 1000 / SPEED - time.monotonic()))
            out.send(message)
            for g in following[i]:  # under the same key: the same partition, right after it
                out.send(Message(message.topic, message.key, g.value))
        out.flush()
        out.producer.close()

        wait_caught_up(broker.bootstrap, prefix, worker, children.log_of, "(garbage)")
        assert worker.poll() is None, "the worker stopped"
        stop_process(worker, timeout_s=30)
    finally:
        receiver.shutdown()
        receiver.server_close()

    log = children.log_of(worker)
    assert "Traceback" not in log, log[log.index("Traceback"):][:3000]
    assert sum(1 for p, _ in children.procs if p.args[3:4] == ["worker"]) == 1  # never restarted

    expected_dead = collections.Counter(g.value for g in garbage if g.dead)
    letters = read_until(broker.bootstrap, DEAD_LETTERS.name(prefix),
                         lambda found: len(found) >= sum(expected_dead.values()), timeout_s=60)
    time.sleep(2)  # nothing more may come
    letters += read_until(broker.bootstrap, DEAD_LETTERS.name(prefix), lambda found: True, timeout_s=5)[
        len(letters):]
    reasons = collections.Counter()
    for record in letters:
        headers = dict(record.headers)
        assert headers.get(DLQ_REASON) and headers.get(DLQ_TOPIC), record
        reasons[headers[DLQ_REASON].decode().split(":")[0][:40]] += 1
    assert collections.Counter(r.value for r in letters) == expected_dead, \
        f"{len(letters)} dead letters, {sum(expected_dead.values())} expected"

    kept = collections.Counter()
    for g in garbage:
        kept.update(g.kept)
    found = check_lake(data, path, "(garbage)", extra=dict(kept))
    late = duckdb.execute(f"select count(*) from read_parquet('{data}/card/**/*.parquet', hive_partitioning = true) "
                          "where epoch_ms(ts) % 1000 <> 0").fetchone()[0]
    assert late == kept["card"] > 0
    print(f"{COUNT} garbage messages: {sum(expected_dead.values())} dead-lettered, rows kept {dict(kept)}; "
          f"lake {found}; reasons {reasons.most_common(12)}")


def _known(topology, name: str) -> bool:  # noqa: ANN001
    for lookup in (topology.node_index, topology.switch_ports):
        try:
            lookup(name)
            return True
        except Exception:  # UnknownEntity, or a name no lookup can parse
            pass
    return False
