"""Train/dev/test assignment by source id, stable across runs, machines and input order.

A pair's split is a function of its source id alone (the conversation a teacher-translated
segment came from; an external pair's own id), so every segment of one conversation lands in the
same split and nothing about a test conversation is seen in training. The id is hashed with a
salt (`seed`) to a number u in [0, 1): test is [0, test), dev is [test, test + dev), train the
rest. Growing `dev` therefore never moves a pair into or out of test, and adding data never moves
an existing source.
"""

from __future__ import annotations

import hashlib

from pydantic import Field, model_validator

from hala.config import StrictModel

SPLITS = ("train", "dev", "test")


class SplitConfig(StrictModel):
    """Fractions of source ids (not of pairs) per split; defaults are ours."""

    dev: float = Field(0.02, ge=0, le=1)
    test: float = Field(0.02, ge=0, le=1)
    seed: str = Field("hala", description="salt of the hash; another seed gives another split")

    @model_validator(mode="after")
    def _fractions(self) -> SplitConfig:
        if self.dev + self.test > 1:
            raise ValueError(f"dev + test = {self.dev + self.test:g} is more than 1")
        return self


def unit_interval(source_id: str, seed: str) -> float:
    digest = hashlib.sha256(f"{seed}\x00{source_id}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_of(source_id: str, cfg: SplitConfig) -> str:
    u = unit_interval(source_id, cfg.seed)
    if u < cfg.test:
        return "test"
    if u < cfg.test + cfg.dev:
        return "dev"
    return "train"
