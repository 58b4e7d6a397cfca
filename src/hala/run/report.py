"""`hala report RUN_DIR`: one static HTML page a researcher can read and share.

It reads only what the stages left on disk (stage.json, manifest.json, results.json, pairs) and
writes OUT/report.html with its PNG plots beside it: the per-stage table, QA reject reasons, the
judge's calibration (figures and ROC curve), translation metrics, the benchmark table next to the
paper's numbers, and EN/AR samples with the Arabic set right-to-left. It opens with the paper's
headline claims beside this run's figures (`claim | paper | this run`). Tiny models make weak
translations, and Gemma-3-270M is a miniature of the paper's models: the page says which stood in
for what, and shows the numbers as they are.
"""

from __future__ import annotations

import html
import json
import re
from itertools import islice
from pathlib import Path

from pydantic import Field, model_validator

from hala.config import StrictModel
from hala.data.manifest import Manifest
from hala.data.output_lock import holds_output
from hala.data.writers import atomic_write_text
from hala.run.claims import paper_claims, read_json as _json

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2rem auto; max-width: 72rem; color: #222; }
table { border-collapse: collapse; margin: 1rem 0; } th, td { border: 1px solid #ccc; padding: .3rem .6rem; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.ar { direction: rtl; text-align: right; font-family: "Noto Naskh Arabic", "Noto Sans Arabic", "Amiri", "Scheherazade New", "Arial", sans-serif; font-size: 1.1em; }
.note { background: #fff7e0; border-left: 4px solid #e0a800; padding: .5rem 1rem; } img { max-width: 100%; }
"""


class ReportConfig(StrictModel):
    run: str = Field(description="the run folder written by hala run")
    out: str = Field("", description="default: RUN/report")
    samples: int = Field(20, ge=0)

    @model_validator(mode="after")
    def _out_in_the_run(self) -> ReportConfig:
        if not self.out:
            self.out = str(Path(self.run) / "report")
        return self


def _table(headers: list[str], rows: list[list], numeric: set[int] = frozenset()) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td class='num'>{c}</td>" if i in numeric else f"<td>{c}</td>" for i, c in enumerate(r)) + "</tr>"
        for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _stage_rows(run: Path) -> list[list]:
    from hala.run.runner import records
    from hala.run.stages import STAGES

    rows = []
    for stage in STAGES:
        folder = run / stage.name
        status = _json(records(run, stage.name)["state"])
        manifest = Manifest.read(folder) if (folder / "manifest.json").exists() else None
        counts = manifest.counts if manifest else {}
        shown = ", ".join(f"{k}={v}" for k, v in list(counts.items())[:8])
        seconds = status.get("seconds")
        tokens = counts.get("tokens_out")
        rate = f"{tokens / seconds:,.0f} tok/s" if tokens and seconds else ""
        state = "this page" if stage.name == "report" else status.get("state", "not run")
        rows.append([html.escape(stage.name), html.escape(state), len(manifest.inputs) if manifest else "",
                     len(manifest.outputs) if manifest else "", html.escape(shown), seconds if seconds is not None else "", rate])  # fmt: skip
    return rows


def _level(stage: str, key: str) -> str:
    """What a count counts: translate's `qa_*` are segment verdicts, its `rejected_*` conversations."""
    if key.startswith("qa_"):
        return "segments (final QA verdict)"
    if stage in ("teacher_translate", "translate", "decontaminate"):
        return "conversations"
    return "pairs"


def _rejects(run: Path) -> list[list]:
    rows = []
    for name in ("teacher_translate", "judge", "pairs", "translate", "decontaminate"):
        manifest = Manifest.read(run / name) if (run / name / "manifest.json").exists() else None
        for key, value in sorted((manifest.counts if manifest else {}).items()):
            reason = key.startswith(("rejected_", "qa_", "filtered_", "verdict_")) and key != "qa_passed"
            if reason and value:
                rows.append([name, _level(name, key), html.escape(key), value])
    return rows


def _translation(run: Path, out: Path) -> str:
    results = _json(run / "eval_translation" / "results.json")
    models = results.get("models", {})
    if not models:
        return "<p>No translation evaluation in this run.</p>"
    rows = [[html.escape(label), f"{r['bleu']:.1f}", f"{r['chrf++']:.1f}"] for label, r in models.items()]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3))
    labels = list(models)
    ax.bar([x - 0.2 for x in range(len(labels))], [models[m]["bleu"] for m in labels], 0.4, label="BLEU")
    ax.bar([x + 0.2 for x in range(len(labels))], [models[m]["chrf++"] for m in labels], 0.4, label="chrF++")
    ax.set_xticks(range(len(labels)), labels, rotation=15)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "translation.png", dpi=110)
    plt.close(fig)
    signature = next(iter(models.values()))
    return (_table(["model", "BLEU", "chrF++"], rows, {1, 2}) + "<img src='translation.png' alt='BLEU and chrF++'>"
            + f"<p><small>{html.escape(signature['bleu_signature'])}<br>{html.escape(signature['chrf_signature'])}</small></p>")  # fmt: skip


def _judge(run: Path, out: Path) -> str:
    """The judge's calibration on its gold set: the figures, AUC per corruption, and the ROC curve."""
    figures = _json(run / "judge" / "calibration.json")
    if not figures:
        return "<p>The judge was not calibrated in this run (set judge.gold).</p>"
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3.6, 3.6))
    xs, ys = zip(*figures["roc"])
    ax.plot(xs, ys, drawstyle="steps-post", label=f"AUC {figures['auc']:.3f}")
    ax.plot([0, 1], [0, 1], "--", color="#999", linewidth=0.8)
    ax.set_xlabel("bad pairs accepted (false accept rate)")
    ax.set_ylabel("good pairs accepted")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(out / "judge_roc.png", dpi=110)
    plt.close(fig)
    about = (f"<p>mode <code>{html.escape(figures['mode'])}</code>, model <code>{html.escape(figures['model'])}</code>, "
             f"{figures['pairs']} gold pairs ({html.escape(Path(figures['gold']).name)}); verdicts at threshold "
             f"{figures['threshold']:.4f} (best balanced accuracy at {figures['best_threshold']:.4f}).</p>")  # fmt: skip
    overall = [[f"{figures['auc']:.3f}", f"{figures['accuracy']:.3f}", f"{figures['balanced_accuracy']:.3f}",
                f"{figures['reject_precision']:.3f}", f"{figures['reject_recall']:.3f}", f"{figures['kappa']:.3f}"]]  # fmt: skip
    kinds = [[html.escape(k), figures["count_by_kind"].get(k, ""), f"{auc:.3f}"] for k, auc in figures["auc_by_kind"].items()]
    return (about + _table(["ROC AUC", "accuracy", "balanced accuracy", "REJECT precision", "REJECT recall", "Cohen's κ"],
                           overall, set(range(6)))
            + _table(["corruption", "pairs", "ROC AUC (good vs this kind)"], kinds, {1, 2})
            + "<img src='judge_roc.png' alt='the judge ROC curve on the gold set'>")  # fmt: skip


def markdown(text: str) -> str:
    """Markdown (tables included) as HTML; raw HTML in the text is escaped, not passed through."""
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": False}).enable("table").render(text)


def _bench(run: Path, out: Path) -> str:
    md = run / "bench" / "results.md"
    if not md.exists():
        return "<p>No benchmark in this run.</p>"
    text = md.read_text(encoding="utf-8")
    text = re.sub(r"\A# [^\n]*\n", "", text)  # its title is this section's heading
    chart = run / "bench" / "scores.png"
    img = ""
    if chart.exists():
        (out / "bench.png").write_bytes(chart.read_bytes())
        img = "<img src='bench.png' alt='benchmark scores'>"
    return markdown(text) + img


def _samples(run: Path, n: int) -> str:
    found = ((folder, json.loads(line)) for folder in ("translate", "teacher_translate")
             for path in sorted((run / folder / "pairs").glob("*.jsonl")) for line in path.read_text(encoding="utf-8").splitlines())  # fmt: skip
    rows = [[folder, html.escape(pair["src"][:400]), f"<div class='ar' dir='rtl' lang='ar'>{html.escape(pair['tgt'][:400])}</div>"]
            for folder, pair in islice(((f, p) for f, p in found if len(p["src"]) > 15), n)]  # fmt: skip
    return _table(["stage", "English", "Arabic"], rows) if rows else "<p>No translated samples.</p>"


def _models_note(names: list[str]) -> str:
    """What the built-in models stand in for, and the terms a Gemma derivative comes under."""
    notes = []
    if any(name.startswith("tiny-") for name in names):
        notes.append("This run used tiny random models (two layers, a tokenizer trained on the bundled samples): "
                     "their translations and scores are weak by construction; they show the chain works, not "
                     "what the paper's models reach.")  # fmt: skip
    if "gemma3-270m" in names:
        notes.append("Gemma-3-270M (a 268M-parameter multilingual base model) stands in for the paper's models "
                     "on this CPU: warmed up on the bundled seed pairs it plays the teacher (the paper: "
                     "Command-A-Translate, 111B), and its base is the translator and the Hala base (the paper: "
                     "LFM2). Expect a miniature's figures, not the paper's. Gemma and the models trained from it "
                     "here are subject to the Gemma Terms of Use (https://ai.google.dev/gemma/terms); see "
                     "NOTICE.txt in each model folder.")  # fmt: skip
    if "smollm2" in names:
        notes.append("SmolLM2-135M-Instruct is English-only: it can't translate into Arabic.")
    return "".join(f"<p class='note'>{html.escape(n)}</p>" for n in notes)


@holds_output()
def report(cfg: ReportConfig) -> Manifest:
    run, out = Path(cfg.run), Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    models = _json(run / "models" / "manifest.json").get("config", {}).get("names", [])
    claims = paper_claims(run)
    parts = [
        f"<h1>hala run: {html.escape(run.name)}</h1>",
        _models_note(models),
        "<h2>The paper's claims beside this run</h2>",
        _table(["claim", "paper", "this run"], claims) if claims else "<p>No figures yet.</p>",
        "<h2>Stages</h2>",
        _table(["stage", "state", "inputs", "outputs", "counts", "seconds", "throughput"], _stage_rows(run), {2, 3, 5}),
        "<h2>Quality control: reject reasons</h2>",
        _table(["stage", "counted in", "reason", "count"], _rejects(run), {3}),
        "<h2>The judge: calibration on the gold set</h2>",
        _judge(run, out),
        "<h2>Translation quality (held-out test pairs)</h2>",
        _translation(run, out),
        "<h2>OALL v2 benchmarks (0-shot, acc_norm) beside the paper</h2>",
        _bench(run, out),
        f"<h2>Samples (EN / AR)</h2>",
        _samples(run, cfg.samples),
    ]
    page = f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>hala report</title><style>{STYLE}</style></head><body>{''.join(parts)}</body></html>"
    atomic_write_text(out / "report.html", page)
    from hala.run.release import write_release

    write_release(run, run.name)
    manifest = Manifest(stage="report", config=cfg.identity(), counts={"stages": len(_stage_rows(run))})
    manifest.write(out)
    return manifest
