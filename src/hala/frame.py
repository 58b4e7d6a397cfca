"""The one frame around every stage: what a run reads, whether it has work to do, where it may
write, how long it took and the manifest it leaves.

Every stage is `fn(cfg) -> Manifest` and does only its own work inside a `StageFrame`:

    frame = StageFrame("convert", cfg)          # the clock starts; the config's identity
    if done := frame.open(files):               # inputs hashed; finished with these settings?
        return done                             # ... then there is nothing to do
    stats = run_units(units, frame.out, work)   # the stage's own work
    return frame.finish_units(stats)            # outputs, counts, timings: the manifest, last

What the frame decides, once for every stage (as datatrove's executor does for its steps):

- **inputs**: every file (or folder, or hub id by name) the output depends on is hashed
  (`FileEntry.of`); which files those are is the stage's knowledge, given to `open`. A stage that
  can do read-only work first hashes beside it (`InputHashes`, a thread), and gives `open` the result.
- **the fingerprint**: `hala.data.manifest.fingerprint` of the config's identity (its NOT_OUTPUT
  settings left out, the shard added for a sharded run) and the input hashes. A folder whose
  manifest has it, with every output still in place, is current (`is_current`) and is not redone.
  A stage whose units carry a fingerprint of their own (one per model in `eval bench` and
  `eval translation`) keys them with `unit_fingerprint`.
- **the output policy**, one of two:
  - `records`: the folder is claimed (`claim_output`) before any work, so its finished units
    (`data/`, or train's `checkpoints/`) are reused only by a run of the same settings and inputs,
    and a folder holding another run's units is refused; the stage resumes unit by unit.
  - `model`: a folder that already holds files is refused; the stage writes into a temporary folder
    beside it (`model_folder`), the manifest is its last file, and it is renamed into place whole,
    so a model folder is complete or absent.
- **timings**: `timer("name")` spans, and `total_s` since the frame was made.
- **the manifest's name**: `manifest.json`, or `manifest.shard-I-of-N.json` for shard I of N
  (`hala.data.manifest.manifest_name`); the shard's manifest lists the units it planned, which is
  what merge-shards reads.

What stays in the stage: how it expands its inputs, settings that must be handled before the frame
opens (the judge decides again from its score cache when only the threshold changed), and its work.
The frame itself holds the stage folder's lock no more than the stage does: `holds_output` on the
stage function takes it.
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Literal

from hala.data.manifest import (
    FileEntry,
    HashingStopped,
    Manifest,
    OutputInUseError,
    Timer,
    claim_output,
    fingerprint,
    is_current,
    manifest_name,
)
from hala.data.writers import atomic_folder

if TYPE_CHECKING:
    from hala.config import StrictModel
    from hala.data.plan import Unit
    from hala.data.units import UnitStats

log = logging.getLogger("hala.frame")


class InputHashes:
    """`FileEntry.of` of every input, on a thread of its own, while the stage does work that writes
    nothing (file reads and sha256 release the GIL, so the two share the cores). `inputs` is called
    on that thread, so an error in listing them is raised by `result`, after the stage's own checks.
    Use it as a context manager: leaving the block early stops the hashing at its next block."""

    def __init__(self, inputs: Callable[[], Iterable[str | Path]]):
        self._stop = threading.Event()
        self._entries: list[FileEntry] | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(inputs,), name="hala-input-hashes", daemon=True)
        self._thread.start()

    def _run(self, inputs: Callable[[], Iterable[str | Path]]) -> None:
        try:
            self._entries = [FileEntry.of(path, stop=self._stop) for path in inputs()]
        except BaseException as exc:  # raised again by result(), on the stage's thread
            self._error = exc

    def result(self) -> list[FileEntry]:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._entries

    def __enter__(self) -> InputHashes:
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        if isinstance(self._error, HashingStopped):
            self._error = None


class StageFrame:
    """One run of one stage into `cfg.out`; see the module docstring."""

    def __init__(
        self,
        stage: str,
        cfg: StrictModel,
        *,
        output: Literal["records", "model"] = "records",
        work: str = "data",
        shard: str | None = None,
        manifest: type[Manifest] = Manifest,
    ):
        """`work`: the folder of finished units a claim protects; `shard`: "I/N" for one shard of a
        sharded run (its manifest gets its own name, its config the shard); `manifest`: the class
        the stage's manifest is (merge's records every tensor)."""
        self.started = time.perf_counter()
        self.stage, self.out, self.output, self.work = stage, Path(cfg.out), output, work
        self.identity = cfg.identity()  # what a claim of the folder records: every shard of a run alike
        self.config = self.identity if shard is None else {**self.identity, "shard": shard}
        index, count = map(int, shard.split("/")) if shard else (0, 1)
        self.name = manifest_name(index, count)
        self.manifest_type = manifest
        self.inputs: list[FileEntry] = []
        self.timings: dict[str, float] = {}
        self.timer = Timer(self.timings)
        self.manifest: Manifest | None = None
        self._folder: Path | None = None  # the temporary model folder, while it is written

    def open(self, inputs: Iterable[str | Path | FileEntry]) -> Manifest | None:
        """Hash `inputs`; return the finished manifest when the folder is current (nothing to do),
        else apply the output policy and return None."""
        self.inputs = [i if isinstance(i, FileEntry) else FileEntry.of(i) for i in inputs]
        if is_current(self.out, self.config, self.inputs, self.name):
            log.info("%s is up to date (%s); nothing to do", self.out, self.name)
            self.manifest = self.manifest_type.read(self.out, self.name)
            return self.manifest
        if self.output == "records":
            claim_output(self.out, self.identity, self.inputs, work=self.work)
        elif self.out.exists() and (not self.out.is_dir() or any(self.out.iterdir())):
            raise OutputInUseError(
                f"{self.out} already holds other files; choose another output folder, or delete this one"
            )
        return None

    def unit_fingerprint(self, inputs: list[FileEntry], leave_out: str) -> str:
        """The fingerprint of one unit that depends on `inputs` alone of the run's inputs, and on
        every setting but `leave_out` (the list of units: adding a model redoes no other)."""
        return fingerprint({k: v for k, v in self.config.items() if k != leave_out}, inputs)

    def elapsed(self) -> float:
        return round(time.perf_counter() - self.started, 3)

    @contextmanager
    def model_folder(self) -> Iterator[Path]:
        """The temporary folder to write the model into; `finish` writes the manifest into it, and
        when the block ends it is renamed to `out` (on an error it is removed). `self.manifest` is
        then the manifest as it lies in `out`: return it."""
        with atomic_folder(self.out) as tmp:
            self._folder = tmp
            try:
                yield tmp
            finally:
                self._folder = None
        self.manifest = self.manifest_type.read(self.out, self.name)

    def finish(
        self,
        counts: dict[str, int] | None = None,
        metrics: dict[str, float] | None = None,
        outputs: Iterable[str | Path | FileEntry] | None = None,
        *,
        units: list[Unit] | None = None,
        **fields: Any,
    ) -> Manifest:
        """Write the manifest, last: the config, the inputs, `outputs` (in a model folder: every file
        in it, at the path it will have), `counts`, `metrics`, the timings with `total_s`, and the
        planned `units` of a sharded run. `fields`: what the stage's own manifest class adds."""
        folder = self._folder or self.out
        if self._folder is not None:  # recorded at the paths the files will have once it is renamed
            entries = [FileEntry.of(p).model_copy(update={"path": str(self.out / p.name)})
                       for p in sorted(folder.iterdir())]  # fmt: skip
        else:
            entries = [o if isinstance(o, FileEntry) else FileEntry.of(o) for o in outputs or ()]
        self.timings["total_s"] = self.elapsed()
        self.manifest = self.manifest_type(
            stage=self.stage, config=self.config, inputs=self.inputs, outputs=entries, counts=counts or {},
            metrics=metrics or {}, timings=self.timings, units=units or [], **fields,
        )  # fmt: skip
        self.manifest.write(folder, self.name)
        return self.manifest

    def finish_units(
        self,
        stats: UnitStats,
        counts: dict[str, int] | None = None,
        metrics: dict[str, float] | None = None,
        *,
        rows: str = "rows",
        units: list[Unit] | None = None,
    ) -> Manifest:
        """`finish` for a stage that ran its units with `run_units`: the outputs are the units' data
        and reject files, the counts `stats.counts()` unless given. A run in which engine requests
        failed is not finished: `RequestsFailed` (the rows lost count as `rows`), and no manifest."""
        stats.raise_for_failed_requests(self.out, self.name, rows=rows)
        return self.finish(counts or stats.counts(), metrics, stats.outputs + stats.rejected, units=units)
