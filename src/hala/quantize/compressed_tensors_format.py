"""The one place hala talks to compressed-tensors (pinned to the version vLLM pins, 0.17.0).

vLLM and transformers decide how to load a checkpoint from `config.json`'s `quantization_config`.
We never write that block by hand: the scheme comes from compressed-tensors' own `FP8_DYNAMIC`
preset (FP8 weights with static per-channel scales, FP8 activations with dynamic per-token scales),
and the library's `ModelCompressor.update_config` writes it, so the file is what llm-compressor
would write with the same library version. `read_quantization_config` parses it back with the
library's parser, which is also how the tests check it.
"""

from __future__ import annotations

import json
from pathlib import Path

SCHEMES = {"fp8-dynamic": "FP8_DYNAMIC"}  # hala name -> compressed-tensors preset
FORMAT = "float-quantized"


def scheme_preset(scheme: str) -> str:
    if scheme not in SCHEMES:
        raise ValueError(f"unknown scheme {scheme!r}; valid: {', '.join(SCHEMES)}")
    return SCHEMES[scheme]


def build_quantization_config(scheme: str, ignore: list[str]):
    """A compressed-tensors QuantizationConfig: every Linear in the preset's scheme, but `ignore`."""
    from compressed_tensors.quantization import QuantizationConfig, QuantizationStatus, preset_name_to_scheme

    group = preset_name_to_scheme(scheme_preset(scheme), ["Linear"])
    group.format = FORMAT  # per group too, as llm-compressor records it
    return QuantizationConfig(
        config_groups={"group_0": group},
        format=FORMAT,
        quantization_status=QuantizationStatus.COMPRESSED,
        ignore=list(ignore),
    )


def write_quantization_config(folder: str | Path, scheme: str, ignore: list[str]) -> dict:
    """Add `quantization_config` to `folder/config.json` through compressed-tensors; returns it."""
    from compressed_tensors.compressors import ModelCompressor

    ModelCompressor(quantization_config=build_quantization_config(scheme, ignore)).update_config(str(folder))
    return json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))["quantization_config"]


def read_quantization_config(folder: str | Path):
    """The `quantization_config` of `folder/config.json`, parsed by compressed-tensors."""
    from compressed_tensors.quantization import QuantizationConfig

    data = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    if "quantization_config" not in data:
        raise ValueError(f"{folder}/config.json has no quantization_config")
    return QuantizationConfig.model_validate(data["quantization_config"])
