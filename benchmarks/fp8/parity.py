"""hala's FP8 checkpoint vs llm-compressor's, tensor by tensor and config key by config key.

Both quantize the same BF16 checkpoint with FP8_DYNAMIC; llm-compressor runs in its own venv
(compressed-tensors 0.19.0) and hala in .venv (0.17.0, vLLM's pin). Every tensor is compared as
bytes; a difference is explained (scale rounding, a tie in the FP8 cast, a missing tensor, a copy
that is not a copy). The config blocks are compared after parsing, the library version apart.

Usage: python benchmarks/fp8/parity.py --llmc-python PATH [--models smollm2,tiny-llama,tiny-lfm2] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from checkpoints import prepare  # noqa: E402

HERE = Path(__file__).parent
REPO = HERE.parents[1]


def read_all(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors import safe_open

    tensors = {}
    for path in sorted(folder.glob("*.safetensors")):
        with safe_open(path, "pt") as f:
            tensors.update({k: f.get_tensor(k) for k in f.keys()})
    return tensors


def explain(name: str, a: torch.Tensor | None, b: torch.Tensor | None, hala: dict, llmc: dict) -> str:
    if a is None or b is None:
        return f"only in {'llm-compressor' if a is None else 'hala'}"
    if a.dtype != b.dtype or a.shape != b.shape:
        return f"dtype/shape differ: hala {a.dtype} {list(a.shape)}, llm-compressor {b.dtype} {list(b.shape)}"
    if name.endswith("_scale"):
        rows = int((a != b).sum())
        rel = float(((a.float() - b.float()).abs() / b.float().abs().clamp_min(1e-30)).max())
        return f"scale differs in {rows} rows (max relative difference {rel:.2e}): absmax/448 rounded differently"
    if a.dtype == torch.float8_e4m3fn:
        scale_a, scale_b = hala.get(name + "_scale"), llmc.get(name + "_scale")
        if scale_a is not None and scale_b is not None and not torch.equal(scale_a, scale_b):
            return "FP8 values differ because the scales differ (see the scale)"
        x, y = a.float(), b.float()
        bad = x != y
        step = (x[bad] - y[bad]).abs() <= torch.maximum(x[bad].abs(), y[bad].abs()) * 2**-3 + 2**-9
        return f"{int(bad.sum())} FP8 values differ ({int(step.sum())} by one FP8 step: a rounding tie of w/scale cast differently)"
    return f"a kept tensor is not byte-identical ({int((a != b).sum())} values differ)"


def config_differences(hala: Path, llmc: Path) -> list[str]:
    a = json.loads((hala / "config.json").read_text())
    b = json.loads((llmc / "config.json").read_text())
    out = []

    def walk(x, y, path):
        if isinstance(x, dict) and isinstance(y, dict):
            for k in sorted(set(x) | set(y)):
                walk(x.get(k), y.get(k), f"{path}.{k}" if path else k)
        elif x != y:
            out.append(f"{path}: hala {x!r}, llm-compressor {y!r}")

    walk(a, b, "")
    return out


def compare(hala_dir: Path, llmc_dir: Path) -> dict:
    hala, llmc = read_all(hala_dir), read_all(llmc_dir)
    names = sorted(set(hala) | set(llmc))
    differences = {}
    for name in names:
        a, b = hala.get(name), llmc.get(name)
        same = a is not None and b is not None and a.dtype == b.dtype and a.shape == b.shape
        same = same and torch.equal(a.reshape(-1).view(torch.uint8), b.reshape(-1).view(torch.uint8))
        if not same:
            differences[name] = explain(name, a, b, hala, llmc)
    fp8 = [n for n, t in hala.items() if t.dtype == torch.float8_e4m3fn]
    return {
        "tensors": len(names),
        "fp8_weights": len(fp8),
        "scales": sum(n.endswith("_scale") for n in names),
        "identical": len(names) - len(differences),
        "different": differences,
        "config_differences": config_differences(hala_dir, llmc_dir),
    }


def run(cmd: list[str]) -> float:
    started = time.perf_counter()
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:3])} ... failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--llmc-python", required=True)
    parser.add_argument("--models", default="smollm2,tiny-llama,tiny-lfm2")
    parser.add_argument("--work", default=str(REPO / "runs" / "bench" / "fp8_parity"))
    args = parser.parse_args()
    work = Path(args.work)
    results, timings = {}, {}
    for name in args.models.split(","):
        source = prepare(name, work)
        hala_out, llmc_out = work / f"{name}-hala", work / f"{name}-llmc"
        shutil.rmtree(hala_out, ignore_errors=True)
        shutil.rmtree(llmc_out, ignore_errors=True)
        t_llmc = run([args.llmc_python, str(HERE / "llmc_fp8.py"), "--model", str(source), "--out", str(llmc_out)])
        t_hala = run(
            [str(REPO / ".venv" / "bin" / "hala"), "quantize", "-m", str(source), "-o", str(hala_out), "--no-verify"]
        )
        result = compare(hala_out, llmc_out)
        results[name], timings[name] = result, {"hala_s": t_hala, "llmc_s": t_llmc}
        print(f"== {name}: {result['identical']}/{result['tensors']} tensors bit-identical "
              f"({result['fp8_weights']} FP8 weights, {result['scales']} scales); "
              f"wall time hala {t_hala:.1f}s vs llm-compressor {t_llmc:.1f}s (ratio {t_hala / t_llmc:.2f}, both incl. imports)")  # fmt: skip
        for tensor, why in list(result["different"].items())[:20]:
            print(f"   differs: {tensor}: {why}")
        for line in result["config_differences"]:
            note = (
                " (the library version each side pins: expected)"
                if line.startswith("quantization_config.version")
                else ""
            )
            print(f"   config: {line}{note}")
    summary = {
        "bit_identical": all(not r["different"] for r in results.values()),
        "models": {
            n: {"tensors": r["tensors"], "identical": r["identical"], "different": len(r["different"]),
                "config_differences": [d.split(":")[0] for d in r["config_differences"]],
                "hala_over_llmc_wall_time": round(timings[n]["hala_s"] / timings[n]["llmc_s"], 3)}
            for n, r in results.items()
        },
    }  # fmt: skip
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
