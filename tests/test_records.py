"""The one record: stable content-hash ids, kept source ids, validation and the ShareGPT view."""

from __future__ import annotations

import hashlib
import json

import pytest
from pydantic import ValidationError

from hala.data.records import Conversation, Message, ParallelPair, content_id

AR_Q = "ما هي عاصمة المغرب؟"
AR_A = "عاصمة المغرب هي الرباط."


def _msgs(question: str = AR_Q, answer: str = AR_A) -> list[dict]:
    return [
        {"role": "system", "content": "أنت مساعد مفيد."},
        {"role": "user", "content": question},
        {"role": "assistant", "content": answer},
    ]


# --- ids ---------------------------------------------------------------------------------------


def test_content_id_is_sha256_of_canonical_json():
    payload = {"b": [1, "ب"], "a": "أ"}
    canonical = json.dumps(payload, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    expected = hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]
    assert content_id(payload) == expected
    assert content_id(payload, prefix="x-") == "x-" + expected
    # key order does not matter, content does
    assert content_id({"a": "أ", "b": [1, "ب"]}) == expected
    assert content_id({"a": "أ", "b": [1, "ت"]}) != expected


def test_same_content_gives_same_id():
    first = Conversation.create(_msgs())
    second = Conversation.create([Message(**m) for m in _msgs()])
    assert first.id == second.id
    assert first.id.startswith("c-") and len(first.id) == len("c-") + 16
    int(first.id[2:], 16)  # hex


def test_id_is_known_value_across_runs():
    """The id is a pure function of the messages: pin it so a change to the hashing is noticed."""
    assert Conversation.create([{"role": "user", "content": "مرحبا"}]).id == "c-a9cee25a4fd76c13"


@pytest.mark.parametrize(
    "other",
    [
        _msgs(answer=AR_A + " "),  # one extra character
        _msgs(question="ما هي عاصمة مصر؟"),
        [{**m, "role": "user" if m["role"] == "assistant" else m["role"]} for m in _msgs()],  # a role
        _msgs()[:2],  # one message fewer
        list(reversed(_msgs())),  # order
    ],
)
def test_different_content_gives_different_id(other):
    assert Conversation.create(other).id != Conversation.create(_msgs()).id


def test_id_depends_on_messages_only():
    """lang/source/meta are not content: the same dialogue keeps its id (dedup, EN/AR pairing)."""
    base = Conversation.create(_msgs())
    other = Conversation.create(_msgs(), lang="ar", source="elsewhere", meta={"k": 1})
    assert other.id == base.id


def test_source_id_is_kept():
    conv = Conversation.create(_msgs(), id="row-42")
    assert conv.id == "row-42"
    assert Conversation.create(_msgs(), id=None).id == Conversation.create(_msgs()).id
    assert Conversation.create(_msgs(), id="").id.startswith("c-")  # empty means "none"


def test_blank_id_rejected():
    with pytest.raises(ValidationError, match="id must not be empty"):
        Conversation(id="   ", messages=[Message(role="user", content="x")])


# --- validation --------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["bot", "human", "gpt", "tool", "USER", ""])
def test_unknown_role_rejected(role):
    with pytest.raises(ValidationError):
        Message(role=role, content="مرحبا")
    with pytest.raises(ValidationError):
        Conversation.create([{"role": role, "content": "مرحبا"}])


def test_empty_messages_rejected():
    with pytest.raises(ValidationError):
        Conversation.create([])
    with pytest.raises(ValidationError):
        Conversation(id="x", messages=[])


def test_unknown_fields_rejected():
    with pytest.raises(ValidationError):
        Message(role="user", content="x", name="someone")
    with pytest.raises(ValidationError):
        Conversation.create(_msgs(), colour="blue")


def test_content_must_be_text():
    with pytest.raises(ValidationError):
        Message(role="user", content=5)


def test_records_are_frozen():
    conv = Conversation.create(_msgs())
    with pytest.raises(ValidationError):
        conv.lang = "ar"


def test_json_round_trip_keeps_everything():
    conv = Conversation.create(_msgs(), lang="ar", source="alpaca-ar", meta={"turns": 3, "tags": ["أ", "ب"]})
    back = Conversation.model_validate_json(conv.model_dump_json())
    assert back == conv
    assert back.meta == {"turns": 3, "tags": ["أ", "ب"]}


# --- ShareGPT view -----------------------------------------------------------------------------


def test_to_sharegpt_maps_roles():
    conv = Conversation.create(_msgs(), lang="ar", source="src.jsonl")
    assert conv.to_sharegpt() == {
        "id": conv.id,
        "conversations": [
            {"from": "system", "value": "أنت مساعد مفيد."},
            {"from": "human", "value": AR_Q},
            {"from": "gpt", "value": AR_A},
        ],
        "source": "src.jsonl",
        "lang": "ar",
    }


def test_to_sharegpt_keeps_turn_order_of_multi_turn_dialogue():
    msgs = [
        {"role": "user", "content": "1"},
        {"role": "assistant", "content": "2"},
        {"role": "user", "content": "3"},
        {"role": "assistant", "content": "4"},
    ]
    turns = Conversation.create(msgs).to_sharegpt()["conversations"]
    assert [(t["from"], t["value"]) for t in turns] == [("human", "1"), ("gpt", "2"), ("human", "3"), ("gpt", "4")]


# --- ParallelPair ------------------------------------------------------------------------------


def test_pair_ids_are_stable_content_hashes():
    a = ParallelPair.create("Hello", "مرحبا")
    assert a.id == ParallelPair.create("Hello", "مرحبا").id
    assert a.id == content_id(["Hello", "مرحبا"], prefix="p-")
    assert a.id != ParallelPair.create("Hello", "أهلا").id
    assert a.id != ParallelPair.create("مرحبا", "Hello").id  # direction matters
    assert (a.src_lang, a.tgt_lang) == ("en", "ar")


def test_pair_keeps_source_id_and_fields():
    pair = ParallelPair.create("Hi", "مرحبا", id="opus-7", source="opus-100", src_lang="en", tgt_lang="ar")
    assert pair.id == "opus-7"
    assert pair.source == "opus-100"
    with pytest.raises(ValidationError):
        ParallelPair.create("Hi", "مرحبا", extra=1)
