"""`hala pairs`: the EN-AR parallel corpus and the translator's training data, in one pass.

Inputs are read in the order given (see `sources`), in batches: the content filters run on each
batch (`filters.check_pairs`), then each surviving pair is checked against every pair kept before
it (`filters.Deduper`: the first copy in input order wins, so a duplicate can never sit in two
splits), assigned a split by its source id (`split.split_of`) and written. A rejected pair goes to
the reject log like an unreadable row (`RejectLog.verdict`), and the log is written out batch by
batch. Outputs:

    OUT/pairs/{train,dev,test}.jsonl   kept pairs (ParallelPair rows, meta.source_id, meta.origin)
    OUT/sft/{train,dev}.jsonl          prompt-completion rows per direction (test stays held out)
    OUT/rejected/<kind>.jsonl          every rejected row: file, line, kind (the filter), reason, raw
    OUT/manifest.json                  config, inputs, outputs, counts per filter and per input

The pass is cheap next to the engine stages, so there is no unit-level resume: the stage frame
(`hala.frame`) skips a finished run with the same config and inputs and claims the folder (one
holding another run's units is refused); anything else is rebuilt whole. Every file is written
under a temporary name and renamed only when the whole pass succeeded.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from contextlib import ExitStack
from itertools import islice
from pathlib import Path
from typing import IO, Iterable, Iterator

from hala.data.manifest import MANIFEST, FileEntry, Manifest
from hala.data.output_lock import holds_output
from hala.data.rejects import Reject, RejectLog
from hala.data.units import REJECTED
from hala.data.writers import atomic_path
from hala.frame import StageFrame
from hala.pairs.config import PairsConfig
from hala.pairs.filters import Deduper, check_pairs
from hala.pairs.sft import prompt_completion
from hala.pairs.sources import Source, read_source, resolve
from hala.pairs.split import SPLITS, split_of

log = logging.getLogger("hala.pairs")
PAIRS, SFT = "pairs", "sft"
SFT_SPLITS = ("train", "dev")
# reader kinds that mean the same as a filter
READER_KINDS = {"empty_messages": "empty_side"}


class _Outputs:
    """Files written under temporary names, all renamed when the `with` block succeeds."""

    def __init__(self, out: Path):
        self.out, self.stack = out, ExitStack()
        self.handles: dict[str, IO[str]] = {}
        self.rows: Counter = Counter()

    def __enter__(self) -> _Outputs:
        self.stack.__enter__()
        return self

    def __exit__(self, *exc) -> bool:
        return self.stack.__exit__(*exc)

    def write(self, rel: str, row: dict | None = None) -> None:
        handle = self.handles.get(rel)
        if handle is None:
            tmp = self.stack.enter_context(atomic_path(self.out / rel))
            handle = self.handles[rel] = self.stack.enter_context(tmp.open("w", encoding="utf-8"))
        if row is not None:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            self.rows[rel] += 1

    def entries(self) -> list[FileEntry]:
        return [FileEntry.of(self.out / rel, rows=self.rows[rel]) for rel in sorted(self.handles)]


class _Pass:
    """One pass over the inputs: filters, dedup, split, writes, and the counts of each."""

    def __init__(self, cfg: PairsConfig, outputs: _Outputs):
        self.cfg, self.outputs = cfg, outputs
        self.deduper = Deduper() if cfg.filters.dedup else None
        self.counts: Counter = Counter()

    def _reject(self, source: Source, reject: Reject) -> None:
        reject.kind = READER_KINDS.get(reject.kind, reject.kind)
        self.outputs.write(f"{REJECTED}/{reject.kind}.jsonl", reject.to_row())
        for prefix in ("", self._mix(source)):
            self.counts[f"{prefix}read"] += 1
            self.counts[f"{prefix}rejected"] += 1
            self.counts[f"{prefix}rejected_{reject.kind}"] += 1

    @staticmethod
    def _mix(source: Source) -> str:
        return f"mix[{source.kind}:{source.label}]."

    def _drain(self, source: Source, rejects: RejectLog) -> None:
        for reject in rejects.take():
            self._reject(source, reject)

    def _keep(self, source: Source, pair) -> None:
        split = split_of(pair.meta["source_id"], self.cfg.splits)
        self.outputs.write(f"{PAIRS}/{split}.jsonl", pair.model_dump())
        if split in SFT_SPLITS:
            for direction in self.cfg.sft.directions:
                self.outputs.write(f"{SFT}/{split}.jsonl", prompt_completion(pair, direction, self.cfg.sft.template))
                self.counts[f"sft_{split}"] += 1
        for prefix in ("", self._mix(source)):
            self.counts[f"{prefix}read"] += 1
            self.counts[f"{prefix}kept"] += 1
        self.counts[split] += 1

    def run(self, source: Source) -> None:
        cfg = self.cfg
        rejects = RejectLog(strict=cfg.strict)
        rows = read_source(
            source, rejects, src_lang=cfg.src_lang, tgt_lang=cfg.tgt_lang, split=cfg.split, stop=cfg.limit
        )
        for batch in _batched(rows, cfg.batch_size):
            self._drain(source, rejects)  # the batch's unreadable rows, before its verdicts
            verdicts = check_pairs([p for _, _, p in batch], cfg.filters, self.deduper)
            for (file, line, pair), verdict in zip(batch, verdicts):
                if verdict is None:
                    self._keep(source, pair)
                    continue
                kind, reason = verdict
                raw = json.dumps(pair.model_dump(), ensure_ascii=False)
                rejects.verdict(file, line, kind, f"pair {pair.id}: {reason}", raw)
            self._drain(source, rejects)
        self._drain(source, rejects)
        self.counts[f"inputs_{source.kind}"] += 1


def _batched(rows: Iterable, size: int) -> Iterator[list]:
    it = iter(rows)
    while batch := list(islice(it, size)):
        yield batch


@holds_output()
def build_pairs(cfg: PairsConfig) -> Manifest:
    """Build `cfg.out` from `cfg.inputs` (see the module docstring)."""
    frame = StageFrame("pairs", cfg)
    sources = [resolve(path) for path in cfg.inputs]
    if done := frame.open(f for source in sources for f in source.files):
        return done
    (frame.out / MANIFEST).unlink(missing_ok=True)  # rebuilt whole: nothing of the old run is final
    for stale in (frame.out / REJECTED).glob("*.jsonl"):
        stale.unlink()

    with _Outputs(frame.out) as outputs:
        for split in SPLITS:
            outputs.write(f"{PAIRS}/{split}.jsonl")  # present even when empty
        for split in SFT_SPLITS if cfg.sft.directions else ():
            outputs.write(f"{SFT}/{split}.jsonl")
        work = _Pass(cfg, outputs)
        for source in sources:
            work.run(source)
            mix = _Pass._mix(source)
            log.info("%s: %d kept of %d read", source.label, work.counts[f"{mix}kept"], work.counts[f"{mix}read"])
    zeros = {"read": 0, "kept": 0, "rejected": 0, **dict.fromkeys(SPLITS, 0)}
    zeros.update(dict.fromkeys([f"sft_{s}" for s in SFT_SPLITS] if cfg.sft.directions else [], 0))
    counts = {**zeros, **work.counts}
    metrics = {"kept_fraction": round(counts["kept"] / counts["read"], 6) if counts["read"] else 0.0}
    for source in sources:
        prefix = _Pass._mix(source)
        if counts.get(f"{prefix}read"):
            metrics[f"{prefix}kept_fraction"] = round(counts.get(f"{prefix}kept", 0) / counts[f"{prefix}read"], 6)
    return frame.finish(counts, metrics, outputs.entries())
