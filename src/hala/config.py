"""Typed configs, YAML recipes and dotted command-line overrides.

Every stage takes one pydantic config that forbids unknown keys, so a typo in a recipe fails loudly
instead of silently running the default. Recipes are YAML; any key can be overridden from the
command line as `section.key=value`, where the value is parsed as YAML (`translate.batch_size=512`,
`engine.kind=openai`, `stages=[a,b]`). Errors name the file, the dotted key and what was expected.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

T = TypeVar("T", bound=BaseModel)


class StrictModel(BaseModel):
    """Base of every config: unknown keys are errors, values are validated on assignment.

    `NOT_OUTPUT` names the settings that can't change what a run writes (batch sizes, timeouts,
    retries, concurrency, progress, how it is launched). `identity()` leaves them out; it is what
    a stage folder's stamp and manifest and `hala run`'s stage fingerprint are made of, so changing
    such a setting neither reruns a stage nor makes its folder "another run".
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)
    NOT_OUTPUT: ClassVar[frozenset[str]] = frozenset()

    def identity(self, mode: str = "python") -> dict:
        """The settings the output depends on (see `output_settings`)."""
        return output_settings(self, mode)


def _not_output_exclude(model: BaseModel) -> dict:
    """pydantic's nested `exclude` for the NOT_OUTPUT settings of `model` and of the configs inside it."""
    skip = getattr(type(model), "NOT_OUTPUT", frozenset())
    unknown = skip - set(type(model).model_fields)
    if unknown:
        raise TypeError(f"{type(model).__name__}.NOT_OUTPUT names no such setting: {', '.join(sorted(unknown))}")
    exclude: dict = {name: True for name in skip}
    for name in type(model).model_fields:
        value = getattr(model, name)
        if name not in skip and isinstance(value, BaseModel):
            inner = _not_output_exclude(value)
            if inner:
                exclude[name] = inner
    return exclude


def output_settings(model: BaseModel, mode: str = "python") -> dict:
    """`model` dumped without the settings that can't change its output (each class's NOT_OUTPUT,
    at every level). The one definition of a config's identity."""
    return model.model_dump(mode=mode, exclude=_not_output_exclude(model) or None)


class ConfigError(ValueError):
    """A config problem, already phrased for the user (file, key, what was expected)."""


def parse_override(text: str) -> tuple[list[str], Any]:
    """`a.b.c=value` -> (["a", "b", "c"], value parsed as YAML)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r}: expected KEY=VALUE, e.g. translate.batch_size=64")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {text!r}: value is not valid YAML ({exc})") from None
    return key.strip().split("."), value


def set_dotted(data: dict, key: str, value: Any) -> None:
    """Set `data[a][b][c] = value` for key `a.b.c`, creating sections as needed."""
    path = key.split(".")
    node = data
    for i, part in enumerate(path[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif not isinstance(child, dict):
            raise ConfigError(f"{'.'.join(path[: i + 1])} is a value, not a section (setting {key})")
        node = child
    node[path[-1]] = value


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Return a copy of `data` with each `dotted.key=value` applied (creating sections as needed)."""
    result = _deep_copy(data)
    for text in overrides:
        path, value = parse_override(text)
        try:
            set_dotted(result, ".".join(path), value)
        except ConfigError as exc:
            raise ConfigError(f"override {text!r}: {exc}") from None
    return result


def _deep_copy(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _deep_copy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_deep_copy(v) for v in data]
    return data


def describe_errors(exc: ValidationError, origin: str) -> str:
    """One line per problem: `origin: key.path: what was wrong (got value)`."""
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        if err["type"] == "extra_forbidden":
            problem = "unknown key"
        else:
            problem = err["msg"]
        got = err.get("input")
        shown = "" if err["type"] in ("missing", "extra_forbidden") else f" (got {got!r})"
        lines.append(f"{origin}: {key}: {problem}{shown}")
    return "\n".join(lines)


def validate(model: type[T], data: dict, origin: str = "<config>") -> T:
    """Validate `data` as `model`, turning pydantic's error into a ConfigError that names keys."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        hint = f"valid keys at the top level: {', '.join(model.model_fields)}"
        raise ConfigError(describe_errors(exc, origin) + f"\n  ({hint})") from None


def read_yaml(path: str | Path) -> dict:
    """Read a YAML mapping, with the file and line in any syntax error."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such recipe file") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: invalid YAML: {getattr(exc, 'problem', exc)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings at the top level, got {type(data).__name__}")
    return data


def load_config(
    model: type[T], path: str | Path | None = None, overrides: list[str] = (), settings: dict | None = None
) -> T:
    """Validate, as `model`: the YAML file, then `settings` (dotted key -> value, None skipped),
    then the `KEY=VALUE` overrides, each layer on top of the one before."""
    data = read_yaml(path) if path else {}
    for key, value in (settings or {}).items():
        if value is not None:
            set_dotted(data, key, value)
    data = apply_overrides(data, list(overrides))
    origin = str(path) if path else "<command line>"
    if overrides and path:
        origin = f"{path} (with overrides)"
    return validate(model, data, origin)
