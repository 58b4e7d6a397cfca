"""The config of `hala train`: one TRL SFT run (translator or Hala model).

hala's own settings are the ones its recipes and checks rely on; any other field of TRL's
`SFTConfig` passes through `trl: {...}` (`hala train ... trl.neftune_noise_alpha=5`), so a TRL
option needs no field here. The names are checked against the installed TRL when the config is
read, not when training starts: a typo fails at once, with the valid names.
"""

from __future__ import annotations

import difflib
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from hala.config import StrictModel

# SFTConfig fields hala must set itself, and why
HALA_OWNS = {
    "output_dir": "hala writes the checkpoints to OUT/checkpoints (resume and the folder's claim rely on it); set out",
}


class LoraSettings(StrictModel):
    r: int = Field(16, ge=1)
    alpha: int = Field(32, ge=1)
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] | Literal["all-linear"] = "all-linear"


class TrainConfig(StrictModel):
    # resume only says whether to pick up this run's latest checkpoint: a resumed run is the same run
    NOT_OUTPUT = frozenset({"logging_steps", "save_steps", "save_total_limit", "gradient_checkpointing", "resume"})
    model: str = Field(description="base model folder or hub id")
    data: list[str] = Field(min_length=1, description="training files: prompt-completion rows or conversations")
    eval_data: list[str] = Field(default_factory=list)
    out: str = Field(description="OUT/model is the final checkpoint; OUT/checkpoints for resume")
    format: Literal["auto", "prompt_completion", "conversations"] = "auto"
    chat_template: str | None = Field(None, description="a jinja file to train and save with, instead of the model's")
    max_length: int = Field(2048, ge=8)
    packing: bool = False
    epochs: float = Field(1.0, gt=0)
    max_steps: int = Field(-1, description="if > 0, overrides epochs")
    learning_rate: float = Field(2e-5, gt=0)
    lr_scheduler: str = "cosine"
    warmup_ratio: float = Field(0.03, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    batch_size: int = Field(8, ge=1, description="per device")
    gradient_accumulation: int = Field(1, ge=1)
    gradient_checkpointing: bool = False
    bf16: bool | None = Field(None, description="None: bf16 on GPUs that support it, fp32 on CPU")
    lora: LoraSettings | None = Field(None, description="None = full fine-tune")
    save_dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field(
        "auto", description="dtype of the saved model; auto: the base model's (a BF16 base trained in FP32 on a "
        "CPU is saved in BF16, as the later stages serve and compare it)",
    )
    freeze_embeddings: bool = Field(
        False,
        description="don't train the input embedding (nor the LM head where it is tied to it): in a small model "
        "with a large vocabulary it is most of the parameters (Gemma-3-270M: 168M of 268M)",
    )
    freeze_layers: int = Field(
        0, ge=0,
        description="don't train the lowest N decoder layers either: with the embedding frozen too, the backward "
        "pass stops above them (on a CPU most of a small model's step); not with lora, which trains adapters only",
    )
    seed: int = 42
    logging_steps: int = Field(10, ge=1)
    save_steps: int = Field(500, ge=1)
    save_total_limit: int = Field(2, ge=1)
    resume: bool | str = Field(False, description="True: latest checkpoint in OUT/checkpoints; or a path")
    limit: int | None = Field(None, ge=1, description="only the first N training rows")
    trl: dict[str, Any] = Field(
        default_factory=dict,
        description="any other TRL SFTConfig field, set over what hala derives from its own settings "
        "(e.g. trl.gradient_checkpointing=true trl.neftune_noise_alpha=5)",
    )

    @model_validator(mode="after")
    def _freeze_layers_full_fine_tune(self) -> TrainConfig:
        if self.freeze_layers and self.lora:
            raise ValueError("freeze_layers is for a full fine-tune; with lora, choose lora.target_modules instead")
        return self

    @field_validator("trl")
    @classmethod
    def _sft_config_fields(cls, trl: dict[str, Any]) -> dict[str, Any]:
        if not trl:  # TRL (and torch with it) is imported only when a run names a TRL field
            return trl
        import dataclasses

        from trl import SFTConfig

        valid = sorted(f.name for f in dataclasses.fields(SFTConfig) if f.init and f.name not in HALA_OWNS)
        for name in trl:
            if name in HALA_OWNS:
                raise ValueError(f"trl.{name}: {HALA_OWNS[name]}")
            if name not in valid:
                near = difflib.get_close_matches(name, valid, n=3)
                hint = f"did you mean {', '.join(near)}? " if near else ""
                raise ValueError(f"trl.{name}: not a field of TRL's SFTConfig; {hint}valid: {', '.join(valid)}")
        return trl
