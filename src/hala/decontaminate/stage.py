"""The decontaminate stage: an SFT corpus in, its rows that hold no benchmark item out.

It reads conversations in any format `hala data convert` reads, in units that resume, inside the
stage frame like every stage. The benchmark index (`hala.decontaminate.index`) is built once per
run, after the frame has found work to do. A kept row goes to `OUT/data/` as it was read, in
hala's records or in ShareGPT with its `meta` (the shape `hala translate` writes); a flagged row
goes to `OUT/rejected/` with kind `contaminated` and a reason naming the turn and the benchmark
item it holds. The manifest counts the rows read (`rows_in`), the rows flagged (`contaminated`)
and, per benchmark, the rows whose first match is one of its items (`contaminated[ArabicMMLU]`),
beside the frame's own counts.

The benchmark folder is an input of the run like the corpus: its files are hashed into the
fingerprint, so new benchmark data redoes the run, and so do the match settings (`ngram`,
`threshold`, `min_words`), which are part of the config.
"""

from __future__ import annotations

import json
from collections import Counter
from itertools import islice
from typing import Literal

from pydantic import Field

from hala.config import StrictModel
from hala.data.manifest import Manifest
from hala.data.output_lock import holds_output
from hala.data.plan import plan_units
from hala.data.readers import read_conversations_at
from hala.data.rows import expand_inputs
from hala.data.units import run_units
from hala.decontaminate.filters import ContaminationFilter
from hala.decontaminate.index import BenchIndex
from hala.evaluate.benchmarks import bundled_data_dir
from hala.frame import StageFrame


class DecontaminateConfig(StrictModel):
    inputs: list[str] = Field(description="the corpus: conversation files or folders, in any format hala reads")
    out: str = Field(description="output folder: data/ (kept rows), rejected/ (contaminated rows), manifest.json")
    bench_dir: str | None = Field(
        None, description="local copies of the OALL v2 datasets in the layout `hala eval bench --data-dir` reads "
        "(default: the bundled OALL mini data)")  # fmt: skip
    ngram: int = Field(8, ge=2, description="items of this many words or more match on shared n-grams of this size")
    threshold: float = Field(0.5, gt=0, le=1, description="the share of a long item's n-grams a turn must hold")
    min_words: int = Field(4, ge=1, description="shorter items are not indexed (too generic to name a benchmark)")
    format: Literal["auto", "messages", "sharegpt", "alpaca"] = Field("auto", description="the corpus's format")
    output_format: Literal["jsonl", "parquet"] = Field("jsonl", description="the file format written")
    output_schema: Literal["records", "sharegpt"] = Field(
        "records", description="the schema written: hala's records, or the paper's ShareGPT"
    )
    split: str = "train"
    rows_per_unit: int = 10_000
    batch_size: int = Field(2000, ge=1, description="conversations searched at once")
    strict: bool = Field(False, description="stop at the first bad row")

    NOT_OUTPUT = frozenset({"batch_size"})


def bench_folder(cfg: DecontaminateConfig) -> str:
    """The benchmark folder the run reads: `bench_dir`, else the bundled OALL mini data."""
    return cfg.bench_dir or str(bundled_data_dir())


@holds_output()
def decontaminate(cfg: DecontaminateConfig) -> Manifest:
    frame = StageFrame("decontaminate", cfg)
    files = [f for path in cfg.inputs for f in expand_inputs(path)]
    bench = bench_folder(cfg)
    if done := frame.open([*files, bench]):
        return done
    with frame.timer("index"):
        check = ContaminationFilter(BenchIndex.build(bench, cfg.ngram, cfg.threshold, cfg.min_words))
    counted: dict[str, Counter] = {}

    def work(unit, rejects):
        counts = counted[unit.name] = Counter(rows_in=unit.stop - unit.start, contaminated=0)
        read = read_conversations_at(unit.file, fmt=cfg.format, rejects=rejects, start=unit.start,
                                     stop=unit.stop, split=cfg.split)  # fmt: skip
        while batch := list(islice(read, cfg.batch_size)):
            for (line, conv), match in zip(batch, check.matches([conv for _, conv in batch]), strict=True):
                if match is None:
                    yield conv if cfg.output_schema == "records" else conv.to_sharegpt() | {"meta": conv.meta}
                    continue
                raw = json.dumps(conv.model_dump(), ensure_ascii=False)
                rejects.verdict(unit.file, line, check.name, f"conversation {conv.id}: {match.reason}", raw)
                counts.update({"contaminated": 1, f"contaminated[{match.item.task}]": 1})

    units = plan_units(files, cfg.rows_per_unit, cfg.split)
    stats = run_units(units, frame.out, work, fmt=cfg.output_format, strict=cfg.strict,
                      unit_stats=lambda unit: dict(counted.pop(unit.name)))  # fmt: skip
    return frame.finish_units(stats, {**stats.counts(), "bench_items": len(check.index.items)})
