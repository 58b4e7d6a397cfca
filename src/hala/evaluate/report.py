"""Turn per-subset scores into the paper's view: one number per benchmark, an average, a table, a chart.

A benchmark's score is the mean of its subsets' acc_norm (each subset weighs the same, as
lighteval's `<task>:_average` and the leaderboard do); the average is the mean of the benchmarks,
as in the paper's table (Hala-1.2B: the mean of its six scores is 51.45, reported as 51.4).
Scores are kept as lighteval reports them (fractions) and shown as percentages.
"""

from __future__ import annotations

from pathlib import Path

from hala.data.writers import atomic_path
from hala.evaluate.benchmarks import BENCHMARKS


def mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def benchmark_score(subsets: dict[str, dict]) -> float | None:
    """Macro average of the subsets' acc_norm."""
    return mean([s["acc_norm"] for s in subsets.values()])


def model_average(tasks: dict[str, dict]) -> float | None:
    """Mean of the benchmarks' scores."""
    return mean([t["acc_norm"] for t in tasks.values()])


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def _paper(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def markdown_table(results: dict) -> str:
    tasks = results["tasks"]
    heads = [BENCHMARKS[t].label for t in tasks] + ["average"]
    lines = [
        "# OALL v2 Arabic benchmarks (0-shot, acc_norm, %)",
        "",
        "| model | " + " | ".join(heads) + " |",
        "|---|" + "---:|" * len(heads),
    ]
    for model in results["models"]:
        if model["status"] == "ok":
            cells = [_pct(model["tasks"][t]["acc_norm"]) for t in tasks] + [_pct(model["average"])]
        else:
            cells = ["failed"] * len(heads)
        lines.append(f"| {model['label']} | " + " | ".join(cells) + " |")
    for row in results["paper"]["rows"]:
        scores = row["scores"] or {}
        cells = [_paper(scores.get(t)) for t in tasks] + [_paper(row["average"])]
        note = f" ({row['note']})" if row["note"] else ""
        lines.append(f"| paper: {row['name']}{note} | " + " | ".join(cells) + " |")
    lines += ["", *_notes(results), ""]
    return "\n".join(lines)


def _notes(results: dict) -> list[str]:
    metric = results["metric_lighteval"] or "acc with LogProbCharNorm"
    notes = [
        f"Each benchmark is the mean acc_norm of its subsets (lighteval, `{metric}`); average = mean of the benchmarks."
    ]
    if results["paper"]["rows"]:
        notes.append(f"Paper rows: {results['paper']['source']}; matched by {results['paper']['matched_by']}.")
    else:
        notes.append("No paper row shown: no model name matched a Hala model or its base (pass --paper-row).")
    notes += [f"Not comparable with the paper: {why}." for why in results["not_comparable"]]
    notes.append("")
    for model in results["models"]:
        if model["status"] == "ok":
            how = f"{model['backend']}, {model['dtype']}, chat template {'on' if model['chat_template'] else 'off'}"
            notes.append(f"- {model['label']}: `{model['path']}` ({how})")
        else:
            notes.append(f"- {model['label']}: `{model['path']}` **failed**: {model['error']}")
    return notes


def bar_chart(results: dict, path: str | Path) -> Path:
    """Grouped bars: one group per benchmark and the average, one bar per model (paper rows hatched)."""
    from matplotlib.figure import Figure

    tasks = results["tasks"]
    groups = [BENCHMARKS[t].label for t in tasks] + ["average"]
    series = [
        (m["label"], [100 * m["tasks"][t]["acc_norm"] for t in tasks] + [100 * m["average"]], False)
        for m in results["models"]
        if m["status"] == "ok"
    ]
    for row in results["paper"]["rows"]:
        if row["scores"]:
            series.append((f"paper: {row['name']}", [row["scores"][t] for t in tasks] + [row["average"]], True))
    fig = Figure(figsize=(max(6.0, 1.3 * len(groups) + 2), 4.6), dpi=120, layout="constrained")
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(series))
    for i, (label, values, from_paper) in enumerate(series):
        xs = [g + (i - (len(series) - 1) / 2) * width for g in range(len(groups))]
        ax.bar(xs, values, width, label=label, hatch="//" if from_paper else None, alpha=0.6 if from_paper else 1.0)
    ax.set_xticks(range(len(groups)), groups, rotation=20)
    ax.set_ylabel("acc_norm (%)")
    ax.set_ylim(0, 100)
    ax.set_title("OALL v2, 0-shot")
    ax.grid(axis="y", alpha=0.3)
    fig.legend(loc="outside lower center", fontsize="small", ncols=min(4, max(1, len(series))))
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path
