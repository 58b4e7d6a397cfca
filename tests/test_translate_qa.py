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


# --- html_tags and literal_escapes: the paper's two known defects can't reach the corpus ----------

@pytest.mark.parametrize("output, name", [
    ("الطقس لطيف اليوم،<br>لذلك سنمشي إلى السوق القديم.", "html_tags"),
    ("الطقس لطيف اليوم، لذلك سنمشي إلى <b>السوق</b> القديم.", "html_tags"),
    ("الطقس لطيف اليوم،\\nلذلك سنمشي إلى السوق القديم.", "literal_escapes"),
    ("الطقس لطيف اليوم، لذلك سنمشي\\t إلى السوق القديم.", "literal_escapes"),
])  # fmt: skip
def test_an_output_adding_a_tag_or_an_escape_fails_its_filter(output, name):
    assert verdict(output) == name
    assert verdict(output, cfg=QAConfig(**{name: False})) is None  # each can be turned off


def test_what_the_source_has_or_latex_is_no_defect():
    kept = "Line one<br>line two of the weather report today."
    assert verdict("السطر الأول<br>السطر الثاني من نشرة الطقس اليوم.", source=kept) is None
    assert verdict("التدرج \\nabla f والزاوية \\theta و\\text{ثابت} في سوق المدينة القديم.") is None
    assert verdict("الطقس لطيف، والنوع List<T> عام، و a < b > c في السوق القديم.") is None


def test_a_translation_adding_br_is_rejected_and_code_with_div_is_kept(tmp_path, monkeypatch):
    """Through `hala translate` with the fake engine: an answer that gains `<br>` on every try is
    rejected as qa_html_tags; a message whose code holds `<div>` and `"\\n"` comes back intact."""
    from hala.engines import fake as fake_module
    from hala.translate.pipeline import translate
    from tests.test_translate import cfg_for, records, rejected, write_input
    from tests.test_translate_retry import _scripted

    code = ('Wrap it like this:\n\n```html\n<div class="box">\n  <p>hi</p><br>\n</div>\n```\n\n'
            '```python\nprint("a\\nb")\n```\n\nUse `<div>` and <span> here.')
    market = "The market is open today until the evening."
    rows = [{"id": "code", "messages": [{"role": "user", "content": code}]},
            {"id": "br", "messages": [{"role": "user", "content": market}]}]  # fmt: skip

    def adds_br(text, params):
        return fake_module.arabize(text).replace(" ", "<br>", 1) if "market" in text else fake_module.arabize(text)

    _scripted(monkeypatch, adds_br)
    manifest = translate(cfg_for(tmp_path, write_input(tmp_path / "in.jsonl", rows)))
    [kept] = records(tmp_path / "out")
    assert kept["id"] == "code"
    text = kept["messages"][0]["content"]
    assert '```html\n<div class="box">\n  <p>hi</p><br>\n</div>\n```' in text and 'print("a\\nb")' in text
    assert "`<div>`" in text and "<span>" in text
    [bad] = rejected(tmp_path / "out")
    assert bad["kind"] == "qa_html_tags" and "failed html_tags after 2 retries" in bad["reason"]
    assert manifest.counts["rejected_qa_html_tags"] == 1 and manifest.counts["qa_html_tags"] == 1


def test_a_sampled_retry_fixes_an_output_that_added_an_escape(tmp_path, monkeypatch):
    from hala.engines import fake as fake_module
    from hala.translate.pipeline import translate
    from tests.test_translate import cfg_for, records, write_input
    from tests.test_translate_retry import _scripted

    rows = [{"id": "s", "messages": [{"role": "user", "content": "Tell me a story about the sea."}]}]
    greedy_escapes = lambda t, p: fake_module.arabize(t) + ("\\n" if p.seed is None else "")  # noqa: E731
    _scripted(monkeypatch, greedy_escapes)
    manifest = translate(cfg_for(tmp_path, write_input(tmp_path / "in.jsonl", rows)))
    [rec] = records(tmp_path / "out")
    assert rec["messages"][0]["content"] == fake_module.arabize(rows[0]["messages"][0]["content"])
    assert manifest.counts["retry_sampled_fixed"] == 1 and manifest.counts["qa_passed"] == 1
