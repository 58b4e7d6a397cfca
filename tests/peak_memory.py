"""Peak resident memory of one call, measured in a process of its own.

The test session's resident set also grows with whatever earlier tests left running (server and
pool threads, their malloc arenas): in CI that added up to 17 MB to a 7 MB measurement. So each
measurement runs a function of a test module in a fresh interpreter and reads back its JSON.
"""

from __future__ import annotations

import ctypes
import gc
import json
import re
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HAS_PROC = Path("/proc/self/clear_refs").exists()  # Linux: VmHWM can be reset


def _status() -> dict[str, int]:
    text = Path("/proc/self/status").read_text()
    return {k: int(re.search(rf"{k}:\s+(\d+)", text).group(1)) << 10 for k in ("VmRSS", "VmHWM")}


@contextmanager
def live_memory_rss():
    """Make the resident set track live memory: glibc otherwise keeps freed blocks for reuse, which
    hides growth. While measuring, blocks over 128 KB are mmapped and unmapped on free; afterwards the
    thresholds are set where glibc's own adaptive ones end up (32 MB, 64 MB)."""
    libc = ctypes.CDLL("libc.so.6")
    m_trim_threshold, m_mmap_threshold = -1, -3
    libc.mallopt(m_mmap_threshold, 128 << 10)
    libc.mallopt(m_trim_threshold, 128 << 10)
    try:
        yield
    finally:
        libc.mallopt(m_mmap_threshold, 32 << 20)
        libc.mallopt(m_trim_threshold, 64 << 20)


def peak_growth(fn) -> int:
    """Bytes the resident set grew by, at its highest, while `fn` ran (call inside live_memory_rss)."""
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    base = _status()["VmRSS"]
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    fn()
    return _status()["VmHWM"] - base


def run_fresh(function: str, *args) -> dict:
    """`function` ("tests.module:name") called with `args` as strings in a new interpreter; its
    JSON-able return value."""
    module, name = function.split(":")
    code = (
        f"import json, sys; from {module} import {name}; "
        f"print('\\n' + json.dumps({name}(*sys.argv[1:])))"
    )
    run = subprocess.run(
        [sys.executable, "-c", code, *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=900
    )
    assert run.returncode == 0, f"{function} failed:\n{run.stderr[-3000:]}"
    return json.loads(run.stdout.strip().splitlines()[-1])
