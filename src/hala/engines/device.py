"""Which device this process computes on: the one probe every stage asks.

A CUDA GPU or the CPU, nothing in between: vLLM sizes its CPU KV cache and schedules whole prompts
when there is no GPU (`hala.engines.vllm`), `hala train` picks bf16 and TRL's `use_cpu` by it,
`hala eval bench --backend auto` picks vLLM on a GPU, and quantize verification reports it, with
the GPU's compute capability, which says whether it has FP8 matrix units.
"""

from __future__ import annotations

import platform
from pathlib import Path


def on_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def name() -> str:
    """"cuda" or "cpu", as torch and lighteval spell them."""
    return "cuda" if on_gpu() else "cpu"


def bf16_supported() -> bool:
    import torch

    return on_gpu() and torch.cuda.is_bf16_supported()


def describe() -> dict:
    """The device for a report: its kind and name, and a GPU's compute capability ("9.0")."""
    if on_gpu():
        import torch

        major, minor = torch.cuda.get_device_capability()
        return {"kind": "cuda", "name": torch.cuda.get_device_name(), "capability": f"{major}.{minor}"}
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"kind": "cpu", "name": cpu}
