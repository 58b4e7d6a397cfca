#!/usr/bin/env bash
# hala quantize vs llm-compressor 0.14.0.1 FP8_DYNAMIC, tensor by tensor, on SmolLM2-135M-Instruct and
# tiny random Llama and LFM2 models. Target: bit-identical weights and scales, or each difference
# explained. Builds llm-compressor's own venv on first use (runs/bench/llmc-venv, ~2 min, ~1 GB).
# Usage: benchmarks/fp8_parity.sh [--models smollm2,tiny-llama,tiny-lfm2] [--work DIR]
# The last line of output is one JSON object.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
source benchmarks/fp8/llmc_venv.sh
exec .venv/bin/python benchmarks/fp8/parity.py --llmc-python "$LLMC_PY" "$@"
