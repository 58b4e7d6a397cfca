"""Assemble one dataset from a (possibly sharded) translation run.

Shards write their units into the same output folder and each leaves its own manifest, which lists
the units the shard was given. Merging checks that every shard of the run finished with the same
settings and inputs (`hala.data.manifest.shard_manifests`, which `hala pairs` reads a run with
too), then streams the unit files in plan order (input by input, row range by row
range: the order of the source data) into consolidated shards, with one manifest that sums the
counts. The plan is read back from the shards' manifests, not made again: what is merged is what
the shards did (with `limit` and whatever else shapes the plan), and no input is re-read to count
its rows. It also folds the segment cache's per-writer files (one per shard process, see
`hala.engines.cache`) into one.
"""

from __future__ import annotations

import logging
import shutil
from collections import Counter
from pathlib import Path

from hala.data.manifest import FileEntry, IncompleteRunError, Manifest, shard_manifests
from hala.data.output_lock import hold_output
from hala.data.rows import iter_rows
from hala.data.plan import unshard_units
from hala.data.units import unit_paths
from hala.data.writers import ShardedWriter
from hala.engines.cache import CacheError, fold

log = logging.getLogger("hala.translate")


def merge_shards(out: str | Path, dest: str | Path | None = None, rows_per_file: int = 100_000) -> Manifest:
    """Assemble `dest` (default OUT/merged) holding the lock of `out`: no shard may still be writing."""
    with hold_output(out):
        return _merge(Path(out), dest, rows_per_file)


def _merge(out: Path, dest: str | Path | None, rows_per_file: int) -> Manifest:
    dest = Path(dest) if dest else out / "merged"
    manifests = shard_manifests(out)
    config = manifests[0].config
    fmt = config["output_format"]
    try:
        units = unshard_units([m.units for m in manifests])
    except ValueError as exc:
        raise IncompleteRunError(f"{out}: the shards' units are not one plan: {exc}; rerun the shards") from exc
    if dest.exists():
        shutil.rmtree(dest)
    counts: Counter = Counter()
    with ShardedWriter(dest / "data", "part", fmt, rows_per_file) as data, \
         ShardedWriter(dest / "rejected", "part", "jsonl", rows_per_file) as rejected:  # fmt: skip
        for unit in units:
            output, rejects = unit_paths(out, unit, fmt)
            if not output.exists():
                raise IncompleteRunError(f"{output}: missing, though every shard reported success")
            for row in _read(output):
                data.write(row)
            if rejects.exists():
                for row in _read(rejects):
                    rejected.write(row)
    for m in manifests:
        counts.update({k: v for k, v in m.counts.items() if k not in ("num_shards", "units_done", "units_skipped")})
    counts["num_shards"] = len(manifests)
    manifest = Manifest(
        stage="translate-merge",
        config=config | {"shard": "merged", "source_run": str(out)},
        inputs=manifests[0].inputs,
        outputs=[FileEntry.of(p) for p in data.paths + rejected.paths],
        counts=dict(counts),
        units=units,
    )
    manifest.write(dest)
    try:
        fold(config.get("cache_path") or out / "cache" / "segments.sqlite")
    except CacheError as exc:  # the merged dataset is complete; the cache only stays in more files
        log.warning("%s", exc)
    return manifest


def _read(path: Path):
    for row in iter_rows(path):
        if row.data is not None:
            yield row.data

