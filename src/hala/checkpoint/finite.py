"""NaN and Inf in weights: how a block is checked, and how the tensors that hold them are reported.

A checkpoint with a non-finite weight quantizes and merges without an error, and the result only
shows it when someone generates with it (a NaN in one row of a Linear reaches every token). So
every tensor is checked as it streams past, the names of all the tensors that fail are collected,
and the run is refused with one message that names them (the first 20 and a count), in the same
words whichever stage found them.
"""

from __future__ import annotations

import torch

SHOWN = 20


def all_finite(x: torch.Tensor) -> bool:
    """No NaN and no Inf in `x` (a floating-point block). amax propagates both, and on BF16 is about
    four times faster than `isfinite(x).all()`."""
    return x.numel() == 0 or bool(torch.isfinite(x.abs().amax()))


def nonfinite_report(names: list[str]) -> str:
    """'N tensor(s) hold NaN or Inf values: a, b, ...': the stage adds what to do."""
    more = f" (and {len(names) - SHOWN} more)" if len(names) > SHOWN else ""
    return f"{len(names)} tensor(s) hold NaN or Inf values: {', '.join(names[:SHOWN])}{more}"
