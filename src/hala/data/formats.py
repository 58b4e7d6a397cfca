"""Row formats: how a raw row from a file or dataset becomes a record.

Instruction data comes in a handful of shapes. We read each into the one `Conversation` record:

- `messages`: OpenAI chat form, `{"messages": [{"role", "content"}], ...}` (also our own output);
- `sharegpt`: `{"conversations": [{"from": human|gpt|system, "value"}]}` (the paper's corpus schema);
- `alpaca`: `{"instruction", "input", "output"}` (and an optional `system`);

and parallel data into `ParallelPair`:

- `pairs`: `{"en": ..., "ar": ...}`, opus-100's `{"translation": {"en", "ar"}}`, or a TSV row.

A row whose id names another record already read (other content) is a `duplicate_id` (see
`readers`). A row that does not fit raises `BadRecord` with a `kind` (counted in run summaries) and a reason
that names the offending field, so the reader can report `file:line: reason`.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from hala.data.records import ROLES, Conversation, Message, ParallelPair


class BadRecord(ValueError):
    """A row that can't become a record. `kind` is one of BAD_KINDS."""

    def __init__(self, kind: str, reason: str):
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


BAD_KINDS = (
    "invalid_json",
    "non_utf8",
    "wrong_schema",
    "wrong_type",
    "empty_messages",
    "unknown_role",
    "duplicate_id",
)

def from_validation_error(exc) -> BadRecord:
    """A pydantic error on a record field (e.g. `lang: 5`) as a `wrong_type` BadRecord."""
    err = exc.errors()[0]
    key = ".".join(str(p) for p in err["loc"]) or "record"
    return BadRecord("wrong_type", f"field {key!r}: {err['msg']}")


SHAREGPT_ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant"}


def _require(row: dict, key: str, typ: type | tuple, where: str = "") -> Any:
    if key not in row:
        raise BadRecord("wrong_schema", f"missing field {where}{key!r}")
    value = row[key]
    if not isinstance(value, typ):
        expected = typ.__name__ if isinstance(typ, type) else " or ".join(t.__name__ for t in typ)
        raise BadRecord("wrong_type", f"field {where}{key!r} should be {expected}, got {type(value).__name__}")
    return value


def _meta(row: dict) -> dict:
    meta = row.get("meta")
    if meta is None:
        return {}
    if isinstance(meta, str):  # our Parquet files store meta as JSON text
        try:
            meta = json.loads(meta)
        except json.JSONDecodeError:
            raise BadRecord("wrong_type", "field 'meta' should be an object (or JSON text of one)") from None
    if not isinstance(meta, dict):
        raise BadRecord("wrong_type", f"field 'meta' should be dict, got {type(meta).__name__}")
    return meta


def _optional(row: dict, key: str, default: Any, typ: type | tuple = str) -> Any:
    """A field that may be absent or null (then `default`), but never of the wrong type."""
    value = row.get(key)
    if value is None or value == "":
        return default
    if not isinstance(value, typ) or isinstance(value, bool):
        expected = typ.__name__ if isinstance(typ, type) else " or ".join(t.__name__ for t in typ)
        raise BadRecord("wrong_type", f"field {key!r} should be {expected}, got {type(value).__name__}")
    return value


def _common_fields(row: dict, source: str, lang: str) -> dict:
    raw_id = _optional(row, "id", None, (str, int))
    return {
        "id": str(raw_id) if raw_id is not None else None,
        "source": _optional(row, "source", source),
        "lang": _optional(row, "lang", lang),
        "meta": _meta(row),
    }


def _messages(turns: list, role_key: str, content_key: str, roles: dict) -> list[Message]:
    if not turns:
        raise BadRecord("empty_messages", "conversation has no messages")
    out = []
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict):
            raise BadRecord("wrong_type", f"message {i} should be an object, got {type(turn).__name__}")
        role = _require(turn, role_key, str, f"message {i} ")
        content = _require(turn, content_key, str, f"message {i} ")
        if role not in roles:
            valid = ", ".join(sorted(roles))
            raise BadRecord("unknown_role", f"message {i} has unknown role {role!r} (valid: {valid})")
        out.append(Message(role=roles[role], content=content))
    if not any(m.content.strip() for m in out):
        raise BadRecord("empty_messages", "every message is empty")
    return out


def from_messages(row: dict, source: str = "", lang: str = "en") -> Conversation:
    turns = _require(row, "messages", list)
    msgs = _messages(turns, "role", "content", {r: r for r in ROLES})
    return Conversation.create(msgs, **_common_fields(row, source, lang))


def from_sharegpt(row: dict, source: str = "", lang: str = "en") -> Conversation:
    turns = _require(row, "conversations", list)
    msgs = _messages(turns, "from", "value", SHAREGPT_ROLES)
    return Conversation.create(msgs, **_common_fields(row, source, lang))


def from_alpaca(row: dict, source: str = "", lang: str = "en") -> Conversation:
    instruction = _require(row, "instruction", str)
    extra = _optional(row, "input", "")
    output = _require(row, "output", str)
    system = _optional(row, "system", "")
    prompt = f"{instruction}\n\n{extra}" if extra.strip() else instruction
    if not prompt.strip() and not output.strip():
        raise BadRecord("empty_messages", "instruction and output are both empty")
    msgs = [Message(role="user", content=prompt), Message(role="assistant", content=output)]
    if system.strip():
        msgs.insert(0, Message(role="system", content=system))
    return Conversation.create(msgs, **_common_fields(row, source, lang))


def to_pair(row: dict, source: str = "", src_lang: str = "en", tgt_lang: str = "ar") -> ParallelPair:
    """`{en, ar}`, `{translation: {en, ar}}` or our own `{src, tgt}` rows as a ParallelPair."""
    body = row.get("translation", row)
    if not isinstance(body, dict):
        raise BadRecord("wrong_type", f"field 'translation' should be dict, got {type(body).__name__}")
    if "src" in body and "tgt" in body and src_lang not in body:
        src_key, tgt_key = "src", "tgt"
    else:
        src_key, tgt_key = src_lang, tgt_lang
    src = _require(body, src_key, str)
    tgt = _require(body, tgt_key, str)
    if not src.strip() or not tgt.strip():
        raise BadRecord("empty_messages", f"empty {'source' if not src.strip() else 'target'} side")
    raw_id = _optional(row, "id", None, (str, int))
    return ParallelPair.create(
        src,
        tgt,
        id=str(raw_id) if raw_id is not None else None,
        src_lang=_optional(row, "src_lang", src_lang),
        tgt_lang=_optional(row, "tgt_lang", tgt_lang),
        source=_optional(row, "source", source),
        meta=_meta(row),
    )


CONVERSATION_FORMATS: dict[str, Callable[..., Conversation]] = {
    "messages": from_messages,
    "sharegpt": from_sharegpt,
    "alpaca": from_alpaca,
}
FORMATS = (*CONVERSATION_FORMATS, "pairs")


def detect_format(row: dict) -> str:
    """Guess the format of one row from its keys."""
    if "messages" in row:
        return "messages"
    if "conversations" in row:
        return "sharegpt"
    if "instruction" in row and "output" in row:
        return "alpaca"
    if "translation" in row or ("src" in row and "tgt" in row) or ("en" in row and "ar" in row):
        return "pairs"
    keys = ", ".join(sorted(row)) or "none"
    raise BadRecord(
        "wrong_schema",
        f"can't tell the format from the keys ({keys}); expected one of {', '.join(FORMATS)}",
    )


def get_format(name: str) -> str:
    if name != "auto" and name not in FORMATS:
        raise ValueError(f"unknown format {name!r}; valid: auto, {', '.join(FORMATS)}")
    return name
