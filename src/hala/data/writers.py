"""Atomic, sharded writers.

A file is either complete or absent: we write to a temporary name in the same folder, fsync, then
rename over the final name (atomic on POSIX). A killed run therefore leaves no half-written shard,
and "the output file exists" is a trustworthy completion marker for a unit of work.

Parquet has a fixed schema, so a record's free-form `meta` is stored there as JSON text; the
readers turn it back into a dict.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Iterable, Iterator

from pydantic import BaseModel

WRITE_FORMATS = ("jsonl", "parquet")
_JSON = json.JSONEncoder(ensure_ascii=False)  # json.dumps(row, ensure_ascii=False), without an encoder per row


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success fsync it and rename it to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual permissions
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp_path, path)
        fsync_dir(path.parent)
    finally:
        tmp_path.unlink(missing_ok=True)


@contextmanager
def atomic_folder(path: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside `path` (which must be absent or empty); on success give it the
    usual permissions and rename it to `path`, on any failure remove it. A model folder is thus either
    complete or absent."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        mask = _umask()  # mkdtemp makes 0700; a model folder is read by whoever serves it
        os.chmod(tmp, 0o777 & ~mask)
        for child in tmp.iterdir():
            os.chmod(child, 0o666 & ~mask)
        if path.exists():
            path.rmdir()
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_text(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def _as_dict(row: BaseModel | dict) -> dict:
    return row.model_dump() if isinstance(row, BaseModel) else dict(row)


def write_jsonl(path: str | Path, rows: Iterable[BaseModel | dict]) -> int:
    """Write rows as JSON lines (UTF-8, Arabic unescaped), atomically. Returns the row count."""
    n = 0
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(_JSON.encode(_as_dict(row)) + "\n")
            n += 1
    return n


def write_parquet(path: str | Path, rows: Iterable[BaseModel | dict]) -> int:
    """Write rows as one Parquet file, atomically; dict-valued `meta` becomes JSON text."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    records = []
    for row in rows:
        data = _as_dict(row)
        if isinstance(data.get("meta"), dict):
            data["meta"] = json.dumps(data["meta"], ensure_ascii=False)
        records.append(data)
    table = pa.Table.from_pylist(records)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return len(records)


WRITERS = {"jsonl": write_jsonl, "parquet": write_parquet}


def write_rows(path: str | Path, rows: Iterable[BaseModel | dict], fmt: str | None = None) -> int:
    """Write with the writer for `fmt` (default: from the file suffix)."""
    fmt = fmt or Path(path).suffix.lstrip(".")
    if fmt not in WRITERS:
        raise ValueError(f"unknown output format {fmt!r}; valid: {', '.join(WRITERS)}")
    return WRITERS[fmt](path, rows)


class ShardedWriter:
    """Writes `prefix-00000.jsonl`, `prefix-00001.jsonl`, ... of at most `rows_per_shard` rows.

    Rows are buffered up to one shard, so memory is bounded by the shard size, and each shard
    lands atomically. `paths` lists the finished shards.
    """

    def __init__(self, folder: str | Path, prefix: str = "part", fmt: str = "jsonl", rows_per_shard: int = 100_000):
        if fmt not in WRITERS:
            raise ValueError(f"unknown output format {fmt!r}; valid: {', '.join(WRITERS)}")
        self.folder = Path(folder)
        self.prefix = prefix
        self.fmt = fmt
        self.rows_per_shard = rows_per_shard
        self.paths: list[Path] = []
        self.rows = 0
        self._buffer: list = []

    def write(self, row: BaseModel | dict) -> None:
        self._buffer.append(row)
        if len(self._buffer) >= self.rows_per_shard:
            self._flush()

    def _flush(self) -> None:
        if not self._buffer:
            return
        path = self.folder / f"{self.prefix}-{len(self.paths):05d}.{self.fmt}"
        self.rows += write_rows(path, self._buffer, self.fmt)
        self.paths.append(path)
        self._buffer = []

    def close(self) -> list[Path]:
        self._flush()
        return self.paths

    def __enter__(self) -> ShardedWriter:
        return self

    def __exit__(self, exc_type, *_) -> None:
        if exc_type is None:
            self.close()


class ShardedLines:
    """`ShardedWriter` for rows that are already JSON lines written by hala (a merge of its own unit
    files): each line goes as it is into the open shard's temporary file, so nothing is decoded or
    encoded again and memory holds one line. Shards are cut and named as `ShardedWriter` cuts them,
    each lands atomically when full, and a failed tail never lands."""

    def __init__(self, folder: str | Path, prefix: str = "part", rows_per_shard: int = 100_000):
        self.folder, self.prefix, self.rows_per_shard = Path(folder), prefix, rows_per_shard
        self.paths: list[Path] = []
        self.rows = 0
        self._open: ExitStack | None = None  # the shard being written: its temporary file and handle
        self._handle = None
        self._count = 0

    def _path(self) -> Path:
        return self.folder / f"{self.prefix}-{len(self.paths):05d}.jsonl"

    def write(self, line: bytes) -> None:
        """One row: a JSON line, its newline included."""
        if self._open is None:
            self._open = ExitStack()
            self._handle = self._open.enter_context(self._open.enter_context(atomic_path(self._path())).open("wb"))
        self._handle.write(line)
        self._count += 1
        if self._count == self.rows_per_shard:
            self._land()

    def _land(self) -> None:
        path = self._path()
        self._open.close()  # the handle first, then fsync and rename (atomic_path)
        self.paths.append(path)
        self.rows += self._count
        self._open, self._handle, self._count = None, None, 0

    def close(self) -> list[Path]:
        if self._open is not None:
            self._land()
        return self.paths

    def __enter__(self) -> ShardedLines:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        elif self._open is not None:  # the tail's temporary file is removed
            self._open.__exit__(exc_type, exc, tb)
