"""Each registered architecture quantizes and its FP8 checkpoint loads and runs in transformers.

Tiny random models with the real transformers classes, so the tensor names are the ones hub
checkpoints of these families carry (Qwen2 biases, Gemma2's extra norms, Gemma 3's q/k norms,
Cohere's tied head).
"""

from __future__ import annotations

import json

import pytest
import torch

from hala.quantize import QuantizeConfig, quantize
from hala.quantize.architectures import ARCHITECTURES
from tests.test_quantize import read_checkpoint, same_bytes

CONFIGS = {"qwen2": "Qwen2Config", "gemma2": "Gemma2Config", "gemma3_text": "Gemma3TextConfig", "cohere": "CohereConfig",
           "cohere2": "Cohere2Config"}  # fmt: skip
VERIFY = {"engines": ["transformers"], "translations": 2, "heldout": 2, "max_tokens": 4, "max_text_tokens": 16}


@pytest.fixture(scope="module")
def tokenizer():
    from hala.models.tiny import build_tokenizer

    return build_tokenizer()


def test_every_registered_architecture_is_covered_here_or_elsewhere():
    assert set(ARCHITECTURES) == set(CONFIGS) | {"llama", "lfm2"}  # llama and lfm2: tests/test_quantize.py


@pytest.mark.parametrize("model_type", sorted(CONFIGS))
def test_architecture_quantizes_and_runs_in_transformers(model_type, tokenizer, tmp_path):
    import transformers
    from transformers import AutoModelForCausalLM

    from hala.models.tiny import _ids

    config = getattr(transformers, CONFIGS[model_type])(
        hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
        head_dim=64, max_position_embeddings=512, dtype="bfloat16", **_ids(tokenizer),
    )  # fmt: skip
    torch.manual_seed(0)
    source = tmp_path / model_type
    AutoModelForCausalLM.from_config(config).to(torch.bfloat16).save_pretrained(source)
    tokenizer.save_pretrained(source)

    manifest = quantize(QuantizeConfig(model=str(source), out=str(tmp_path / "fp8"), verify=VERIFY))
    before, after = read_checkpoint(source), read_checkpoint(tmp_path / "fp8")
    linear = {n for n, t in after.items() if t.dtype == torch.float8_e4m3fn}
    assert len(linear) == 2 * 7 == manifest.counts["quantized"]
    for name, tensor in before.items():
        if name not in linear:
            assert same_bytes(after[name], tensor), name  # biases, norms, embeddings untouched
    report = json.loads((tmp_path / "fp8" / "quantization_report.json").read_text())
    section = report["verification"]["transformers"]
    assert section["fp8_tensors_loaded"] == 14 and section["throughput"]["fp8_tokens"] > 0
    assert section["next_token"]["positions"] > 0 and section["next_token"]["mean_kl"] >= 0
