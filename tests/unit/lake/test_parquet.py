from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from pipeline.lake.parquet import ParquetSink
from pipeline.model.schemas import Alert, iso_utc
from tests.builders import START_MS, card_batch, port_batch


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def files(root: Path, dataset: str) -> list[Path]:
    return sorted((root / dataset).glob("date=*/hour=*/*.parquet"))


def test_flush_writes_hive_partitioned_files_named_by_first_offset(tmp_path: Path) -> None:
    sink = ParquetSink(tmp_path, flush_rows=10_000, flush_seconds=60)
    for offset, t in enumerate(range(3)):
        sink.add_batch("cp.telemetry.card", 4, 100 + offset, card_batch(f"node000{t}", t, errors=[(1, 48)]))
    assert sink.flush("cp.telemetry.card", 4) == 102
    [card_file] = files(tmp_path, "card")
    assert (
        card_file.relative_to(tmp_path).as_posix()
        == "card/date=2026-01-01/hour=00/cp.telemetry.card+4+00000000000000000100.parquet"
    )
    table = pq.read_table(card_file)
    assert table.num_rows == 24 and {"ts", "node", "card", "util", "_offset"} <= set(table.column_names)
    events = pq.read_table(files(tmp_path, "card_events")[0])
    assert events.column("code").to_pylist() == [48, 48, 48]
    assert not list(tmp_path.rglob("*.tmp"))


def test_rewriting_the_same_offsets_replaces_the_file(tmp_path: Path) -> None:
    sink = ParquetSink(tmp_path)
    for _ in range(2):  # e.g. a restart re-reads uncommitted offsets
        sink.add_batch("cp.telemetry.port", 0, 7, port_batch("leaf001", 1))
        sink.flush("cp.telemetry.port", 0)
    assert len(files(tmp_path, "port")) == 1


def test_due_by_rows_or_age(tmp_path: Path) -> None:
    clock = FakeClock()
    sink = ParquetSink(tmp_path, flush_rows=20, flush_seconds=5, clock=clock)
    assert sink.add_batch("t", 0, 0, card_batch()) is False
    assert sink.due() == []
    clock.now = 5.0
    assert sink.due() == [("t", 0)]
    assert sink.add_batch("t", 1, 0, card_batch()) is False
    assert sink.add_batch("t", 1, 1, card_batch()) is False
    assert sink.add_batch("t", 1, 2, card_batch()) is True  # 24 rows >= 20


def test_dead_lettered_offsets_count_as_consumed(tmp_path: Path) -> None:
    sink = ParquetSink(tmp_path)
    sink.add_batch("t", 0, 0, card_batch())
    sink.mark_consumed("t", 0, 1)
    assert sink.flush("t", 0) == 1
    assert sink.flush("t", 0) == -1  # nothing buffered any more


def test_discarded_partition_writes_nothing(tmp_path: Path) -> None:
    sink = ParquetSink(tmp_path)
    sink.add_batch("t", 0, 0, card_batch())
    sink.discard("t", 0)
    assert sink.flush_all() == {} and not files(tmp_path, "card")


def test_alerts_and_views_are_queryable_with_duckdb(tmp_path: Path) -> None:
    sink = ParquetSink(tmp_path)
    alert = Alert(
        kind="card_failed",
        entity="node0001-card2",
        status="firing",
        starts_at=iso_utc(START_MS),
        severity="critical",
        summary="x",
        labels={"node": "node0001"},
    )
    sink.add_alert("cp.alerts", 0, 0, alert)
    sink.add_batch("cp.telemetry.card", 0, 0, card_batch("node0001"))
    sink.flush_all()
    from pipeline.lake.query import connect

    con, skipped = connect(tmp_path)
    rollups = {f"{dataset}_{period}" for dataset in ("card", "port", "step") for period in ("1m", "1h")}
    none_written = {"card_events", "step", "step_timeouts", "port", "silences", "devices", "fabric_links"} | rollups
    assert set(skipped) == none_written
    assert con.execute("select kind, entity, status from alerts").fetchall() == [
        ("card_failed", "node0001-card2", "firing")
    ]
    assert con.execute("select count(*) from card").fetchall() == [(8,)]
    assert isinstance(con, duckdb.DuckDBPyConnection)


def rows(root: Path, dataset: str) -> list[tuple]:
    return duckdb.execute(
        f"select _offset, count(*) from read_parquet('{root}/{dataset}/**/*.parquet', "
        "union_by_name = true) group by _offset order by _offset"
    ).fetchall()


def test_a_crash_between_write_and_commit_leaves_no_gap_and_no_duplicate(tmp_path: Path) -> None:
    topic = "cp.telemetry.card"
    before = ParquetSink(tmp_path)
    for offset in range(20):  # two files written; the crash comes before offsets 10.. are committed
        before.add_batch(topic, 3, offset, card_batch("node0001", offset))
        if offset in (9, 19):
            before.flush(topic, 3)
    committed = 10
    after = ParquetSink(tmp_path)  # the restarted worker resumes at the committed offset
    assert len(after.discard_uncommitted(topic, 3, committed)) == 1
    for offset in range(committed, 25):  # other flush boundaries than before
        after.add_batch(topic, 3, offset, card_batch("node0001", offset))
    after.flush(topic, 3)
    assert rows(tmp_path, "card") == [(offset, 8) for offset in range(25)]


def test_adding_a_column_later_does_not_break_reading_older_files(tmp_path: Path) -> None:
    import pyarrow as pa

    folder = tmp_path / "card" / "date=2026-01-01" / "hour=00"
    folder.mkdir(parents=True)
    old = pa.table({"ts": pa.array([START_MS], pa.timestamp("ms", tz="UTC")), "node": ["node0001"], "util": [50.0]})
    pq.write_table(old, folder / "cp.telemetry.card+0+00000000000000000000.parquet")
    sink = ParquetSink(tmp_path)
    sink.add_batch("cp.telemetry.card", 0, 1, card_batch("node0002", 1))  # today's schema: more columns
    sink.flush_all()
    from pipeline.lake.query import run_query

    result = run_query(tmp_path, "select node, count(*), count(power_w) from card group by node order by node")
    assert result.rows == [("node0001", 1, 0), ("node0002", 8, 8)]


def test_port_rows_carry_link_and_rail_and_step_rows_their_card(tmp_path: Path) -> None:
    from tests.builders import small_topology, step_batch

    sink = ParquetSink(f"file://{tmp_path}", topology=small_topology())  # a pyarrow filesystem URI
    sink.add_batch("cp.telemetry.port", 0, 0, port_batch("leaf004", 0, ports=6))
    sink.add_batch("cp.telemetry.step", 0, 0, step_batch("node0001", "j", 0, [8, 9, 10], 0, 1.0))
    sink.flush_all()
    ports = pq.read_table(files(tmp_path, "port")[0]).to_pylist()
    assert [(r["port"], r["link"], r["rail"]) for r in ports] == [
        (0, "node0000-nic2~leaf004", 2),
        (1, "node0001-nic2~leaf004", 2),
        (2, "node0002-nic2~leaf004", 2),
        (3, "node0003-nic2~leaf004", 2),
        (4, "leaf004~spine000", None),
        (5, "leaf004~spine001", None),
    ]
    steps = pq.read_table(files(tmp_path, "step")[0]).to_pylist()
    assert [(r["rank"], r["card"]) for r in steps] == [(8, 0), (9, 1), (10, 2)]


def test_cleanup_touches_only_files_of_its_own_stream(tmp_path: Path) -> None:
    """A memory broker's next run starts the same topic at offset 0 again: its worker must neither
    delete nor overwrite the files of the earlier run (another topic id) or of another group."""
    topic = "cp.telemetry.card"
    earlier = ParquetSink(tmp_path, stream_tags={topic: "aaaa1111"})
    untagged = ParquetSink(tmp_path)  # files written before streams were named
    other_group = ParquetSink(tmp_path, stream_tags={topic: "bbbb2222"})
    for sink in (earlier, untagged, other_group):
        for offset in range(10):
            sink.add_batch(topic, 3, offset, card_batch("node0001", offset))
        sink.flush(topic, 3)
    assert len(files(tmp_path, "card")) == 3
    next_run = ParquetSink(tmp_path, stream_tags={topic: "cccc3333"})
    assert next_run.discard_uncommitted(topic, 3, 0) == []  # was: every file of partition 3 deleted
    for offset in range(10):
        next_run.add_batch(topic, 3, offset, card_batch("node0001", offset))
    next_run.flush(topic, 3)
    names = sorted(f.name for f in files(tmp_path, "card"))
    assert names == [
        f"{topic}+3+{0:020d}.parquet",
        f"{topic}+3@aaaa1111+{0:020d}.parquet",
        f"{topic}+3@bbbb2222+{0:020d}.parquet",
        f"{topic}+3@cccc3333+{0:020d}.parquet",
    ]
    restarted = ParquetSink(tmp_path, stream_tags={topic: "cccc3333"})  # same stream: its own crash cleanup
    assert [Path(p).name for p in restarted.discard_uncommitted(topic, 3, 0)] == [
        f"{topic}+3@cccc3333+{0:020d}.parquet"
    ]
    assert len(files(tmp_path, "card")) == 3


def test_rows_are_sorted_by_entity_sub_entity_and_time_whatever_order_they_came_in(tmp_path: Path) -> None:
    """Collectors send ticks in time order and, within a message, ports in any order; the file holds
    each port's samples together in time order (delta encoding and row-group pruning rely on it).
    Ports a switch does not have and switches the topology does not know get no link."""
    from tests.builders import small_topology

    sink = ParquetSink(tmp_path, topology=small_topology())
    offset = 0
    for t in (2, 0, 1):  # late batch first
        for switch in ("spine001", "leaf004", "leaf999"):
            batch = port_batch(switch, t, ports=3)
            batch.columns["port"][:] = batch.columns["port"][::-1] + (40 if switch == "spine001" else 0)
            sink.add_batch("cp.telemetry.port", 0, offset, batch)
            offset += 1
    sink.flush_all()
    rows = pq.read_table(files(tmp_path, "port")[0]).to_pylist()
    keys = [(r["switch"], r["port"], r["ts"]) for r in rows]
    assert keys == sorted(keys) and len(keys) == 27
    assert {r["link"] for r in rows if r["switch"] in ("leaf999", "spine001")} == {None}
    assert [r["link"] for r in rows if r["switch"] == "leaf004"][::3] == [
        "node0000-nic2~leaf004",
        "node0001-nic2~leaf004",
        "node0002-nic2~leaf004",
    ]


def test_a_failed_write_leaves_no_file_and_its_rows_go_back_before_newer_ones(tmp_path: Path, monkeypatch) -> None:
    """A full disk: the half-written temporary file is removed and the buffer put back; the next
    write holds the old rows and the new, under the old buffer's first offset."""
    sink = ParquetSink(tmp_path)
    sink.add_batch("cp.telemetry.card", 0, 5, card_batch("node0000", 0))
    buf = sink.take("cp.telemetry.card", 0)

    def no_space(table, where, **options) -> None:  # noqa: ANN001
        Path(where).write_bytes(b"PAR1 half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pq, "write_table", no_space)
    try:
        sink.write("cp.telemetry.card", 0, buf)
        raise AssertionError("the write did not fail")
    except OSError:
        pass
    monkeypatch.undo()
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]
    sink.add_batch("cp.telemetry.card", 0, 6, card_batch("node0001", 1))  # came in meanwhile
    sink.put_back("cp.telemetry.card", 0, buf)
    assert sink.held_rows() == 16
    assert sink.flush("cp.telemetry.card", 0) == 6
    [card_file] = files(tmp_path, "card")
    assert card_file.name.endswith("+00000000000000000005.parquet")
    assert pq.read_table(card_file).column("node").to_pylist() == ["node0000"] * 8 + ["node0001"] * 8


def test_a_step_messages_collective_timeouts_land_in_step_timeouts_with_their_job(tmp_path: Path) -> None:
    from pipeline.model.schemas import bundle
    from producers.adapters.nccl_log import CollectiveTimeout
    from producers.adapters.steps import timeout_batches
    from tests.builders import small_topology, step_batch

    topo = small_topology()
    timeouts = [
        CollectiveTimeout("gpt", 9, 1580, 600.06, START_MS, "ALLREDUCE"),
        CollectiveTimeout("gpt", 1, 0, float("nan"), START_MS, "NET/IB"),
    ]
    sink = ParquetSink(tmp_path, topology=topo)
    sink.add_batch(
        "cp.telemetry.step",
        0,
        7,
        bundle([*timeout_batches(timeouts, topo), step_batch("node0001", "gpt", 0, [8], 3, 1.0)], "c"),
    )
    sink.flush_all()
    rows = pq.read_table(files(tmp_path, "step_timeouts")[0]).to_pylist()
    assert [(r["job"], r["node"], r["rank"], r["seq"], r["_offset"]) for r in rows] == [
        ("gpt", "node0000", 1, 0, 7),
        ("gpt", "node0001", 9, 1580, 7),
    ]
    assert abs(rows[1]["waited_s"] - 600.06) < 1e-3
    assert len(pq.read_table(files(tmp_path, "step")[0])) == 1
