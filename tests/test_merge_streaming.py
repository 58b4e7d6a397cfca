"""Streaming: a merge holds a few chunks, not a tensor, a shard or a model."""

from __future__ import annotations

import ctypes
import gc
import re
from pathlib import Path

import pytest
import torch

from hala.merge import MergeConfig, merge, stream
from hala.merge import slerp as slerp_module
from hala.models.synthetic import make_synthetic_llama
from tests.test_merge import finetune_of

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


def _rss() -> tuple[int, int]:
    text = Path("/proc/self/status").read_text()
    return tuple(int(re.search(rf"{k}:\s+(\d+)", text).group(1)) << 10 for k in ("VmRSS", "VmHWM"))


def peak_growth(fn) -> int:
    """How far resident memory rose above its starting point while `fn` ran. glibc is told to give
    freed blocks over 128 KB back at once, so the resident set follows what is live."""
    libc = ctypes.CDLL("libc.so.6")
    libc.mallopt(-3, 128 << 10)  # M_MMAP_THRESHOLD
    libc.mallopt(-1, 128 << 10)  # M_TRIM_THRESHOLD
    try:
        gc.collect()
        libc.malloc_trim(0)
        start = _rss()[0]
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        fn()
        return _rss()[1] - start
    finally:
        libc.mallopt(-3, 32 << 20)
        libc.mallopt(-1, 64 << 20)


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc to reset peak RSS")
def test_peak_memory_is_a_few_chunks_not_a_tensor(pair, tmp_path, monkeypatch, request):
    base, tuned = pair
    reads = []
    real_read = stream._readinto

    def counted(ref, begin, out):
        reads.append(out.numel() * out.element_size())
        return real_read(ref, begin, out)

    monkeypatch.setattr(stream, "_readinto", counted)
    monkeypatch.setattr(slerp_module, "SUBCHUNK", 1 << 18)  # chunks of 256k values (mergekit sums over 2^20)
    # one thread: worker threads' malloc arenas hold on to freed blocks, which blurs the measurement
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    request.addfinalizer(lambda: torch.set_num_threads(threads))
    cfg = lambda out, mb: MergeConfig(
        base=str(base), model=str(tuned), out=str(tmp_path / out), chunk_mb=mb, check=NO_CHECK
    )
    merge(cfg("warm-up", 1))  # one-time costs (imports, first use of each code path) are not what we measure
    whole = peak_growth(lambda: merge(cfg("whole", 256)))  # chunks larger than any tensor: a tensor at a time
    reads.clear()
    streamed = peak_growth(lambda: merge(cfg("streamed", 1)))
    assert max(reads) == (1 << 18) * 2  # 256k BF16 values per read
    assert whole > EMBED_BYTES, f"the measurement should see a whole embedding: {whole >> 20} MB"
    assert streamed < EMBED_BYTES / 4, (
        f"peak grew by {streamed >> 20} MB with 1 MB chunks; the embedding is {EMBED_BYTES >> 20} MB"
    )
