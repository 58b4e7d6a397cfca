"""`hala eval bench`: the paper's six OALL v2 benchmarks for several models in one run.

Every model (base, SFT, merged, ...) runs the same lighteval tasks on the same local data; the run
folder then holds `results.json` (per subset, per benchmark and average, per model), `results.md`
(the table, with the paper's numbers for the matching Hala model and its base) and `scores.png`.

A model that fails (it won't load, or its evaluation crashes) is reported in all three and the
others still run; the stage then fails without a manifest, so a rerun retries just that model:
each finished model is kept in `models/<label>.json` with the fingerprint of the settings, the data
and that model folder (`StageFrame.unit_fingerprint`), and is skipped while all three match (a
model retrained at the same path is evaluated again; adding a model redoes no other).

Also written, to check hala against lighteval itself: `lighteval/tasks.py` (the custom-tasks file),
`lighteval/offline/` (PYTHONPATH for an offline CLI) and `lighteval/reproduce.sh`, which runs the
`lighteval` CLI on every model with the same settings.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from hala.config import StrictModel
from hala.data.manifest import FileEntry, Manifest
from hala.data.output_lock import holds_output
from hala.data.writers import atomic_write_text, write_jsonl
from hala.evaluate import lighteval_adapter as adapter
from hala.evaluate.benchmarks import MissingDataError, bundled_data_dir, find_task_data, resolve_tasks
from hala.evaluate.paper import PAPER, PAPER_ROW_CHOICES, paper_rows_for
from hala.evaluate.report import bar_chart, benchmark_score, markdown_table, model_average
from hala.evaluate.reproduce import cli_command, write_reproduce_script
from hala.frame import StageFrame

log = logging.getLogger("hala.evaluate")


class BenchConfig(StrictModel):
    NOT_OUTPUT = frozenset({"batch_size", "gpu_memory_utilization"})
    models: list[str] = Field(min_length=1, description="model folders, each optionally as LABEL=DIR")
    out: str = Field(description="output folder: results.md, results.json, manifest.json")
    tasks: list[str] = Field(default_factory=list, description="benchmark names; empty: all six")
    data_dir: str | None = Field(None, description="local OALL v2 data; default: the bundled mini data")
    limit: int | None = Field(None, ge=1, description="at most N items per subset (lighteval's max_samples)")
    backend: Literal["auto", "hf", "vllm", "transformers"] = Field(
        "auto", description="auto: vllm on a GPU, else hf (lighteval's own transformers model); transformers: hala's "
        "transformers engine, which projects only the choices' tokens onto the vocabulary (same scores, several times "
        "faster on a CPU for a large vocabulary)")
    dtype: str | None = Field(None, description="default: float32 on CPU, the model's own on GPU")
    batch_size: int = Field(8, ge=1, description="hf backend")
    chat_template: bool | None = Field(None, description="None: lighteval's default (the tokenizer's template, if any)")
    paper_row: str = Field("auto", description=f"the paper's row shown alongside: {', '.join(PAPER_ROW_CHOICES)} "
                           "(auto: matched by model names)")
    max_model_len: int | None = Field(None, ge=1, description="vllm backend")
    tensor_parallel_size: int = Field(1, ge=1, description="vllm backend")
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1, description="vllm backend")

    @field_validator("paper_row")
    @classmethod
    def _known_row(cls, value: str) -> str:
        if value not in PAPER_ROW_CHOICES:
            raise ValueError(f"valid: {', '.join(PAPER_ROW_CHOICES)}")
        return value


class ModelsFailedError(ValueError):
    """Some models could not be evaluated; the others' results were written."""


def parse_models(specs: list[str]) -> list[tuple[str, Path]]:
    """`DIR` or `LABEL=DIR` -> (label, path); the label defaults to the folder name and must be unique."""
    models = []
    for spec in specs:
        label, sep, rest = spec.partition("=")
        if sep and label and "/" not in label and not Path(spec).exists():
            models.append((label, Path(rest)))
        else:
            models.append((Path(spec).resolve().name, Path(spec)))
    names = [_safe(label) for label, _ in models]  # labels name files too
    for (label, _), name in zip(models, names):
        if names.count(name) > 1:
            raise ValueError(f"two models are labelled {label!r} (or alike); name them with --model LABEL=DIR")
    return models


def _safe(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", label)


def _resolve_backend(cfg: BenchConfig) -> tuple[str, str]:
    """(backend, device): vLLM on a GPU when installed, transformers otherwise."""
    import importlib.util

    from hala.engines.device import name as device_name

    device = device_name()
    if cfg.backend != "auto":
        return cfg.backend, device
    return ("vllm" if device == "cuda" and importlib.util.find_spec("vllm") else "hf"), device


@holds_output()
def bench(cfg: BenchConfig) -> Manifest:
    frame = StageFrame("eval-bench", cfg)
    out = frame.out
    benches = resolve_tasks(cfg.tasks)
    data_dir = Path(cfg.data_dir) if cfg.data_dir else bundled_data_dir()
    if not data_dir.is_dir():
        raise MissingDataError(f"data dir {data_dir} does not exist")
    task_data = [find_task_data(data_dir, b) for b in benches]
    for data in task_data:
        adapter.check_subsets(data)
    models = parse_models(cfg.models)
    adapter.check_versions()

    model_entries = [FileEntry.of(path) for _, path in models]
    data_entries = [FileEntry.of(d.root) for d in task_data]
    if done := frame.open(model_entries + data_entries):
        return done

    tasks_file, task_names = adapter.write_custom_tasks(out / "lighteval", task_data)
    backend, device = _resolve_backend(cfg)
    entries, commands = [], []
    for (label, path), model_entry in zip(models, model_entries):
        settings = adapter.RunSettings(
            backend=backend,
            device=device,
            dtype=cfg.dtype or ("float32" if device == "cpu" else "auto"),
            batch_size=cfg.batch_size,
            max_samples=cfg.limit,
            cache_dir=str((out / ".cache" / _safe(label)).resolve()),
            chat_template=cfg.chat_template,
            max_model_len=cfg.max_model_len,
            tensor_parallel_size=cfg.tensor_parallel_size,
            gpu_memory_utilization=cfg.gpu_memory_utilization,
        )
        commands.append(cli_command(out / "lighteval", _safe(label), path, task_names, settings))
        with frame.timer(f"model:{label}"):  # keyed by its own model alone: adding a model redoes no other
            key = frame.unit_fingerprint([model_entry, *data_entries], leave_out="models")
            entries.append(_evaluate(out, label, path, tasks_file, task_names, settings, task_data, key))
    write_reproduce_script(out / "lighteval", commands)

    results = _results(cfg, data_dir, task_data, models, entries)
    outputs = [
        atomic_write_text(out / "results.json", json.dumps(results, indent=2, ensure_ascii=False) + "\n"),
        atomic_write_text(out / "results.md", markdown_table(results)),
    ]
    if any(e["status"] == "ok" for e in entries):
        outputs.append(bar_chart(results, out / "scores.png"))
    failed = [e for e in entries if e["status"] != "ok"]
    if failed:
        listing = "; ".join(f"{e['label']} ({e['path']}): {e['error']}" for e in failed)
        raise ModelsFailedError(
            f"{len(failed)} of {len(entries)} models failed: {listing}. "
            f"The others' results are in {out / 'results.md'}; rerun the same command to retry the failed ones"
        )
    counts = {
        "models": len(entries),
        "tasks": len(benches),
        "subsets": len(task_names),
        "items": sum(sum(s["items"] for s in t["subsets"].values()) for t in entries[0]["tasks"].values()),
    }
    return frame.finish(counts, outputs=[*outputs, tasks_file])


def _evaluate(out: Path, label: str, path: Path, tasks_file: Path, task_names: list[str], settings, task_data,
              key: str) -> dict:  # fmt: skip
    """One model's entry in results.json; read back from models/<label>.json when that model was
    evaluated with these settings on this data (`key`), so a model retrained at the same path is
    evaluated again."""
    unit = out / "models" / f"{_safe(label)}.json"
    if unit.exists() and (done := json.loads(unit.read_text(encoding="utf-8"))).get("fingerprint") == key:
        log.info("%s: already evaluated (%s)", label, unit)
        return done
    entry = {"label": label, "path": str(path.resolve()), "backend": settings.backend, "dtype": settings.dtype,
             "fingerprint": key}  # fmt: skip
    if not (path / "config.json").is_file():
        what = "does not exist" if not path.exists() else "has no config.json"
        return {**entry, "status": "failed", "error": f"not a model folder: {path} {what}"}
    log.info("%s: evaluating %s on %d subsets with the %s backend", label, path, len(task_names), settings.backend)
    try:
        run = adapter.evaluate_model(path.resolve(), tasks_file, task_names, settings)
    except Exception as exc:  # one model's failure must not stop the others
        error = " ".join(f"{type(exc).__name__}: {exc}".split())
        log.error("%s: evaluation failed: %s", label, error)
        log.debug("%s: traceback", label, exc_info=True)
        return {**entry, "status": "failed", "error": error[:500]}
    tasks = {}
    for data in task_data:
        subsets = {}
        for subset in data.subsets:
            name = data.bench.task_name(subset)
            subsets[subset] = {"acc_norm": run.scores[name], "stderr": run.stderr[name], "items": run.items[name]}
        tasks[data.bench.key] = {"acc_norm": benchmark_score(subsets), "subsets": subsets}
    entry.update(
        status="ok",
        error=None,
        chat_template=run.chat_template,
        metric_lighteval=run.metric,
        tasks=tasks,
        average=model_average(tasks),
    )
    write_jsonl(out / "details" / f"{_safe(label)}.jsonl", run.details)
    raw = json.dumps(run.lighteval_results, indent=2) + "\n"
    atomic_write_text(out / "lighteval" / "results" / f"{_safe(label)}.json", raw)
    atomic_write_text(unit, json.dumps(entry, indent=2, ensure_ascii=False) + "\n")
    return entry


def _results(cfg: BenchConfig, data_dir: Path, task_data, models, entries: list[dict]) -> dict:
    tasks = [d.bench.key for d in task_data]
    rows = paper_rows_for(cfg.paper_row, [(label, path) for label, path in models])
    not_comparable = []
    if data_dir.resolve() == bundled_data_dir().resolve():
        not_comparable.append(
            "the bundled mini data (original items written for hala's tests) stands in for the real datasets"
        )
    if cfg.limit:
        not_comparable.append(f"--limit {cfg.limit} keeps at most {cfg.limit} items per subset")
    for data in task_data:
        known = adapter.lighteval_subsets(data.bench)
        if len(data.subsets) < len(known):
            not_comparable.append(f"{data.bench.label} ran {len(data.subsets)} of its {len(known)} subsets")
    return {
        "metric": "acc_norm",
        "metric_lighteval": next((e["metric_lighteval"] for e in entries if e["status"] == "ok"), None),
        "num_fewshot": adapter.NUM_FEWSHOT,
        "limit": cfg.limit,
        "data_dir": str(data_dir.resolve()),
        "tasks": tasks,
        "subsets": {d.bench.key: d.subsets for d in task_data},
        "not_comparable": not_comparable,
        "models": entries,
        "paper": {
            "source": PAPER,
            "unit": "percent",
            "matched_by": f"--paper-row {cfg.paper_row}" if cfg.paper_row != "auto" else "model name",
            "rows": [
                {
                    "name": row.name,
                    "scores": {t: row.scores[t] for t in tasks} if row.scores else None,
                    "average": row.average_over(tasks),
                    "note": row.note,
                }
                for row in rows
            ],
        },
    }
