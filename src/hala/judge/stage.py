"""`hala judge`: a model gives every parallel pair a score and a verdict (ACCEPT/REJECT).

The paper's setup is the default: `Qwen/Qwen2.5-3B-Instruct` on vLLM, greedy, a strict bilingual
judge prompt (ours, see `prompt.JUDGE_PROMPT`), `mode: generate`. The scoring modes (`choice`,
`likelihood`, see `scores`) read log-probabilities instead of text, so no pair is unparseable. For
each unit of work (a file x a range of rows):

1. read the pairs (any input `hala pairs` reads; unreadable rows go to `rejected/`);
2. score every pair through the cache (answers for `generate`, scores for the others): a pair
   already judged with the same model and settings is a lookup, in this run or any other. The
   threshold is not part of the key: changing only the threshold never calls the engine;
3. write accepted pairs to `data/` and rejected ones to `rejected/`, both with
   `meta.judge = {mode, score, verdict, threshold, model}` (and the raw answer for `generate`, the
   reason for a pair the script gate scored, see `scores`). A rejected pair is a verdict in the
   filters' shape (`Judged.rejection`: kind `judge_<verdict>` and its reason), kept through
   `RejectLog.verdict`: it neither stops a --strict run nor logs a warning.

With `gold` set, the judge is first calibrated on that labelled set (`calibration`): the figures go
into the manifest and `calibration.json`, and `threshold: calibrated` takes the threshold that
maximises balanced accuracy there.

Units finish atomically (`hala.data.units.run_units`), so a killed run resumes where it stopped,
and its finished batches are in the cache. As translate, the judge runs as shards (`--shard I/N`,
interleaved units, each shard its own manifest and cache file) launched by hand or by an executor
(`--executor local|slurm|ray --workers K`, `hala.launch`), and `--merge-shards` assembles OUT/merged/. A pair whose request failed is rejected alone, as
`judge_engine_error` with its own error; its unit is redone on a rerun, and until then `judge`
raises `hala.data.units.RequestsFailed` (no manifest; the CLI exits 3). `manifest.json` counts each
verdict and reports the kept fraction (accepted / judged).

The folder is claimed, skipped when current and finished by the stage frame (`hala.frame`), like
every stage's. One rule is the judge's own and runs before the frame opens: a folder judged with
another threshold only is decided again from the cached scores instead of being refused.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from hala.data.manifest import Manifest
from hala.data.output_lock import holds_output
from hala.data.plan import Unit, plan_units, shard_units
from hala.data.units import REJECTED, STATS, run_units
from hala.engines.base import EngineConfig, SamplingParams
from hala.frame import StageFrame
from hala.judge.prompt import ACCEPT, JUDGE_PROMPT, PAPER_JUDGE_MODEL, VERDICTS, JudgePrompt
from hala.judge.scores import DEFAULT_THRESHOLDS, make_scorer
from hala.launch.config import ShardedConfig
from hala.launch.executors import launch
from hala.pairs.sources import Source, read_source, resolve
from hala.text.languages import check_language_pair
from hala.text.prompts import PAPER_TEMPLATE, TranslatorPrompt

log = logging.getLogger("hala.judge")


class JudgeConfig(ShardedConfig):
    # pace and launch, not verdicts (the shard count comes back in identity())
    NOT_OUTPUT = ShardedConfig.LAUNCH | {"batch_size", "cache_path", "engine_retries", "engine_backoff_s"}
    inputs: list[str] = Field(
        min_length=1, description="pair files or folders, saved datasets, hf://NAME, judge/pairs/translate runs"
    )
    out: str
    engine: EngineConfig = Field(default_factory=lambda: EngineConfig(kind="vllm", model=PAPER_JUDGE_MODEL))
    mode: Literal["generate", "choice", "likelihood"] = Field(
        "generate", description="generate: parse a written ACCEPT/REJECT (the paper's); choice: p(ACCEPT) from the "
        "labels' log-probabilities; likelihood: mean log-probability of the target under a translation model"
    )
    threshold: float | Literal["calibrated"] | None = Field(
        None, description="accept when score >= threshold; default: 0.5 (generate, choice), -2.0 (likelihood); "
        "'calibrated': the best threshold on `gold`"
    )
    sampling: SamplingParams = Field(default_factory=lambda: SamplingParams(max_tokens=16, temperature=0.0))
    prompt: JudgePrompt = Field(
        JUDGE_PROMPT, description="generate/choice: uses {src}, {tgt}, {source_language}, {target_language}"
    )
    labels: list[str] = Field(["ACCEPT", "REJECT"], description="choice: the accept label, then the reject label")
    translate_prompt: TranslatorPrompt = Field(
        PAPER_TEMPLATE, description="likelihood: the translator prompt ({language}, {text})"
    )
    reverse: bool = Field(False, description="likelihood: average with the reverse direction (source given target)")
    language_gate: float | None = Field(
        0.5, ge=0, le=1, description="choice/likelihood: a target with fewer than this share of its letters in the "
        "target's script gets the floor score without asking the model (an untranslated copy); null: off"
    )
    gold: str | None = Field(None, description="a labelled gold set (label 1 good, 0 bad) to calibrate on first")
    gold_per_kind: int | None = Field(
        None, ge=1, description="calibrate on only the first N gold pairs of each kind (good, swapped, ...): a "
        "smaller set that keeps every kind; null: all of them")
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

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: list[str]) -> list[str]:
        if len(value) != 2 or not all(v.strip() for v in value) or value[0] == value[1]:
            raise ValueError(f"labels must be two different non-empty words, accept first (got {value})")
        return value

    def decision_threshold(self, calibrated: float | None = None) -> float:
        """The number a score must reach to be accepted."""
        if self.threshold == "calibrated":
            if calibrated is None:
                raise ValueError("threshold: calibrated needs a gold set (set gold: FILE)")
            return calibrated
        return DEFAULT_THRESHOLDS[self.mode] if self.threshold is None else float(self.threshold)

    @model_validator(mode="after")
    def _languages(self) -> JudgeConfig:
        check_language_pair(self.src_lang, self.tgt_lang)
        if self.threshold == "calibrated" and not self.gold:
            raise ValueError("threshold: calibrated needs gold: a labelled gold set to calibrate on")
        return self


class UnitJudge:
    """Judges one unit; `finish_unit` hands run_units the unit's counts."""

    def __init__(self, cfg: JudgeConfig, scorer, sources: dict[str, Source], threshold: float):
        self.cfg, self.scorer, self.sources, self.threshold = cfg, scorer, sources, threshold
        self.counts: Counter = Counter()

    def __call__(self, unit: Unit, rejects):
        cfg = self.cfg
        rows = list(read_source(self.sources[unit.file], rejects, src_lang=cfg.src_lang, tgt_lang=cfg.tgt_lang,
                                split=cfg.split, start=unit.start, stop=unit.stop, files=(unit.file,)))  # fmt: skip
        judged = self.scorer.judge([pair for _, _, pair in rows], self.threshold)
        for (file, line, pair), result in zip(rows, judged):
            self.counts["judged"] += 1
            self.counts[f"verdict_{result.verdict}"] += 1
            record = {"mode": cfg.mode, "score": result.score, "verdict": result.verdict,
                      "threshold": self.threshold, "model": self.scorer.model_id}  # fmt: skip
            if result.answer is not None:
                record["answer"] = result.answer
            if result.gate is not None:
                record["gate"] = result.gate
                self.counts["gated_script"] += 1
            scored = pair.model_copy(update={"meta": {**pair.meta, "judge": record}})
            rejection = result.rejection(self.threshold)
            if rejection is None:
                yield scored
                continue
            kind, reason = rejection
            said = result.error if result.error is not None else result.answer
            raw = {"pair": scored.model_dump(), "score": result.score}
            if said is not None:
                raw["answer"] = said
            rejects.verdict(file, line, kind, f"pair {pair.id}: {reason}", json.dumps(raw, ensure_ascii=False))

    def finish_unit(self, unit: Unit) -> dict:
        numbers = self.scorer.take_stats()
        numbers.update(self.counts)
        self.counts = Counter()
        return numbers


def _limit(units: list[Unit], limit: int | None) -> list[Unit]:
    if limit is None:
        return units
    return [Unit(u.file, u.start, min(u.stop, limit)) for u in units if u.start < limit]


def _redecide_if_only_the_threshold_changed(out: Path, config: dict) -> None:
    """A folder judged with another threshold only: drop its verdicts (data/, rejected/, stats/) and
    keep its score cache, so the run decides again from the cache instead of refusing the folder.
    Not for a sharded run, whose shards would race to drop them: its folder is refused as usual."""
    import shutil

    from hala.data.manifest import MANIFEST, RUN_STAMP

    stamp = out / RUN_STAMP
    if config["mode"] == "generate" or config["num_shards"] > 1 or not stamp.exists():
        return
    previous = json.loads(stamp.read_text(encoding="utf-8"))["config"]
    if previous == config or {**previous, "threshold": config["threshold"]} != config:
        return
    log.info("%s: only the threshold changed (%s -> %s); deciding again from the cached scores",
             out, previous["threshold"], config["threshold"])  # fmt: skip
    for name in ("data", REJECTED, STATS):
        shutil.rmtree(out / name, ignore_errors=True)
    (out / MANIFEST).unlink(missing_ok=True)
    stamp.unlink()


def summary_metrics(counts: dict) -> dict:
    """The kept and unparseable fractions of a run's verdict counts (of one run, or of merged shards)."""
    judged = counts.get("judged", 0)
    return {
        "kept_fraction": round(counts.get(f"verdict_{ACCEPT}", 0) / judged, 6) if judged else 0.0,
        "unparseable_fraction": round(counts.get("verdict_unparseable", 0) / judged, 6) if judged else 0.0,
    }


@holds_output(shared=JudgeConfig.one_of_shards)
def judge(cfg: JudgeConfig) -> Manifest:
    """Judge (shard `cfg.shard` of) the pairs of `cfg.inputs` into `cfg.out` (see the module docstring)."""
    if cfg.executor != "none":
        return launch("judge", cfg)
    frame = StageFrame("judge", cfg, shard=cfg.shard)
    sources = {f: source for source in map(resolve, cfg.inputs) for f in source.files}
    _redecide_if_only_the_threshold_changed(frame.out, frame.identity)
    model = cfg.engine.model if Path(cfg.engine.model).is_dir() else None  # a local model's content is an input
    if done := frame.open([*sources, *([cfg.gold] if cfg.gold else []), *([model] if model else [])]):
        return done

    units = _limit(plan_units(list(sources), cfg.rows_per_unit, cfg.split), cfg.limit)
    units = shard_units(units, cfg.shard_index, cfg.num_shards)
    model_sha256 = next((i.sha256 for i in frame.inputs if i.path == model), None)
    scorer = make_scorer(cfg, cfg.cache_path or frame.out / "cache" / "verdicts.sqlite", model_sha256)
    metrics: dict[str, float] = {}
    try:
        calibrated = None
        if cfg.gold:
            from hala.judge.calibration import calibrate_with

            figures = calibrate_with(scorer, cfg, frame.out)
            metrics.update(figures.flat())
            calibrated = figures.best_threshold
        threshold = cfg.decision_threshold(calibrated)
        work = UnitJudge(cfg, scorer, sources, threshold)
        stats = run_units(units, frame.out, work, fmt=cfg.output_format, strict=cfg.strict, unit_stats=work.finish_unit)
    finally:
        scorer.close()
    counts = {"judged": 0, **{f"verdict_{v}": 0 for v in VERDICTS}, **stats.counts(), "units": len(units)}
    if cfg.mode != "generate":
        counts.setdefault("gated_script", 0)
    metrics.update(summary_metrics(counts), threshold=threshold)
    return frame.finish_units(stats, counts, metrics, rows="pairs", units=units)
