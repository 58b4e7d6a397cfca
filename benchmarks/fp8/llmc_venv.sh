# Sourced by the FP8 benchmarks: make sure llm-compressor's own venv exists, set LLMC_PY to its python.
# llmcompressor 0.14.0.1 pins compressed-tensors 0.19.0 while vLLM pins 0.17.0, so it can't live in
# hala's .venv. The CPU torch wheel goes in FIRST: an unpinned torch would pull a multi-GB CUDA build.
LLMC_VENV="${LLMC_VENV:-runs/bench/llmc-venv}"
LLMC_PY="$LLMC_VENV/bin/python"
if ! "$LLMC_PY" -c "import llmcompressor" >/dev/null 2>&1; then
    echo "== building llm-compressor's venv in $LLMC_VENV" >&2
    "${PYTHON:-python3.11}" -m venv "$LLMC_VENV"
    "$LLMC_PY" -m pip install -q --disable-pip-version-check "torch==${LLMC_TORCH:-2.13.0+cpu}"
    "$LLMC_PY" -m pip install -q --disable-pip-version-check llmcompressor==0.14.0.1 "torch==${LLMC_TORCH:-2.13.0+cpu}"
fi
"$LLMC_PY" -c "import llmcompressor, compressed_tensors, torch; print('llm-compressor venv:', llmcompressor.__version__, 'compressed-tensors', compressed_tensors.__version__, 'torch', torch.__version__)" >&2
