"""The checkpoint layer quantize and merge share: one refusal rule for quantized inputs, one list of side files."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from hala.merge import MergeConfig, merge
from hala.quantize import QuantizeConfig, quantize

# every kind of tensor a quantized checkpoint holds (compressed-tensors, FP8 KV cache, GPTQ/AWQ)
QUANTIZED_TENSORS = (
    "model.layers.0.self_attn.q_proj.weight_scale",
    "model.layers.0.self_attn.q_proj.input_scale",
    "model.layers.0.self_attn.k_scale",
    "model.layers.0.self_attn.q_proj.weight_packed",
    "model.layers.0.self_attn.q_proj.weight_zero_point",
    "model.layers.0.self_attn.q_proj.qweight",
    "model.layers.0.self_attn.q_proj.qzeros",
    "model.layers.0.self_attn.q_proj.scales",
)


def _quantized_copy(source: Path, dest: Path, kind: str) -> Path:
    """`source` with one sign of quantization: a config block, an FP8 weight, or a tensor named `kind`."""
    shutil.copytree(source, dest)
    if kind == "quantization_config":
        config = json.loads((dest / "config.json").read_text())
        config["quantization_config"] = {"quant_method": "compressed-tensors"}
        (dest / "config.json").write_text(json.dumps(config))
        return dest
    tensors = load_file(dest / "model.safetensors")
    if kind == "fp8":
        name = "model.layers.0.self_attn.q_proj.weight"
        tensors[name] = tensors[name].to(torch.float8_e4m3fn)
    else:
        tensors[kind] = torch.ones(() if kind.endswith("k_scale") else (4,), dtype=torch.bfloat16)
    save_file(tensors, dest / "model.safetensors", metadata={"format": "pt"})
    return dest


def _run(stage: str, model: Path, base: Path, out: Path) -> None:
    if stage == "quantize":
        quantize(QuantizeConfig(model=str(model), out=str(out), verify={"enabled": False}))
    else:
        merge(MergeConfig(base=str(base), model=str(model), out=str(out), check={"enabled": False}))


@pytest.mark.parametrize("stage", ["quantize", "merge"])
@pytest.mark.parametrize("kind", ["quantization_config", "fp8", *QUANTIZED_TENSORS])
def test_quantize_and_merge_refuse_every_kind_of_quantized_input(tiny_llama, tmp_path, stage, kind):
    model = _quantized_copy(tiny_llama, tmp_path / "quantized", kind)
    if kind == "quantization_config":
        expected = r"quantized \(compressed-tensors\)"
    else:
        name = "model.layers.0.self_attn.q_proj.weight" if kind == "fp8" else kind
        expected = rf"quantized tensors \(.*{re.escape(name)}"
    with pytest.raises(ValueError, match=expected):
        _run(stage, model, tiny_llama, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_side_files_are_what_travels_with_the_weights(tmp_path):
    from hala.checkpoint import is_tokenizer_file, side_files

    kept = ["LICENSE", "NOTICE", "README.md", "chat_template.jinja", "generation_config.json",
            "modeling_custom.py", "o200k.tiktoken", "tokenizer.json", "tokenizer_config.json"]  # fmt: skip
    left = ["config.json", "model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "model.gguf",
            "manifest.json", ".hala-run.json", ".gitattributes", "quantization_report.json",
            "quantization_report.md"]  # fmt: skip
    for name in kept + left:
        (tmp_path / name).write_text("x")
    (tmp_path / "original").mkdir()
    assert [p.name for p in side_files(tmp_path)] == sorted(kept)
    tokenizer = [p.name for p in side_files(tmp_path) if is_tokenizer_file(p)]
    assert tokenizer == ["chat_template.jinja", "generation_config.json", "o200k.tiktoken", "tokenizer.json",
                         "tokenizer_config.json"]  # fmt: skip


@pytest.mark.parametrize("stage", ["quantize", "merge"])
def test_quantize_and_merge_copy_the_same_side_files(tiny_llama, tmp_path, stage):
    source = tmp_path / "source"
    shutil.copytree(tiny_llama, source)
    for name, text in (("LICENSE", "Apache-2.0\n"), ("NOTICE", "a notice\n"), (".gitattributes", "*.bin lfs\n"),
                       ("quantization_report.md", "# an old report\n")):  # fmt: skip
        (source / name).write_text(text)
    _run(stage, source, source, tmp_path / "out")
    out = tmp_path / "out"
    assert (out / "LICENSE").read_text() == "Apache-2.0\n" and (out / "NOTICE").read_text() == "a notice\n"
    assert not (out / ".gitattributes").exists()
    report = out / "quantization_report.md"
    assert not report.exists() or report.read_text() != "# an old report\n"  # quantize writes its own


class SlowDigest:
    def __init__(self, digest):
        self.digest = digest

    def update(self, block):
        time.sleep(0.005)
        self.digest.update(block)

    def hexdigest(self):
        return self.digest.hexdigest()


@pytest.mark.parametrize("slow", ["write", "hash"])
def test_write_behind_writes_the_same_shard_from_two_buffers_used_in_turn(tmp_path, slow):
    """A block handed to a write-behind writer is still being written, or hashed, while the next one
    is filled: the shard and its sha256 must hold every block as it was handed over, in order."""
    from hala.checkpoint import OutTensor, ShardWriter

    tensors = [OutTensor("a", "BF16", (64, 1024)), OutTensor("b", "F32", (3, 1000))]
    values = {"a": torch.randn(64, 1024).to(torch.bfloat16), "b": torch.randn(3, 1000)}
    paths, digests = {}, {}
    for behind in (False, True):
        paths[behind] = tmp_path / f"behind-{behind}.safetensors"
        writer = ShardWriter(paths[behind], tensors, write_behind=behind)
        if slow == "write":
            real_write = writer._handle.write
            writer._handle.write = lambda block: time.sleep(0.005) or real_write(block)  # a slow disk
        else:
            writer._digest = SlowDigest(writer._digest)
        sides = [torch.empty(4096, dtype=torch.bfloat16) for _ in range(2)]
        for i, block in enumerate(values["a"].reshape(-1).split(4096)):
            buffer = sides[i % 2]
            buffer.copy_(block)  # the buffer given two writes ago: its block must be out by now
            writer.write("a", buffer)
        writer.write("b", values["b"])
        writer.close()
        digests[behind] = writer._digest.hexdigest()
    assert paths[True].read_bytes() == paths[False].read_bytes()
    assert digests[True] == digests[False] == hashlib.sha256(paths[False].read_bytes()).hexdigest()
    loaded = load_file(paths[True])
    assert torch.equal(loaded["a"], values["a"]) and torch.equal(loaded["b"], values["b"])


def test_a_failed_write_behind_is_raised_on_the_callers_thread(tmp_path):
    from hala.checkpoint import OutTensor, ShardWriter

    writer = ShardWriter(tmp_path / "s.safetensors", [OutTensor("a", "F32", (2048,))], write_behind=True)
    writer._handle.close()  # the file goes away under the writer
    writer.write("a", torch.zeros(1024))
    with pytest.raises(ValueError, match="closed file"):
        writer.write("a", torch.zeros(1024))
    writer.abort()
