"""Units of work that finish atomically, so a killed run resumes where it stopped.

A stage splits its input into units (file x row range, see `readers.plan_units`) and hands each
one to `run_units` with a function that turns the unit into output records. A unit's rejects are
written first, then its output, each atomically; the output file is the unit's completion marker.
A rerun skips every unit whose output exists and recounts its rows from disk (and reads back the
unit's own stats, if the stage keeps any), so a resumed run reports the same counts and holds the
same files as an uninterrupted one.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from hala.data.readers import Unit
from hala.data.rejects import RejectLog
from hala.data.writers import atomic_write_text, write_jsonl, write_rows

log = logging.getLogger("hala.data")
REJECTED = "rejected"
STATS = "stats"


@dataclass
class UnitStats:
    outputs: list[Path] = field(default_factory=list)
    rejected: list[Path] = field(default_factory=list)
    rows: int = 0
    rejects: Counter = field(default_factory=Counter)
    done: int = 0
    skipped: int = 0
    extra: Counter = field(default_factory=Counter)

    def counts(self) -> dict[str, int]:
        counts = {"rows_out": self.rows, "units_done": self.done, "units_skipped": self.skipped}
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


def run_units(
    units: list[Unit],
    out_dir: str | Path,
    work: Callable[[Unit, RejectLog], Iterable],
    *,
    fmt: str = "jsonl",
    strict: bool = False,
    unit_stats: Callable[[Unit], dict] | None = None,
) -> UnitStats:
    """Run `work` on every unit not finished yet; return what all units (old and new) hold.

    `unit_stats(unit)`, called after `work` has finished a unit, returns numbers the stage keeps
    per unit (tokens, engine seconds, ...); they are saved beside the unit and summed in `extra`.
    """
    out_dir = Path(out_dir)
    stats = UnitStats()
    for unit in units:
        output, rejected = unit_paths(out_dir, unit, fmt)
        stats_file = stats_path(out_dir, unit)
        if output.exists():
            rows, kinds = _recount(output, rejected, fmt)
            if stats_file.exists():
                stats.extra.update(json.loads(stats_file.read_text(encoding="utf-8")))
            stats.skipped += 1
        else:
            rejects = RejectLog(strict=strict)
            records = list(work(unit, rejects))
            rejected.unlink(missing_ok=True)
            if len(rejects):
                write_jsonl(rejected, rejects.rows())
            if unit_stats is not None:
                numbers = unit_stats(unit)
                atomic_write_text(stats_file, json.dumps(numbers, sort_keys=True) + "\n")
                stats.extra.update(numbers)
            rows = write_rows(output, records, fmt)
            kinds = Counter(rejects.counts())
            stats.done += 1
            log.info("unit %s: %d rows, %d rejected", unit.name, rows, len(rejects))
        stats.outputs.append(output)
        if rejected.exists():
            stats.rejected.append(rejected)
        stats.rows += rows
        stats.rejects.update(kinds)
    return stats
