"""Time to a first answer of hala's vLLM engine on a CPU: in this process (hala's CPU default) vs
vLLM's default of an engine-core process and a worker process.

Each variant runs in a fresh child process, alternating, so neither finds the other's imports
warm: the clock runs from the child's start (imports included, as a stage process pays them) to
its first answer of 8 greedy requests, then the same batch is timed once more warm (generation
itself should not change: one worker computes either way). The tiny recipe starts six vLLM engines,
so the difference is paid seven times per `make demo`.

Usage: python benchmarks/vllm_startup.py [--model DIR] [--repeats 2]
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
    engine = get_engine(EngineConfig(kind="vllm", model=sys.argv[1], dtype="float32", max_model_len=512, enforce_eager=True))
    chats = [[{"role": "user", "content": f"Say something about the number {i}."}] for i in range(8)]
    params = SamplingParams(max_tokens=16)
    engine.chat(chats, params)
    first = time.perf_counter() - start
    again = time.perf_counter()
    engine.chat(chats, params)
    print(json.dumps({"first_answer_s": first, "warm_batch_s": time.perf_counter() - again}))
    engine.close()
"""


def run(model: str, in_process: bool) -> dict:
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1")}
    env["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0" if in_process else "1"
    code = CHILD if in_process else CHILD.replace(
        'enforce_eager=True)', 'enforce_eager=True, vllm_kwargs={"distributed_executor_backend": "mp"})'
    )
    out = subprocess.run([sys.executable, "-c", code, model], capture_output=True, text=True, env=env, timeout=900)
    if out.returncode:
        raise RuntimeError(out.stderr[-3000:])
    # vLLM may print after the child's figures (its shutdown): take the child's own line
    return json.loads(next(line for line in reversed(out.stdout.splitlines()) if line.startswith('{"first_answer_s"')))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=None, help="HF model folder (default: a tiny random Llama)")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    from hala.models.tiny import make_tiny_llama

    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or str(make_tiny_llama(os.path.join(tmp, "tiny"), hidden_size=256, layers=4))
        runs: dict[str, list[dict]] = {"in_process": [], "processes": []}
        for _ in range(args.repeats):
            for name in runs:
                runs[name].append(run(model, in_process=name == "in_process"))
                print(name, runs[name][-1], flush=True)
    med = {name: {k: statistics.median(r[k] for r in rs) for k in ("first_answer_s", "warm_batch_s")} for name, rs in runs.items()}
    print(json.dumps({
        "model": args.model or "tiny-llama", "repeats": args.repeats,
        "first_answer_s": {name: round(m["first_answer_s"], 1) for name, m in med.items()},
        "first_answer_ratio_in_process_over_processes": round(med["in_process"]["first_answer_s"] / med["processes"]["first_answer_s"], 3),
        "warm_batch_ratio_in_process_over_processes": round(med["in_process"]["warm_batch_s"] / med["processes"]["warm_batch_s"], 3),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
