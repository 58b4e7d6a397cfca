"""`hala translate` at scale with the fake engine: wall time and peak RSS for 100k and 1M conversations.

The fake engine costs nothing, so this measures hala itself: reading, segmenting, the SQLite
cache, QA (lingua), rebuilding and writing. Each size runs in a fresh process (peak RSS is per
process). Targets from issue #3: 1M conversations in <= 5 minutes on this 2-core machine, peak RSS
<= 1 GB and flat as the input grows.

Usage: python benchmarks/translate_scale.py [--sizes 100000 1000000] [--workers 1]
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORDS = ("the model translates every segment into Arabic while code and math stay exactly as they were "
         "researchers check quality with filters that count each reason a conversation was rejected").split()  # fmt: skip


def synth(path: Path, n: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as handle:
        for i in range(n):
            q = " ".join(rng.choices(WORDS, k=rng.randint(8, 20))).capitalize()
            a = " ".join(rng.choices(WORDS, k=rng.randint(15, 40))).capitalize()
            row = {"id": f"s{i}", "messages": [
                {"role": "user", "content": f"{q}? Use `x{i % 97}` here."},
                {"role": "assistant", "content": f"{a}.\n\n- {' '.join(rng.choices(WORDS, k=6))}\n- value ${i % 13}$"},
            ]}  # fmt: skip
            handle.write(json.dumps(row) + "\n")


def run_one(n: int, workers: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "in.jsonl"
        synth(data, n)
        code = (
            "import json, resource, sys, time\n"
            "from hala.translate.config import TranslateConfig\n"
            "from hala.translate.pipeline import translate\n"
            "if __name__ == '__main__':\n"
            f"    cfg = TranslateConfig(inputs=[{str(data)!r}], out={str(Path(tmp) / 'out')!r}, engine={{'kind': 'fake', 'model': 'm'}},\n"
            f"                          rows_per_unit=10000, batch_size=8192, progress=False, executor={'local' if workers > 1 else 'none'!r}, workers={workers})\n"
            "    t = time.perf_counter(); m = translate(cfg); wall = time.perf_counter() - t\n"
            "    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024\n"
            "    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024\n"
            "    print(json.dumps({'wall_s': wall, 'peak_rss_mb': max(rss, kids), 'rows_out': m.counts['rows_out'], 'segments': m.counts['segments']}))\n"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    results = {}
    for n in args.sizes:
        r = run_one(n, args.workers)
        results[n] = r
        print(f"{n:>9,} conversations: {r['wall_s']:.1f}s, {n / r['wall_s']:,.0f} conv/s, peak RSS {r['peak_rss_mb']:.0f} MB, "
              f"{r['rows_out']:,} accepted, {r['segments']:,} segments")  # fmt: skip
    small, large = min(results), max(results)
    figures = {
        f"wall_s_{large}": round(results[large]["wall_s"], 1),
        f"conv_per_s_{large}": round(large / results[large]["wall_s"]),
        f"peak_rss_mb_{small}": round(results[small]["peak_rss_mb"]),
        f"peak_rss_mb_{large}": round(results[large]["peak_rss_mb"]),
        "rss_growth_ratio": round(results[large]["peak_rss_mb"] / results[small]["peak_rss_mb"], 2),
        "workers": args.workers,
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
