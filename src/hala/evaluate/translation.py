"""`hala eval translation`: BLEU and chrF++ of several models on a held-out parallel test set.

Every model (base, fine-tuned translator, teacher in BF16 and FP8, ...) translates the same source
sentences through the engine layer with the same prompt (the paper's translator prompt by
default) and greedy decoding. The hypotheses are saved next to the scores
(`hypotheses/<label>.jsonl`), so anyone can recompute them; scores are sacrebleu's corpus BLEU and
chrF++ (chrF with word bigrams), with their signatures. A model that fails is reported and the
others still run; each finished model is kept and skipped on resume.

The models are inputs like the test set: each model folder is hashed (weights, config, tokenizer:
every file in it), so a model retrained at the same path is evaluated again, and a served name is
recorded by name only. A finished model's scores carry the fingerprint of the settings, the test
set and that model (`StageFrame.unit_fingerprint`), and are reused only while it still matches:
changing one model redoes that model alone, changing the test set or a setting redoes them all.
The folder is claimed by the stage frame (`hala.frame`) like every stage's, which refuses only a
folder holding another run's `data/` units: its own units are keyed by their fingerprints.
"""

from __future__ import annotations

import json
import logging

from pydantic import Field

from hala.config import StrictModel
from hala.data.manifest import FileEntry, Manifest
from hala.data.output_lock import holds_output
from hala.data.readers import read_pairs
from hala.data.writers import atomic_write_text, write_jsonl
from hala.engines.base import EngineConfig, SamplingParams
from hala.evaluate.bench import ModelsFailedError, _safe, parse_models
from hala.frame import StageFrame
from hala.text.prompts import PAPER_TEMPLATE, TranslatorPrompt, render

log = logging.getLogger("hala.evaluate")


class TranslationEvalConfig(StrictModel):
    models: list[str] = Field(min_length=1, description="model folders (or served names), each optionally LABEL=DIR")
    data: str = Field(description="test pairs: {en, ar}, translation: {..}, {src, tgt} or TSV")
    out: str = Field(description="output folder: results.md, hypotheses, manifest.json")
    engine: EngineConfig = Field(default_factory=EngineConfig, description="engine.model is set per model")
    sampling: SamplingParams = Field(default_factory=lambda: SamplingParams(max_tokens=256, temperature=0.0))
    template: TranslatorPrompt = PAPER_TEMPLATE
    source_lang: str = "en"
    target_lang: str = "ar"
    limit: int | None = Field(None, ge=1, description="only the first N pairs")


def score(hypotheses: list[str], references: list[str]) -> dict:
    """Corpus BLEU and chrF++ with sacrebleu, with the signatures that make them reproducible."""
    from sacrebleu.metrics import BLEU, CHRF

    bleu, chrf = BLEU(), CHRF(word_order=2)
    b = bleu.corpus_score(hypotheses, [references])
    c = chrf.corpus_score(hypotheses, [references])
    return {"bleu": round(b.score, 2), "chrf++": round(c.score, 2),
            "bleu_signature": str(bleu.get_signature()), "chrf_signature": str(chrf.get_signature())}  # fmt: skip


def _translate(cfg: TranslationEvalConfig, model: str, sources: list[str]) -> list[tuple[str, str]]:
    from hala.engines import get_engine

    engine = get_engine(cfg.engine.model_copy(update={"model": model}))
    try:
        chats = [render(cfg.template, s, cfg.source_lang, cfg.target_lang) for s in sources]
        return [(g.text.strip(), g.finish_reason) for g in engine.chat(chats, cfg.sampling)]
    finally:
        engine.close()


@holds_output()
def evaluate_translation(cfg: TranslationEvalConfig) -> Manifest:
    frame = StageFrame("eval-translation", cfg)
    out = frame.out
    data = FileEntry.of(cfg.data)
    models = [(label, path, FileEntry.of(path)) for label, path in parse_models(cfg.models)]
    if done := frame.open([data] + [model for _, _, model in models]):
        return done
    pairs = list(read_pairs(cfg.data, src_lang=cfg.source_lang, tgt_lang=cfg.target_lang))[: cfg.limit]
    if not pairs:
        raise ValueError(f"{cfg.data}: no test pairs")
    sources, references = [p.src for p in pairs], [p.tgt for p in pairs]
    results, failed = {}, []
    for label, path, model in models:
        unit = out / "models" / f"{_safe(label)}.json"
        key = frame.unit_fingerprint([data, model], leave_out="models")  # adding a model redoes no other
        if unit.exists() and (entry := json.loads(unit.read_text())).get("fingerprint") == key:
            results[label] = entry
            continue
        try:
            outputs = _translate(cfg, str(path), sources)
        except Exception as exc:  # noqa: BLE001 - one model failing must not stop the others
            log.error("%s: %s", label, exc)
            failed.append({"label": label, "path": str(path), "error": f"{type(exc).__name__}: {exc}"})
            continue
        hyps = [text for text, _ in outputs]
        hyp_path = out / "hypotheses" / f"{_safe(label)}.jsonl"
        write_jsonl(hyp_path, [{"id": p.id, "src": p.src, "ref": p.tgt, "hyp": h, "finish_reason": f}
                               for p, (h, f) in zip(pairs, outputs)])  # fmt: skip
        entry = {"label": label, "path": str(path), "n": len(pairs), **score(hyps, references),
                 "hypotheses": str(hyp_path), "fingerprint": key}  # fmt: skip
        atomic_write_text(unit, json.dumps(entry, ensure_ascii=False, indent=1))
        results[label] = entry
        print(f"{label}: BLEU {entry['bleu']} ({entry['bleu_signature']})  chrF++ {entry['chrf++']} ({entry['chrf_signature']})")
    report = {"data": cfg.data, "n": len(pairs), "models": results, "failed": failed}
    atomic_write_text(out / "results.json", json.dumps(report, ensure_ascii=False, indent=1))
    atomic_write_text(out / "results.md", markdown(report))
    if failed:
        raise ModelsFailedError("could not evaluate: " + "; ".join(f"{f['label']}: {f['error']}" for f in failed))
    counts = {"pairs": len(pairs), "models": len(results)}
    metrics = {f"{label}.{k}": r[k] for label, r in results.items() for k in ("bleu", "chrf++")}
    return frame.finish(counts, metrics, [out / "results.json"] + [r["hypotheses"] for r in results.values()])


def markdown(report: dict) -> str:
    lines = [f"Translation quality on `{report['data']}` ({report['n']} pairs)", "",
             "| model | BLEU | chrF++ |", "|---|---:|---:|"]  # fmt: skip
    for label, r in report["models"].items():
        lines.append(f"| {label} | {r['bleu']:.1f} | {r['chrf++']:.1f} |")
    for f in report["failed"]:
        lines.append(f"| {f['label']} | failed | {f['error'][:60]} |")
    if report["models"]:
        first = next(iter(report["models"].values()))
        lines += ["", f"BLEU: `{first['bleu_signature']}`  ", f"chrF++: `{first['chrf_signature']}`"]
    return "\n".join(lines) + "\n"
