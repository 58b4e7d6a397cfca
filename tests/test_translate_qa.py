"""QA filters: each named filter catches what it names, and passes good translations."""

from __future__ import annotations

import json
from importlib import resources

import pytest

from hala.engines.fake import arabize
from hala.text.language_id import detected_languages
from hala.text.scripts import by_script
from hala.translate.qa import QAConfig, check, check_many

CFG = QAConfig()
SRC = "The weather is pleasant today, so we will walk to the old market."
GOOD = "الطقس لطيف اليوم، لذلك سنمشي إلى السوق القديم."


def verdict(output, source=SRC, finish="stop", cfg=CFG, target="ar"):
    return check(source, output, finish, "en", target, cfg)


def test_a_good_translation_passes():
    assert verdict(GOOD) is None


@pytest.mark.parametrize("output, name", [
    ("   ", "empty_output"),
    (SRC, "untranslated_copy"),
    ("The weather is nice today so we walk to the market again.", "target_script"),
    ("الطقس", "length_ratio"),
    (" ".join([GOOD] * 5), "length_ratio"),
    ("السوق " * 3 + "القديم القديم القديم القديم القديم القديم القديم القديم القديم القديم القديم", "repetition"),
    ("الطقس لطيف " + "ا" * 40, "repetition"),
])  # fmt: skip
def test_each_filter_catches_its_case(output, name):
    assert verdict(output) == name


def test_truncation_and_placeholders():
    assert verdict(GOOD, finish="length") == "truncated"
    assert check("Use ⟦0⟧ and ⟦1⟧ now please.", "استخدم ⟦0⟧ الآن من فضلك.", "stop", "en", "ar", CFG) == "protected_spans"
    assert check("Use ⟦0⟧ and ⟦1⟧ now please.", "استخدم ⟦1⟧ و ⟦0⟧ الآن.", "stop", "en", "ar", CFG) is None


def test_language_id_with_lingua_for_same_script_languages():
    french = "Le temps est agréable aujourd'hui, donc nous irons au vieux marché."
    spanish = "El tiempo es agradable hoy, así que caminaremos al viejo mercado."
    assert check(SRC, french, "stop", "en", "fr", CFG) is None
    assert check(SRC, SRC.replace("today", "this day"), "stop", "en", "fr", CFG) == "target_language"
    assert check(SRC, spanish, "stop", "en", "fr", QAConfig(language_id=False)) is None


def test_check_many_equals_check_one_by_one():
    outputs = [GOOD, SRC, "", "الطقس", arabize(SRC), "Le temps est agréable aujourd'hui, donc nous irons."]
    sources = [SRC] * len(outputs)
    finishes = ["stop"] * len(outputs)
    for target in ("ar", "fr"):
        batch = check_many(sources, outputs, finishes, "en", target, CFG)
        assert batch == [check(s, o, f, "en", target, CFG) for s, o, f in zip(sources, outputs, finishes)]


def test_script_shortcut_agrees_with_lingua():
    """The fast path answers only where lingua's own script rule decides; it must agree with lingua."""
    seed = resources.files("hala.resources").joinpath("samples/seed_pairs.jsonl").read_text(encoding="utf-8")
    rows = [json.loads(line) for line in seed.splitlines()]
    texts = [r["ar"] for r in rows[:150]] + [r["en"] for r in rows[:150]] + [arabize(r["en"]) for r in rows[:50]]
    decided = [(t, by_script(t, "en", "ar")) for t in texts]
    decided = [(t, lang) for t, lang in decided if lang]
    assert len(decided) > 300
    assert [lang for _, lang in decided] == detected_languages([t for t, _ in decided], ("en", "ar"))
    assert by_script("hello مرحبا", "en", "ar") is None  # mixed scripts go to lingua
    assert by_script("bonjour", "en", "fr") is None  # shared script: only lingua can tell
