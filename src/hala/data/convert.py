"""`hala data convert`: read any supported input into hala's records, reporting every bad row.

This is the front door of the pipeline: instruction data in OpenAI `messages`, ShareGPT or Alpaca
form, or parallel pairs, from JSONL, Parquet, TSV, saved datasets or the hub, becomes sharded
record files (or ShareGPT, the paper's corpus schema) plus `rejected/` and a manifest, in units
that resume, inside the stage frame (`hala.frame`) like every stage.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from hala.config import StrictModel
from hala.data.manifest import Manifest
from hala.data.output_lock import holds_output
from hala.data.readers import read_conversations, read_pairs, sniff_format
from hala.data.rows import expand_inputs
from hala.data.plan import plan_units
from hala.data.units import run_units
from hala.frame import StageFrame


class ConvertConfig(StrictModel):
    inputs: list[str] = Field(description="files, folders, saved datasets or hf://NAME")
    out: str = Field(description="output folder: data/, rejected/, manifest.json")
    format: Literal["auto", "messages", "sharegpt", "alpaca", "pairs"] = Field(
        "auto", description="the input's format (auto: told apart per file)"
    )
    output_format: Literal["jsonl", "parquet"] = Field("jsonl", description="the file format written")
    output_schema: Literal["records", "sharegpt"] = Field(
        "records", description="the schema written: hala's records, or the paper's ShareGPT"
    )
    lang: str = "en"
    src_lang: str = "en"
    tgt_lang: str = "ar"
    split: str = "train"
    rows_per_unit: int = 10_000
    strict: bool = Field(False, description="stop at the first bad row")


@holds_output()
def convert(cfg: ConvertConfig) -> Manifest:
    frame = StageFrame("convert", cfg)
    files = [f for path in cfg.inputs for f in expand_inputs(path)]
    if done := frame.open(files):
        return done

    formats = {f: cfg.format if cfg.format != "auto" else sniff_format(f, cfg.split) for f in files}

    def work(unit, rejects):
        kw = dict(rejects=rejects, start=unit.start, stop=unit.stop, split=cfg.split)
        if formats[unit.file] == "pairs":
            yield from read_pairs(unit.file, src_lang=cfg.src_lang, tgt_lang=cfg.tgt_lang, **kw)
            return
        for conv in read_conversations(unit.file, fmt=cfg.format, lang=cfg.lang, **kw):  # auto: per row
            yield conv.to_sharegpt() if cfg.output_schema == "sharegpt" else conv

    units = plan_units(files, cfg.rows_per_unit, cfg.split)
    stats = run_units(units, frame.out, work, fmt=cfg.output_format, strict=cfg.strict)
    return frame.finish_units(stats)
