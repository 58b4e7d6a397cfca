"""What a usable reply of an OpenAI-compatible server holds, read or refused.

Each parser takes the decoded JSON of one reply and returns what `hala.engines.openai` needs
from it, or raises `MalformedReply`: a 200 whose body is truncated, has no `choices`, or lacks
the field asked for. The client retries a malformed reply like a 5xx (another server may answer).
"""

from __future__ import annotations

from typing import Any

from hala.engines.base import Generation


class MalformedReply(ValueError):
    """A 200 whose body can't be used (truncated, no choices): retried like a 5xx."""


def tokens_reply(reply: Any) -> list[int]:
    if not isinstance(reply, dict) or not isinstance(reply.get("tokens"), list):
        raise MalformedReply("no tokens (scoring needs vLLM's /tokenize)")
    return [int(t) for t in reply["tokens"]]


def echo_reply(reply: Any) -> tuple[list, list]:
    logprobs = first_choice(reply).get("logprobs") or {}
    values = logprobs.get("token_logprobs")
    if not values:
        raise MalformedReply("no logprobs.token_logprobs for echo: true")
    return [v if v is not None else 0.0 for v in values], logprobs.get("tokens") or []


def first_choice(reply: Any) -> dict:
    """`choices[0]` of a reply, or MalformedReply (an empty or missing `choices` is retried)."""
    choices = reply.get("choices") if isinstance(reply, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise MalformedReply("no choices")
    return choices[0]


def chat_reply(reply: Any) -> Generation:
    choice = first_choice(reply)
    message = choice.get("message")
    if not isinstance(message, dict) or not isinstance(message.get("content") or "", str):
        raise MalformedReply("choices[0] has no message content")
    usage = reply.get("usage") if isinstance(reply.get("usage"), dict) else {}
    return Generation(
        text=message.get("content") or "",
        finish_reason=choice.get("finish_reason") or "stop",
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
    )


def prompt_logprobs_reply(reply: Any) -> list | None:
    return first_choice(reply).get("prompt_logprobs") or reply.get("prompt_logprobs")


def chosen_logprob(step: dict) -> float:
    """vLLM returns {token_id: {logprob, rank, decoded_token}} with the prompt token first."""
    entry = next(iter(step.values()))
    return entry["logprob"] if isinstance(entry, dict) else float(entry)
