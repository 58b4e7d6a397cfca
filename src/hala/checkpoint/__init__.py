"""Checkpoint I/O: the one layer between a Hugging Face model folder and the stages that rewrite it.

Quantize and merge both read a checkpoint tensor by tensor and write a new one shard by shard,
never holding a model in memory. They share this package rather than copies of it, so a fix to a
read loop or a check is made once (as mergekit's `io/` serves every merge method):

- `reader`: safetensors headers parsed by hand, `TensorRef` reads of byte ranges, the weight files
  of a folder (pickle only when allowed), hub ids through the Hugging Face cache;
- `writer`: the shard plan, `ShardWriter` and the index;
- `structure`: do the tensors match what config.json describes (headers only, before writing).
"""
