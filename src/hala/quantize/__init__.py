"""Stage 1: compress the teacher to FP8 in the compressed-tensors format (`hala quantize`).

`fp8` is the math, `stream` says what each tensor becomes as it moves between safetensors files
(read and written by `hala.checkpoint`, which merge uses too), `architectures` says which tensors
are Linear weights, and `verify` measures the result against its source.
`quantize(QuantizeConfig(...))` is what the CLI and the tests call.
"""

from hala.quantize.fp8 import fp8_dequantize, fp8_quantize, fp8_scale
from hala.quantize.stage import QuantizeConfig, quantize

__all__ = ["QuantizeConfig", "fp8_dequantize", "fp8_quantize", "fp8_scale", "quantize"]
