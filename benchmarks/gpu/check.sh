#!/usr/bin/env bash
# The prepared GPU check: what of hala's GPU path one borrowed H100/H200 can prove in under 8 minutes.
#
#   bash benchmarks/gpu/check.sh [MODEL_DIR]     # on one Hopper GPU (H100/H200; Ada works too), ~3 minutes
#   bash benchmarks/gpu/check.sh --cpu-smoke     # tiny shapes on the CPU: checks the script (~30 s)
#
# Runs from a copy of the working tree with hala's source in src/ (not pip-installed) and only
# torch, transformers, accelerate, safetensors and numpy needed; nothing is installed or downloaded.
#   1. gemm: benchmarks/gpu/fp8_vs_bf16.py --quick, FP8 vs BF16 GEMMs at the teacher's layer shapes;
#   2. benchmarks/gpu/gemma3_270m.py: a BF16 SFT step of Gemma-3-270M (hala's TRL trainer if it
#      imports, else a plain PyTorch loop), hala quantize -> transformers -> generate against BF16
#      (skipped, saying why, without pydantic or compressed-tensors), and the model's Linears run in
#      FP8 by torch._scaled_mm against BF16. MODEL_DIR is the folder `hala models gemma3-270m --out
#      DIR` writes; without it, a random-init model of the same shapes.
# Each part's figures print as it ends; the last line is one JSON object with all of them. The exit
# status is 0 when every part that can run here ran, 1 when one failed, 2 with no CUDA GPU.
# PYTHON picks the interpreter (default python3).
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 2
PY=${PYTHON:-python3}
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false \
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_PROGRESS_BARS=1

mode=gpu
model=()
for arg in "$@"; do
    case $arg in
        --cpu-smoke) mode=cpu-smoke ;;
        -h | --help) sed -n '2,/^set /p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        -*) echo "unknown option $arg (see --help)" >&2; exit 2 ;;
        *) model=(--model "$arg") ;;
    esac
done

if [[ $mode == gpu ]]; then
    gemm_args=(--quick) gemma_args=() gemm_limit=180 gemma_limit=270  # 7.5 minutes at most, ~3 expected
    if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
        echo "no CUDA GPU here: nothing measured (--cpu-smoke checks the script on the CPU)"
        echo '{"check": "benchmarks/gpu/check.sh", "mode": "gpu", "device": {"kind": "none"}, "measured": false}'
        exit 2
    fi
else
    gemm_args=(--device cpu --quick --iters 2 --tokens 16) gemma_args=(--smoke) gemm_limit=120 gemma_limit=180
fi

logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
started=$SECONDS
echo "== gemm: fp8_vs_bf16.py ${gemm_args[*]}"
timeout "$gemm_limit" "$PY" benchmarks/gpu/fp8_vs_bf16.py "${gemm_args[@]}" | tee "$logs/gemm"
gemm_rc=${PIPESTATUS[0]}
gemm_s=$((SECONDS - started))
echo "== gemma3_270m.py ${gemma_args[*]} ${model[*]}"
timeout "$gemma_limit" "$PY" benchmarks/gpu/gemma3_270m.py "${gemma_args[@]}" "${model[@]}" | tee "$logs/gemma"
gemma_rc=${PIPESTATUS[0]}

MODE=$mode LOGS=$logs GEMM_RC=$gemm_rc GEMMA_RC=$gemma_rc GEMM_S=$gemm_s TOTAL_S=$((SECONDS - started)) \
    GEMM_LIMIT=$gemm_limit GEMMA_LIMIT=$gemma_limit "$PY" - <<'EOF'
import json, os, sys

def last_json(name):
    lines = open(os.path.join(os.environ["LOGS"], name), encoding="utf-8").read().strip().splitlines()
    try:
        return json.loads(lines[-1])
    except (IndexError, ValueError):
        return None

def status(rc, limit):
    return f"timed out after {limit} s" if rc in (124, 137) else f"exit status {rc}"

env = os.environ
gemm_rc, gemma_rc = int(env["GEMM_RC"]), int(env["GEMMA_RC"])
gemm = last_json("gemm") if gemm_rc == 0 else None
gemma = last_json("gemma")
result = {"check": "benchmarks/gpu/check.sh", "mode": env["MODE"]}
result["gemm"] = {**gemm, "seconds": int(env["GEMM_S"])} if gemm else {"error": status(gemm_rc, env["GEMM_LIMIT"])}
failed = [] if gemm else ["gemm"]
if gemma is None:  # no JSON at all: the script died before its end
    result["gemma3_270m"] = {"error": status(gemma_rc, env["GEMMA_LIMIT"])}
    failed.append("gemma3_270m")
else:
    failed += gemma.pop("failed", []) or ([] if gemma_rc == 0 else ["gemma3_270m"])
    result.update(gemma)
result["failed"] = failed
result["ok"] = not failed
result["seconds"] = int(env["TOTAL_S"])
print(json.dumps(result))
sys.exit(1 if failed else 0)
EOF
