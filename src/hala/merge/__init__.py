"""Stage 6: SLERP-merge a fine-tune with its base (`hala merge`), mergekit-compatible.

`slerp` is the math (pure, on tensors), `params` resolves each tensor's t (scalars, per-layer
gradients, name filters), `config` holds the settings and reads mergekit's slerp YAML, `plan` runs
every check that needs no weights, `stream` makes the two passes over the shards, `check` loads
and generates from the result, and `stage.merge(MergeConfig(...))` is what the CLI and tests call.
"""

from hala.merge.config import CheckConfig, MergeConfig, load_merge_config
from hala.merge.stage import merge

__all__ = ["CheckConfig", "MergeConfig", "load_merge_config", "merge"]  # the math: hala.merge.slerp.slerp
