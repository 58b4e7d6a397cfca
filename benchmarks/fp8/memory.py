"""Peak RSS of `hala quantize` (streaming) vs llm-compressor `oneshot` (whole model), side by side.

Each run is its own process; its peak resident set comes from the kernel (`wait4` rusage), so
nothing is sampled and nothing is missed. Linux counts in a child's peak the memory of the process
that spawned it, up to its exec, so this driver stays small: it never imports torch, and the
checkpoints are made in a process of their own. The import cost of each side is measured too, so
the part that grows with the checkpoint is visible. Target: hala <= largest shard + 1 GB.

Usage: python benchmarks/fp8/memory.py --llmc-python PATH [--models smollm2,synthetic-1.5b] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import time
from pathlib import Path

HERE = Path(__file__).parent
REPO = HERE.parents[1]
MB = 1 << 20


def peak_rss(cmd: list[str]) -> tuple[int, float]:
    """(peak RSS in bytes, wall seconds) of one process run to completion."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} ... failed ({proc.returncode}):\n{output.decode()[-4000:]}")
    return usage.ru_maxrss * 1024, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--llmc-python", required=True)
    parser.add_argument("--models", default="smollm2,synthetic-1.5b")
    parser.add_argument("--work", default=str(REPO / "runs" / "bench" / "fp8_memory"))
    args = parser.parse_args()
    work = Path(args.work)
    hala_py = str(REPO / ".venv" / "bin" / "python")
    driver = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    hala_import, _ = peak_rss([hala_py, "-c", "import hala.quantize.stage, compressed_tensors.compressors"])
    llmc_import, _ = peak_rss(
        [args.llmc_python, "-c", "import llmcompressor, transformers; from llmcompressor import oneshot"]
    )
    print(
        f"import alone: hala {hala_import / MB:.0f} MB, llm-compressor {llmc_import / MB:.0f} MB (this driver: {driver / MB:.0f} MB)"
    )
    figures = {}
    for name in args.models.split(","):
        made = subprocess.run(
            [hala_py, str(HERE / "checkpoints.py"), name, str(work)], capture_output=True, text=True, check=True
        )
        source = Path(made.stdout.strip().splitlines()[-1])
        shards = [p.stat().st_size for p in source.glob("*.safetensors")]
        hala_out, llmc_out = work / f"{name}-hala", work / f"{name}-llmc"
        for folder in (hala_out, llmc_out):
            shutil.rmtree(folder, ignore_errors=True)
        hala, hala_s = peak_rss(
            [hala_py, "-m", "hala.cli", "quantize", "-m", str(source), "-o", str(hala_out), "--no-verify"]
        )
        llmc, llmc_s = peak_rss(
            [args.llmc_python, str(HERE / "llmc_fp8.py"), "--model", str(source), "--out", str(llmc_out)]
        )
        target = max(shards) + 1024 * MB
        figures[name] = {
            "checkpoint_mb": round(sum(shards) / MB),
            "largest_shard_mb": round(max(shards) / MB),
            "hala_peak_rss_mb": round(hala / MB),
            "llmc_peak_rss_mb": round(llmc / MB),
            "hala_over_llmc_rss": round(hala / llmc, 3),
            "hala_within_target": hala <= target,
            "hala_over_llmc_wall_time": round(hala_s / llmc_s, 3),
        }
        print(
            f"== {name}: checkpoint {sum(shards) / MB:.0f} MB in {len(shards)} shard(s), largest {max(shards) / MB:.0f} MB"
        )
        print(f"   peak RSS: hala {hala / MB:.0f} MB vs llm-compressor oneshot {llmc / MB:.0f} MB -> ratio {hala / llmc:.2f}; "
              f"target hala <= largest shard + 1 GB = {target / MB:.0f} MB: {'met' if hala <= target else 'MISSED'}")  # fmt: skip
        print(
            f"   wall time (incl. imports): hala {hala_s:.1f}s vs llm-compressor {llmc_s:.1f}s -> ratio {hala_s / llmc_s:.2f}"
        )
    print(
        json.dumps(
            {
                "hala_import_rss_mb": round(hala_import / MB),
                "llmc_import_rss_mb": round(llmc_import / MB),
                "models": figures,
            }
        )
    )


if __name__ == "__main__":
    main()
