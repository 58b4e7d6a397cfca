"""The settings of `hala merge`, and the mergekit YAML subset it reads.

`--config` takes either hala's own YAML (the fields of `MergeConfig`) or a mergekit slerp config,
told apart by its `merge_method` key. A mergekit config is translated into hala's fields first and
the command's flags and `KEY=VALUE` overrides apply on top, so `hala merge --config slerp.yml
--out DIR` runs the merge `mergekit-yaml slerp.yml DIR` would. Only the slerp subset is read
(`merge_method`, `base_model`, `models` or `slices`, `parameters.t`, `dtype`); any other key is an
error that names it, rather than something silently ignored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from hala.config import ConfigError, StrictModel, apply_overrides, read_yaml, set_dotted, validate
from hala.merge.params import MergeSlice, TSetting, check_t

MERGEKIT_KEYS = ("merge_method", "base_model", "models", "slices", "parameters", "dtype")
DTYPES = ("bfloat16", "float16", "float32")


class CheckConfig(StrictModel):
    """After writing: load the merged model with transformers and generate a few tokens."""

    enabled: bool = True
    prompt: str = "اكتب جملة واحدة عن اللغة العربية."
    max_new_tokens: int = Field(8, ge=1)


class MergeConfig(StrictModel):
    NOT_OUTPUT = frozenset({"chunk_mb"})  # streaming memory, same roundings (hala.merge.stream)
    base: str = Field(description="the base model folder (t=0); the output keeps its config and dtype")
    model: str = Field(description="the fine-tuned model folder (t=1)")
    out: str
    t: TSetting = Field(0.5, description="a number, a per-layer gradient, or [{filter, value}, ...]")
    slices: list[MergeSlice] | None = Field(None, description="layer ranges with their own t (default: all layers)")
    dtype: Literal["bfloat16", "float16", "float32"] | None = Field(None, description="default: each base tensor's own")
    vocab_policy: Literal["refuse", "truncate"] = Field(
        "refuse",
        description="different vocabularies: refuse, or keep the token rows both share (mergekit's unsafe truncation)",
    )
    tokenizer_source: Literal["base", "model"] = Field(
        "base", description="where tokenizer, chat template and generation config come from"
    )
    allow_pickle: bool = False
    trust_remote_code: bool = False
    chunk_mb: float = Field(
        16, gt=0, description="MiB of float32 per input held at once while streaming (whole sub-chunks of 4 MiB)"
    )
    max_shard_size: int | str = "5GB"
    check: CheckConfig = Field(default_factory=CheckConfig)

    _t_range = field_validator("t")(check_t)


def _model_ref(value: Any, where: str) -> str:
    if isinstance(value, dict) and set(value) == {"model"}:
        value = value["model"]
    if not isinstance(value, str) or "+" in value:
        raise ConfigError(
            f"{where}: expected a model folder path (LoRA `model+adapter` references are not supported), got {value!r}"
        )
    return value


def _only(data: dict, allowed: tuple[str, ...], where: str) -> None:
    for key in data:
        if key not in allowed:
            raise ConfigError(
                f"{where}{key}: not supported by hala merge; the mergekit slerp subset it reads is {', '.join(allowed)}"
            )


def _t_of(parameters: Any, where: str) -> Any:
    if parameters is None:
        return None
    if not isinstance(parameters, dict):
        raise ConfigError(f"{where}parameters: expected a mapping, e.g. {{t: 0.5}}")
    _only(parameters, ("t",), f"{where}parameters.")
    return parameters.get("t")


def from_mergekit(data: dict, origin: str) -> dict:
    """A mergekit slerp config as a dict of `MergeConfig` fields (no `out`: mergekit takes it on the command line)."""
    where = f"{origin}: "
    _only(data, MERGEKIT_KEYS, where)
    if data["merge_method"] != "slerp":
        raise ConfigError(f"{where}merge_method: {data['merge_method']!r} is not supported; valid: slerp")
    if "base_model" not in data:
        raise ConfigError(f"{where}base_model: slerp needs a base model (the t=0 end)")
    base = _model_ref(data["base_model"], f"{where}base_model")
    if ("models" in data) == ("slices" in data):
        raise ConfigError(f"{where}give either models or slices (exactly one)")
    result: dict[str, Any] = {"base": base}
    if "models" in data:
        others = set()
        for i, entry in enumerate(data["models"] or []):
            if not isinstance(entry, dict):
                raise ConfigError(f"{where}models[{i}]: expected {{model: PATH}}")
            _only(entry, ("model",), f"{where}models[{i}].")
            others.add(_model_ref(entry["model"], f"{where}models[{i}].model"))
        others.discard(base)
        if len(others) != 1:
            raise ConfigError(
                f"{where}models: slerp merges the base with exactly one other model, got {sorted(others) or 'none'}"
            )
        result["model"] = others.pop()
    else:
        result["slices"], result["model"] = _slices(data["slices"], base, where)
    t = _t_of(data.get("parameters"), where)
    if t is not None:
        result["t"] = t
    if data.get("dtype") is not None:
        if data["dtype"] not in DTYPES:
            raise ConfigError(f"{where}dtype: {data['dtype']!r} is not supported; valid: {', '.join(DTYPES)}")
        result["dtype"] = data["dtype"]
    return result


def _slices(slices: Any, base: str, where: str) -> tuple[list[dict], str]:
    if not isinstance(slices, list) or not slices:
        raise ConfigError(f"{where}slices: expected a list of {{sources: [...]}}")
    result, other = [], None
    for i, entry in enumerate(slices):
        at = f"{where}slices[{i}]."
        if not isinstance(entry, dict):
            raise ConfigError(f"{at[:-1]}: expected {{sources: [...], parameters: ...}}")
        _only(entry, ("sources", "parameters"), at)
        sources = entry.get("sources") or []
        refs, ranges = [], []
        for j, source in enumerate(sources):
            _only(source, ("model", "layer_range"), f"{at}sources[{j}].")
            refs.append(_model_ref(source.get("model"), f"{at}sources[{j}].model"))
            ranges.append(tuple(source.get("layer_range") or ()))
        if len(refs) != 2 or base not in refs or refs[0] == refs[1]:
            raise ConfigError(
                f"{at}sources: slerp takes two sources per slice, the base model and one other; got {refs}"
            )
        if ranges[0] != ranges[1] or len(ranges[0]) != 2:
            raise ConfigError(
                f"{at}sources: both models must use the same layer_range, got {[list(r) for r in ranges]}"
            )
        this_other = refs[1] if refs[0] == base else refs[0]
        if other is not None and this_other != other:
            raise ConfigError(f"{at}sources: every slice must merge the same two models ({other} vs {this_other})")
        other = this_other
        piece: dict[str, Any] = {"layer_range": list(ranges[0])}
        t = _t_of(entry.get("parameters"), at)
        if t is not None:
            piece["t"] = t
        result.append(piece)
    return result, other


def load_merge_config(
    path: str | Path | None = None, settings: dict | None = None, overrides: list[str] | None = None
) -> MergeConfig:
    """The YAML file (hala's or mergekit's), then `settings` (dotted key -> value, None skipped),
    then `KEY=VALUE` overrides, validated as a `MergeConfig`."""
    data = read_yaml(path) if path else {}
    if "merge_method" in data:
        data = from_mergekit(data, str(path))
    for key, value in (settings or {}).items():
        if value is not None:
            set_dotted(data, key, value)
    data = apply_overrides(data, list(overrides or []))
    origin = str(path) if path else "<command line>"
    return validate(MergeConfig, data, origin)
