"""Running the shards of one record stage (translate, judge, generate) on machinery that exists.

hala has no cluster code of its own: a run of N shards is N independent `hala STAGE shard=I/N`
processes writing into one output folder, and an executor only maps them onto

- `local`: K worker processes on this machine (then merges the shards);
- `slurm`: an `sbatch --array=0-(N-1)` script in which array task I runs shard I (`--submit` also
  calls sbatch; merge with `hala STAGE --merge-shards` once the array is done);
- `ray`: N Ray tasks, each asking for `ray.num_gpus` GPUs (then merges the shards).

Within a shard, vLLM's own tensor and data parallelism apply (`engine.tensor_parallel_size`,
`engine.data_parallel_size`). An executor reaches the stage's function through the command table
(`hala.commands`), by the stage's name.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import yaml

from hala.children import die_with_parent
from hala.data.manifest import FileEntry, Manifest
from hala.data.output_lock import ENV, held_fds
from hala.data.writers import atomic_write_text
from hala.launch.config import ShardedConfig
from hala.launch.merge import merge_shards

SINGLE = {"executor": "none", "shard": "0/1", "workers": 1, "submit": False}  # what each shard process gets


class ShardsFailed(RuntimeError):
    """Shards run as processes of their own failed; each one's own error is in its output."""


def shard_settings(cfg: ShardedConfig) -> dict:
    """The resolved config of every shard process: the launch settings reset, no progress bar."""
    data = cfg.model_dump(mode="json") | SINGLE
    return data | ({"progress": False} if "progress" in data else {})


def write_shard_config(stage: str, cfg: ShardedConfig) -> Path:
    """OUT/STAGE.yaml: the file every shard process reads."""
    path = Path(cfg.out) / f"{stage}.yaml"
    atomic_write_text(path, yaml.safe_dump(shard_settings(cfg), sort_keys=False, allow_unicode=True))
    return path


def shard_command(stage: str, config: Path, shard: str, python: str = sys.executable) -> list[str]:
    return [python, "-m", "hala.cli", stage, "--config", str(config), f"shard={shard}"]


def shard_count(cfg: ShardedConfig) -> int:
    return cfg.workers if cfg.workers > 1 else cfg.num_shards


def run_local(stage: str, cfg: ShardedConfig) -> Manifest:
    from hala.data.units import RequestsFailed

    config, n = write_shard_config(stage, cfg), cfg.workers
    # the workers share this process's lock of the folder (its descriptor) and die with it
    procs = [subprocess.Popen(shard_command(stage, config, f"{i}/{n}"), pass_fds=held_fds(),
                              preexec_fn=die_with_parent) for i in range(n)]  # fmt: skip
    try:
        codes = [p.wait() for p in procs]
    finally:
        for p in procs:  # interrupted (SIGTERM, Ctrl-C): take the workers down before the lock goes
            if p.poll() is None:
                p.terminate()
                p.wait()
    failed = [i for i, code in enumerate(codes) if code != 0]
    if failed:
        why = (f"{cfg.out}: local shards {failed} of {n} failed (exit codes {[codes[i] for i in failed]}; their "
               "messages are above); rerun the same command to resume")  # fmt: skip
        if all(codes[i] == RequestsFailed.exit_code for i in failed):
            raise RequestsFailed.in_shards(cfg.out, why)
        raise ShardsFailed(why)
    return merge_shards(cfg.out)


def slurm_script(stage: str, cfg: ShardedConfig, config: Path, shards: int) -> str:
    s = cfg.slurm
    lines = [
        "#!/bin/bash",
        f"#SBATCH --job-name=hala-{stage}",
        f"#SBATCH --array=0-{shards - 1}",
        f"#SBATCH --time={s.time}",
        f"#SBATCH --cpus-per-task={s.cpus_per_task}",
        f"#SBATCH --output={Path(cfg.out).resolve()}/slurm/%A_%a.log",
    ]
    if s.gpus_per_task:
        lines.append(f"#SBATCH --gres=gpu:{s.gpus_per_task}")
    for key, value in (("partition", s.partition), ("mem", s.mem), ("account", s.account)):
        if value:
            lines.append(f"#SBATCH --{key}={value}")
    lines += [f"#SBATCH {opt}" for opt in s.extra]
    lines += ["set -euo pipefail", *s.setup]
    command = shard_command(stage, config.resolve(), f"${{SLURM_ARRAY_TASK_ID}}/{shards}", python="python")
    lines.append(" ".join(shlex.quote(c) if "$" not in c else f'"{c}"' for c in command))
    return "\n".join(lines) + "\n"


def run_slurm(stage: str, cfg: ShardedConfig) -> Manifest:
    shards = shard_count(cfg)
    config = write_shard_config(stage, cfg)
    script = Path(cfg.out) / "slurm" / f"{stage}.sbatch"
    atomic_write_text(script, slurm_script(stage, cfg, config, shards))
    counts = {"num_shards": shards, "submitted": 0}
    if cfg.submit:
        result = subprocess.run(["sbatch", str(script)], capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"sbatch failed: {result.stderr.strip()}")
        print(result.stdout.strip())
        counts["submitted"] = 1
    return Manifest(stage=f"{stage}-launch", config={"script": str(script)}, counts=counts,
                    outputs=[FileEntry.of(config), FileEntry.of(script)])  # fmt: skip


def _ray_shard(stage: str, data: dict, shard: str, held: str) -> dict:
    from hala.commands import COMMANDS

    os.environ[ENV] = held  # the driver holds the folder's lock for its tasks (see hala.data.output_lock)
    command = COMMANDS[stage]
    cfg = command.load("config").model_validate({**data, "shard": shard})
    return command.load("function")(cfg).counts


def run_ray(stage: str, cfg: ShardedConfig) -> Manifest:
    import ray

    shards = shard_count(cfg)
    data = shard_settings(cfg)
    ray.init(address=cfg.ray.address, ignore_reinit_error=True)
    task = ray.remote(_ray_shard).options(num_gpus=cfg.ray.num_gpus, num_cpus=cfg.ray.num_cpus)
    ray.get([task.remote(stage, data, f"{i}/{shards}", os.environ.get(ENV, "{}")) for i in range(shards)])
    return merge_shards(cfg.out)


EXECUTORS = {"local": run_local, "slurm": run_slurm, "ray": run_ray}


def launch(stage: str, cfg: ShardedConfig) -> Manifest:
    """Run the shards of `stage` (its name in the command table) with `cfg.executor`."""
    if cfg.executor not in EXECUTORS:
        raise ValueError(f"unknown executor {cfg.executor!r}; valid: none, {', '.join(EXECUTORS)}")
    return EXECUTORS[cfg.executor](stage, cfg)
