#!/usr/bin/env bash
# Peak RSS of `hala quantize` (streaming) vs llm-compressor `oneshot` FP8_DYNAMIC (whole model in
# memory) on SmolLM2-135M-Instruct and a synthetic ~1.5B-parameter Llama in 1 GB shards.
# Target: hala <= largest shard + 1 GB. Builds llm-compressor's venv on first use (see fp8_parity.sh).
# Usage: benchmarks/fp8_memory.sh [--models smollm2,synthetic-1.5b] [--work DIR]
# The last line of output is one JSON object.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
source benchmarks/fp8/llmc_venv.sh
exec .venv/bin/python benchmarks/fp8/memory.py --llmc-python "$LLMC_PY" "$@"
