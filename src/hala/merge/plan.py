"""What will be merged, and every check that needs no tensor data, before anything is written.

A SLERP merge of two checkpoints is only meaningful when they are the same network over the same
tokens. Merging a model whose embedding rows mean other tokens, or whose tensors are laid out for
another architecture, still "works" and produces a broken model (mergekit #169, #47), so we refuse:

- a different architecture (`architectures`, `model_type`) or an already quantized checkpoint
  (`checkpoint.model_config`, the rule quantize applies too);
- tensor names present in one model only, or shapes that differ (each named);
- a different vocabulary: a different `vocab_size`, embedding/LM-head rows, or token ids that map
  to other strings in the two tokenizers. `vocab_policy=truncate` keeps the rows both share
  (mergekit's unsafe truncation) when the shared ids mean the same tokens;
- a tensor for which no t is given;
- tensors that are not what the output's config.json describes (`checkpoint.structure`: missing
  or extra tensors, shapes, dtypes), which holds even when the generation check is switched off.
  That check builds the network with transformers (seconds of imports), so `plan_merge` can leave it
  to `check_plan_structure`, which the stage runs beside pass 1, still before writing.

Non-finite weights need the data; the first streaming pass refuses them, still before writing.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from hala.checkpoint import (
    DTYPE_NAMES,
    TensorRef,
    check_structure,
    read_model_config,
    refuse_quantized_tensors,
    tensor_refs,
    weight_files,
)
from hala.merge.config import MergeConfig
from hala.merge.params import check_slices, default_slices, layer_index, resolve_t
from hala.merge.slerp import compute_dtype

log = logging.getLogger("hala.merge")
# config keys that may differ between a base and its fine-tune without changing the network
_BOOKKEEPING = {"_name_or_path", "transformers_version", "torch_dtype", "dtype", "use_cache", "vocab_size"}


class MergeInputError(ValueError):
    """The two models can't be merged as asked; the message says where they differ and what to do."""


@dataclass
class TensorPlan:
    name: str
    base: TensorRef
    model: TensorRef
    shape: tuple[int, ...]  # output shape (vocab rows cut under vocab_policy=truncate)
    dtype: torch.dtype  # the result's: the merge's `dtype`, else the base tensor's
    t: float | None  # None: not floating point, copied from the base
    cast: torch.dtype | None = None  # the merge's `dtype`: both inputs are rounded to it first (mergekit)

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def compute_dtype(self) -> torch.dtype:
        """float32, or float64 when the inputs (as cast) are float64."""
        return compute_dtype(self.cast or torch.promote_types(self.base.torch_dtype, self.model.torch_dtype))


@dataclass
class MergePlan:
    tensors: list[TensorPlan]
    config: dict  # config.json of the output
    num_layers: int
    vocab_rows: int | None  # set when vocab_policy=truncate cut the vocabulary


def _text_config(config: dict, key: str):
    return config.get(key, (config.get("text_config") or {}).get(key))


def token_ids(folder: Path) -> dict[int, str] | None:
    """id -> token of the folder's tokenizer.json (model vocabulary and added tokens), None if absent."""
    path = folder / "tokenizer.json"
    if not path.exists():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    vocab = (data.get("model") or {}).get("vocab") or {}
    ids = (
        {i: piece[0] for i, piece in enumerate(vocab)}
        if isinstance(vocab, list)
        else {i: tok for tok, i in vocab.items()}
    )
    ids.update({t["id"]: t["content"] for t in data.get("added_tokens") or []})
    return ids


def _shown(items: list[str], limit: int = 5) -> str:
    more = f" (and {len(items) - limit} more)" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def plan_merge(cfg: MergeConfig, structure: bool = True) -> MergePlan:
    """The merge's plan; `structure=False` leaves `check_plan_structure` to the caller."""
    base_dir, model_dir = Path(cfg.base), Path(cfg.model)
    base_cfg, model_cfg = read_model_config(base_dir, "merge"), read_model_config(model_dir, "merge")
    for key in ("architectures", "model_type"):
        if base_cfg.get(key) != model_cfg.get(key):
            raise MergeInputError(
                f"different architectures: {base_dir} has {key}={base_cfg.get(key)!r}, {model_dir} has "
                f"{model_cfg.get(key)!r}; SLERP merges a fine-tune with its own base"
            )
    differing = sorted(
        k for k in set(base_cfg) | set(model_cfg) if k not in _BOOKKEEPING and base_cfg.get(k) != model_cfg.get(k)
    )
    if differing:
        log.warning("config.json differs in %s; the output keeps the base's values", _shown(differing, 10))

    base_refs = tensor_refs(weight_files(base_dir, cfg.allow_pickle))
    model_refs = {r.name: r for r in tensor_refs(weight_files(model_dir, cfg.allow_pickle))}
    refuse_quantized_tensors(base_dir, base_refs, "merge")
    refuse_quantized_tensors(model_dir, list(model_refs.values()), "merge")
    only_base = [r.name for r in base_refs if r.name not in model_refs]
    only_model = sorted(set(model_refs) - {r.name for r in base_refs})
    if only_base or only_model:
        parts = [
            f"only in {base_dir}: {_shown(only_base)}" if only_base else "",
            f"only in {model_dir}: {_shown(only_model)}" if only_model else "",
        ]
        raise MergeInputError(f"the two models have different tensors ({'; '.join(p for p in parts if p)})")

    rows = _vocab_rows(cfg, base_dir, model_dir, base_cfg, model_cfg, base_refs, model_refs)
    sizes = {_text_config(base_cfg, "vocab_size"), _text_config(model_cfg, "vocab_size")}
    layers = [i for i in (layer_index(r.name) for r in base_refs) if i is not None]
    num_layers = _text_config(base_cfg, "num_hidden_layers") or (max(layers) + 1 if layers else 0)
    slices = cfg.slices or default_slices(num_layers)
    if cfg.slices:
        try:
            check_slices(cfg.slices, num_layers)
        except ValueError as exc:
            raise MergeInputError(str(exc)) from None

    plans, problems = [], []
    for ref in base_refs:
        other = model_refs[ref.name]
        floating = ref.torch_dtype.is_floating_point
        if floating != other.torch_dtype.is_floating_point:
            problems.append(f"{ref.name} is {ref.dtype} in the base but {other.dtype} in the model")
            continue
        shape = ref.shape
        vocab_rows = (
            ref.shape[:1] != other.shape[:1]
            and ref.shape[1:] == other.shape[1:]
            and {ref.shape[0], other.shape[0]} <= sizes
        )
        if rows is not None and vocab_rows:
            shape = (rows, *ref.shape[1:])
        elif ref.shape != other.shape:
            problems.append(f"{ref.name} is {list(ref.shape)} in the base but {list(other.shape)} in the model")
            continue
        cast = getattr(torch, cfg.dtype) if cfg.dtype and floating else None
        try:
            t = resolve_t(ref.name, cfg.t, slices) if floating else None
        except ValueError as exc:
            raise MergeInputError(str(exc)) from None
        plans.append(TensorPlan(ref.name, ref, other, shape, cast or ref.torch_dtype, t, cast))
    if problems:
        raise MergeInputError(f"the two models differ in {len(problems)} tensor(s): {_shown(problems)}")

    config = dict(base_cfg)
    if cfg.dtype:
        config["dtype"] = cfg.dtype
        config.pop("torch_dtype", None)
    if rows is not None:
        config["vocab_size"] = rows
    plan = MergePlan(plans, config, num_layers, rows)
    if structure:
        check_plan_structure(plan, base_dir)
    return plan


def check_plan_structure(plan: MergePlan, base_dir: Path) -> None:
    """What will be written must be what the written config.json describes (a lying base config, ...)."""
    written = [TensorRef(p.name, DTYPE_NAMES[p.dtype], p.shape, p.base.file) for p in plan.tensors]
    check_structure(written, plan.config, base_dir / "config.json")


def _vocab_rows(cfg, base_dir, model_dir, base_cfg, model_cfg, base_refs, model_refs) -> int | None:
    """None when both models share one vocabulary; the rows to keep under vocab_policy=truncate."""
    sizes = (_text_config(base_cfg, "vocab_size"), _text_config(model_cfg, "vocab_size"))
    row_diffs = [
        f"{r.name} {list(r.shape)} vs {list(model_refs[r.name].shape)}"
        for r in base_refs
        if r.shape
        and r.shape[0] in sizes
        and r.shape[0] != model_refs[r.name].shape[0]
        and r.shape[1:] == model_refs[r.name].shape[1:]
    ]
    base_ids, model_ids = token_ids(base_dir), token_ids(model_dir)
    conflicts, extra = [], []
    if base_ids is not None and model_ids is not None and base_ids != model_ids:
        conflicts = [i for i in sorted(base_ids.keys() & model_ids.keys()) if base_ids[i] != model_ids[i]]
        extra = sorted(base_ids.keys() ^ model_ids.keys())
    elif base_ids is None or model_ids is None:
        log.warning(
            "no tokenizer.json in %s; vocabularies compared by size only", base_dir if base_ids is None else model_dir
        )
    if sizes[0] == sizes[1] and not row_diffs and not conflicts and not extra:
        return None

    what = [f"base has {sizes[0]} token rows, model {sizes[1]}"] if sizes[0] != sizes[1] else []
    if row_diffs:
        what.append(f"tensors that differ: {_shown(row_diffs)}")
    if conflicts:
        shown = [f"{i}: {base_ids[i]!r} vs {model_ids[i]!r}" for i in conflicts[:5]]
        what.append(f"{len(conflicts)} token id(s) mean different tokens ({_shown(shown)})")
    if extra:
        what.append(f"{len(extra)} token id(s) exist in one tokenizer only (first: {extra[0]})")
    message = f"different vocabularies in {base_dir} and {model_dir}: " + "; ".join(what)
    if conflicts:
        raise MergeInputError(
            message + ". Their embeddings can't be merged row by row: merge models that share a tokenizer"
        )
    if cfg.vocab_policy == "refuse":
        raise MergeInputError(
            message + ". Merge models with one vocabulary, or set vocab_policy=truncate to keep the token rows both "
            "have (only right when the extra tokens are not needed)"
        )
    rows = (
        min(min(r.shape[0], model_refs[r.name].shape[0]) for r in base_refs if r.shape and r.shape[0] in sizes)
        if row_diffs
        else sizes[0]
    )
    source_ids = base_ids if cfg.tokenizer_source == "base" else model_ids
    if source_ids and max(source_ids) >= rows:
        raise MergeInputError(
            message + f". With vocab_policy=truncate the merged model keeps {rows} token rows, but the "
            f"{cfg.tokenizer_source}'s tokenizer has ids up to {max(source_ids)}; take the tokenizer from the other model"
        )
    log.warning("vocab_policy=truncate: keeping the first %d token rows (%s)", rows, "; ".join(what))
    return rows
