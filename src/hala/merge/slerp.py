"""Spherical linear interpolation of two weight tensors, mergekit's definition to the bit.

Each tensor is one flat vector. Its L2 norm and the dot product of the two unit vectors give
cos θ; the result is `sin((1-t)θ)/sin θ · a + sin(tθ)/sin θ · b` applied to the *unnormalized*
tensors, so t=0 returns `a` and t=1 returns `b` bit for bit. When |cos θ| > 0.9995 the two are
(anti)colinear, sin θ is close to 0, and plain linear interpolation is used instead. Norms at or
below eps (1e-8) count as 1. Math runs in float32 (float64 for float64 inputs) and the result is
cast back to the output dtype.

We follow mergekit 0.1.5's `slerp` operation by operation, including how it sums: the norms are
taken over sub-chunks of `SUBCHUNK` (2^20) values and combined as a norm of norms, and the dot
product is summed from normalized sub-chunks. Floating-point sums depend on their order, so doing
the same thing is what makes the output identical to mergekit's rather than merely close.

The work is split so that a tensor too big to hold can be streamed: `SlerpStats.add_norms` over
every chunk, then `add_dot` over every chunk (it needs the norms), then `coefficients`, and
`combine` applied to each chunk. Chunks must be whole sub-chunks (except the last). `slerp` is the
whole-tensor composition of the same steps.

The order of a sum also depends on torch's thread count: a parallel sum of one output cuts the
range into one chunk per thread and adds the partial sums. mergekit sums with the process's thread
count; `hala.merge.stream` runs on one thread (see there why), so `SlerpStats.sum_threads` says how
many threads to add as, and `parallel_sum` adds in that order on the current thread. The norms need
no such care: torch reduces one row of a last-dim norm on one thread, whatever the count.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

DOT_THRESHOLD = 0.9995
EPS = 1e-8
SUBCHUNK = 1 << 20  # mergekit's _CHUNK_ELEMENTS, for a tensor merged on its own (batch of one)
PARALLEL_GRAIN = 32768  # at::internal::GRAIN_SIZE: torch sums fewer elements on one thread


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 inputs are merged in float64, everything else in float32 (as mergekit does)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


@contextmanager
def intra_op_threads(n: int | None):
    """torch's intra-op thread count inside the block (None: left as it is)."""
    before = torch.get_num_threads()
    if n is not None and n != before:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def parallel_sum(x: torch.Tensor, threads: int) -> torch.Tensor:
    """`x.sum(dim=1, keepdim=True)` of a [1, m] tensor, added as torch adds it on `threads` threads
    (at::parallel_reduce's two-pass reduction: min(threads, ⌈m/GRAIN⌉) chunks of ⌈m/chunks⌉, each
    summed, the partial sums added in order to 0), computed on the current thread."""
    m = x.shape[1]
    if threads <= 1 or m < PARALLEL_GRAIN:
        return x.sum(dim=1, keepdim=True)
    chunk = -(-m // min(threads, -(-m // PARALLEL_GRAIN)))
    total = torch.zeros(1, 1, dtype=x.dtype)
    for start in range(0, m, chunk):
        total = total + x[:, start : start + chunk].sum(dim=1, keepdim=True)
    return total


def _subchunks(x: torch.Tensor):
    for start in range(0, x.numel(), SUBCHUNK):
        yield x[start : start + SUBCHUNK].view(1, -1)


@dataclass
class SlerpStats:
    """Per-sub-chunk norms of both tensors, then per-sub-chunk dot products of their unit vectors."""

    eps: float = EPS
    sum_threads: int | None = None  # add the dot products as on this many threads (None: as torch does now)
    _norm_parts: tuple[list, list] = field(default_factory=lambda: ([], []))
    _dot_parts: dict = field(default_factory=dict)  # sub-chunk index -> its sum, added in index order
    _norms: tuple[torch.Tensor, torch.Tensor] | None = None
    _raw: list = field(default_factory=list)

    def add_norms(self, a: torch.Tensor, b: torch.Tensor) -> None:
        """First pass, one chunk: `a` and `b` flat, in the compute dtype."""
        for x, y in zip(_subchunks(a), _subchunks(b)):
            self._norm_parts[0].append(torch.linalg.vector_norm(x, dim=1, keepdim=True))
            self._norm_parts[1].append(torch.linalg.vector_norm(y, dim=1, keepdim=True))

    def norms(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The two norms (norms of the sub-chunk norms); one at or below eps counts as 1."""
        if self._norms is None:
            self._raw = [
                torch.linalg.vector_norm(torch.stack(p), dim=0) if p else torch.zeros(1, 1) for p in self._norm_parts
            ]
            self._norms = tuple(torch.where(n > self.eps, n, 1) for n in self._raw)
        return self._norms

    @property
    def finite(self) -> bool:
        """False when either tensor holds NaN or Inf (they propagate into the norms; mergekit then
        quietly takes a NaN norm as 1)."""
        self.norms()
        return all(bool(torch.isfinite(n).all()) for n in self._raw)

    def add_dot(self, a: torch.Tensor, b: torch.Tensor, first: int | None = None) -> None:
        """Second pass, one chunk (after every `add_norms`); overwrites `a` and `b`. mergekit's
        `(x / norm_a) * (y / norm_b)`, done in place: the same roundings, no new buffers.
        Normalizing first keeps the sum from overflowing. `first`: the chunk's first element in the
        tensor, for chunks given out of order (default: right after the previous one)."""
        norm_a, norm_b = self.norms()
        a.div_(norm_a.reshape(()))  # elementwise: one call per chunk rounds as one per sub-chunk does
        b.div_(norm_b.reshape(()))
        a.mul_(b)
        index = len(self._dot_parts) if first is None else first // SUBCHUNK
        for i, x in enumerate(_subchunks(a)):  # sums: per sub-chunk, added in mergekit's order
            part = x.sum(dim=1, keepdim=True) if self.sum_threads is None else parallel_sum(x, self.sum_threads)
            self._dot_parts[index + i] = part

    def cosine(self) -> torch.Tensor:
        """cos θ, clamped to [-1, 1], in the compute dtype (shape [1, 1])."""
        if not self._dot_parts:
            return torch.zeros(1, 1)
        return torch.stack([self._dot_parts[i] for i in sorted(self._dot_parts)]).sum(dim=0).clamp(-1, 1)


@dataclass(frozen=True)
class Coefficients:
    a: torch.Tensor  # compute dtype
    b: torch.Tensor
    linear: bool  # True: colinear fallback to lerp
    dot: float  # cos θ as used


def coefficients(
    t: float, dot: torch.Tensor | float, dtype: torch.dtype = torch.float32, dot_threshold: float = DOT_THRESHOLD
) -> Coefficients:
    """The weights of `a` and `b`, with mergekit's exact sequence of operations in `dtype`."""
    t_ = torch.tensor(t, dtype=dtype)
    d = torch.as_tensor(dot).to(dtype).clamp(-1, 1)
    linear = bool(d.abs().max() > dot_threshold)
    if linear:
        return Coefficients(1 - t_, t_, True, float(d.max()))
    theta = torch.acos(d)
    sin_theta = torch.sin(theta)
    return Coefficients(
        torch.sin((1 - t_) * theta) / sin_theta, torch.sin(t_ * theta) / sin_theta, False, float(d.max())
    )


def combine(a: torch.Tensor, b: torch.Tensor, coef: Coefficients, out: torch.Tensor | torch.dtype) -> torch.Tensor:
    """coef.a·a + coef.b·b for one flat chunk, in the compute dtype; overwrites `a` and `b`. The
    result is cast into `out` (a buffer of the output dtype) or to a new tensor of dtype `out`."""
    a.mul_(coef.a.reshape(()))
    b.mul_(coef.b.reshape(()))
    a.add_(b)
    if isinstance(out, torch.dtype):
        return a.to(out)
    return a if out is a else out.copy_(a)


def slerp(
    t: float, a: torch.Tensor, b: torch.Tensor, *, dot_threshold: float = DOT_THRESHOLD, eps: float = EPS
) -> torch.Tensor:
    """SLERP from `a` (t=0) to `b` (t=1), both treated as flat vectors; same shape and dtype as `a`."""
    if a.shape != b.shape:
        raise ValueError(f"slerp needs tensors of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    dtype = compute_dtype(torch.promote_types(a.dtype, b.dtype))
    x, y = a.reshape(-1).to(dtype, copy=True), b.reshape(-1).to(dtype, copy=True)
    stats = SlerpStats(eps)
    stats.add_norms(x, y)
    stats.add_dot(x.clone(), y.clone())
    coef = coefficients(t, stats.cosine(), dtype, dot_threshold)
    return combine(x, y, coef, a.dtype).reshape(a.shape)
