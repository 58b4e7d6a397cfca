"""One filter shape (`hala.text.filters`): translate's QA, the pair filters and the judge's script gate
each give, for every item of a batch, None (passes) or `(name, reason)`; the judge's verdicts take the
same shape, and every stage keeps them in the reject log the same way."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from hala.config import ConfigError, validate
from hala.data.records import ParallelPair
from hala.data.rejects import RejectLog
from hala.judge.scores import Judged, script_gate
from hala.judge.stage import JudgeConfig
from hala.pairs.filters import Deduper, FilterConfig, check_pairs, content_filters
from hala.text.filters import Filter, Rule, first_failures
from hala.translate import qa
from hala.translate.config import TranslateConfig

SRC = "The weather is pleasant today, so we will walk to the old market."
GOOD = "الطقس لطيف اليوم، لذلك سنمشي إلى السوق القديم."
EN = "The weather is nice today, so we will walk to the market."


def one_shape(verdicts: list, n: int) -> None:
    assert len(verdicts) == n
    for verdict in verdicts:
        assert verdict is None or (type(verdict) is tuple and len(verdict) == 2 and all(verdict)), verdict


def test_qa_the_pair_filters_and_the_judge_gate_are_filters_of_one_shape():
    qa_filters = qa.filters("en", "ar", qa.QAConfig())
    pair_filters = content_filters(FilterConfig())
    gate = script_gate(0.5)
    for f in [*qa_filters, *pair_filters, gate, Deduper()]:
        assert isinstance(f, Filter) and f.name
    assert [f.name for f in qa_filters] == list(qa.FILTERS)
    translations = [qa.Translation(SRC, GOOD), qa.Translation(SRC, SRC), qa.Translation(SRC, GOOD, "length")]
    pairs = [ParallelPair.create(SRC, GOOD), ParallelPair.create(SRC, EN)]
    for filters, items in ((qa_filters, translations), (pair_filters, pairs), ([gate], pairs)):
        for f in filters:
            one_shape(f.verdicts(items), len(items))
    assert qa.verdicts(translations, "en", "ar", qa.QAConfig()) == [
        None, ("untranslated_copy", "the output is the source again"), ("truncated", "the model stopped at max_tokens"),
    ]  # fmt: skip
    assert check_pairs(pairs, FilterConfig()) == [None, ("language", "ar side looks like en")]
    assert gate.verdicts(pairs) == [
        None, ("script_gate", "0% of the ar side's letters are in its script (the gate needs 50%)"),
    ]  # fmt: skip


@pytest.mark.parametrize("output, finish, verdict", [
    ("go market في", "stop", ("target_script", "20% of letters in Arabic script (needs 60%)")),
    ("   ", "stop", ("empty_output", "nothing came back")),
    ("الطقس", "stop", ("length_ratio", "output/source length 0.08 outside [0.3, 3]")),
    ("الطقس لطيف " + "ا" * 40, "stop", ("repetition", "'ا' 40 times in a row (max_char_run 30)")),
    (" ".join(["السوق القديم جميل جدا"] * 5), "stop", ("repetition", "a word 4-gram repeated 5 times (max_ngram_repeats 4)")),
    # the demo's loop (stop 15): three turns of a 5-word cycle, under the 4-gram count
    ("أفضل " + " ".join(["أن يسبق الصحاء لا يسبق"] * 3), "stop",
     ("repetition", "a word 4-gram repeated 3 times, 6 distinct of 13 4-grams (0.46, min_distinct_share 0.6)")),
])  # fmt: skip
def test_qa_names_the_filter_as_it_always_has_and_now_says_why(output, finish, verdict):
    [found] = qa.verdicts([qa.Translation(SRC, output, finish)], "en", "ar", qa.QAConfig())
    assert found == verdict
    assert qa.check(SRC, output, finish, "en", "ar", qa.QAConfig()) == verdict[0]  # what the counts use


def test_the_short_loop_rule_spares_every_text_of_the_bundled_data():
    """Seed and test pairs, gold pairs, conversations and the OALL mini items, both languages: over
    8,000 texts, none of them a loop, so none may be called one."""
    from importlib.resources import files

    from hala.config import strings
    from hala.text.defects import loop

    root = Path(str(files("hala.resources")))
    texts = [text for path in sorted(root.rglob("*.jsonl"))
             for line in path.read_text(encoding="utf-8").splitlines() for text in strings(json.loads(line))]  # fmt: skip
    long = [t for t in texts if len(t.split()) >= 11]
    assert len(texts) > 8000 and len(long) > 500
    assert [t for t in texts if loop(t, 30, 4)] == []


def test_qa_reasons_for_placeholders_and_language():
    [spans] = qa.verdicts([qa.Translation("Use ⟦0⟧ and ⟦1⟧ now.", "استخدم ⟦0⟧ الآن.")], "en", "ar", qa.QAConfig())
    assert spans == ("protected_spans", "placeholders differ: the source has ⟦0⟧ ⟦1⟧, the output ⟦0⟧")
    english = qa.Translation(SRC, SRC.replace("today", "this day"))
    assert qa.verdicts([english], "en", "fr", qa.QAConfig()) == [("target_language", "lingua says en, not fr")]


def test_first_failures_keeps_each_items_first_and_spares_later_filters_what_failed():
    seen = []

    class Costly:
        name = "costly"

        def verdicts(self, items):
            seen.extend(items)
            return [None] * len(items)

    short = Rule("short", lambda text: "under 3 characters" if len(text) < 3 else None)
    has_x = Rule("has_x", lambda text: "holds an x" if "x" in text else None)
    assert first_failures([short, Costly(), has_x], ["ab", "abc", "xyz", "x"]) == [
        ("short", "under 3 characters"), None, ("has_x", "holds an x"), ("short", "under 3 characters"),
    ]  # fmt: skip
    assert seen == ["abc", "xyz"]


def test_dedup_is_a_filter_of_the_same_shape_run_last():
    first = ParallelPair.create("Good morning, my friend!", "صباح الخير يا صديقي!")
    again = ParallelPair.create("good morning my friend", "صباح الخير يا صديقي")
    english = ParallelPair.create("Good morning, my friend!", "Good morning, my friend!")
    verdicts = check_pairs([first, english, first, again], FilterConfig(), Deduper())
    assert [v and v[0] for v in verdicts] == [None, "language", "duplicate", "near_duplicate"]


def test_the_judges_verdicts_take_the_filter_shape():
    assert Judged(0.9, "accept").rejection(0.5) is None
    assert Judged(0.2, "reject").rejection(0.5) == ("judge_reject", "judge score 0.2000 < threshold 0.5000")
    assert Judged(0.0, "reject", answer="REJECT, it is cut off").rejection(0.5) == (
        "judge_reject", "judge answered 'REJECT, it is cut off'",
    )  # fmt: skip
    failed = Judged(None, "engine_error", error="HTTP 500")
    assert failed.rejection(0.5) == ("judge_engine_error", "judge failed 'HTTP 500'")
    gated = Judged(0.0, "reject", gate="0% of the ar side's letters are in its script (the gate needs 50%)")
    assert gated.rejection(0.5) == ("judge_reject", "script gate: 0% of the ar side's letters are in its script "
                                    "(the gate needs 50%)")  # fmt: skip


def test_a_verdict_is_kept_like_a_bad_row_but_neither_warns_nor_stops_a_strict_run(caplog):
    rejects = RejectLog(strict=True)
    with caplog.at_level(logging.WARNING):
        rejects.verdict("in.jsonl", 3, "language", "pair p: ar side looks like en", json.dumps({"id": "p"}))
    assert not caplog.records
    assert rejects.rows() == [{"file": "in.jsonl", "line": 3, "kind": "language",
                               "reason": "pair p: ar side looks like en", "raw": '{"id": "p"}'}]  # fmt: skip
    assert rejects.counts() == {"language": 1}
    assert [r.line for r in rejects.take()] == [3] and len(rejects) == 0 and rejects.take() == []


@pytest.mark.parametrize("config, settings", [
    (TranslateConfig, {"prompt": {"template": "Into {language}: {txt}"}}),
    (TranslateConfig, {"prompt": {"by_direction": {"en-fr": "En {language} :"}}}),
    (JudgeConfig, {"translate_prompt": "Into {language}: {txt}"}),
])  # fmt: skip
def test_every_translator_prompt_is_checked_when_its_config_is_read(config, settings):
    with pytest.raises(ConfigError, match=r"translator prompt template must use \{text\}"):
        validate(config, {"inputs": ["x"], "out": "y", **settings})
