"""The files that travel with the weights: tokenizer, chat template, generation config, license.

A model folder is more than its tensors. Its tokenizer and chat template decide what the weights
read; its generation config, which tokens end a turn; its LICENSE and NOTICE files, what a user
may do with it; custom modelling code, how transformers builds it. A quantized or merged model is
the same model to whoever serves it, so every such top-level file is copied into the output.

What is not copied: the weights and their index (rewritten), config.json (rewritten by the
stage), the records of the run that made the source folder (its manifest, its run stamp, a
quantization report: they describe that run, not ours), and hidden files (`.gitattributes`, a
temporary file an interrupted write left). Merge takes the tokenizer files from one of its two
models (`tokenizer_source`) and the rest from the base, so the tokenizer files are told apart.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from hala.checkpoint.model_config import CONFIG
from hala.checkpoint.reader import PICKLE_INDEX, PICKLE_SUFFIXES, SAFETENSORS_INDEX
from hala.data.manifest import MANIFEST, RUN_STAMP

TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "tokenizer.model", "special_tokens_map.json", "added_tokens.json",
    "vocab.json", "vocab.txt", "merges.txt", "chat_template.jinja", "chat_template.json", "generation_config.json",
)  # fmt: skip
WEIGHT_SUFFIXES = (".safetensors", *PICKLE_SUFFIXES, ".gguf")
NOT_COPIED = {CONFIG, SAFETENSORS_INDEX, PICKLE_INDEX, MANIFEST, RUN_STAMP}
RUN_REPORTS = "quantization_report"  # quantization_report.json and .md, hala.quantize.report


def is_tokenizer_file(path: Path) -> bool:
    """Tokenizer, chat template or generation config: what `tokenizer_source` chooses in a merge."""
    return path.name in TOKENIZER_FILES or path.suffix == ".tiktoken"


def side_files(folder: Path) -> list[Path]:
    """Every top-level file of `folder` that is copied with the model, tokenizer files included."""
    return sorted(
        p for p in folder.iterdir()
        if p.is_file() and p.name not in NOT_COPIED and not p.name.startswith((".", RUN_REPORTS))
        and not p.name.endswith(WEIGHT_SUFFIXES)
    )  # fmt: skip


def copy_side_files(files: list[Path], dest: Path) -> None:
    """Copies of `files` in `dest`, with their modification times."""
    for path in files:
        shutil.copy2(path, dest / path.name)
