"""The fault matrix: what hala promises under faults, one test per probe."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hala.cli import app

# --- checks before writing, inputs and configs ---


def _cli(*args: str):
    return CliRunner().invoke(app, list(args))


def _broken_copy(model: Path, dest: Path, *, drop: str | None = None, config: dict | None = None) -> Path:
    """A copy of `model` without tensor `drop`, or with config.json keys replaced (a config that lies)."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(model, dest)
    if drop:
        state = load_file(dest / "model.safetensors")
        del state[drop]
        save_file(state, dest / "model.safetensors", metadata={"format": "pt"})
    if config:
        data = json.loads((dest / "config.json").read_text())
        (dest / "config.json").write_text(json.dumps({**data, **config}))
    return dest


def test_quantize_no_verify_refuses_a_checkpoint_missing_a_tensor(tiny_llama, tmp_path):
    source = _broken_copy(tiny_llama, tmp_path / "src", drop="model.layers.1.mlp.down_proj.weight")
    result = _cli("quantize", "-m", str(source), "-o", str(tmp_path / "out"), "--no-verify")
    assert result.exit_code == 1, result.output
    assert "model.layers.1.mlp.down_proj.weight: missing (config.json implies [128, 256]" in result.output
    assert str(source / "config.json") in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".*.tmp"))


def test_quantize_no_verify_refuses_a_config_that_lies_about_a_shape(tiny_llama, tmp_path):
    source = _broken_copy(tiny_llama, tmp_path / "src", config={"intermediate_size": 512})
    result = _cli("quantize", "-m", str(source), "-o", str(tmp_path / "out"), "--no-verify")
    assert result.exit_code == 1, result.output
    expected = "model.layers.0.mlp.down_proj.weight: config.json implies [128, 512], model.safetensors holds [128, 256]"
    assert expected in result.output
    assert not (tmp_path / "out").exists()


def test_quantize_refuses_a_weight_stored_as_integers(tiny_llama, tmp_path):
    import torch
    from safetensors.torch import load_file, save_file

    source = _broken_copy(tiny_llama, tmp_path / "src")
    state = load_file(source / "model.safetensors")
    state["model.norm.weight"] = state["model.norm.weight"].to(torch.int16)
    save_file(state, source / "model.safetensors", metadata={"format": "pt"})
    result = _cli("quantize", "-m", str(source), "-o", str(tmp_path / "out"), "--no-verify")
    assert result.exit_code == 1, result.output
    assert "model.norm.weight: model.safetensors stores it as I16; the network expects floating point" in result.output


def test_merge_no_check_refuses_a_config_that_lies_about_a_shape(tiny_llama, tmp_path):
    base = _broken_copy(tiny_llama, tmp_path / "base", config={"intermediate_size": 512})
    result = _cli("merge", "-b", str(base), "-m", str(tiny_llama), "-o", str(tmp_path / "out"), "--no-check")
    assert result.exit_code == 1, result.output
    assert str(base / "config.json") in result.output
    expected = "model.layers.1.mlp.up_proj.weight: config.json implies [512, 128], model.safetensors holds [256, 128]"
    assert expected in result.output
    assert not (tmp_path / "out").exists()


def test_structure_check_accepts_tied_embeddings_stored_once(tiny_llama, tmp_path):
    from hala.quantize.checkpoint import tensor_refs, weight_files
    from hala.quantize.structure import StructureError, check_structure

    source = _broken_copy(tiny_llama, tmp_path / "tied", drop="lm_head.weight", config={"tie_word_embeddings": True})
    config = json.loads((source / "config.json").read_text())
    check_structure(tensor_refs(weight_files(source)), config, source / "config.json")  # one copy is enough
    untied = _broken_copy(tiny_llama, tmp_path / "untied", drop="lm_head.weight")
    with pytest.raises(StructureError, match=r"lm_head.weight: missing \(config.json implies \[1024, 128\]"):
        check_structure(tensor_refs(weight_files(untied)), json.loads((untied / "config.json").read_text()), untied)


def test_convert_of_inputs_without_a_row_fails_and_writes_nothing(tmp_path):
    (tmp_path / "empty.jsonl").write_text("")
    result = _cli("data", "convert", "-i", str(tmp_path / "empty.jsonl"), "-o", str(tmp_path / "out"))
    assert result.exit_code == 1
    assert "no rows in the inputs" in result.output and "empty.jsonl" in result.output
    assert not (tmp_path / "out").exists()


def test_convert_where_every_row_is_rejected_exits_1_naming_the_reasons(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"foo": [1, 2, 3]}), tmp_path / "bad.parquet")
    result = _cli("data", "convert", "-i", str(tmp_path / "bad.parquet"), "-o", str(tmp_path / "out"))
    assert result.exit_code == 1
    assert "no row was kept: all 3 were rejected (wrong_schema=3)" in result.output
    assert len(list((tmp_path / "out" / "rejected").iterdir())) == 1  # the reasons stay readable


def test_a_run_whose_rows_were_all_turned_down_by_a_verdict_warns_loudly(tmp_path):
    rows = [{"en": f"Sentence number {i}.", "ar": f"الجملة رقم {i}."} for i in range(3)]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    result = _cli("judge", "-i", str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "out"), "--engine", "fake")
    assert result.exit_code == 0, result.output  # the judge did its job: the fake engine's answers are unparseable
    assert "warning: no row was kept: all 3 were rejected (judge_unparseable=3)" in result.output


def test_strict_stop_at_the_first_row_leaves_no_output_folder(tmp_path):
    (tmp_path / "in.jsonl").write_text('{"foo": 1}\n')
    result = _cli("data", "convert", "-i", str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "out"), "--strict")
    assert result.exit_code == 1 and "in.jsonl:1:" in result.output
    assert not (tmp_path / "out").exists()


def test_duplicate_ids_with_other_content_are_rejected_naming_the_first_line(tmp_path):
    from hala.data.readers import read_conversations, read_pairs
    from hala.data.rejects import RejectLog

    rows = [{"id": "x", "messages": [{"role": "user", "content": text}]} for text in ("a", "b", "a")]
    (tmp_path / "c.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    rejects = RejectLog()
    kept = list(read_conversations(tmp_path / "c.jsonl", rejects=rejects))
    assert [c.messages[0].content for c in kept] == ["a", "a"]  # the same record twice is not a clash
    (reject,) = rejects.rejects
    assert (reject.line, reject.kind) == (2, "duplicate_id") and "line 1" in reject.reason
    (tmp_path / "p.jsonl").write_text('{"id": 1, "en": "a", "ar": "ب"}\n{"id": 1, "en": "c", "ar": "د"}\n')
    rejects = RejectLog()
    assert len(list(read_pairs(tmp_path / "p.jsonl", rejects=rejects))) == 1
    assert rejects.counts() == {"duplicate_id": 1}


def test_a_tsv_line_holding_only_a_tab_is_rejected_with_its_line(tmp_path):
    from hala.data.readers import read_pairs
    from hala.data.rejects import RejectLog

    (tmp_path / "p.tsv").write_text("a\tب\n\t\n\nc\tد\n")
    rejects = RejectLog()
    assert len(list(read_pairs(tmp_path / "p.tsv", rejects=rejects))) == 2
    assert [r.where for r in rejects.rejects] == [f"{tmp_path / 'p.tsv'}:2"]  # the blank line 3 is no row


def test_an_unknown_nested_key_lists_the_keys_of_its_own_section(tmp_path):
    from hala.config import ConfigError, load_config
    from hala.merge.config import MergeConfig

    recipe = tmp_path / "m.yaml"
    recipe.write_text("base: a\nmodel: b\nout: c\ncheck:\n  promt: hi\n")
    with pytest.raises(ConfigError) as err:
        load_config(MergeConfig, recipe)
    assert f"{recipe}: check.promt: unknown key" in str(err.value)
    assert "valid keys under check: enabled, prompt, max_new_tokens" in str(err.value)
    assert "top level" not in str(err.value)


def test_a_typo_in_an_override_is_blamed_on_the_override_not_the_file(tmp_path):
    from hala.config import ConfigError, load_config
    from hala.merge.config import MergeConfig

    recipe = tmp_path / "m.yaml"
    recipe.write_text("base: a\nmodel: b\nout: c\n")
    with pytest.raises(ConfigError) as err:
        load_config(MergeConfig, recipe, ["check.promt=hi"])
    assert str(err.value).startswith("command-line override 'check.promt=hi': check.promt: unknown key")

    from hala.run.recipe import Recipe
    from hala.run.runner import plan

    tiny = Path(__file__).parent.parent / "recipes" / "tiny-cpu.yaml"
    overrides = ["translate.engine.kindd=fake", f"out={tmp_path / 'run'}"]
    with pytest.raises(ConfigError) as err:  # a stage's key, checked when `hala run` plans
        plan(load_config(Recipe, tiny, overrides), str(tiny), check_refs=False, overrides=overrides)
    assert str(err.value).startswith(
        "command-line override 'translate.engine.kindd=fake': translate.engine.kindd: unknown key"
    )
    assert "(valid keys under translate.engine: kind, model," in str(err.value)


def test_t_out_of_range_bad_launchers_and_duplicate_yaml_keys_are_refused(tmp_path):
    from hala.config import ConfigError, load_config, read_yaml
    from hala.merge.config import MergeConfig
    from hala.run.recipe import Recipe

    for t in ("1.5", "[0, 2]", "[{filter: mlp, value: -1}, {value: 0.5}]"):
        with pytest.raises(ConfigError, match="t must be between 0"):
            load_config(MergeConfig, None, ["base=a", "model=b", "out=c", f"t={t}"])
    recipe = Path(__file__).parent.parent / "recipes" / "tiny-cpu.yaml"
    for launchers, problem in (("{sftt: accelerate}", "'sftt' is not a stage"), ("{sft: ''}", "sft: empty"),
                               ('{sft: "a \\"b"}', "is not a command line")):  # fmt: skip
        with pytest.raises(ConfigError, match=problem):
            load_config(Recipe, recipe, [f"launchers={launchers}"])
    twice = tmp_path / "twice.yaml"
    twice.write_text("base: a\nt: 0.5\nout: c\nt: 0.7\n")
    with pytest.raises(ConfigError, match=r"twice.yaml:4: invalid YAML: duplicate key 't' \(first on line 2\)"):
        read_yaml(twice)


def test_a_copied_or_renamed_finished_translate_folder_is_accepted(tmp_path, monkeypatch):
    from hala.translate.config import TranslateConfig
    from hala.translate.pipeline import translate

    monkeypatch.chdir(tmp_path)
    (tmp_path / "in.jsonl").write_text(
        "".join(json.dumps({"messages": [{"role": "user", "content": f"Hello number {i}."}]}) + "\n" for i in range(4))
    )

    def run(out: str):
        return translate(TranslateConfig(inputs=["in.jsonl"], out=out, engine={"kind": "fake"}, progress=False))

    first = run("a")
    shutil.copytree("a", "copy")
    Path("a").rename("moved")
    for folder in ("copy", "moved"):
        again = run(folder)  # up to date: no OutputInUseError, nothing redone
        assert again.fingerprint == first.fingerprint and again.counts == first.counts
