"""The paper's source filters (`hala.text.source_filters`): Tulu-3's English subsets by its `source`
column, Hermes-3 without code samples; each turned-down row counted and kept with its reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hala.data.records import Conversation, Message
from hala.engines.base import EngineConfig
from hala.text.filters import first_failures
from hala.text.source_filters import source_filters
from hala.translate.config import TranslateConfig
from hala.translate.pipeline import translate


def conv(text: str, source: str = "", answer: str = "Sure, here it is.") -> Conversation:
    return Conversation.create([Message(role="user", content=text), Message(role="assistant", content=answer)],
                               source=source)  # fmt: skip


TULU = [  # (source, user turn, kept?)
    ("ai2-adapt-dev/flan_v2_converted", "Summarize the following article about rainfall in the desert.", True),
    ("allenai/tulu-3-sft-personas-math-grade", "A farmer has 12 cows and buys 5 more. How many cows now?", True),
    ("ai2-adapt-dev/tulu_v3.9_aya_100k", "Write a short poem about the sea and the wind at night.", False),
    ("ai2-adapt-dev/tulu_v3.9_wildchat_100k", "Can you help me write an email to my landlord about the heating?", True),
    ("ai2-adapt-dev/tulu_v3.9_wildchat_100k", "¿Puedes ayudarme a escribir un correo a mi casero sobre la calefacción?", False),
    ("ai2-adapt-dev/tulu_v3.9_wildchat_100k", "请帮我给房东写一封关于暖气问题的电子邮件，谢谢你的帮助", False),
    ("ai2-adapt-dev/oasst1_converted", "Bonjour, pouvez-vous m'expliquer comment fonctionne la photosynthèse ?", False),
    ("ai2-adapt-dev/oasst1_converted", "Hi! Could you explain how photosynthesis works in simple words?", True),
    ("ai2-adapt-dev/some_new_subset_2026", "Explain the rules of chess to a beginner in a few sentences.", False),
]  # fmt: skip


def test_tulu3_english_keeps_the_english_subsets_and_english_rows_of_the_mixed_ones():
    convs = [conv(text, source) for source, text, _ in TULU]
    verdicts = first_failures(source_filters(["tulu3_english"]), convs)
    assert [v is None for v in verdicts] == [kept for _, _, kept in TULU]
    reasons = [v[1] for v in verdicts if v is not None]
    assert all(v[0] == "source_tulu3_english" for v in verdicts if v is not None)
    assert "multilingual Aya subset" in reasons[0] and "es, not English" in reasons[1]
    assert "mostly not in Latin script" in reasons[2] and "fr, not English" in reasons[3]
    assert "not one of Tulu-3's known English subsets" in reasons[4]


HERMES = [  # (user, assistant, kept?)
    ("How do I reverse a list in Python?", "Use slicing:\n```python\nxs[::-1]\n```", False),
    ("Show me a C loop.", "for (int i = 0; i < n; i++) {\n  total += i;\n}\nreturn total;", False),
    ("What does `print()` do?", "It writes its arguments to standard output; `print('hi')` shows hi.", True),
    ("Write a haiku about autumn.", "Red leaves on the path;\nthe wind keeps what it can hold;\nsilence after rain.", True),
]  # fmt: skip


def test_no_code_drops_the_code_samples_and_keeps_prose_that_mentions_code():
    convs = [conv(user, answer=answer) for user, answer, _ in HERMES]
    verdicts = first_failures(source_filters(["no_code"]), convs)
    assert [v is None for v in verdicts] == [kept for _, _, kept in HERMES]
    assert verdicts[0] == ("source_no_code", "message 1 (assistant) holds a fenced code block")
    assert verdicts[1][1].startswith("message 1 (assistant) has 4 lines that look like code")


def test_translate_applies_each_inputs_filters_and_counts_every_reject_with_its_reason(tmp_path):
    tulu = tmp_path / "tulu.jsonl"
    tulu.write_text("".join(json.dumps({"id": f"t{i}", "source": s, "messages": [
        {"role": "user", "content": text}, {"role": "assistant", "content": "Here you go."}]}) + "\n"
        for i, (s, text, _) in enumerate(TULU)), encoding="utf-8")  # fmt: skip
    hermes = tmp_path / "hermes.jsonl"  # ShareGPT, as Hermes-3 is
    hermes.write_text("".join(json.dumps({"id": f"h{i}", "conversations": [
        {"from": "human", "value": user}, {"from": "gpt", "value": answer}]}) + "\n"
        for i, (user, answer, _) in enumerate(HERMES)), encoding="utf-8")  # fmt: skip
    other = tmp_path / "other.jsonl"  # no filters: a fenced block is translated as usual
    other.write_text(json.dumps({"id": "o0", "messages": [{"role": "user", "content": HERMES[0][0]},
                                                          {"role": "assistant", "content": HERMES[0][1]}]}) + "\n")
    cfg = TranslateConfig(inputs=[str(tulu), str(hermes), str(other)], out=str(tmp_path / "out"),
                          engine=EngineConfig(kind="fake", model="m"), progress=False,
                          source_filters={str(tulu): ["tulu3_english"], str(hermes): ["no_code"]})  # fmt: skip
    manifest = translate(cfg)
    c = manifest.counts
    assert c["rejected_source_tulu3_english"] == 5 and c["rejected_source_no_code"] == 2
    kept = [json.loads(line)["meta"]["source_id"] for p in sorted((tmp_path / "out" / "data").glob("*.jsonl"))
            for line in p.read_text(encoding="utf-8").splitlines()]  # fmt: skip
    assert sorted(kept) == ["h2", "h3", "o0", "t0", "t1", "t3", "t7"]
    rejected = [json.loads(line) for p in (tmp_path / "out" / "rejected").glob("*.jsonl")
                for line in p.read_text(encoding="utf-8").splitlines()]  # fmt: skip
    by_kind = {r["reason"]: r for r in rejected}
    assert any(r.startswith("conversation t2: source 'ai2-adapt-dev/tulu_v3.9_aya_100k'") for r in by_kind)
    assert any(r.startswith("conversation h0: message 1 (assistant) holds a fenced code block") for r in by_kind)
    assert all(Path(r["file"]).name in ("tulu.jsonl", "hermes.jsonl") and r["line"] >= 1 for r in rejected)


def test_a_bad_source_filter_name_or_input_is_refused(tmp_path):
    base = dict(inputs=[str(tmp_path / "a.jsonl")], out=str(tmp_path / "o"), engine={"kind": "fake"})
    with pytest.raises(ValueError, match="unknown source filter 'english'; valid: tulu3_english, no_code"):
        TranslateConfig(**base, source_filters={str(tmp_path / "a.jsonl"): ["english"]})
    with pytest.raises(ValueError, match="source_filters names 'b.jsonl', which is not one of inputs"):
        TranslateConfig(**base, source_filters={"b.jsonl": ["no_code"]})
    with pytest.raises(ValueError, match="field_maps names 'c.jsonl'"):
        TranslateConfig(**base, field_maps={"c.jsonl": {"question": "instruction"}})
