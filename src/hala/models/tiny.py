"""Tiny random models for tests and the offline default recipe.

Nothing may come from a model hub here, so every test builds its own models: a byte-level BPE
tokenizer trained in a second on a few hundred English and Arabic sentences, and a two-layer
Llama- or LFM2-style network with random weights. The shapes are chosen for vLLM-CPU, which needs a
head dimension of at least 32 (64 is what its kernels are tuned for), and the chat template is
ChatML with `{% generation %}` markers so TRL's assistant-only loss works on it unchanged.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>"]

_FALLBACK_CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Translate everything that follows into Arabic:",
    "مرحبا بك في هذا المثال البسيط.",
    "الترجمة الآلية تساعد الباحثين في معالجة اللغة العربية.",
]


def chatml_template() -> str:
    """ChatML with `{% generation %}` around assistant turns (for assistant-only loss)."""
    return resources.files("hala.resources").joinpath("chatml.jinja").read_text(encoding="utf-8")


def _corpus() -> list[str]:
    """English and Arabic lines from the bundled seed pairs, so the BPE learns both scripts."""
    lines = list(_FALLBACK_CORPUS)
    seed = resources.files("hala.resources").joinpath("samples/seed_pairs.jsonl")
    if seed.is_file():
        for raw in seed.read_text(encoding="utf-8").splitlines():
            if raw.strip():
                row = json.loads(raw)
                lines += [row["en"], row["ar"]]
    return lines


def build_tokenizer(vocab_size: int = 1024):
    """Train a byte-level BPE on English+Arabic text and wrap it as a HF fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_corpus(), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token="<|endoftext|>",
        eos_token="<|im_end|>",
        pad_token="<|pad|>",
        unk_token="<|endoftext|>",
    )
    tokenizer.chat_template = chatml_template()
    return tokenizer


def _save(model, tokenizer, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    model.generation_config.save_pretrained(out)
    return out


def _ids(tokenizer) -> dict:
    return dict(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def decoder_shape(hidden_size: int, intermediate_size: int, layers: int) -> dict:
    """The config keys every random decoder here shares: heads of 64, 2048 positions, BF16."""
    return dict(
        hidden_size=hidden_size, intermediate_size=intermediate_size, num_hidden_layers=layers,
        num_attention_heads=hidden_size // 64, num_key_value_heads=hidden_size // 64,
        max_position_embeddings=2048, dtype="bfloat16",
    )  # fmt: skip


def make_tiny_llama(out: str | Path, *, hidden_size: int = 128, layers: int = 2, seed: int = 0) -> Path:
    """A random Llama (head_dim 64) with a local tokenizer, saved as an HF folder."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    tokenizer = build_tokenizer()
    config = LlamaConfig(
        **decoder_shape(hidden_size, 2 * hidden_size, layers), head_dim=64, tie_word_embeddings=False, **_ids(tokenizer)
    )
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    return _save(model, tokenizer, Path(out))


# vLLM's LFM2 implementation reads the hub's config keys, which transformers' Lfm2Config does not
# write. We add them so a tiny LFM2 saved here loads in both.
def _lfm2_hub_keys(config) -> dict:
    return {
        "block_dim": config.hidden_size,
        "block_ff_dim": config.intermediate_size,
        "conv_dim": config.hidden_size,
        "conv_dim_out": config.hidden_size,
        "full_attn_idxs": [i for i, t in enumerate(config.layer_types) if t == "full_attention"],
        "num_heads": config.num_attention_heads,
        "norm_eps": config.norm_eps,
    }


def make_tiny_lfm2(out: str | Path, *, hidden_size: int = 128, layers: int = 2, seed: int = 0) -> Path:
    """A random LFM2 (one conv block, one attention block, head_dim 64), loadable by vLLM."""
    import torch
    from transformers import Lfm2Config, Lfm2ForCausalLM

    torch.manual_seed(seed)
    tokenizer = build_tokenizer()
    layer_types = ["conv" if i % 2 == 0 else "full_attention" for i in range(layers)]
    config = Lfm2Config(
        **decoder_shape(hidden_size, 2 * hidden_size, layers),
        layer_types=layer_types,
        block_auto_adjust_ff_dim=False,
        **_ids(tokenizer),
    )
    model = Lfm2ForCausalLM(config).to(torch.bfloat16)
    out = _save(model, tokenizer, Path(out))
    config_path = out / "config.json"
    data = json.loads(config_path.read_text())
    data.update(_lfm2_hub_keys(config))
    config_path.write_text(json.dumps(data, indent=2))
    return out
