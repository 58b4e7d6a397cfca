"""`hala eval bench` on a CPU: lighteval's own transformers model (`--backend hf`) against hala's
transformers engine (`--backend transformers`), on the same model, items and tokens.

lighteval's model projects every position of every context onto the vocabulary and log-softmaxes
it; for Gemma-3-270M (a 262k vocabulary, 168M of its 268M parameters in the head) that is most of
the work. hala's engine runs the decoder over every position and the head over each choice's
tokens only. Both score the same token sequences, so the scores must agree: the script reports
the largest difference of any choice's log-probability beside the wall-time ratio.

Each backend runs in its own `hala eval bench` child process (imports and model load included,
as the demo's bench stage pays them), alternating, `--repeats` times.

Usage: python benchmarks/bench_backends.py [--model DIR] [--limit 2] [--repeats 1]
(default model: Gemma-3-270M from the machine's model copy, `hala models gemma3-270m`)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(model: str, backend: str, limit: int, out: Path) -> float:
    command = [sys.executable, "-m", "hala.cli", "eval", "bench", "-m", f"m={model}", "--backend", backend,
               "--limit", str(limit), "-o", str(out), "--paper-row", "none"]  # fmt: skip
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    return time.perf_counter() - start


def details(out: Path) -> dict:
    rows = [json.loads(line) for line in (out / "details" / "m.jsonl").read_text(encoding="utf-8").splitlines()]
    return {(r["task"], r["id"]): r["logprobs"] for r in rows}


def main() -> None:
    from hala.models.builtin import cache_dir

    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=str(cache_dir() / "gemma3-270m"))
    parser.add_argument("--limit", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    times: dict[str, list[float]] = {"hf": [], "transformers": []}
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(args.repeats):
            for backend in times:
                out = Path(tmp) / f"{backend}-{k}"
                times[backend].append(run(args.model, backend, args.limit, out))
                print(f"{backend}: {times[backend][-1]:.1f} s", flush=True)
        hf, ours = details(Path(tmp) / "hf-0"), details(Path(tmp) / "transformers-0")
        assert hf.keys() == ours.keys(), "the two backends scored different items"
        diff = max(abs(a - b) for key in hf for a, b in zip(hf[key], ours[key]))
    hf_s, ours_s = statistics.median(times["hf"]), statistics.median(times["transformers"])
    print(json.dumps({
        "benchmark": "bench_backends", "model": Path(args.model).name, "limit": args.limit, "items": len(hf),
        "choices": sum(len(v) for v in hf.values()), "hf_s": round(hf_s, 1), "transformers_s": round(ours_s, 1),
        "transformers_over_hf": round(ours_s / hf_s, 3), "max_abs_logprob_diff": diff, "repeats": args.repeats,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
