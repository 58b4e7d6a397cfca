"""`hala train` under the recipes' accelerate launchers: two CPU processes train as one does, and the
launch configs the paper recipes name are ones accelerate accepts."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hala.config import load_config
from hala.run.preflight import accelerate_launch_problem
from hala.run.recipe import Recipe

REPO = Path(__file__).resolve().parent.parent
LAUNCH_CONFIGS = sorted((REPO / "recipes" / "accelerate").glob("*.yaml"))
KINDS = {"ddp.yaml": "MULTI_GPU", "fsdp.yaml": "FSDP", "deepspeed_zero3.yaml": "DEEPSPEED", "single_gpu.yaml": "NO"}


def deepspeed_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("deepspeed") is not None


@pytest.mark.parametrize("path", LAUNCH_CONFIGS, ids=lambda p: p.name)
def test_accelerate_accepts_every_shipped_launch_config(path):
    """Read by accelerate's own config loader and put through `accelerate launch`'s validation (the
    step that folds a config file into the launch arguments). DDP is also run for real below; FSDP
    and ZeRO-3 shard over GPUs, so here they are checked as configs only, and ZeRO-3 needs DeepSpeed,
    which this CPU setup does not install: then the refusal is what is checked."""
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(path))
    assert config.distributed_type.value == KINDS[path.name] and config.num_processes == (1 if "single" in path.name else 8)
    problem = accelerate_launch_problem(["--config_file", str(path)])
    if path.name == "deepspeed_zero3.yaml" and not deepspeed_installed():
        assert problem == "it launches DeepSpeed, which is not installed here (pip install deepspeed on the GPU machines)"
        assert config.deepspeed_config["zero_stage"] == 3 and config.deepspeed_config["zero3_save_16bit_model"]
    else:
        assert problem is None
    if path.name == "fsdp.yaml":
        assert config.fsdp_config["fsdp_version"] == 2 and config.fsdp_config["fsdp_state_dict_type"] == "FULL_STATE_DICT"


def seed_rows(n: int) -> list[dict]:
    from importlib import resources

    text = resources.files("hala.resources").joinpath("samples/seed_pairs.jsonl").read_text(encoding="utf-8")
    pairs = [json.loads(line) for line in text.splitlines()[:n]]
    return [{"prompt": [{"role": "user", "content": "Translate everything that follows into Arabic:\n\n" + p["en"]}],
             "completion": [{"role": "assistant", "content": p["ar"]}]} for p in pairs]  # fmt: skip


def cpu_variant(tmp_path: Path, processes: int) -> Path:
    """recipes/accelerate/ddp.yaml with what a CPU can't have changed: two processes, no bf16."""
    config = yaml.safe_load((REPO / "recipes" / "accelerate" / "ddp.yaml").read_text())
    config.update(num_processes=processes, mixed_precision="no")
    path = tmp_path / "ddp-cpu.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def ddp_train(tmp_path: Path, settings: dict, processes: int = 2) -> subprocess.CompletedProcess:
    """`hala train` under hala-1.2b.yaml's own `sft` launcher, its config file swapped for the CPU variant."""
    recipe = load_config(Recipe, REPO / "recipes" / "hala-1.2b.yaml")
    words = shlex.split(recipe.launchers["sft"])
    words[words.index("--config_file") + 1] = str(cpu_variant(tmp_path, processes))
    assert words[:2] == ["accelerate", "launch"]
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump(settings))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)]),
           "HALA_DDP_WRITES": str(tmp_path / "writes.txt"), "OMP_NUM_THREADS": "1"}  # fmt: skip
    command = [sys.executable, "-m", "accelerate.commands.launch", *words[2:], "-m", "tests.ddp_probe",
               "train", "-c", str(config)]  # fmt: skip
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_two_ddp_processes_train_as_one_process_with_the_same_global_batch(tmp_path, tiny_llama):
    """2 CPU processes (gloo) x batch 2 under the recipes' DDP launcher against 1 process x batch 4,
    same data, seed and steps: the same logged losses and the same weights, within float32 noise.

    Why the tolerance. The runs differ only in how a step's gradient is summed: DDP sums each rank's
    two rows, all-reduces the two partial sums and averages; one process sums the four rows at once.
    float32 addition is not associative, so a gradient element differs by a few ulp of its largest
    term (~1e-7 relative). Losses are computed before any update differs, then from weights that
    differ that little: measured ~1e-7 relative, asserted 1e-5. Adam divides each update by the
    root of its second moment, so an element whose gradient nearly cancels gets a visibly different
    update (measured: the largest difference 3e-5 of what training moved that tensor, in the
    embedding); asserted: each tensor's difference is under 1e-3 of its change from the base. A
    wrong global batch is far outside both: 2 processes x batch 4 against these 4 rows a step gave
    losses 14% apart and weights 46-93% of their change apart."""
    import torch
    from safetensors.torch import load_file

    from hala.train.config import TrainConfig
    from hala.train.sft import train

    data = tmp_path / "pc.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in seed_rows(16)), encoding="utf-8")
    common = dict(model=str(tiny_llama), data=[str(data)], max_steps=4, learning_rate=1e-2, logging_steps=1,
                  save_steps=1000, save_dtype="float32", seed=0)  # fmt: skip
    one = train(TrainConfig(**common, out=str(tmp_path / "one"), batch_size=4))
    two = tmp_path / "two"
    result = ddp_train(tmp_path, {**common, "out": str(two), "batch_size": 2})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]

    def losses(folder: Path) -> list[tuple[int, float]]:
        return [(h["step"], h["loss"]) for h in json.loads((folder / "loss_history.json").read_text())]

    assert [s for s, _ in losses(two)] == [s for s, _ in losses(tmp_path / "one")] == [1, 2, 3, 4]
    assert [x for _, x in losses(two)] == pytest.approx([x for _, x in losses(tmp_path / "one")], rel=1e-5)
    manifest = json.loads((two / "manifest.json").read_text())
    assert manifest["counts"]["steps"] == one.counts["steps"] == 4
    assert manifest["metrics"]["train_loss"] == pytest.approx(one.metrics["train_loss"], rel=1e-5)
    base = load_file(Path(tiny_llama) / "model.safetensors")
    single, ddp = load_file(tmp_path / "one" / "model" / "model.safetensors"), load_file(two / "model" / "model.safetensors")
    assert single.keys() == ddp.keys() == base.keys()
    for name, weight in single.items():
        change = (weight - base[name].float()).norm()
        assert change > 0 and (weight - ddp[name]).norm() <= 1e-3 * change, name

    writes = (tmp_path / "writes.txt").read_text().split("\n")[:-1]
    assert sorted(writes) == ["0 folder model", "0 manifest train"]  # rank 0 alone writes model/ and the record
    holders = [json.loads(line) for line in (tmp_path / ".two.hala-lock").read_text().splitlines()]
    assert len(holders) == 2 and all(h["worker"] for h in holders)  # both ranks took the lock shared
    assert len({h["pid"] for h in holders}) == 2
