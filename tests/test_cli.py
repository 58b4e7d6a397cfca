"""The `hala` command line: every subcommand is there, help is cheap, pending stages fail honestly."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.core import TyperGroup
from typer.testing import CliRunner

from hala.cli import app
from hala.commands import COMMANDS, setting
from hala.stage_command import build

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


@pytest.mark.parametrize("key", list(COMMANDS))
def test_every_command_is_built_from_its_entry_with_help_from_its_config(key):
    command = COMMANDS[key]
    config = command.load("config")
    options = {p.opts[0]: p for p in build(key.split()[-1], command).params if p.opts[0].startswith("-")}
    assert {"--config", "--verbose"} <= set(options)
    for flag in command.flags:
        if not (flag.help or flag.action):
            described = setting(config, flag.key)[0].description
            assert described and described in options[flag.names[0]].help, flag.names
    shown = runner.invoke(app, [*key.split(), "--help"], env={"COLUMNS": "400"})
    assert shown.exit_code == 0, shown.output
    assert all(name in shown.output for name in config.model_fields)  # every setting, as KEY=VALUE


def quoted_commands(text: str) -> list[str]:
    """Every `hala ...` command line quoted in a markdown file: in bash blocks and in code spans."""
    blocks = re.findall(r"```bash\n(.*?)```", text, re.S)
    lines = [line.split(" #")[0].strip() for block in blocks for line in block.replace("\\\n", " ").splitlines()]
    return [line for line in lines if line.startswith("hala ")] + re.findall(r"`(hala [^`]+)`", text)


def argvs(line: str) -> list[list[str]]:
    """The command lines a documented one stands for: [optional] parts in, each of `a|b` and of
    `hala models NAME`, a one-letter placeholder (`--workers K`) as a number."""
    from hala.models.builtin import BUILTIN_MODELS

    words = [("2" if re.fullmatch(r"[A-Z]", w) else w) for w in shlex.split(line.replace("[", "").replace("]", ""))[1:]]
    if words[:2] == ["models", "NAME"]:
        words[1] = "|".join(BUILTIN_MODELS)
    fork = next((i for i, w in enumerate(words) if "|" in w), None)
    if fork is None:
        return [words]
    lines = [shlex.join(["hala", *words[:fork], choice, *words[fork + 1 :]]) for choice in words[fork].split("|")]
    return [argv for line in lines for argv in argvs(line)]


def names_a_setting(config, key: str) -> bool:
    """Whether `key` is a setting of `config`, or a key inside one of its dict settings (`trl.NAME`)."""
    parts = key.split(".")
    for n in range(len(parts), 0, -1):
        try:
            found, _ = setting(config, ".".join(parts[:n]))
        except KeyError:
            continue
        return n == len(parts) or "dict" in str(found.annotation)
    return False


def parse(argv: list[str]):
    """Resolve a command line as `hala` does and parse its options, without running anything;
    (the table entry or None, the parsed context, whether it was only a command's name)."""
    ctx, path = typer.main.get_command(app).make_context("hala", list(argv)), []
    while isinstance(ctx.command, TyperGroup):
        name, command, rest = ctx.command.resolve_command(ctx, [*ctx._protected_args, *ctx.args])
        path.append(name)
        if not rest:
            return COMMANDS.get(" ".join(path)), None, True
        ctx = command.make_context(name, rest, parent=ctx)
    return COMMANDS.get(" ".join(path)), ctx, False


DOCS = [Path("README.md"), *sorted(Path("docs").glob("*.md"))]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_command_line_in_the_docs_parses(doc):
    lines = quoted_commands(doc.read_text(encoding="utf-8"))
    assert lines
    for line in lines:
        for argv in argvs(line):
            command, ctx, mention = parse(argv)
            if mention or command is None:
                continue
            for word in ctx.params.get("overrides") or []:
                known = word in ("...", "KEY=VALUE") or word in command.words
                assert known or names_a_setting(command.load("config"), word.partition("=")[0]), f"{line}: {word}"


def test_hala_run_exits_as_the_stage_that_failed(tmp_path):
    """One exit rule: a stage that lost rows to engine errors exits 3, and so does `hala run`."""
    args = ["run", "recipes/tiny-cpu.yaml", "--out", str(tmp_path / "run"), "--until", "models"]
    for status in (3, 1):
        result = runner.invoke(app, [*args, f"launchers.models=sh -c 'exit {status}'"])
        assert result.exit_code == status and f"stage models failed (exit {status})" in result.output
