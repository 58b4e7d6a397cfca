"""Checkpoint I/O: the one layer between a Hugging Face model folder and the stages that rewrite it.

Quantize and merge both read a checkpoint tensor by tensor and write a new one shard by shard,
never holding a model in memory; `merge.parity` reads merged folders to compare them. They share
this package rather than copies of it, so a fix to a read loop, a refusal rule or the list of files
that travel with a model is made once (as mergekit's `io/` serves every merge method):

- `reader`: safetensors headers parsed by hand, `TensorRef` reads of byte ranges, the weight files
  of a folder (pickle only when allowed), hub ids through the Hugging Face cache;
- `writer`: the shard plan, `ShardWriter`, the one shard-writing loop `write_shards`, the index
  (the manifest, the temporary folder and its rename are the stage frame's: `hala.frame`);
- `model_config`: config.json, and the one rule that refuses an already quantized checkpoint;
- `side_files`: tokenizer, chat template, generation config, license files, copied with the model;
- `structure`: do the tensors match what config.json describes (headers only, before writing);
- `layouts`: what config.json describes, for the families hala uses, without transformers;
- `finite`: the NaN/Inf check of a block and the one report that names the tensors.
"""

from hala.checkpoint.finite import all_finite, nonfinite_report
from hala.checkpoint.model_config import read_model_config, refuse_quantized_tensors, write_model_config
from hala.checkpoint.reader import (
    DTYPE_NAMES,
    CheckpointError,
    PickleRefusedError,
    TensorRef,
    resolve_model,
    tensor_refs,
    weight_files,
)
from hala.checkpoint.side_files import copy_side_files, is_tokenizer_file, side_files
from hala.checkpoint.structure import StructureError, check_structure
from hala.checkpoint.writer import OutTensor, ShardWriter, parse_size, write_shards

__all__ = [
    "DTYPE_NAMES",
    "CheckpointError",
    "OutTensor",
    "PickleRefusedError",
    "ShardWriter",
    "StructureError",
    "TensorRef",
    "all_finite",
    "check_structure",
    "copy_side_files",
    "is_tokenizer_file",
    "nonfinite_report",
    "parse_size",
    "read_model_config",
    "refuse_quantized_tensors",
    "resolve_model",
    "side_files",
    "tensor_refs",
    "weight_files",
    "write_model_config",
    "write_shards",
]
