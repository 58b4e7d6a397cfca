"""`hala eval bench` without running a model: task names, data layout, paper rows, table, chart, CLI."""

from __future__ import annotations

import importlib
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hala.cli import app
from hala.evaluate.bench import BenchConfig, parse_models
from hala.evaluate.benchmarks import (
    BENCHMARKS,
    MissingDataError,
    UnknownTaskError,
    bundled_data_dir,
    find_task_data,
    resolve_tasks,
)
from hala.evaluate.paper import PAPER_ROWS, TASK_ORDER, match_family, model_names, paper_rows_for
from hala.evaluate.report import bar_chart, benchmark_score, markdown_table, model_average

MINI = bundled_data_dir()
MINI_INDEX = json.loads((MINI / "tasks.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def arabic_configs():
    """lighteval's own Arabic task configs (the module test_oall_mini also imports)."""
    module = importlib.import_module("lighteval.tasks.multilingual.tasks.arabic")
    return {c.name: c for c in module.TASKS_TABLE}


# --- task names ---------------------------------------------------------------------------------


def test_no_tasks_means_the_six_in_the_papers_order():
    labels = ["AlGhafa", "ArabicMMLU", "EXAMS", "MadinahQA", "AraTrust", "ArbMMLU-HT"]
    assert [b.label for b in resolve_tasks(None)] == labels


def test_tasks_by_name_or_label_comma_separated_or_repeated():
    chosen = resolve_tasks(["aratrust,EXAMS", "alghafa", "ArbMMLU-HT", "aratrust"])
    assert [b.key for b in chosen] == ["alghafa", "arabic_exams", "aratrust", "arabic_mmlu_ht"]


def test_unknown_task_lists_the_valid_ones():
    with pytest.raises(UnknownTaskError) as err:
        resolve_tasks(["alghafa", "arabic_mmlu_mt"])
    message = str(err.value)
    assert "'arabic_mmlu_mt'" in message
    for bench in BENCHMARKS.values():
        assert bench.key in message and bench.label in message


# --- local data ---------------------------------------------------------------------------------


@pytest.mark.parametrize("key", sorted(BENCHMARKS))
def test_bundled_data_is_found_for_every_task(key):
    bench, spec = BENCHMARKS[key], MINI_INDEX[key]
    data = find_task_data(MINI, bench)
    assert sorted(data.subsets) == sorted(spec["subsets"])
    for subset, files in data.files.items():
        assert files[bench.eval_split] == MINI / spec["hf_repo"] / subset / f"{spec['eval_split']}.jsonl"
        assert (bench.fewshot_split in files) == bool(spec["fewshot_split"])


def _copy_task(tmp_path: Path, key: str) -> Path:
    repo = BENCHMARKS[key].hf_repo
    shutil.copytree(MINI / repo, tmp_path / repo)
    return tmp_path


def test_missing_split_names_the_file_it_expected(tmp_path):
    data_dir = _copy_task(tmp_path, "arabic_mmlu")
    (data_dir / "MBZUAI/ArabicMMLU/Driving Test/test.jsonl").unlink()
    with pytest.raises(MissingDataError) as err:
        find_task_data(data_dir, BENCHMARKS["arabic_mmlu"])
    assert str(data_dir / "MBZUAI/ArabicMMLU/Driving Test/test.jsonl") in str(err.value)
    assert "'test' split" in str(err.value)


def test_missing_task_folder_names_the_layout_it_expected(tmp_path):
    with pytest.raises(MissingDataError) as err:
        find_task_data(tmp_path, BENCHMARKS["aratrust"])
    assert str(tmp_path / "asas-ai/AraTrust-categorized/Trustfulness/train.jsonl") in str(err.value)


def test_parquet_files_count_and_few_shot_split_is_optional(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    data_dir = _copy_task(tmp_path, "arabic_exams")
    folder = data_dir / "OALL/Arabic_EXAMS/default"
    rows = [json.loads(line) for line in (folder / "test.jsonl").read_text(encoding="utf-8").splitlines()]
    (folder / "test.jsonl").unlink()
    (folder / "validation.jsonl").unlink()
    pq.write_table(pa.Table.from_pylist(rows), folder / "test.parquet")
    data = find_task_data(data_dir, BENCHMARKS["arabic_exams"])
    assert data.files == {"default": {"test": folder / "test.parquet"}}


def test_one_format_per_dataset(tmp_path):
    data_dir = _copy_task(tmp_path, "madinah_qa")
    folder = data_dir / "MBZUAI/MadinahQA/Arabic Language (General)"
    (folder / "test.jsonl").rename(folder / "test.parquet")  # content does not matter here
    with pytest.raises(ValueError, match="mixes .jsonl and .parquet"):
        find_task_data(data_dir, BENCHMARKS["madinah_qa"])


def test_arabic_mmlu_all_subset_is_skipped(tmp_path):
    data_dir = _copy_task(tmp_path, "arabic_mmlu")
    shutil.copytree(data_dir / "MBZUAI/ArabicMMLU/Driving Test", data_dir / "MBZUAI/ArabicMMLU/All")
    assert "All" not in find_task_data(data_dir, BENCHMARKS["arabic_mmlu"]).subsets


def test_registry_matches_lighteval(arabic_configs):
    from hala.evaluate.lighteval_adapter import lighteval_subsets

    for bench in BENCHMARKS.values():
        subsets = lighteval_subsets(bench)
        assert subsets, bench.key
        for subset in subsets:
            config = arabic_configs[bench.task_name(subset)]
            assert config.hf_repo == bench.hf_repo and config.hf_subset == subset
            assert tuple(config.evaluation_splits) == (bench.eval_split,)
            few = config.few_shots_split
            assert (few[0] if isinstance(few, (list, tuple)) else few) == bench.fewshot_split
        assert bench.example_subset in subsets


def test_unknown_subset_folder_lists_lighteval_subsets(tmp_path, arabic_configs):
    from hala.evaluate.lighteval_adapter import check_subsets

    data_dir = _copy_task(tmp_path, "madinah_qa")
    shutil.copytree(data_dir / "MBZUAI/MadinahQA/Arabic Language (General)", data_dir / "MBZUAI/MadinahQA/Poetry")
    with pytest.raises(ValueError) as err:
        check_subsets(find_task_data(data_dir, BENCHMARKS["madinah_qa"]))
    assert "'Poetry'" in str(err.value) and "Arabic Language (Grammar)" in str(err.value)


def test_custom_tasks_file_is_lightevals_tasks_on_local_data(tmp_path, arabic_configs):
    """The emitted file keeps lighteval's definitions and only swaps the data source."""
    from datasets import load_dataset
    from lighteval.tasks.registry import Registry

    from hala.evaluate.lighteval_adapter import write_custom_tasks

    task_data = [find_task_data(MINI, BENCHMARKS[k]) for k in ("arabic_mmlu", "arabic_exams")]
    path, names = write_custom_tasks(tmp_path / "lighteval", task_data)
    assert names == [f"arabic_mmlu:{s}" for s in task_data[0].subsets] + ["arabic_exams"]
    configs = Registry._extract_configs(Registry.create_custom_tasks_module(path))
    assert list(configs) == names
    for name, config in configs.items():
        original = arabic_configs[name]
        assert config.prompt_function is original.prompt_function
        assert [m.metric_name for m in config.metrics] == [m.metric_name for m in original.metrics]
        assert config.evaluation_splits == original.evaluation_splits and config.hf_subset == original.hf_subset
        assert Path(config.hf_repo).is_dir() and config.hf_repo != original.hf_repo
    # the local dataset card serves the very rows of the data dir
    exams = configs["arabic_exams"]
    dataset = load_dataset(exams.hf_repo, name="default")
    expected = [json.loads(line) for line in (MINI / "OALL/Arabic_EXAMS/default/test.jsonl").read_text().splitlines()]
    assert dataset["test"].to_list() == expected


# --- paper rows ---------------------------------------------------------------------------------


@pytest.mark.parametrize("family", sorted(PAPER_ROWS))
def test_paper_averages_are_the_mean_of_the_six_scores(family):
    """A transcription check: the reported average is the mean of the six scores, to rounding."""
    for row in PAPER_ROWS[family]:
        if row.scores is None:
            assert row.average is None and row.note
            continue
        assert list(row.scores) == list(TASK_ORDER)
        assert abs(sum(row.scores.values()) / 6 - row.average) <= 0.051, row.name
        assert row.average_over(list(TASK_ORDER)) == row.average
        two = (row.scores["alghafa"] + row.scores["aratrust"]) / 2
        assert row.average_over(["alghafa", "aratrust"]) == pytest.approx(two)


@pytest.mark.parametrize(
    ("name", "family"),
    [
        ("hala-1.2b-merged", "hala-1.2b"),
        ("LiquidAI/LFM2-1.2B", "hala-1.2b"),
        ("Hala_350M sft", "hala-350m"),
        ("lfm2-700m", "hala-700m"),
        ("QCRI/Fanar-1-9B-Instruct", "hala-9b"),
        ("hammh0a/Hala-9B", "hala-9b"),
        ("hala-1.2b0", None),
        ("Qwen2.5-9B", None),
        ("tiny-llama", None),
    ],
)
def test_model_names_match_a_paper_family(name, family):
    assert match_family([name]) == family


def test_name_match_reads_config_name_or_path(tmp_path):
    (tmp_path / "merged").mkdir()
    (tmp_path / "merged" / "config.json").write_text(json.dumps({"_name_or_path": "LiquidAI/LFM2-700M"}))
    assert model_names("merged", tmp_path / "merged")[-1] == "LiquidAI/LFM2-700M"
    rows = paper_rows_for("auto", [("merged", tmp_path / "merged"), ("other", tmp_path / "nowhere")])
    assert [r.name for r in rows] == ["Hala-700M", "LFM2-700M (base)"]


def test_explicit_paper_row_and_none():
    rows = paper_rows_for("hala-9b", [("tiny", "/nowhere")])
    assert [r.name for r in rows] == ["Hala-9B", "Fanar-1-9B-Instruct (base)"]
    assert paper_rows_for("none", [("hala-9b", "/nowhere")]) == []
    with pytest.raises(ValueError, match="hala-1.2b"):
        paper_rows_for("hala-3b", [])


# --- scores, table, chart -----------------------------------------------------------------------


def test_benchmark_score_weighs_subsets_equally():
    subsets = {"a": {"acc_norm": 1.0, "items": 1}, "b": {"acc_norm": 0.0, "items": 99}}
    assert benchmark_score(subsets) == 0.5
    assert model_average({"x": {"acc_norm": 0.2}, "y": {"acc_norm": 0.6}}) == pytest.approx(0.4)


def _results(tasks=("alghafa", "arabic_exams")) -> dict:
    def entry(label, values):
        scores = dict(zip(tasks, values))
        return {
            "label": label, "path": f"/models/{label}", "status": "ok", "error": None, "backend": "hf",
            "dtype": "float32", "chat_template": True,
            "tasks": {t: {"acc_norm": v, "subsets": {}} for t, v in scores.items()},
            "average": sum(values) / len(values),
        }  # fmt: skip

    row = PAPER_ROWS["hala-1.2b"]
    return {
        "tasks": list(tasks),
        "metric_lighteval": "acc:logprob_normalization=LogProbCharNorm",
        "not_comparable": ["--limit 2 keeps at most 2 items per subset"],
        "models": [
            entry("base", [0.25, 0.5]),
            entry("merged", [0.75, 0.125]),
            {"label": "broken", "path": "/models/broken", "status": "failed", "error": "OSError: no weights"},
        ],
        "paper": {
            "source": "the report",
            "matched_by": "model name",
            "rows": [
                {
                    "name": r.name,
                    "scores": r.scores and {t: r.scores[t] for t in tasks},
                    "average": r.average_over(list(tasks)),
                    "note": r.note,
                }
                for r in row
            ],
        },
    }


def test_markdown_table_has_models_failures_and_paper_rows():
    text = markdown_table(_results())
    lines = text.splitlines()
    assert "| model | AlGhafa | EXAMS | average |" in lines
    assert "| base | 25.0 | 50.0 | 37.5 |" in lines
    assert "| merged | 75.0 | 12.5 | 43.8 |" in lines
    assert "| broken | failed | failed | failed |" in lines
    assert "| paper: Hala-1.2B | 59.2 | 43.4 | 51.3 |" in lines  # mean of the two tasks shown
    assert "| paper: LFM2-1.2B (base) (not reported) | – | – | – |" in lines
    assert any("broken" in line and "OSError: no weights" in line for line in lines)
    assert any("--limit 2" in line for line in lines)


def test_bar_chart_is_a_png_with_the_models(tmp_path):
    from PIL import Image

    path = bar_chart(_results(), tmp_path / "scores.png")
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width > 400 and image.height > 300
    assert list(tmp_path.iterdir()) == [path]  # written atomically, no temp file left


# --- config and command line ----------------------------------------------------------------------


def test_model_labels():
    models = parse_models(["runs/base", "merged=runs/x/model"])
    assert models == [("base", Path("runs/base")), ("merged", Path("runs/x/model"))]
    with pytest.raises(ValueError, match="LABEL=DIR"):
        parse_models(["a/model", "b/model"])


def test_config_rejects_unknown_paper_row_and_keys():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="hala-1.2b"):
        BenchConfig(models=["m"], out="o", paper_row="hala-2b")
    with pytest.raises(ValidationError):
        BenchConfig(models=["m"], out="o", shots=5)
    with pytest.raises(ValidationError):
        BenchConfig(models=[], out="o")


def test_cli_unknown_task_lists_valid_ones(tmp_path):
    argv = ["eval", "bench", "-m", str(tmp_path), "--tasks", "acva", "--out", str(tmp_path / "o")]
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 1
    assert "unknown task 'acva'" in result.output and "arabic_mmlu_ht (ArbMMLU-HT)" in result.output
    assert not (tmp_path / "o").exists()


def test_cli_missing_data_names_the_file(tmp_path):
    argv = ["eval", "bench", "-m", str(tmp_path), "-t", "exams", "--data-dir", str(tmp_path), "-o", str(tmp_path / "o")]
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 1
    assert str(tmp_path / "OALL/Arabic_EXAMS/default/test.jsonl") in result.output


def test_cli_eval_bench_help_lists_the_options():
    result = CliRunner().invoke(app, ["eval", "bench", "--help"])
    assert result.exit_code == 0
    for option in ("--model", "--tasks", "--data-dir", "--limit", "--out", "--backend", "--paper-row"):
        assert option in result.output
