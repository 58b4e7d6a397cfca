"""Which tensors of a checkpoint are Linear weights, decided from names and shapes alone.

We never build the model, so we can't ask it which modules are `nn.Linear`. Each supported
architecture (config.json `model_type`) instead names its Linear layers by pattern, and its other
matrices (embeddings, the LM head, LFM2's short convolution) as kept. A matrix that is neither is an
error rather than a guess: leaving an unknown Linear in BF16 without listing it in `ignore` would
make vLLM expect FP8 where there is none. Vectors (norms, biases) are never quantized.

Ignore patterns follow compressed-tensors: an exact module name, a trailing part of one
(`mlp.down_proj` ignores it in every layer), or `re:REGEX` matched from the start of the name.
vLLM fuses q/k/v and gate/up projections into one layer, so they must be ignored together.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from hala.checkpoint import TensorRef

HEAD = "lm_head"
_EMBED_HEAD = r"embed_tokens|lm_head"
_DECODER = r"layers\.\d+\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)"


@dataclass(frozen=True)
class Architecture:
    linear: str  # regex over module names (the tensor name without `.weight`)
    keep: str = _EMBED_HEAD  # matrices that are not Linear layers (or never quantized)
    strict: bool = True  # a matrix that is neither is an error (else it is kept and listed in `ignore`)

    def is_linear(self, module: str) -> bool:
        return re.search(rf"(^|\.)({self.linear})$", module) is not None

    def is_kept(self, module: str) -> bool:
        return re.search(rf"(^|\.)({self.keep})$", module) is not None


ARCHITECTURES: dict[str, Architecture] = {
    "llama": Architecture(_DECODER),
    "qwen2": Architecture(_DECODER),
    "gemma2": Architecture(_DECODER),
    "gemma3_text": Architecture(_DECODER),  # Gemma 3 (text-only): the tiny recipe's teacher
    "cohere": Architecture(_DECODER),
    "cohere2": Architecture(_DECODER),  # Command-A, the paper's teacher
    "lfm2": Architecture(
        r"layers\.\d+\.(self_attn\.(q|k|v|out)_proj|conv\.(in|out)_proj|feed_forward\.w[123])",
        keep=_EMBED_HEAD + r"|layers\.\d+\.conv\.conv",
    ),
}

# layers vLLM fuses into one: all or none of each group may be ignored
FUSED = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"), ("w1", "w3"))


class ArchitectureError(ValueError):
    """An architecture or a tensor we can't classify, with how to tell us."""


def get_architecture(model_type: str | None, linear_patterns: list[str] | None = None) -> Architecture:
    """The registry entry for `model_type`, or one built from user patterns (`re:` optional)."""
    if linear_patterns:
        return Architecture("|".join(f"(?:{p.removeprefix('re:')})" for p in linear_patterns), strict=False)
    if model_type in ARCHITECTURES:
        return ARCHITECTURES[model_type]
    raise ArchitectureError(
        f"unknown architecture {model_type!r} (config.json model_type); known: {', '.join(sorted(ARCHITECTURES))}. "
        "Name its Linear layers as regular expressions over module names, e.g. "
        r"--linear 'layers\.\d+\.(self_attn|mlp)\.\w+_proj' (or linear_patterns=[...] in the config)."
    )


def module_of(name: str) -> str:
    return name.removesuffix(".weight")


def classify(refs: list[TensorRef], arch: Architecture, hidden_size: int | None) -> tuple[set[str], set[str]]:
    """(names of the Linear weights, names of other matrices to list in `ignore`).

    A strict (registered) architecture raises on a matrix it can't place; with user patterns, an
    unmatched matrix is kept as is and listed in `ignore`, so vLLM never expects FP8 for it."""
    linear, unmatched = set(), set()
    for ref in refs:
        if not ref.name.endswith(".weight") or len(ref.shape) < 2:
            continue
        module = module_of(ref.name)
        if arch.is_linear(module):
            if len(ref.shape) != 2 or (hidden_size and hidden_size not in ref.shape):
                raise ArchitectureError(
                    f"{ref.name} is named like a Linear layer but has shape {list(ref.shape)} "
                    f"(expected 2-D with hidden_size {hidden_size} as one side)"
                )
            if ref.dtype not in ("BF16", "F16", "F32"):
                raise ArchitectureError(
                    f"{ref.name} is a Linear weight stored as {ref.dtype}; expected BF16, F16 or F32"
                )
            linear.add(ref.name)
        elif arch.is_kept(module):
            continue
        elif not arch.strict:
            unmatched.add(ref.name)
        else:
            raise ArchitectureError(
                f"{ref.name} (shape {list(ref.shape)}) is neither a known Linear layer nor a kept tensor "
                "of this architecture; pass --linear patterns that say which matrices are Linear layers"
            )
    return linear, unmatched


def matches(pattern: str, module: str) -> bool:
    if pattern.startswith("re:"):
        return re.match(pattern[3:], module) is not None
    return module == pattern or module.endswith("." + pattern)


def ignored_modules(linear: set[str], patterns: list[str], all_names: list[str]) -> list[str]:
    """Modules among the Linear weights that `patterns` keep unquantized; checks every pattern
    matches some tensor and that no fused group of vLLM is split."""
    modules = sorted(module_of(n) for n in linear)
    everything = [module_of(n) for n in all_names]
    for pattern in patterns:
        if not any(matches(pattern, m) for m in everything):
            raise ArchitectureError(f"ignore pattern {pattern!r} matches no tensor of this checkpoint")
    ignored = [m for m in modules if any(matches(p, m) for p in patterns)]
    _check_fused(set(ignored), set(modules))
    return ignored


def _check_fused(ignored: set[str], modules: set[str]) -> None:
    for module in ignored:
        prefix, _, leaf = module.rpartition(".")
        for group in FUSED:
            if leaf in group:
                siblings = {f"{prefix}.{other}" for other in group} & modules
                if not siblings <= ignored:
                    missing = ", ".join(sorted(siblings - ignored))
                    raise ArchitectureError(
                        f"ignoring {module} but not {missing}: vLLM fuses {'/'.join(group)} into one layer, "
                        "so ignore all of them or none"
                    )
