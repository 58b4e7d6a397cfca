"""The one place hala talks to lighteval (0.13), and why each workaround here exists (the model
class hala hands its pipeline is in `hala.evaluate.lighteval_scorer`).

hala runs lighteval's own Arabic task definitions (`lighteval.tasks.multilingual.tasks.arabic`):
same prompt functions, splits and metric (`acc` with `LogProbCharNorm`, i.e. acc_norm). Only the
data source changes: a custom-tasks file, written here and usable with the `lighteval` CLI as is,
deep-copies each task's config and points `hf_repo` at a local dataset card whose `configs` name
the local files. The scores come from lighteval's `Pipeline`; hala only reads them back.

lighteval's quirks, handled here so a user never meets them (`hala.evaluate.reproduce` does the
same for the `lighteval` CLI):
- Building its full task `Registry` imports every task module, and some touch the network at
  import: `tiny_benchmarks` downloads a pickle, `ifeval` calls `nltk.download`, and `mt_bench`
  calls `HfApi.list_models(model_name=...)`, which current huggingface_hub rejects (TypeError).
  hala gives the pipeline a registry of just the custom tasks.
- With a local model path, its sample cache (`cache_dir / model_name`) lands *inside the model
  folder*, and would be read back for a retrained model at the same path. hala moves the cache
  into the run folder.
- xxhash 4 breaks lighteval's hashing; the pin is `xxhash<4`, checked here with a clear message.
- lighteval's own vLLM backend accepts only vllm<0.10.2 (hala pins 0.33), so `backend=vllm`
  scores lighteval's log-likelihood requests with hala's vLLM engine, through the engine API
  (`hala.evaluate.lighteval_scorer`): the token sequences lighteval's transformers backend builds,
  so both backends score the same tokens and a CPU run and a GPU run of a model agree.
- `backend=transformers` is the same scorer on hala's transformers engine, which runs the decoder
  over every position but the LM head only over each choice's tokens; lighteval's own model
  projects and log-softmaxes every position (Gemma 3: 262k logits a token), which on a CPU is
  most of the time.
- `backend=hf` is lighteval's own transformers model, which loads the model itself: its scores
  are the `lighteval` CLI's (`tests/test_evaluate_bench.py` pins that).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from hala.engines.base import EngineConfig
from hala.evaluate.benchmarks import Benchmark, TaskData
from hala.evaluate.lighteval_scorer import engine_scorer

ARABIC_TASKS_MODULE = "lighteval.tasks.multilingual.tasks.arabic"
NUM_FEWSHOT = 0  # the paper's setting


class LightevalSetupError(ValueError):
    """lighteval can't run here as installed; the message says what to change."""


def check_versions() -> None:
    from importlib import metadata

    version = metadata.version("xxhash")
    if int(version.split(".")[0]) >= 4:
        raise LightevalSetupError(f"xxhash {version} breaks lighteval 0.13; install hala's pin: pip install 'xxhash<4'")


def lighteval_subsets(bench: Benchmark) -> list[str]:
    """The subsets lighteval defines for `bench`, less those hala skips (ArabicMMLU's aggregate "All")."""
    from importlib import import_module

    configs = import_module(ARABIC_TASKS_MODULE).TASKS_TABLE
    names = [c.hf_subset for c in configs if c.name == bench.key or c.name.startswith(f"{bench.key}:")]
    return [s for s in names if s not in bench.skip_subsets]


def check_subsets(data: TaskData) -> None:
    known = lighteval_subsets(data.bench)
    for subset in data.subsets:
        if subset not in known:
            raise ValueError(
                f"{data.root / subset}: lighteval has no {data.bench.label} subset {subset!r}; "
                f"valid subsets: {', '.join(known)}"
            )


# --- the custom-tasks file and the local dataset cards it points at ---------------------------


def _dataset_card(data: TaskData) -> str:
    lines = ["---", "configs:"]
    for subset, splits in data.files.items():
        lines += [f"- config_name: {json.dumps(subset, ensure_ascii=False)}", "  data_files:"]
        for split, path in splits.items():
            lines += [f"  - split: {split}", f"    path: {json.dumps(str(path.resolve()), ensure_ascii=False)}"]
    lines += ["---", "Written by `hala eval bench`: each config points at local files in the HF dataset's schema.", ""]
    return "\n".join(lines)


_TASKS_FILE = '''"""lighteval custom tasks written by `hala eval bench`.

The OALL v2 Arabic tasks exactly as lighteval defines them ({module}),
each pointed at a local copy of its data (a dataset card whose configs name the files).
Use it with the lighteval CLI as is, e.g.:

    lighteval accelerate "model_name=MODEL_DIR,device=cpu,dtype=float32" "{example}|0" --custom-tasks {path}
"""

import copy

from {module} import TASKS_TABLE as _ARABIC

LOCAL_DATA = {local}

_BY_NAME = {{config.name: config for config in _ARABIC}}
TASKS_TABLE = []
for _name, _folder in LOCAL_DATA.items():
    _config = copy.deepcopy(_BY_NAME[_name])
    _config.hf_repo = _folder
    _config.hf_revision = None
    TASKS_TABLE.append(_config)
'''


def write_custom_tasks(folder: Path, task_data: list[TaskData]) -> tuple[Path, list[str]]:
    """Write dataset cards under `folder/datasets` and `folder/tasks.py`; return it and the task names."""
    from hala.data.writers import atomic_write_text

    local: dict[str, str] = {}
    for data in task_data:
        card_dir = folder / "datasets" / data.bench.hf_repo
        atomic_write_text(card_dir / "README.md", _dataset_card(data))
        for subset in data.subsets:
            local[data.bench.task_name(subset)] = str(card_dir.resolve())
    path = folder / "tasks.py"
    text = _TASKS_FILE.format(
        module=ARABIC_TASKS_MODULE,
        example=next(iter(local)),
        path=path.resolve(),
        local=json.dumps(local, indent=4, ensure_ascii=False),
    )
    atomic_write_text(path, text)
    return path, list(local)


# --- running lighteval's pipeline in process ----------------------------------------------------


@dataclass
class RunSettings:
    backend: str  # "hf", "vllm" or "transformers"
    device: str  # "cpu" or "cuda" (hf)
    dtype: str
    batch_size: int
    max_samples: int | None
    cache_dir: str  # lighteval's sample cache for this model
    chat_template: bool | None = None  # None: lighteval's default (use the tokenizer's, if any)
    max_model_len: int | None = None  # vllm
    tensor_parallel_size: int = 1  # vllm
    gpu_memory_utilization: float = 0.9  # vllm


@dataclass
class ModelRun:
    """What lighteval reported for one model: per task name, acc_norm, its stderr and the item count."""

    metric: str = ""
    scores: dict[str, float] = field(default_factory=dict)
    stderr: dict[str, float] = field(default_factory=dict)
    items: dict[str, int] = field(default_factory=dict)
    chat_template: bool | None = None
    details: list[dict] = field(default_factory=list)
    lighteval_results: dict = field(default_factory=dict)


@contextmanager
def _pipeline_scope(cache_dir: str) -> Iterator[None]:
    """The registry holds only the custom tasks; the sample cache lives in `cache_dir`."""
    from lighteval.tasks.registry import Registry
    from lighteval.utils.cache_management import SampleCache

    load_all, cache_init = Registry.load_all_task_configs, SampleCache.__init__

    def custom_tasks_only(custom_tasks=None, load_multilingual=False):
        return Registry._extract_configs(Registry.create_custom_tasks_module(custom_tasks))

    def cache_in_run_folder(self, model_config):
        cache_init(self, model_config.model_copy(update={"model_name": "model", "cache_dir": cache_dir}))

    Registry.load_all_task_configs = staticmethod(custom_tasks_only)
    SampleCache.__init__ = cache_in_run_folder
    try:
        yield
    finally:
        Registry.load_all_task_configs = staticmethod(load_all)
        SampleCache.__init__ = cache_init


def evaluate_model(model_dir: str | Path, tasks_file: Path, task_names: list[str], settings: RunSettings) -> ModelRun:
    """Run lighteval's pipeline on one model; loading errors propagate to the caller."""
    check_versions()
    from lighteval.logging.evaluation_tracker import EvaluationTracker
    from lighteval.pipeline import ParallelismManager, Pipeline, PipelineParameters

    tasks = ",".join(f"{t}|{NUM_FEWSHOT}" for t in task_names)
    tracker = EvaluationTracker(output_dir=settings.cache_dir, save_details=False)
    with _pipeline_scope(settings.cache_dir):
        if settings.backend == "vllm":
            launcher, model_config = ParallelismManager.VLLM, None
            model = engine_scorer(_vllm_engine(model_dir, settings), settings.chat_template)
        elif settings.backend == "transformers":
            launcher, model_config = ParallelismManager.ACCELERATE, None
            engine = EngineConfig(kind="transformers", model=str(model_dir), dtype=settings.dtype)
            model = engine_scorer(engine, settings.chat_template)
        else:
            from lighteval.models.transformers.transformers_model import TransformersModelConfig

            launcher, model = ParallelismManager.ACCELERATE, None
            model_config = TransformersModelConfig(
                model_name=str(model_dir), device=settings.device, dtype=settings.dtype, batch_size=settings.batch_size
            )
            if settings.chat_template is not None:
                model_config.override_chat_template = settings.chat_template
        params = PipelineParameters(
            launcher_type=launcher, custom_tasks_directory=str(tasks_file), max_samples=settings.max_samples
        )
        try:
            pipeline = Pipeline(
                tasks=tasks,
                pipeline_parameters=params,
                evaluation_tracker=tracker,
                model_config=model_config,
                model=model,
            )
            chat_template = bool(pipeline.model.use_chat_template)
            pipeline.evaluate()  # releases the model when it is done
        except BaseException:
            if model is not None:
                model.cleanup()  # a vLLM engine would otherwise hold its memory for the next model
            raise
    return _read_back(pipeline, task_names, chat_template)


def _vllm_engine(model_dir: str | Path, settings: RunSettings) -> EngineConfig:
    return EngineConfig(
        kind="vllm",
        model=str(model_dir),
        dtype=settings.dtype,
        max_model_len=settings.max_model_len,
        tensor_parallel_size=settings.tensor_parallel_size,
        gpu_memory_utilization=settings.gpu_memory_utilization,
        enforce_eager=True,
        # cached prefixes would return no prompt log-probs for their tokens
        vllm_kwargs={"enable_prefix_caching": False},
    )


def _read_back(pipeline, task_names: list[str], chat_template: bool) -> ModelRun:
    results = pipeline.get_results()
    run = ModelRun(chat_template=chat_template, lighteval_results=json.loads(json.dumps(results, default=str)))
    for name in task_names:
        full = f"{name}|{NUM_FEWSHOT}"
        run.metric = pipeline.tasks_dict[full].metrics[0].metric_name
        # get_results() writes "task|0" as "task:0" (the CLI's results file keeps "task|0")
        scores = results["results"][full.replace("|", ":")]
        run.scores[name] = scores[run.metric]
        run.stderr[name] = scores.get(f"{run.metric}_stderr")
        run.items[name] = len(pipeline.documents_dict[full])
    for full, entries in pipeline.get_details().items():
        for entry in entries:
            run.details.append(
                {
                    "task": full.rsplit("|", 1)[0],
                    "id": entry.doc.id,
                    "gold_index": entry.doc.gold_index,
                    "choices": list(entry.doc.choices),
                    "logprobs": list(entry.model_response.logprobs),
                    "acc_norm": entry.metric.get(run.metric),
                }
            )
    return run
