"""The retry ladder of `hala translate`: a segment that fails QA is re-split, then sampled, before
its conversation is rejected; every try is counted, cached and recorded."""

from __future__ import annotations

import json

import pytest

from hala.data.units import RequestsFailed
from hala.engines import Generation
from hala.engines import fake as fake_module
from hala.translate.pipeline import translate
from hala.translate.segment import PLACEHOLDER_RE
from tests.test_translate import cfg_for, records, rejected, write_input

MORNING = [{"id": "b", "messages": [{"role": "user", "content": "Good morning! How are you today?"},
                                    {"role": "assistant", "content": "I am well, thank you for asking."}]}]  # fmt: skip
STORY = [{"id": "s", "messages": [{"role": "user", "content": "Tell me a story about the sea."}]}]


def _scripted(monkeypatch, answer, finish=lambda text: "stop") -> list[tuple[str, float, int | None]]:
    """The fake engine answers each segment text with `answer(text, params)`, finishing with
    `finish(text)`; returns the (text, temperature, seed) of every request the engine got."""
    asked = []

    def chat(self, chats, params):
        texts = [chat[-1]["content"].split("\n\n", 1)[1] for chat in chats]
        asked.extend((t, params.temperature, params.seed) for t in texts)
        return [Generation(answer(t, params), finish(t), 1, 1) for t in texts]

    monkeypatch.setattr(fake_module.FakeEngine, "chat", chat)
    return asked


def copies(rules: dict[str, int | None]):
    """An answer that translates, except texts holding a word of `rules`: those come back
    untranslated, but at the seed the rule names (None: never)."""

    def answer(text, params):
        fails = any(word in text and (seed is None or params.seed != seed) for word, seed in rules.items())
        return text if fails else fake_module.arabize(text)

    return answer


def test_a_sampled_retry_fixes_a_segment_that_fails_greedy(tmp_path, monkeypatch):
    asked = _scripted(monkeypatch, copies({"sea": 2}))
    manifest = translate(cfg_for(tmp_path, write_input(tmp_path / "in.jsonl", STORY)))
    [rec] = records(tmp_path / "out")
    assert rec["messages"][0]["content"] == fake_module.arabize(STORY[0]["messages"][0]["content"])
    assert [(temperature, seed) for _, temperature, seed in asked] == [(0.0, None), (0.7, 1), (0.7, 2)]
    counts = manifest.counts
    assert counts["retry_sampled"] == 2 and counts["retry_sampled_fixed"] == 1 and "retry_resplit" not in counts
    assert counts["qa_passed"] == 1 and "qa_untranslated_copy" not in counts  # final verdicts


def test_a_segment_of_several_sentences_is_resplit_at_its_sentences(tmp_path, monkeypatch):
    whole = MORNING[0]["messages"][0]["content"]
    asked = _scripted(monkeypatch, lambda t, p: t if t == whole else fake_module.arabize(t))
    manifest = translate(cfg_for(tmp_path, write_input(tmp_path / "in.jsonl", MORNING)))
    [rec] = records(tmp_path / "out")
    assert rec["messages"][0]["content"] == fake_module.arabize(whole)
    assert [t for t, _, _ in asked][-2:] == ["Good morning!", "How are you today?"]
    counts = manifest.counts
    assert counts["retry_resplit"] == counts["retry_resplit_fixed"] == 1 and counts["retry_resplit_pieces"] == 2
    assert "retry_sampled" not in counts and counts["qa_passed"] == 2


def test_a_segment_failing_every_try_rejects_its_conversation_with_its_tries(tmp_path, monkeypatch):
    _scripted(monkeypatch, copies({"morning": None}))
    manifest = translate(cfg_for(tmp_path, write_input(tmp_path / "in.jsonl", MORNING)))
    assert not records(tmp_path / "out")
    [bad] = rejected(tmp_path / "out")
    assert bad["kind"] == "qa_untranslated_copy" and bad["reason"].endswith("failed untranslated_copy after 3 retries")
    [failure] = json.loads(bad["raw"])["failures"]
    assert failure["source"] == "Good morning! How are you today?" and failure["output"] == "Good morning!"
    assert [t["try"] for t in failure["tries"]] == ["greedy", "resplit", "sampled", "sampled"]
    assert {t["filter"] for t in failure["tries"]} == {"untranslated_copy"}
    counts = manifest.counts
    assert counts["retry_resplit"] == 1 and counts["retry_sampled"] == 2  # only the failing piece is sampled
    assert "retry_resplit_fixed" not in counts and "retry_sampled_fixed" not in counts
    assert counts["qa_untranslated_copy"] == counts["qa_passed"] == counts["rejected_qa_untranslated_copy"] == 1


def test_a_rerun_gives_the_same_output_from_the_cache(tmp_path, monkeypatch):
    data = write_input(tmp_path / "in.jsonl", STORY + MORNING)
    cache = str(tmp_path / "cache.sqlite")
    _scripted(monkeypatch, copies({"sea": 2, "morning": None}))
    first = translate(cfg_for(tmp_path, data, cache_path=cache, rows_per_unit=1))
    # the engine now answers every request differently: a rerun must not ask it anything
    asked = _scripted(monkeypatch, lambda t, p: "")
    again = translate(cfg_for(tmp_path, data, cache_path=cache, rows_per_unit=1, out=str(tmp_path / "again")))
    assert not asked and again.counts.get("engine_segments", 0) == 0
    assert records(tmp_path / "again") == records(tmp_path / "out") and len(records(tmp_path / "out")) == 1
    assert [r["raw"] for r in rejected(tmp_path / "again")] == [r["raw"] for r in rejected(tmp_path / "out")]
    retries = {k: v for k, v in first.counts.items() if k.startswith(("retry_", "qa_"))}
    assert retries == {k: v for k, v in again.counts.items() if k.startswith(("retry_", "qa_"))}


def test_a_run_killed_mid_ladder_resumes_to_the_same_output(tmp_path, monkeypatch):
    data = write_input(tmp_path / "in.jsonl", STORY + MORNING)
    answer = copies({"sea": 2, "morning": None})
    _scripted(monkeypatch, answer)
    translate(cfg_for(tmp_path, data, rows_per_unit=1, out=str(tmp_path / "reference")))

    def killed_at_the_last_attempt(text, params):
        if "morning" in text and params.seed == 2:
            raise KeyboardInterrupt  # not an engine failure: nothing catches it, the run stops
        return answer(text, params)

    _scripted(monkeypatch, killed_at_the_last_attempt)
    # one unit at a time: with units in flight the stop may come before the first unit has landed
    # (the rerun then redoes it from the cache), so only the serial run can promise it landed
    with pytest.raises(KeyboardInterrupt):
        translate(cfg_for(tmp_path, data, rows_per_unit=1, units_in_flight=1))
    assert len(records(tmp_path / "out")) == 1  # the first unit landed
    asked = _scripted(monkeypatch, answer)
    translate(cfg_for(tmp_path, data, rows_per_unit=1))
    assert asked == [("Good morning!", 0.7, 2)]  # the greedy, re-split and first sampled answers were cached
    assert records(tmp_path / "out") == records(tmp_path / "reference")
    assert [r["raw"] for r in rejected(tmp_path / "out")] == [r["raw"] for r in rejected(tmp_path / "reference")]


def test_a_failed_retry_request_is_redone_by_a_rerun_not_by_the_ladder(tmp_path, monkeypatch):
    data = write_input(tmp_path / "in.jsonl", STORY)
    answer = copies({"sea": 2})

    def down_when_sampled(text, params):
        if params.temperature > 0:
            raise TimeoutError("server timed out")
        return answer(text, params)

    _scripted(monkeypatch, down_when_sampled)
    cfg = cfg_for(tmp_path, data, engine_retries=0, engine_backoff_s=0.0)
    with pytest.raises(RequestsFailed):
        translate(cfg)
    [bad] = rejected(tmp_path / "out")
    assert bad["kind"] == "qa_engine_error"
    tries = json.loads(bad["raw"])["failures"][0]["tries"]
    assert tries == [{"try": "greedy", "filter": "untranslated_copy"}, {"try": "sampled", "filter": "engine_error"}]
    asked = _scripted(monkeypatch, answer)
    manifest = translate(cfg)
    assert [seed for _, _, seed in asked] == [1, 2] and manifest.counts["rows_out"] == 1


def test_with_the_ladder_off_a_failing_segment_rejects_at_once(tmp_path, monkeypatch):
    off = {"resplit": False, "sampled": 0, "spans": False}
    asked = _scripted(monkeypatch, copies({"morning": None}))
    manifest = translate(cfg_for(tmp_path, write_input(tmp_path / "in.jsonl", MORNING), retry=off))
    [bad] = rejected(tmp_path / "out")
    assert bad["reason"].endswith("failed untranslated_copy") and len(asked) == 2
    assert json.loads(bad["raw"])["failures"][0]["tries"] == [{"try": "greedy", "filter": "untranslated_copy"}]
    assert not [k for k in manifest.counts if k.startswith("retry_")]

    # truncated too: with the ladder off it is not re-split either
    long = " ".join(f"Sentence number {i} is here." for i in range(12))
    _scripted(monkeypatch, lambda t, p: fake_module.arabize(t), finish=lambda t: "length" if len(t) > 200 else "stop")
    data = write_input(tmp_path / "long.jsonl", [{"id": "long", "messages": [{"role": "user", "content": long}]}])
    manifest = translate(cfg_for(tmp_path, data, out=str(tmp_path / "long"), max_segment_tokens=80, retry=off))
    assert manifest.counts["rejected_qa_truncated"] == 1 and "retry_resplit" not in manifest.counts


def test_a_segment_losing_its_code_spans_is_cut_at_them_and_keeps_them(tmp_path, monkeypatch):
    """A translator that never saw a placeholder drops them; the last rung keeps the spans literal."""
    code = [{"id": "c", "messages": [{"role": "user", "content": "Call `my_list.reverse()` to reverse the list in place."}]}]
    drops = lambda t, p: fake_module.arabize(PLACEHOLDER_RE.sub("", t))  # noqa: E731
    asked = _scripted(monkeypatch, drops)
    manifest = translate(cfg_for(tmp_path, write_input(tmp_path / "in.jsonl", code)))
    [rec] = records(tmp_path / "out")
    assert rec["messages"][0]["content"] == (
        fake_module.arabize("Call") + " `my_list.reverse()` " + fake_module.arabize("to reverse the list in place.")
    )
    assert [t for t, _, _ in asked[-2:]] == ["Call", "to reverse the list in place."]  # no placeholder sent
    counts = manifest.counts
    assert counts["retry_spans"] == 1 and counts["retry_spans_fixed"] == 1 and counts["retry_spans_pieces"] == 2

    off = translate(cfg_for(tmp_path, write_input(tmp_path / "in2.jsonl", code), out=str(tmp_path / "off"),
                            retry={"spans": False}))  # fmt: skip
    assert off.counts["rejected_qa_protected_spans"] == 1
