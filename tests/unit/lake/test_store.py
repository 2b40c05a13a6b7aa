"""The lake's file interface on a local directory (the object-store side runs against a local S3
server in tests/reliability/test_s3_lake.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.lake.store import LakeStore


def test_files_are_written_whole_and_hidden_names_are_not_listed(tmp_path: Path) -> None:
    store = LakeStore(tmp_path)
    store.write_bytes("card/date=2026-12-02/hour=07/a.parquet", b"abc")
    (tmp_path / "card/date=2026-12-02/hour=07/.b.parquet.tmp").write_bytes(b"half")
    assert [f.name for f in store.files("card")] == ["a.parquet"]
    assert store.files("card")[0].size == 3
    assert store.folders("card") == ["card/date=2026-12-02"]
    assert store.read_text("card/date=2026-12-02/hour=07/a.parquet") == "abc"
    assert store.read_text("no/such/file") is None
    assert store.files("no_such_dataset") == []


def test_json_lines_of_several_writers_are_read_together(tmp_path: Path) -> None:
    store = LakeStore(tmp_path)
    store.append_lines("_notify", "w1", '{"a": 1}\n')
    store.append_lines("_notify", "w1", '{"a": 2}\n')
    store.append_lines("_notify", "w2", '{"a": 3}\n')
    assert sorted(store.read_lines("_notify")) == ['{"a": 1}', '{"a": 2}', '{"a": 3}']
    assert [f.name for f in store.files("_notify")] == ["w1.jsonl", "w2.jsonl"]  # one file per writer


def test_a_staged_file_is_published_in_place_and_empty_folders_go(tmp_path: Path) -> None:
    store = LakeStore(tmp_path)
    staged = store.staging_file("port/date=2026-12-02/hour=08/x.parquet")
    staged.write_bytes(b"12345")
    assert store.publish(staged, "port/date=2026-12-02/hour=08/x.parquet") == 5
    assert not staged.exists()
    store.delete(store.files("port")[0].path)
    store.delete(str(tmp_path / "port/gone.parquet"))  # already gone: not an error
    store.remove_empty_folders("port/date=2026-12-02/hour=08", levels=2)
    assert not (tmp_path / "port/date=2026-12-02").exists() and (tmp_path / "port").is_dir()


def test_an_object_store_uri_must_name_a_bucket() -> None:
    with pytest.raises(ValueError, match="names no bucket"):
        LakeStore("s3://")


def test_two_processes_writing_one_small_file_do_not_collide(tmp_path: Path) -> None:
    """Two workers starting at once both record the manifest: each writes its own temporary file."""
    code = (
        "import sys; from pipeline.lake.store import LakeStore\n"
        "for _ in range(300): LakeStore(sys.argv[1]).write_bytes('_lake.json', b'x')"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)]) for _ in range(2)]
    assert [p.wait(timeout=60) for p in procs] == [0, 0]
    assert (tmp_path / "_lake.json").read_bytes() == b"x"
    assert [f.name for f in tmp_path.iterdir()] == ["_lake.json"]  # no temporary file left
