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
    Manifest(stage="models", config={"out": str(run / "models"), "names": ["tiny-lfm2", "smollm2"]}).write(run / "models")
    Manifest(stage="translate", config={}, counts={"rows_out": 3, "rejected_qa_target_language": 2, "qa_passed": 9}).write(run / "translate")
    pairs = [{"id": f"c{i}/m0/s0", "src": f"The library opens at {8 + i} in the morning.",
              "tgt": f"تفتح المكتبة أبوابها في الساعة {8 + i} صباحا.", "meta": {}} for i in range(3)]  # fmt: skip
    (run / "translate" / "pairs").mkdir()
    (run / "translate" / "pairs" / "u.jsonl").write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in pairs))
    results = {"models": {label: {"bleu": b, "chrf++": c, "bleu_signature": "nrefs:1|tok:13a", "chrf_signature": "nrefs:1|nw:2"}
                          for label, b, c in (("translator_base", 0.0, 1.5), ("translator", 3.2, 21.4))}}  # fmt: skip
    (run / "eval_translation").mkdir()
    (run / "eval_translation" / "results.json").write_text(json.dumps(results))
    (run / "bench").mkdir()
    (run / "bench" / "results.md").write_text("| model | AlGhafa | average |\n|---|---|---|\n| merged | 31.0 | 31.0 |\n| Hala-1.2B (paper) | 59.2 | 51.4 |\n")
    return run


def test_report_shows_every_section(tmp_path):
    run = fake_run(tmp_path / "run")
    report(ReportConfig(run=str(run), out=str(run / "report")))
    page = (run / "report" / "report.html").read_text()
    for text in ("Stages", "rejected_qa_target_language", "translator_base", "21.4", "Hala-1.2B (paper)",
                 "تفتح المكتبة", "dir='rtl'", "tiny models"):  # fmt: skip
        assert text in page, text
    assert (run / "report" / "translation.png").stat().st_size > 1000
    assert "<td>qa_passed</td>" not in page  # passing is not a reject reason


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
