"""Long runs: kill -9 and resume, shards and their merge, executors, write faults, real vLLM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hala.data.manifest import OutputInUseError
from hala.engines import EngineConfig
from hala.translate.config import TranslateConfig
from hala.translate.pipeline import translate
from hala.launch.merge import IncompleteRunError, merge_shards


def conversations(n: int) -> list[dict]:
    return [
        {"id": f"conv-{i:04d}", "messages": [
            {"role": "user", "content": f"Question {i}: what is {i % 7} plus {i % 5}? Use `python` if needed."},
            {"role": "assistant", "content": f"The answer is {i % 7 + i % 5}. Here is why.\n\n- first, add them\n- then check"},
        ]}
        for i in range(n)
    ]  # fmt: skip


@pytest.fixture
def data(tmp_path) -> Path:
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in conversations(40)))
    return path


def cfg_for(data, out, **kw) -> TranslateConfig:
    base = dict(inputs=[str(data)], out=str(out), engine=EngineConfig(kind="fake", model="m"), rows_per_unit=5,
                batch_size=4, progress=False)  # fmt: skip
    return TranslateConfig(**{**base, **kw})


def dataset(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / "data").glob("*"))}


def merged_rows(folder: Path) -> list[dict]:
    return [json.loads(line) for p in sorted(folder.glob("*.jsonl")) for line in p.read_text().splitlines()]


def _wait_for(predicate, proc, timeout=60.0):
    deadline = time.time() + timeout
    while not predicate():
        assert proc.poll() is None, "the run ended before the kill point"
        assert time.time() < deadline, "kill point never reached"
        time.sleep(0.005)


KILL_POINTS = {
    # some segments cached, no unit finished yet
    "mid-first-unit": lambda out: list((out / "cache").glob("segments.*.sqlite")) and not list((out / "stats").glob("*")),
    "after-one-unit": lambda out: len(list((out / "data").glob("*.jsonl"))) >= 1,
    "after-half": lambda out: len(list((out / "data").glob("*.jsonl"))) >= 4,
}


@pytest.mark.slow
@pytest.mark.parametrize("point", sorted(KILL_POINTS))
def test_kill_9_then_rerun_gives_the_same_output(tmp_path, data, point):
    reference = tmp_path / "reference"
    translate(cfg_for(data, reference))
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "hala.cli", "translate", "-i", str(data), "-o", str(out), "--engine", "fake",
           "-m", "m", "rows_per_unit=5", "batch_size=4", "engine.fake_delay_s=0.05", "progress=false"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for(lambda: KILL_POINTS[point](out), proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "manifest.json").exists()
    resumed = subprocess.run(cmd, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert dataset(out) == dataset(reference)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["rows_out"] == 40 and manifest["counts"]["units_skipped"] >= (point != "mid-first-unit")


def test_shards_merge_to_the_single_run(tmp_path, data):
    single = tmp_path / "single"
    translate(cfg_for(data, single))
    merge_shards(single)
    sharded = tmp_path / "sharded"
    (tmp_path / "empty").mkdir()
    with pytest.raises(IncompleteRunError, match="no finished shard"):
        merge_shards(tmp_path / "empty")
    first = translate(cfg_for(data, sharded, shard="0/3"))
    with pytest.raises(IncompleteRunError, match=r"shards \[1, 2\] of 3"):
        merge_shards(sharded)
    translate(cfg_for(data, sharded, shard="1/3"))
    translate(cfg_for(data, sharded, shard="2/3"))
    manifest = merge_shards(sharded)
    assert merged_rows(sharded / "merged" / "data") == merged_rows(single / "merged" / "data")
    assert manifest.counts["rows_out"] == 40 and manifest.counts["num_shards"] == 3
    assert first.counts["units"] == 3  # shard 0 of 3 got units 0, 3, 6 of 8


def test_shards_with_a_limit_merge_to_the_single_run_with_that_limit(tmp_path, data):
    single = tmp_path / "single"
    translate(cfg_for(data, single, limit=13))  # units 0-5, 5-10 and 10-13 (cut short) of 40 rows
    merge_shards(single)
    sharded = tmp_path / "sharded"
    translate(cfg_for(data, sharded, limit=13, shard="0/2"))
    translate(cfg_for(data, sharded, limit=13, shard="1/2"))
    manifest = merge_shards(sharded)
    rows = merged_rows(sharded / "merged" / "data")
    assert [r["id"] for r in rows] == [f"conv-{i:04d}" for i in range(13)]
    assert rows == merged_rows(single / "merged" / "data")
    assert manifest.counts["rows_out"] == 13
    old = sharded / "manifest.shard-00001-of-00002.json"  # as an older hala wrote it: no units
    old.write_text(json.dumps({**json.loads(old.read_text()), "units": []}))
    with pytest.raises(IncompleteRunError, match="shard 1 of 2 does not list its units"):
        merge_shards(sharded)


def test_relaunch_with_another_shard_count_is_refused(tmp_path, data):
    out = tmp_path / "out"
    translate(cfg_for(data, out, shard="0/2"))
    with pytest.raises(OutputInUseError, match="num_shards"):
        translate(cfg_for(data, out, shard="0/4"))


def test_local_executor_runs_workers_and_merges(tmp_path, data):
    single = tmp_path / "single"
    translate(cfg_for(data, single))
    merge_shards(single)
    out = tmp_path / "local"
    manifest = translate(cfg_for(data, out, executor="local", workers=2))
    assert manifest.stage == "translate-merge" and manifest.counts["num_shards"] == 2
    assert merged_rows(out / "merged" / "data") == merged_rows(single / "merged" / "data")


def test_slurm_executor_writes_an_array_script_and_submits(tmp_path, data, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    sbatch = bin_dir / "sbatch"
    sbatch.write_text(f"#!/bin/sh\necho \"$@\" > {tmp_path}/sbatch.args\necho Submitted batch job 42\n")
    sbatch.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    out = tmp_path / "slurm-run"
    cfg = cfg_for(data, out, executor="slurm", workers=8, submit=True,
                  slurm={"partition": "gpu", "gpus_per_task": 2, "setup": ["source .venv/bin/activate"]})  # fmt: skip
    manifest = translate(cfg)
    script = (out / "slurm" / "translate.sbatch").read_text()
    assert "#SBATCH --array=0-7" in script and "#SBATCH --gres=gpu:2" in script and "#SBATCH --partition=gpu" in script
    assert '"shard=${SLURM_ARRAY_TASK_ID}/8"' in script and "source .venv/bin/activate" in script
    assert (tmp_path / "sbatch.args").read_text().strip().endswith("translate.sbatch")
    assert manifest.counts["submitted"] == 1
    shard_cfg = TranslateConfig.model_validate(__import__("yaml").safe_load((out / "translate.yaml").read_text()))
    assert shard_cfg.executor == "none" and shard_cfg.rows_per_unit == 5


def test_a_failed_write_leaves_no_half_written_unit(tmp_path, data, monkeypatch):
    import errno

    from hala.data import writers

    real_replace = os.replace
    calls = {"n": 0}

    def full_disk(src, dst):
        if str(dst).endswith(".jsonl") and "/data/" in str(dst):
            calls["n"] += 1
            if calls["n"] == 3:
                raise OSError(errno.ENOSPC, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(writers.os, "replace", full_disk)
    out = tmp_path / "out"
    with pytest.raises(OSError, match="No space left"):
        translate(cfg_for(data, out))
    assert len(list((out / "data").glob("*.jsonl"))) == 2
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    assert not (out / "manifest.json").exists()
    monkeypatch.setattr(writers.os, "replace", real_replace)
    reference = tmp_path / "reference"
    translate(cfg_for(data, reference))
    translate(cfg_for(data, out))
    assert dataset(out) == dataset(reference)


def test_cli_help_documents_every_option():
    from typer.testing import CliRunner

    from hala.cli import app

    result = CliRunner().invoke(app, ["translate", "--help"], env={"COLUMNS": "200"})
    for option in ("--input", "--out", "--model", "--engine", "--target-lang", "--shard", "--executor", "--workers",
                   "--submit", "--merge-shards", "--config", "--strict"):  # fmt: skip
        assert option in result.output


@pytest.mark.slow
def test_translate_with_vllm_on_a_tiny_model(tmp_path, data, vllm_engine, monkeypatch):
    """The real engine: every conversation ends accepted or rejected with a reason; reruns hit the cache."""
    import hala.engines

    monkeypatch.setattr(vllm_engine, "close", lambda: None)
    monkeypatch.setattr(hala.engines, "get_engine", lambda cfg: vllm_engine)
    engine = EngineConfig(kind="vllm", model=str(vllm_engine.cfg.model))
    cfg = cfg_for(data, tmp_path / "out", engine=engine, sampling={"max_tokens": 16}, batch_size=64, rows_per_unit=20)
    manifest = translate(cfg)
    counts = manifest.counts
    assert counts["rows_out"] + counts["rejected"] == 40
    assert counts["engine_segments"] == counts["segments_unique"] - counts["cache_hits"] > 0
    assert counts["tokens_out"] > 0
    qa_total = sum(v for k, v in counts.items() if k.startswith("qa_"))
    assert qa_total == counts["segments"]
    again = translate(cfg.model_copy(update={"out": str(tmp_path / "again"), "cache_path": str(tmp_path / "out" / "cache" / "segments.sqlite")}))
    assert again.counts.get("engine_segments", 0) == 0 and again.counts["rows_out"] == counts["rows_out"]


@pytest.mark.slow
def test_ray_executor_runs_shards_as_tasks_and_merges(tmp_path, data):
    ray = pytest.importorskip("ray")
    single = tmp_path / "single"
    translate(cfg_for(data, single))
    merge_shards(single)
    out = tmp_path / "ray-run"
    cfg = cfg_for(data, out, executor="ray", workers=2, ray={"num_gpus": 0, "num_cpus": 1})
    try:
        manifest = translate(cfg)
    finally:
        ray.shutdown()
    assert manifest.counts["num_shards"] == 2
    assert merged_rows(out / "merged" / "data") == merged_rows(single / "merged" / "data")
