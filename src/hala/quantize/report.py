"""The quantization report: one JSON file for machines, the same figures as a markdown table.

It is written into the output folder next to the weights, so whoever serves the FP8 model sees
what it cost: weight error, agreement with the BF16 source, chrF, sizes and throughput.
"""

from __future__ import annotations

import json
from pathlib import Path

from hala.data.writers import atomic_write_text

REPORT_JSON = "quantization_report.json"
REPORT_MD = "quantization_report.md"
ENGINES = (("transformers", "transformers (W8A8, emulated)"), ("vllm", "vLLM (W8A8)"))


def write_report(folder: Path, report: dict) -> list[Path]:
    paths = [
        atomic_write_text(folder / REPORT_JSON, json.dumps(report, indent=2, ensure_ascii=False) + "\n"),
        atomic_write_text(folder / REPORT_MD, render_markdown(report)),
    ]
    return paths


def _f(value, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def render_markdown(report: dict) -> str:
    weights, sizes = report["weights"], report["sizes"]
    lines = [
        f"# FP8 quantization report: `{report['model']}`",
        "",
        f"Scheme `{report['scheme']}` (compressed-tensors `float-quantized`): {weights['tensors']} Linear weights in "
        f"FP8 E4M3 with per-channel scales; {len(report['ignore'])} module(s) kept in the model dtype: "
        + ", ".join(f"`{m}`" for m in report["ignore"][:10])
        + (" …" if len(report["ignore"]) > 10 else ""),
        "",
        "| weights | value |",
        "|---|---|",
        f"| checkpoint bytes, source → FP8 | {sizes['bytes_in']:,} → {sizes['bytes_out']:,} ({_f(sizes['ratio'], 3)}x) |",
        f"| relative error ‖W−Ŵ‖/‖W‖, mean / median / max | {_f(weights.get('mean'))} / {_f(weights.get('median'))} / {_f(weights.get('max'))} |",
    ]  # fmt: skip
    for worst in weights.get("worst", [])[:3]:
        lines.append(f"| worst: `{worst['tensor']}` | {_f(worst['relative_error'])} |")
    verification = report.get("verification")
    if not verification:
        lines += ["", "Verification was turned off (`--no-verify`): nothing was loaded or generated."]
        return "\n".join(lines) + "\n"
    engines = [(key, label) for key, label in ENGINES if key in verification]
    samples = verification["samples"]
    lines += [
        "",
        f"Against the source, on {samples['translation_prompts']} translation prompts (greedy, ≤{samples['max_tokens']} "
        f"tokens) and {samples['heldout_texts']} held-out texts from {samples['pairs']}; device: "
        f"{verification['device']['name']} ({verification['device']['kind']}).",
        "",
        "| check | " + " | ".join(label for _, label in engines) + " |",
        "|---|" + "---|" * len(engines),
    ]  # fmt: skip
    rows = [
        ("greedy outputs identical", lambda s: _f(s["greedy"]["exact"], 3)),
        ("greedy tokens before divergence", lambda s: _f(s["greedy"]["prefix"], 3)),
        ("next-token top-1 agreement", lambda s: _f(s["next_token"]["top1"], 4) if "next_token" in s else "–"),
        ("next-token mean KL (nats)", lambda s: _f(s["next_token"]["mean_kl"], 3) if "next_token" in s else "–"),
        ("chrF, FP8 vs BF16 output", lambda s: _f(s["chrf_fp8_vs_bf16"], 3)),
        ("chrF vs reference, BF16 → FP8", lambda s: f"{_f(s['chrf_vs_reference']['bf16'], 3)} → {_f(s['chrf_vs_reference']['fp8'], 3)}"),
        ("tokens/s, BF16 → FP8", lambda s: f"{_f(s['throughput']['bf16_tokens_per_s'], 3)} → {_f(s['throughput']['fp8_tokens_per_s'], 3)}"),
        ("throughput FP8 / BF16", lambda s: _f(s["throughput"]["fp8_over_bf16"], 3)),
    ]  # fmt: skip
    for label, cell in rows:
        lines.append(f"| {label} | " + " | ".join(cell(verification[key]) for key, _ in engines) + " |")
    lines += ["", f"**Throughput:** {verification['throughput_note']}"]
    first = verification[engines[0][0]]["examples"][:1] if engines else []
    for example in first:
        lines += ["", "Example (first prompt):", "", f"- BF16: {example['bf16']!r}", f"- FP8: {example['fp8']!r}"]
    return "\n".join(lines) + "\n"
