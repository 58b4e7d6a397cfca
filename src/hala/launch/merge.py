"""Assemble one dataset from a (possibly sharded) run of a record stage: translate, judge, generate.

Shards write their units into the same output folder and each leaves its own manifest, which lists
the units the shard was given. Merging checks that every shard of the run finished with the same
settings and inputs (`hala.data.manifest.shard_manifests`, which `hala pairs` reads a run with
too), then streams the unit files in plan order (input by input, row range by row range: the order
of the source data) into consolidated shards of `OUT/merged/`, with one manifest that sums the
counts. The plan is read back from the shards' manifests, not made again: what is merged is what
the shards did (with `limit` and whatever else shapes the plan), and no input is re-read to count
its rows. A metric every shard reports alike (the judge's threshold and calibration) is kept; the
stage's `merged_metrics` (in the command table) computes the others from the summed counts. It
also folds the request caches' per-writer files (one per shard process, see `hala.engines.cache`).
"""

from __future__ import annotations

import logging
import shutil
from collections import Counter
from pathlib import Path

from hala.data.manifest import FileEntry, IncompleteRunError, Manifest, shard_manifests
from hala.data.output_lock import hold_output
from hala.data.plan import unshard_units
from hala.data.rows import iter_rows
from hala.data.units import unit_paths
from hala.data.writers import ShardedLines, ShardedWriter
from hala.engines.cache import CacheError, fold

log = logging.getLogger("hala.launch")
PER_SHARD = ("num_shards", "units_done", "units_skipped")  # counts that are not summed


def merge_shards(out: str | Path, dest: str | Path | None = None, rows_per_file: int = 100_000) -> Manifest:
    """Assemble `dest` (default OUT/merged) holding the lock of `out`: no shard may still be writing."""
    with hold_output(out):
        return _merge(Path(out), dest, rows_per_file)


def _merge(out: Path, dest: str | Path | None, rows_per_file: int) -> Manifest:
    dest = Path(dest) if dest else out / "merged"
    manifests = shard_manifests(out)
    config, stage = manifests[0].config, manifests[0].stage
    fmt = config["output_format"]
    try:
        units = unshard_units([m.units for m in manifests])
    except ValueError as exc:
        raise IncompleteRunError(f"{out}: the shards' units are not one plan: {exc}; rerun the shards") from exc
    if dest.exists():
        shutil.rmtree(dest)
    # the unit files are hala's own JSON lines: copied line by line, the bytes re-encoding them would give
    lines = fmt == "jsonl"
    rows = ShardedLines(dest / "data", "part", rows_per_file) if lines else \
        ShardedWriter(dest / "data", "part", fmt, rows_per_file)  # fmt: skip
    with rows as data, ShardedLines(dest / "rejected", "part", rows_per_file) as rejected:
        for unit in units:
            output, rejects = unit_paths(out, unit, fmt)
            if not output.exists():
                raise IncompleteRunError(f"{output}: missing, though every shard reported success")
            for row in _lines(output) if lines else _read(output):
                data.write(row)
            if rejects.exists():
                for line in _lines(rejects):
                    rejected.write(line)
    counts: Counter = Counter()
    for m in manifests:
        counts.update({k: v for k, v in m.counts.items() if k not in PER_SHARD})
    counts["num_shards"] = len(manifests)
    manifest = Manifest(
        stage=f"{stage}-merge",
        config=config | {"shard": "merged", "source_run": str(out)},
        inputs=manifests[0].inputs,
        outputs=[FileEntry.of(p) for p in data.paths + rejected.paths],
        counts=dict(counts),
        metrics=_metrics(stage, manifests, dict(counts)),
        units=units,
    )
    manifest.write(dest)
    for cache in _caches(out, config):
        try:
            fold(cache)
        except CacheError as exc:  # the merged dataset is complete; the cache only stays in more files
            log.warning("%s", exc)
    return manifest


def _metrics(stage: str, manifests: list[Manifest], counts: dict) -> dict:
    """The metrics every shard reported alike, and the stage's own from the summed counts."""
    from hala.commands import COMMANDS, load

    first = manifests[0].metrics
    same = {k: v for k, v in first.items() if all(m.metrics.get(k) == v for m in manifests)}
    command = COMMANDS.get(stage)
    return same | (load(command.merged_metrics)(counts) if command and command.merged_metrics else {})


def _caches(out: Path, config: dict) -> list[Path]:
    """The request caches of the run: `cache_path`, else every cache under OUT/cache (by member name)."""
    if config.get("cache_path"):
        return [Path(config["cache_path"])]
    folder = out / "cache"
    stems = sorted({p.name.split(".")[0] for p in folder.glob("*.sqlite")}) if folder.is_dir() else []
    return [folder / f"{stem}.sqlite" for stem in stems]


def _lines(path: Path):
    """The rows of a JSON lines file hala wrote, as its lines (blank ones skipped, as `iter_rows` skips them)."""
    with path.open("rb") as handle:
        for line in handle:
            if line.strip():
                yield line if line.endswith(b"\n") else line + b"\n"


def _read(path: Path):
    for row in iter_rows(path):
        if row.data is not None:
            yield row.data
