"""Training rows for TRL: prompt-completion pairs or conversations, read with hala's readers.

Prompt-completion rows are TRL's conversational form, `{"prompt": [messages], "completion":
[messages]}` (what `hala pairs` writes for the translator); TRL trains on the completion only.
Conversations are any format hala reads (messages, ShareGPT, Alpaca); TRL trains on the assistant
turns only. Bad rows are reported with file and line like everywhere else, never silently dropped.
"""

from __future__ import annotations

from typing import Iterator

from hala.data.readers import read_conversations_at
from hala.data.rows import expand_inputs, iter_rows
from hala.data.rejects import RejectLog


def _is_prompt_completion(row: dict) -> bool:
    return "prompt" in row and "completion" in row


def sniff(files: list[str]) -> str:
    for file in files:
        for row in iter_rows(file, stop=50):
            if row.data is not None:
                return "prompt_completion" if _is_prompt_completion(row.data) else "conversations"
    raise ValueError(f"no readable row in {', '.join(files)}")


def _messages_ok(value) -> bool:
    return isinstance(value, list) and value and all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in value
    )


def rows(paths: list[str], fmt: str, rejects: RejectLog, limit: int | None = None) -> Iterator[dict]:
    """Yield TRL rows from every input, reporting bad ones in `rejects`."""
    files = [f for p in paths for f in expand_inputs(p)]
    n = 0
    for file in files:
        if fmt == "conversations":
            items = _conversations(file, rejects)
        else:
            items = _prompt_completion(file, rejects)
        for item in items:
            if limit is not None and n >= limit:
                return
            n += 1
            yield item


def _prompt_completion(file: str, rejects: RejectLog) -> Iterator[dict]:
    for row in iter_rows(file):
        if row.error is not None:
            rejects.add(row.file, row.line, row.error.kind, row.error.reason, row.raw)
        elif not _is_prompt_completion(row.data):
            rejects.add(row.file, row.line, "wrong_schema", "expected 'prompt' and 'completion'", row.raw)
        elif not (_messages_ok(row.data["prompt"]) and _messages_ok(row.data["completion"])):
            rejects.add(row.file, row.line, "wrong_type", "'prompt' and 'completion' should be lists of {role, content}", row.raw)
        elif not any(m["content"].strip() for m in row.data["completion"]):
            rejects.add(row.file, row.line, "empty_completion", "the completion is empty: nothing to train on", row.raw)
        else:
            yield {"prompt": row.data["prompt"], "completion": row.data["completion"]}


def _conversations(file: str, rejects: RejectLog) -> Iterator[dict]:
    """Conversations with something to learn: at least one non-empty assistant turn."""
    for line, conv in read_conversations_at(file, rejects=rejects):
        if not any(m.role == "assistant" and m.content.strip() for m in conv.messages):
            rejects.add(file, line, "no_assistant_turn", f"conversation {conv.id} has no assistant turn to train on")
            continue
        yield {"messages": [m.model_dump() for m in conv.messages]}
