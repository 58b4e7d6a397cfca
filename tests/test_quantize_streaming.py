"""Streaming: a multi-shard checkpoint is quantized block by block, never as a model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from hala.models.synthetic import make_synthetic_llama
from hala.quantize import QuantizeConfig, quantize
from hala.quantize.fp8 import fp8_quantize
from tests.peak_memory import HAS_PROC, live_memory_rss, peak_growth, run_fresh
from tests.test_quantize import read_checkpoint, same_bytes

NO_VERIFY = {"enabled": False}


@pytest.fixture(scope="module")
def sharded(tmp_path_factory) -> Path:
    """~100 MB of BF16 Llama in 3 shards of at most 48 MB."""
    out = tmp_path_factory.mktemp("synthetic") / "llama"
    return make_synthetic_llama(out, hidden=512, intermediate=2048, layers=8, vocab=16384, shard_bytes=48 << 20)


def test_multi_shard_input_gives_the_same_bits_in_any_chunking(sharded, tmp_path):
    assert len(list(sharded.glob("*.safetensors"))) >= 3
    small = quantize(
        QuantizeConfig(model=str(sharded), out=str(tmp_path / "a"), chunk_mb=1, max_shard_size="20MB", verify=NO_VERIFY)
    )
    large = quantize(
        QuantizeConfig(
            model=str(sharded), out=str(tmp_path / "b"), chunk_mb=64, max_shard_size="20MB", verify=NO_VERIFY
        )
    )
    shards_a = sorted((tmp_path / "a").glob("model-*.safetensors"))
    assert len(shards_a) == small.counts["shards"] >= 3
    for a in shards_a:
        assert a.read_bytes() == (tmp_path / "b" / a.name).read_bytes()
    assert large.counts["quantized"] == small.counts["quantized"] == 8 * 7
    source, result = read_checkpoint(sharded), read_checkpoint(tmp_path / "a")
    for name in ("model.layers.7.mlp.down_proj.weight", "model.layers.0.self_attn.q_proj.weight"):
        q, scale = fp8_quantize(source[name])
        assert same_bytes(result[name], q) and torch.equal(result[name + "_scale"], scale)
    index = json.loads((tmp_path / "a" / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"]) == set(result)
    for shard in shards_a:
        assert shard.stat().st_size < 20e6 + (64 << 10)  # a shard holds groups up to max_shard_size (plus header)


def test_quantize_never_builds_a_model(sharded, tmp_path, monkeypatch):
    import compressed_tensors.compressors  # noqa: F401  (imported before the trap: its import defines classes only)

    def no_modules(self, *args, **kwargs):
        raise AssertionError("an nn.Module was built while quantizing")

    monkeypatch.setattr(torch.nn.Module, "__init__", no_modules)
    manifest = quantize(QuantizeConfig(model=str(sharded), out=str(tmp_path / "q"), verify=NO_VERIFY))
    assert manifest.counts["quantized"] == 56


def measure_peaks(sharded: str, warm_up: str, out: str) -> dict[str, int]:
    """Peak resident growth of loading every tensor (`naive`) and of quantizing (`streamed`); run by
    `run_fresh`, in a process of its own."""
    from safetensors.torch import load_file

    sharded, out = Path(sharded), Path(out)
    files = sorted(sharded.glob("*.safetensors"))
    held = {}
    with live_memory_rss():
        # one-time costs (imports, kernel set-up) are not what we measure
        quantize(QuantizeConfig(model=str(warm_up), out=str(out / "warm-up"), verify=NO_VERIFY))
        # what building the model costs: every tensor in memory (cloned: mmapped pages can't stay untouched)
        naive = peak_growth(lambda: [held.update({k: v.clone() for k, v in load_file(f).items()}) for f in files])
        held.clear()
        cfg = QuantizeConfig(model=str(sharded), out=str(out / "q"), chunk_mb=1, verify=NO_VERIFY)
        streamed = peak_growth(lambda: quantize(cfg))
    return {"naive": naive, "streamed": streamed}


@pytest.mark.skipif(not HAS_PROC, reason="needs Linux /proc to reset peak RSS")
def test_peak_memory_is_a_block_of_rows_not_a_shard(sharded, tiny_llama, tmp_path):
    files = sorted(sharded.glob("*.safetensors"))
    checkpoint = sum(f.stat().st_size for f in files)
    largest = max(f.stat().st_size for f in files)
    peaks = run_fresh("tests.test_quantize_streaming:measure_peaks", sharded, tiny_llama, tmp_path)
    naive, streamed = peaks["naive"], peaks["streamed"]
    assert naive > checkpoint * 0.8  # the measurement sees whole-checkpoint loads
    assert streamed < largest / 2, f"peak grew by {streamed >> 20} MB; largest shard {largest >> 20} MB"
