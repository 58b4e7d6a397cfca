"""Streaming: a merge holds a few chunks, not a tensor, a shard or a model."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from hala.checkpoint import TensorRef
from hala.merge import MergeConfig, merge, stream
from hala.merge import slerp as slerp_module
from hala.models.synthetic import make_synthetic_llama
from tests.peak_memory import HAS_PROC, live_memory_rss, peak_growth, run_fresh
from tests.test_merge import finetune_of, run, weights

NO_CHECK = {"enabled": False}
EMBED_BYTES = 65536 * 512 * 2


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> tuple[Path, Path]:
    """~140 MB of BF16 Llama in 3 shards, whose largest tensors (embedding, head) are 64 MB each."""
    root = tmp_path_factory.mktemp("synthetic")
    base = make_synthetic_llama(
        root / "base", hidden=512, intermediate=1024, layers=2, vocab=65536, shard_bytes=80 << 20
    )
    return base, finetune_of(base, root / "tuned")


def measure_peaks(base: str, tuned: str, out: str) -> dict:
    """Peak resident growth of a merge read a tensor at a time (`whole`) and in 1 MB chunks
    (`streamed`), and the largest read of the latter; run by `run_fresh`, in a process of its own."""
    reads = []
    real_read = TensorRef.readinto

    def counted(ref, begin, buffer):
        reads.append(buffer.numel() * buffer.element_size())
        return real_read(ref, begin, buffer)

    TensorRef.readinto = counted
    slerp_module.SUBCHUNK = 1 << 18  # chunks of 256k values (mergekit sums over 2^20)
    # one thread: worker threads' malloc arenas hold on to freed blocks, which blurs the measurement
    torch.set_num_threads(1)
    cfg = lambda name, mb: MergeConfig(
        base=base, model=tuned, out=str(Path(out) / name), chunk_mb=mb, check=NO_CHECK
    )
    with live_memory_rss():
        merge(cfg("warm-up", 1))  # one-time costs (imports, first use of each code path) are not what we measure
        whole = peak_growth(lambda: merge(cfg("whole", 256)))  # chunks larger than any tensor: a tensor at a time
        reads.clear()
        streamed = peak_growth(lambda: merge(cfg("streamed", 1)))
    return {"whole": whole, "streamed": streamed, "largest_read": max(reads)}


@pytest.mark.skipif(not HAS_PROC, reason="needs Linux /proc to reset peak RSS")
def test_peak_memory_is_a_few_chunks_not_a_tensor(pair, tmp_path):
    base, tuned = pair
    peaks = run_fresh("tests.test_merge_streaming:measure_peaks", base, tuned, tmp_path)
    whole, streamed = peaks["whole"], peaks["streamed"]
    assert peaks["largest_read"] == (1 << 18) * 2  # 256k BF16 values per read
    assert whole > EMBED_BYTES, f"the measurement should see a whole embedding: {whole >> 20} MB"
    assert streamed < EMBED_BYTES / 4, (
        f"peak grew by {streamed >> 20} MB with 1 MB chunks; the embedding is {EMBED_BYTES >> 20} MB"
    )


def test_pass_1_on_several_threads_changes_no_bit(tiny_llama, tmp_path, monkeypatch):
    tuned = finetune_of(tiny_llama, tmp_path / "tuned")
    monkeypatch.setattr(slerp_module, "SUBCHUNK", 1024)  # several sub-chunks per tensor, summed in order
    real_read = TensorRef.readinto  # each read lets the other threads run: their work interleaves
    monkeypatch.setattr(TensorRef, "readinto", lambda *args: (real_read(*args), time.sleep(0.0005)))
    merged = {}
    for workers in (1, 3):
        monkeypatch.setattr(stream, "pass1_workers", lambda: workers)
        manifest = run(tiny_llama, tuned, tmp_path / str(workers), t=0.3, chunk_mb=0.008)
        merged[workers] = weights(tmp_path / str(workers)), manifest.tensors
    assert merged[1][1] == merged[3][1]  # t, method and cos θ of every tensor
    assert all(torch.equal(value, merged[3][0][name]) for name, value in merged[1][0].items())


def test_a_pass_1_worker_that_fails_stops_the_others_and_nothing_is_written(tiny_llama, tmp_path, monkeypatch):
    tuned = finetune_of(tiny_llama, tmp_path / "tuned")
    real_read, reads = TensorRef.readinto, []

    def read(ref, begin, out):
        reads.append(ref.name)
        if ref.name == "model.layers.0.mlp.up_proj.weight":
            raise OSError("a disk error")
        time.sleep(0.002)  # the other workers are mid-tensor when it fails
        return real_read(ref, begin, out)

    monkeypatch.setattr(stream, "pass1_workers", lambda: 3)
    monkeypatch.setattr(TensorRef, "readinto", read)
    out = tmp_path / "merged"
    with pytest.raises(OSError, match="a disk error"):
        run(tiny_llama, tuned, out)
    assert not out.exists()
    tensors = len(set(reads))
    assert tensors < 10, f"{tensors} tensors were read: the other workers went on after the failure"
