"""The two streaming passes of a merge: measure everything, then write everything.

Pass 1 reads both checkpoints chunk by chunk and computes, per tensor, what SLERP needs: the two
norms, then cos θ (a tensor larger than one chunk is read twice, because mergekit normalizes before
it multiplies; the last chunk read for the norms is used for the dot product before the others are
read again). NaN and Inf propagate into the norms, so the same pass finds every non-finite
tensor, and the merge is refused before a byte is written. Pass 2 reads the chunks again, applies
the two coefficients of each tensor and streams the result into safetensors shards planned up
front (the output dtype and shape of every tensor are known before any data is read).

A chunk is a flat range of elements: SLERP treats a tensor as one vector, so rows need no special
care, and a 256k×3584 embedding costs no more memory than a small matrix. Peak memory is a few
chunk-sized buffers (one float32 chunk per input, the raw bytes read, two output chunks), allocated
once and reused by both passes, whatever the size of a tensor, a shard or the model. The second read
mostly hits the page cache; reads use plain `readinto` (no mmap), so resident memory is what we hold.
Reading, the shard plan, the loop over shards and the NaN/Inf report are `hala.checkpoint`'s, shared
with quantize; this module says what each tensor becomes.

Torch runs on one thread in both passes. Every operation here streams memory once, and on a busy
machine each parallel region waits for its slower thread (a 1B merge took 58 s on two threads
against 25 s on one, on two shared cores). The cores are used another way: pass 1 gives whole
tensors to one worker thread per core (`pass1_workers`, each with buffers of its own, taking the
next tensor when done, so none waits for another), beside the threads that hash the inputs and
check the tensors against config.json (`hala.merge.stage`); pass 2 writes each output block while
the next is computed (`ShardWriter(write_behind=True)`, which is why the output buffer has two
sides). The sums of the dot product still add as torch does on the process's threads
(`SlerpStats.sum_threads`), so the bits are those of a merge on the default thread count, and
mergekit's, whichever worker measured a tensor.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import torch

from hala.checkpoint import DTYPE_NAMES, OutTensor, ShardWriter, TensorRef, all_finite, nonfinite_report, write_shards
from hala.merge import slerp
from hala.merge.plan import MergeInputError, TensorPlan
from hala.merge.slerp import SlerpStats, coefficients, combine, intra_op_threads


def pass1_workers() -> int:
    """Threads for pass 1: one per core this process may run on, at most 4 (each streams memory, so
    past a few the memory bus is the limit, and each holds its own buffers)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(4, cores))


def chunk_elements(chunk_mb: float) -> int:
    """Elements per chunk: `chunk_mb` MiB of float32, in whole SLERP sub-chunks (at least one)."""
    elements = int(chunk_mb * (1 << 20)) // 4
    return max(slerp.SUBCHUNK, elements - elements % slerp.SUBCHUNK)


class Buffers:
    """One chunk-sized buffer per role and dtype, reused for every chunk: a fresh 32 MB tensor per
    chunk costs more in page faults than the arithmetic done on it. A buffer handed to a
    write-behind `ShardWriter` has two sides, used in turn (`side`), since the writer still reads
    one while the next chunk is computed into the other."""

    def __init__(self, step: int):
        self.step = step
        self.turn = 0  # the side of the last block handed to the writer
        self._held: dict[tuple[str, torch.dtype, int], torch.Tensor] = {}

    def get(self, role: str, dtype: torch.dtype, n: int, side: int = 0) -> torch.Tensor:
        key = (role, dtype, side)
        if key not in self._held:
            self._held[key] = torch.empty(self.step, dtype=dtype)
        return self._held[key][:n]


def _read(ref: TensorRef, first: int, stop: int, plan: TensorPlan, out: torch.Tensor, buffers: Buffers) -> torch.Tensor:
    """Elements [first, stop) of one input into `out` (compute dtype), rounded to `cast` first if set."""
    raw = buffers.get("raw", ref.torch_dtype, stop - first)
    ref.readinto(first * ref.torch_dtype.itemsize, raw)
    if plan.cast is not None and plan.cast != raw.dtype:
        raw = raw.to(plan.cast)
    return out.copy_(raw)


def _pair(
    plan: TensorPlan, first: int, stop: int, buffers: Buffers, side: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Both inputs' elements [first, stop); `a` (which `combine` returns a float32 result in) on `side`."""
    n, dtype = stop - first, plan.compute_dtype
    return (_read(plan.base, first, stop, plan, buffers.get("a", dtype, n, side), buffers),
            _read(plan.model, first, stop, plan, buffers.get("b", dtype, n), buffers))  # fmt: skip


def _chunks(numel: int, step: int):
    for first in range(0, numel, step):
        yield first, min(numel, first + step)


def measure(tensors: list[TensorPlan], buffers: Buffers, workers: int = 1) -> dict[str, SlerpStats]:
    """Pass 1: norms and cos θ of every floating-point tensor pair; refuses NaN and Inf (all named).

    `workers` threads take the tensors in turn, each a whole tensor on one torch thread with buffers
    of its own (the first uses `buffers`): no tensor's sums depend on who computed it, and no thread
    waits for another until the last tensor is done."""
    floating = [plan for plan in tensors if plan.t is not None]
    sum_threads = torch.get_num_threads()
    stats = {plan.name: SlerpStats(sum_threads=sum_threads) for plan in floating}  # in the plan's order
    nonfinite: dict[int, str] = {}
    todo, lock, failed = iter(enumerate(floating)), threading.Lock(), threading.Event()

    def work(held: Buffers) -> None:
        while not failed.is_set():  # a worker that failed (a read error) stops the others too
            with lock:
                i, plan = next(todo, (None, None))
            if plan is None:
                return
            s = stats[plan.name]
            try:
                _measure_tensor(plan, s, held.step, held)
            except BaseException:
                failed.set()
                raise
            if not s.finite:
                nonfinite[i] = plan.name + _where_nonfinite(plan, held.step, held)

    with intra_op_threads(1):
        if workers <= 1:
            work(buffers)
        else:
            with ThreadPoolExecutor(workers - 1) as pool:
                others = [pool.submit(work, Buffers(buffers.step)) for _ in range(workers - 1)]
                work(buffers)
                for other in others:
                    other.result()
    if nonfinite:
        names = [nonfinite[i] for i in sorted(nonfinite)]
        raise MergeInputError(f"{nonfinite_report(names)}; nothing was written")
    return stats


def _measure_tensor(plan: TensorPlan, s: SlerpStats, step: int, buffers: Buffers) -> None:
    """Norms, then (when finite) the dot product of one tensor pair: once per chunk each."""
    if plan.numel <= step:  # one chunk: read once, kept for the dot product
        pair = _pair(plan, 0, plan.numel, buffers)
        s.add_norms(*pair)
        if s.finite:
            s.add_dot(*pair)
    else:
        chunks = list(_chunks(plan.numel, step))
        for first, stop in chunks:
            pair = _pair(plan, first, stop, buffers)
            s.add_norms(*pair)
        if s.finite:
            s.add_dot(*pair, first=first)  # the last chunk is still in the buffers: not read again
            for first, stop in chunks[:-1]:
                s.add_dot(*_pair(plan, first, stop, buffers), first=first)


def _where_nonfinite(plan: TensorPlan, step: int, buffers: Buffers) -> str:
    """Which side holds the NaN/Inf (only run for a tensor whose norms are not finite)."""
    sides = []
    for side, ref in (("base", plan.base), ("model", plan.model)):
        for first, stop in _chunks(plan.numel, step):
            block = _read(ref, first, stop, plan, buffers.get("a", plan.compute_dtype, stop - first), buffers)
            if not all_finite(block):
                sides.append(side)
                break
    return f" ({' and '.join(sides) or 'overflow'})"


@dataclass
class WriteResult:
    shards: list[str]
    tensors: dict[str, dict] = field(default_factory=dict)  # name -> {t, method, dot}
    bytes_out: int = 0


def write_merged(
    tensors: list[TensorPlan], stats: dict[str, SlerpStats], out_dir: Path, max_shard_bytes: int, buffers: Buffers
) -> WriteResult:
    """Pass 2: `out_dir/model-*.safetensors` and the index, tensor by tensor in the base's order;
    each block is written while the next is computed (`write_behind`)."""
    by_name = {p.name: p for p in tensors}
    result = WriteResult(shards=[])
    step = buffers.step

    def write_group(group: list[OutTensor], writer: ShardWriter) -> None:
        (out,) = group
        plan = by_name[out.name]
        result.tensors[plan.name] = _write_tensor(plan, stats.get(plan.name), writer, step, buffers)

    groups = [[OutTensor(p.name, DTYPE_NAMES[p.dtype], p.shape)] for p in tensors]
    with intra_op_threads(1):
        written = write_shards(groups, out_dir, max_shard_bytes, write_group, write_behind=True)
    result.shards, result.bytes_out = written.names, written.bytes_out
    return result


def _write_tensor(plan: TensorPlan, stats: SlerpStats | None, writer: ShardWriter, step: int, buffers: Buffers) -> dict:
    if plan.t is None:  # integer or boolean buffers: the base's, byte for byte
        size = plan.base.torch_dtype.itemsize
        for first, stop in _chunks(plan.numel, step):
            writer.write(plan.name, plan.base.read_bytes(first * size, stop * size))
        return {"t": None, "method": "copy"}
    coef = coefficients(plan.t, stats.cosine(), plan.compute_dtype)
    for first, stop in _chunks(plan.numel, step):
        buffers.turn = side = 1 - buffers.turn  # the other side than the block being written
        in_place = plan.dtype == plan.compute_dtype  # the result is `a` itself, so `a` takes turns
        a, b = _pair(plan, first, stop, buffers, side if in_place else 0)
        out = a if in_place else buffers.get("out", plan.dtype, stop - first, side)
        writer.write(plan.name, combine(a, b, coef, out))
    return {"t": plan.t, "method": "lerp" if coef.linear else "slerp", "dot": coef.dot}
