"""The chain: each stage, what it reads from the stages before it, and how its config is built.

A stage's config is its recipe section with the linking paths filled in (`link`). A stage's config
and function are an entry of the command table (`hala.commands`), the very one its `hala` command
runs; three small composite stages live here: `models` (materialize the built-in models the recipe
names, `hala.models.builtin`), `warmup` (the tiny recipe's teacher warm-up on seed pairs) and
`decontaminate` (`hala data decontaminate` on the translated corpus, which a recipe can turn off).
The `audit` stage (`hala data audit`) reads the corpus sft trains on; nothing but the report reads it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from pydantic import Field

from hala.commands import COMMANDS, Command
from hala.config import StrictModel, set_dotted
from hala.data.manifest import Manifest
from hala.data.output_lock import holds_output
from hala.decontaminate.stage import DecontaminateConfig
from hala.models.builtin import BUILTIN_MODELS, builtin
from hala.run.recipe import Recipe, data_path, model_path


@dataclass(frozen=True)
class Stage:
    name: str
    about: str
    command: Command  # its config and function: an entry of the command table, or a composite below
    upstream: tuple[str, ...]
    link: Callable[[Recipe, Path], dict]  # dotted key -> value, set over the recipe section

    def load(self, attr: str):
        """The stage's config class (`"config"`) or function (`"function"`), imported."""
        return self.command.load(attr)


# --- composite stages -----------------------------------------------------------------------------


class ModelsConfig(StrictModel):
    out: str
    names: list[str] = Field(default_factory=list)


@holds_output()
def materialize_models(cfg: ModelsConfig) -> Manifest:
    for name in cfg.names:
        builtin(name).materialize_into_run(name, Path(cfg.out) / name)
    manifest = Manifest(stage="models", config=cfg.identity(), counts={"models": len(cfg.names)})
    manifest.write(cfg.out)
    return manifest


class WarmupConfig(StrictModel):
    """Fine-tune the teacher on seed pairs first (tiny recipe: SmolLM2 can't translate to Arabic)."""

    enabled: bool = False
    model: str = ""
    pairs: str = ""
    out: str
    train: dict = Field(default_factory=dict, description="hala train settings (epochs, learning_rate, lora, ...)")


@holds_output()
def warmup(cfg: WarmupConfig) -> Manifest:
    from hala.pairs.build import build_pairs
    from hala.pairs.config import PairsConfig
    from hala.train.config import TrainConfig
    from hala.train.sft import train

    out = Path(cfg.out)
    if not cfg.enabled:
        manifest = Manifest(stage="warmup", config=cfg.identity(), counts={"enabled": 0})
        manifest.write(out)
        return manifest
    build_pairs(PairsConfig(inputs=[cfg.pairs], out=str(out / "pairs"), splits={"dev": 0.0, "test": 0.0}))
    settings = {**cfg.train, "model": cfg.model, "data": [str(out / "pairs" / "sft" / "train.jsonl")], "out": str(out)}
    return train(TrainConfig.model_validate(settings))


class DecontaminateStageConfig(DecontaminateConfig):
    """`hala data decontaminate` on the SFT corpus, before sft: on unless the recipe turns it off."""

    enabled: bool = Field(True, description="false: sft trains on the translated corpus as it is")


@holds_output()
def decontaminate_stage(cfg: DecontaminateStageConfig) -> Manifest:
    from hala.decontaminate.stage import decontaminate

    if not cfg.enabled:
        manifest = Manifest(stage="decontaminate", config=cfg.identity(), counts={"enabled": 0})
        manifest.write(cfg.out)
        return manifest
    return decontaminate(DecontaminateConfig.model_validate(cfg.model_dump(exclude={"enabled"})))


# --- the chain --------------------------------------------------------------------------------------


def teacher(recipe: Recipe, run: Path) -> str:
    """The teacher as the chain uses it: warmed up if the recipe says so."""
    if recipe.warmup.get("enabled"):
        return str(run / "warmup" / "model")
    return model_path(recipe.models.teacher, run)


def _m(recipe: Recipe, run: Path, ref: str) -> str:
    return model_path(ref, run)


def sft_corpus(recipe: Recipe, run: Path) -> str:
    """What sft trains on: the decontaminated corpus, or the translated one where the recipe turns
    decontamination off."""
    return str(run / ("decontaminate" if recipe.decontaminate.get("enabled", True) else "translate") / "data")


def decontaminate_link(recipe: Recipe, run: Path) -> dict:
    """The translated corpus, checked against the benchmarks the bench stage scores (`data.bench_data`,
    default the bundled mini data), written in the translated corpus's own file format and schema."""
    sharegpt = recipe.translate.get("output_schema") == "sharegpt"
    return {"out": str(run / "decontaminate"), "inputs": [str(run / "translate" / "data")],
            "bench_dir": recipe.data.bench_data, "output_format": recipe.translate.get("output_format"),
            "output_schema": "sharegpt" if sharegpt else None}  # fmt: skip


def judge_link(recipe: Recipe, run: Path) -> dict:
    """The judge's model (`teacher`: the chain's own teacher, a translation model for `mode: likelihood`),
    its gold set (a `bundled:` name is resolved) and a score cache that outlives the judge folder, so a
    rerun that changes only the threshold scores nothing again."""
    model = teacher(recipe, run) if recipe.models.judge == "teacher" else _m(recipe, run, recipe.models.judge)
    gold = recipe.judge.get("gold")
    return {"out": str(run / "judge"), "inputs": [data_path(p) for p in recipe.data.external_pairs],
            "engine.model": model, "gold": data_path(gold) if gold else None,
            "cache_path": recipe.judge.get("cache_path") or str(run / "cache" / "judge.sqlite")}  # fmt: skip


MODELS = Command("hala.run.stages:ModelsConfig", "hala.run.stages:materialize_models", "materialize built-in models")
WARMUP = Command("hala.run.stages:WarmupConfig", "hala.run.stages:warmup", "warm the teacher up on seed pairs")
DECONTAMINATE = Command("hala.run.stages:DecontaminateStageConfig", "hala.run.stages:decontaminate_stage",
                        "take the rows holding a benchmark item out of the SFT corpus")  # fmt: skip
STAGES: list[Stage] = [
    Stage("models", "materialize built-in models", MODELS, (),
          lambda r, run: {"out": str(run / "models"),
                          "names": sorted({m for m in r.models.model_dump().values() if m in BUILTIN_MODELS})}),
    Stage("warmup", "warm the teacher up on seed pairs (optional)", WARMUP, ("models",),
          lambda r, run: {"out": str(run / "warmup"), "model": _m(r, run, r.models.teacher),
                          "pairs": data_path(r.data.warmup_pairs) if r.data.warmup_pairs else ""}),
    Stage("quantize", "FP8 teacher (compressed-tensors)", COMMANDS["quantize"], ("warmup",),
          lambda r, run: {"out": str(run / "quantize"), "model": teacher(r, run)}),
    Stage("teacher_translate", "the teacher translates English instruction data", COMMANDS["translate"], ("quantize",),
          lambda r, run: {"out": str(run / "teacher_translate"), "inputs": [data_path(p) for p in r.data.teacher_inputs],
                          "engine.model": str(run / "quantize") if r.teacher_fp8 else teacher(r, run)}),
    Stage("judge", "the judge scores the external pairs", COMMANDS["judge"], ("warmup",), judge_link),
    Stage("pairs", "the parallel corpus and the translator's training data", COMMANDS["pairs"],
          ("teacher_translate", "judge"),
          lambda r, run: {"out": str(run / "pairs"),
                          "inputs": [str(run / "teacher_translate")] + ([str(run / "judge")] if r.data.external_pairs else [])}),
    Stage("translator", "fine-tune the translator", COMMANDS["train"], ("pairs",),
          lambda r, run: {"out": str(run / "translator"), "model": _m(r, run, r.models.translator),
                          "data": [str(run / "pairs" / "sft" / "train.jsonl")]}),
    Stage("eval_translation", "BLEU/chrF++: translator base vs fine-tuned, teacher BF16 vs FP8",
          COMMANDS["eval translation"], ("translator", "quantize"),
          lambda r, run: {"out": str(run / "eval_translation"), "data": data_path(r.data.test_pairs),
                          "models": [f"translator_base={_m(r, run, r.models.translator)}",
                                     f"translator={run / 'translator' / 'model'}",
                                     f"teacher_bf16={teacher(r, run)}", f"teacher_fp8={run / 'quantize'}"]}),
    Stage("translate", "the translator translates the instruction sets", COMMANDS["translate"], ("translator",),
          lambda r, run: {"out": str(run / "translate"), "inputs": [data_path(p) for p in r.data.instructions],
                          "engine.model": str(run / "translator" / "model")}),
    Stage("decontaminate", "take the rows holding an OALL v2 item out of the SFT corpus", DECONTAMINATE,
          ("translate",), decontaminate_link),
    Stage("audit", "audit the SFT corpus (hala data audit)", COMMANDS["data audit"], ("decontaminate",),
          lambda r, run: {"out": str(run / "audit"), "inputs": [sft_corpus(r, run)], "bench_dir": r.data.bench_data}),
    Stage("sft", "fine-tune the Hala model on the Arabic corpus", COMMANDS["train"], ("decontaminate",),
          lambda r, run: {"out": str(run / "sft"), "model": _m(r, run, r.models.hala_base),
                          "data": [sft_corpus(r, run)]}),
    Stage("merge", "SLERP the fine-tune with its base", COMMANDS["merge"], ("sft",),
          lambda r, run: {"out": str(run / "merge"), "base": _m(r, run, r.models.hala_base),
                          "model": str(run / "sft" / "model")}),
    Stage("bench", "OALL v2: base, SFT, merged", COMMANDS["eval bench"], ("merge",),
          lambda r, run: {"out": str(run / "bench"), "data_dir": r.data.bench_data,
                          "models": [f"base={_m(r, run, r.models.hala_base)}", f"sft={run / 'sft' / 'model'}",
                                     f"merged={run / 'merge'}"]}),
    Stage("report", "the HTML report", COMMANDS["report"], ("eval_translation", "audit", "bench"),
          lambda r, run: {"out": str(run / "report"), "run": str(run)}),
]  # fmt: skip
BY_NAME = {s.name: s for s in STAGES}


def stage_config(stage: Stage, recipe: Recipe, run: Path) -> dict:
    """The stage's recipe section with the linking paths set (a plain dict, not yet validated)."""
    import copy

    data = copy.deepcopy(getattr(recipe, stage.name, {}) if stage.name != "models" else {})
    for key, value in stage.link(recipe, run).items():
        if value is not None:
            set_dotted(data, key, value)
    return data
