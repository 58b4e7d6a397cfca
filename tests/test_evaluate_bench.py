"""`hala eval bench` for real: lighteval on the bundled mini data with tiny random models, offline.

- every one of the six tasks runs for a base-vs-merged comparison (plus a model that can't load),
  giving the table and the chart;
- parity: hala's score equals the one the `lighteval` CLI reports on the same model and data;
- the vLLM backend scores the same tokens as the transformers one (and its scorer, on hala's
  transformers engine, as lighteval's own transformers model).
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from hala.data.manifest import FileEntry
from hala.evaluate import lighteval_adapter
from hala.evaluate.bench import BenchConfig, ModelsFailedError, bench
from hala.evaluate.benchmarks import BENCHMARKS, bundled_data_dir
from hala.evaluate.paper import PAPER_ROWS
from hala.evaluate.reproduce import OFFLINE_ENV

pytestmark = pytest.mark.slow

MINI_INDEX = json.loads((bundled_data_dir() / "tasks.json").read_text(encoding="utf-8"))


def _listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def _details(path: Path) -> dict[tuple[str, str], dict]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return {(r["task"], r["id"]): r for r in rows}


def _char_norm_correct(row: dict) -> int:
    """acc_norm recomputed: is the choice with the best log-prob per character the gold one?"""
    normalized = [lp / len(choice) for lp, choice in zip(row["logprobs"], row["choices"])]
    return int(normalized.index(max(normalized)) == row["gold_index"])


# --- base vs merged on all six tasks ------------------------------------------------------------


@pytest.fixture(scope="module")
def comparison(tiny_llama, tiny_lfm2, tmp_path_factory):
    """An LFM2 "base" and a Llama "merged" on every task (1 item per subset), and one broken model."""
    root = tmp_path_factory.mktemp("bench")
    broken = root / "broken"
    broken.mkdir()
    (broken / "config.json").write_text(json.dumps({"model_type": "llama"}))  # no weights, no tokenizer
    before = {p: _listing(p) for p in (tiny_llama, tiny_lfm2)}
    cfg = BenchConfig(
        models=[f"LFM2-1.2B={tiny_lfm2}", f"hala-1.2b-merged={tiny_llama}", f"broken={broken}"],
        out=str(root / "out"),
        limit=1,
    )
    with pytest.raises(ModelsFailedError) as err:
        bench(cfg)
    out = root / "out"
    return SimpleNamespace(
        cfg=cfg, out=out, error=str(err.value), before=before, broken=broken,
        results=json.loads((out / "results.json").read_text(encoding="utf-8")),
    )  # fmt: skip


def test_each_of_the_six_tasks_runs_offline_on_the_mini_data(comparison):
    results = comparison.results
    assert results["tasks"] == list(BENCHMARKS)
    ok = [m for m in results["models"] if m["status"] == "ok"]
    assert [m["label"] for m in ok] == ["LFM2-1.2B", "hala-1.2b-merged"]
    for model in ok:
        assert model["backend"] == "hf" and model["dtype"] == "float32"
        details = _details(comparison.out / "details" / f"{model['label']}.jsonl")
        assert set(model["tasks"]) == set(BENCHMARKS)
        for key, task in model["tasks"].items():
            bench_ = BENCHMARKS[key]
            assert sorted(task["subsets"]) == sorted(MINI_INDEX[key]["subsets"])
            for subset, score in task["subsets"].items():
                assert score["items"] == 1  # --limit 1
                [row] = [r for (name, _), r in details.items() if name == bench_.task_name(subset)]
                assert score["acc_norm"] == _char_norm_correct(row)
            subsets = task["subsets"].values()
            assert task["acc_norm"] == pytest.approx(sum(s["acc_norm"] for s in subsets) / len(subsets))
        assert model["average"] == pytest.approx(sum(t["acc_norm"] for t in model["tasks"].values()) / 6)


def test_a_model_that_fails_to_load_is_reported_and_the_others_run(comparison):
    [failed] = [m for m in comparison.results["models"] if m["status"] != "ok"]
    assert failed["label"] == "broken" and failed["path"] == str(comparison.broken)
    assert failed["error"]
    assert "broken" in comparison.error and str(comparison.broken) in comparison.error
    assert "| broken | failed |" in (comparison.out / "results.md").read_text(encoding="utf-8")
    assert not (comparison.out / "manifest.json").exists()  # the stage is not finished


def test_table_and_chart_for_base_vs_merged(comparison):
    from PIL import Image

    lines = (comparison.out / "results.md").read_text(encoding="utf-8").splitlines()
    for model in comparison.results["models"][:2]:
        cells = [f"{100 * model['tasks'][t]['acc_norm']:.1f}" for t in BENCHMARKS] + [f"{100 * model['average']:.1f}"]
        assert f"| {model['label']} | " + " | ".join(cells) + " |" in lines
    hala, base = PAPER_ROWS["hala-1.2b"]  # matched by the model names
    cells = [f"{v:.1f}" for v in hala.scores.values()] + [f"{hala.average:.1f}"]
    assert f"| paper: {hala.name} | " + " | ".join(cells) + " |" in lines
    assert any(line.startswith(f"| paper: {base.name}") for line in lines)
    assert [r["name"] for r in comparison.results["paper"]["rows"]] == [hala.name, base.name]
    with Image.open(comparison.out / "scores.png") as image:
        assert image.format == "PNG"


def test_model_folders_are_left_untouched(comparison):
    """lighteval would put its sample cache inside a local model folder; hala keeps it in the run."""
    for folder, listing in comparison.before.items():
        assert _listing(folder) == listing
    assert list((comparison.out / ".cache").iterdir())


def test_rerun_retries_only_the_failed_model(comparison, monkeypatch):
    calls = []

    def evaluate(model_dir, *args, **kwargs):
        calls.append(Path(model_dir))
        raise RuntimeError("still broken")

    monkeypatch.setattr(lighteval_adapter, "evaluate_model", evaluate)
    kept = {p.name: p.read_text() for p in (comparison.out / "models").iterdir()}
    with pytest.raises(ModelsFailedError, match="still broken"):
        bench(comparison.cfg)
    assert calls == [comparison.broken]
    assert {p.name: p.read_text() for p in (comparison.out / "models").iterdir()} == kept


# --- parity with the lighteval CLI --------------------------------------------------------------


@pytest.fixture(scope="module")
def exams(tiny_llama, tmp_path_factory):
    """hala on EXAMS (8 items) with the transformers backend."""
    root = tmp_path_factory.mktemp("parity")
    cfg = BenchConfig(
        models=[str(tiny_llama)], tasks=["arabic_exams"], limit=8, out=str(root / "hala"), backend="hf", dtype="float32"
    )
    manifest = bench(cfg)
    out = Path(cfg.out)
    results = json.loads((out / "results.json").read_text())
    return SimpleNamespace(cfg=cfg, root=root, out=out, manifest=manifest, results=results)


def test_parity_with_the_lighteval_cli(exams, tiny_llama):
    """The `lighteval` CLI, run directly on a copy of the model with hala's custom-tasks file, reports
    the score hala reports, and scores every choice of every item the same."""
    import pyarrow.parquet as pq

    model = exams.root / "cli-model"  # the CLI writes its cache into the model folder it is given
    shutil.copytree(tiny_llama, model)
    assert FileEntry.of(model).sha256 == FileEntry.of(tiny_llama).sha256
    tasks_file = exams.out / "lighteval" / "tasks.py"
    env = {**os.environ, **OFFLINE_ENV, "PYTHONPATH": str(exams.out / "lighteval" / "offline")}
    argv = [
        str(Path(sys.executable).parent / "lighteval"), "accelerate",
        f"model_name={model},device=cpu,dtype=float32,batch_size=8",
        "arabic_exams|0", "--custom-tasks", str(tasks_file), "--max-samples", "8",
        "--output-dir", str(exams.root / "cli"), "--save-details",
    ]  # fmt: skip
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]

    [results_file] = glob.glob(str(exams.root / "cli" / "results" / "**" / "results_*.json"), recursive=True)
    cli = json.loads(Path(results_file).read_text())["results"]["arabic_exams|0"]
    [model_result] = exams.results["models"]
    hala = model_result["tasks"]["arabic_exams"]["subsets"]["default"]
    metric = exams.results["metric_lighteval"]
    assert hala["items"] == 8
    assert hala["acc_norm"] == cli[metric]
    assert hala["stderr"] == cli[f"{metric}_stderr"]

    [details_file] = glob.glob(str(exams.root / "cli" / "details" / "**" / "*.parquet"), recursive=True)
    cli_logprobs = {r["doc"]["id"]: r["model_response"]["logprobs"] for r in pq.read_table(details_file).to_pylist()}
    hala_logprobs = {i: r["logprobs"] for (_, i), r in _details(exams.out / "details" / "tiny-llama.jsonl").items()}
    assert hala_logprobs.keys() == cli_logprobs.keys()
    for doc_id, logprobs in hala_logprobs.items():
        assert logprobs == pytest.approx(cli_logprobs[doc_id], abs=1e-6)


def test_a_finished_run_is_not_redone(exams, monkeypatch):
    monkeypatch.setattr(lighteval_adapter, "evaluate_model", lambda *a, **k: pytest.fail("evaluated again"))
    assert bench(exams.cfg).fingerprint == exams.manifest.fingerprint
    assert exams.manifest.counts == {"models": 1, "tasks": 1, "subsets": 1, "items": 8}


def test_reproduce_script_runs_the_cli_on_a_link_to_the_model(exams, tiny_llama):
    script = (exams.out / "lighteval" / "reproduce.sh").read_text()
    assert "lighteval accelerate model_name=models/tiny-llama," in script
    assert str((exams.out / "lighteval" / "tasks.py").resolve()) in script
    assert (exams.out / "lighteval" / "models" / "tiny-llama").resolve() == tiny_llama.resolve()


# --- the vLLM backend ---------------------------------------------------------------------------


def _vllm_bench(model: Path, out: Path, *extra: str) -> dict:
    """`hala eval bench --backend vllm` in a subprocess: a vLLM engine's memory leaves with it."""
    argv = [str(Path(sys.executable).parent / "hala"), "eval", "bench", "-m", str(model), "-t", "arabic_exams"]
    argv += ["--limit", "8", "--out", str(out), "--dtype", "float32", *extra]
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((out / "results.json").read_text())


def _assert_same_scores(out: Path, reference: Path) -> None:
    got, want = _details(out / "details" / "tiny-llama.jsonl"), _details(reference / "details" / "tiny-llama.jsonl")
    assert got.keys() == want.keys()
    for key, row in got.items():
        assert row["logprobs"] == pytest.approx(want[key]["logprobs"], abs=1e-3)


def test_vllm_backend_scores_like_transformers(exams, tiny_llama):
    results = _vllm_bench(tiny_llama, exams.root / "vllm", "--backend", "vllm")
    [model] = results["models"]
    assert model["backend"] == "vllm" and model["tasks"]["arabic_exams"]["subsets"]["default"]["items"] == 8
    _assert_same_scores(exams.root / "vllm", exams.out)


def test_the_transformers_backend_scores_like_lightevals_model(exams, tiny_llama):
    """hala's engine scorer (the vLLM backend's) on the transformers engine, which projects only the
    choices' tokens: in float32 as the hf run, lighteval's transformers scores for every choice."""
    out = exams.root / "engine-scorer"
    bench(exams.cfg.model_copy(update={"backend": "transformers", "out": str(out)}))
    got, want = _details(out / "details" / "tiny-llama.jsonl"), _details(exams.out / "details" / "tiny-llama.jsonl")
    assert got.keys() == want.keys() and len(got) == 8
    for key, row in got.items():
        assert row["logprobs"] == pytest.approx(want[key]["logprobs"], abs=1e-5)
    results = json.loads((out / "results.json").read_text())
    [model], [reference] = results["models"], exams.results["models"]
    assert model["backend"] == "transformers" and model["tasks"] == reference["tasks"]


@pytest.mark.gpu
def test_gpu_picks_vllm_and_scores_like_transformers(exams, tiny_llama):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    results = _vllm_bench(tiny_llama, exams.root / "gpu")  # --backend auto
    [model] = results["models"]
    assert model["backend"] == "vllm"
    _assert_same_scores(exams.root / "gpu", exams.out)


def test_a_model_retrained_at_the_same_path_is_evaluated_again(tiny_llama, tmp_path, monkeypatch):
    model, other = tmp_path / "model", tmp_path / "other"
    shutil.copytree(tiny_llama, model)
    shutil.copytree(tiny_llama, other)
    cfg = BenchConfig(models=[f"sft={model}", f"base={other}"], tasks=["arabic_exams"], limit=2,
                      out=str(tmp_path / "out"), backend="hf", dtype="float32")  # fmt: skip
    bench(cfg)
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**config, "rms_norm_eps": 1e-5}))  # "retrained"
    calls = []

    def evaluate(model_dir, *args, **kwargs):
        calls.append(Path(model_dir))
        raise RuntimeError("evaluated again")

    monkeypatch.setattr(lighteval_adapter, "evaluate_model", evaluate)
    with pytest.raises(ModelsFailedError, match="evaluated again"):
        bench(cfg)
    assert calls == [model.resolve()]  # the unchanged model's scores are reused
