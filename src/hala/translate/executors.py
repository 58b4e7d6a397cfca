"""Running the shards of one translation on the machinery that already exists.

hala has no cluster code of its own: a run of N shards is N independent `hala translate
shard=I/N` processes writing into one output folder, and an executor only maps them onto

- `local`: K worker processes on this machine (then merges the shards);
- `slurm`: an `sbatch --array=0-(N-1)` script in which array task I runs shard I (`--submit` also
  calls sbatch; merge with `hala translate --merge-shards` once the array is done);
- `ray`: N Ray tasks, each asking for `ray.num_gpus` GPUs (then merges the shards).

Within a shard, vLLM's own tensor and data parallelism apply (`engine.tensor_parallel_size`,
`engine.data_parallel_size`).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import yaml

from hala.data.manifest import FileEntry, Manifest
from hala.data.output_lock import ENV, held_fds
from hala.data.writers import atomic_write_text
from hala.children import die_with_parent
from hala.translate.config import TranslateConfig

CONFIG_NAME = "translate.yaml"


def write_shard_config(cfg: TranslateConfig) -> Path:
    """The resolved config every shard process reads (launch settings reset)."""
    data = cfg.model_dump(mode="json")
    data.update(executor="none", shard="0/1", workers=1, submit=False, progress=False)
    path = Path(cfg.out) / CONFIG_NAME
    atomic_write_text(path, yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return path


class ShardsFailed(RuntimeError):
    """Shards run as processes of their own failed; each one's own error is in its output."""


def shard_command(config: Path, shard: str, python: str = sys.executable) -> list[str]:
    return [python, "-m", "hala.cli", "translate", "--config", str(config), f"shard={shard}"]


def run_local(cfg: TranslateConfig) -> Manifest:
    from hala.translate.shards import merge_shards

    config = write_shard_config(cfg)
    n = cfg.workers
    # the workers share this process's lock of the folder (its descriptor) and die with it
    procs = [subprocess.Popen(shard_command(config, f"{i}/{n}"), pass_fds=held_fds(), preexec_fn=die_with_parent)
             for i in range(n)]  # fmt: skip
    try:
        codes = [p.wait() for p in procs]
    finally:
        for p in procs:  # interrupted (SIGTERM, Ctrl-C): take the workers down before the lock goes
            if p.poll() is None:
                p.terminate()
                p.wait()
    failed = [i for i, code in enumerate(codes) if code != 0]
    if failed:
        from hala.data.units import RequestsFailed

        why = (f"{cfg.out}: local shards {failed} of {n} failed (exit codes {[codes[i] for i in failed]}; their "
               "messages are above); rerun the same command to resume")  # fmt: skip
        if all(codes[i] == RequestsFailed.exit_code for i in failed):
            raise RequestsFailed.in_shards(cfg.out, why)
        raise ShardsFailed(why)
    return merge_shards(cfg.out)


def slurm_script(cfg: TranslateConfig, config: Path, shards: int) -> str:
    s = cfg.slurm
    lines = [
        "#!/bin/bash",
        "#SBATCH --job-name=hala-translate",
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
    command = shard_command(config.resolve(), f"${{SLURM_ARRAY_TASK_ID}}/{shards}", python="python")
    lines.append(" ".join(shlex.quote(c) if "$" not in c else f'"{c}"' for c in command))
    return "\n".join(lines) + "\n"


def run_slurm(cfg: TranslateConfig) -> Manifest:
    shards = cfg.workers if cfg.workers > 1 else cfg.num_shards
    config = write_shard_config(cfg)
    script = Path(cfg.out) / "slurm" / "translate.sbatch"
    atomic_write_text(script, slurm_script(cfg, config, shards))
    counts = {"num_shards": shards, "submitted": 0}
    if cfg.submit:
        result = subprocess.run(["sbatch", str(script)], capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"sbatch failed: {result.stderr.strip()}")
        print(result.stdout.strip())
        counts["submitted"] = 1
    return Manifest(stage="translate-launch", config={"script": str(script)}, counts=counts,
                    outputs=[FileEntry.of(config), FileEntry.of(script)])  # fmt: skip


def _ray_shard(data: dict, shard: str, held: str) -> dict:
    from hala.translate.pipeline import translate

    os.environ[ENV] = held  # the driver holds the folder's lock for its tasks (see hala.data.output_lock)
    cfg = TranslateConfig.model_validate({**data, "shard": shard})
    return translate(cfg).counts


def run_ray(cfg: TranslateConfig) -> Manifest:
    import ray

    from hala.translate.shards import merge_shards

    shards = cfg.workers if cfg.workers > 1 else cfg.num_shards
    data = cfg.model_dump(mode="json") | {"executor": "none", "workers": 1, "progress": False}
    ray.init(address=cfg.ray.address, ignore_reinit_error=True)
    task = ray.remote(_ray_shard).options(num_gpus=cfg.ray.num_gpus, num_cpus=cfg.ray.num_cpus)
    ray.get([task.remote(data, f"{i}/{shards}", os.environ.get(ENV, "{}")) for i in range(shards)])
    return merge_shards(cfg.out)


EXECUTORS = {"local": run_local, "slurm": run_slurm, "ray": run_ray}


def launch(cfg: TranslateConfig) -> Manifest:
    if cfg.executor not in EXECUTORS:
        raise ValueError(f"unknown executor {cfg.executor!r}; valid: none, {', '.join(EXECUTORS)}")
    return EXECUTORS[cfg.executor](cfg)
