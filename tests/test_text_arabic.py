"""Arabic normalisation: two spellings of the same words compare equal, other words do not."""

from __future__ import annotations

import pytest

from hala.text.arabic import normalize_arabic

PLAIN = "ما عاصمه المملكه المغربيه"


@pytest.mark.parametrize(
    "text",
    [
        "ما عاصمة المملكة المغربية؟",
        "مَا عَاصِمَةُ المَمْلَكَةِ المَغْرِبِيَّةِ؟",  # harakat, shadda
        "مـــا عاصـمة المملـــكة المغربيـة ؟",  # tatweel
        "  ما\tعاصمة\n\nالمملكة،   المغربية!!  ",  # whitespace and punctuation
        "«ما» عاصمة: المملكة (المغربية)؛",
        "ما عاص\u200cمة المملكة المغربية",  # a zero-width non-joiner inside a word
        "ما عاصمۃ المملكة المغربية".replace("ۃ", "ة"),
    ],
)
def test_spellings_of_one_question_are_one_string(text):
    assert normalize_arabic(text) == PLAIN


def test_marks_are_removed():
    # tanween, sukun, superscript alef, Quranic small high signs
    assert normalize_arabic("كتابًا مُسْلِمٌ هٰذا الرَّحْمَٰنِ ۖ") == "كتابا مسلم هذا الرحمن"
    assert normalize_arabic("ذَٰلِكَ لَا رَيْبَ ۛ فِيهِ ۛ هُدًى لِّلْمُتَّقِينَ") == "ذلك لا ريب فيه هدي للمتقين"


def test_letter_variants_are_unified():
    assert normalize_arabic("أحمد إسلام آمن ٱلله") == "احمد اسلام امن الله"  # alef variants
    assert normalize_arabic("مستشفى على") == normalize_arabic("مستشفي علي")  # alef maqsura
    assert normalize_arabic("مدرسة") == normalize_arabic("مدرسه") == "مدرسه"  # taa marbuta -> haa
    assert normalize_arabic("مسؤول شؤون") == normalize_arabic("مسئول شئون") == "مسءول شءون"  # hamza seats
    assert normalize_arabic("شيء") == normalize_arabic("شيئ")
    assert normalize_arabic("کتاب فارسی") == "كتاب فارسي"  # Farsi keheh and yeh


def test_compatibility_forms_digits_and_latin():
    assert normalize_arabic("ﻷ ﷲ") == "لا الله"  # presentation forms: a ligature, a word ligature
    assert normalize_arabic("العدد ١٢٣ أو ۴۵") == "العدد 123 او 45"
    assert normalize_arabic("Hello, World! HTTP/2 x²") == "hello world http 2 x2"
    assert normalize_arabic("a_b-c") == "a b c"
    assert normalize_arabic("مرحبا😀عالم") == "مرحبا عالم"  # beyond the BMP: not a word character


def test_different_words_stay_different():
    assert normalize_arabic("قلب") != normalize_arabic("قلت")
    assert normalize_arabic("علم") != normalize_arabic("عالم")
    assert normalize_arabic("") == "" and normalize_arabic(" ؟! ") == ""
