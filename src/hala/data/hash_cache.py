"""A file's sha256, remembered by what `stat` says of the file, as git's index remembers it.

Hashing is how a rerun knows its inputs are the ones a finished run used, and it reads every byte:
the paper's 111B teacher is 222 GB, about two minutes of sha256 each time a stage that reads it
starts, and a merge hashes both models (5 GB for a 1.2B pair) before it can say it is current.

A hash is stored with the file's path, device, inode, size, mtime and ctime (nanoseconds). While
all of them stay the same the file has not been written since (a write moves mtime; setting mtime
back moves ctime), so the stored hash is used. Two rules keep it exact:
- **Racy files are not stored.** A file whose mtime is under `RACY_S` old when it is hashed could
  be written again within the same clock tick without its mtime moving (git's "racy" case).
- **Small files are not stored** (`MIN_BYTES`): hashing them is cheaper than the store's write.
- **What hala writes itself is remembered in this process only** (`remember`): a shard writer
  hashes its bytes as they go out, so the manifest that lists the file needs no second read.

The same store keeps verdicts that are pure functions of content (`known`/`note`): a checkpoint
whose config.json and tensor headers passed `hala.checkpoint.structure` under one transformers
version passes again, without the seconds of transformers imports the check costs.

The store is one SQLite file, `HALA_HASH_CACHE` (default `~/.cache/hala/sha256.sqlite`); `off`
turns it off. It is a cache: any error reading or writing it (a read-only home, a locked file on a
network file system) means the file is simply hashed.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from contextlib import closing
from pathlib import Path

RACY_S = 2.0
MIN_BYTES = 1 << 20  # below this, sha256 (~0.5 ms per MiB) costs less than a write to the store
_memory: dict[tuple, str] = {}
_lock = threading.Lock()


def store_path() -> Path | None:
    value = os.environ.get("HALA_HASH_CACHE", "")
    if value.lower() in ("off", "0", "false", "no"):
        return None
    return Path(value) if value else Path.home() / ".cache" / "hala" / "sha256.sqlite"


def _key(path: Path, st: os.stat_result) -> tuple:
    return (str(path.resolve()), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


_SCHEMA = (
    # one row per path: a file's new state replaces its old one
    "CREATE TABLE IF NOT EXISTS sha256 (path TEXT PRIMARY KEY, dev INTEGER, ino INTEGER, size INTEGER, "
    "mtime_ns INTEGER, ctime_ns INTEGER, sha256 TEXT)",
    "CREATE TABLE IF NOT EXISTS verdicts (key TEXT PRIMARY KEY)",
)


def _query(sql: str, params: tuple, write: bool = False) -> list[tuple]:
    """Run `sql` on the store: its rows, or [] when the store is off, absent (reading) or unusable."""
    target = store_path()
    if target is None or not (write or target.exists()):
        return []
    try:
        if write:
            target.parent.mkdir(parents=True, exist_ok=True)
        with closing(sqlite3.connect(target, timeout=2.0)) as db, db:  # closed; committed on success
            if write:
                for statement in _SCHEMA:
                    db.execute(statement)
            return db.execute(sql, params).fetchall()
    except (sqlite3.Error, OSError):  # a cache: the caller hashes (or checks) instead
        return []


def lookup(path: Path, st: os.stat_result) -> str | None:
    if st.st_size < MIN_BYTES:
        return None
    key = _key(path, st)
    with _lock:
        if key in _memory:
            return _memory[key]
    rows = _query(
        "SELECT sha256 FROM sha256 WHERE path=? AND dev=? AND ino=? AND size=? AND mtime_ns=? AND ctime_ns=?", key
    )
    return rows[0][0] if rows else None


def store(path: Path, st: os.stat_result, sha256: str) -> None:
    """Keep `sha256` for the file as `st` saw it before it was read; not a file changed just now."""
    if st.st_size < MIN_BYTES or time.time_ns() - st.st_mtime_ns < RACY_S * 1e9:
        return
    _query("INSERT OR REPLACE INTO sha256 VALUES (?, ?, ?, ?, ?, ?, ?)", (*_key(path, st), sha256), write=True)


def remember(path: Path, sha256: str) -> None:
    """The hash of a file this process has just written and closed, for this process only."""
    with _lock:
        _memory[_key(path, path.stat())] = sha256


def known(key: str) -> bool:
    """Was `note(key)` called before (in any process using this store)?"""
    return bool(_query("SELECT 1 FROM verdicts WHERE key=?", (key,)))


def note(key: str) -> None:
    """Keep a verdict: `key` must be a hash of everything the verdict depends on."""
    _query("INSERT OR IGNORE INTO verdicts VALUES (?)", (key,), write=True)
