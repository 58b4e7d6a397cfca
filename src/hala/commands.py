"""The command table: each `hala` command that runs a stage, as its config, its function and its help.

`hala.cli` generates the command line from this table, and `hala.run.stages` builds the chain of
`hala run` from the same entries, so a stage's config and function are named once. Every command
takes `--config FILE` (YAML), then its shortcut flags, then `KEY=VALUE` overrides, each layer on
top of the one before. Any setting of the config is a `KEY=VALUE` (the help lists them), so a new
setting is one `Field(description=...)` on the config, not a new flag.

A flag is a shortcut for one setting (`--input/-i` sets `inputs`, `--no-verify` sets
`verify.enabled=false`). Its help is the setting's `Field(description=...)` with its choices and
default, unless the flag brings its own: a switch says what it switches (`--no-verify`), and a few
configs don't describe their `out` yet.

Configs and functions are named "module:attribute" and imported only when a command runs or shows
its own help: `hala --help` reads this table alone (the quantize and merge configs import torch).
"""

from __future__ import annotations

import types
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from hala.config import config_class

if TYPE_CHECKING:
    from hala.data.manifest import Manifest


def load(ref: str):
    """The attribute a "module:attribute" reference names, imported."""
    module, _, name = ref.partition(":")
    return getattr(import_module(module), name)


@dataclass(frozen=True)
class Flag:
    """`names` set the setting `key`: to the value given, or, for a switch, to `value` when present.
    A flag with an `action` ("module:function") runs that on the output folder instead of the command."""

    names: tuple[str, ...]
    key: str = ""
    value: Any = None
    help: str = ""
    action: str = ""

    @property
    def switch(self) -> bool:
        return self.value is not None or bool(self.action)


@dataclass(frozen=True)
class Command:
    config: str  # "module:Class", a StrictModel
    function: str  # "module:function", function(config) -> Manifest
    help: str
    flags: tuple[Flag, ...] = ()
    argument: str = ""  # a setting given as the command's first argument (`hala report RUN_DIR`)
    loader: str = ""  # "module:function"(path, settings, overrides), for a config file of another shape
    config_help: str = "YAML file with the settings (flags and overrides apply on top)"
    words: dict[str, Command] = field(default_factory=dict)  # `hala judge calibrate`: a leading word, another command
    input_from: str = ""  # the setting that is `inputs` when no --input is given (`hala judge calibrate --gold`)
    shows: Callable[[Manifest, Path], str] | None = None  # what the command prints after its summary
    merged_metrics: str = ""  # "module:function"(counts) -> metrics of a merged sharded run (`hala.launch.merge`)

    def load(self, attr: str):
        """The class or function named by `attr` ("config", "function", "loader"), imported."""
        return load(getattr(self, attr))

    def read_config(self, path, settings: dict, overrides: list[str]):
        """The config file, then the flags' `settings` (dotted key -> value, None skipped), then overrides."""
        if self.loader:
            return self.load("loader")(path, settings, overrides)
        from hala.config import load_config

        return load_config(self.load("config"), path, overrides, settings)


def setting(config: type[BaseModel], key: str) -> tuple[Any, Any]:
    """(field, default) of the setting at a dotted key; the default is PydanticUndefined when required.
    A nested setting's default is read from its section's default (a judge's `engine.model`)."""
    cls, section, found = config, None, None
    for part in key.split("."):
        if cls is None or part not in cls.model_fields:
            raise KeyError(f"{config.__name__} has no setting {key!r}")
        found = cls.model_fields[part]
        own = getattr(section, part, PydanticUndefined) if section is not None else PydanticUndefined
        section = own if own is not PydanticUndefined else found.get_default(call_default_factory=True)
        cls = config_class(found.annotation)
    return found, section


def _members(annotation) -> list:
    if get_origin(annotation) in (Union, types.UnionType):
        return [a for a in get_args(annotation) if a is not type(None)]
    return [annotation]


def value_type(annotation) -> tuple[type, bool]:
    """(what a flag's value is read as: int, float or str; whether the flag repeats) for a setting.
    Text wins over numbers in a union, so `--threshold calibrated` and `--threshold 0.4` both parse."""
    members = _members(annotation)
    if len(members) == 1 and get_origin(members[0]) is list:
        return value_type(get_args(members[0])[0])[0], True
    if any(m is str or get_origin(m) is Literal for m in members):
        return str, False
    return next((m for m in members if m in (int, float)), str), False


def flag_help(config: type[BaseModel], flag: Flag) -> str:
    """The help of a flag: its own, else its setting's description, choices and default."""
    if flag.action:
        return flag.help
    found, default = setting(config, flag.key)
    text = flag.help or found.description or ""
    if flag.switch:
        return text
    choices = [str(c) for m in _members(found.annotation) if get_origin(m) is Literal for c in get_args(m)]
    extra = [f"one of {', '.join(choices)}"] if choices and not flag.help else []
    if default is not PydanticUndefined and default not in (None, "", [], {}) and not isinstance(default, BaseModel):
        extra.append(f"default {', '.join(map(str, default)) if isinstance(default, list) else default}")
    if value_type(found.annotation)[1]:
        extra.append("repeatable")
    return f"{text} ({'; '.join(extra)})" if extra else text


def settings_help(config: type[BaseModel]) -> str:
    """The `KEY=VALUE` settings of a config, a section shown as `name.*`."""
    names = [f"{n}.*" if config_class(f.annotation) else n for n, f in config.model_fields.items()]
    return f"Settings, as KEY=VALUE ({config.__module__}.{config.__name__}): {', '.join(names)}."


def metrics(manifest: Manifest, out: Path) -> str:
    return ", ".join(f"{k}={v:.4f}" for k, v in manifest.metrics.items())


def results(manifest: Manifest, out: Path) -> str:
    return (out / "results.md").read_text(encoding="utf-8")


def page(manifest: Manifest, out: Path) -> str:
    return f"wrote {out / 'report.html'}"


def audit_page(manifest: Manifest, out: Path) -> str:
    return f"wrote {out / 'audit.html'} and {out / 'flagged.jsonl'}"


IO = (Flag(("--input", "-i"), "inputs"), Flag(("--out", "-o"), "out"))
STRICT = Flag(("--strict",), "strict", True)
LIMIT = Flag(("--limit",), "limit")
ENGINE = (Flag(("--model", "-m"), "engine.model"), Flag(("--engine",), "engine.kind"))
PICKLE = Flag(
    ("--allow-pickle",), "allow_pickle", True, "read .bin/.pt weights (pickle can run code: only trusted files)"
)
SHARDS = (  # a record stage run as shards (`hala.launch`)
    Flag(("--shard",), "shard"), Flag(("--executor",), "executor"), Flag(("--workers",), "workers"),
    Flag(("--submit",), "submit", True),
    Flag(("--merge-shards",), help="assemble OUT/merged/ from all finished shards of OUT",
         action="hala.launch.merge:merge_shards"),
)
JUDGE = (
    IO[0],
    Flag(("--out", "-o"), "out", help="output folder: data/ (accepted), rejected/, stats/, cache/, manifest.json"),
    *ENGINE, Flag(("--mode",), "mode"), Flag(("--threshold",), "threshold"), Flag(("--gold",), "gold"), LIMIT, STRICT,
)  # fmt: skip

GROUPS = {
    "data": "Read, validate and convert datasets into hala records.",
    "eval": "Evaluate models: the OALL v2 benchmarks, or translation quality.",
}
COMMANDS: dict[str, Command] = {
    "data convert": Command(
        "hala.data.convert:ConvertConfig", "hala.data.convert:convert",
        "Convert instruction data or parallel pairs into hala records; bad rows go to rejected/.",
        (*IO, Flag(("--format",), "format"), Flag(("--to",), "output_format"),
         Flag(("--sharegpt",), "output_schema", "sharegpt", "write the paper's ShareGPT schema"), STRICT),
    ),
    "data audit": Command(
        "hala.audit.config:AuditConfig", "hala.audit.stage:audit",
        "Audit a conversation corpus (ours or a released one): HTML tags and literal escapes outside code, "
        "untranslated turns, empty turns, loops, broken roles, mixed digits, length outliers; each flagged row "
        "in flagged.jsonl with its check and reason, counts in summary.json and audit.html.",
        (*IO, Flag(("--format",), "format"), Flag(("--lang",), "lang"), Flag(("--check",), "checks")),
        shows=audit_page,
    ),
    "data decontaminate": Command(
        "hala.decontaminate.stage:DecontaminateConfig", "hala.decontaminate.stage:decontaminate",
        "Take out of an Arabic SFT corpus every row holding an OALL v2 benchmark question or passage (normalised; "
        "verbatim or by n-gram overlap); flagged rows go to rejected/ naming the item.",
        (*IO, Flag(("--bench-dir",), "bench_dir"), Flag(("--format",), "format"), Flag(("--to",), "output_format"),
         Flag(("--sharegpt",), "output_schema", "sharegpt", "write the paper's ShareGPT schema"), STRICT),
    ),
    "generate": Command(
        "hala.engines.generate:GenerateConfig", "hala.engines.generate:generate",
        "Write the next assistant turn of every conversation with an engine (resumable).",
        (Flag(("--input", "-i"), "input"), Flag(("--out", "-o"), "out"), *ENGINE,
         Flag(("--max-tokens",), "sampling.max_tokens"), LIMIT, *SHARDS, STRICT),
    ),
    "translate": Command(
        "hala.translate.config:TranslateConfig", "hala.translate.pipeline:translate",
        "Translate conversations segment by segment, with a segment cache, QA, resume and shards.",
        (*IO, *ENGINE, Flag(("--source-lang",), "source_lang"), Flag(("--target-lang",), "target_lang"),
         *SHARDS, STRICT),
    ),
    "pairs": Command(
        "hala.pairs.config:PairsConfig", "hala.pairs.build:build_pairs",
        "Build the parallel corpus (filtered, deduplicated, split by source id) and the translator's SFT data.",
        (IO[0], Flag(("--out", "-o"), "out", help="output folder: pairs/, sft/, rejected/, manifest.json"),
         Flag(("--direction",), "sft.directions", help="the translator's training direction: en-ar or ar-en"),
         Flag(("--dev",), "splits.dev", help="fraction of source ids in dev"),
         Flag(("--test",), "splits.test", help="fraction of source ids in test"), LIMIT, STRICT),
    ),
    "judge": Command(
        "hala.judge.stage:JudgeConfig", "hala.judge.stage:judge",
        "Keep the pairs a judge ACCEPTs; the others go to rejected/, every row with its score (resumable, "
        "cached).\n\n`hala judge calibrate --gold FILE -m MODEL --mode likelihood -o OUT` scores only the gold set "
        "and reports accuracy, precision/recall of REJECT, Cohen's kappa, ROC AUC and the best threshold.",
        (*JUDGE, *SHARDS), shows=metrics, merged_metrics="hala.judge.stage:summary_metrics",
        words={"calibrate": Command("hala.judge.stage:JudgeConfig", "hala.judge.calibration:calibrate",
                                    "Score only the gold set", JUDGE, input_from="gold", shows=metrics)},
    ),
    "eval bench": Command(
        "hala.evaluate.bench:BenchConfig", "hala.evaluate.bench:bench",
        "The paper's six OALL v2 Arabic benchmarks (0-shot, acc_norm) via lighteval, with the paper's numbers "
        "alongside.",
        (Flag(("--model", "-m"), "models"), Flag(("--tasks", "-t"), "tasks"), Flag(("--data-dir",), "data_dir"), LIMIT,
         Flag(("--out", "-o"), "out"), Flag(("--backend",), "backend"), Flag(("--paper-row",), "paper_row"),
         Flag(("--batch-size",), "batch_size"), Flag(("--dtype",), "dtype")),
        shows=results,
    ),
    "eval translation": Command(
        "hala.evaluate.translation:TranslationEvalConfig", "hala.evaluate.translation:evaluate_translation",
        "BLEU and chrF++ (sacrebleu, signatures printed) of every model on the test pairs; the hypotheses are "
        "saved next to the scores.",
        (Flag(("--model", "-m"), "models"), Flag(("--data", "-d"), "data"), Flag(("--out", "-o"), "out"),
         Flag(("--engine",), "engine.kind"), LIMIT),
        shows=results,
    ),
    "quantize": Command(
        "hala.quantize.stage:QuantizeConfig", "hala.quantize.stage:quantize",
        "Compress a model to FP8 (compressed-tensors, as vLLM serves it), streaming, then verify it.",
        (Flag(("--model", "-m"), "model"), Flag(("--out", "-o"), "out", help="folder for the FP8 checkpoint, its "
         "report and manifest"), Flag(("--scheme",), "scheme", help="fp8-dynamic: FP8 weights, dynamic per-token FP8 "
         "activations"), Flag(("--ignore",), "ignore"), Flag(("--linear",), "linear_patterns"), PICKLE,
         Flag(("--no-verify",), "verify.enabled", False, "skip loading and comparing the FP8 model with its source")),
    ),
    "train": Command(
        "hala.train.config:TrainConfig", "hala.train.sft:train",
        "Supervised fine-tuning with TRL: completion-only loss for prompt-completion rows, assistant-only loss "
        "for conversations.\n\nAny TRL SFTConfig field as trl.NAME=VALUE. Multi-GPU: `accelerate launch "
        "--config_file recipes/accelerate/ddp.yaml -m hala.cli train ...`.",
        (Flag(("--model", "-m"), "model"), Flag(("--data", "-d"), "data"), Flag(("--out", "-o"), "out"),
         Flag(("--lora",), "lora", {}, "LoRA (merged at the end) instead of a full fine-tune"),
         Flag(("--resume",), "resume", True, "continue from the latest checkpoint in OUT/checkpoints")),
    ),
    "merge": Command(
        "hala.merge.config:MergeConfig", "hala.merge.stage:merge",
        "SLERP-merge a fine-tune with its base (mergekit's math), streaming, checked before and after.",
        (Flag(("--base", "-b"), "base"), Flag(("--model", "-m"), "model"),
         Flag(("--out", "-o"), "out", help="folder for the merged model and its manifest"),
         Flag(("--t",), "t"),
         Flag(("--dtype",), "dtype"), Flag(("--tokenizer-source",), "tokenizer_source"),
         Flag(("--vocab-policy",), "vocab_policy"), PICKLE,
         Flag(("--trust-remote-code",), "trust_remote_code", True, "let the check load custom model code"),
         Flag(("--no-check",), "check.enabled", False, "skip loading the merged model and generating a few tokens")),
        loader="hala.merge.config:load_merge_config",
        config_help="hala YAML, or a mergekit slerp YAML (merge_method: slerp)",
    ),
    "report": Command(
        "hala.run.report:ReportConfig", "hala.run.report:report",
        "Write RUN_DIR/report/report.html: stages, QA reasons, translation metrics, benchmarks, samples.",
        (Flag(("--out", "-o"), "out"),), argument="run", shows=page,
    ),
}  # fmt: skip
