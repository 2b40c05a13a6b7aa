"""A lake says whose it is; runs get their own directories; readers find the newest run."""

from __future__ import annotations

import json
from datetime import UTC
from pathlib import Path

import pytest

from pipeline.lake.dirs import LakeError, claim_lake, lake_identity, new_run_dir, resolve_lake
from tests.conftest import run_cli

SMALL = {"cards": 64, "cards_per_node": 8, "nodes_per_leaf": 4, "spines": 2}
BIG = {"cards": 10240, "cards_per_node": 8, "nodes_per_leaf": 32, "spines": 32}


def test_a_lake_of_another_cluster_is_refused_unless_appending(tmp_path: Path) -> None:
    assert claim_lake(str(tmp_path), lake_identity(BIG, "clusterpulse")) is None
    assert json.loads((tmp_path / "_lake.json").read_text())["cluster"] == BIG
    assert claim_lake(str(tmp_path), lake_identity(BIG, "clusterpulse")) is None  # a restart: ours
    with pytest.raises(LakeError, match="another cluster .10240 cards.*this worker: 64 cards.*--append"):
        claim_lake(str(tmp_path), lake_identity(SMALL, "clusterpulse"))
    note = claim_lake(str(tmp_path), lake_identity(SMALL, "clusterpulse"), append=True)
    assert note and "appending" in note
    assert json.loads((tmp_path / "_lake.json").read_text())["cluster"] == BIG  # the owner stays


def test_a_lake_of_an_imported_fabric_is_that_fabrics(tmp_path: Path) -> None:
    fabric = lake_identity(SMALL, "clusterpulse", "selene.txt.gz 1a2b3c")
    assert claim_lake(str(tmp_path), fabric) is None
    assert claim_lake(str(tmp_path), fabric) is None  # a restart: ours
    with pytest.raises(LakeError, match="fabric selene.txt.gz 1a2b3c"):  # the synthetic shape of the same size
        claim_lake(str(tmp_path), lake_identity(SMALL, "clusterpulse"))
    with pytest.raises(LakeError, match="another cluster"):  # the fabric changed
        claim_lake(str(tmp_path), lake_identity(SMALL, "clusterpulse", "selene.txt.gz 9f9f9f"))


def test_parquet_without_a_manifest_is_not_silently_adopted(tmp_path: Path) -> None:
    (tmp_path / "card" / "date=2026-01-01").mkdir(parents=True)
    with pytest.raises(LakeError, match="unknown cluster"):
        claim_lake(str(tmp_path), lake_identity(SMALL, "clusterpulse"))


def test_runs_get_their_own_directories_and_readers_take_the_newest(tmp_path: Path) -> None:
    from datetime import datetime

    first = new_run_dir(tmp_path, "card failure/small", datetime(2026, 1, 1, tzinfo=UTC))
    second = new_run_dir(tmp_path, "card failure/small", datetime(2026, 1, 1, tzinfo=UTC))
    assert first.name == "run-20260101T000000Z-card-failure-small" and second.name == first.name + "-2"
    assert resolve_lake(str(tmp_path)).path == str(tmp_path)  # nothing written yet: not a lake
    for run in (first, second):
        claim_lake(str(run), lake_identity(SMALL, "clusterpulse"))
    resolved = resolve_lake(str(tmp_path))
    assert resolved.path == str(second) and "newest run" in resolved.note and "1 earlier run" in resolved.note
    assert resolve_lake(str(first)).path == str(first) and resolve_lake(str(first)).note is None


def test_the_worker_refuses_another_clusters_lake_before_it_starts(tmp_path: Path) -> None:
    claim_lake(str(tmp_path), lake_identity(BIG, "clusterpulse"))
    result = run_cli(
        "worker",
        "--bootstrap",
        "127.0.0.1:1",
        "--data",
        str(tmp_path),
        env={
            "CLUSTERPULSE_CLUSTER__CARDS": "64",
            "CLUSTERPULSE_CLUSTER__NODES_PER_LEAF": "4",
            "CLUSTERPULSE_CLUSTER__SPINES": "2",
        },
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "holds the lake of another cluster" in result.stderr


def test_a_worker_that_cannot_start_writes_nothing_into_the_lake(tmp_path: Path) -> None:
    result = run_cli("worker", "--bootstrap", "127.0.0.1:1", "--data", str(tmp_path / "lake"))
    assert result.returncode == 1 and "cannot reach a Kafka broker" in result.stderr
    assert not (tmp_path / "lake").exists()


def test_a_manifest_alone_does_not_hide_the_runs_inside(tmp_path: Path) -> None:
    claim_lake(str(tmp_path), lake_identity(SMALL, "clusterpulse"))
    run = new_run_dir(tmp_path, "small")
    (run / "card").mkdir()
    assert resolve_lake(str(tmp_path)).path == str(run)


def test_querying_an_empty_lake_answers_from_empty_views_and_says_so_in_one_line(tmp_path: Path) -> None:
    result = run_cli("query", "SELECT count(*) AS n FROM alerts", "--data", str(tmp_path), "--format", "csv")
    assert result.returncode == 0 and result.stdout.split() == ["n", "0"]
    assert result.stderr.count("\n") == 1 and "no Parquet data in this lake yet" in result.stderr


def test_querying_a_lake_that_does_not_exist_is_a_one_line_error(tmp_path: Path) -> None:
    result = run_cli("query", "SELECT count(*) FROM alerts", "--data", str(tmp_path / "nowhere"))
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert f"no lake at {tmp_path / 'nowhere'} (no such directory)" in result.stderr


def test_a_worker_lake_is_not_written_beside_the_runs_of_clusterpulse_run(tmp_path: Path) -> None:
    """`query --data data` reads the newest run; a worker's lake written into `data` itself would
    be read instead of every later run (seen following the README's collector quick start)."""
    run = new_run_dir(str(tmp_path), "default")
    assert claim_lake(str(run), lake_identity(BIG, "clusterpulse")) is None  # the run's own worker
    with pytest.raises(LakeError, match=r"holds 1 run directory .*its own --data \(e.g. .*worker\)"):
        claim_lake(str(tmp_path), lake_identity(BIG, "clusterpulse"))
    assert not (tmp_path / "_lake.json").exists()
    assert claim_lake(str(tmp_path / "worker"), lake_identity(BIG, "clusterpulse")) is None


def test_a_lake_of_the_fabric_alone_answers_its_queries_without_calling_itself_empty(tmp_path: Path) -> None:
    assert run_cli("topology", "export", "--data", str(tmp_path)).returncode == 0  # the built-in cluster
    reach = run_cli("query", "switch_reach", "--data", str(tmp_path), "--param", "switch=leaf017", "--format", "csv")
    assert reach.returncode == 0 and "node" in reach.stdout and "no Parquet data" not in reach.stderr
    alerts = run_cli("query", "SELECT count(*) AS n FROM alerts", "--data", str(tmp_path))
    assert "no Parquet data in this lake yet" in alerts.stderr  # no telemetry: that one is empty
