"""hala's readers and writers vs bare json loops, side by side (ratios > 1 mean hala is slower).

Usage: python benchmarks/io_throughput.py [--rows 30000]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from importlib import resources
from pathlib import Path


def _best_of(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=30_000)
    args = parser.parse_args()

    from hala.data.readers import read_conversations
    from hala.data.rejects import RejectLog
    from hala.data.writers import ShardedWriter

    sample = resources.files("hala.resources").joinpath("samples/conversations_en.jsonl").read_text(encoding="utf-8")
    lines = [line for line in sample.splitlines() if line.strip()]
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "big.jsonl"
        with src.open("w", encoding="utf-8") as handle:
            for i in range(args.rows):
                row = json.loads(lines[i % len(lines)])
                row["id"] = f"{row['id']}-{i}"
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")

        def bare_read():
            with src.open(encoding="utf-8") as handle:
                return [json.loads(line) for line in handle]

        def hala_read():
            return list(read_conversations(src, rejects=RejectLog()))

        records = hala_read()
        assert len(records) == args.rows

        def bare_write():
            with (Path(tmp) / "bare.jsonl").open("w", encoding="utf-8") as handle:
                for r in records:
                    handle.write(json.dumps(r.model_dump(), ensure_ascii=False) + "\n")

        def hala_write():
            with ShardedWriter(Path(tmp) / "sharded", rows_per_shard=10_000) as writer:
                for r in records:
                    writer.write(r)

        t_bare_read, t_hala_read = _best_of(bare_read), _best_of(hala_read)
        t_bare_write, t_hala_write = _best_of(bare_write), _best_of(hala_write)

    figures = {
        "rows": args.rows,
        "read_rows_per_s": round(args.rows / t_hala_read),
        "read_overhead_ratio": round(t_hala_read / t_bare_read, 2),
        "write_rows_per_s": round(args.rows / t_hala_write),
        "write_overhead_ratio": round(t_hala_write / t_bare_write, 2),
    }
    print(f"read : hala {t_hala_read:.3f}s vs bare json {t_bare_read:.3f}s (parse + validate into records)")
    print(f"write: hala {t_hala_write:.3f}s vs bare write {t_bare_write:.3f}s (atomic, sharded, fsync)")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
