"""The one record every stage reads and writes.

A `Conversation` is a list of role-tagged messages with a stable id, the dataset or file it came
from, its language and free-form metadata. Stages never pass raw dicts around: translation keeps the
id and swaps `lang`, the SFT writer renders the same record as ShareGPT. A `ParallelPair` is the
small record of the translator's corpus (one source segment and its translation).

Ids are stable so that resume, dedup and EN/AR pairing are lookups: a source's own id is kept, and a
record without one gets a hash of its content, so the same row gets the same id on every run.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Role = Literal["system", "user", "assistant"]
ROLES: tuple[str, ...] = ("system", "user", "assistant")


def content_id(payload: Any, prefix: str = "") -> str:
    """A short stable id: sha256 of the canonical JSON of `payload` (16 hex chars)."""
    canonical = json.dumps(payload, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]
    return f"{prefix}{digest}"


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Message(_Record):
    role: Role
    content: str


class Conversation(_Record):
    """A conversation: the unit every stage reads and writes."""

    id: str
    messages: list[Message] = Field(min_length=1)
    source: str = ""
    lang: str = "en"
    meta: dict[str, Any] = Field(default_factory=dict)

    @field_validator("id")
    @classmethod
    def _id_not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("id must not be empty")
        return value

    @classmethod
    def create(cls, messages: list[dict] | list[Message], *, id: str | None = None, **fields) -> Conversation:
        """Build a conversation, deriving its id from the messages when the source has none."""
        msgs = [m if isinstance(m, Message) else Message(**m) for m in messages]
        if not id:
            id = content_id([m.model_dump() for m in msgs], prefix="c-")
        return cls(id=id, messages=msgs, **fields)

    def to_sharegpt(self) -> dict:
        """The paper's corpus schema: `conversations: [{from: system|human|gpt, value}]`."""
        names = {"system": "system", "user": "human", "assistant": "gpt"}
        return {
            "id": self.id,
            "conversations": [{"from": names[m.role], "value": m.content} for m in self.messages],
            "source": self.source,
            "lang": self.lang,
        }


class ParallelPair(_Record):
    """One aligned segment pair, e.g. an English sentence and its Arabic translation."""

    id: str
    src: str
    tgt: str
    src_lang: str = "en"
    tgt_lang: str = "ar"
    source: str = ""
    meta: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def create(cls, src: str, tgt: str, *, id: str | None = None, **fields) -> ParallelPair:
        if not id:
            id = content_id([src, tgt], prefix="p-")
        return cls(id=id, src=src, tgt=tgt, **fields)
