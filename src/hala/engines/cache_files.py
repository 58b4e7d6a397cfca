"""The files of one request cache: which files make it up, which writers are done, folding them.

A cache named `cache/segments.sqlite` is that file, if an older hala wrote it, plus one member per
writer, `cache/segments.<host>.<pid>.<n>.sqlite` (`new_member`). A member records its writer
(machine, pid, closed) so that `fold` can tell a finished file, which it may copy and remove, from
one still being written, which it leaves alone. The machine is the host, kernel boot and pid
namespace: only there can a pid be checked, so a writer killed on another machine is never taken
for dead. See `hala.engines.cache` for why the cache is split this way.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import socket
import sqlite3
import time
from pathlib import Path

from hala.data.writers import fsync_dir

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
ADVICE = "it is only a cache: delete it and rerun (its entries will be requested again)"
_serial = itertools.count()


class CacheError(ValueError):
    """The cache file this process writes cannot be used: the run stops, naming the file."""


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


def read_only(path: Path, timeout: float = READ_TIMEOUT_S) -> sqlite3.Connection:
    """A member opened for reading; shareable between threads (`RequestCache` holds its lock to use it)."""
    return sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True, timeout=timeout, check_same_thread=False)


def warn_unreadable(path: Path, exc: Exception, seen: set | None = None) -> None:
    if seen is not None:  # once per file and error: a lookup per batch would repeat it all run long
        if (path, str(exc)) in seen:
            return
        seen.add((path, str(exc)))
    log.warning("%s: cannot read this cache file (%s: %s); its entries count as misses. "
                "If no run is writing it and this repeats, %s", path, type(exc).__name__, exc, ADVICE)  # fmt: skip


def _union(db: sqlite3.Connection, sources: list[Path]) -> list[Path]:
    """Copy every entry of `sources` into `db` (a temporary file); the sources copied whole."""
    copied = []
    for path in sources:
        try:
            db.execute("ATTACH DATABASE ? AS src", (f"{path.absolute().as_uri()}?mode=ro",))
        except sqlite3.Error as exc:
            if path.exists():
                warn_unreadable(path, exc)
            continue
        try:
            with db:
                db.execute(f"INSERT OR IGNORE INTO segments SELECT {COLUMNS} FROM src.segments")
            copied.append(path)
        except sqlite3.Error as exc:
            if path.exists():
                warn_unreadable(path, exc)
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


def _dead(machine: str, pid: int, here: str) -> bool:
    """Is the writer `pid` on `machine` provably gone? Only a process of this machine can be checked."""
    if machine != here or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass
    return False


def recover(path: Path, here: str) -> bool:
    """Roll back the journal a writer killed mid-commit left (unreadable read-only), if it is provably dead."""
    if not path.with_name(path.name + "-journal").exists():
        return False
    try:
        db = sqlite3.connect(f"{path.absolute().as_uri()}?immutable=1", uri=True)  # reads past the journal
        try:
            machine, pid, _ = db.execute("SELECT machine, pid, closed FROM writer").fetchone()
        finally:
            db.close()
        if not _dead(machine, pid, here):
            return False
        db = sqlite3.connect(path, timeout=READ_TIMEOUT_S)  # a writable connection rolls a hot journal back
        try:
            db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        finally:
            db.close()
        return True
    except (sqlite3.Error, TypeError):
        return False


def _writer_row(path: Path) -> tuple | None:
    """(machine, pid, closed) of a member; None for a single-file cache from an older hala."""
    db = read_only(path)
    try:
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "writer" not in tables:
            if "segments" not in tables:
                raise sqlite3.DatabaseError("no segments table")
            return None
        row = db.execute("SELECT machine, pid, closed FROM writer").fetchone()
        if row is None:
            raise sqlite3.DatabaseError("no writer row")
        return row
    finally:
        db.close()


def _finished(path: Path, here: str) -> bool:
    """May `path` be folded away: its writer closed it or died on this machine (or it predates members)?"""
    try:
        row = _writer_row(path)
    except sqlite3.Error as exc:
        if not recover(path, here):
            if path.exists():
                warn_unreadable(path, exc)
            return False
        return _finished(path, here)
    if row is None:
        return True  # an older hala's file: nobody writes it now
    machine, pid, closed = row
    return closed is not None or _dead(machine, pid, here)


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
        fsync_dir(path.parent)
    except (sqlite3.Error, OSError) as exc:  # nothing was removed: the cache is as it was
        tmp.unlink(missing_ok=True)
        message = f"{path}: could not fold the cache's files into {target.name} ({exc}); they stay as they are"
        raise CacheError(message) from None
    for source in copied:  # an older hala's file may have WAL companions
        for name in (source.name, *(source.name + end for end in ("-journal", "-wal", "-shm"))):
            source.with_name(name).unlink(missing_ok=True)
    return len(copied)
