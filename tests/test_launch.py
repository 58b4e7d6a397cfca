"""Judge and generate run as shards as translate does (`hala.launch`): `--shard I/N` by hand, then
`--merge-shards`, or an executor; the merged run is the single run's, row for row."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hala.cli import app
from hala.data.manifest import IncompleteRunError, OutputInUseError
from hala.engines.generate import GenerateConfig, generate
from hala.judge import JudgeConfig, judge
from hala.launch.merge import merge_shards
from hala.pairs.sources import resolve

SAMPLES = Path(__file__).resolve().parents[1] / "src" / "hala" / "resources" / "samples"


def rows_of(folder: Path) -> list[dict]:
    return [json.loads(line) for p in sorted(folder.glob("*.jsonl")) for line in p.read_text(encoding="utf-8").splitlines()]


@pytest.fixture
def pairs(tmp_path) -> Path:
    lines = (SAMPLES / "seed_pairs.jsonl").read_text(encoding="utf-8").splitlines()[:23]
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def judge_cli(pairs: Path, out: Path, *extra: str):
    args = ["judge", "-i", str(pairs), "-o", str(out), "--engine", "fake", "-m", "m", "--mode", "likelihood", "--threshold", "-4.8",
            "rows_per_unit=4", *extra]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return result


def test_judge_shards_by_hand_then_merge_shards_give_the_single_runs_verdicts(tmp_path, pairs):
    judge_cli(pairs, tmp_path / "single")
    single = json.loads((tmp_path / "single" / "manifest.json").read_text())
    accepted = rows_of(tmp_path / "single" / "data")
    assert 0 < len(accepted) < 23  # the fake judge accepts some and rejects the others

    sharded = tmp_path / "sharded"
    judge_cli(pairs, sharded, "--shard", "0/2")
    with pytest.raises(IncompleteRunError, match=r"shards \[1\] of 2"):
        merge_shards(sharded)
    with pytest.raises(IncompleteRunError, match=r"shards \[1\] of 2"):
        resolve(str(sharded))  # hala pairs won't read half a judged run
    shown = judge_cli(pairs, sharded, "--shard", "1/2")
    assert "manifest.shard-00001-of-00002.json" in shown.output  # the shard's own manifest, not manifest.json
    merged = CliRunner().invoke(app, ["judge", "-o", str(sharded), "--merge-shards"])
    assert merged.exit_code == 0, merged.output

    assert rows_of(sharded / "merged" / "data") == accepted
    assert rows_of(sharded / "merged" / "rejected") == rows_of(tmp_path / "single" / "rejected")
    manifest = json.loads((sharded / "merged" / "manifest.json").read_text())
    assert manifest["stage"] == "judge-merge" and manifest["counts"]["num_shards"] == 2
    for key in ("judged", "verdict_accept", "verdict_reject", "verdict_unparseable", "rejected"):
        assert manifest["counts"][key] == single["counts"][key]
    assert manifest["metrics"]["kept_fraction"] == single["metrics"]["kept_fraction"]
    assert manifest["metrics"]["threshold"] == single["metrics"]["threshold"]
    # the sharded folder and its merge are pair sources, as a single judged run is
    assert resolve(str(sharded)).kind == "judge" and resolve(str(sharded / "merged")).kind == "judge-merge"


def test_judge_shards_with_a_limit_merge_to_the_single_run_with_that_limit(tmp_path, pairs):
    judge_cli(pairs, tmp_path / "single", "--limit", "10")
    for shard in ("0/3", "1/3", "2/3"):
        judge_cli(pairs, tmp_path / "sharded", "--limit", "10", "--shard", shard)
    manifest = merge_shards(tmp_path / "sharded")
    assert manifest.counts["judged"] == 10
    assert rows_of(tmp_path / "sharded" / "merged" / "data") == rows_of(tmp_path / "single" / "data")


def test_judge_on_local_workers_merges_to_the_single_run(tmp_path, pairs):
    judge_cli(pairs, tmp_path / "single")
    shown = judge_cli(pairs, tmp_path / "local", "--executor", "local", "--workers", "2")
    assert "judge-merge:" in shown.output and "kept_fraction" in shown.output
    assert rows_of(tmp_path / "local" / "merged" / "data") == rows_of(tmp_path / "single" / "data")
    # each worker wrote its own cache file; the merge folded them into one
    assert len(list((tmp_path / "local" / "cache").glob("verdicts.*.sqlite"))) == 1


def test_a_judge_shard_of_another_shard_count_is_refused(tmp_path, pairs):
    cfg = JudgeConfig(inputs=[str(pairs)], out=str(tmp_path / "out"), engine={"kind": "fake", "model": "m"},
                      mode="likelihood", rows_per_unit=4, shard="0/2")  # fmt: skip
    judge(cfg)
    with pytest.raises(OutputInUseError, match="num_shards"):
        judge(cfg.model_copy(update={"shard": "0/3"}))


def test_judge_slurm_launch_writes_a_judge_array(tmp_path, pairs):
    cfg = JudgeConfig(inputs=[str(pairs)], out=str(tmp_path / "out"), engine={"kind": "fake", "model": "m"},
                      executor="slurm", workers=4)  # fmt: skip
    manifest = judge(cfg)
    script = (tmp_path / "out" / "slurm" / "judge.sbatch").read_text()
    assert manifest.stage == "judge-launch" and "#SBATCH --array=0-3" in script and "#SBATCH --job-name=hala-judge" in script
    assert "hala.cli judge --config" in script and '"shard=${SLURM_ARRAY_TASK_ID}/4"' in script
    shard_cfg = JudgeConfig.model_validate(__import__("yaml").safe_load((tmp_path / "out" / "judge.yaml").read_text()))
    assert shard_cfg.executor == "none" and shard_cfg.shard == "0/1" and shard_cfg.mode == "generate"


@pytest.fixture
def conversations(tmp_path) -> Path:
    path = tmp_path / "conversations.jsonl"
    rows = [{"id": f"c{i}", "messages": [{"role": "user", "content": f"question {i}"}]} for i in range(11)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_generate_shards_and_local_workers_merge_to_the_single_run(tmp_path, conversations):
    def cfg(out: str, **kw) -> GenerateConfig:
        return GenerateConfig(input=str(conversations), out=str(tmp_path / out), engine={"kind": "fake"},
                              rows_per_unit=3, **kw)  # fmt: skip

    generate(cfg("single"))
    single = rows_of(tmp_path / "single" / "data")
    assert len(single) == 11
    generate(cfg("sharded", shard="0/2"))
    generate(cfg("sharded", shard="1/2"))
    merged = merge_shards(tmp_path / "sharded")
    assert merged.stage == "generate-merge" and merged.counts["rows_out"] == 11
    assert rows_of(tmp_path / "sharded" / "merged" / "data") == single
    local = generate(cfg("local", executor="local", workers=3))
    assert local.counts["num_shards"] == 3 and rows_of(tmp_path / "local" / "merged" / "data") == single
