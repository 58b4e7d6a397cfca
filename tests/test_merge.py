"""`hala merge` on tiny checkpoints: endpoints, streaming, checks before and after writing, the run record."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from hala.checkpoint import PickleRefusedError, TensorRef
from hala.merge import MergeConfig, merge, stream
from hala.merge import slerp as slerp_module
from hala.merge.check import MergeCheckError
from hala.merge.plan import MergeInputError
from hala.merge.slerp import slerp

NO_CHECK = {"enabled": False}


def finetune_of(source: Path, out: Path, scale: float = 0.05, seed: int = 1, edit=None) -> Path:
    """A 'fine-tune' of `source`: every tensor plus scale·rms·noise, same other files.
    `edit(tensors)` may change the tensors before they are saved."""
    shutil.copytree(source, out, ignore=shutil.ignore_patterns("*.safetensors", "manifest.json"))
    g = torch.Generator().manual_seed(seed)
    for f in sorted(source.glob("*.safetensors")):
        tensors = load_file(f)
        for name, w in tensors.items():
            noise = torch.randn(w.shape, generator=g) * w.float().pow(2).mean().sqrt()
            tensors[name] = (w.float() + scale * noise).to(w.dtype)
        if edit:
            edit(tensors)
        save_file(tensors, out / f.name, metadata={"format": "pt"})
    return out


def weights(folder: Path) -> dict[str, torch.Tensor]:
    result = {}
    for f in sorted(Path(folder).glob("*.safetensors")):
        result.update(load_file(f))
    return result


def leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.parent.iterdir() if p.name.startswith(f".{folder.name}.")]


@pytest.fixture(scope="module")
def tuned(tiny_llama, tmp_path_factory) -> Path:
    return finetune_of(tiny_llama, tmp_path_factory.mktemp("merge") / "tuned")


def run(base, model, out, **settings) -> object:
    settings.setdefault("check", NO_CHECK)
    return merge(MergeConfig(base=str(base), model=str(model), out=str(out), **settings))


@pytest.mark.parametrize("t, source", [(0.0, "base"), (1.0, "model")])
def test_t0_gives_the_base_and_t1_the_model_exactly(tiny_llama, tuned, tmp_path, t, source):
    run(tiny_llama, tuned, tmp_path / "m", t=t)
    expected = weights(tiny_llama if source == "base" else tuned)
    got = weights(tmp_path / "m")
    assert set(got) == set(expected)
    for name, tensor in expected.items():
        assert got[name].dtype == tensor.dtype and torch.equal(got[name], tensor), name


def test_merged_tensors_are_the_slerp_of_each_pair_with_its_t(tiny_llama, tuned, tmp_path):
    t = [{"filter": "self_attn", "value": [0.1, 0.9]}, {"filter": "mlp", "value": 0.7}, {"value": 0.4}]
    manifest = run(tiny_llama, tuned, tmp_path / "m", t=t)
    base, model, got = weights(tiny_llama), weights(tuned), weights(tmp_path / "m")
    expected_t = {"model.layers.0.self_attn.q_proj.weight": 0.1, "model.layers.1.self_attn.o_proj.weight": 0.9,
                  "model.layers.1.mlp.down_proj.weight": 0.7, "model.norm.weight": 0.4, "lm_head.weight": 0.4}  # fmt: skip
    for name, value in expected_t.items():
        assert manifest.tensors[name]["t"] == pytest.approx(value)
    for name in base:
        assert torch.equal(got[name], slerp(manifest.tensors[name]["t"], base[name], model[name])), name
    assert manifest.counts["tensors"] == len(base) == manifest.counts["slerp"] + manifest.counts["lerp"]
    assert manifest.counts["lerp"] == 0  # noise at 5% of the rms leaves cos θ ≈ 0.9988 < 0.9995


def test_tiny_chunks_give_the_same_bytes_as_whole_tensors(tiny_llama, tuned, tmp_path, monkeypatch):
    monkeypatch.setattr(slerp_module, "SUBCHUNK", 1024)  # mergekit's 2^20 would make every tiny tensor one chunk
    run(tiny_llama, tuned, tmp_path / "whole", t=0.3)
    reads = []
    real_read = TensorRef.readinto
    monkeypatch.setattr(
        TensorRef, "readinto", lambda ref, begin, out: reads.append(out.numel()) or real_read(ref, begin, out)
    )
    manifest = run(tiny_llama, tuned, tmp_path / "chunked", t=0.3, chunk_mb=0.004, max_shard_size="300KB")
    assert max(reads) == 1024  # chunks of 1024 values
    assert sum(reads) >= 4 * manifest.counts["parameters"]  # both models, both passes
    assert manifest.counts["shards"] > 2
    whole, chunked = weights(tmp_path / "whole"), weights(tmp_path / "chunked")
    assert set(whole) == set(chunked)
    for name in whole:
        assert torch.equal(whole[name], chunked[name]), name


def test_output_loads_generates_and_carries_the_chosen_tokenizer(tiny_llama, tmp_path):
    template = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}<|im_start|>assistant\n"
    tuned = finetune_of(tiny_llama, tmp_path / "tuned")
    (tuned / "chat_template.jinja").write_text(template)
    gen = json.loads((tuned / "generation_config.json").read_text())
    (tuned / "generation_config.json").write_text(json.dumps({**gen, "max_new_tokens": 7}))

    manifest = run(tiny_llama, tuned, tmp_path / "from-model", tokenizer_source="model", check={"max_new_tokens": 3})
    out = tmp_path / "from-model"
    assert manifest.check["new_tokens"] >= 1 and manifest.check["generated"]
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "generation_config.json"):
        assert (out / name).read_bytes() == (tuned / name).read_bytes(), name
    assert json.loads((out / "config.json").read_text())["architectures"] == ["LlamaForCausalLM"]

    run(tiny_llama, tuned, tmp_path / "from-base")
    assert (tmp_path / "from-base" / "chat_template.jinja").read_bytes() == (
        tiny_llama / "chat_template.jinja"
    ).read_bytes()


def test_a_model_that_does_not_generate_fails_the_merge(tiny_llama, tuned, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tuned, broken)
    config = json.loads((broken / "config.json").read_text())
    (broken / "config.json").write_text(json.dumps({**config, "hidden_act": "no-such-activation"}))
    with pytest.raises(MergeCheckError, match="does not load"):
        run(broken, tuned, tmp_path / "m", check={"max_new_tokens": 1})
    assert not (tmp_path / "m").exists() and not leftovers(tmp_path / "m")


def test_dtype_setting_writes_that_dtype(tiny_llama, tuned, tmp_path):
    run(tiny_llama, tuned, tmp_path / "m", dtype="float32")
    got = weights(tmp_path / "m")
    assert all(w.dtype == torch.float32 for w in got.values())
    assert json.loads((tmp_path / "m" / "config.json").read_text())["dtype"] == "float32"
    base, model = weights(tiny_llama), weights(tuned)
    name = "model.layers.1.mlp.up_proj.weight"
    assert torch.equal(got[name], slerp(0.5, base[name].float(), model[name].float()))


# --- checks before writing anything --------------------------------------------------------------


def _refused(base, model, out, match, **settings):
    with pytest.raises((MergeInputError, FileNotFoundError, PickleRefusedError), match=match) as info:
        run(base, model, out, **settings)
    assert not out.exists() and not leftovers(out), "a refused merge wrote something"
    return str(info.value)


def test_refuses_another_architecture(tiny_llama, tiny_lfm2, tmp_path):
    _refused(tiny_llama, tiny_lfm2, tmp_path / "m", "different architectures.*LlamaForCausalLM")


def test_refuses_missing_tensors_and_other_shapes(tiny_llama, tmp_path):
    fewer = finetune_of(tiny_llama, tmp_path / "fewer", edit=lambda w: w.pop("model.layers.1.mlp.up_proj.weight"))
    _refused(tiny_llama, fewer, tmp_path / "m1", r"only in .*tiny-llama: model\.layers\.1\.mlp\.up_proj\.weight")

    def reshape(w):
        w["model.layers.0.mlp.up_proj.weight"] = w["model.layers.0.mlp.up_proj.weight"][:-1]

    other = finetune_of(tiny_llama, tmp_path / "other", edit=reshape)
    _refused(
        tiny_llama,
        other,
        tmp_path / "m2",
        r"model\.layers\.0\.mlp\.up_proj\.weight is \[256, 128\] in the base but \[255, 128\]",
    )


def _grow_vocab(folder: Path, extra: int) -> None:
    config = json.loads((folder / "config.json").read_text())
    config["vocab_size"] += extra
    (folder / "config.json").write_text(json.dumps(config))


def test_refuses_another_vocabulary_naming_the_tensors_unless_truncate(tiny_llama, tmp_path):
    def grow(w):
        for name in ("model.embed_tokens.weight", "lm_head.weight"):
            w[name] = torch.cat([w[name], w[name][:8]])

    bigger = finetune_of(tiny_llama, tmp_path / "bigger", edit=grow)
    _grow_vocab(bigger, 8)
    message = _refused(tiny_llama, bigger, tmp_path / "m", "different vocabularies")
    assert "model.embed_tokens.weight [1024, 128] vs [1032, 128]" in message and "lm_head.weight" in message
    assert "vocab_policy=truncate" in message

    manifest = run(tiny_llama, bigger, tmp_path / "t", vocab_policy="truncate", check={"max_new_tokens": 2})
    got, base, model = weights(tmp_path / "t"), weights(tiny_llama), weights(bigger)
    assert got["model.embed_tokens.weight"].shape == (1024, 128)
    name = "lm_head.weight"
    assert torch.equal(got[name], slerp(0.5, base[name], model[name][:1024]))
    assert json.loads((tmp_path / "t" / "config.json").read_text())["vocab_size"] == 1024
    assert manifest.check["new_tokens"] >= 1
    # a tokenizer with ids past the rows kept would index outside the merged embedding: refused
    tok = json.loads((bigger / "tokenizer.json").read_text())
    tok["added_tokens"].append({**tok["added_tokens"][-1], "id": 1030, "content": "<|extra|>"})
    (bigger / "tokenizer.json").write_text(json.dumps(tok))
    _refused(tiny_llama, bigger, tmp_path / "t2", "ids up to 1030", vocab_policy="truncate", tokenizer_source="model")


def test_refuses_tokenizers_whose_ids_mean_other_tokens(tiny_llama, tmp_path):
    swapped = finetune_of(tiny_llama, tmp_path / "swapped")
    tok = json.loads((swapped / "tokenizer.json").read_text())
    vocab = tok["model"]["vocab"]
    first, second = sorted(vocab, key=vocab.get)[300:302]
    vocab[first], vocab[second] = vocab[second], vocab[first]
    (swapped / "tokenizer.json").write_text(json.dumps(tok))
    message = _refused(tiny_llama, swapped, tmp_path / "m", "2 token id", vocab_policy="truncate")
    assert "mean different tokens" in message


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_refuses_nan_and_inf_before_writing_anything(tiny_llama, tmp_path, monkeypatch, bad):
    def poison(w):
        w["model.layers.0.mlp.up_proj.weight"][1, 2] = bad
        w["model.layers.1.self_attn.k_proj.weight"][3, 5] = bad

    poisoned = finetune_of(tiny_llama, tmp_path / "poisoned", edit=poison)
    monkeypatch.setattr(stream, "pass1_workers", lambda: 3)  # named in the plan's order, whoever measured them
    _refused(tiny_llama, poisoned, tmp_path / "m",
        r"2 tensor\(s\) hold NaN or Inf values: model\.layers\.0\.mlp\.up_proj\.weight \(model\), "
        r"model\.layers\.1\.self_attn\.k_proj\.weight \(model\)")  # fmt: skip


def test_refuses_pickle_unless_allowed(tiny_llama, tuned, tmp_path):
    pickled = tmp_path / "pickled"
    shutil.copytree(tuned, pickled, ignore=shutil.ignore_patterns("*.safetensors", "*.index.json"))
    torch.save(weights(tuned), pickled / "pytorch_model.bin")
    _refused(tiny_llama, pickled, tmp_path / "m", "allow-pickle")
    run(tiny_llama, pickled, tmp_path / "ok", allow_pickle=True, t=1.0)
    assert all(torch.equal(v, weights(tuned)[k]) for k, v in weights(tmp_path / "ok").items())


def test_refuses_a_missing_folder(tiny_llama, tmp_path):
    _refused(tiny_llama, tmp_path / "nowhere", tmp_path / "m", "no such model folder")


# --- the run record, resume, interruption ------------------------------------------------------------


def test_manifest_records_every_tensor_and_a_rerun_is_skipped(tiny_llama, tuned, tmp_path):
    out = tmp_path / "m"
    first = run(tiny_llama, tuned, out, t=[0.0, 1.0])
    recorded = json.loads((out / "manifest.json").read_text())
    assert recorded["stage"] == "merge" and set(recorded["tensors"]) == set(weights(tiny_llama))
    assert recorded["tensors"]["model.layers.1.mlp.up_proj.weight"]["t"] == 1.0
    assert recorded["tensors"]["model.embed_tokens.weight"]["method"] == "slerp"
    assert {o["path"] for o in recorded["outputs"]} >= {
        str(out / "config.json"),
        str(out / "manifest.json").replace("manifest.json", "model.safetensors.index.json"),
    }
    stamp = (out / "manifest.json").stat().st_mtime_ns
    again = run(tiny_llama, tuned, out, t=[0.0, 1.0])
    assert again.fingerprint == first.fingerprint and (out / "manifest.json").stat().st_mtime_ns == stamp
    assert first.path == again.path == out / "manifest.json"  # where it lies, not the temporary folder
    from hala.data.manifest import OutputInUseError

    with pytest.raises(OutputInUseError):
        run(tiny_llama, tuned, out, t=0.3)


def test_an_interrupted_merge_leaves_no_output_folder(tiny_llama, tuned, tmp_path, monkeypatch):
    from hala.merge import stream

    calls = []
    real = stream._write_tensor

    def interrupted(*args):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(stream, "_write_tensor", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(tiny_llama, tuned, tmp_path / "m")
    assert len(calls) == 5
    assert not (tmp_path / "m").exists() and not leftovers(tmp_path / "m")
    monkeypatch.setattr(stream, "_write_tensor", real)
    assert run(tiny_llama, tuned, tmp_path / "m").counts["tensors"] == len(weights(tiny_llama))
