"""A live progress line for long translation runs (rich), silent when output is not a terminal.

Shows conversations done / total, segments, engine tokens per second, the cache hit rate and an
ETA, so a run over millions of conversations can be watched without reading logs.
"""

from __future__ import annotations

import sys
import time


class TranslateProgress:
    def __init__(self, total: int, enabled: bool = True):
        self.enabled = enabled and sys.stderr.isatty()
        self.total = total
        self.totals = {"segments": 0, "segments_unique": 0, "cache_hits": 0, "tokens_out": 0}
        self.started = time.perf_counter()
        self._bar = None

    def __enter__(self) -> TranslateProgress:
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(
                TextColumn("translate"), BarColumn(), MofNCompleteColumn(), TextColumn("conv"),
                TextColumn("{task.fields[info]}"), TimeRemainingColumn(), transient=False,
            )  # fmt: skip
            self._bar.start()
            self._task = self._bar.add_task("translate", total=self.total, info="")
        return self

    def advance(self, conversations: int) -> None:
        if self._bar is not None:
            self._bar.advance(self._task, conversations)

    def update(self, unit_stats) -> None:
        """Called after each unit with that unit's counters (segments, cache hits, tokens)."""
        for key in self.totals:
            self.totals[key] += unit_stats.get(key, 0)
        if self._bar is None:
            return
        t = self.totals
        rate = t["tokens_out"] / max(time.perf_counter() - self.started, 1e-9)
        hits = t["cache_hits"] / t["segments_unique"] if t["segments_unique"] else 0.0
        info = f"{t['segments']} seg · {rate:,.0f} tok/s · cache {hits:.0%}"
        self._bar.update(self._task, info=info)

    def __exit__(self, *_) -> None:
        if self._bar is not None:
            self._bar.stop()
