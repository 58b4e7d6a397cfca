"""Time to a first answer of hala's vLLM engine on a CPU: in this process (hala's CPU default) vs
vLLM's default of an engine-core process and a worker process; and eager (hala's CPU default) vs
vLLM's torch.compile (`enforce_eager: false`, in this process too).

Each variant runs in a fresh child process, alternating, so neither finds the other's imports
warm: the clock runs from the child's start (imports included, as a stage process pays them) to
its first answer of 8 greedy requests, then the same batch is timed once more warm (generation
itself should not change between the two process layouts: one worker computes either way; the
compiled variant is there to show whether torch.compile's start-up buys faster generation). The
tiny recipe starts six vLLM engines, so the difference is paid six times per `make demo`.

Usage: python benchmarks/vllm_startup.py [--model DIR] [--repeats 2] [--max-tokens 16]
(default model: a tiny random Llama; pass Gemma-3-270M's folder for the demo's engine)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

CHILD = """
import json, sys, time
start = time.perf_counter()
from hala.engines import EngineConfig, SamplingParams, get_engine
if __name__ == "__main__":
    eager = sys.argv[2] == "eager"
    engine = get_engine(EngineConfig(kind="vllm", model=sys.argv[1], dtype="float32", max_model_len=512, enforce_eager=eager))
    chats = [[{"role": "user", "content": f"Say something about the number {i}."}] for i in range(8)]
    params = SamplingParams(max_tokens=int(sys.argv[3]))
    engine.chat(chats, params)
    first = time.perf_counter() - start
    again = time.perf_counter()
    engine.chat(chats, params)
    print(json.dumps({"first_answer_s": first, "warm_batch_s": time.perf_counter() - again}))
    engine.close()
"""


VARIANTS = {  # name: (in this process, eager)
    "in_process": (True, True), "processes": (False, True), "compiled": (True, False),
}  # fmt: skip


def run(model: str, variant: str, max_tokens: int) -> dict:
    in_process, eager = VARIANTS[variant]
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1")}
    env["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0" if in_process else "1"
    code = CHILD if in_process else CHILD.replace(
        "enforce_eager=eager)", 'enforce_eager=eager, vllm_kwargs={"distributed_executor_backend": "mp"})'
    )
    argv = [sys.executable, "-c", code, model, "eager" if eager else "compiled", str(max_tokens)]
    with tempfile.TemporaryDirectory() as cache:  # torch.compile's cache starts empty, as on a fresh machine
        env["VLLM_CACHE_ROOT"] = cache
        out = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=900)
    if out.returncode:
        raise RuntimeError(out.stderr[-3000:])
    # vLLM may print after the child's figures (its shutdown): take the child's own line
    return json.loads(next(line for line in reversed(out.stdout.splitlines()) if line.startswith('{"first_answer_s"')))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=None, help="HF model folder (default: a tiny random Llama)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=16, help="per request, 8 requests a batch")
    args = parser.parse_args()
    from hala.models.tiny import make_tiny_llama

    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or str(make_tiny_llama(os.path.join(tmp, "tiny"), hidden_size=256, layers=4))
        runs: dict[str, list[dict]] = {name: [] for name in VARIANTS}
        for _ in range(args.repeats):
            for name in runs:
                runs[name].append(run(model, name, args.max_tokens))
                print(name, runs[name][-1], flush=True)
    med = {name: {k: statistics.median(r[k] for r in rs) for k in ("first_answer_s", "warm_batch_s")} for name, rs in runs.items()}
    print(json.dumps({
        "model": args.model or "tiny-llama", "repeats": args.repeats, "max_tokens": args.max_tokens,
        "first_answer_s": {name: round(m["first_answer_s"], 1) for name, m in med.items()},
        "warm_batch_s": {name: round(m["warm_batch_s"], 2) for name, m in med.items()},
        "first_answer_ratio_in_process_over_processes": round(med["in_process"]["first_answer_s"] / med["processes"]["first_answer_s"], 3),
        "warm_batch_ratio_in_process_over_processes": round(med["in_process"]["warm_batch_s"] / med["processes"]["warm_batch_s"], 3),
        "first_answer_ratio_eager_over_compiled": round(med["in_process"]["first_answer_s"] / med["compiled"]["first_answer_s"], 3),
        "warm_batch_ratio_eager_over_compiled": round(med["in_process"]["warm_batch_s"] / med["compiled"]["warm_batch_s"], 3),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
