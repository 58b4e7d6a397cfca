"""The engine interface every stage generates through.

An engine takes a batch of conversations (lists of `{role, content}` messages) and sampling
parameters, and returns one `Generation` per conversation: the text, why it stopped and how many
tokens it used. Where the backend can, it also scores prompts (per-token log-probabilities), which
the quantization and evaluation stages use, and replies (the log-probability of a given assistant
answer, for the judge's scoring modes). Batches are lists on purpose: throughput comes from
giving the backend many requests at once, and the engine decides how to schedule them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Literal

from pydantic import Field

from hala.config import StrictModel

Chat = list[dict[str, str]]


class SamplingParams(StrictModel):
    """Sampling settings shared by all engines (greedy by default, as the paper's translator)."""

    max_tokens: int = Field(256, ge=1)
    temperature: float = Field(0.0, ge=0.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    seed: int | None = None
    stop: list[str] = Field(default_factory=list)


class EngineConfig(StrictModel):
    """Which engine serves which model, and how."""

    kind: Literal["vllm", "openai", "fake"] = "vllm"
    model: str = ""
    # vllm
    dtype: str = "auto"
    max_model_len: int | None = None
    tensor_parallel_size: int = Field(1, ge=1)
    data_parallel_size: int = Field(1, ge=1)
    gpu_memory_utilization: float = Field(0.9, gt=0.0, le=1.0)
    enforce_eager: bool = False
    cpu_kvcache_gb: int = Field(2, ge=1, description="VLLM_CPU_KVCACHE_SPACE on CPU machines, unless set")
    chat_template: str | None = None
    seed: int = 0
    vllm_kwargs: dict = Field(default_factory=dict, description="passed through to vllm.LLM")
    # openai
    base_urls: list[str] = Field(default_factory=lambda: ["http://127.0.0.1:8000/v1"])
    api_key_env: str = "OPENAI_API_KEY"
    max_concurrency: int = Field(16, ge=1)
    timeout_s: float = Field(120.0, gt=0)
    max_retries: int = Field(4, ge=0)
    backoff_s: float = Field(1.0, ge=0)
    # fake
    fake_delay_s: float = Field(0.0, ge=0, description="fake engine: seconds per call (to test kills)")


@dataclass(frozen=True)
class Generation:
    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int


class Engine(ABC):
    """Batched chat generation (and, where possible, prompt scoring) over one model."""

    def __init__(self, cfg: EngineConfig):
        self.cfg = cfg

    @property
    def model_id(self) -> str:
        """What identifies the model in cache keys and manifests."""
        return f"{self.cfg.kind}:{self.cfg.model}"

    @abstractmethod
    def chat(self, conversations: list[Chat], params: SamplingParams) -> list[Generation]:
        """One generation per conversation, in order."""

    def prompt_logprobs(self, prompts: list[str]) -> list[list[float]]:
        """Log-probability of each prompt token given the ones before it (the first is skipped)."""
        raise NotImplementedError(f"engine {self.cfg.kind!r} can't score prompts")

    def score_replies(self, replies: list) -> list[list[float]]:
        """Log-probability of each token of each reply (`hala.engines.replies.Reply`) after its chat,
        teacher-forced: the judge's scoring modes use it. The reply's tokens are cut the same way on
        every engine (`hala.engines.replies`)."""
        raise NotImplementedError(f"engine {self.cfg.kind!r} can't score replies")

    def close(self) -> None:
        """Release the backend (processes, connections)."""

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *_) -> None:
        self.close()
