"""One run per output folder: an exclusive lock held for the whole stage run.

Resume reuses what a folder already holds, which is only right when nobody else writes into it.
Two runs into one folder with different settings would otherwise interleave their units, both exit
0, and leave a manifest that names one config. So every stage that writes a folder holds
`fcntl.flock` on a lock file for as long as it runs; a second run fails at once and names the
holder (pid, host, command, start time), which the holder writes into the lock file.

The lock file lives beside the folder, `PARENT/.NAME.hala-lock`, not in it: a model folder appears
only complete, by a rename of the temporary folder `atomic_folder` writes beside it; a folder moved
aside or renamed doesn't take the lock along; and a rerun that finds nothing to do touches no file
in a finished folder.

Processes a holder starts for the same run hold the lock with it: the holder's file descriptor and
a token travel to them in `HALA_OUTPUT_LOCKS` (pass `held_fds()` to `subprocess.Popen(pass_fds=)`).
A child that got the descriptor keeps the lock alive even if its parent is killed, so a relaunch
while an orphan still writes fails cleanly instead of racing it; a child that only got the token
(a launcher such as `accelerate launch` closed the descriptor) trusts the holder whose token the
file still carries. The exclusive holder removes the lock file when it lets go (the next holder
checks that the file it locked is still the one in place). Shards of a multi-shard run started one
by one (Slurm array tasks) share the lock (`shared=True`): they exclude a whole run of the folder,
not each other.

A fresh exclusive holder is the only writer, so any temporary file or folder left by a killed
write (`.NAME.XXXX.tmp`, from `atomic_path` and `atomic_folder`) is stale; it removes them.
"""

from __future__ import annotations

import errno
import fcntl
import functools
import json
import os
import shutil
import socket
import sys
import tempfile
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

from hala.data.manifest import OutputInUseError

ENV = "HALA_OUTPUT_LOCKS"
LOCK_NAME = ".hala-lock"  # PARENT/.NAME.hala-lock


class OutputLockedError(OutputInUseError):
    """Another live run holds the output folder."""


class OutputNotWritableError(OutputInUseError):
    """The output folder (or the folder it would be created in) can't be written."""


def lock_path(folder: str | Path) -> Path:
    folder = Path(folder).resolve()  # one lock however the folder is named
    return folder.parent / f".{folder.name}{LOCK_NAME}"


def _held() -> dict[str, list]:
    try:
        return json.loads(os.environ.get(ENV, "{}"))
    except json.JSONDecodeError:
        return {}


def held_fds(locks: list[Path] | None = None) -> list[int]:
    """Descriptors of the locks this process holds or inherited (all, or those of `locks`): give
    them to its children."""
    fds = []
    wanted = None if locks is None else {str(p) for p in locks}
    for path, (fd, _) in _held().items():
        if wanted is not None and path not in wanted:
            continue
        try:
            os.fstat(fd)
            fds.append(fd)
        except OSError:
            pass
    return fds


def _holder_lines(path: Path) -> list[dict]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return []
    lines = []
    for line in text.splitlines():
        try:
            lines.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return lines


def _inherited(path: Path) -> bool:
    """True when a process of this run (this one, or the one that started it) holds `path`."""
    entry = _held().get(str(path))
    if not entry:
        return False
    fd, token = entry
    try:
        same = os.path.samestat(os.fstat(fd), os.stat(path))
    except OSError:
        same = False
    if not same:  # the descriptor did not travel: trust the token the holder wrote
        first = next(iter(_holder_lines(path)), {})
        same = first.get("token") == token
    if same:
        with open(path, "a", encoding="utf-8") as handle:  # O_APPEND: siblings don't clobber each other
            handle.write(json.dumps(_me(token, worker=True)) + "\n")
    return same


def _command() -> str:
    argv = list(getattr(sys, "orig_argv", sys.argv))
    return " ".join([Path(argv[0]).name, *argv[1:]]) if argv else "?"


def _me(token: str, worker: bool = False) -> dict:
    return {
        "pid": os.getpid(), "host": socket.gethostname(), "command": _command(),
        "since": datetime.now(timezone.utc).isoformat(timespec="seconds"), "token": token, "worker": worker,
    }  # fmt: skip


def _alive(entry: dict) -> bool:
    if entry.get("host") != socket.gethostname():
        return True  # can't tell from here
    try:
        os.kill(int(entry["pid"]), 0)
    except (ProcessLookupError, ValueError, KeyError):
        return False
    except PermissionError:
        return True
    return True


def describe_holder(path: Path) -> str:
    lines = _holder_lines(path)
    if not lines:
        return "another process (it left no record)"
    first, workers = lines[0], [e for e in lines[1:] if e.get("worker")]
    text = f"pid {first.get('pid')} on {first.get('host')} ({first.get('command')}), since {first.get('since')}"
    live = [e for e in workers if _alive(e)]
    if not _alive(first):
        text += ", which has exited"
    if live:
        text += "; still running for it: " + ", ".join(f"pid {e.get('pid')} ({e.get('command')})" for e in live)
    return text


def _not_writable(folder: Path, exc: OSError) -> OutputNotWritableError:
    return OutputNotWritableError(
        f"{folder}: can't write the output folder ({exc.strerror}: {exc.filename or folder}); "
        "choose an output folder you can write to (--out, or out= in the config), or make this one writable"
    )


def _open(path: Path, folder: Path) -> int:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except (PermissionError, FileExistsError, NotADirectoryError) as exc:
        raise _not_writable(folder, exc) from None
    except OSError as exc:
        if exc.errno == errno.EROFS:
            raise _not_writable(folder, exc) from None
        raise


def _check_writable(folder: Path) -> None:
    """Fail before any work if the folder itself refuses a file (read-only mount, permissions)."""
    if not folder.exists():
        return
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        if isinstance(exc, (PermissionError, NotADirectoryError)) or exc.errno == errno.EROFS:
            raise _not_writable(folder, exc) from None
        raise


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


def _unlink_if_same(path: Path, fd: int) -> None:
    if _same_file(fd, path):
        path.unlink(missing_ok=True)


def _acquire(path: Path, folder: Path, shared: bool) -> int:
    """Open and flock the lock file; retry if its holder removed it between our open and our flock
    (we would hold a file nobody else can see)."""
    while True:
        fd = _open(path, folder)
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OutputLockedError(
                f"{folder} is in use by another run: {describe_holder(path)}. "
                "Wait for it to finish, or stop it; two runs into one folder would mix their outputs"
            ) from None
        if _same_file(fd, path):
            return fd
        os.close(fd)


@contextmanager
def hold_output(folder: str | Path, shared: bool = False) -> Iterator[Path]:
    """Hold the lock of `folder` for the body; raise OutputLockedError at once if another run holds it,
    OutputNotWritableError if the folder can't be written."""
    folder = Path(folder)
    path = lock_path(folder)
    if path.exists() and _inherited(path):
        yield path
        return
    fd = _acquire(path, folder, shared)
    token = uuid.uuid4().hex
    previous = os.environ.get(ENV)
    try:
        _check_writable(folder)
        if not shared:
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(_me(token)) + "\n").encode(), 0)
            remove_stale_temps(folder)
        else:
            os.lseek(fd, 0, os.SEEK_END)
            os.write(fd, (json.dumps(_me(token, worker=True)) + "\n").encode())
        os.environ[ENV] = json.dumps({**_held(), str(path): [fd, token]})
        yield path
    finally:
        if previous is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = previous
        if not shared:  # the last holder leaves no file behind (removed while still held: see _acquire)
            _unlink_if_same(path, fd)
        os.close(fd)  # releases the lock


def holds_output(shared: Callable | None = None, folder: Callable = lambda cfg, *a, **k: cfg.out):
    """Decorate a stage function `fn(cfg, ...)`: it runs holding the lock of its output folder
    (`shared(cfg)`: as one of several processes of one run, e.g. a shard or a distributed rank)."""

    def wrap(fn):
        @functools.wraps(fn)
        def locked(*args, **kwargs):
            together = bool(shared and shared(*args, **kwargs))
            with hold_output(folder(*args, **kwargs), shared=together):
                return fn(*args, **kwargs)

        return locked

    return wrap


def distributed_rank(*_, **__) -> bool:
    """True in a process of a multi-process launch (torchrun / accelerate launch set WORLD_SIZE)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def remove_stale_temps(folder: str | Path) -> list[Path]:
    """Remove what killed writes left: `.NAME.*.tmp` beside `folder` (atomic_folder) and every
    `.*.tmp` file inside it (atomic_path). Only call this holding the folder's exclusive lock."""
    folder = Path(folder).absolute()
    stale = [p for p in folder.parent.glob(f".{folder.name}.*.tmp")] if folder.parent.is_dir() else []
    if folder.is_dir():
        stale += [p for p in folder.rglob(".*.tmp") if p.is_file()]
    for p in stale:
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
    return stale
