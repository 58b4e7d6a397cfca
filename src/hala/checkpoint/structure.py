"""Does a checkpoint hold exactly the tensors its config.json describes? Decided from headers alone.

A model folder whose config.json lies about a shape, or whose weights lack a tensor, still
quantizes and merges tensor by tensor without a complaint, and the result only fails (or, worse,
loads with freshly initialized weights) when a user loads it. The load-and-generate checks after
quantize and merge would catch it, but they load the whole model and may be switched off for a
model larger than the machine. This check costs O(header): the state dict that config.json describes
(every tensor's name, shape and kind of dtype) is compared, name by name, with the safetensors
headers. For the families hala uses (Llama, Mistral, Qwen 2 and 3, Gemma 2 and 3, LFM2) it comes
from a table computed from config.json alone (`hala.checkpoint.layouts`), in microseconds; for
any other network, or a config the table is not sure of, transformers builds the network on the
`meta` device (no memory for weights, milliseconds even for 111B, but seconds of imports). It
always runs, in `hala quantize` and `hala merge`, before anything is written.

Tied weights (an LM head that is the embedding) may be stored once. Tensors the model class itself
drops at load time (`_keys_to_ignore_on_load_unexpected`) may be present. A `model_type` that
transformers does not know, or whose checkpoint names transformers converts while loading (some
MoE layouts), or a config transformers can't build at all (the load check after writing reports
that one), can't be described this way: the check says so in the log and is skipped.

A pass is remembered (`hala.data.hash_cache.note`) under a hash of the config, every tensor's name,
shape and dtype, and the hala and transformers versions: the same checkpoint (or a fine-tune with the same
tensors, as a merge's pair is) of a family the table does not know then passes without importing
transformers' model code.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from importlib import metadata
from pathlib import Path

from hala import __version__
from hala.checkpoint.layouts import Expected, layout
from hala.checkpoint.reader import CheckpointError, TensorRef
from hala.data import hash_cache

log = logging.getLogger("hala.checkpoint")
SHOWN = 10


class StructureError(CheckpointError):
    """The weights and config.json disagree: which tensor, in which file, expected vs found."""


def expected_tensors(config: dict, config_path: Path) -> Expected | None:
    """The state dict of the network `config` describes: from the table when it knows the family, else
    from transformers (None when neither can say)."""
    return layout(config) or _from_transformers(config, config_path)


def _from_transformers(config: dict, config_path: Path) -> Expected | None:
    """The state dict of the network transformers builds from `config` (None when it can't)."""
    import torch
    import transformers
    from transformers.conversion_mapping import get_checkpoint_conversion_mapping

    model_type = config.get("model_type")
    if model_type not in transformers.CONFIG_MAPPING:
        log.warning("%s: transformers does not know model_type %r; tensors not checked", config_path, model_type)
        return None
    if get_checkpoint_conversion_mapping(model_type):
        log.warning("%s: %s checkpoints are renamed while loading; tensors not checked against config.json",
                    config_path, model_type)  # fmt: skip
        return None
    names = config.get("architectures") or []
    model_class = getattr(transformers, names[0], None) if names else transformers.AutoModelForCausalLM
    if model_class is None:
        log.warning("%s: architectures %s is not a transformers class; tensors not checked", config_path, names)
        return None
    try:
        model_config = transformers.CONFIG_MAPPING[model_type].from_dict(dict(config))
        with torch.device("meta"):
            model = model_class(model_config) if names else model_class.from_config(model_config)
    except Exception as exc:  # e.g. an unknown hidden_act: the load check after writing reports it
        log.warning("%s: transformers can't build this network (%s); tensors not checked against it", config_path, exc)
        return None
    groups: dict[int, list[str]] = {}
    tensors = {}
    for name, tensor in model.state_dict(keep_vars=True).items():
        tensors[name] = (tuple(tensor.shape), tensor.dtype.is_floating_point)
        groups.setdefault(id(tensor), []).append(name)
    ignorable = tuple(getattr(model, "_keys_to_ignore_on_load_unexpected", None) or ())
    return Expected(tensors, [tuple(g) for g in groups.values() if len(g) > 1], ignorable)


def check_structure(refs: list[TensorRef], config: dict, config_path: Path) -> None:
    """Raise StructureError naming every tensor that is missing, extra, of another shape or of a
    non-floating dtype where the network has floating point weights (and vice versa)."""
    tensors = sorted((r.name, list(r.shape), r.dtype) for r in refs)
    versions = [__version__, metadata.version("transformers")]  # hala's rules, transformers' networks
    payload = json.dumps([config, tensors, versions], sort_keys=True, default=str)
    key = "structure:" + hashlib.sha256(payload.encode("utf-8")).hexdigest()
    if hash_cache.known(key):
        return
    expected = expected_tensors(config, config_path)
    if expected is None:
        return
    found = {r.name: r for r in refs}
    problems = []
    tied = {name for group in expected.tied for name in group}  # one stored copy of a group is enough
    for group in expected.tied:
        if not any(name in found for name in group):
            shape = list(expected.tensors[group[0]][0])
            problems.append(f"{group[0]}: missing (config.json implies {shape}; no weight file holds it, "
                            f"nor its tied copy {', '.join(group[1:])})")  # fmt: skip
    for name, (shape, floating) in expected.tensors.items():
        ref = found.get(name)
        if ref is None:
            if name not in tied:
                problems.append(f"{name}: missing (config.json implies {list(shape)}; no weight file holds it)")
            continue
        if tuple(ref.shape) != shape:
            problems.append(f"{name}: config.json implies {list(shape)}, {ref.file.name} holds {list(ref.shape)}")
        elif ref.torch_dtype.is_floating_point != floating:
            kind = "floating point" if floating else "integer"
            problems.append(f"{name}: {ref.file.name} stores it as {ref.dtype}; the network expects {kind}")
    for name, ref in found.items():
        if name not in expected.tensors and not any(re.search(p, name) for p in expected.ignorable):
            problems.append(f"{name}: in {ref.file.name} {list(ref.shape)}, but config.json implies no such tensor")
    if problems:
        more = f"\n  (and {len(problems) - SHOWN} more)" if len(problems) > SHOWN else ""
        folder = refs[0].file.parent if refs else config_path.parent
        raise StructureError(
            f"{config_path} and the weights in {folder} disagree in {len(problems)} tensor(s):\n  "
            + "\n  ".join(problems[:SHOWN]) + more
            + "\nFix config.json or the checkpoint; nothing was written."
        )
    hash_cache.note(key)
