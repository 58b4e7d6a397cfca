"""The launch settings of a stage that runs as shards: which shard this process is, and how the
shards of a run are started. None of them changes a row of the output, so all are `NOT_OUTPUT`;
the shard count comes back into the identity (`identity()`), since it decides which units each
shard's manifest lists."""

from __future__ import annotations

import re
from typing import ClassVar, Literal

from pydantic import Field, field_validator

from hala.config import StrictModel

SHARD_RE = re.compile(r"^(\d+)/(\d+)$")


class SlurmConfig(StrictModel):
    partition: str | None = None
    time: str = "24:00:00"
    gpus_per_task: int = Field(1, ge=0)
    cpus_per_task: int = Field(8, ge=1)
    mem: str | None = None
    account: str | None = None
    setup: list[str] = Field(default_factory=list, description="shell lines run before hala (module load, source venv)")
    extra: list[str] = Field(default_factory=list, description="extra #SBATCH options, e.g. --qos=high")


class RayConfig(StrictModel):
    address: str | None = Field(None, description="ray.init address; None starts or joins a local cluster")
    num_gpus: float = Field(1, ge=0, description="GPUs per shard task (tensor_parallel_size for TP)")
    num_cpus: float = Field(1, ge=0)


class ShardedConfig(StrictModel):
    """Base of the configs of translate, judge and generate: the launch settings, after the stage's own."""

    LAUNCH: ClassVar[frozenset[str]] = frozenset({"shard", "executor", "workers", "submit", "slurm", "ray"})
    NOT_OUTPUT: ClassVar[frozenset[str]] = LAUNCH

    shard: str = Field("0/1", description="run shard I of N, written I/N")
    executor: Literal["none", "local", "slurm", "ray"] = Field("none", description="how shards are launched")
    workers: int = Field(1, ge=1, description="shards to launch with executor local, slurm or ray")
    submit: bool = Field(False, description="slurm executor: also run sbatch")
    slurm: SlurmConfig = Field(default_factory=SlurmConfig)
    ray: RayConfig = Field(default_factory=RayConfig)

    @field_validator("shard")
    @classmethod
    def _shard(cls, value: str) -> str:
        m = SHARD_RE.match(value)
        if not m or not 0 <= int(m.group(1)) < int(m.group(2)):
            raise ValueError("shard must be I/N with 0 <= I < N, e.g. 3/8")
        return value

    @property
    def shard_index(self) -> int:
        return int(self.shard.split("/")[0])

    @property
    def num_shards(self) -> int:
        return int(self.shard.split("/")[1])

    def identity(self, mode: str = "python") -> dict:
        """What the output depends on: every setting but NOT_OUTPUT, plus the shard count."""
        return {**super().identity(mode), "num_shards": self.num_shards}

    def one_of_shards(self) -> bool:
        """This process runs one shard of several (it shares the folder's lock with the others)."""
        return self.executor == "none" and self.num_shards > 1
