"""The request cache: no request is ever sent to an engine twice (segments, judge verdicts, ...).

Content-addressed: the key is a hash of (model id, prompt template, sampling parameters, source
text), so the same segment in another conversation, another run or after a restart is a lookup,
and changing any of those four makes a fresh key instead of a wrong hit. Every engine output is
kept, including ones QA rejects (QA is deterministic, so they'd be rejected again).

Storage: one SQLite file per writer, so that no two processes ever write one file. Shards, local
workers and Slurm tasks on several nodes may all point at one `cache_path` at once, on local disk
or on a network file system (where SQLite's WAL mode does not work and locking is unreliable):

- `cache_path` (e.g. `cache/segments.sqlite`) names the cache. Each process that writes makes its
  own member file beside it, `segments.<host>.<pid>.<n>.sqlite` (see `members`), on its first
  write, with a plain rollback journal: it is the only process that ever writes it.
- A lookup reads the writer's own file first, then every other member read-only (re-listed at each
  lookup, so a shard sees what the others wrote meanwhile). A member that cannot be read (locked,
  damaged, half-copied, gone) is a miss with a logged warning: the cache is an optimisation, and
  a miss costs one re-request. An entry a writer wrote to its own file is never lost: only `fold`
  removes a member, once the member's writer has closed it (or provably died on this machine) and
  its entries are safely in a merged file.
- A problem with the file this process writes is an error (`CacheError`) naming the file.
- `fold` (run by `hala translate --merge-shards` and the local and ray executors, and by a writer
  closing a cache of more than `FOLD_AT` files) copies the finished members into one new member
  and removes them, so files do not pile up over runs and resumes.
- A single-file cache from an older hala (`cache_path` itself) is read as one more member and
  folded like the others.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import re
import socket
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("hala.engines")

SCHEMA = """
CREATE TABLE IF NOT EXISTS segments (
    key TEXT PRIMARY KEY,
    text TEXT NOT NULL,
    finish_reason TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS writer (machine TEXT NOT NULL, pid INTEGER NOT NULL, opened REAL NOT NULL, closed REAL);
"""
COLUMNS = "key, text, finish_reason, prompt_tokens, completion_tokens"
READ_TIMEOUT_S = 10.0  # waiting longer for another writer's lock than this is slower than a miss
WRITE_TIMEOUT_S = 120.0  # readers hold their shared lock only for one query
FOLD_AT = 16  # members; past this a closing writer folds them, so single runs and resumes don't pile up files
ADVICE = "it is only a cache: delete it and rerun (its entries will be requested again)"
_serial = itertools.count()


class CacheError(ValueError):
    """The cache file this process writes cannot be used: the run stops, naming the file."""


@dataclass(frozen=True)
class Cached:
    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int


def request_key(model_id: str, template: str, sampling: dict, text) -> str:
    payload = json.dumps([model_id, template, sampling, text], ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def machine_id() -> str:
    """Which processes' pids this process can check: one kernel boot and one pid namespace."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        return f"{socket.gethostname()}:{boot}:{os.stat('/proc/self/ns/pid').st_ino}"
    except OSError:  # not Linux: no pid is ever judged dead, so nothing is removed early
        return f"{socket.gethostname()}:unknown:{os.getpid()}"


def _stem_suffix(path: Path) -> tuple[str, str]:
    return (path.stem, path.suffix) if path.suffix else (path.name, ".sqlite")


def _member_re(path: Path) -> re.Pattern:
    stem, suffix = _stem_suffix(path)
    return re.compile(rf"^{re.escape(stem)}\.[A-Za-z0-9_-]+\.\d+\.\d+{re.escape(suffix)}$")


def new_member(path: Path) -> Path:
    """A member name no other process uses: this host, this pid, a counter within the process."""
    host = re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname()) or "host"
    stem, suffix = _stem_suffix(path)
    return path.with_name(f"{stem}.{host}.{os.getpid()}.{next(_serial)}{suffix}")


def members(path: Path) -> list[Path]:
    """The files that make up the cache named `path`: an older single file, then the writers'."""
    pattern = _member_re(path)
    try:
        names = sorted(p for p in path.parent.iterdir() if pattern.match(p.name))
    except FileNotFoundError:
        return []
    return ([path] if path.is_file() else []) + names


def _read_only(path: Path, timeout: float = READ_TIMEOUT_S) -> sqlite3.Connection:
    return sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True, timeout=timeout)


def _warn_unreadable(path: Path, exc: Exception, seen: set | None = None) -> None:
    if seen is not None:  # once per file and error: a lookup per batch would repeat it all run long
        if (path, str(exc)) in seen:
            return
        seen.add((path, str(exc)))
    log.warning("%s: cannot read this cache file (%s: %s); its entries count as misses. "
                "If no run is writing it and this repeats, %s", path, type(exc).__name__, exc, ADVICE)  # fmt: skip


def _query(db: sqlite3.Connection, keys: list[str], found: dict, chunk: int) -> None:
    wanted = [k for k in keys if k not in found]
    for i in range(0, len(wanted), chunk):
        batch = wanted[i : i + chunk]
        marks = ",".join("?" * len(batch))
        for key, *values in db.execute(f"SELECT {COLUMNS} FROM segments WHERE key IN ({marks})", batch):
            found[key] = Cached(*values)


class SegmentCache:
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

    def _fail(self, exc: Exception) -> CacheError:
        problem = f"{type(exc).__name__}: {exc}"
        return CacheError(f"{self.own_path}: the request cache this run writes is unusable ({problem}); {ADVICE}")

    def _own(self) -> sqlite3.Connection:
        if self.db is None:
            tmp = self.own_path.with_name(f".{self.own_path.name}.tmp")
            try:  # initialised under a temporary name, so no reader ever sees a member without its tables
                with sqlite3.connect(tmp) as db:
                    db.executescript(SCHEMA)
                    db.execute("INSERT INTO writer VALUES (?, ?, ?, NULL)", (machine_id(), os.getpid(), time.time()))
                db.close()
                os.replace(tmp, self.own_path)
                self.db = sqlite3.connect(self.own_path, timeout=WRITE_TIMEOUT_S)
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
                    self.others[path] = _read_only(path)
                except sqlite3.Error as exc:
                    if path.exists():
                        _warn_unreadable(path, exc, self.warned)

    def get_many(self, keys: list[str], chunk: int = 500) -> dict[str, Cached]:
        found: dict[str, Cached] = {}
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
                if path.exists():
                    _warn_unreadable(path, exc, self.warned)
        return found

    def put_many(self, entries: dict[str, Cached]) -> None:
        if not entries:
            return
        rows = [(k, c.text, c.finish_reason, c.prompt_tokens, c.completion_tokens) for k, c in entries.items()]
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


def _union(db: sqlite3.Connection, sources: list[Path]) -> list[Path]:
    """Copy every entry of `sources` into `db` (a temporary file); the sources copied whole."""
    copied = []
    for path in sources:
        try:
            db.execute("ATTACH DATABASE ? AS src", (f"{path.absolute().as_uri()}?mode=ro",))
        except sqlite3.Error as exc:
            if path.exists():
                _warn_unreadable(path, exc)
            continue
        try:
            with db:
                db.execute(f"INSERT OR IGNORE INTO segments SELECT {COLUMNS} FROM src.segments")
            copied.append(path)
        except sqlite3.Error as exc:
            if path.exists():
                _warn_unreadable(path, exc)
        finally:
            db.execute("DETACH DATABASE src")
    return copied


def count_entries(path: str | Path) -> int:
    db = sqlite3.connect("", uri=True)  # a private temporary database
    db.executescript(SCHEMA)
    _union(db, members(Path(path)))
    count = db.execute("SELECT COUNT(*) FROM segments").fetchone()[0]
    db.close()
    return count


def _finished(path: Path, here: str) -> bool:
    """May `path` be folded away: its writer closed it, or died on this machine (or it predates members)?"""
    try:
        db = _read_only(path)
        try:
            tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if "writer" not in tables:
                return "segments" in tables  # a single-file cache from an older hala: nobody writes it now
            machine, pid, closed = db.execute("SELECT machine, pid, closed FROM writer").fetchone()
        finally:
            db.close()
    except (sqlite3.Error, TypeError) as exc:
        if path.exists():
            _warn_unreadable(path, exc)
        return False
    if closed is not None:
        return True
    if machine != here or pid == os.getpid():
        return False  # maybe still running, on another machine or in this process
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass
    return False


def fold(path: str | Path) -> int:
    """Fold the finished members of the cache `path` into one new member; returns how many it took.

    Safe beside running writers and other folds: the merged file is complete under its own name
    before any source is removed, and a member still being written is left alone.
    """
    path = Path(path)
    here = machine_id()
    sources = [p for p in members(path) if _finished(p, here)]
    if len(sources) < 2 and not (sources and sources[0] == path):
        return 0
    target = new_member(path)
    tmp = target.with_name(f".{target.name}.tmp")
    try:
        db = sqlite3.connect(tmp.absolute().as_uri(), uri=True)  # uri: so ATTACH reads the sources read-only
        try:
            db.executescript(SCHEMA)
            now = time.time()
            db.execute("INSERT INTO writer VALUES (?, ?, ?, ?)", (here, os.getpid(), now, now))
            db.commit()
            copied = _union(db, sources)
        finally:
            db.close()
        os.replace(tmp, target)
        _fsync_dir(path.parent)
    except (sqlite3.Error, OSError) as exc:  # nothing was removed: the cache is as it was
        tmp.unlink(missing_ok=True)
        message = f"{path}: could not fold the cache's files into {target.name} ({exc}); they stay as they are"
        raise CacheError(message) from None
    for source in copied:  # an older hala's file may have WAL companions
        for name in (source.name, *(source.name + end for end in ("-journal", "-wal", "-shm"))):
            source.with_name(name).unlink(missing_ok=True)
    return len(copied)


def _fsync_dir(folder: Path) -> None:
    """Make the merged file's name durable before its sources are removed."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
