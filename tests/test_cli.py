"""The `hala` command line: every subcommand is there, help is cheap, pending stages fail honestly."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from hala.cli import app

runner = CliRunner()
SUBCOMMANDS = ["translate", "quantize", "pairs", "judge", "train", "merge", "eval", "run", "report", "models"]
EVAL_COMMANDS = ["bench", "translation"]


def test_help_lists_every_subcommand():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for name in SUBCOMMANDS + ["data", "generate"]:
        assert f" {name} " in result.output
    assert "not implemented" not in result.output
    eval_help = runner.invoke(app, ["eval", "--help"]).output
    assert all(f" {name} " in eval_help for name in EVAL_COMMANDS)


def test_help_imports_no_heavy_library():
    """`hala --help` stays instant because torch, vllm, trl, ... are imported inside commands."""
    code = (
        "import sys\n"
        "from hala.cli import app\n"
        "try:\n    app(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = ['torch', 'vllm', 'transformers', 'trl', 'lighteval', 'datasets', 'pyarrow', 'httpx']\n"
        "print('LOADED', [m for m in heavy if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "LOADED []" in out


def test_generate_with_fake_engine_and_overrides(tmp_path):
    data = tmp_path / "in.jsonl"
    rows = [{"id": f"c{i}", "messages": [{"role": "user", "content": f"hello {i}"}]} for i in range(3)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    args = ["generate", "-i", str(data), "-o", str(out), "--engine", "fake", "--model", "m", "rows_per_unit=2"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "rows_out=3" in result.output and "units_done=2" in result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["rows_per_unit"] == 2 and manifest["config"]["engine"]["kind"] == "fake"


def test_config_error_names_the_key_and_exits_2(tmp_path):
    result = runner.invoke(app, ["generate", "-i", "x", "-o", str(tmp_path), "sampling.temprature=0.5"])
    assert result.exit_code == 2
    assert "sampling.temprature: unknown key" in result.output


def test_recipe_file_then_flags_then_overrides(tmp_path):
    data = tmp_path / "in.jsonl"
    data.write_text(json.dumps({"messages": [{"role": "user", "content": "a b c d e f"}]}) + "\n")
    recipe = tmp_path / "gen.yaml"
    recipe.write_text(f"input: {data}\nout: {tmp_path / 'o'}\nengine: {{kind: fake, model: m}}\nsampling: {{max_tokens: 5}}\n")
    result = runner.invoke(app, ["generate", "-c", str(recipe), "--max-tokens", "3", "sampling.max_tokens=2"])
    assert result.exit_code == 0, result.output
    [line] = (tmp_path / "o" / "data").glob("*.jsonl")
    record = json.loads(line.read_text())
    assert len(record["messages"][-1]["content"].split()) == 2


def test_models_tiny_rejects_unknown_arch(tmp_path):
    result = runner.invoke(app, ["models", "tiny", "--out", str(tmp_path / "m"), "--arch", "gpt9"])
    assert result.exit_code == 2 and "valid: llama, lfm2" in result.output


def test_a_translate_run_prints_the_manifest_it_wrote(tmp_path):
    data = tmp_path / "in.jsonl"
    rows = [{"id": f"c{i}", "messages": [{"role": "user", "content": f"hello {i}"}]} for i in range(4)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))

    def wrote(*args: str) -> list[str]:
        out = str(tmp_path / args[0])
        result = runner.invoke(app, ["translate", "-i", str(data), "-o", out, "--engine", "fake", "-m", "m",
                                     *args[1:], "rows_per_unit=2", "progress=false"])  # fmt: skip
        assert result.exit_code == 0, result.output
        return [line.removeprefix("wrote ") for line in result.output.splitlines() if line.startswith("wrote ")]

    shard = tmp_path / "sharded" / "manifest.shard-00001-of-00002.json"
    assert wrote("sharded", "--shard", "1/2") == [str(shard)] and shard.is_file()
    merged = tmp_path / "local" / "merged" / "manifest.json"
    assert wrote("local", "--executor", "local", "--workers", "2") == [str(merged)] and merged.is_file()
    launched = wrote("slurm", "--executor", "slurm", "--workers", "2")  # the launch leaves no manifest
    assert str(tmp_path / "slurm" / "slurm" / "translate.sbatch") in launched
    assert all(Path(p).is_file() for p in launched)


def test_every_builtin_model_is_a_models_command_and_a_recipe_reference(tmp_path):
    from hala.models.builtin import BUILTIN_MODELS
    from hala.run.recipe import model_path

    listed = runner.invoke(app, ["models", "--help"]).output
    for name in BUILTIN_MODELS:
        assert f" {name} " in listed and model_path(name, tmp_path) == str(tmp_path / "models" / name)
    result = runner.invoke(app, ["models", "tiny-lfm2", "--out", str(tmp_path / "m")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "m" / "config.json").read_text())["model_type"] == "lfm2"
