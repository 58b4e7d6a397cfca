"""`hala judge`: a small instruct model answers ACCEPT or REJECT for every parallel pair.

The paper's setup is the default: `Qwen/Qwen2.5-3B-Instruct` on vLLM, greedy, a strict bilingual
judge prompt (ours, see `prompt.JUDGE_PROMPT`). For each unit of work (a file x a range of rows):

1. read the pairs (any input `hala pairs` reads; unreadable rows go to `rejected/`);
2. ask the judge about every pair through the verdict cache (`hala.engines.cached.CachedChat`): a pair already
   judged with the same model, prompt and sampling is a lookup, in this run or any other;
3. parse each answer (`prompt.parse_verdict`); write accepted pairs to `data/` with the verdict in
   `meta.judge`, and rejected and unparseable ones to `rejected/` with the raw answer.

Units finish atomically (`hala.data.units.run_units`), so a killed run resumes where it stopped,
and its finished batches are in the cache. A pair whose request failed is rejected alone, as
`judge_engine_error` with its own error; its unit is redone on a rerun, and until then `judge`
raises `hala.data.units.RequestsFailed` (no manifest; the CLI exits 3). `manifest.json` counts each verdict and reports the kept
fraction (accepted / judged).
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from hala.config import StrictModel
from hala.data.manifest import FileEntry, Manifest, claim_output, is_current
from hala.data.output_lock import holds_output
from hala.data.readers import Unit, plan_units
from hala.data.rejects import Reject
from hala.data.units import run_units
from hala.engines.base import EngineConfig, SamplingParams
from hala.engines.cached import CachedChat
from hala.judge.prompt import (
    ACCEPT, JUDGE_PROMPT, PAPER_JUDGE_MODEL, VERDICTS, check_template, parse_verdict, render_judge,
)  # fmt: skip
from hala.pairs.sources import Source, read_source, resolve
from hala.engines.cache import request_key
from hala.translate.prompts import language_name

log = logging.getLogger("hala.judge")


class JudgeConfig(StrictModel):
    NOT_OUTPUT = frozenset({"batch_size", "cache_path", "engine_retries", "engine_backoff_s"})  # pace, not verdicts
    inputs: list[str] = Field(
        min_length=1, description="pair files or folders, saved datasets, hf://NAME, judge/pairs/translate runs"
    )
    out: str
    engine: EngineConfig = Field(default_factory=lambda: EngineConfig(kind="vllm", model=PAPER_JUDGE_MODEL))
    sampling: SamplingParams = Field(default_factory=lambda: SamplingParams(max_tokens=16, temperature=0.0))
    prompt: str = Field(JUDGE_PROMPT, description="uses {src}, {tgt}, {source_language}, {target_language}")
    system: str | None = Field(None, description="an optional system message")
    src_lang: str = "en"
    tgt_lang: str = "ar"
    split: str = Field("train", description="which split of a saved or hub dataset to read")
    limit: int | None = Field(None, ge=1, description="only the first N rows of each input file")
    rows_per_unit: int = Field(10_000, ge=1, description="pairs per unit of work (resume granularity)")
    batch_size: int = Field(4096, ge=1, description="pairs per engine call")
    cache_path: str | None = Field(None, description="default: OUT/cache/verdicts.sqlite")
    engine_retries: int = Field(2, ge=0)
    engine_backoff_s: float = Field(2.0, ge=0)
    output_format: Literal["jsonl", "parquet"] = "jsonl"
    strict: bool = Field(False, description="stop at the first unreadable row")

    @field_validator("engine", mode="before")
    @classmethod
    def _paper_model(cls, value):
        """Setting only some engine keys keeps the paper's judge model (not the engine's empty one)."""
        if isinstance(value, dict) and not value.get("model"):
            return {**value, "model": PAPER_JUDGE_MODEL}
        if isinstance(value, EngineConfig) and not value.model:
            return value.model_copy(update={"model": PAPER_JUDGE_MODEL})
        return value

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, value: str) -> str:
        return check_template(value)

    @model_validator(mode="after")
    def _languages(self) -> JudgeConfig:
        language_name(self.src_lang), language_name(self.tgt_lang)
        if self.src_lang == self.tgt_lang:
            raise ValueError(f"src_lang and tgt_lang are both {self.src_lang!r}")
        return self


class UnitJudge:
    """Judges one unit; `finish_unit` hands run_units the unit's counts."""

    def __init__(self, cfg: JudgeConfig, asker: CachedChat, sources: dict[str, Source]):
        self.cfg, self.asker, self.sources = cfg, asker, sources
        template = cfg.prompt if not cfg.system else f"{cfg.system}\n{cfg.prompt}"
        self.key_prefix = (asker.model_id, template, cfg.sampling.model_dump())
        self.counts: Counter = Counter()

    def _key(self, pair) -> str:
        text = json.dumps([pair.src_lang, pair.tgt_lang, pair.src, pair.tgt], ensure_ascii=False)
        return request_key(*self.key_prefix, text)

    def __call__(self, unit: Unit, rejects):
        cfg = self.cfg
        rows = list(read_source(self.sources[unit.file], rejects, src_lang=cfg.src_lang, tgt_lang=cfg.tgt_lang,
                                split=cfg.split, start=unit.start, stop=unit.stop, files=(unit.file,)))  # fmt: skip
        chats = [render_judge(cfg.prompt, pair, cfg.system) for _, _, pair in rows]
        answers = self.asker.ask([self._key(pair) for _, _, pair in rows], chats)
        for (file, line, pair), answer in zip(rows, answers):
            self.counts["judged"] += 1
            verdict = "engine_error" if answer.error is not None else parse_verdict(answer.text)
            self.counts[f"verdict_{verdict}"] += 1
            if verdict == ACCEPT:
                judged = {"verdict": verdict, "answer": answer.text, "model": self.asker.model_id}
                yield pair.model_copy(update={"meta": {**pair.meta, "judge": judged}})
                continue
            said = answer.error if answer.error is not None else answer.text
            raw = json.dumps({"pair": pair.model_dump(), "answer": said}, ensure_ascii=False)
            reason = f"pair {pair.id}: judge {'failed' if answer.error else 'answered'} {_short(said)!r}"
            # a verdict, not bad input: kept like any reject, but it neither stops a --strict run nor logs a warning
            rejects.rejects.append(Reject(file, line, f"judge_{verdict}", reason, raw))

    def finish_unit(self, unit: Unit) -> dict:
        numbers = self.asker.take_stats()
        numbers.update(self.counts)
        self.counts = Counter()
        return numbers


def _short(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _limit(units: list[Unit], limit: int | None) -> list[Unit]:
    if limit is None:
        return units
    return [Unit(u.file, u.start, min(u.stop, limit)) for u in units if u.start < limit]


@holds_output()
def judge(cfg: JudgeConfig) -> Manifest:
    """Judge every pair of `cfg.inputs` into `cfg.out` (see the module docstring)."""
    out = Path(cfg.out)
    sources = {f: source for source in map(resolve, cfg.inputs) for f in source.files}
    inputs = [FileEntry.of(f) for f in sources]
    config = cfg.identity()
    if is_current(out, config, inputs):
        log.info("%s is up to date; nothing to do", out)
        return Manifest.read(out)
    claim_output(out, config, inputs)

    started = time.perf_counter()
    units = _limit(plan_units(list(sources), cfg.rows_per_unit, cfg.split), cfg.limit)
    cache_path = cfg.cache_path or out / "cache" / "verdicts.sqlite"
    asker = CachedChat(cfg.engine, cfg.sampling, cache_path, batch_size=cfg.batch_size,
                       retries=cfg.engine_retries, backoff_s=cfg.engine_backoff_s)  # fmt: skip
    work = UnitJudge(cfg, asker, sources)
    try:
        stats = run_units(units, out, work, fmt=cfg.output_format, strict=cfg.strict, unit_stats=work.finish_unit)
    finally:
        asker.close()
    stats.raise_for_failed_requests(out, rows="pairs")
    counts = {"judged": 0, **{f"verdict_{v}": 0 for v in VERDICTS}, **stats.counts(), "units": len(units)}
    judged = counts["judged"]
    metrics = {
        "kept_fraction": round(counts[f"verdict_{ACCEPT}"] / judged, 6) if judged else 0.0,
        "unparseable_fraction": round(counts["verdict_unparseable"] / judged, 6) if judged else 0.0,
    }
    manifest = Manifest(
        stage="judge",
        config=config,
        inputs=inputs,
        outputs=[FileEntry.of(p) for p in stats.outputs + stats.rejected],
        counts=counts,
        metrics=metrics,
        timings={"total_s": round(time.perf_counter() - started, 3)},
    )
    manifest.write(out)
    return manifest
