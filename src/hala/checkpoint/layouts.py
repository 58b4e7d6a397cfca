"""The tensors config.json describes, for the decoder families hala uses, from config.json alone.

`hala.checkpoint.structure` asks what state dict a config.json implies. Asking transformers (a
network built on the `meta` device) costs about 3 s on a cold run: transformers itself, its
checkpoint conversion tables (which import sklearn) and the family's modeling module. For a 135M
merge that is longer than the merge. The families hala ships recipes for are a few lines of
arithmetic each, so they are written out here, name by name and shape by shape, as each
`modeling_<family>.py` builds them (mergekit keeps the same kind of table per architecture, in JSON).
tests/test_layouts.py compares every row with a meta build of the installed transformers.

The table answers only when it is sure. Another family or `architectures` class, a size that
config.json leaves to a default (the class defaults are one model's sizes, not a rule), a value of
the wrong type, or a key that could change the layout and that the table does not model (experts,
quantization, a layer type it does not know) give None, and transformers decides. Flags whose
default the config class documents (`attention_bias`, `conv_bias`...) take that default.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

EMBED, HEAD = "model.embed_tokens.weight", "lm_head.weight"
DECLINED_KEYS = ("quantization_config", "text_config", "per_layer_config", "mlp_layer_types", "mtp_layer_types")
DECLINED_WORDS = ("expert", "moe", "router")  # mixture-of-experts keys, whatever each family calls them
ATTENTION_TYPES = ("full_attention", "sliding_attention")


@dataclass(frozen=True)
class Expected:
    """What the config describes: name -> (shape, is floating point), tied groups, ignorable names."""

    tensors: dict[str, tuple[tuple[int, ...], bool]]
    tied: list[tuple[str, ...]]  # names that share one tensor; any one of each group may be stored
    ignorable: tuple[str, ...]  # regexes of tensors the model class drops when loading


class _Unsure(Exception):
    """config.json leaves something to a guess, or uses a feature the table does not model."""


def _size(config: dict, key: str) -> int:
    value = config.get(key)
    if type(value) is not int or value <= 0:
        raise _Unsure(key)
    return value


def _flag(config: dict, key: str, default: bool | None = None) -> bool:
    value = config.get(key, default)
    if type(value) is not bool:
        raise _Unsure(key)
    return value


def _linear(out: dict, name: str, rows: int, cols: int, bias: bool) -> None:
    out[f"{name}.weight"] = (rows, cols)
    if bias:
        out[f"{name}.bias"] = (rows,)


def _layer_types(config: dict, known: tuple[str, ...]) -> list[str] | None:
    """`layer_types` when config.json gives it, checked against the kinds the table describes."""
    kinds = config.get("layer_types")
    if kinds is None:
        return None
    if not isinstance(kinds, list) or len(kinds) != config["num_hidden_layers"] or not set(kinds) <= set(known):
        raise _Unsure("layer_types")
    return kinds


def _attention(c: dict, out: dict, prefix: str, *, head_dim_given: bool, o_name: str = "o_proj",
               qkv_bias: bool = False, o_bias: bool = False, norms: str | None = None) -> None:  # fmt: skip
    """q/k/v/o projections (and per-head norms, `norms` naming them) of one attention block."""
    hidden, heads, kv = _size(c, "hidden_size"), _size(c, "num_attention_heads"), _size(c, "num_key_value_heads")
    if hidden % heads or heads % kv:
        raise _Unsure("heads")  # transformers refuses some of these configs; let it say which
    if "head_dim" in c or head_dim_given:
        head_dim = _size(c, "head_dim")
    else:
        head_dim = hidden // heads
    _linear(out, f"{prefix}q_proj", heads * head_dim, hidden, qkv_bias)
    _linear(out, f"{prefix}k_proj", kv * head_dim, hidden, qkv_bias)
    _linear(out, f"{prefix}v_proj", kv * head_dim, hidden, qkv_bias)
    _linear(out, f"{prefix}{o_name}", hidden, heads * head_dim, o_bias)
    if norms:
        out[f"{prefix}q_{norms}.weight"] = out[f"{prefix}k_{norms}.weight"] = (head_dim,)


def _mlp(out: dict, prefix: str, names: tuple[str, str, str], hidden: int, inner: int, bias: bool = False) -> None:
    gate, up, down = names
    _linear(out, f"{prefix}{gate}", inner, hidden, bias)
    _linear(out, f"{prefix}{up}", inner, hidden, bias)
    _linear(out, f"{prefix}{down}", hidden, inner, bias)


def _llama_like(c: dict, *, head_dim_given: bool = False, qkv_bias: bool = False, reads_attention_bias: bool = False,
                reads_mlp_bias: bool = False, qk_norm: bool = False, ffn_norms: bool = False) -> dict:  # fmt: skip
    """Llama and its descendants: the flags say what each family adds to Llama's layer (`reads_*`: the
    family's modeling code honours that config flag; the others ignore it)."""
    hidden, inner = _size(c, "hidden_size"), _size(c, "intermediate_size")
    attention_bias = reads_attention_bias and _flag(c, "attention_bias", False)
    mlp_bias = reads_mlp_bias and _flag(c, "mlp_bias", False)
    _layer_types(c, ATTENTION_TYPES)
    norms = ["input_layernorm", "post_attention_layernorm"]
    norms += ["pre_feedforward_layernorm", "post_feedforward_layernorm"] if ffn_norms else []
    out: dict = {}
    for i in range(c["num_hidden_layers"]):
        prefix = f"model.layers.{i}."
        _attention(c, out, prefix + "self_attn.", head_dim_given=head_dim_given, qkv_bias=qkv_bias or attention_bias,
                   o_bias=attention_bias, norms="norm" if qk_norm else None)  # fmt: skip
        _mlp(out, prefix + "mlp.", ("gate_proj", "up_proj", "down_proj"), hidden, inner, mlp_bias)
        out.update({f"{prefix}{norm}.weight": (hidden,) for norm in norms})
    out["model.norm.weight"] = (hidden,)
    return out


def _lfm2_ff_dim(c: dict) -> int:
    """The feed-forward width, exactly as Lfm2MLP derives it from the config."""
    inner = _size(c, "block_ff_dim") if "block_ff_dim" in c else _size(c, "intermediate_size")
    if _flag(c, "block_auto_adjust_ff_dim", True):
        multiplier, multiple = c.get("block_ffn_dim_multiplier"), _size(c, "block_multiple_of")
        if type(multiplier) not in (int, float):  # transformers' config refuses a null one
            raise _Unsure("block_ffn_dim_multiplier")
        inner = int(multiplier * int(2 * inner / 3))
        inner = multiple * ((inner + multiple - 1) // multiple)
    if inner <= 0:
        raise _Unsure("block_ff_dim")
    return inner


def _lfm2_kinds(c: dict) -> list[str]:
    kinds = _layer_types(c, ("full_attention", "conv"))
    if kinds is not None:
        return kinds
    attention = c.get("full_attn_idxs")  # transformers' default (every layer attention) is no LFM2's
    if not isinstance(attention, list) or any(type(i) is not int for i in attention):
        raise _Unsure("full_attn_idxs")
    return ["full_attention" if i in attention else "conv" for i in range(c["num_hidden_layers"])]


def _lfm2(c: dict) -> dict:
    """LFM2: short-convolution blocks and attention blocks (with per-head norms), a SwiGLU each."""
    hidden, inner, bias = _size(c, "hidden_size"), _lfm2_ff_dim(c), _flag(c, "conv_bias", False)
    out: dict = {"model.embedding_norm.weight": (hidden,)}
    for i, kind in enumerate(_lfm2_kinds(c)):
        prefix = f"model.layers.{i}."
        if kind == "full_attention":
            _attention(c, out, prefix + "self_attn.", head_dim_given=False, o_name="out_proj", norms="layernorm")
        else:
            out[f"{prefix}conv.conv.weight"] = (hidden, 1, _size(c, "conv_L_cache"))
            if bias:
                out[f"{prefix}conv.conv.bias"] = (hidden,)
            _linear(out, f"{prefix}conv.in_proj", 3 * hidden, hidden, bias)
            _linear(out, f"{prefix}conv.out_proj", hidden, hidden, bias)
        _mlp(out, prefix + "feed_forward.", ("w1", "w3", "w2"), hidden, inner)
        out[f"{prefix}operator_norm.weight"] = out[f"{prefix}ffn_norm.weight"] = (hidden,)
    return out


def _tied(c: dict) -> bool:
    """Is the LM head the embedding? LFM2's hub configs say so as `tie_embedding`, which wins."""
    key = "tie_embedding" if c["model_type"] == "lfm2" and "tie_embedding" in c else "tie_word_embeddings"
    return _flag(c, key)


# model_type -> (the one architectures class described, the tensors of its layers and final norm)
FAMILIES = {
    "llama": ("LlamaForCausalLM", partial(_llama_like, reads_attention_bias=True, reads_mlp_bias=True)),
    "mistral": ("MistralForCausalLM", _llama_like),  # modeling_mistral has no bias at all
    "qwen2": ("Qwen2ForCausalLM", partial(_llama_like, qkv_bias=True)),
    "qwen3": ("Qwen3ForCausalLM", partial(_llama_like, head_dim_given=True, reads_attention_bias=True, qk_norm=True)),
    "gemma2": ("Gemma2ForCausalLM", partial(_llama_like, head_dim_given=True, reads_attention_bias=True,
                                            ffn_norms=True)),
    "gemma3_text": ("Gemma3ForCausalLM", partial(_llama_like, head_dim_given=True, reads_attention_bias=True,
                                                 qk_norm=True, ffn_norms=True)),
    "lfm2": ("Lfm2ForCausalLM", _lfm2),
}  # fmt: skip


def layout(config: dict) -> Expected | None:
    """The state dict `config` describes, or None when this table can't say for sure."""
    family = FAMILIES.get(config.get("model_type"))
    if family is None or (config.get("architectures") or [family[0]]) != [family[0]]:
        return None
    if any(k in DECLINED_KEYS or any(w in k.lower() for w in DECLINED_WORDS) for k in config):
        return None
    try:
        _size(config, "num_hidden_layers")  # the families count layers on it
        vocab, hidden = _size(config, "vocab_size"), _size(config, "hidden_size")
        pad = config.get("pad_token_id")
        if pad is not None and (type(pad) is not int or not -vocab <= pad < vocab):
            raise _Unsure("pad_token_id")  # nn.Embedding refuses it; transformers reports that
        shapes = {EMBED: (vocab, hidden), **family[1](config), HEAD: (vocab, hidden)}
        tied = _tied(config)
    except _Unsure:
        return None
    return Expected({name: (shape, True) for name, shape in shapes.items()}, [(EMBED, HEAD)] if tied else [], ())
