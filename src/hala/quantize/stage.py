"""`hala quantize`: compress a teacher to FP8 (compressed-tensors), stream by stream, and verify it.

Stage 1 of the recipe. The checkpoint is read tensor by tensor and never built as a model
(`hala.checkpoint`), so a 111B teacher quantizes on a machine with far less RAM than its weights;
vLLM serves the output as is, with the source's tokenizer, templates and license files beside it
(`checkpoint.side_files`). It is a model folder to the stage frame (`hala.frame`): written into a
temporary folder next to `out` and renamed at the end, so an interrupted run leaves nothing
half-written, with the manifest as its last file; a folder that already holds files is refused; a
finished run with the same settings and inputs is skipped (input hashes cost one read of the
checkpoint).

Refused, each with what to do: pickle weights (unless `allow_pickle`), an already-quantized
checkpoint (`checkpoint.model_config`, the rule merge applies too), an architecture we can't read
without `linear_patterns`, weights that are not what config.json describes (`checkpoint.structure`:
missing or extra tensors, shapes, dtypes; checked from the headers, so even with verification off),
NaN/Inf weights (named).

Verification loads the source and the result, one at a time, in each engine of `verify.engines`;
if either fails to load or gives NaN the run fails and keeps nothing. For the 111B teacher on a GPU
node that means e.g. `verify.engine.tensor_parallel_size=8 verify.device_map=auto`, or
`verify.engines=[vllm]` to leave transformers out.
"""

from __future__ import annotations

import logging
from typing import Literal

from pydantic import Field

from hala.checkpoint import (
    CheckpointError,
    check_structure,
    copy_side_files,
    parse_size,
    read_model_config,
    refuse_quantized_tensors,
    resolve_model,
    side_files,
    tensor_refs,
    weight_files,
    write_model_config,
)
from hala.config import StrictModel
from hala.data.manifest import Manifest
from hala.data.output_lock import holds_output
from hala.frame import StageFrame
from hala.quantize.architectures import HEAD, classify, get_architecture, ignored_modules, module_of
from hala.quantize.compressed_tensors_format import write_quantization_config
from hala.quantize.report import write_report
from hala.quantize.stream import quantize_checkpoint
from hala.quantize.verify import VerifyConfig, verify

log = logging.getLogger("hala.quantize")


class QuantizeConfig(StrictModel):
    NOT_OUTPUT = frozenset({"chunk_mb"})  # streaming memory, same bytes out
    model: str = Field(description="source checkpoint: a folder, or a hub id read through the HF cache")
    out: str
    scheme: Literal["fp8-dynamic"] = "fp8-dynamic"
    ignore: list[str] = Field(
        default_factory=list, description="extra modules kept unquantized (name, suffix or re:REGEX)"
    )
    linear_patterns: list[str] = Field(
        default_factory=list, description="regexes naming the Linear layers (unknown architectures)"
    )
    allow_pickle: bool = False
    max_shard_size: int | str = "5GB"
    chunk_mb: int = Field(32, ge=1, description="bytes of a tensor held at once while streaming")
    verify: VerifyConfig = Field(default_factory=VerifyConfig)


@holds_output()
def quantize(cfg: QuantizeConfig) -> Manifest:
    frame = StageFrame("quantize", cfg, output="model")
    source = resolve_model(cfg.model, cfg.allow_pickle)
    files = weight_files(source, cfg.allow_pickle)
    model_config = read_model_config(source, "quantize")
    refs = tensor_refs(files)
    refuse_quantized_tensors(source, refs, "quantize")
    arch = get_architecture(model_config.get("model_type"), cfg.linear_patterns)
    linear, unmatched = classify(refs, arch, model_config.get("hidden_size"))
    if not linear:
        raise CheckpointError(f"{source}: no Linear weights found to quantize")
    ignored = ignored_modules(linear, cfg.ignore, [r.name for r in refs])
    to_quantize = {n for n in linear if module_of(n) not in set(ignored)}
    ignore = sorted({HEAD, *ignored, *(module_of(n) for n in unmatched)})
    check_structure(refs, model_config, source / "config.json")  # O(header), before hashing or writing anything
    copied = side_files(source)
    if done := frame.open([source / "config.json", *files, *copied]):
        return done

    with frame.model_folder() as tmp:
        with frame.timer("quantize_s"):
            result = quantize_checkpoint(refs, to_quantize, tmp, parse_size(cfg.max_shard_size), cfg.chunk_mb << 20)
        copy_side_files(copied, tmp)
        write_model_config(tmp, model_config)
        write_quantization_config(tmp, cfg.scheme, ignore)

        report = {
            "model": cfg.model,
            "scheme": cfg.scheme,
            "ignore": ignore,
            "weights": result.error_summary(),
            "sizes": {"bytes_in": result.bytes_in, "bytes_out": result.bytes_out, "ratio": result.bytes_out / max(1, result.bytes_in)},
            "verification": None,
        }  # fmt: skip
        if cfg.verify.enabled:
            with frame.timer("verify_s"):
                report["verification"] = verify(source, tmp, cfg.verify, fp8_tensors=len(to_quantize))
        write_report(tmp, report)
        frame.finish({
            "tensors_in": result.tensors_in,
            "quantized": len(result.quantized),
            "copied": result.copied,
            "ignored_linear": len(ignored),
            "shards": len(result.shards),
            "bytes_in": result.bytes_in,
            "bytes_out": result.bytes_out,
        })  # fmt: skip
    log.info("wrote %s: %d Linear weights in FP8, %d shard(s)", cfg.out, len(result.quantized), len(result.shards))
    return frame.manifest  # as it lies now that the folder is in place (it was written in tmp)
