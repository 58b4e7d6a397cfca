"""llm-compressor's FP8_DYNAMIC, the reference hala is compared with. Runs in llm-compressor's own venv.

It cannot share hala's venv: llmcompressor 0.14.0.1 pins compressed-tensors 0.19.0, vLLM pins 0.17.0.
This follows llm-compressor's FP8 example: load the model, `oneshot` with a QuantizationModifier
(targets Linear, scheme FP8_DYNAMIC, ignore lm_head; no calibration data is needed), save compressed.

Usage (llm-compressor venv): python benchmarks/fp8/llmc_fp8.py --model DIR --out DIR [--ignore NAME ...]
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--ignore", action="append", default=None)
    args = parser.parse_args()

    from llmcompressor import oneshot
    from llmcompressor.modifiers.quantization import QuantizationModifier
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype="auto")
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    recipe = QuantizationModifier(targets="Linear", scheme="FP8_DYNAMIC", ignore=args.ignore or ["lm_head"])
    oneshot(model=model, recipe=recipe)
    model.save_pretrained(args.out, save_compressed=True)
    tokenizer.save_pretrained(args.out)
    print(f"llm-compressor FP8_DYNAMIC: {args.model} -> {args.out} in {time.perf_counter() - started:.1f}s")


if __name__ == "__main__":
    main()
