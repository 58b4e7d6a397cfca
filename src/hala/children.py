"""Child processes die with their parent.

`hala run` starts each stage as a child process, and the local executor starts one worker per
shard. If the parent is killed with SIGKILL it gets no chance to stop them, and orphans that keep
writing would race the relaunch. So every such child asks the kernel (Linux `prctl
PR_SET_PDEATHSIG`) for SIGTERM when its parent dies; elsewhere this is a no-op and the output
folder's lock (hala.data.output_lock) still makes a relaunch fail cleanly instead of racing.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1
# loaded before any fork: dlopen in a forked child of a threaded parent can deadlock
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def die_with_parent() -> None:
    """`preexec_fn` of a child: SIGTERM when the parent dies (also if it already died meanwhile)."""
    if _LIBC is None:
        return
    parent = os.getppid()
    if _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        return
    if os.getppid() != parent:  # the parent died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


def exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit, so `finally` blocks (temp folders, engines) clean up."""

    def stop(signum, _frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
