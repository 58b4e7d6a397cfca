"""The report's headline table: each of the paper's claims beside the run's own figure.

One row per claim the run can speak to, read from the stages' manifests and results files: the
translator's chrF++/BLEU base -> fine-tuned, the FP8 teacher against BF16 (quality, token agreement,
throughput), the pairs the judge kept, the conversations that reached the SFT corpus, the rows
decontamination took out, the audit of the SFT corpus, the conversations trained on and the OALL
v2 averages. A stage that did not run leaves its rows out.
"""

from __future__ import annotations

import html
import json
from pathlib import Path


def read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def _pct_of(part: int, whole: int) -> str:
    return f"{part:,} of {whole:,} ({100 * part / whole:.0f}%)" if whole else "–"


def paper_claims(run: Path) -> list[list[str]]:
    """`claim | paper | this run`: each of the paper's headline figures beside the run's own."""
    rows = []
    translation = read_json(run / "eval_translation" / "results.json").get("models", {})
    base, tuned = translation.get("translator_base"), translation.get("translator")
    if base and tuned:
        for metric, paper in (("chrf++", "43.2 → 64.2"), ("bleu", "16.0 → 48.2")):
            rows.append([f"translator {'chrF++' if metric == 'chrf++' else 'BLEU'}, base → fine-tuned", paper,
                         f"{base[metric]:.1f} → {tuned[metric]:.1f} ({tuned[metric] - base[metric]:+.1f})"])  # fmt: skip
    bf16, fp8 = translation.get("teacher_bf16"), translation.get("teacher_fp8")
    if bf16 and fp8:
        rows.append(["FP8 teacher vs BF16: chrF++ on the held-out pairs", "no quality loss",
                     f"{bf16['chrf++']:.1f} (BF16) vs {fp8['chrf++']:.1f} (FP8), {fp8['chrf++'] - bf16['chrf++']:+.1f}"])  # fmt: skip
    verification = (read_json(run / "quantize" / "quantization_report.json").get("verification") or {})
    for engine in ("vllm", "transformers"):
        section = verification.get(engine)
        if section:
            agreement = f"greedy tokens before the first difference: {100 * section['greedy']['prefix']:.0f}%"
            if "next_token" in section:
                agreement += f"; next-token top-1: {100 * section['next_token']['top1']:.0f}%"
            ratio = section["throughput"]["fp8_over_bf16"]
            rows.append([f"FP8 vs BF16 teacher: token agreement ({engine})", "no quality loss", agreement])
            rows.append([f"FP8 vs BF16 teacher: throughput ({engine}, {verification['device']['kind']})",
                         "~2x (figures not published)", f"{ratio:.2f}x" if ratio else "–"])  # fmt: skip
            break
    judge = read_json(run / "judge" / "manifest.json").get("counts", {})
    if judge.get("judged"):
        rows.append(["external pairs kept by the judge", "439,592 of ~1M OPUS-100 (~44%)",
                     _pct_of(judge.get("verdict_accept", 0), judge["judged"])
                     + f"; unparseable: {judge.get('verdict_unparseable', 0)}"])  # fmt: skip
    translated = read_json(run / "translate" / "manifest.json").get("counts", {})
    if translated:
        total = translated.get("rows_out", 0) + translated.get("rejected", 0)
        reasons = sorted(((k[len("rejected_"):], v) for k, v in translated.items() if k.startswith("rejected_") and v),
                         key=lambda kv: -kv[1])  # fmt: skip
        why = "; rejected: " + ", ".join(f"{k} {v}" for k, v in reasons) if reasons else ""
        rows.append(["instruction conversations translated into the SFT corpus", "~4.5M conversations",
                     _pct_of(translated.get("rows_out", 0), total) + why])  # fmt: skip
    clean = read_json(run / "decontaminate" / "manifest.json").get("counts", {})
    if "rows_in" in clean:  # hala data decontaminate: rows holding a benchmark item, per benchmark
        tasks = ", ".join(f"{k[len('contaminated['):-1]} {v}" for k, v in clean.items() if k.startswith("contaminated[") and v)
        rows.append(["SFT conversations holding an OALL v2 item (taken out before SFT)", "not measured",
                     _pct_of(clean["contaminated"], clean["rows_in"]) + (f": {tasks}" if tasks else "")])  # fmt: skip
    audited = read_json(run / "audit" / "manifest.json").get("counts", {})
    if audited.get("rows"):  # hala data audit of the SFT corpus
        found = ", ".join(f"{k[len('flagged_'):]} {v}" for k, v in audited.items() if k.startswith("flagged_") and v)
        rows.append(["SFT corpus audit: rows flagged (HTML tags, literal escapes, untranslated, loops, ...)",
                     "raw <br> tags and literal \\n escapes in Hala-4.6M-SFT (known defects)",
                     _pct_of(audited.get("flagged", 0), audited["rows"]) + (f": {found}" if found else "")])  # fmt: skip
    sft = read_json(run / "sft" / "manifest.json").get("counts", {})
    if sft:
        rows.append(["conversations the Hala model trains on", "~4.5M",
                     f"{sft.get('examples', 0) - sft.get('examples_fully_masked', 0):,}"])  # fmt: skip
    bench = read_json(run / "bench" / "results.json")
    scores = {m["label"]: m["average"] for m in bench.get("models", []) if m.get("status") == "ok"}
    if scores:
        paper = "; ".join(f"{r['name']} {r['average']:.1f}" for r in bench["paper"]["rows"] if r["average"] is not None)
        mine = " / ".join(f"{label} {100 * value:.1f}" for label, value in scores.items())
        rows.append([f"OALL v2 average ({' / '.join(scores)})", paper or "–", mine])
    return [[html.escape(c) for c in row] for row in rows]
