"""The request cache: no request is ever sent to an engine twice (segments, judge verdicts, scores).

Content-addressed: the key is a hash of (model id, prompt template, sampling parameters, source
text), so the same segment in another conversation, another run or after a restart is a lookup,
and changing any of those four makes a fresh key instead of a wrong hit. Every engine output is
kept, including ones QA rejects (QA is deterministic, so they'd be rejected again). An entry is a
`Generation` (text, finish_reason, token counts): a translated segment, a judge's verdict, or a
reply score (`hala.engines.scored`, its number as the text). The tables keep the names the first
hala gave them (`segments`, files `segments.*.sqlite`), so caches written before still read.

Storage: one SQLite file per writer, so that no two processes ever write one file. Shards, local
workers and Slurm tasks on several nodes may all point at one `cache_path` at once, on local disk
or on a network file system (where SQLite's WAL mode does not work and locking is unreliable):

- `cache_path` (e.g. `cache/segments.sqlite`) names the cache. Each process that writes makes its
  own member file beside it, `segments.<host>.<pid>.<n>.sqlite`, on its first write, with a plain
  rollback journal: it is the only process that ever writes it (`hala.engines.cache_files` names
  the members and folds them).
- A lookup reads the writer's own file first, then every other member read-only (re-listed at each
  lookup, so a shard sees what the others wrote meanwhile). A member that cannot be read (locked,
  damaged, half-copied, gone) is a miss with a logged warning: the cache is an optimisation, and
  a miss costs one re-request. An entry a writer wrote to its own file is never lost: only `fold`
  removes a member, once the member's writer has closed it (or provably died on this machine) and
  its entries are safely in a merged file.
  A writer killed mid-commit leaves a journal that a read-only reader cannot roll back; once that
  writer is provably dead (on this machine), a reader rolls it back and reads the file.
- A problem with the file this process writes is an error (`CacheError`) naming the file.
- `fold` (run by `--merge-shards` of translate and judge and the local and ray executors, and by a writer
  closing a cache of more than `FOLD_AT` files) copies the finished members into one new member
  and removes them, so files do not pile up over runs and resumes.
- A single-file cache from an older hala (`cache_path` itself) is read as one more member and
  folded like the others.

Durability: the own member is written with `synchronous=OFF`, so a commit hands its pages to the
operating system without waiting for the disk. A killed process loses nothing (the kernel still
writes them); only a machine crash or power loss may leave the member damaged, and a damaged
member reads as misses, as above (its segments are requested again). With fsync, a commit of a
batch into a large member rewrote every touched page twice (journal, then file) and waited for
both: 3M entries in batches of 8,192 took 34 s, without it 12 s. `fold` keeps SQLite's default,
because it deletes the members it copied.

Threads: a `RequestCache` may be shared by the threads of one process (translate works several
units at once, `hala.data.in_order`). Each method holds the cache's lock while it uses the SQLite
connections, opened shareable (`check_same_thread=False`); the process still has
one own member, written by one connection: one writer per file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import threading
import time
from json.encoder import encode_basestring
from pathlib import Path

from hala.engines.base import Generation
from hala.engines.cache_files import (
    ADVICE,
    COLUMNS,
    SCHEMA,
    CacheError,
    count_entries,
    fold,
    machine_id,
    members,
    new_member,
    read_only,
    recover,
    warn_unreadable,
)

__all__ = ["CacheError", "RequestCache", "fold", "members", "request_key", "request_keys"]
log = logging.getLogger("hala.engines")

WRITE_TIMEOUT_S = 120.0  # readers hold their shared lock only for one query
FOLD_AT = 16  # members; past this a closing writer folds them, so single runs and resumes don't pile up files


def model_key(model_id: str, sha256: str | None = None) -> str:
    """The model part of a key: its id, and the content hash of a local model folder when known, so a
    model retrained at the same path makes fresh keys instead of stale hits."""
    return f"{model_id}@{sha256[:16]}" if sha256 else model_id


def request_key(model_id: str, template: str, sampling: dict, text) -> str:
    payload = json.dumps([model_id, template, sampling, text], ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def request_keys(model_id: str, template: str, sampling: dict, texts: list) -> list[str]:
    """`request_key` of each text, the part they share encoded once (a unit asks tens of thousands):
    the same JSON, `[model_id, template, sampling, text]`, so the same keys."""
    head = json.dumps([model_id, template, sampling], ensure_ascii=False, sort_keys=True)[:-1] + ", "
    return [
        hashlib.sha256(f"{head}{encode_basestring(t)}]".encode("utf-8")).hexdigest()
        if isinstance(t, str) else request_key(model_id, template, sampling, t)
        for t in texts
    ]  # fmt: skip


def _query(db: sqlite3.Connection, keys: list[str], found: dict, chunk: int) -> None:
    wanted = [k for k in keys if k not in found]
    for i in range(0, len(wanted), chunk):
        batch = wanted[i : i + chunk]
        marks = ",".join("?" * len(batch))
        for key, *values in db.execute(f"SELECT {COLUMNS} FROM segments WHERE key IN ({marks})", batch):
            found[key] = Generation(*values)


class RequestCache:
    """The cache named `path`, as one writer: writes go to its own member, reads see all members."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            message = f"{self.path.parent}: cannot create the cache folder ({exc}); set cache_path to a writable place"
            raise CacheError(message) from None
        self.own_path = new_member(self.path)
        self.db: sqlite3.Connection | None = None  # made on the first write, so a fully cached run leaves no file
        self.others: dict[Path, sqlite3.Connection] = {}
        self.warned: set = set()
        self.here = machine_id()
        self.lock = threading.Lock()  # one thread at a time in the connections (see the module docstring)

    def _fail(self, exc: Exception) -> CacheError:
        problem = f"{type(exc).__name__}: {exc}"
        return CacheError(f"{self.own_path}: the request cache this run writes is unusable ({problem}); {ADVICE}")

    def _own(self) -> sqlite3.Connection:
        if self.db is None:
            tmp = self.own_path.with_name(f".{self.own_path.name}.tmp")
            try:  # initialised under a temporary name, so no reader ever sees a member without its tables
                with sqlite3.connect(tmp) as db:
                    db.executescript(SCHEMA)
                    db.execute("INSERT INTO writer VALUES (?, ?, ?, NULL)", (self.here, os.getpid(), time.time()))
                db.close()
                os.replace(tmp, self.own_path)
                self.db = sqlite3.connect(self.own_path, timeout=WRITE_TIMEOUT_S, check_same_thread=False)
                self.db.execute("PRAGMA synchronous=OFF")  # a commit is not fsynced: see "Durability" above
            except (sqlite3.Error, OSError) as exc:
                raise self._fail(exc) from None
        return self.db

    def _refresh(self) -> None:
        """Open the members that appeared since the last lookup; forget the ones folded away."""
        current = [p for p in members(self.path) if p != self.own_path]
        for gone in set(self.others) - set(current):
            self.others.pop(gone).close()
        for path in current:
            if path not in self.others:
                try:
                    self.others[path] = read_only(path)
                except sqlite3.Error as exc:
                    if path.exists():
                        warn_unreadable(path, exc, self.warned)

    def get_many(self, keys: list[str], chunk: int = 500) -> dict[str, Generation]:
        with self.lock:
            return self._get_many(keys, chunk)

    def _get_many(self, keys: list[str], chunk: int) -> dict[str, Generation]:
        found: dict[str, Generation] = {}
        if self.db is not None:
            try:
                _query(self.db, keys, found, chunk)
            except sqlite3.Error as exc:
                raise self._fail(exc) from None
        self._refresh()
        wanted = len(set(keys))
        for path, db in list(self.others.items()):
            if len(found) == wanted:
                break
            try:
                _query(db, keys, found, chunk)
            except sqlite3.Error as exc:  # dropped, so the next lookup opens it afresh
                self.others.pop(path).close()
                if not recover(path, self.here):
                    if path.exists():
                        warn_unreadable(path, exc, self.warned)
                    continue
                try:
                    self.others[path] = read_only(path)
                    _query(self.others[path], keys, found, chunk)
                except sqlite3.Error as again:
                    self.others.pop(path).close()
                    warn_unreadable(path, again, self.warned)
        return found

    def put_many(self, entries: dict[str, Generation]) -> None:
        if not entries:
            return
        rows = [(k, c.text, c.finish_reason, c.prompt_tokens, c.completion_tokens) for k, c in entries.items()]
        with self.lock:
            db = self._own()
            try:
                with db:
                    db.executemany("INSERT OR IGNORE INTO segments VALUES (?, ?, ?, ?, ?)", rows)
            except sqlite3.Error as exc:
                raise self._fail(exc) from None

    def __len__(self) -> int:
        """Distinct keys over all readable members (reads every key: for tests and tools)."""
        return count_entries(self.path)

    def close(self) -> None:
        """Mark the own member finished (so `fold` may take it), close every file, fold if many."""
        with self.lock:
            self._close()

    def _close(self) -> None:
        for db in self.others.values():
            db.close()
        self.others.clear()
        if self.db is None:
            return
        try:
            with self.db:
                self.db.execute("UPDATE writer SET closed = ?", (time.time(),))
        except sqlite3.Error as exc:
            raise self._fail(exc) from None
        finally:
            self.db.close()
            self.db = None
        if len(members(self.path)) > FOLD_AT:
            try:
                fold(self.path)
            except CacheError as exc:  # only housekeeping: every entry is still in its file
                log.warning("%s", exc)
