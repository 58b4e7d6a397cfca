"""The same evaluation with the `lighteval` CLI, offline: what hala's numbers can be checked against.

`hala eval bench` writes `lighteval/reproduce.sh` into its run folder: one `lighteval accelerate`
call per model, on hala's custom-tasks file, with the run's settings (transformers backend). Two
lighteval quirks need handling outside lighteval's own process here:

- its task registry imports every task module and three touch the network at import; a
  `sitecustomize.py` put on PYTHONPATH (`lighteval/offline/`) stops them (see its docstring);
- given an absolute local model path it writes its sample cache into the model folder, so the
  command gives it a link to the model (`lighteval/models/<label>`) by a path relative to its
  working directory, which keeps the cache under `lighteval/cache/`.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, replace
from pathlib import Path

from hala.data.writers import atomic_write_text
from hala.evaluate.lighteval_adapter import NUM_FEWSHOT, RunSettings

OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}

SITECUSTOMIZE = '''"""Makes the `lighteval` CLI start with no network (written by `hala eval bench`).

Python imports this at start-up when its folder is on PYTHONPATH. lighteval builds its full task
registry on every run, and three task modules touch the network when imported; here they can't.
"""

import importlib.util
import os

# tiny_benchmarks downloads tinyBenchmarks.pkl at import unless the file is there (it is only read
# by the tinyBenchmarks metrics, from another path).
_spec = importlib.util.find_spec("lighteval")
if _spec is not None and _spec.submodule_search_locations:
    _pkl = os.path.join(list(_spec.submodule_search_locations)[0], "tasks", "tasks", "tinyBenchmarks.pkl")
    if not os.path.exists(_pkl):
        try:
            open(_pkl, "ab").close()
        except OSError:
            pass

# ifeval and some metrics call nltk.download() at import; offline that can only fail.
try:
    import nltk

    nltk.download = lambda *args, **kwargs: False
except ImportError:
    pass

# mt_bench passes model_name= to HfApi.list_models, which huggingface_hub no longer accepts. The
# call only checks that a judge model exists, and its lazy result is never iterated.
try:
    from huggingface_hub import HfApi

    _list_models = HfApi.list_models

    def _list_models_compat(self, *args, model_name=None, **kwargs):
        if model_name is not None:
            kwargs.setdefault("search", model_name)
        return _list_models(self, *args, **kwargs)

    HfApi.list_models = _list_models_compat
except ImportError:
    pass
'''


def write_offline_shim(folder: Path) -> Path:
    """`folder/sitecustomize.py`; put `folder` on PYTHONPATH for an offline `lighteval` CLI."""
    atomic_write_text(folder / "sitecustomize.py", SITECUSTOMIZE)
    return folder


@dataclass
class CliCommand:
    """How to run the `lighteval` CLI on one model: `argv` in `cwd` with `env` added."""

    argv: list[str]
    cwd: str
    env: dict[str, str]

    def shell(self) -> str:
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in self.env.items())
        return f"(cd {shlex.quote(self.cwd)} && {env} {shlex.join(self.argv)})"


def cli_command(folder: Path, label: str, model: Path, task_names: list[str], settings: RunSettings) -> CliCommand:
    """The CLI run matching hala's run of `model` (transformers backend), in `folder` (`<out>/lighteval`)."""
    link = folder / "models" / label
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(model.resolve(), target_is_directory=True)
    settings = replace(settings, backend="hf", cache_dir=str((folder / "cache").resolve()))
    model_args = f"model_name=models/{label},device={settings.device},batch_size={settings.batch_size}"
    model_args += f",dtype={settings.dtype},cache_dir={settings.cache_dir}"
    if settings.chat_template is not None:
        model_args += f",override_chat_template={settings.chat_template}"
    argv = ["lighteval", "accelerate", model_args, ",".join(f"{t}|{NUM_FEWSHOT}" for t in task_names)]
    argv += ["--custom-tasks", str((folder / "tasks.py").resolve())]
    argv += ["--output-dir", str((folder / "cli-results").resolve())]
    if settings.max_samples:
        argv += ["--max-samples", str(settings.max_samples)]
    env = {**OFFLINE_ENV, "PYTHONPATH": str((folder / "offline").resolve())}
    return CliCommand(argv=argv, cwd=str(folder.resolve()), env=env)


def write_reproduce_script(folder: Path, commands: list[CliCommand]) -> Path:
    write_offline_shim(folder / "offline")
    lines = [
        "#!/usr/bin/env bash",
        "# Written by `hala eval bench`: the same evaluation with the lighteval CLI (transformers backend),",
        "# offline. Its results land in cli-results/; compare them with ../results.json.",
        "set -euo pipefail",
    ]
    return atomic_write_text(folder / "reproduce.sh", "\n".join(lines + [c.shell() for c in commands]) + "\n")
