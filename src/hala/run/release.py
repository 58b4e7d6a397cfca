"""Release folders: every model and the final corpus leave the run ready for the Hugging Face Hub.

Models (the translator, the SFT model, the merged model) get a model card naming their base, data,
recipe and scores; the corpus SFT trained on (the translated one, decontaminated when the chain
decontaminates) gets Parquet shards and a dataset card with counts, sources, filters, the
benchmark items taken out, and license notes. `publish` pushes them with huggingface_hub when a
token is set; it can't be tested offline, so it stays a thin call.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

from hala.data.manifest import Manifest
from hala.data.rows import expand_inputs, iter_rows
from hala.data.writers import atomic_write_text
from hala.models.licenses import card_license, license_files

MODELS = {  # stage -> (folder with the weights, what it is)
    "translator": ("translator/model", "an English-to-Arabic translator (paper, stage 3)"),
    "sft": ("sft/model", "an Arabic instruction model, supervised fine-tune (paper, stage 5)"),
    "merge": ("merge", "an Arabic instruction model, SLERP of the fine-tune with its base (paper, stage 6)"),
}


def _manifest(run: Path, stage: str) -> Manifest | None:
    return Manifest.read(run / stage) if (run / stage / "manifest.json").exists() else None


def _scores(run: Path) -> dict:
    bench = run / "bench" / "results.json"
    translation = run / "eval_translation" / "results.json"
    out = {}
    if bench.exists():
        out["bench"] = json.loads(bench.read_text())
    if translation.exists():
        out["translation"] = json.loads(translation.read_text()).get("models", {})
    return out


def model_card(run: Path, stage: str, recipe_name: str) -> str:
    folder, what = MODELS[stage]
    manifest = _manifest(run, stage)
    config = manifest.config if manifest else {}
    base = config.get("base") or config.get("model", "")
    data = config.get("data") or [config.get("model", "")]
    scores = _scores(run)
    license = card_license(base) if base and Path(base).is_dir() else None
    lines = ["---", "language: [ar, en]", "library_name: transformers", "tags: [hala, arabic]",
             *([f"license: {license}"] if license else []), "---", "",
             f"# {recipe_name}: {stage}", "", f"This is {what}, built with hala's `{recipe_name}` recipe.", "",
             f"- base model: `{base}`", f"- training data: {', '.join(f'`{d}`' for d in data)}",
             f"- recipe: `{recipe_name}` (hala's resolved config is in `_stages/{stage}.config.json` of the run)"]  # fmt: skip
    if stage == "translator" and "translation" in scores:
        for label, r in scores["translation"].items():
            lines.append(f"- {label}: BLEU {r['bleu']}, chrF++ {r['chrf++']} on `{r.get('path', '')}`")
    bench_md = run / "bench" / "results.md"
    if stage in ("sft", "merge") and bench_md.exists():
        lines += ["", "## OALL v2 (0-shot, acc_norm)", "", bench_md.read_text(encoding="utf-8")]
    carried = license_files(run / folder)
    if license or carried:
        lines += ["", "## License", "", f"Derived from `{base}`" + (f", under its license ({license})." if license else "."),
                  *[p.read_text(encoding="utf-8").strip() for p in carried if p.name.startswith("NOTICE")],
                  *([f"The base model's license files are in this folder: {', '.join(p.name for p in carried)}."]
                    if carried else [])]  # fmt: skip
    return "\n".join(lines) + "\n"


# the licenses the paper's English sources state on their Hugging Face cards (checked 2026-12);
# a source not listed here, or one whose card states none, is shown as such: check it yourself
DATASET_LICENSES = {
    "Open-Orca/OpenOrca": "mit",
    "NousResearch/Hermes-3-Dataset": "apache-2.0",
    "EricLu/SCP-116K": "cc-by-nc-sa-4.0",
    "GAIR/ReAlign-Alpaca": "not stated on its card",
    "MBZUAI/LaMini-instruction": "cc-by-nc-4.0",
    "allenai/tulu-3-sft-mixture": "odc-by (subsets carry their own licenses)",
    "Dahoas/synthetic-instruct-gptj-pairwise": "not stated on its card",
}


def _source_license(dataset: str) -> str:
    name = dataset.removeprefix("hf://").split(":")[0]
    return DATASET_LICENSES.get(name, "see the source" if dataset.startswith("hf://") else "local file: see its origin")


def _rejects_by_source(run: Path, files: dict[str, str]) -> Counter:
    """(source, kind) -> how many of its conversations translate rejected."""
    found: Counter = Counter()
    for path in sorted((run / "translate" / "rejected").glob("*.jsonl")):
        for row in iter_rows(path):
            if row.data is not None:
                found[(files.get(row.data.get("file", ""), row.data.get("file", "?")), row.data.get("kind", "?"))] += 1
    return found


def dataset_card(run: Path, recipe_name: str, kept_by_source: Counter | None = None) -> str:
    """The corpus's card: per source its conversations kept and rejected (by reason) and its license,
    then the run's filter counts. `kept_by_source`: conversations per source (from each row's lineage)."""
    manifest = _manifest(run, "translate")
    counts = manifest.counts if manifest else {}
    inputs = (manifest.config.get("inputs") if manifest else None) or []
    files = {f: ref for ref in inputs for f in expand_inputs(ref)} if (run / "translate" / "rejected").exists() else {}
    rejected = _rejects_by_source(run, files)
    kept = kept_by_source or Counter()
    sources = list(dict.fromkeys([*inputs, *kept, *(s for s, _ in rejected)]))
    filters = {k: v for k, v in counts.items() if k.startswith(("qa_", "rejected_"))}
    clean = decontaminate.counts if (decontaminate := _manifest(run, "decontaminate")) else {}
    found = {k: v for k, v in clean.items() if k.startswith("contaminated[")}
    decontaminated = ["", "## Decontamination", f"{clean['contaminated']} of {clean['rows_in']} conversations held an "
                      "OALL v2 benchmark question or passage and were taken out (`hala data decontaminate`):",
                      *[f"- {k}: {v}" for k, v in sorted(found.items())]] if "rows_in" in clean else []  # fmt: skip
    audited = audit.counts if (audit := _manifest(run, "audit")) else {}
    flags = {k[len("flagged_"):]: v for k, v in audited.items() if k.startswith("flagged_")}
    audit_lines = ["", "## Audit", f"`hala data audit` of this corpus: {audited['flagged']} of {audited['rows']} "
                   "conversations flagged by at least one check (details in the run's `audit/`):",
                   *[f"- {k}: {v}" for k, v in flags.items()]] if "rows" in audited else []  # fmt: skip
    lines = ["---", "language: [ar]", "task_categories: [text-generation]", "tags: [hala, arabic, sft]", "---", "",
             f"# {recipe_name}: translated Arabic instruction corpus", "",
             f"{counts.get('rows_out', 0)} conversations translated segment by segment by hala's translator, in the "
             "ShareGPT or messages schema (see `data/`). Rejected conversations are kept apart with their reasons. "
             "Every row carries its lineage in `meta.lineage`: its source and row, the translator's content hash, "
             "the prompt's hash and what QA did.", "",
             "## Sources", "", "| source | conversations kept | rejected (by reason) | license |", "|---|---|---|---|",
             *[f"| `{s}` | {kept.get(s, 0)} | "
               f"{', '.join(f'{k} {n}' for (src, k), n in sorted(rejected.items()) if src == s) or '0'} | "
               f"{_source_license(s)} |" for s in sources],
             "", "## Quality filters (counts)", "",
             "`qa_*` count segments (the final verdict of each); `rejected_*` count conversations.", "",
             *[f"- {k}: {v}" for k, v in sorted(filters.items())], *decontaminated, *audit_lines, "", "## License", "",
             "Translations inherit the licenses of their English sources (the table above); check each source's terms "
             "before redistributing. hala's code is Apache-2.0."]  # fmt: skip
    return "\n".join(lines) + "\n"


def write_release(run: Path, recipe_name: str) -> list[Path]:
    """Model cards into every model folder and a Parquet corpus with its card; returns the folders."""
    written = []
    for stage, (folder, _) in MODELS.items():
        target = run / folder
        if (target / "config.json").exists():
            atomic_write_text(target / "README.md", model_card(run, stage, recipe_name))
            written.append(target)
    data = next((d for d in (run / "decontaminate" / "data", run / "translate" / "data") if d.exists()), None)
    if data is not None:  # the corpus sft trained on
        from hala.data.readers import read_conversations
        from hala.data.writers import ShardedWriter

        corpus = run / "release" / "corpus"
        kept: Counter = Counter()
        with ShardedWriter(corpus / "data", "train", "parquet", 200_000) as writer:
            for path in sorted(data.glob("*")):
                for conv in read_conversations(path):
                    kept[conv.meta.get("lineage", {}).get("dataset", conv.source)] += 1
                    writer.write(conv.to_sharegpt() | {"meta": conv.meta})
        atomic_write_text(corpus / "README.md", dataset_card(run, recipe_name, kept))
        written.append(corpus)
    return written


def publish(folders: list[Path], repo_prefix: str) -> list[str]:  # pragma: no cover - needs the hub
    """Push each release folder to `repo_prefix + folder name` (HF_TOKEN must be set)."""
    from huggingface_hub import HfApi

    token = os.environ.get("HF_TOKEN")
    if not token:
        raise ValueError("HF_TOKEN is not set: publishing needs a Hugging Face token")
    api, urls = HfApi(token=token), []
    for folder in folders:
        repo = f"{repo_prefix}{folder.parent.name if folder.name in ('model', 'corpus') else folder.name}"
        kind = "dataset" if folder.name == "corpus" else "model"
        api.create_repo(repo, repo_type=kind, exist_ok=True)
        urls.append(str(api.upload_folder(folder_path=str(folder), repo_id=repo, repo_type=kind)))
    return urls
