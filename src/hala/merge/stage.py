"""`hala merge`: SLERP a fine-tune with its base, streaming, checked before and after.

Stage 6 of the recipe (the paper: mergekit SLERP, t = 0.5). In order: every check that needs no
data (`plan`), pass 1 over the weights (norms, cos θ, NaN/Inf), and only then the output is
written, into a temporary folder next to `out`: the merged shards, the base's config.json (with
the dtype and vocabulary the merge produced), the base's other files, and the tokenizer, chat
template and generation config of `tokenizer_source`. The merged model must then load and generate
(`check`). The folder is renamed to `out` at the end, with the manifest as its last file, so an
interrupted merge leaves no output folder; a finished merge with the same settings and inputs is
skipped. The manifest records the resolved t, method (slerp, or lerp for colinear tensors) and
cos θ of every tensor.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

from pydantic import Field

from hala.checkpoint.reader import PICKLE_INDEX, SAFETENSORS_INDEX, weight_files
from hala.checkpoint.writer import parse_size
from hala.data.manifest import MANIFEST, RUN_STAMP, FileEntry, Manifest, OutputInUseError, is_current
from hala.data.output_lock import holds_output
from hala.data.writers import atomic_folder, atomic_write_text
from hala.merge.config import MergeConfig
from hala.merge.plan import plan_merge

log = logging.getLogger("hala.merge")

TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "tokenizer.model", "special_tokens_map.json", "added_tokens.json",
    "vocab.json", "vocab.txt", "merges.txt", "chat_template.jinja", "chat_template.json", "generation_config.json",
)  # fmt: skip
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
_NOT_COPIED = {"config.json", SAFETENSORS_INDEX, PICKLE_INDEX, MANIFEST, RUN_STAMP}


class MergeManifest(Manifest):
    """The manifest of a merge: the common record plus what happened to each tensor."""

    tensors: dict[str, dict[str, Any]] = Field(default_factory=dict)
    check: dict[str, Any] | None = None


def _is_tokenizer_file(path: Path) -> bool:
    return path.name in TOKENIZER_FILES or path.suffix == ".tiktoken"


def _other_files(folder: Path) -> list[Path]:
    """Top-level files that are neither weights, config, tokenizer, run records nor hidden (custom code, ...)."""
    return sorted(
        p for p in folder.iterdir()
        if p.is_file() and p.name not in _NOT_COPIED and not p.name.startswith(".")
        and not p.name.endswith(_WEIGHT_SUFFIXES) and not _is_tokenizer_file(p)
    )  # fmt: skip


def _tokenizer_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and _is_tokenizer_file(p))


def _inputs(cfg: MergeConfig) -> list[FileEntry]:
    base, model = Path(cfg.base), Path(cfg.model)
    files = [base / "config.json", *weight_files(base, cfg.allow_pickle), *_other_files(base)]
    files += [model / "config.json", *weight_files(model, cfg.allow_pickle)]
    files += _tokenizer_files(base if cfg.tokenizer_source == "base" else model)
    return [FileEntry.of(f) for f in files]


@holds_output()
def merge(cfg: MergeConfig) -> MergeManifest:
    from hala.merge.check import generation_check
    from hala.merge.stream import chunk_elements, measure, write_merged

    started = time.perf_counter()
    out = Path(cfg.out)
    config = cfg.identity()
    timings: dict[str, float] = {}
    plan = plan_merge(cfg)  # refuses mismatched models before hashing gigabytes
    # Hashing is sequential on purpose: a hashing thread beside torch's own threads made a 1B merge
    # twice as slow on 2 cores (torch's parallel regions wait for the core the hash holds).
    inputs = _inputs(cfg)
    if is_current(out, config, inputs):
        log.info("%s is up to date; nothing to do", out)
        return MergeManifest.read(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise OutputInUseError(f"{out} already holds other files; choose another output folder, or delete this one")
    timings["plan_s"] = round(time.perf_counter() - started, 3)

    step = chunk_elements(cfg.chunk_mb)
    t0 = time.perf_counter()
    stats = measure(plan.tensors, step)  # refuses NaN/Inf: nothing written yet
    timings["measure_s"] = round(time.perf_counter() - t0, 3)

    with atomic_folder(out) as tmp:
        t0 = time.perf_counter()
        result = write_merged(plan.tensors, stats, tmp, parse_size(cfg.max_shard_size), step)
        timings["write_s"] = round(time.perf_counter() - t0, 3)
        for path in _other_files(Path(cfg.base)):
            shutil.copy2(path, tmp / path.name)
        for path in _tokenizer_files(Path(cfg.base if cfg.tokenizer_source == "base" else cfg.model)):
            shutil.copy2(path, tmp / path.name)
        atomic_write_text(tmp / "config.json", json.dumps(plan.config, indent=2, ensure_ascii=False) + "\n")

        check = None
        if cfg.check.enabled:
            t0 = time.perf_counter()
            check = generation_check(tmp, cfg.check, cfg.trust_remote_code)
            timings["check_s"] = round(time.perf_counter() - t0, 3)
        methods = [r["method"] for r in result.tensors.values()]
        outputs = [FileEntry.of(p).model_copy(update={"path": str(out / p.name)}) for p in sorted(tmp.iterdir())]
        timings["total_s"] = round(time.perf_counter() - started, 3)
        manifest = MergeManifest(
            stage="merge",
            config=config,
            inputs=inputs,
            outputs=outputs,
            counts={
                "tensors": len(methods),
                "slerp": methods.count("slerp"),
                "lerp": methods.count("lerp"),
                "copied": methods.count("copy"),
                "parameters": sum(p.numel for p in plan.tensors),
                "shards": len(result.shards),
                "bytes_out": result.bytes_out,
                "layers": plan.num_layers,
            },
            timings=timings,
            tensors=result.tensors,
            check=check,
        )
        manifest.write(tmp)
    log.info(
        "wrote %s: %d tensors (%d slerp, %d lerp)", out, len(methods), methods.count("slerp"), methods.count("lerp")
    )
    return MergeManifest.read(out)  # as it lies now that the folder is in place (it was written in tmp)
