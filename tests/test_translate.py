"""`hala translate` with the fake engine: records, cache, QA, retries, shards, executors, faults."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hala.data.units import RequestsFailed
from hala.engines import EngineConfig, Generation
from hala.engines import fake as fake_module
from hala.translate.config import TranslateConfig
from hala.translate.pipeline import translate

CONVS = [
    {"id": "a", "messages": [
        {"role": "system", "content": "You are a careful assistant."},
        {"role": "user", "content": "Explain `git rebase` in one line. Docs: https://git-scm.com/docs/git-rebase"},
        {"role": "assistant", "content": "It replays commits.\n\n```bash\ngit rebase main\n```\n\n- Energy is $E=mc^2$.\n- Mail me at a@example.com."},
    ]},
    {"id": "b", "messages": [{"role": "user", "content": "Good morning! How are you today?"},
                             {"role": "assistant", "content": "I am well, thank you for asking."}]},
    {"id": "c", "conversations": [{"from": "human", "value": "Good morning! How are you today?"},
                                  {"from": "gpt", "value": "Very well, thanks."}]},
    {"id": "d", "messages": [{"role": "user", "content": "| Name | Age |\n|---|---|\n| Sara | 30 |"},
                             {"role": "assistant", "content": "Sara is thirty years old."}]},
]  # fmt: skip


def write_input(path: Path, rows=CONVS, extra=()) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows) + "".join(extra), encoding="utf-8")
    return path


def cfg_for(tmp_path, data, **kw) -> TranslateConfig:
    base = dict(inputs=[str(data)], out=str(tmp_path / "out"), engine=EngineConfig(kind="fake", model="m"),
                rows_per_unit=2, progress=False)  # fmt: skip
    return TranslateConfig(**{**base, **kw})


def records(out: Path) -> list[dict]:
    return [json.loads(line) for p in sorted((out / "data").glob("*.jsonl")) for line in p.read_text().splitlines()]


def rejected(out: Path) -> list[dict]:
    return [json.loads(line) for p in sorted((out / "rejected").glob("*.jsonl")) for line in p.read_text().splitlines()]


@pytest.fixture
def engine_calls(monkeypatch):
    """Counts the segments the fake engine is asked to translate."""
    seen: list[str] = []
    original = fake_module.FakeEngine.chat

    def counting(self, chats, params):
        seen.extend(c[-1]["content"] for c in chats)
        return original(self, chats, params)

    monkeypatch.setattr(fake_module.FakeEngine, "chat", counting)
    return seen


def test_translates_and_keeps_protected_spans(tmp_path):
    data = write_input(tmp_path / "in.jsonl", extra=["{broken\n"])
    manifest = translate(cfg_for(tmp_path, data))
    out = Path(manifest.outputs[0].path).parents[1]
    by_id = {r["id"]: r for r in records(out)}
    assert sorted(by_id) == ["a", "b", "c", "d"]
    a = by_id["a"]
    assert a["lang"] == "ar" and a["meta"]["source_id"] == "a" and a["meta"]["translated_by"] == "fake:m"
    assert [m["role"] for m in a["messages"]] == ["system", "user", "assistant"]
    for span in ("`git rebase`", "https://git-scm.com/docs/git-rebase", "```bash\ngit rebase main\n```", "$E=mc^2$", "a@example.com"):
        assert span in "".join(m["content"] for m in a["messages"])
    assert a["messages"][2]["content"].count("\n- ") == 2
    assert by_id["d"]["messages"][0]["content"].splitlines()[1] == "|---|---|"
    assert manifest.counts["rejected_invalid_json"] == 1 and manifest.counts["rows_out"] == 4
    pairs = [json.loads(line) for p in (out / "pairs").glob("*.jsonl") for line in p.read_text().splitlines()]
    assert len(pairs) == manifest.counts["segment_pairs"] == manifest.counts["qa_passed"]
    by_pair = {p["id"]: p for p in pairs}
    first = by_pair["a/m1/s0"]
    assert first["meta"] == {"source_id": "a", "message": 1, "segment": 0} and first["tgt_lang"] == "ar"
    assert first["src"].startswith("Explain `git rebase`") and "`git rebase`" in first["tgt"]
    [bad] = rejected(out)
    assert bad["line"] == 5 and bad["file"].endswith("in.jsonl")


@pytest.mark.parametrize("policy, roles, system_text", [
    ("translate", ["system", "user", "assistant"], None),
    ("keep", ["system", "user", "assistant"], "You are a careful assistant."),
    ("drop", ["user", "assistant"], None),
])  # fmt: skip
def test_system_prompt_policy(tmp_path, policy, roles, system_text):
    data = write_input(tmp_path / "in.jsonl", CONVS[:1])
    translate(cfg_for(tmp_path, data, system_prompts=policy))
    [a] = records(tmp_path / "out")
    assert [m["role"] for m in a["messages"]] == roles
    if system_text:
        assert a["messages"][0]["content"] == system_text
    elif policy == "translate":
        assert a["messages"][0]["content"] != "You are a careful assistant."


def test_identical_segments_are_sent_once(tmp_path, engine_calls):
    rows = [{"id": str(i), "messages": [{"role": "user", "content": f"Say hello number {i % 3}."},
                                        {"role": "assistant", "content": "Hello to you."}]} for i in range(30)]  # fmt: skip
    data = write_input(tmp_path / "in.jsonl", rows)
    manifest = translate(cfg_for(tmp_path, data, rows_per_unit=30))
    unique = {m["content"] for r in rows for m in r["messages"]}
    assert len(engine_calls) == len(unique) == manifest.counts["engine_segments"] == 4
    assert manifest.counts["segments"] == 60 and manifest.counts["rows_out"] == 30


def test_cache_survives_runs_and_units(tmp_path, engine_calls):
    data = write_input(tmp_path / "in.jsonl")
    cache = str(tmp_path / "cache.sqlite")
    first = translate(cfg_for(tmp_path, data, cache_path=cache))
    sent = len(engine_calls)
    second = translate(cfg_for(tmp_path, data, cache_path=cache, out=str(tmp_path / "again")))
    assert len(engine_calls) == sent and second.counts.get("engine_segments", 0) == 0
    assert second.counts["cache_hits"] == second.counts["segments_unique"] > 0
    assert records(tmp_path / "again") == records(tmp_path / "out") and first.counts["rows_out"] == 4
    # a different prompt template is a different translation: no false hits
    template = "Into {language}, please:\n\n{text}"
    translate(cfg_for(tmp_path, data, cache_path=cache, out=str(tmp_path / "other"), prompt={"template": template}))
    assert len(engine_calls) > sent


def _scripted(monkeypatch, answer):
    """Make the fake engine answer each segment text with `answer(text) -> (text, finish)`."""

    def chat(self, chats, params):
        out = []
        for chat in chats:
            text = chat[-1]["content"].split("\n\n", 1)[1]
            reply, finish = answer(text)
            out.append(Generation(reply, finish, 1, 1))
        return out

    monkeypatch.setattr(fake_module.FakeEngine, "chat", chat)


def test_qa_rejects_with_reasons_and_keeps_the_conversation(tmp_path, monkeypatch):
    _scripted(monkeypatch, lambda t: (t, "stop") if "morning" in t else (fake_module.arabize(t), "stop"))
    data = write_input(tmp_path / "in.jsonl")
    manifest = translate(cfg_for(tmp_path, data))
    assert sorted(r["id"] for r in records(tmp_path / "out")) == ["a", "d"]
    bad = {json.loads(r["raw"])["id"]: r for r in rejected(tmp_path / "out")}
    assert sorted(bad) == ["b", "c"] and bad["b"]["kind"] == "qa_untranslated_copy" and bad["b"]["line"] == 2
    failure = json.loads(bad["b"]["raw"])["failures"][0]
    assert failure["source"] == "Good morning! How are you today?" and failure["filter"] == "untranslated_copy"
    assert manifest.counts["rejected_qa_untranslated_copy"] == 2


def test_lost_placeholder_is_rejected_when_the_spans_rung_is_off(tmp_path, monkeypatch):
    """(With it on, the text around the spans is translated alone: test_translate_retry.py.)"""
    _scripted(monkeypatch, lambda t: (fake_module.arabize(t.replace("⟦0⟧", "")), "stop"))
    data = write_input(tmp_path / "in.jsonl", CONVS[:1])
    manifest = translate(cfg_for(tmp_path, data, retry={"spans": False}))
    assert manifest.counts["rejected_qa_protected_spans"] == 1 and not records(tmp_path / "out")


def test_truncated_segment_is_resplit_and_retried_once(tmp_path, monkeypatch):
    long = " ".join(f"Sentence number {i} is here." for i in range(12))
    _scripted(monkeypatch, lambda t: (fake_module.arabize(t), "length" if len(t) > 200 else "stop"))
    rows = [{"id": "long", "messages": [{"role": "user", "content": long}]}]
    data = write_input(tmp_path / "in.jsonl", rows)
    manifest = translate(cfg_for(tmp_path, data, max_segment_tokens=80))
    [rec] = records(tmp_path / "out")
    assert rec["messages"][0]["content"] == fake_module.arabize(long)
    assert manifest.counts["retry_resplit"] == manifest.counts["retry_resplit_fixed"] == 1
    assert "retry_sampled" not in manifest.counts


def test_still_truncated_after_retry_is_rejected(tmp_path, monkeypatch):
    _scripted(monkeypatch, lambda t: (fake_module.arabize(t), "length"))
    data = write_input(tmp_path / "in.jsonl", CONVS[1:2])
    manifest = translate(cfg_for(tmp_path, data))
    assert manifest.counts["rejected_qa_truncated"] == 1


def test_engine_errors_are_retried_then_rejected(tmp_path, monkeypatch):
    calls = {"n": 0}
    original = fake_module.FakeEngine.chat

    def flaky(self, chats, params):
        calls["n"] += 1
        if calls["n"] <= 2:
            raise TimeoutError("server timed out")
        return original(self, chats, params)

    monkeypatch.setattr(fake_module.FakeEngine, "chat", flaky)
    data = write_input(tmp_path / "in.jsonl", CONVS[1:2])
    manifest = translate(cfg_for(tmp_path, data, engine_retries=2, engine_backoff_s=0.0))
    assert manifest.counts["rows_out"] == 1 and manifest.counts["engine_errors"] == 2

    monkeypatch.setattr(fake_module.FakeEngine, "chat", lambda *a: (_ for _ in ()).throw(TimeoutError("down")))
    with pytest.raises(RequestsFailed, match="rerun the same command"):  # was: a manifest and rc 0
        translate(cfg_for(tmp_path, data, out=str(tmp_path / "o2"), engine_retries=1, engine_backoff_s=0.0))
    [bad] = rejected(tmp_path / "o2")
    assert bad["kind"] == "qa_engine_error" and "TimeoutError: down" in bad["raw"]
    assert json.loads(bad["raw"])["failures"][0]["tries"] == [{"try": "greedy", "filter": "engine_error"}]
    assert not records(tmp_path / "o2") and not (tmp_path / "o2" / "manifest.json").exists()


def test_target_language_is_a_setting(tmp_path, monkeypatch, engine_calls):
    data = write_input(tmp_path / "in.jsonl", CONVS[1:2])
    manifest = translate(cfg_for(tmp_path, data, target_lang="fr", qa={"min_target_script": 0.0, "language_id": False}))
    assert engine_calls[0].startswith("Translate everything that follows into French:\n\n")
    assert records(tmp_path / "out")[0]["lang"] == "fr" and manifest.counts["rows_out"] == 1


def test_sharegpt_output(tmp_path):
    data = write_input(tmp_path / "in.jsonl", CONVS[1:2])
    translate(cfg_for(tmp_path, data, output_schema="sharegpt"))
    [rec] = records(tmp_path / "out")
    assert [t["from"] for t in rec["conversations"]] == ["human", "gpt"] and rec["meta"]["source_id"] == "b"


def test_parquet_output_round_trips(tmp_path):
    from hala.data.readers import read_conversations

    data = write_input(tmp_path / "in.jsonl")
    translate(cfg_for(tmp_path, data, output_format="parquet"))
    convs = [c for p in sorted((tmp_path / "out" / "data").glob("*.parquet")) for c in read_conversations(p)]
    assert len(convs) == 4 and convs[0].meta["source_id"] == "a"


def test_field_maps_and_limit(tmp_path):
    """OpenOrca-shaped rows (system_prompt/question/response) mapped onto hala's columns; first N only."""
    rows = [{"id": f"o{i}", "system_prompt": "You are an AI assistant.", "question": f"What is {i} plus one?",
             "response": f"It is {i + 1}."} for i in range(5)]  # fmt: skip
    data = write_input(tmp_path / "orca.jsonl", rows)
    mapping = {"system_prompt": "system", "question": "instruction", "response": "output"}
    manifest = translate(cfg_for(tmp_path, data, field_maps={str(data): mapping}, limit=3))
    recs = records(tmp_path / "out")
    assert [r["id"] for r in recs] == ["o0", "o1", "o2"] and manifest.counts["rows_out"] == 3
    assert [m["role"] for m in recs[0]["messages"]] == ["system", "user", "assistant"]


def test_every_row_carries_its_lineage_and_a_model_changed_at_its_path_is_asked_again(tmp_path):
    data = write_input(tmp_path / "in.jsonl")
    model = tmp_path / "translator"  # a local model folder: its content, not its path, is what translated
    model.mkdir()
    (model / "model.safetensors").write_bytes(b"weights v1")
    cache = str(tmp_path / "shared-cache" / "segments.sqlite")
    first = translate(cfg_for(tmp_path, data, engine=EngineConfig(kind="fake", model=str(model)), cache_path=cache))
    rows = {r["id"]: r for r in records(tmp_path / "out")}
    lineage = rows["b"]["meta"]["lineage"]
    assert lineage["dataset"] == str(data) and lineage["row"] == 2 and lineage["id"] == "b"
    assert lineage["translator"] == f"fake:{model}" and len(lineage["translator_sha256"]) == 64
    assert len(lineage["prompt_sha256"]) == 64 and lineage["qa"] == {"segments": 2, "retried": []}
    assert {r["meta"]["lineage"]["translator_sha256"] for r in rows.values()} == {lineage["translator_sha256"]}
    assert first.counts["engine_segments"] > 0

    (model / "model.safetensors").write_bytes(b"weights v2")  # retrained at the same path
    again = translate(cfg_for(tmp_path, data, out=str(tmp_path / "again"), cache_path=cache,
                              engine=EngineConfig(kind="fake", model=str(model))))  # fmt: skip
    assert again.counts["engine_segments"] == first.counts["engine_segments"]  # no stale answer from the cache
    changed = records(tmp_path / "again")[0]["meta"]["lineage"]["translator_sha256"]
    assert changed != lineage["translator_sha256"]
    same = translate(cfg_for(tmp_path, data, out=str(tmp_path / "same"), cache_path=cache,
                             engine=EngineConfig(kind="fake", model=str(model))))  # fmt: skip
    assert same.counts.get("engine_segments", 0) == 0  # the same content: every segment a cache hit


def test_each_rows_lineage_names_the_audit_checks_its_translation_fails(tmp_path):
    rows = [*CONVS[1:3], {"id": "twice", "messages": [{"role": "user", "content": "Hello there, my friend."},
                                                      {"role": "user", "content": "Are you there?"},
                                                      {"role": "assistant", "content": "Yes, I am here."}]}]  # fmt: skip
    manifest = translate(cfg_for(tmp_path, write_input(tmp_path / "in.jsonl", rows)))
    audit = {r["id"]: r["meta"]["lineage"]["audit"] for r in records(tmp_path / "out")}
    assert audit == {"b": [], "c": [], "twice": ["roles"]}  # two user turns in a row: kept, and flagged
    assert manifest.counts["audit_roles"] == 1
    off = translate(cfg_for(tmp_path, write_input(tmp_path / "in.jsonl", rows), out=str(tmp_path / "off"), audit=False))
    assert "audit" not in records(tmp_path / "off")[0]["meta"]["lineage"] and "audit_roles" not in off.counts
