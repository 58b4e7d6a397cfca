"""`hala merge`: SLERP a fine-tune with its base, streaming, checked before and after.

Stage 6 of the recipe (the paper: mergekit SLERP, t = 0.5). In order: every check that needs no
data (`plan`), pass 1 over the weights (norms, cos θ, NaN/Inf), and only then the output is
written, into a temporary folder next to `out`: the merged shards, the base's config.json (with
the dtype and vocabulary the merge produced), the base's other side files (license, custom code:
`checkpoint.side_files`, the same list quantize copies), and the tokenizer, chat template and
generation config of `tokenizer_source`. The merged model must then load and generate (`check`).
It is a model folder to the stage frame (`hala.frame`): renamed to `out` at the end, with the
manifest as its last file, so an interrupted merge leaves no output folder; a folder that already
holds files is refused, and a finished merge with the same settings and inputs is skipped.
The manifest records the resolved t, method (slerp, or lerp for colinear tensors) and cos θ of
every tensor.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from pydantic import Field

from hala.checkpoint import (
    copy_side_files,
    is_tokenizer_file,
    parse_size,
    side_files,
    weight_files,
    write_model_config,
)
from hala.data.manifest import Manifest
from hala.data.output_lock import holds_output
from hala.frame import InputHashes, StageFrame
from hala.merge.config import MergeConfig
from hala.merge.plan import check_plan_structure, plan_merge

log = logging.getLogger("hala.merge")


class MergeManifest(Manifest):
    """The manifest of a merge: the common record plus what happened to each tensor."""

    tensors: dict[str, dict[str, Any]] = Field(default_factory=dict)
    check: dict[str, Any] | None = None


def _side_files(cfg: MergeConfig) -> list[Path]:
    """The base's side files, but the tokenizer files (and templates) of `tokenizer_source`."""
    tokenizer_from = Path(cfg.base if cfg.tokenizer_source == "base" else cfg.model)
    others = [p for p in side_files(Path(cfg.base)) if not is_tokenizer_file(p)]
    return others + [p for p in side_files(tokenizer_from) if is_tokenizer_file(p)]


def _input_files(cfg: MergeConfig, copied: list[Path]) -> list[Path]:
    base, model = Path(cfg.base), Path(cfg.model)
    files = [base / "config.json", *weight_files(base, cfg.allow_pickle)]
    files += [model / "config.json", *weight_files(model, cfg.allow_pickle)]
    return files + copied


@holds_output()
def merge(cfg: MergeConfig) -> MergeManifest:
    from hala.merge.check import generation_check
    from hala.merge.stream import Buffers, chunk_elements, measure, pass1_workers, write_merged

    frame = StageFrame("merge", cfg, output="model", manifest=MergeManifest)
    # The inputs are hashed, and the tensors checked against config.json (headers only), on threads of
    # their own while pass 1 (which writes nothing) runs: the stream runs torch on one thread
    # (hala.merge.stream), so the cores are shared rather than waited for. The hashes decide whether
    # an output already there is current; with no output there, nothing can be, so pass 2 starts at
    # once and they are awaited before the manifest (a first merge of 5 GB of inputs hashes for ~2.5 s).
    # Hashes are remembered across runs (hala.data.hash_cache): an unchanged input is not read again.
    with InputHashes(lambda: _input_files(cfg, _side_files(cfg))) as hashing, ThreadPoolExecutor(1) as beside:
        plan = plan_merge(cfg, structure=False)  # refuses mismatched models before a tensor is read
        structure = beside.submit(check_plan_structure, plan, Path(cfg.base))
        frame.timings["plan_s"] = frame.elapsed()
        buffers = Buffers(chunk_elements(cfg.chunk_mb))  # one set for both passes
        with frame.timer("measure_s"):
            stats = measure(plan.tensors, buffers, pass1_workers())  # refuses NaN/Inf: nothing written yet
        structure.result()
        copied = _side_files(cfg)
        first = not Path(cfg.out).exists()
        if not first and (done := frame.open(hashing.result())):
            return done

        with frame.model_folder() as tmp:
            with frame.timer("write_s"):
                result = write_merged(plan.tensors, stats, tmp, parse_size(cfg.max_shard_size), buffers)
            copy_side_files(copied, tmp)
            write_model_config(tmp, plan.config)
            if first:
                frame.open(hashing.result())  # the inputs' entries for the manifest (out is still absent)
            frame.timings["hashed_s"] = frame.elapsed()

            check = None
            if cfg.check.enabled:
                with frame.timer("check_s"):
                    check = generation_check(tmp, cfg.check, cfg.trust_remote_code)
            methods = [r["method"] for r in result.tensors.values()]
            counts = {
                "tensors": len(methods),
                "slerp": methods.count("slerp"),
                "lerp": methods.count("lerp"),
                "copied": methods.count("copy"),
                "parameters": sum(p.numel for p in plan.tensors),
                "shards": len(result.shards),
                "bytes_out": result.bytes_out,
                "layers": plan.num_layers,
            }
            frame.finish(counts, tensors=result.tensors, check=check)
    log.info(
        "wrote %s: %d tensors (%d slerp, %d lerp)", cfg.out, len(methods), methods.count("slerp"), methods.count("lerp")
    )
    return frame.manifest  # as it lies now that the folder is in place (it was written in tmp)
