"""Which t each tensor gets: scalars, per-layer gradients and name filters, as mergekit resolves them.

A setting is a number, a *gradient* (a list of numbers spread evenly over the layers of a slice and
interpolated linearly between them), or a list of `{filter, value}` entries where the first entry
whose filter is a substring of the tensor name (or is absent or `*`) wins. A layer's position in
its slice is `i / (n - 1)` (1 for a one-layer slice). Tensors outside the layers (embeddings, the
final norm, the LM head) sit at position 0, so a gradient gives them its first value; those whose
name holds `embed` read the first slice's settings, the others the last slice's. Slice settings
come before the top-level ones; a setting whose filters match nothing falls through to the next.
All of this is mergekit 0.1.5's `evaluate_setting` and `MergePlanner.plan_slice`, to the float.
"""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from hala.config import StrictModel

Scalar = float
Gradient = list[float]


def check_t(value):
    """t runs from the base (0) to the model (1). SLERP outside [0, 1] extrapolates, which no merge
    recipe means and which a typo (t=5 for 0.5) would give silently, so it is refused."""
    numbers = [value] if isinstance(value, (int, float)) else value if isinstance(value, list) else []
    for v in numbers:
        if isinstance(v, (int, float)) and not 0 <= v <= 1:
            raise ValueError("t must be between 0 (the base) and 1 (the model)")
    return value


class FilteredT(StrictModel):
    """`{filter: self_attn, value: [0, 0.5, 1]}`: the value for tensors whose name holds `filter`."""

    filter: str | None = Field(None, description="substring of the tensor name; absent or '*' matches every tensor")
    value: Scalar | Gradient

    _t_range = field_validator("value")(check_t)


TSetting = Scalar | Gradient | FilteredT | list[FilteredT]


class MergeSlice(StrictModel):
    """A run of layers [start, end) with its own t (mergekit `slices:`); positions restart at 0."""

    layer_range: tuple[int, int]
    t: TSetting | None = None

    _t_range = field_validator("t")(check_t)


_LAYER = re.compile(r"(?:^|\.)(?:layers|h|blocks)\.(\d+)\.")


def layer_index(name: str) -> int | None:
    """The decoder layer a tensor belongs to (`model.layers.12.mlp...` -> 12), None outside layers."""
    match = _LAYER.search(name)
    return int(match.group(1)) if match else None


def evaluate(setting: TSetting | None, name: str, position: float) -> float | None:
    """The value of one setting for tensor `name` at gradient position `position` (0..1)."""
    if setting is None:
        return None
    if isinstance(setting, FilteredT):
        setting = [setting]
    if isinstance(setting, (int, float)):
        return float(setting)
    if not setting:
        return None
    if all(isinstance(v, (int, float)) for v in setting):
        values = [float(v) for v in setting]
        scaled = position * (len(values) - 1)
        i0 = int(scaled)
        i1 = min(len(values) - 1, i0 + 1)
        frac = scaled - i0
        return float((1 - frac) * values[i0] + frac * values[i1])
    for entry in setting:
        if entry.filter is None or entry.filter == "*" or (name and entry.filter in name):
            return evaluate(entry.value, name, position)
    return None


def default_slices(num_layers: int) -> list[MergeSlice]:
    return [MergeSlice(layer_range=(0, num_layers))]


def check_slices(slices: list[MergeSlice], num_layers: int) -> None:
    """Slices must cover layers 0..num_layers-1 once, in order (hala merges two models of one shape)."""
    expected = 0
    for i, s in enumerate(slices):
        start, end = s.layer_range
        if start != expected or end <= start:
            raise ValueError(
                f"slices[{i}].layer_range {list(s.layer_range)}: slices must cover every layer once, in order "
                f"(expected one starting at {expected}); hala merge keeps the model's {num_layers} layers"
            )
        expected = end
    if expected != num_layers:
        raise ValueError(f"slices end at layer {expected}, but the models have {num_layers} layers")


def position_in(name: str, slices: list[MergeSlice]) -> tuple[MergeSlice, float]:
    """The slice that holds tensor `name` and the tensor's gradient position in it."""
    layer = layer_index(name)
    if layer is None:
        return (slices[0] if "embed" in name else slices[-1]), 0.0
    for s in slices:
        start, end = s.layer_range
        if start <= layer < end:
            n = end - start
            return s, ((layer - start) / (n - 1) if n > 1 else 1)
    raise ValueError(f"{name}: layer {layer} is in no slice")


def resolve_t(name: str, t: TSetting, slices: list[MergeSlice]) -> float:
    """The t of tensor `name`: its slice's setting, else the top-level one."""
    owner, position = position_in(name, slices)
    for setting in (owner.t, t):
        value = evaluate(setting, name, position)
        if value is not None:
            return value
    raise ValueError(
        f"no t for tensor {name}: no filter of t matches it; add an entry without a filter "
        "(e.g. `- value: 0.5`) as the last one"
    )
