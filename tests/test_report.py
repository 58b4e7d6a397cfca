"""The HTML report: built from what the stages leave on disk, and shown in a real browser."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from hala.data.manifest import Manifest
from hala.run.report import ReportConfig, report


def fake_run(run: Path) -> Path:
    """The files a finished run leaves, written by hand (each stage's own tests cover their content)."""
    (run / "models").mkdir(parents=True)
    (run / "quantize").mkdir()
    Manifest(stage="models", config={"out": str(run / "models"), "names": ["tiny-lfm2", "smollm2"]}).write(run / "models")
    Manifest(stage="translate", config={}, counts={"rows_out": 3, "rejected": 2, "rejected_qa_target_language": 2, "qa_passed": 9}).write(run / "translate")
    pairs = [{"id": f"c{i}/m0/s0", "src": f"The library opens at {8 + i} in the morning.",
              "tgt": f"تفتح المكتبة أبوابها في الساعة {8 + i} صباحا.", "meta": {}} for i in range(3)]  # fmt: skip
    (run / "translate" / "pairs").mkdir()
    (run / "translate" / "pairs" / "u.jsonl").write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in pairs))
    scores = (("translator_base", 0.0, 1.5), ("translator", 3.2, 21.4), ("teacher_bf16", 5.0, 30.2), ("teacher_fp8", 4.9, 29.8))
    results = {"models": {label: {"bleu": b, "chrf++": c, "bleu_signature": "nrefs:1|tok:13a", "chrf_signature": "nrefs:1|nw:2"}
                          for label, b, c in scores}}  # fmt: skip
    (run / "eval_translation").mkdir()
    (run / "eval_translation" / "results.json").write_text(json.dumps(results))
    (run / "bench").mkdir()
    (run / "bench" / "results.md").write_text("# OALL v2 Arabic benchmarks\n\n| model | AlGhafa | average |\n|---|---|---|\n"
                                              "| merged | 31.0 | 31.0 |\n| Hala-1.2B (paper) | 59.2 | 51.4 |\n\n- merged: `m` (hf)\n")
    bench = {"models": [{"label": "base", "status": "ok", "average": 0.25}, {"label": "merged", "status": "ok", "average": 0.31}],
             "paper": {"rows": [{"name": "Hala-350M", "average": 41.9}]}}  # fmt: skip
    (run / "bench" / "results.json").write_text(json.dumps(bench))
    Manifest(stage="judge", config={}, counts={"judged": 200, "verdict_accept": 150, "verdict_reject": 50,
                                               "verdict_unparseable": 0}).write(run / "judge")  # fmt: skip
    Manifest(stage="sft", config={}, counts={"examples": 120, "examples_fully_masked": 2}).write(run / "sft")
    verification = {"device": {"kind": "cpu"}, "vllm": {"greedy": {"exact": 0.5, "prefix": 0.87},
                                                        "throughput": {"fp8_over_bf16": 0.93}}}  # fmt: skip
    (run / "quantize" / "quantization_report.json").write_text(json.dumps({"verification": verification}))
    return run


def test_report_shows_every_section(tmp_path):
    run = fake_run(tmp_path / "run")
    report(ReportConfig(run=str(run), out=str(run / "report")))
    page = (run / "report" / "report.html").read_text()
    for text in ("Stages", "rejected_qa_target_language", "translator_base", "21.4", "Hala-1.2B (paper)",
                 "تفتح المكتبة", "dir='rtl'", "tiny random models"):  # fmt: skip
        assert text in page, text
    assert (run / "report" / "translation.png").stat().st_size > 1000
    assert "<td>qa_passed</td>" not in page  # passing is not a reject reason
    assert "<td>translate</td><td>conversations</td><td>rejected_qa_target_language</td>" in page


def test_report_puts_the_papers_claims_beside_the_run(tmp_path):
    run = fake_run(tmp_path / "run")
    report(ReportConfig(run=str(run), out=str(run / "report")))
    page = (run / "report" / "report.html").read_text()
    rows = {
        "translator chrF++, base → fine-tuned": ("43.2 → 64.2", "1.5 → 21.4 (+19.9)"),
        "translator BLEU, base → fine-tuned": ("16.0 → 48.2", "0.0 → 3.2 (+3.2)"),
        "FP8 teacher vs BF16: chrF++ on the held-out pairs": ("no quality loss", "30.2 (BF16) vs 29.8 (FP8), -0.4"),
        "FP8 vs BF16 teacher: token agreement (vllm)": ("no quality loss", "greedy tokens before the first difference: 87%"),
        "FP8 vs BF16 teacher: throughput (vllm, cpu)": ("~2x (figures not published)", "0.93x"),
        "external pairs kept by the judge": ("439,592 of ~1M OPUS-100 (~44%)", "150 of 200 (75%); unparseable: 0"),
        "instruction conversations translated into the SFT corpus": ("~4.5M conversations",
                                                                      "3 of 5 (60%); rejected: qa_target_language 2"),
        "conversations the Hala model trains on": ("~4.5M", "118"),
        "OALL v2 average (base / merged)": ("Hala-350M 41.9", "base 25.0 / merged 31.0"),
    }  # fmt: skip
    for claim, (paper, mine) in rows.items():
        assert f"<tr><td>{claim}</td><td>{paper}</td><td>{mine}</td></tr>" in page, claim


def test_report_renders_markdown_and_does_not_call_itself_running(tmp_path):
    run = fake_run(tmp_path / "run")
    Manifest(stage="models", config={"out": str(run / "models"), "names": ["gemma3-270m"]}).write(run / "models")
    from hala.run.runner import records

    state = records(run, "report")["state"]  # what `hala run` leaves while the report stage runs
    state.parent.mkdir(parents=True, exist_ok=True)
    state.write_text(json.dumps({"state": "running"}))
    report(ReportConfig(run=str(run), out=str(run / "report")))
    page = (run / "report" / "report.html").read_text()
    assert "# OALL" not in page and "<code>m</code>" in page and "<th>AlGhafa</th>" in page
    stage_row = page.split("<td>report</td>", 1)[1].split("</tr>", 1)[0]
    assert "this page" in stage_row and "running" not in stage_row
    assert "Gemma Terms of Use" in page and "tiny random" not in page


def _chromium() -> str:
    """Debian's chromium, which `make setup` installs (the test installs nothing itself)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    assert found, "chromium is missing: run `make setup` (it installs Debian's chromium and fonts-noto-core)"
    return found


@pytest.mark.slow
def test_report_renders_in_headless_chromium(tmp_path):
    browser = _chromium()
    run = fake_run(tmp_path / "run")
    report(ReportConfig(run=str(run), out=str(run / "report")))
    shot = tmp_path / "report.png"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
             "--disable-background-networking", "--disable-component-update", f"--user-data-dir={tmp_path / 'profile'}",
             "--window-size=1280,1600", f"--screenshot={shot}"]  # fmt: skip
    subprocess.run([browser, *flags, (run / "report" / "report.html").as_uri()], capture_output=True, timeout=120)
    assert shot.exists() and shot.stat().st_size > 20_000  # a rendered page, not a blank one


def test_a_model_derived_from_gemma_carries_its_license(tmp_path):
    run = fake_run(tmp_path / "run")
    base = tmp_path / "gemma"
    base.mkdir()
    (base / "README.md").write_text("---\nlicense: gemma\nbase_model: google/gemma-3-270m\n---\n\n# Gemma\n")
    (base / "NOTICE.txt").write_text("Gemma is provided under and subject to the Gemma Terms of Use\n")
    model = run / "translator" / "model"
    model.mkdir(parents=True)
    (model / "config.json").write_text("{}")
    (model / "NOTICE.txt").write_text((base / "NOTICE.txt").read_text())  # as `hala train` copies it
    Manifest(stage="train", config={"model": str(base), "data": ["pairs.jsonl"]}).write(run / "translator")
    report(ReportConfig(run=str(run), out=str(run / "report")))
    card = (model / "README.md").read_text()
    assert "\nlicense: gemma\n" in card.split("---")[1]
    assert "Gemma is provided under and subject to the Gemma Terms of Use" in card and "NOTICE.txt" in card
