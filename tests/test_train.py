"""`hala train`: the loss masks, the training template, failures that must not be silent, saving."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from hala.config import ConfigError, load_config
from hala.train.config import TrainConfig
from hala.train.sft import NoTrainableTokensError, build_trainer, train
from hala.train.templates import TemplateError, has_markers, training_template

SMOLLM2_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful AI assistant<|im_end|>\\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
CONVS = [
    {"messages": [{"role": "system", "content": "Translate well."}, {"role": "user", "content": "Good morning"},
                  {"role": "assistant", "content": "صباح الخير"}, {"role": "user", "content": "Thank you"},
                  {"role": "assistant", "content": "شكرا لك"}]},
    {"messages": [{"role": "user", "content": "Where is the market?"}, {"role": "assistant", "content": "أين السوق؟"}]},
]  # fmt: skip


def write(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def masked_text(prepared, index: int) -> str:
    example = prepared.trainer.train_dataset[index]
    return prepared.tokenizer.decode([t for t, label in zip(example["input_ids"], example["labels"]) if label != -100])


def seed_pairs(n: int) -> list[dict]:
    from importlib import resources

    text = resources.files("hala.resources").joinpath("samples/seed_pairs.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines()[:n]]


def test_label_mask_covers_exactly_the_assistant_tokens(tmp_path, tiny_llama):
    data = write(tmp_path / "c.jsonl", CONVS)
    prepared = build_trainer(TrainConfig(model=str(tiny_llama), data=[str(data)], out=str(tmp_path / "o")))
    assert prepared.fmt == "conversations"
    assert masked_text(prepared, 0) == "صباح الخير<|im_end|>شكرا لك<|im_end|>"
    assert masked_text(prepared, 1) == "أين السوق؟<|im_end|>"


def test_trl_fields_pass_through_and_the_warmup_fraction_is_the_one_configured(tmp_path, tiny_llama):
    """`trl.NAME=VALUE` sets any SFTConfig field. transformers 5 has no `warmup_ratio`: it reads a
    float `warmup_steps` in [0, 1) as the fraction of the steps, so that is what warmup_ratio sets."""
    data = write(tmp_path / "c.jsonl", CONVS)
    settings = {"model": str(tiny_llama), "data": [str(data)], "out": str(tmp_path / "o"), "warmup_ratio": 0.1}
    cfg = load_config(TrainConfig, None, ["trl.gradient_checkpointing=true", "trl.neftune_noise_alpha=5"], settings)
    args = build_trainer(cfg).trainer.args
    assert args.gradient_checkpointing is True and args.neftune_noise_alpha == 5
    assert args.warmup_steps == 0.1 and args.get_warmup_steps(200) == 20


def test_an_unknown_trl_field_is_refused_with_the_valid_names():
    settings = {"model": "m", "data": ["d.jsonl"], "out": "o"}
    with pytest.raises(ConfigError, match=r"trl.gradient_checkpoint: not a field .*did you mean gradient_checkpointing"
                                          r".*valid: .*neftune_noise_alpha"):  # fmt: skip
        load_config(TrainConfig, None, ["trl.gradient_checkpoint=true"], settings)
    with pytest.raises(ConfigError, match="trl.output_dir: hala writes the checkpoints to OUT/checkpoints"):
        load_config(TrainConfig, None, ["trl.output_dir=elsewhere"], settings)


def test_template_without_markers_is_patched_and_renders_the_same(tmp_path, tiny_llama):
    """SmolLM2's ChatML template has no {% generation %} markers: training must still mask."""
    template = tmp_path / "smol.jinja"
    template.write_text(SMOLLM2_TEMPLATE)
    data = write(tmp_path / "c.jsonl", CONVS)
    cfg = TrainConfig(model=str(tiny_llama), data=[str(data)], out=str(tmp_path / "o"), chat_template=str(template))
    prepared = build_trainer(cfg)
    assert not has_markers(prepared.original_template) and has_markers(prepared.tokenizer.chat_template)
    assert masked_text(prepared, 1) == "أين السوق؟<|im_end|>"
    assert "You are a helpful AI assistant" not in masked_text(prepared, 1)


def test_template_that_cannot_be_patched_is_an_error(tiny_llama):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    tokenizer.chat_template = "{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}"
    with pytest.raises(TemplateError, match="generation"):
        training_template(tokenizer)


def test_completion_only_loss_for_prompt_completion(tmp_path, tiny_llama):
    rows = [{"prompt": [{"role": "user", "content": "Translate everything that follows into Arabic:\n\nGood night"}],
             "completion": [{"role": "assistant", "content": "تصبح على خير"}]}]  # fmt: skip
    data = write(tmp_path / "pc.jsonl", rows)
    prepared = build_trainer(TrainConfig(model=str(tiny_llama), data=[str(data)], out=str(tmp_path / "o")))
    assert prepared.fmt == "prompt_completion"
    assert masked_text(prepared, 0).startswith("تصبح على خير<|im_end|>")
    assert "Good night" not in masked_text(prepared, 0)


def test_no_trainable_tokens_is_an_error(tmp_path, tiny_llama):
    rows = [{"messages": [{"role": "user", "content": "Only a question, nobody answers."}]}] * 3
    data = write(tmp_path / "c.jsonl", rows)
    with pytest.raises(NoTrainableTokensError, match="no trainable train rows"):
        train(TrainConfig(model=str(tiny_llama), data=[str(data)], out=str(tmp_path / "o"), max_steps=1))
    rejected = (tmp_path / "o" / "rejected" / "train.jsonl").read_text()
    assert rejected.count("no_assistant_turn") == 3
    long_prompt = [{"prompt": [{"role": "user", "content": "word " * 200}], "completion": [{"role": "assistant", "content": "ok"}]}]
    data = write(tmp_path / "pc.jsonl", long_prompt)
    with pytest.raises(NoTrainableTokensError, match="max_length=32"):
        train(TrainConfig(model=str(tiny_llama), data=[str(data)], out=str(tmp_path / "o2"), max_length=32, max_steps=1))


def test_bad_rows_are_reported_not_trained_on(tmp_path, tiny_llama):
    data = tmp_path / "pc.jsonl"
    good = {"prompt": [{"role": "user", "content": "Hi"}], "completion": [{"role": "assistant", "content": "مرحبا"}]}
    data.write_text(json.dumps(good) + "\n{oops\n" + json.dumps({"prompt": "x", "completion": [1]}) + "\n")
    prepared = build_trainer(TrainConfig(model=str(tiny_llama), data=[str(data)], out=str(tmp_path / "o")))
    assert prepared.examples == 1 and prepared.rejected == 2
    rejected = [json.loads(line) for line in (tmp_path / "o" / "rejected" / "train.jsonl").read_text().splitlines()]
    assert [(r["line"], r["kind"]) for r in rejected] == [(2, "invalid_json"), (3, "wrong_type")]


@pytest.mark.slow
def test_training_lowers_the_loss_and_saves_a_clean_model(tmp_path, tiny_llama):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    rows = [{"prompt": [{"role": "user", "content": "Translate everything that follows into Arabic:\n\n" + p["en"]}],
             "completion": [{"role": "assistant", "content": p["ar"]}]} for p in seed_pairs(32)]  # fmt: skip
    data = write(tmp_path / "pc.jsonl", rows)
    cfg = TrainConfig(model=str(tiny_llama), data=[str(data)], out=str(tmp_path / "o"), max_steps=30, batch_size=8,
                      learning_rate=3e-3, logging_steps=5, save_steps=1000)  # fmt: skip
    manifest = train(cfg)
    history = json.loads((tmp_path / "o" / "loss_history.json").read_text())
    assert history[-1]["loss"] < history[0]["loss"] - 0.5
    assert manifest.counts["steps"] == 30 and manifest.counts["trainable_tokens"] > 0
    model_dir = tmp_path / "o" / "model"
    assert (model_dir / "model.safetensors").exists() and (model_dir / "tokenizer.json").exists()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    assert tokenizer.chat_template == AutoTokenizer.from_pretrained(tiny_llama).chat_template
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    base = AutoModelForCausalLM.from_pretrained(tiny_llama)
    changed = any(not torch.equal(a, b) for a, b in zip(model.state_dict().values(), base.state_dict().values()))
    assert changed
    assert train(cfg).fingerprint == manifest.fingerprint  # a finished run is not redone


def test_a_save_that_dies_half_way_leaves_no_model_folder_and_a_rerun_writes_it_whole(tmp_path, tiny_llama, monkeypatch):
    import hala.train.sft as sft

    data = write(tmp_path / "c.jsonl", CONVS)
    cfg = TrainConfig(model=str(tiny_llama), data=[str(data)], out=str(tmp_path / "o"), max_steps=2, batch_size=2,
                      save_steps=1000)  # fmt: skip

    def disk_full(model, folder):  # the weights and tokenizer are written; the license copy fails
        assert (Path(folder) / "model.safetensors").exists()
        raise OSError("No space left on device")

    monkeypatch.setattr(sft, "copy_license_files", disk_full)
    with pytest.raises(OSError, match="No space"):
        train(cfg)
    assert not (tmp_path / "o" / "model").exists()  # complete or absent: never the weights without the rest
    assert not list(tmp_path.glob("o/.model.*.tmp")) and not (tmp_path / "o" / "manifest.json").exists()
    monkeypatch.undo()
    manifest = train(cfg)
    assert {Path(o.path).name for o in manifest.outputs} >= {"model.safetensors", "tokenizer.json", "config.json"}


class Killed(Exception):
    """Stands for a kill: raised by `Interrupt` right after the checkpoint of its step is saved."""


@pytest.fixture
def interrupt(monkeypatch):
    """Every trainer `train` builds gets a callback that stops the run after the checkpoint of step
    `interrupt.at` (None: never) and records the step each training started at."""
    from transformers import TrainerCallback

    import hala.train.sft as sft

    class Interrupt(TrainerCallback):
        def __init__(self):
            self.at: int | None = None
            self.started_at: list[int] = []
            self.starting = False

        def on_train_begin(self, args, state, control, **kwargs):
            self.starting = True

        def on_step_begin(self, args, state, control, **kwargs):
            if self.starting:
                self.started_at.append(state.global_step)
                self.starting = False

        def on_save(self, args, state, control, **kwargs):
            if state.global_step == self.at:
                raise Killed(f"after step {state.global_step}")

    callback, real = Interrupt(), sft.build_trainer

    def watched(cfg):
        prepared = real(cfg)
        prepared.trainer.add_callback(callback)
        return prepared

    monkeypatch.setattr(sft, "build_trainer", watched)
    return callback


def test_resume_continues_its_own_run_and_refuses_another_runs_checkpoints(tmp_path, tiny_llama, interrupt):
    from hala.data.manifest import OutputInUseError

    rows = [{"prompt": [{"role": "user", "content": "Hi"}], "completion": [{"role": "assistant", "content": "مرحبا"}]}] * 8
    data, out = write(tmp_path / "pc.jsonl", rows), tmp_path / "o"
    base = dict(model=str(tiny_llama), data=[str(data)], out=str(out), max_steps=4, batch_size=4, save_steps=2)
    interrupt.at = 2
    with pytest.raises(Killed):
        train(TrainConfig(**base))
    assert [p.name for p in (out / "checkpoints").glob("checkpoint-*")] == ["checkpoint-2"]
    with pytest.raises(OutputInUseError, match=r"different settings learning_rate;.*delete this one"):
        train(TrainConfig(**base, learning_rate=1e-3, resume=True))  # its checkpoint is not this run's
    assert [p.name for p in (out / "checkpoints").glob("checkpoint-*")] == ["checkpoint-2"]
    interrupt.at = None
    manifest = train(TrainConfig(**base, resume=True, logging_steps=1, save_total_limit=3))  # pace settings may change
    assert interrupt.started_at == [0, 2] and manifest.counts["steps"] == 4  # resumed after step 2


@pytest.mark.slow
def test_lora_is_merged_and_resume_continues(tmp_path, tiny_llama, interrupt):
    from safetensors import safe_open

    data = write(tmp_path / "c.jsonl", CONVS * 8)
    base = dict(model=str(tiny_llama), data=[str(data)], out=str(tmp_path / "o"), batch_size=4, save_steps=2,
                lora={"r": 4, "alpha": 8}, learning_rate=1e-3, max_steps=4)  # fmt: skip
    interrupt.at = 2
    with pytest.raises(Killed):
        train(TrainConfig(**base))
    assert (tmp_path / "o" / "checkpoints" / "checkpoint-2").exists()
    interrupt.at = None
    manifest = train(TrainConfig(**base, resume=True))
    assert interrupt.started_at == [0, 2]
    assert manifest.counts["steps"] == 4 and (tmp_path / "o" / "checkpoints" / "checkpoint-4").exists()
    with safe_open(tmp_path / "o" / "model" / "model.safetensors", "pt") as f:
        assert not [k for k in f.keys() if "lora" in k]


def test_training_works_after_a_library_turned_grad_off(tmp_path, tiny_llama):
    """Importing lighteval's transformers model runs torch.set_grad_enabled(False) for the process."""
    import torch

    rows = [{"prompt": [{"role": "user", "content": "Hi"}], "completion": [{"role": "assistant", "content": "مرحبا"}]}] * 8
    data = write(tmp_path / "pc.jsonl", rows)
    torch.set_grad_enabled(False)
    try:
        manifest = train(TrainConfig(model=str(tiny_llama), data=[str(data)], out=str(tmp_path / "o"), max_steps=2, batch_size=4))
    finally:
        torch.set_grad_enabled(True)
    assert manifest.counts["steps"] == 2


def test_frozen_embeddings_stay_bit_identical_the_rest_trains_and_the_license_follows(tmp_path, tiny_llama):
    import torch
    from safetensors.torch import load_file

    rows = [{"prompt": [{"role": "user", "content": "Translate everything that follows into Arabic:\n\n" + p["en"]}],
             "completion": [{"role": "assistant", "content": p["ar"]}]} for p in seed_pairs(16)]  # fmt: skip
    data = write(tmp_path / "pc.jsonl", rows)
    licensed = tmp_path / "licensed-base"
    shutil.copytree(tiny_llama, licensed)
    (licensed / "NOTICE.txt").write_text("Provided under the Example Terms\n")  # a derivative must carry it
    common = dict(model=str(licensed), data=[str(data)], max_steps=2, batch_size=8, learning_rate=1e-2)
    frozen = train(TrainConfig(**common, out=str(tmp_path / "frozen"), freeze_embeddings=True))
    full = train(TrainConfig(**common, out=str(tmp_path / "full")))
    base = load_file(next(Path(tiny_llama).glob("*.safetensors")))
    after = load_file(tmp_path / "frozen" / "model" / "model.safetensors")
    embed = "model.embed_tokens.weight"
    assert torch.equal(after[embed], base[embed])
    assert not torch.equal(after["model.layers.0.mlp.down_proj.weight"], base["model.layers.0.mlp.down_proj.weight"])
    assert full.counts["trainable_parameters"] - frozen.counts["trainable_parameters"] == base[embed].numel()
    assert (tmp_path / "full" / "model" / "NOTICE.txt").read_text() == "Provided under the Example Terms\n"
    # trained in FP32 on this CPU, saved in the base's BF16 (save_dtype: auto)
    assert base[embed].dtype == after[embed].dtype == torch.bfloat16
    as_fp32 = train(TrainConfig(**common, out=str(tmp_path / "fp32"), save_dtype="float32"))
    assert load_file(tmp_path / "fp32" / "model" / "model.safetensors")[embed].dtype == torch.float32
    assert as_fp32.counts["steps"] == 2


def test_frozen_lower_layers_stay_bit_identical_and_the_layers_above_train(tmp_path, tiny_llama):
    import torch
    from safetensors.torch import load_file

    rows = [{"prompt": [{"role": "user", "content": "Translate everything that follows into Arabic:\n\n" + p["en"]}],
             "completion": [{"role": "assistant", "content": p["ar"]}]} for p in seed_pairs(16)]  # fmt: skip
    data = write(tmp_path / "pc.jsonl", rows)
    cfg = TrainConfig(model=str(tiny_llama), data=[str(data)], out=str(tmp_path / "o"), max_steps=2, batch_size=8,
                      learning_rate=1e-2, freeze_embeddings=True, freeze_layers=1)  # fmt: skip
    manifest = train(cfg)
    base = load_file(next(Path(tiny_llama).glob("*.safetensors")))
    after = load_file(tmp_path / "o" / "model" / "model.safetensors")
    layer0 = [k for k in base if k.startswith("model.layers.0.")]
    layer1 = [k for k in base if k.startswith("model.layers.1.") and k.endswith("proj.weight")]
    assert layer0 and layer1
    assert all(torch.equal(after[k], base[k]) for k in layer0)
    assert all(not torch.equal(after[k], base[k]) for k in layer1)
    frozen = sum(base[k].numel() for k in layer0) + base["model.embed_tokens.weight"].numel()
    assert manifest.counts["trainable_parameters"] == sum(t.numel() for t in base.values()) - frozen
    with pytest.raises(ValueError, match="decoder layers"):
        build_trainer(cfg.model_copy(update={"freeze_layers": 99, "out": str(tmp_path / "p")}))
    with pytest.raises(ValueError, match="full fine-tune"):
        TrainConfig(model="m", data=["d"], out="o", freeze_layers=1, lora={})


def test_the_lm_head_projects_only_supervised_positions_on_cpu(tmp_path, tiny_llama, monkeypatch):
    """TRL alone projects every position off GPUs (prompt and padding through the whole head)."""
    import torch
    import trl.trainer.utils as trl_utils

    rows = [{"prompt": [{"role": "user", "content": "Translate everything that follows into Arabic:\n\n" + p["en"]}],
             "completion": [{"role": "assistant", "content": p["ar"]}]} for p in seed_pairs(8)]  # fmt: skip
    data = write(tmp_path / "pc.jsonl", rows)
    prepared = build_trainer(TrainConfig(model=str(tiny_llama), data=[str(data)], out=str(tmp_path / "o"), batch_size=8))
    projected = []
    real_apply = trl_utils._ChunkedLogProbFunction.apply

    def counted(hidden, *args):
        projected.append(hidden.shape[0])
        return real_apply(hidden, *args)

    monkeypatch.setattr(trl_utils._ChunkedLogProbFunction, "apply", counted)
    trainer = prepared.trainer
    batch = next(iter(trainer.get_train_dataloader()))
    with torch.no_grad():
        trainer.model(**batch, fused_lm_head=True)
    supervised = int((batch["labels"][:, 1:] != -100).sum())
    assert projected == [supervised] and supervised < batch["labels"][:, 1:].numel()


def test_a_resumed_run_ends_with_the_weights_and_loss_of_an_uninterrupted_one(tmp_path, tiny_llama, interrupt):
    """Killed mid-epoch after step 3's checkpoint (between two logging steps), then resumed: the same
    weights (every tensor), the same logged losses and the same train_loss over the run as a run
    that was never stopped (torchtune's resume test)."""
    import torch
    from safetensors.torch import load_file

    rows = [{"prompt": [{"role": "user", "content": "Translate everything that follows into Arabic:\n\n" + p["en"]}],
             "completion": [{"role": "assistant", "content": p["ar"]}]} for p in seed_pairs(12)]  # fmt: skip
    data = write(tmp_path / "pc.jsonl", rows)  # distinct rows, 6 batches an epoch: the order shows
    common = dict(model=str(tiny_llama), data=[str(data)], max_steps=8, batch_size=2, save_steps=3, logging_steps=2,
                  learning_rate=1e-2, save_dtype="float32")  # fmt: skip
    whole = train(TrainConfig(**common, out=str(tmp_path / "whole")))
    interrupt.at = 3
    with pytest.raises(Killed):
        train(TrainConfig(**common, out=str(tmp_path / "resumed")))
    interrupt.at = None
    resumed = train(TrainConfig(**common, out=str(tmp_path / "resumed"), resume=True))
    assert interrupt.started_at == [0, 0, 3] and resumed.counts["steps"] == whole.counts["steps"] == 8

    def losses(name: str) -> dict[int, float]:
        return {h["step"]: h["loss"] for h in json.loads((tmp_path / name / "loss_history.json").read_text())}

    assert list(losses("resumed")) == list(losses("whole"))
    assert losses("resumed") == pytest.approx(losses("whole"), rel=1e-6, abs=1e-7)
    assert resumed.metrics["train_loss"] == pytest.approx(whole.metrics["train_loss"], rel=1e-6)
    before = load_file(tmp_path / "whole" / "model" / "model.safetensors")
    after = load_file(tmp_path / "resumed" / "model" / "model.safetensors")
    assert before.keys() == after.keys() and all(t.dtype == torch.float32 for t in after.values())
    different = [k for k in before if not torch.allclose(before[k], after[k], rtol=1e-6, atol=1e-7)]
    assert not different, f"resumed weights differ from the uninterrupted run's in {different}"
