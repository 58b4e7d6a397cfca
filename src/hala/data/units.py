"""Units of work that finish atomically, so a killed run resumes where it stopped.

A stage splits its input into units (file x row range, see `hala.data.plan.plan_units`) and hands each
one to `run_units` with a function that turns the unit into output records. A unit's rejects are
written first, then its output, each atomically; the output file is the unit's completion marker.
A rerun skips every unit whose output exists and recounts its rows from disk (and reads back the
unit's own stats, if the stage keeps any), so a resumed run reports the same counts and holds the
same files as an uninterrupted one.

One exception: a unit whose saved stats count `requests_failed` (engine requests that failed
after their retries, so some of its rows were rejected for a reason that may not hold next time)
is not final. A rerun redoes it: its output is removed first (the completion marker goes, so a
kill midway still leaves an unfinished unit), then it is worked as new; its good replies come from
the request cache, so only the failed requests reach the engine. A stage that ends with failed
requests raises `RequestsFailed` (after all units ran) instead of reporting success.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import json
import logging
import sys
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from hala.data.in_order import Host, work_in_order
from hala.data.plan import Unit
from hala.data.rejects import RejectLog
from hala.data.writers import atomic_write_text, write_jsonl, write_rows

log = logging.getLogger("hala.data")
REJECTED = "rejected"
STATS = "stats"
FAILED_REQUESTS = "requests_failed"  # the unit stat that marks a unit to redo (see the module docstring)
ENGINE_ERROR = "engine_error"  # reject kinds ending so are rows lost to failed requests


class RequestsFailed(RuntimeError):
    """A stage ran every unit, but some engine requests failed; rerunning retries only those.

    Raised instead of writing the manifest: a folder with rows lost to failed requests is not a
    finished run, so no later stage (nor `hala run`) may take it as one.
    """

    exit_code = 3  # the CLI's exit status for it (1: error, 2: bad config)

    def __init__(self, folder: str | Path, failed: int, lost: int, rows: str = "rows"):
        self.folder, self.failed, self.lost = str(folder), failed, lost
        super().__init__(
            f"{folder}: {failed} requests failed (engine errors), so {lost} {rows} went to rejected/ "
            "for it; rerun the same command to retry only those"
        )

    @classmethod
    def in_shards(cls, folder: str | Path, message: str) -> RequestsFailed:
        """The same failure reported by shards run as separate processes (their own counts are in their logs)."""
        error = cls.__new__(cls)
        error.folder, error.failed, error.lost = str(folder), 0, 0
        RuntimeError.__init__(error, message)
        return error


@dataclass
class UnitStats:
    outputs: list[Path] = field(default_factory=list)
    rejected: list[Path] = field(default_factory=list)
    rows: int = 0
    rejects: Counter = field(default_factory=Counter)
    done: int = 0
    skipped: int = 0
    redone: int = 0  # finished units worked again because some of their requests had failed
    extra: Counter = field(default_factory=Counter)

    @property
    def requests_failed(self) -> int:
        return int(self.extra.get(FAILED_REQUESTS, 0))

    @property
    def lost_to_engine_errors(self) -> int:
        return sum(n for kind, n in self.rejects.items() if kind.endswith(ENGINE_ERROR))

    def raise_for_failed_requests(self, folder: str | Path, name: str = "manifest.json", rows: str = "rows") -> None:
        """If requests failed: remove a stale manifest `name` of `folder`, log, and raise RequestsFailed."""
        if not self.requests_failed:
            return
        (Path(folder) / name).unlink(missing_ok=True)
        error = RequestsFailed(folder, self.requests_failed, self.lost_to_engine_errors, rows)
        log.error("%s", error)
        raise error

    def counts(self) -> dict[str, int]:
        counts = {"rows_out": self.rows, "units_done": self.done, "units_skipped": self.skipped}
        if self.redone:
            counts["units_redone"] = self.redone
        counts["rejected"] = sum(self.rejects.values())
        counts.update({f"rejected_{kind}": n for kind, n in sorted(self.rejects.items())})
        counts.update({k: v for k, v in sorted(self.extra.items()) if isinstance(v, int)})
        return counts


def unit_paths(out_dir: Path, unit: Unit, fmt: str) -> tuple[Path, Path]:
    return out_dir / "data" / f"{unit.name}.{fmt}", out_dir / REJECTED / f"{unit.name}.jsonl"


def stats_path(out_dir: Path, unit: Unit) -> Path:
    return out_dir / STATS / f"{unit.name}.json"


def _recount(output: Path, rejected: Path, fmt: str) -> tuple[int, Counter]:
    if fmt == "parquet":
        import pyarrow.parquet as pq

        rows = pq.ParquetFile(output).metadata.num_rows
    else:
        with output.open("rb") as handle:
            rows = sum(1 for _ in handle)
    kinds = Counter()
    if rejected.exists():
        for line in rejected.read_text(encoding="utf-8").splitlines():
            kinds[json.loads(line)["kind"]] += 1
    return rows, kinds


@contextmanager
def fewer_collections(first: int = 20_000):
    """CPython's cyclic collector with its first generation at `first` allocations (default 700)
    while units run. A unit keeps tens of objects per row alive until it lands (records, segments,
    verdicts); at 700 the collector walks them all again and again: ~20% of `hala translate`'s own
    time with a free engine. Garbage is only collected a little later; no row changes."""
    before = gc.get_threshold()
    gc.set_threshold(max(before[0], first), *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)


def return_free_memory() -> None:
    """Give the C heap's free pages back to the OS (glibc's `malloc_trim`; elsewhere nothing). A
    landed unit frees its rows, but glibc keeps the freed pages of the threads' heaps, so a long
    run's resident memory crept up unit by unit (translate, 1M rows: +33% from 100k) while the
    live objects stayed flat. It costs about a millisecond per unit."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _glibc():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


_LIBC = _glibc() if sys.platform.startswith("linux") else None


def run_units(
    units: list[Unit],
    out_dir: str | Path,
    work: Callable[[Unit, RejectLog], Iterable],
    *,
    fmt: str = "jsonl",
    strict: bool = False,
    unit_stats: Callable[[Unit], dict] | None = None,
    in_flight: int = 1,
    host: Host | None = None,
) -> UnitStats:
    """Run `work` on every unit not finished yet; return what all units (old and new) hold.

    `unit_stats(unit)`, called after `work` has finished a unit, when the unit lands, returns
    numbers the stage keeps per unit (tokens, engine seconds, ...); they are saved beside the unit
    and summed in `extra`. `in_flight` > 1 works that many units at once, in threads, landing them
    in plan order while this thread runs `host.serve()` (`hala.data.in_order`): `work` must then
    keep each unit's state apart, and `unit_stats` is called in plan order, one unit at a time.
    """
    out_dir = Path(out_dir)
    stats = UnitStats()
    kept: dict[str, tuple[int, Counter]] = {}
    todo: list[Unit] = []
    for unit in units:
        output, rejected = unit_paths(out_dir, unit, fmt)
        stats_file = stats_path(out_dir, unit)
        saved = json.loads(stats_file.read_text(encoding="utf-8")) if output.exists() and stats_file.exists() else {}
        if output.exists() and saved.get(FAILED_REQUESTS):
            log.info("unit %s: redone, %d of its requests failed last time", unit.name, saved[FAILED_REQUESTS])
            output.unlink()  # no longer finished, even if this run is killed before it lands again
            stats.redone += 1
        if output.exists():
            kept[unit.name] = _recount(output, rejected, fmt)
            stats.extra.update(saved)
            stats.skipped += 1
        else:
            todo.append(unit)

    def work_one(unit: Unit) -> tuple[RejectLog, list]:
        rejects = RejectLog(strict=strict)
        return rejects, list(work(unit, rejects))

    def land(unit: Unit, worked: tuple[RejectLog, list]) -> tuple[int, Counter]:
        rejects, records = worked
        output, rejected = unit_paths(out_dir, unit, fmt)
        rejected.unlink(missing_ok=True)
        if len(rejects):
            write_jsonl(rejected, rejects.rows())
        if unit_stats is not None:
            numbers = unit_stats(unit)
            atomic_write_text(stats_path(out_dir, unit), json.dumps(numbers, sort_keys=True) + "\n")
            stats.extra.update(numbers)
        rows = write_rows(output, records, fmt)
        stats.done += 1
        log.info("unit %s: %d rows, %d rejected", unit.name, rows, len(rejects))
        return_free_memory()
        return rows, Counter(rejects.counts())

    with fewer_collections():
        landed = work_in_order(todo, work_one, land, in_flight=in_flight, host=host)
    kept.update({unit.name: done for unit, done in zip(todo, landed)})
    for unit in units:
        output, rejected = unit_paths(out_dir, unit, fmt)
        rows, kinds = kept[unit.name]
        stats.outputs.append(output)
        if rejected.exists():
            stats.rejected.append(rejected)
        stats.rows += rows
        stats.rejects.update(kinds)
    return stats
