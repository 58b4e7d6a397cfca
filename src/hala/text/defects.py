r"""Defects of a model's text that translate's QA and the corpus audit both look for, defined once.

The paper's corpus shipped two of them, raw `<br>` tags and literal `\n` escapes, and a model that
loops makes a third. Translate's QA turns down a segment whose translation adds one
(`hala.translate.qa`); the audit flags a conversation that holds one (`hala.audit`). Each is looked
for in prose only: `prose` first blanks fenced code, display math, LaTeX environments, inline code
and math, URLs and e-mails (the spans translate protects, `hala.text.patterns`), since `<div>` in
HTML code, `"\n"` in a Python string and `\nabla` in LaTeX are right where they are.

- an HTML tag (`html_tags`): `<br>`, `</div>`, `<p class="x">`, `<br/>`, in any case, of an element
  HTML has (`HTML_ELEMENTS`). `<name>`, `a < b > c` and a single capital (`<T>`, `List<B>`: a
  type parameter) are not tags;
- a literal escape (`literal_escapes`): a backslash and `n`, `t` or `r`, two characters, unless the
  letters after the backslash spell a LaTeX command (`LATEX_NTR`, matched whole): `\n`, `\nThe`,
  `\nthe` and `سطر\nسطر` are escapes; `\nabla`, `\theta`, `\text{}`, `\newline` and `\right)` are
  not. A Windows path in prose (`C:\temp`) counts as one: it belongs in code;
- a loop (`loop`): one character more than `max_char_run` times in a row; one word 4-gram more
  than `max_ngram_repeats` times; or a short loop, a text of at least `LOOP_MIN_GRAMS` word 4-grams
  in which one 4-gram comes back 3 times and fewer than `min_distinct_share` of its 4-grams are
  distinct. A 64-token answer that loops three times stays under the first count but is mostly
  repeats (`a b c d e a b c d e a b c d e`: 5 distinct of 12), while prose, lists and tables of the
  bundled data keep over 0.85 of their 4-grams distinct (tests/test_text_filters.py reads them all).
"""

from __future__ import annotations

import re
from collections import Counter
from functools import lru_cache

from hala.text.patterns import CODE_BLOCK, DISPLAY_MATH, EMAIL, INLINE_CODE, INLINE_MATH, URL_SPAN

LATEX_ENV = r"\\begin\{(?P<env>[A-Za-z]+\*?)\}.*?\\end\{(?P=env)\}"
_BLOCKS_RE = re.compile(f"{CODE_BLOCK}|{DISPLAY_MATH}|{LATEX_ENV}", re.DOTALL | re.MULTILINE)
_INLINE_RE = re.compile("|".join([INLINE_CODE, INLINE_MATH, URL_SPAN, EMAIL]))

HTML_ELEMENTS = frozenset(
    "a abbr address area article aside audio b base bdi bdo big blockquote body br button canvas caption "
    "center cite code col colgroup dd del details dfn dialog div dl dt em embed fieldset figcaption figure "
    "font footer form h1 h2 h3 h4 h5 h6 head header hr html i iframe img input ins kbd label legend li link "
    "main mark meta meter nav nobr noscript object ol optgroup option output p param picture pre progress q "
    "s samp script section select small source span strike strong style sub summary sup svg table tbody td "
    "template textarea tfoot th thead time title tr track tt u ul var video wbr".split()
)
_TAG_RE = re.compile(r"</?(?P<name>[A-Za-z][A-Za-z0-9-]*)(?:\s[^<>]*)?/?>")

# LaTeX commands that begin with n, t or r: after a backslash, these are not the escapes \n \t \r
LATEX_NTR = frozenset(
    "nabla natural ne nearrow neg negthinspace neq newcommand newenvironment newline newpage newtheorem "
    "nexists ngeq ngeqslant ngtr ni nleftarrow nleftrightarrow nleq nleqslant nless nmid nobreak noindent "
    "nolimits nonumber normalfont normalsize not notag notin nparallel nprec nrightarrow nsim nsubseteq "
    "nsucc nsupseteq ntriangleleft ntriangleright nu nvdash nwarrow nLeftarrow nLeftrightarrow nRightarrow "
    "tabular tag tan tanh tau tbinom text textasciitilde textbackslash textbf textcolor textit textnormal "
    "textrm textsc textsf textsl textstyle textsubscript textsuperscript texttt textup textwidth tfrac "
    "thanks therefore theta thetasym thickapprox thicksim thinspace thispagestyle tilde times tiny title "
    "to today top triangle triangledown triangleleft trianglelefteq triangleq triangleright "
    "trianglerighteq tt twoheadleftarrow twoheadrightarrow "
    "raggedleft raggedright raisebox rangle rbrace rbrack rceil ref renewcommand rfloor rho right "
    "rightarrow rightharpoondown rightharpoonup rightleftarrows rightleftharpoons rightrightarrows "
    "rightsquigarrow rightthreetimes risingdotseq rm rmfamily rtimes rule rVert rvert".split()
)
_ESCAPE_RE = re.compile(r"(?P<escape>\\[ntr])(?P<rest>[A-Za-z]*)")


@lru_cache(maxsize=64)  # the audit's checks each read the prose of the same turns
def prose(text: str) -> str:
    """`text` with what is not prose (code, math, URLs, e-mails) blanked: each span becomes a space."""
    return _INLINE_RE.sub(" ", _BLOCKS_RE.sub(" ", text))


def html_tags(text: str) -> list[re.Match]:
    """The HTML tags in the prose of `text` (matches in `prose(text)`)."""
    if "<" not in text:  # most text: no tag, and prose() only blanks
        return []
    found = []
    for m in _TAG_RE.finditer(prose(text)):
        name = m.group("name")
        if name.lower() in HTML_ELEMENTS and not (len(name) == 1 and name.isupper()):
            found.append(m)
    return found


def literal_escapes(text: str) -> list[re.Match]:
    """The literal `\n`, `\t`, `\r` in the prose of `text` (matches in `prose(text)`; the escape
    itself is `m.group("escape")`)."""
    if "\\" not in text:
        return []
    found = []
    for m in _ESCAPE_RE.finditer(prose(text)):
        if not (m.group("rest") and m.group("escape")[1] + m.group("rest") in LATEX_NTR):
            found.append(m)
    return found


LOOP_MIN_GRAMS = 8  # the short-loop rule reads texts of 11 words or more
MIN_DISTINCT_SHARE = 0.6  # the default of QAConfig and AuditConfig `min_distinct_share`


@lru_cache(maxsize=8)
def _char_run_re(max_char_run: int) -> re.Pattern:
    return re.compile(r"(.)\1{%d,}" % (max_char_run - 1))


def loop(
    text: str, max_char_run: int, max_ngram_repeats: int, min_distinct_share: float = MIN_DISTINCT_SHARE
) -> tuple[str, str] | None:
    """(what repeats, why that is a loop) when `text` loops, else None."""
    if run := _char_run_re(max_char_run).search(text):
        return run.group(), f"{run.group(1)!r} {len(run.group())} times in a row (max_char_run {max_char_run})"
    words = text.split()
    total = max(len(words) - 3, 0)
    every = list(zip(words, words[1:], words[2:], words[3:]))
    if max_ngram_repeats >= 1 and len(set(every)) == total:
        return None  # each 4-gram once (most text): no loop of words
    grams = Counter(every)  # in order of first use, as most_common breaks ties
    if grams:
        gram, most = grams.most_common(1)[0]
        if most > max_ngram_repeats:
            return " ".join(gram), f"a word 4-gram repeated {most} times (max_ngram_repeats {max_ngram_repeats})"
        distinct = len(grams) / total
        if most >= 3 and total >= LOOP_MIN_GRAMS and distinct < min_distinct_share:
            return " ".join(gram), (
                f"a word 4-gram repeated {most} times, {len(grams)} distinct of {total} 4-grams "
                f"({distinct:.2f}, min_distinct_share {min_distinct_share:g})"
            )
    return None
