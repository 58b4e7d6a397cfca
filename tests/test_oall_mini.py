"""The bundled OALL v2 mini datasets must run through lighteval's real prompt functions.

Note on offline imports (checked with lighteval 0.13.0 and no network):
importing ``lighteval.tasks.multilingual.tasks.arabic`` does NOT import
``lighteval/tasks/tasks/tiny_benchmarks.py``, the module that downloads
``tinyBenchmarks.pkl`` when it is imported. So this test writes no pickle
stub. That download only happens when all task modules get imported, as
``lighteval.tasks.registry.Registry(...)`` does.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "src" / "hala" / "resources" / "oall_mini"
TASKS = json.loads((ROOT / "tasks.json").read_text(encoding="utf-8"))

EVAL_MIN, EVAL_MAX = 20, 40
FEWSHOT_MIN, FEWSHOT_MAX = 3, 5
EXPECTED_TASKS = {"alghafa", "arabic_mmlu", "arabic_exams", "madinah_qa", "aratrust", "arabic_mmlu_ht"}


def _path(spec: dict, subset: str, split: str) -> Path:
    return ROOT / spec["hf_repo"] / subset / f"{split}.jsonl"


def _rows(spec: dict, subset: str, split: str) -> list[dict]:
    lines = _path(spec, subset, split).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def _task_name(spec: dict, subset: str) -> str:
    if len(spec["lighteval_tasks"]) == 1 and ":" not in spec["lighteval_tasks"][0]:
        return spec["lighteval_tasks"][0]  # single-task dataset, e.g. "arabic_exams"
    return f"{spec['lighteval_prefix']}:{subset}"


def _splits(spec: dict) -> list[str]:
    return [spec["eval_split"]] + ([spec["fewshot_split"]] if spec["fewshot_split"] else [])


CASES = [
    pytest.param(task, subset, split, id=f"{task}/{subset}/{split}")
    for task, spec in TASKS.items()
    for subset in spec["subsets"]
    for split in _splits(spec)
]


@pytest.fixture(scope="module")
def arabic():
    pytest.importorskip("lighteval")
    return importlib.import_module("lighteval.tasks.multilingual.tasks.arabic")


@pytest.fixture(scope="module")
def configs(arabic):
    return {cfg.name: cfg for cfg in arabic.TASKS_TABLE}


def test_index_covers_the_six_tasks():
    assert set(TASKS) == EXPECTED_TASKS
    for spec in TASKS.values():
        assert 2 <= len(spec["subsets"]) <= 4 or spec["subsets"] == ["default"]
        assert len(spec["lighteval_tasks"]) == len(spec["subsets"])


def test_no_stray_files():
    expected = {
        _path(spec, subset, split).resolve()
        for spec in TASKS.values()
        for subset in spec["subsets"]
        for split in _splits(spec)
    }
    assert set(p.resolve() for p in ROOT.rglob("*.jsonl")) == expected


@pytest.mark.parametrize("task", sorted(TASKS))
def test_row_counts(task):
    spec = TASKS[task]
    n_eval = sum(len(_rows(spec, s, spec["eval_split"])) for s in spec["subsets"])
    assert EVAL_MIN <= n_eval <= EVAL_MAX, f"{task}: {n_eval} eval rows"
    if spec["fewshot_split"]:
        for subset in spec["subsets"]:
            n_few = len(_rows(spec, subset, spec["fewshot_split"]))
            assert FEWSHOT_MIN <= n_few <= FEWSHOT_MAX, f"{task}/{subset}: {n_few} few-shot rows"


@pytest.mark.parametrize("task", sorted(TASKS))
def test_index_matches_lighteval_configs(task, configs):
    spec = TASKS[task]
    module_name, func_name = spec["prompt_function"].split(":")
    pfn = getattr(importlib.import_module(module_name), func_name)
    for subset in spec["subsets"]:
        name = _task_name(spec, subset)
        assert name in spec["lighteval_tasks"]
        assert name in configs, f"lighteval has no task {name!r}"
        cfg = configs[name]
        assert cfg.hf_repo == spec["hf_repo"]
        assert cfg.hf_subset == subset
        assert spec["eval_split"] in tuple(cfg.evaluation_splits)
        # Some configs declare few_shots_split as a list (["dev"]), others as a str.
        few = cfg.few_shots_split
        few = few[0] if isinstance(few, (list, tuple)) else few
        assert few == spec["fewshot_split"]
        assert cfg.prompt_function is pfn


@pytest.mark.parametrize(("task", "subset", "split"), CASES)
def test_rows_format_with_real_prompt_function(task, subset, split, configs):
    from lighteval.tasks.requests import Doc

    spec = TASKS[task]
    name = _task_name(spec, subset)
    pfn = configs[name].prompt_function
    rows = _rows(spec, subset, split)
    assert rows, "empty file"
    # HF datasets need one schema per split: every row must have the same columns.
    assert len({tuple(r) for r in rows}) == 1, "rows have differing column sets"

    for ix, row in enumerate(rows):
        line = dict(row)
        # lighteval adds these two keys before calling the formatter.
        line["__few_shots"] = split == spec["fewshot_split"]
        line["__index"] = ix
        doc = pfn(line, name)
        assert isinstance(doc, Doc)
        assert isinstance(doc.query, str) and doc.query.strip()
        assert len(doc.choices) >= 2
        assert len(set(doc.choices)) == len(doc.choices)
        assert isinstance(doc.gold_index, int)
        assert 0 <= doc.gold_index < len(doc.choices)
        assert "None" not in doc.query or task == "madinah_qa"  # madinah prints Context even if null
