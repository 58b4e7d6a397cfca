"""The table of layouts says exactly what transformers builds, declines what it can't be sure of, and
lets `check_structure` pass (or fail) without importing transformers."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hala.checkpoint import StructureError, check_structure, structure, tensor_refs, weight_files
from hala.checkpoint.layouts import layout

ABSENT = object()  # the key is not in config.json
SHAPE = dict(vocab_size=96, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2)  # fmt: skip
TIE = {"tie_word_embeddings": [False, True]}
ATTENTION_BIAS = {"attention_bias": [ABSENT, False, True]}
LFM2_TIES = [{"tie_word_embeddings": True}, {"tie_word_embeddings": False},
             {"tie_embedding": True, "tie_word_embeddings": False}, {"tie_embedding": False}]  # fmt: skip
LFM2_KINDS = [{"full_attn_idxs": [1]}, {"full_attn_idxs": []}, {"layer_types": ["full_attention", "conv"]},
              {"layer_types": ["conv", "full_attention"], "full_attn_idxs": [0]}]  # fmt: skip
LFM2_FF = [{"block_auto_adjust_ff_dim": False},
           {"block_auto_adjust_ff_dim": True, "block_ffn_dim_multiplier": 1.0, "block_multiple_of": 256},
           {"block_ffn_dim_multiplier": 1.5, "block_multiple_of": 32},  # auto adjust by default
           {"block_auto_adjust_ff_dim": True, "block_ffn_dim_multiplier": 2, "block_multiple_of": 1}]  # fmt: skip


def _variants(model_type: str, options: dict[str, list], **fixed) -> list[dict]:
    """One config per combination of `options` (ABSENT leaves the key out)."""
    configs = []
    for values in itertools.product(*options.values()):
        config = {**SHAPE, "model_type": model_type, **fixed}
        for key, value in zip(options, values):
            if isinstance(value, dict):
                config.update(value)
            elif value is not ABSENT:
                config[key] = value
        configs.append(config)
    return configs


CONFIGS = [
    *_variants("llama", {"head_dim": [ABSENT, 32], **ATTENTION_BIAS, "mlp_bias": [ABSENT, True], **TIE}),
    *_variants("llama", TIE, architectures=["LlamaForCausalLM"], num_key_value_heads=4, pad_token_id=95),
    *_variants("mistral", {"head_dim": [ABSENT, 32], "attention_bias": [ABSENT, True], **TIE}),  # mistral: no bias
    *_variants("qwen2", {"head_dim": [ABSENT, 32], "layer_types": [ABSENT, ["full_attention", "sliding_attention"]],
                         **TIE, "attention_bias": [ABSENT, True]}),  # fmt: skip
    *_variants("qwen3", {"head_dim": [16, 32], **ATTENTION_BIAS, **TIE}),
    *_variants("gemma2", {"head_dim": [16, 32], "attention_bias": [ABSENT, True], **TIE}),
    *_variants("gemma3_text", {"head_dim": [16, 32], "attention_bias": [ABSENT, True], **TIE,
                               "layer_types": [ABSENT, ["sliding_attention", "full_attention"]]}),  # fmt: skip
    *_variants("gemma3_text", TIE, head_dim=256, architectures=["Gemma3ForCausalLM"], num_key_value_heads=1),
    *_variants("lfm2", {"kinds": LFM2_KINDS, "ff": LFM2_FF, "block_ff_dim": [ABSENT, 200]},
               conv_L_cache=3, tie_word_embeddings=True),  # fmt: skip
    *_variants("lfm2", {"tie": LFM2_TIES, "conv_bias": [ABSENT, False, True], "conv_L_cache": [3, 4]},
               full_attn_idxs=[0], block_auto_adjust_ff_dim=False, architectures=["Lfm2ForCausalLM"]),  # fmt: skip
]


def _name(config: dict) -> str:
    return "-".join(f"{k}={v}" for k, v in config.items() if k not in SHAPE or v != SHAPE[k]).replace(" ", "")


@pytest.mark.parametrize("config", CONFIGS, ids=[_name(c) for c in CONFIGS])
def test_the_table_says_what_transformers_builds(config):
    expected = structure._from_transformers(config, Path("config.json"))
    assert expected is not None, "transformers should build every config here"
    assert layout(config) == expected


DECLINED = {
    "a family the table does not list": {**SHAPE, "model_type": "gpt2", "tie_word_embeddings": True},
    "another class": {**SHAPE, "model_type": "gemma3_text", "architectures": ["Gemma3ForConditionalGeneration"],
                      "head_dim": 16, "tie_word_embeddings": True},  # fmt: skip
    "two classes": {**SHAPE, "model_type": "llama", "architectures": ["LlamaForCausalLM", "LlamaModel"],
                    "tie_word_embeddings": True},  # fmt: skip
    "experts": {**SHAPE, "model_type": "mistral", "num_local_experts": 4, "tie_word_embeddings": False},
    "qwen3 experts": {**SHAPE, "model_type": "qwen3", "num_experts": 4, "head_dim": 16, "tie_word_embeddings": False},
    "quantized": {**SHAPE, "model_type": "llama", "quantization_config": {"quant_method": "fp8"},
                  "tie_word_embeddings": False},  # fmt: skip
    "no num_key_value_heads": {**{k: v for k, v in SHAPE.items() if k != "num_key_value_heads"},
                               "model_type": "llama", "tie_word_embeddings": False},  # fmt: skip
    "no tie_word_embeddings": {**SHAPE, "model_type": "qwen2"},
    "no intermediate_size": {**{k: v for k, v in SHAPE.items() if k != "intermediate_size"}, "model_type": "llama",
                             "tie_word_embeddings": False},  # fmt: skip
    "no head_dim in gemma": {**SHAPE, "model_type": "gemma2", "tie_word_embeddings": True},
    "no head_dim in qwen3": {**SHAPE, "model_type": "qwen3", "tie_word_embeddings": True},
    "a null head_dim": {**SHAPE, "model_type": "llama", "head_dim": None, "tie_word_embeddings": True},
    "a size as a string": {**SHAPE, "model_type": "llama", "hidden_size": "64", "tie_word_embeddings": True},
    "an unknown layer type": {**SHAPE, "model_type": "qwen2", "tie_word_embeddings": True,
                              "layer_types": ["full_attention", "linear_attention"]},  # fmt: skip
    "layer types for other layers": {**SHAPE, "model_type": "gemma2", "head_dim": 16, "tie_word_embeddings": True,
                                     "layer_types": ["full_attention"]},  # fmt: skip
    "lfm2 without its layer types": {**SHAPE, "model_type": "lfm2", "conv_L_cache": 3, "tie_embedding": True,
                                     "block_auto_adjust_ff_dim": False},  # fmt: skip
    "lfm2 rounding without block_multiple_of": {**SHAPE, "model_type": "lfm2", "conv_L_cache": 3,
                                                "tie_embedding": True, "full_attn_idxs": [1],
                                                "block_ffn_dim_multiplier": 1.0},  # fmt: skip
    "lfm2 with a null multiplier": {**SHAPE, "model_type": "lfm2", "conv_L_cache": 3, "tie_embedding": True,
                                    "full_attn_idxs": [1], "block_ffn_dim_multiplier": None,
                                    "block_multiple_of": 256},  # fmt: skip
    "lfm2 without conv_L_cache": {**SHAPE, "model_type": "lfm2", "tie_embedding": True, "full_attn_idxs": [1],
                                  "block_auto_adjust_ff_dim": False},  # fmt: skip
    "a padding id outside the vocabulary": {**SHAPE, "model_type": "llama", "pad_token_id": 96,
                                            "tie_word_embeddings": True},  # fmt: skip
}


@pytest.mark.parametrize("config", list(DECLINED.values()), ids=list(DECLINED))
def test_the_table_declines_what_it_is_not_sure_of(config):
    assert layout(config) is None


def test_the_table_imports_neither_torch_nor_transformers():
    path = Path(structure.__file__).with_name("layouts.py")  # by its path: hala.checkpoint itself imports torch
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('layouts', {str(path)!r})\n"
        "sys.modules['layouts'] = module = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(module)\n"
        "print(sorted({'torch', 'transformers'} & set(sys.modules)))\n"
    )
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"


CHECK = """
import json, sys
from pathlib import Path
from hala.checkpoint import check_structure, tensor_refs, weight_files
folder = Path(sys.argv[1])
config = json.loads((folder / "config.json").read_text())
check_structure(tensor_refs(weight_files(folder)), config, folder / "config.json")
print("transformers" in sys.modules)
"""


@pytest.mark.parametrize("model", ["tiny_llama", "tiny_lfm2"])
def test_a_checkpoint_of_a_known_family_is_checked_without_transformers(model, request):
    folder = request.getfixturevalue(model)
    env = {**os.environ, "HALA_HASH_CACHE": "off"}  # nothing remembered: the table itself decides
    result = subprocess.run([sys.executable, "-c", CHECK, str(folder)], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "False\n"


def test_a_missing_tensor_is_reported_by_the_table(tiny_llama, tmp_path, monkeypatch):
    from safetensors.torch import load_file, save_file

    broken = tmp_path / "broken"
    shutil.copytree(tiny_llama, broken)
    tensors = load_file(broken / "model.safetensors")
    del tensors["model.layers.1.mlp.down_proj.weight"]
    save_file(tensors, broken / "model.safetensors", metadata={"format": "pt"})
    monkeypatch.setenv("HALA_HASH_CACHE", "off")
    monkeypatch.setattr(structure, "_from_transformers", lambda *args: pytest.fail("transformers was asked"))
    config = json.loads((broken / "config.json").read_text())
    with pytest.raises(StructureError, match=r"model.layers.1.mlp.down_proj.weight: missing \(config.json implies"):
        check_structure(tensor_refs(weight_files(broken)), config, broken / "config.json")
