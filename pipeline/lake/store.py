"""Where the lake's files live: a local directory or an object store (`s3://bucket/prefix`, or any
URI pyarrow's filesystems take), behind one small interface, so that the sink, the manifest, the
notify and action ledgers, compaction, rollups, retention, queries and the live page work on either.

- A local file is written under a temporary name, fsync'd and renamed: no reader sees half a file.
- An object store has no rename and no append, but a PUT is atomic: a file is written in one PUT, and
  a JSON-lines record appended by a writer is a new object of its own (`<writer>+<ms>-<n>.jsonl`;
  readers read every `*.jsonl` of the folder, as they read one file per writer locally).
- DuckDB reads an object store through pyarrow's filesystem, registered with DuckDB as an fsspec
  filesystem (DuckDB's own `httpfs` extension is a download that not every machine can make).

An S3 URI takes pyarrow's options: ``s3://lake/prod?endpoint_override=minio:9000&scheme=http``
(MinIO, Ceph, moto), credentials and region from the usual AWS_* environment.
"""

from __future__ import annotations

import itertools
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import duckdb
import pyarrow.fs as pafs


def open_filesystem(location: str | Path) -> tuple[pafs.FileSystem, str]:
    """(filesystem, root path) for a local directory or a URI pyarrow understands
    (``s3://bucket/prefix?endpoint_override=http://minio:9000&region=us-east-1``, ``gs://``, ...)."""
    text = str(location)
    if "://" in text:
        fs, path = pafs.FileSystem.from_uri(text)
        return fs, path.rstrip("/")
    return pafs.LocalFileSystem(), str(Path(text).absolute())


def is_remote(location: str | Path) -> bool:
    return "://" in str(location)


@dataclass(frozen=True)
class StoredFile:
    path: str  # in the store's filesystem (no scheme)
    size: int
    mtime_ns: int

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]


class LakeStore:
    """The files of one lake: paths are relative to its root unless a method says otherwise."""

    _sequence = itertools.count()

    def __init__(self, location: str | Path) -> None:
        self.location = str(location)
        self.fs, self.root = open_filesystem(location)
        self.local = isinstance(self.fs, pafs.LocalFileSystem)
        self.scheme = "" if self.local else urlsplit(self.location).scheme
        if not self.root:
            raise ValueError(f"{self.location} names no bucket (s3://BUCKET/PREFIX)")

    def __repr__(self) -> str:
        return f"LakeStore({self.uri!r})"

    @property
    def uri(self) -> str:
        """The root as DuckDB (with `duckdb()`) and people read it: a path, or `s3://bucket/prefix`."""
        return self.url(self.root)

    def path(self, *parts: str) -> str:
        """A path in the filesystem from parts relative to the root."""
        return "/".join([self.root, *(p.strip("/") for p in parts if p)])

    def url(self, path: str) -> str:
        """A filesystem path as DuckDB reads it through `duckdb()`."""
        return path if self.local else f"{self.scheme}://{path}"

    def check(self) -> None:
        """Raise OSError with one line if an object store cannot be reached (a local directory
        needs nothing: it is made when first written)."""
        if self.local:
            return
        try:
            self.fs.get_file_info(self.root)
        except OSError as exc:
            why = str(exc).split("; Details:")[0].splitlines()[0]
            raise OSError(f"cannot reach the lake at {self.uri}: {why}") from None

    # ---- reading -------------------------------------------------------------------------------
    def files(self, relative: str = "", suffix: str = "", recursive: bool = True) -> list[StoredFile]:
        """Files under a folder (none if it does not exist), hidden ones (`.name`) left out, by path."""
        try:
            infos = self.fs.get_file_info(
                pafs.FileSelector(self.path(relative), recursive=recursive, allow_not_found=True)
            )
        except (OSError, FileNotFoundError):
            return []
        found = [
            StoredFile(i.path, i.size or 0, i.mtime_ns or 0)
            for i in infos
            if i.type == pafs.FileType.File and i.path.endswith(suffix) and not i.base_name.startswith(".")
        ]
        return sorted(found, key=lambda f: f.path)

    def folders(self, relative: str) -> list[str]:
        """The folders directly under `relative` (relative paths), by name. An object store has a
        folder where some object's key has it as a prefix."""
        try:
            infos = self.fs.get_file_info(pafs.FileSelector(self.path(relative), allow_not_found=True))
        except (OSError, FileNotFoundError):
            return []
        return sorted(f"{relative}/{i.base_name}" for i in infos if i.type == pafs.FileType.Directory)

    def is_dir(self, relative: str = "") -> bool:
        try:
            return self.fs.get_file_info(self.path(relative)).type == pafs.FileType.Directory
        except OSError:
            return False

    def exists(self, relative: str) -> bool:
        try:
            return self.fs.get_file_info(self.path(relative)).type == pafs.FileType.File
        except OSError:
            return False

    def read_bytes(self, path: str) -> bytes:
        """A file's bytes by its filesystem path (`files()` gives them); raises OSError."""
        with self.fs.open_input_stream(path) as stream:
            return stream.read()

    def read_text(self, relative: str) -> str | None:
        """A file's text by its relative path; None if there is no such file."""
        if not self.exists(relative):
            return None
        return self.read_bytes(self.path(relative)).decode("utf-8", errors="replace")

    def read_lines(self, folder: str) -> list[str]:
        """Every line of every `*.jsonl` file of a folder (one file per writer, or per append)."""
        lines = []
        for f in self.files(folder, ".jsonl", recursive=False):
            try:
                lines += self.read_bytes(f.path).decode("utf-8", errors="replace").splitlines()
            except OSError:
                continue  # gone between listing and reading (a retention run), or unreadable
        return lines

    # ---- writing -------------------------------------------------------------------------------
    def write_bytes(self, relative: str, data: bytes) -> None:
        """The whole file at once, atomically (a local temporary name renamed; one PUT)."""
        if not self.local:
            with self.fs.open_output_stream(self.path(relative)) as out:
                out.write(data)
            return
        final = Path(self.path(relative))
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")  # workers starting at once do not collide
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError:
            tmp.unlink(missing_ok=True)
            raise
        os.replace(tmp, final)

    def append_lines(self, folder: str, writer: str, text: str) -> None:
        """JSON lines of one writer: appended to `<folder>/<writer>.jsonl` and fsync'd locally; a new
        object `<folder>/<writer>+<ms>-<n>.jsonl` on an object store. Raises OSError."""
        if not self.local:
            name = f"{writer}+{time.time_ns() // 1_000_000:013d}-{next(self._sequence):06d}.jsonl"
            self.write_bytes(f"{folder}/{name}", text.encode())
            return
        path = Path(self.path(folder, f"{writer}.jsonl"))
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())

    def staging_file(self, relative: str) -> Path:
        """A local path to write a file destined for `relative` (finished with `publish`): beside it
        for a local lake, in the system's temporary directory for an object store."""
        if self.local:
            final = Path(self.path(relative))
            final.parent.mkdir(parents=True, exist_ok=True)
            return final.with_name(f".{final.name}.tmp")
        fd, name = tempfile.mkstemp(prefix="clusterpulse-lake-", suffix=".parquet")
        os.close(fd)
        return Path(name)

    def publish(self, staged: Path, relative: str) -> int:
        """Move a finished staging file into place (fsync and rename; one upload); returns its size."""
        try:
            if self.local:
                with open(staged, "rb") as fh:
                    os.fsync(fh.fileno())
                final = Path(self.path(relative))
                os.replace(staged, final)
                return final.stat().st_size
            size = staged.stat().st_size
            pafs.copy_files(str(staged), self.path(relative), destination_filesystem=self.fs)
            return size
        finally:
            staged.unlink(missing_ok=True)

    def delete(self, path: str) -> None:
        """A file by its filesystem path; one already gone is not an error."""
        try:
            self.fs.delete_file(path)
        except FileNotFoundError:
            pass

    def remove_empty_folders(self, relative: str, levels: int) -> None:
        """The folder and up to `levels - 1` of its parents, each only if empty (object stores have
        no folders to remove)."""
        if not self.local:
            return
        folder = Path(self.path(relative))
        for _ in range(levels):
            try:
                folder.rmdir()  # only when empty: whatever else is there stays
            except OSError:
                return
            folder = folder.parent

    # ---- DuckDB --------------------------------------------------------------------------------
    def duckdb(self) -> duckdb.DuckDBPyConnection:
        """An in-memory DuckDB that reads this lake's `url()`s and spills to the system's temporary
        directory (not to `.tmp` in the working directory, DuckDB's default)."""
        con = duckdb.connect()
        spill = Path(tempfile.gettempdir()) / f"clusterpulse-duckdb-{os.getuid()}"
        con.execute("set temp_directory = ?", [str(spill)])
        if not self.local:
            con.register_filesystem(_fsspec(self.fs, self.scheme))
        return con


def _fsspec(fs: pafs.FileSystem, scheme: str):  # noqa: ANN202 - fsspec is imported only for object stores
    """pyarrow's filesystem as an fsspec one answering `<scheme>://` paths (what DuckDB registers)."""
    from fsspec.implementations.arrow import ArrowFSWrapper  # noqa: PLC0415

    class LakeFileSystem(ArrowFSWrapper):
        protocol = (scheme,)

    return LakeFileSystem(fs)
