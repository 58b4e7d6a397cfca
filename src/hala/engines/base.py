"""The engine interface every stage generates through.

An engine takes a batch of conversations (lists of `{role, content}` messages) and sampling
parameters, and returns one `Generation` per conversation: the text, why it stopped and how many
tokens it used. Where the backend can, it also scores prompts (per-token log-probabilities, and
for token ids their rank too: lighteval's scorer asks), which the quantization and evaluation
stages use, and replies (the log-probability of a given assistant answer, for the judge's scoring
modes). Batches are lists on purpose: throughput comes from giving the backend many requests at
once, and the engine decides how to schedule them. Every stage, check and verification reaches a
model through an engine: `vllm`, `transformers` (in process, full distributions, no server) or
`openai` (a server), and `fake` for plumbing tests.

Two ways to ask. `chat` is all-or-nothing: it raises if any request failed, for callers that
can't use half a batch. `chat_each` keeps what arrived: a request that failed comes back with its
own `error` (and no text) and the others are answered; the cached stages ask this way. A backend
whose requests live and fail one by one (an HTTP server, `openai`) implements both; one whose
batch lives or dies together (in-process vLLM, the fake) implements `chat`, and `chat_each` is
the same call.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Literal

from pydantic import Field, model_serializer

from hala.config import StrictModel

Chat = list[dict[str, str]]
PLAIN_TEMPLATE = "{% for m in messages %}{{ m['content'] }}\n{% endfor %}"  # for a model that has no chat template


class SamplingParams(StrictModel):
    """Sampling settings shared by all engines (greedy by default, as the paper's translator)."""

    max_tokens: int = Field(256, ge=1, description="most tokens generated per reply")
    temperature: float = Field(0.0, ge=0.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    seed: int | None = None
    stop: list[str] = Field(default_factory=list)
    frequency_penalty: float = Field(
        0.0, ge=-2.0, le=2.0, description="subtracted from a token's logit once per time it was already generated "
        "(OpenAI's meaning; the prompt's tokens are not counted, so copied code and names are not penalised): "
        "a small model's greedy loops end"
    )

    @model_serializer(mode="wrap")
    def _without_unset_penalty(self, handler):
        """No penalty, no key: cache keys and folder fingerprints stay what they were before the field."""
        data = handler(self)
        if self.frequency_penalty == 0.0:
            data.pop("frequency_penalty", None)
        return data


class EngineConfig(StrictModel):
    """Which engine serves which model, and how."""

    # where and how fast the model is served, not what it answers (the model is `model`; base_urls are its replicas)
    NOT_OUTPUT = frozenset({
        "gpu_memory_utilization", "cpu_kvcache_gb", "data_parallel_size", "base_urls", "api_key_env",
        "max_concurrency", "timeout_s", "max_retries", "backoff_s", "fake_delay_s",
    })  # fmt: skip

    kind: Literal["vllm", "openai", "fake", "transformers"] = Field(
        "vllm", description="the engine (transformers: in process; fake: for plumbing tests)"
    )
    model: str = Field("", description="model folder or hub id (vllm, transformers), or served name (openai)")
    # vllm (dtype, max_model_len and chat_template: transformers too)
    dtype: str = "auto"
    max_model_len: int | None = None
    tensor_parallel_size: int = Field(1, ge=1)
    data_parallel_size: int = Field(1, ge=1)
    gpu_memory_utilization: float = Field(0.9, gt=0.0, le=1.0)
    enforce_eager: bool | None = Field(
        None, description="vLLM without torch.compile and CUDA graphs; unset: eager on CPU, compiled on GPU"
    )
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
    """One answer: its text, why it stopped ("stop", "length") and the tokens it took.

    `completion_tokens` counts the stop token too, as vLLM does; `token_ids` are the generated
    ids (stop token included) where the engine reports them (vllm, transformers). The request
    cache keeps the first four fields, so an answer read back from it has no ids."""

    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    error: str | None = None  # set (text empty) when this request failed; never cached
    token_ids: tuple[int, ...] = ()

    @classmethod
    def failed(cls, error: str) -> Generation:
        """The result of a request that failed: no text, its own error."""
        return cls("", "error", 0, 0, error)


class EngineError(RuntimeError):
    """Some requests of an all-or-nothing `chat` failed; the message holds the first one's error."""


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
        """One generation per conversation, in order; raises if any request failed."""

    def chat_each(self, conversations: list[Chat], params: SamplingParams) -> list[Generation]:
        """One result per conversation, in order; one that failed has `error` set, the others are
        kept. Raising here means the whole batch failed (the backend itself is down)."""
        return self.chat(conversations, params)

    def prompt_logprobs(self, prompts: list[str]) -> list[list[float]]:
        """Log-probability of each prompt token given the ones before it (the first is skipped)."""
        raise NotImplementedError(f"engine {self.cfg.kind!r} can't score prompts")

    def token_logprobs(self, sequences: list[list[int]]) -> list[list[tuple[float, int]]]:
        """(log-probability, rank) of each token after the first of each token-id sequence, rank 1
        being the model's own first choice: lighteval's log-likelihood requests are scored so."""
        raise NotImplementedError(f"engine {self.cfg.kind!r} can't score token ids")

    def tail_logprobs(self, sequences: list[list[int]], tails: list[int]) -> list[list[tuple[float, int]]]:
        """`token_logprobs` of only the last `tails[i]` tokens of each sequence (a multiple-choice
        answer after its question). An engine that can project just those positions onto the
        vocabulary overrides this; the others score every token and keep the tail."""
        return [scores[max(0, len(scores) - n) :] for scores, n in zip(self.token_logprobs(sequences), tails)]

    @property
    def context_length(self) -> int:
        """The longest sequence the served model takes (prompt and completion)."""
        raise NotImplementedError(f"engine {self.cfg.kind!r} does not report its context length")

    def score_replies(self, replies: list) -> list[list[float]]:
        """Log-probability of each token of each reply (`hala.engines.replies.Reply`) after its chat,
        teacher-forced: the judge's scoring modes use it. The reply's tokens are cut the same way on
        every engine (`hala.engines.replies`)."""
        raise NotImplementedError(f"engine {self.cfg.kind!r} can't score replies")

    def score_replies_each(self, replies: list) -> list[list[float] | str]:
        """`score_replies` one result per reply: its log-probabilities, or its own error text.
        Raising here means the whole batch failed (the backend itself is down)."""
        return self.score_replies(replies)

    def close(self) -> None:
        """Release the backend (processes, connections)."""

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *_) -> None:
        self.close()
