"""Session fixtures: tiny local models, one shared vLLM engine, one real OpenAI-compatible server;
and `serve`, for the stub servers of a single test.

Nothing comes from a hub: the models are random two-layer networks with a tokenizer trained here.
vLLM takes ~40 s to start on CPU, so each engine is started once per session and shared.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.openai_stub import free_port

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# the session's file-hash cache (hala.data.hash_cache) lives with the session, not in ~/.cache
os.environ.setdefault("HALA_HASH_CACHE", os.path.join(tempfile.mkdtemp(prefix="hala-hashes-"), "sha256.sqlite"))
# vLLM's own engine-core process for every engine in the test session: the session's shared engine
# outlives engines that tests build and close, and closing an in-process engine tears down vLLM's
# process-wide parallel state (hala's CPU default, one engine at a time per stage process, is
# tested in a child process without this: tests/test_engines_vllm.py)
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "1")

TEST_API_KEY = "hala-test-key-do-not-log"


def subprocess_failure(stderr: str, tail: int = 1500) -> str:
    """What a failed child process said: every line naming an error (vLLM prints its root cause far
    above the last traceback, e.g. too little free memory for the KV cache), then the tail."""
    errors = [line for line in stderr.splitlines() if "Error" in line or "error:" in line]
    return "\n".join(["error lines:", *errors[-20:], "tail:", stderr[-tail:]])

@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> Path:
    from hala.models.tiny import make_tiny_llama

    return make_tiny_llama(tmp_path_factory.mktemp("models") / "tiny-llama")


@pytest.fixture(scope="session")
def tiny_lfm2(tmp_path_factory) -> Path:
    from hala.models.tiny import make_tiny_lfm2

    return make_tiny_lfm2(tmp_path_factory.mktemp("models") / "tiny-lfm2")


@pytest.fixture(scope="session")
def gemma3_270m(tmp_path_factory) -> Path:
    """Gemma 3 270M (base) as `hala models gemma3-270m` writes it: linked from the machine's copy,
    which `make setup` writes (once per machine, ~2 min on 2 cores), as a run's `models` stage does."""
    from hala.models.builtin import builtin

    return builtin("gemma3-270m").materialize_into_run("gemma3-270m", tmp_path_factory.mktemp("models") / "gemma3-270m")


@pytest.fixture
def serve():
    """Starts a test's stub servers, `server = serve(EchoStub())`; after the test each is stopped and
    its threads joined."""
    with ExitStack() as stack:
        yield stack.enter_context


@pytest.fixture(scope="session")
def vllm_engine(tiny_llama):
    """One offline vLLM engine (float32, so its scores can be compared with transformers)."""
    from hala.engines import EngineConfig, get_engine

    cfg = EngineConfig(kind="vllm", model=str(tiny_llama), dtype="float32", max_model_len=512, enforce_eager=True)
    engine = get_engine(cfg)
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def openai_server(tiny_llama, tmp_path_factory):
    """A real vLLM OpenAI-compatible server on 127.0.0.1, started for the session and stopped after."""
    import httpx

    port = free_port()
    log_path = tmp_path_factory.mktemp("server") / "server.log"
    cmd = [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(tiny_llama), "--served-model-name", "tiny",
        "--host", "127.0.0.1", "--port", str(port),
        "--dtype", "float32", "--max-model-len", "512", "--enforce-eager",
        "--api-key", TEST_API_KEY,
    ]  # fmt: skip
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 240
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"vLLM server exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline:
                raise RuntimeError(f"vLLM server did not start in time:\n{log_path.read_text()[-3000:]}")
            time.sleep(1)
        yield {"base_url": f"{url}/v1", "model": "tiny", "log": log_path}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
