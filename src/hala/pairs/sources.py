"""Where parallel pairs come from, and the source id each pair is split by.

An input is one of:

- a `hala translate` run folder: its `pairs/` (segment pairs of accepted conversations, whose
  `meta.source_id` is the conversation id). Every shard must have finished;
- a `hala judge` run folder: its `data/` (the accepted pairs; every shard must have finished), or
  the `merged/` folder of its shards;
- a `hala pairs` run folder: its `pairs/{train,dev,test}.jsonl`;
- a `hala data convert --format pairs` run folder: its `data/`;
- anything `hala.data.readers` reads as pairs: JSONL/TSV/Parquet files, folders of them, saved HF
  datasets and `hf://NAME[:CONFIG]` (opus-100's `translation: {en, ar}` shape included).

Every pair comes out oriented as the run's `src_lang -> tgt_lang` (a pair written the other way
round is swapped; one in other languages is rejected as `wrong_languages`), with
`meta.source_id` set: kept if the record has one, else the pair's own id.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from hala.data.manifest import MANIFEST, RUN_STAMP, Manifest, shard_manifests
from hala.data.readers import read_pairs_at
from hala.data.rows import expand_inputs
from hala.data.records import ParallelPair
from hala.data.rejects import RejectLog

# what each stage's run folder holds as pairs
STAGE_PAIRS = {"translate": ("pairs",), "judge": ("data",), "judge-merge": ("data",), "pairs": ("pairs",),
               "convert": ("data",)}  # fmt: skip
SHARDED = ("translate", "judge")  # stages whose run folder may hold shards (every one must have finished)
PAIR_SUFFIXES = (".jsonl", ".parquet")


@dataclass(frozen=True)
class Source:
    label: str  # the input as given
    kind: str  # translate, judge, pairs or corpus
    files: tuple[str, ...]


def _stage(folder: Path) -> str | None:
    """The stage whose finished run `folder` holds, None if it is no run folder."""
    if (folder / MANIFEST).exists():
        return Manifest.read(folder).stage
    if shards := sorted(folder.glob("manifest.shard-*.json")):
        return Manifest.read(folder, shards[0].name).stage
    if (folder / RUN_STAMP).exists():
        raise ValueError(f"{folder}: a run that has not finished (no manifest.json); finish it first, then rerun")
    return None


def resolve(path: str) -> Source:
    folder = Path(path)
    stage = _stage(folder) if folder.is_dir() else None
    if stage is None:
        return Source(path, "corpus", tuple(expand_inputs(path)))
    if stage in SHARDED:
        shard_manifests(folder)  # every shard finished, with one config, or IncompleteRunError
    elif stage == "translate-merge":
        raise ValueError(f"{folder}: a merged translation holds no segment pairs; give its run folder {folder.parent}")
    elif stage not in STAGE_PAIRS:
        raise ValueError(f"{folder}: a {stage!r} run holds no pairs (pairs come from {', '.join(STAGE_PAIRS)} runs)")
    files = sorted(str(f) for sub in STAGE_PAIRS[stage] for f in (folder / sub).glob("*") if f.suffix in PAIR_SUFFIXES)
    return Source(path, stage, tuple(files))


def orient(pair: ParallelPair, src_lang: str, tgt_lang: str) -> ParallelPair | None:
    """`pair` as src_lang -> tgt_lang (swapped if it is the other way round); None if it can't be."""
    if (pair.src_lang, pair.tgt_lang) == (src_lang, tgt_lang):
        return pair
    if (pair.src_lang, pair.tgt_lang) == (tgt_lang, src_lang):
        return pair.model_copy(update={"src": pair.tgt, "tgt": pair.src, "src_lang": src_lang, "tgt_lang": tgt_lang})
    return None


def read_source(
    source: Source,
    rejects: RejectLog,
    *,
    src_lang: str = "en",
    tgt_lang: str = "ar",
    split: str = "train",
    start: int = 0,
    stop: int | None = None,
    files: tuple[str, ...] | None = None,
) -> Iterator[tuple[str, int, ParallelPair]]:
    """(file, line, pair) for rows start < line <= stop of every file of `source` (or of `files`);
    rows that can't become a pair go to `rejects`."""
    for file in files or source.files:
        rows = read_pairs_at(
            file, rejects=rejects, src_lang=src_lang, tgt_lang=tgt_lang, start=start, stop=stop, split=split
        )
        for line, pair in rows:
            oriented = orient(pair, src_lang, tgt_lang)
            if oriented is None:
                raw = json.dumps(pair.model_dump(), ensure_ascii=False)
                reason = f"pair is {pair.src_lang}-{pair.tgt_lang}; this run reads {src_lang}-{tgt_lang}"
                rejects.add(file, line, "wrong_languages", reason, raw)
                continue
            meta = {"source_id": pair.id, **oriented.meta, "origin": oriented.meta.get("origin", source.kind)}
            yield file, line, oriented.model_copy(update={"meta": meta})
