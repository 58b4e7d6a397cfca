"""`hala data decontaminate`: every row holding a benchmark item is flagged and names it; no clean row is.

The held-out file (`tests/data/decontaminate_heldout.jsonl`) was written by hand: eleven
conversations hold an OALL mini item (verbatim, with diacritics added or stripped, with letter
variants, with tatweel, inside or as part of a longer passage, in a later turn), each naming it in
`meta.planted`, and nine are on the same topics with the same words, but hold no item.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hala.cli import app
from hala.data.manifest import OutputInUseError
from hala.data.records import Conversation
from hala.decontaminate import BenchIndex, ContaminationFilter
from hala.decontaminate.stage import DecontaminateConfig, decontaminate
from hala.evaluate.benchmarks import MissingDataError, bundled_data_dir
from hala.text.filters import Filter, first_failures

HELDOUT = Path(__file__).parent / "data" / "decontaminate_heldout.jsonl"
ROWS = [json.loads(line) for line in HELDOUT.read_text(encoding="utf-8").splitlines()]
PLANTED = {r["id"]: r["meta"]["planted"] for r in ROWS if r["meta"]["planted"]}
CLEAN = {r["id"] for r in ROWS if not r["meta"]["planted"]}


def rejected(out: Path) -> dict[str, dict]:
    return {json.loads(r["raw"])["id"]: r for f in sorted((out / "rejected").glob("*.jsonl"))
            for r in map(json.loads, f.read_text(encoding="utf-8").splitlines())}  # fmt: skip


def kept(out: Path) -> set[str]:
    return {json.loads(line)["id"] for f in (out / "data").glob("*.jsonl") for line in f.read_text().splitlines()}


def conversation(*turns: str) -> Conversation:
    roles = ["user", "assistant"] * len(turns)
    return Conversation.create([{"role": role, "content": t} for role, t in zip(roles, turns)])


@pytest.fixture(scope="module")
def index() -> BenchIndex:
    return BenchIndex.build()


def test_every_contaminated_row_is_flagged_with_its_item_and_no_clean_one(tmp_path):
    assert len(PLANTED) == 11 and len(CLEAN) == 9
    out = tmp_path / "out"
    manifest = decontaminate(DecontaminateConfig(inputs=[str(HELDOUT)], out=str(out)))
    flagged = rejected(out)
    assert set(flagged) == set(PLANTED) and kept(out) == CLEAN
    for row_id, planted in PLANTED.items():
        assert flagged[row_id]["kind"] == "contaminated"
        assert f" of {planted['item']}" in flagged[row_id]["reason"], row_id
    assert "turn 3 (user)" in flagged["third-turn"]["reason"]
    assert "verbatim" in flagged["alef-variants"]["reason"]
    assert "71% of its 8-grams" in flagged["part-of-a-passage"]["reason"]
    counts = manifest.counts
    assert counts["rows_in"] == 20 and counts["rows_out"] == 9 and counts["contaminated"] == 11
    tasks = {k[len("contaminated["):-1]: v for k, v in counts.items() if k.startswith("contaminated[")}
    assert tasks == {"AlGhafa": 3, "ArabicMMLU": 3, "ArbMMLU-HT": 2, "EXAMS": 1, "MadinahQA": 2}
    assert counts["bench_items"] == 169 and counts["rejected_contaminated"] == 11


def test_the_cli_exits_0_and_counts(tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["data", "decontaminate", "-i", str(HELDOUT), "-o", str(out), "--sharegpt"])
    assert result.exit_code == 0, result.output
    assert "contaminated=11" in result.output and "rows_out=9" in result.output
    assert "contaminated[EXAMS]=1" in result.output
    row = json.loads(next((out / "data").glob("*.jsonl")).read_text(encoding="utf-8").splitlines()[0])
    assert row["conversations"][0]["from"] == "human" and row["meta"] == {"planted": None}  # ShareGPT, meta kept


def test_a_current_run_is_skipped_and_the_bench_dir_is_an_input(tmp_path):
    bench = tmp_path / "bench"
    shutil.copytree(bundled_data_dir(), bench)
    cfg = DecontaminateConfig(inputs=[str(HELDOUT)], out=str(tmp_path / "out"), bench_dir=str(bench))
    first = decontaminate(cfg)
    data = next((tmp_path / "out" / "data").glob("*.jsonl"))
    before = data.stat().st_mtime_ns
    again = decontaminate(cfg)
    assert again.fingerprint == first.fingerprint and data.stat().st_mtime_ns == before  # nothing redone
    assert str(bench) in {i.path for i in first.inputs}
    exams = bench / "OALL" / "Arabic_EXAMS" / "default" / "test.jsonl"
    exams.write_text("".join(exams.read_text(encoding="utf-8").splitlines(keepends=True)[1:]), encoding="utf-8")
    with pytest.raises(OutputInUseError, match="different inputs"):  # other benchmark data: another run
        decontaminate(cfg)
    with pytest.raises(OutputInUseError, match="settings ngram"):
        decontaminate(cfg.model_copy(update={"ngram": 6}))
    other = decontaminate(cfg.model_copy(update={"out": str(tmp_path / "other")}))
    assert "contaminated[EXAMS]" not in other.counts and other.counts["contaminated"] == 10  # the row taken out


def test_contamination_is_a_filter_of_the_one_shape(index):
    check = ContaminationFilter(index)
    assert isinstance(check, Filter) and check.name == "contaminated"
    convs = [conversation("ما عاصمة فرنسا؟", "باريس."), conversation("سؤال: ما عاصمة المملكة المغربية؟")]
    verdicts = first_failures([check], convs)
    assert verdicts[0] is None
    name, reason = verdicts[1]
    assert name == "contaminated"
    assert reason.startswith("turn 1 (user) holds the Question of ArabicMMLU / General Knowledge / test row 1 (id 1)")


def test_the_match_rule(index):
    short = "ما عاصمة المملكة المغربية؟"  # 4 words: exact, consecutive
    long = "أي من التراكيب التالية يوجد في الخلية النباتية ولا يوجد في الخلية الحيوانية؟"  # 13 words: 6 8-grams
    words = long.split()
    texts = [
        short,
        "ما عاصمة المملكة الأردنية المغربية",  # the short item's words, not consecutive
        "عاصمة المملكة المغربية",  # three of its four words
        " ".join(words[:9]),  # 2 of its 6 8-grams: 33%
        " ".join(words[:11]) + " الحيوانية",  # 4 of 6: 67%
        "ما عاصمة المملكة\nالمغربية",  # a line break is a space
    ]
    hits = index.search(texts)
    assert [bool(h) for h in hits] == [True, False, False, False, True, True]
    assert hits[0][0].share == 1.0 and hits[4][0].share == pytest.approx(4 / 6)
    assert index.search([]) == [] and index.search(["", "؟"]) == [[], []]


def test_min_words_threshold_and_ngram_are_settings():
    loose = BenchIndex.build(min_words=3, threshold=0.3)
    strict = BenchIndex.build(ngram=14)
    assert len(loose.items) == 172 and len(BenchIndex.build().items) == 169  # three questions of three words
    assert loose.search(["عدد أركان الإسلام خمسة"])[0] and not BenchIndex.build().search(["عدد أركان الإسلام خمسة"])[0]
    nine = "أي من التراكيب التالية يوجد في الخلية النباتية ولا"
    assert loose.search([nine])[0] and not BenchIndex.build().search([nine])[0]  # 2 of its 6 8-grams
    assert not strict.search([nine])[0] and strict.search([nine + " يوجد في الخلية الحيوانية"])[0]  # short for 14


def test_a_bench_dir_without_benchmarks_is_refused(tmp_path):
    with pytest.raises(MissingDataError, match="holds none of the OALL v2 datasets"):
        BenchIndex.build(tmp_path)
    partial = tmp_path / "partial"
    shutil.copytree(bundled_data_dir() / "OALL" / "Arabic_EXAMS", partial / "OALL" / "Arabic_EXAMS")
    assert {item.task for item in BenchIndex.build(partial).items} == {"EXAMS"}


def test_hala_run_decontaminates_the_translated_corpus_before_sft(tmp_path):
    from hala.run.runner import execute, plan
    from tests.test_run import finish, recipe

    r = recipe(tmp_path)
    run = Path(r.out)
    steps = {s.stage.name: s for s in plan(r, "r.yaml")}
    names = list(steps)
    assert names.index("translate") < names.index("decontaminate") < names.index("sft")
    assert steps["sft"].stage.upstream == ("decontaminate",)  # sft waits for it (the audit runs between)
    assert steps["decontaminate"].config["inputs"] == [str(run / "translate" / "data")]
    assert steps["decontaminate"].config["enabled"]
    assert steps["sft"].config["data"] == [str(run / "decontaminate" / "data")]
    finish([steps[name] for name in names[: names.index("decontaminate")]], run)
    (run / "translate" / "data").mkdir(parents=True)
    shutil.copy(HELDOUT, run / "translate" / "data" / "part-0.jsonl")  # what translate wrote
    step = {s.stage.name: s for s in plan(r, "r.yaml")}["decontaminate"]
    assert step.action == "run" and step.why == "not run yet"
    assert list(execute([step], run, log=lambda *_: None)) == ["decontaminate"]
    counts = json.loads((run / "decontaminate" / "manifest.json").read_text())["counts"]
    assert counts["contaminated"] == 11 and kept(run / "decontaminate") == CLEAN
    assert {s.stage.name: s.action for s in plan(r, "r.yaml")}["decontaminate"] == "skip"

    off = {s.stage.name: s for s in plan(recipe(tmp_path, "decontaminate.enabled=false"), "r.yaml")}
    assert off["decontaminate"].action == "run" and off["sft"].action == "run"
    assert off["sft"].config["data"] == [str(run / "translate" / "data")]


def test_the_report_and_the_release_card_show_the_decontamination(tmp_path):
    import pyarrow.parquet as pq

    from hala.run.report import ReportConfig, report

    run = tmp_path / "run"
    (run / "translate" / "data").mkdir(parents=True)
    shutil.copy(HELDOUT, run / "translate" / "data" / "part-0.jsonl")
    decontaminate(DecontaminateConfig(inputs=[str(run / "translate" / "data")], out=str(run / "decontaminate")))
    report(ReportConfig(run=str(run)))
    page = (run / "report" / "report.html").read_text(encoding="utf-8")
    assert "SFT conversations holding an OALL v2 item" in page
    assert "11 of 20 (55%): AlGhafa 3, ArabicMMLU 3, ArbMMLU-HT 2, EXAMS 1, MadinahQA 2" in page
    assert "<td>decontaminate</td><td>conversations</td><td>rejected_contaminated</td><td class='num'>11</td>" in page
    card = (run / "release" / "corpus" / "README.md").read_text(encoding="utf-8")
    assert "11 of 20 conversations held an OALL v2 benchmark question or passage" in card
    assert "- contaminated[ArabicMMLU]: 3" in card
    corpus = sorted((run / "release" / "corpus" / "data").glob("*.parquet"))
    release = {row["id"] for f in corpus for row in pq.read_table(f).to_pylist()}
    assert release == CLEAN  # the corpus sft trained on


def test_a_short_item_is_checked_word_for_word_after_its_hash(monkeypatch):
    import numpy as np

    from hala.decontaminate import index as module

    class Colliding:  # every word the same key: every window of four words hashes alike
        def __init__(self, seed):
            pass

        def integers(self, low, high, size, dtype):
            return np.zeros(size, dtype)

    monkeypatch.setattr(module.np.random, "default_rng", Colliding)
    colliding = BenchIndex.build()
    assert colliding.search(["المملكة ما المغربية عاصمة"]) == [[]]  # the item's words, in another order
    assert colliding.search(["ما عاصمة المملكة المغربية"])[0]
