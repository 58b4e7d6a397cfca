"""`hala run recipes/hala-1.2b.yaml` end to end on this CPU: the paper's recipe file itself, with
overrides that change only models, data and sizes (slow, about four minutes).

Every stage section, launcher line and output setting of the file runs as written: the field maps
and source filters on the paper datasets' own layouts (the hub mirror of tests/fixtures), the judge,
eval_translation and bench on vLLM, the translator and sft under the recipe's accelerate DDP
launcher (two gloo processes), the corpus as ShareGPT Parquet, decontamination, the audit, SLERP,
the report. What the overrides change, and why each is a model, data or size:

- models: the teacher and judge become tiny-llama, the translator and Hala base tiny-lfm2 (the
  architecture of the paper's LFM2-1.2B), all built here with random weights;
- two translation stages, the teacher's and the translator's, get the fake engine, hala's stand-in
  for a model that translates (it writes each English word in Arabic letters): a random model's
  text never passes QA, so nothing downstream would have rows. The judge, eval_translation and
  bench keep vLLM and the random models;
- data: `HALA_HUB_MIRROR` points the recipe's `hf://` ids at the fixtures, unchanged; the bundled
  OALL mini data stands in for the six OALL v2 copies (`data.bench_data=null`);
- sizes: tensor and data parallel 1 (one CPU, not eight GPUs), `--num_processes 2` on the
  launcher line (the file's num_processes is 8), 512-token contexts, 16-32 generated tokens, a few
  rows, two optimizer steps, batch 1-2.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from hala.run.stages import STAGES

RECIPE = "recipes/hala-1.2b.yaml"
MIRROR = Path("tests/fixtures/paper_inputs/saved").resolve()
LAUNCHER = "accelerate launch --config_file recipes/accelerate/ddp.yaml --num_processes 2"
OVERRIDES = [
    # models
    "models.teacher=tiny-llama", "models.judge=tiny-llama", "models.translator=tiny-lfm2", "models.hala_base=tiny-lfm2",
    "teacher_translate.engine.kind=fake", "translate.engine.kind=fake",
    # data (with HALA_HUB_MIRROR)
    "data.bench_data=null",
    # sizes
    f"launchers.translator={LAUNCHER}", f"launchers.sft={LAUNCHER}",
    "teacher_translate.engine.tensor_parallel_size=1", "teacher_translate.engine.max_model_len=512",
    "teacher_translate.sampling.max_tokens=32", "teacher_translate.limit=4", "teacher_translate.rows_per_unit=2",
    "teacher_translate.max_segment_tokens=64",
    "judge.engine.data_parallel_size=1", "judge.engine.max_model_len=512", "judge.limit=8",
    "translator.max_length=128", "translator.batch_size=2", "translator.max_steps=2",
    "eval_translation.engine.max_model_len=512", "eval_translation.sampling.max_tokens=16", "eval_translation.limit=4",
    "translate.engine.data_parallel_size=1", "translate.engine.max_model_len=512", "translate.sampling.max_tokens=32",
    "translate.rows_per_unit=4", "translate.max_segment_tokens=64",
    "sft.max_length=256", "sft.batch_size=1", "sft.gradient_accumulation=1", "sft.max_steps=2",
    "bench.limit=1",
]  # fmt: skip
INSTRUCTION_SETS = {  # the fixture rows each of the recipe's seven instruction sets holds (README there)
    "OpenOrca": 3, "Hermes-3-Dataset": 5, "SCP-116K": 2, "ReAlign-Alpaca": 2, "LaMini-instruction": 2,
    "tulu-3-sft-mixture": 8, "synthetic-instruct-gptj-pairwise": 2,
}  # fmt: skip


def recipe_instructions() -> list[str]:
    from hala.config import load_config
    from hala.run.recipe import Recipe

    return load_config(Recipe, RECIPE).data.instructions


def counts(run: Path, stage: str) -> dict:
    return json.loads((run / stage / "manifest.json").read_text())["counts"]


@pytest.mark.slow
def test_the_paper_recipe_runs_end_to_end_with_local_models_data_and_sizes(tmp_path, monkeypatch):
    import pyarrow.parquet as pq
    from typer.testing import CliRunner

    from hala.cli import app
    from hala.data.rows import HUB_MIRROR_ENV

    monkeypatch.setenv(HUB_MIRROR_ENV, str(MIRROR))
    # each stage process runs as under a user's `hala run`: vLLM in the stage's own process (hala's CPU
    # default; conftest turns vLLM's engine-core processes on for the test session's shared engines)
    monkeypatch.delenv("VLLM_ENABLE_V1_MULTIPROCESSING", raising=False)
    run = tmp_path / "run"
    result = CliRunner().invoke(app, ["run", RECIPE, f"out={run}", *OVERRIDES])
    assert result.exit_code == 0, result.output
    done = [line.split(":")[0].strip() for line in result.output.splitlines() if ": done in " in line]
    assert done == [s.name for s in STAGES]

    # the teacher reads Open-Orca through its field map; the judge gives every opus-100 pair a verdict
    assert counts(run, "teacher_translate")["rows_out"] == INSTRUCTION_SETS["OpenOrca"]
    judged = counts(run, "judge")
    assert judged["judged"] == 3 and judged["judged"] == sum(v for k, v in judged.items() if k.startswith("verdict_"))

    # both training stages ran under the recipe's DDP launcher, in two processes
    for stage in ("translator", "sft"):
        assert counts(run, stage)["processes"] == 2 and counts(run, stage)["steps"] == 2

    # the corpus: ShareGPT turns in Parquet, every row from its set, the paper's source filters counted
    translated = counts(run, "translate")
    assert translated["rejected_source_tulu3_english"] == 4 and translated["rejected_source_no_code"] == 2
    assert translated["rows_out"] == sum(INSTRUCTION_SETS.values()) - 6
    rows = [row for path in sorted((run / "translate" / "data").glob("*.parquet")) for row in pq.read_table(path).to_pylist()]
    assert len(rows) == translated["rows_out"] and not list((run / "translate" / "data").glob("*.jsonl"))
    assert {turn["from"] for row in rows for turn in row["conversations"]} <= {"system", "human", "gpt"}
    lineage = [json.loads(row["meta"])["lineage"] for row in rows]  # per row: its dataset, file, row and id
    assert {item["dataset"] for item in lineage} == set(recipe_instructions())
    sources = Counter(item["dataset"].rsplit("/", 1)[-1] for item in lineage)  # Tulu-3 rows name their subset in `source`
    assert sources == {"OpenOrca": 3, "Hermes-3-Dataset": 3, "SCP-116K": 2, "ReAlign-Alpaca": 2,
                       "LaMini-instruction": 2, "tulu-3-sft-mixture": 4, "synthetic-instruct-gptj-pairwise": 2}  # fmt: skip

    # decontamination and the audit read that corpus; sft trains on what decontamination kept
    kept = counts(run, "decontaminate")
    assert kept["rows_in"] == translated["rows_out"] and counts(run, "audit")["rows"] == kept["rows_out"]
    assert counts(run, "sft")["examples"] == kept["rows_out"]

    # the four translation models, the merged model, three models on the six OALL v2 tasks, the report
    assert list(json.loads((run / "eval_translation" / "results.json").read_text())["models"]) == [
        "translator_base", "translator", "teacher_bf16", "teacher_fp8"]  # fmt: skip
    assert (run / "merge" / "config.json").exists() and list((run / "merge").glob("*.safetensors"))
    assert counts(run, "bench")["models"] == 3 and counts(run, "bench")["tasks"] == 6
    assert "hala-1.2b" in (run / "report" / "report.html").read_text()
