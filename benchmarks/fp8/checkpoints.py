"""The checkpoints the FP8 benchmarks run on, materialized once under the work folder."""

from __future__ import annotations

from pathlib import Path


def prepare(name: str, work: Path) -> Path:
    folder = work / name
    if (folder / "config.json").exists():
        return folder
    if name == "smollm2":
        from hala.models.smollm2 import materialize_smollm2

        return materialize_smollm2(folder)
    if name == "tiny-llama":
        from hala.models.tiny import make_tiny_llama

        return make_tiny_llama(folder, hidden_size=256, layers=4)
    if name == "tiny-lfm2":
        from hala.models.tiny import make_tiny_lfm2

        return make_tiny_lfm2(folder, hidden_size=256, layers=4)
    if name == "synthetic-1.5b":
        from hala.models.synthetic import make_synthetic_llama

        # 26 layers of 2048/5632 and a 32k vocabulary: 1.47B parameters, 2.9 GB in BF16, 1 GB shards
        return make_synthetic_llama(folder, hidden=2048, intermediate=5632, layers=26, vocab=32000, shard_bytes=1 << 30)
    raise ValueError(f"unknown checkpoint {name!r}; valid: smollm2, tiny-llama, tiny-lfm2, synthetic-1.5b")


if __name__ == "__main__":  # python checkpoints.py NAME WORK: prints the folder (keeps callers free of torch)
    import sys

    print(prepare(sys.argv[1], Path(sys.argv[2])))
