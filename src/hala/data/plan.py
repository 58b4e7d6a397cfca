"""Units of work: which rows of which input one resumable piece of a stage covers.

A stage plans its inputs into units of at most `rows_per_unit` rows (`plan_units`), in a stable
order; `limit_units` keeps the first N rows, `shard_units` deals the units out to N shards, and
`unshard_units` puts a sharded plan back together (merge-shards reads each shard's own units from
its manifest instead of planning again). A unit lands atomically (`hala.data.units.run_units`).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

from hala.data.rows import count_rows

log = logging.getLogger("hala.data")


@dataclass(frozen=True)
class Unit:
    """A unit of work: rows `start < line <= stop` of one input. Units are plain data (picklable)."""

    file: str
    start: int
    stop: int

    @property
    def name(self) -> str:
        """Readable and unique: two inputs named train.jsonl in different folders don't collide."""
        digest = hashlib.sha256(self.file.encode("utf-8")).hexdigest()[:8]
        return f"{Path(self.file).stem}-{digest}-{self.start:09d}-{self.stop:09d}"


class EmptyInputError(ValueError):
    """Not one row in any input: almost always a wrong path or an unfinished export, so not a success."""


def plan_units(inputs: list[str], rows_per_unit: int, split: str = "train") -> list[Unit]:
    """Split every input into units of at most `rows_per_unit` rows, in a stable order.

    An empty input is named in a warning; when every input is empty nothing can be done and the
    stage stops here, before it writes anything."""
    if rows_per_unit < 1:
        raise ValueError("rows_per_unit must be at least 1")
    units = []
    for file in inputs:
        total = count_rows(file, split)
        if total == 0:
            log.warning("%s: empty input (no rows)", file)
        for start in range(0, total, rows_per_unit):
            units.append(Unit(file, start, min(start + rows_per_unit, total)))
    if inputs and not units:
        raise EmptyInputError(f"no rows in the inputs ({', '.join(inputs[:5])}): nothing to do; check the paths")
    return units


def limit_units(units: list[Unit], limit: int) -> list[Unit]:
    """The units covering only the first `limit` rows, in plan order (the last one cut short)."""
    kept, left = [], limit
    for unit in units:
        if left <= 0:
            break
        size = unit.stop - unit.start
        kept.append(unit if size <= left else Unit(unit.file, unit.start, unit.start + left))
        left -= size
    return kept


def shard_units(units: list[Unit], index: int, count: int) -> list[Unit]:
    """Shard `index` of `count`: every count-th unit, so shards get similar work."""
    if not 0 <= index < count:
        raise ValueError(f"shard index {index} is outside 0..{count - 1}")
    return units[index::count]


def unshard_units(shards: list[list[Unit]]) -> list[Unit]:
    """The plan back from the units of each of its shards (`shard_units` of 0..N-1), in plan order."""
    sizes, n = [len(units) for units in shards], len(shards)
    expected = [len(range(i, sum(sizes), n)) for i in range(n)]
    if sizes != expected:
        raise ValueError(f"shards hold {sizes} units, not the split of one plan of {sum(sizes)} ({expected})")
    return [shards[k % n][k // n] for k in range(sum(sizes))]
