r"""`hala data audit` on a held-out corpus with planted defects: each defective row is flagged with a
reason that names its check and says where; no clean row is, code, LaTeX, inline code and URLs
included. The rules it shares with translate's QA (`hala.text.defects`) are pinned here too."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hala.audit import AuditConfig, audit
from hala.cli import app
from hala.text.defects import html_tags, literal_escapes, prose
from hala.text.filters import Rule


def conv(id_: str, *turns: str, roles: tuple[str, ...] = ("user", "assistant")) -> dict:
    return {"id": id_, "messages": [{"role": r, "content": t} for r, t in zip(roles, turns)]}


ASK = "اشرح لي الفكرة باختصار من فضلك."
CLEAN = [
    conv("plain", "ما هي عاصمة المغرب؟", "عاصمة المغرب هي الرباط، وأكبر مدنها الدار البيضاء."),
    conv("html-code", "كيف أنشئ حاوية في صفحة ويب؟",
         'استخدم العنصر التالي:\n\n```html\n<div class="box">\n  <p>مرحبا</p><br>\n</div>\n```\n\n'
         "ثم أضف التنسيق في ملف منفصل."),
    conv("python-code", "كيف أطبع سطرين؟",
         'اكتب السطر التالي في بايثون:\n\n```python\nprint("السطر الأول\\nالسطر الثاني\\t!")\nx = 10\n```\n\n'
         "سيظهر النص على سطرين."),
    conv("inline-code", "ما الفرق بين الوسمين؟",
         "الوسم `<br>` يكسر السطر في HTML، والرمز `\\n` يكسره في بايثون، والنوع `List<T>` عام في جافا."),
    conv("latex", "ما هو التدرج؟",
         "التدرج هو $\\nabla f$ والمشتقة $\\frac{dy}{dx}$ والزاوية $\\theta$، وبالعرض:\n\n"
         "$$\\int_0^1 x\\,dx = \\tfrac{1}{2}$$\n\nوحيث \\theta زاوية و \\nabla f = 0 و \\text{ثابت} و \\newline فاصل."),
    conv("latex-env", "اكتب المعادلتين.",
         "المعادلتان هما:\n\\begin{align}\na &= b \\\\\n\\nabla \\cdot E &= \\rho\n\\end{align}\nوهذا كل شيء."),
    conv("urls", "أين أجد التوثيق؟",
         "راجع https://example.com/docs/new_table?x=1&y=2#Table_(html) أو www.example.org ، "
         "أو راسلني على help@example.com ."),
    conv("some-english", "ما هي أفضل لغة للمبتدئين؟",
         "أنصح بلغة Python لأنها سهلة القراءة، ويمكنك استخدام مكتبة NumPy للحساب العلمي بسرعة كبيرة."),
    conv("arabic-digits", "كم عدد الفواكه؟",
         "لدي ٣ تفاحات و٤ برتقالات، أي ٧ فواكه، كما في تقرير COVID-19 للعام.\n\n```python\nfruits = 7\n```"),
    conv("comparison", "متى يكون الترتيب صحيحا؟", "يكون الترتيب صحيحا إذا كان a < b > c في المتتالية المعطاة هنا."),
    conv("system-en", "You are a helpful assistant.", "مرحبا، كيف حالك؟", "بخير، شكرا لسؤالك.",
         roles=("system", "user", "assistant")),
    conv("multi-turn", "مرحبا", "أهلا بك! كيف أساعدك؟", ASK, "الفكرة أن نقسم المسألة إلى أجزاء صغيرة ثم نحل كلا منها.",
         roles=("user", "assistant", "user", "assistant")),
    conv("western-digits", "كم الساعة؟", "الساعة الآن 10:30 صباحا، والموعد بعد 45 دقيقة."),
    conv("paragraphs", "كيف أتعامل مع الأخطاء؟",  # one 4-gram in five paragraphs: once in each, no loop
         "\n\n".join(f"في هذه الحالة يجب أن {tail}." for tail in
                     ("نقرأ الرسالة", "نعيد المحاولة", "نسجل الخطأ", "نبلغ المستخدم", "نوقف البرنامج"))),
    conv("code-loop", "اكتب فاصلا في الشيفرة.",
         "هكذا:\n\n```python\n# " + "-" * 40 + "\n" + "print('x')\n" * 8 + "```"),
]  # fmt: skip
DEFECTS = {  # id -> (the check that must flag it, what its reason must hold)
    "br": (conv("br", ASK, "السطر الأول من الجواب.<br>السطر الثاني من الجواب."), "html_tags",
           "turn 1 (assistant): HTML tag <br>"),
    "escape": (conv("escape", ASK, "الخطوة الأولى هي القراءة.\\nالخطوة الثانية هي الكتابة."), "literal_escapes",
               "turn 1 (assistant): literal escape \\n"),
    "english": (conv("english", ASK, "The idea is to split the problem into small parts and solve each one."),
                "untranslated", "turn 1 (assistant): 100% of its 14 words are in Latin script"),
    "empty": (conv("empty", ASK, "   "), "empty_turn", "turn 1 (assistant) is empty"),
    "loop": (conv("loop", ASK, "نعم " * 40), "repetition", "turn 1 (assistant): a word 4-gram repeated 37 times"),
    "two-users": (conv("two-users", ASK, ASK, "حسنا.", roles=("user", "user", "assistant")), "roles",
                  "turns 0 and 1 are both user turns"),
    "no-answer": (conv("no-answer", ASK, roles=("user",)), "roles", "no assistant turn"),
    "mixed-digits": (conv("mixed-digits", "كم عدد الفواكه؟", "لدي 3 تفاحات و٤ برتقالات."), "digits",
                     "turn 1 (assistant): numbers in 2 digit systems: Western «3» and Arabic-Indic «و٤»"),
}  # fmt: skip
BAD_LINES = ['{"id": "broken", "messages": [', '{"id": "no-turns", "text": "hello"}']


def write_corpus(path: Path) -> Path:
    rows = [json.dumps(r, ensure_ascii=False) for r in [*CLEAN, *(d[0] for d in DEFECTS.values())]]
    path.write_text("\n".join(rows[:5] + BAD_LINES + rows[5:]) + "\n", encoding="utf-8")
    return path


def flagged(out: Path) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for line in (out / "flagged.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        found.setdefault(row["id"], []).append(row)
    return found


@pytest.fixture
def audited(tmp_path) -> Path:
    audit(AuditConfig(inputs=[str(write_corpus(tmp_path / "corpus.jsonl"))], out=str(tmp_path / "audit")))
    return tmp_path / "audit"


def test_each_planted_defect_is_flagged_by_its_check_and_no_clean_row_is(audited):
    found = flagged(audited)
    assert not {c["id"] for c in CLEAN} & set(found), {i: found[i] for i in found if i not in DEFECTS}
    for id_, (_, check, reason) in DEFECTS.items():
        checks = {row["check"]: row["reason"] for row in found[id_]}
        assert check in checks, (id_, found[id_])
        assert checks[check].startswith(reason), checks[check]


def test_the_summary_counts_each_check_and_names_the_bad_rows(audited):
    summary = json.loads((audited / "summary.json").read_text(encoding="utf-8"))
    assert summary["rows"] == len(CLEAN) + len(DEFECTS) and summary["clean_rows"] == len(CLEAN)
    assert summary["checks"]["roles"]["flagged"] == 2 and summary["checks"]["length"]["flagged"] == 0
    assert summary["checks"]["html_tags"]["share"] == pytest.approx(1 / summary["rows"], abs=1e-6)
    assert summary["bad_rows"] == 2 and set(summary["bad_row_kinds"]) == {"invalid_json", "wrong_schema"}
    assert [b.split(": ")[0] for b in summary["bad_rows_listed"]] == [
        f"{audited.parent / 'corpus.jsonl'}:6", f"{audited.parent / 'corpus.jsonl'}:7",
    ]  # fmt: skip
    row = flagged(audited)["br"][0]
    assert row["file"].endswith("corpus.jsonl") and row["line"] == 5 + len(BAD_LINES) + len(CLEAN) - 5 + 1
    manifest = json.loads((audited / "manifest.json").read_text())
    assert manifest["counts"]["flagged_html_tags"] == 1 and manifest["counts"]["rejected_invalid_json"] == 1
    assert not (audited / "data").exists()  # no copy of the corpus


def test_the_page_escapes_the_corpus_and_sets_arabic_right_to_left(audited):
    page = (audited / "audit.html").read_text(encoding="utf-8")
    assert "&lt;br&gt;" in page and "الجواب.<br>" not in page
    assert "dir='rtl' lang='ar'" in page and "<bdi>«" in page
    assert "<h3>html_tags</h3>" in page and "no-answer" in page


def test_the_cli_audits_a_parquet_sharegpt_corpus(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    names = {"user": "human", "assistant": "gpt", "system": "system"}
    rows = [{"id": r["id"], "conversations": [{"from": names[m["role"]], "value": m["content"]} for m in r["messages"]]}
            for r in [*CLEAN, *(d[0] for d in DEFECTS.values())]]  # fmt: skip
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "corpus.parquet")
    out = tmp_path / "audit"
    result = CliRunner().invoke(app, ["data", "audit", "-i", str(tmp_path / "corpus.parquet"), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert f"flagged={len(DEFECTS)}" in result.output and "wrote" in result.output
    assert all((out / name).is_file() for name in ("summary.json", "audit.html", "flagged.jsonl", "manifest.json"))
    assert set(flagged(out)) == set(DEFECTS)

    again = CliRunner().invoke(app, ["data", "audit", "-i", str(tmp_path / "corpus.parquet"), "-o", str(out),
                                     "--check", "roles", "--check", "empty_turn"])  # fmt: skip
    assert again.exit_code == 0, again.output
    assert {r["check"] for rows in flagged(out).values() for r in rows} == {"roles", "empty_turn"}


def test_a_corpus_with_no_readable_row_fails(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(BAD_LINES) + "\n")
    result = CliRunner().invoke(app, ["data", "audit", "-i", str(bad), "-o", str(tmp_path / "audit")])
    assert result.exit_code == 1 and "not one conversation could be read" in result.output


def test_length_outliers_by_median_and_mad_and_by_the_turn_limit(tmp_path):
    rows = [conv(f"r{i}", ASK, "جواب قصير " + "كلمة " * (5 + i % 7)) for i in range(30)]
    part = " ".join(f"الفقرة {n} تشرح جانبا مختلفا من الفكرة." for n in range(50))  # 1,939 characters
    rows += [conv("long", ASK, part, ASK, part, roles=("user", "assistant") * 2),
             conv("huge-turn", "حرف " * 800, roles=("user",))]
    data = tmp_path / "c.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    audit(AuditConfig(inputs=[str(data)], out=str(tmp_path / "a"), checks=["roles", "length"], max_turn_chars=3000))
    found = {id_: lines[-1]["reason"] for id_, lines in flagged(tmp_path / "a").items()}
    assert set(found) == {"long", "huge-turn"}
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["flagged_rows"] == 2 and summary["checks"]["roles"]["flagged"] == 1  # huge-turn, flagged twice
    assert found["huge-turn"] == "turn 0 (user) has 3,200 characters (max_turn_chars 3,000)"
    assert "(length_mad_k); its longest is turn 1 (assistant), 1,939" in found["long"]
    stats = summary["length"]
    assert stats["limit"] == stats["median"] + 10 * stats["mad"]

    # too few rows for the MAD rule: only the turn limit applies
    audit(AuditConfig(inputs=[str(data)], out=str(tmp_path / "b"), checks=["length"], max_turn_chars=3000,
                      length_min_rows=100))
    assert list(flagged(tmp_path / "b")) == ["huge-turn"]


def test_an_extra_filter_joins_the_audit_and_its_inputs_are_part_of_the_run(tmp_path):
    """The hook `hala.decontaminate`'s ContaminationFilter plugs into: any filter over conversations."""
    data = write_corpus(tmp_path / "corpus.jsonl")
    bench = tmp_path / "bench.jsonl"
    bench.write_text('{"question": "ما هي عاصمة المغرب؟"}\n', encoding="utf-8")
    question = json.loads(bench.read_text())["question"]
    seen = lambda c: "turn 0 holds a benchmark item" if c.messages[0].content == question else None  # noqa: E731
    cfg = AuditConfig(inputs=[str(data)], out=str(tmp_path / "a"), checks=["roles"])
    run = lambda: audit(cfg, extra=[Rule("contamination", seen)], extra_inputs=[str(bench)])  # noqa: E731
    manifest = run()
    assert flagged(tmp_path / "a")["plain"] == [{"id": "plain", "check": "contamination", "file": str(data), "line": 1,
                                                 "reason": "turn 0 holds a benchmark item"}]  # fmt: skip
    assert manifest.counts["flagged_contamination"] == 1
    assert run().finished_at == manifest.finished_at  # the same audit: nothing to do
    bench.write_text('{"question": "سؤال آخر"}\n', encoding="utf-8")
    assert run().fingerprint != manifest.fingerprint  # other benchmarks: audited again


@pytest.mark.parametrize("text, tags", [
    ("سطر<br>سطر<BR/>سطر<br />", ["<br>", "<BR/>", "<br />"]),
    ('<p class="x">نص</p></div>', ['<p class="x">', "</p>", "</div>"]),
    ("a < b > c, <T>, List<B>, <name>, Map<K, V>", []),
    ("```html\n<div>\n```\n`<span>` https://x.org/a_(b)", []),
])  # fmt: skip
def test_html_tags_outside_code(text, tags):
    assert [m.group() for m in html_tags(text)] == tags


@pytest.mark.parametrize("text, escapes", [
    ("سطر\\nسطر", ["\\n"]),
    ("end\\n", ["\\n"]),
    ("\\nThe next line \\tand \\r\\n", ["\\n", "\\t", "\\r", "\\n"]),
    ("\\nthe start", ["\\n"]),  # `nthe` is no LaTeX command
    ("\\nabla \\theta \\text{a} \\newline \\right) \\neq \\tau \\rho \\times", []),
    ("$\\n$ `\\n` \\(\\n x\\)\n```\nprint('\\n')\n```", []),
])  # fmt: skip
def test_literal_escapes_outside_code_and_latex(text, escapes):
    assert [m.group("escape") for m in literal_escapes(text)] == escapes


def test_prose_blanks_code_math_urls_and_emails():
    text = "نص `code` و $x$ و https://a.org/b و a@b.com\n```\ncode\n```\nنهاية"
    assert prose(text).split() == ["نص", "و", "و", "و", "نهاية"]


def test_the_contamination_check_flags_the_rows_holding_a_benchmark_item_naming_it(tmp_path):
    heldout = Path(__file__).parent / "data" / "decontaminate_heldout.jsonl"
    rows = [json.loads(line) for line in heldout.read_text(encoding="utf-8").splitlines()]
    manifest = audit(AuditConfig(inputs=[str(heldout)], out=str(tmp_path / "a"), checks=["contamination"]))
    found = {i: [r for r in rs if r["check"] == "contamination"] for i, rs in flagged(tmp_path / "a").items()}
    planted = {r["id"] for r in rows if r.get("meta", {}).get("planted")}
    assert planted and {i for i, rs in found.items() if rs} == planted
    items = {r["id"]: r["meta"]["planted"]["item"] for r in rows if r.get("meta", {}).get("planted")}
    assert all(items[i] in rs[0]["reason"] for i, rs in found.items() if rs), found
    assert manifest.counts["flagged_contamination"] == len(planted)
    assert any(i.path.endswith("oall_mini") for i in manifest.inputs)  # the benchmark folder is an input
