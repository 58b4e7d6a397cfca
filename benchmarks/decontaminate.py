"""`hala data decontaminate` at the real OALL v2 size: index build time, rows/s and peak RSS.

The six OALL v2 datasets hold about 60k scored rows; the bundled mini data holds 169 items, so the
benchmark folder is synthesised in the layout `hala eval bench --data-dir` reads: 60k rows in the
six datasets' columns and rough proportions, 80% with a question (median ~14 words), 20% with a
passage too (median ~90 words; AlGhafa's in its query, ArabicMMLU's and MadinahQA's in Context),
~72k indexed items in all. The words follow a Zipf-Mandelbrot law over 50k words (the bundled
items' own words, most frequent first, then random Arabic words). The corpus is 100k
conversations from the same vocabulary (a user turn of 10-80 words, an assistant turn of 50-400),
1% of them holding an item in their user turn (a question verbatim, or 60% of a passage). The
stage runs as the command does, in its own process; `rows_per_s` is its own work (reading,
searching, writing: the manifest's total less the index build), and `time_over_bare_copy` that
work against a bare loop that reads and writes the same rows (`json.loads`, `json.dumps`). Every
planted row must be flagged, and no other.

Usage: python benchmarks/decontaminate.py [--rows 100000] [--items 60000]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

# the six datasets' scored items, roughly (test splits; AraTrust's train), and where a passage goes
SHARES = {"alghafa": 0.36, "arabic_mmlu": 0.24, "arabic_mmlu_ht": 0.23, "madinah_qa": 0.06, "arabic_exams": 0.05,
          "aratrust": 0.06}  # fmt: skip
LETTERS = "ابتثجحخدذرزسشصضطظعغفقكلمنهوي"


def vocabulary(rng: np.random.Generator, size: int) -> list[str]:
    """The bundled items' words, most frequent first, then random Arabic words up to `size`."""
    from hala.evaluate.benchmarks import bundled_data_dir
    from hala.decontaminate.index import TEXT_FIELDS

    fields = {f for names in TEXT_FIELDS.values() for f in names}
    rows = [json.loads(line) for f in sorted(bundled_data_dir().rglob("*.jsonl"))
            for line in f.read_text(encoding="utf-8").splitlines()]  # fmt: skip
    counts = Counter(w for row in rows for key, value in row.items() if key in fields and value for w in value.split())
    words = dict.fromkeys(w for w, _ in counts.most_common())
    while len(words) < size:
        words.setdefault("".join(rng.choice(list(LETTERS), rng.integers(3, 9))), None)
    return list(words)[:size]


def sampler(rng: np.random.Generator, vocab: list[str]):
    """Texts of n words drawn from a Zipf-Mandelbrot law (rank + 2.7), as word frequencies in text fall."""
    cdf = np.cumsum(1 / (np.arange(1, len(vocab) + 1) + 2.7))
    cdf /= cdf[-1]
    return lambda n: " ".join(vocab[i] for i in np.searchsorted(cdf, rng.random(n)).tolist())


def bench_dir(root: Path, items: int, text, rng) -> list[tuple[str, bool]]:
    """Write the synthetic OALL v2 folder; returns every item's (text, is a passage)."""
    from hala.evaluate.benchmarks import BENCHMARKS

    made = []
    for key, share in SHARES.items():
        bench, rows = BENCHMARKS[key], []
        for i in range(int(items * share)):
            passage = key in ("alghafa", "arabic_mmlu", "madinah_qa") and rng.random() < 0.3  # 20% of all items
            n = int(np.clip(rng.lognormal(np.log(90 if passage else 14), 0.4), 40 if passage else 4, 300))
            item = text(n)
            made.append((item, passage))
            question = text(int(rng.integers(6, 15))) if passage else item
            context = item if passage else None
            if key == "alghafa":
                rows.append({"query": f"{context}\n{question}" if passage else question, "sol1": "أ", "label": "0"})
            elif key in ("arabic_mmlu", "madinah_qa"):
                rows.append({"ID": i, "Question": question, "Context": context, "Answer Key": "A"})
            else:
                rows.append({"id": str(i), "question": question, "Question": question, "answer": 0})
        folder = root / bench.hf_repo / bench.example_subset
        folder.mkdir(parents=True)
        lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        (folder / f"{bench.eval_split}.jsonl").write_text(lines, encoding="utf-8")
    return made


def corpus(path: Path, rows: int, items: list[tuple[str, bool]], text, rng) -> set[str]:
    """Write the conversations; returns the ids of those holding an item."""
    planted = set()
    with path.open("w", encoding="utf-8") as handle:
        for i in range(rows):
            user, answer = text(int(rng.integers(10, 80))), text(int(rng.integers(50, 400)))
            if rng.random() < 0.01:
                item, passage = items[int(rng.integers(len(items)))]
                words = item.split()
                user = f"{user} {' '.join(words[: len(words) * 6 // 10]) if passage else item} {text(5)}"
                planted.add(f"r{i}")
            turns = [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]
            row = {"id": f"r{i}", "messages": turns}
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    return planted


def bare_copy(src: Path, dst: Path) -> float:
    started = time.perf_counter()
    with src.open(encoding="utf-8") as reader, dst.open("w", encoding="utf-8") as writer:
        for line in reader:
            writer.write(json.dumps(json.loads(line), ensure_ascii=False) + "\n")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=60_000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    text = sampler(rng, vocabulary(rng, 50_000))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        items = bench_dir(root / "oall", args.items, text, rng)
        planted = corpus(root / "corpus.jsonl", args.rows, items, text, rng)
        started = time.perf_counter()
        command = [sys.executable, "-m", "hala.cli", "data", "decontaminate", "-i", str(root / "corpus.jsonl"),
                   "-o", str(root / "out"), "--bench-dir", str(root / "oall")]  # fmt: skip
        subprocess.run(command, check=True, capture_output=True, text=True)
        wall = time.perf_counter() - started
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        manifest = json.loads((root / "out" / "manifest.json").read_text())
        flagged = {json.loads(json.loads(line)["raw"])["id"] for f in (root / "out" / "rejected").glob("*.jsonl")
                   for line in f.read_text(encoding="utf-8").splitlines()}  # fmt: skip
        copy = bare_copy(root / "corpus.jsonl", root / "copy.jsonl")
    counts, timings = manifest["counts"], manifest["timings"]
    work = timings["total_s"] - timings["index"]  # reading, searching, writing
    result = {
        "rows": args.rows, "bench_items": counts["bench_items"], "index_build_s": timings["index"],
        "wall_s": round(wall, 1), "rows_per_s": round(args.rows / work), "peak_rss_mb": round(peak),
        "bare_copy_rows_per_s": round(args.rows / copy), "time_over_bare_copy": round(work / copy, 2),
        "planted": len(planted),
        "planted_flagged": len(planted & flagged), "clean_flagged": len(flagged - planted),
    }  # fmt: skip
    print(json.dumps(result))


if __name__ == "__main__":
    main()
