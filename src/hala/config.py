"""Typed configs, YAML recipes and dotted command-line overrides.

Every stage takes one pydantic config that forbids unknown keys, so a typo in a recipe fails loudly
instead of silently running the default. Recipes are YAML; any key can be overridden from the
command line as `section.key=value`, where the value is parsed as YAML (`translate.batch_size=512`,
`engine.kind=openai`, `stages=[a,b]`). Errors name the file, the dotted key and what was expected.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from pathlib import Path
from typing import Any, ClassVar, TypeVar, get_args

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


def strings(value: Any) -> Iterator[str]:
    """Every string in a nested value of dicts and lists (a config, a JSON row), depth first."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def _deep_copy(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _deep_copy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_deep_copy(v) for v in data]
    return data


def config_class(annotation: Any) -> type[BaseModel] | None:
    """The config class inside an annotation (`X`, `X | None`, `list[X]`, `dict[str, X]`), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = config_class(arg)
        if found is not None:
            return found
    return None


def _section(model: type[BaseModel], loc: tuple) -> tuple[str, type[BaseModel] | None]:
    """(dotted path, config class) of the section that holds the key at `loc`."""
    current: type[BaseModel] | None = model
    path = []
    for part in loc[:-1]:
        if current is not None and isinstance(part, str) and part in current.model_fields:
            path.append(part)
            current = config_class(current.model_fields[part].annotation)
        elif isinstance(part, int):
            path[-1:] = [f"{path[-1]}[{part}]"] if path else [f"[{part}]"]
        # else: a dict key or a pydantic union branch; the section stays where it is
    return ".".join(path), current


def _blame(dotted: str, overrides: list[str], origin: str) -> str:
    """The command-line override that set `dotted` (or a section above or below it), else `origin`."""
    for text in reversed(overrides):  # the last override of a key wins, so it is the one to blame
        key = text.partition("=")[0].strip()
        if dotted == key or dotted.startswith(key + ".") or key.startswith(dotted + "."):
            return f"command-line override {text!r}"
    return origin


def describe_errors(
    exc: ValidationError, origin: str, model: type[BaseModel] | None = None, overrides: list[str] = (), prefix: str = ""
) -> str:
    """One line per problem: `where: key.path: what was wrong (got value)`, where is the file, or
    the command-line override that set the key; then the valid keys of each section with an unknown key."""
    lines, hints = [], {}
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        if err["type"] == "extra_forbidden":
            problem = "unknown key"
            if model is not None:
                section, found = _section(model, err["loc"])
                if found is not None:
                    dotted = (prefix + section).rstrip(".")
                    where = f"under {dotted}" if dotted else "at the top level"
                    hints[where] = f"valid keys {where}: {', '.join(found.model_fields)}"
        else:
            problem = err["msg"].removeprefix("Value error, ")
        got = err.get("input")
        shown = "" if err["type"] in ("missing", "extra_forbidden") else f" (got {got!r})"
        lines.append(f"{_blame(prefix + key, list(overrides), origin)}: {prefix}{key}: {problem}{shown}")
    return "\n".join(lines + [f"  ({hint})" for hint in hints.values()])


def validate(
    model: type[T], data: dict, origin: str = "<config>", overrides: list[str] = (), prefix: str = ""
) -> T:
    """Validate `data` as `model`, turning pydantic's error into a ConfigError that names keys.

    `overrides` are the `KEY=VALUE` texts applied to `data` (a key they set is blamed on them, not
    on `origin`); `prefix` is where `data` sits in a larger config (`translate.` for a recipe's stage)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(describe_errors(exc, origin, model, overrides, prefix)) from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys; a recipe with `t: 0.5` twice would run with one of
    them silently. This loader refuses a key given twice in one mapping, with both lines."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, Hashable):
                continue  # SafeLoader's own error names it below
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first on line {seen[key] + 1})", key_node.start_mark
                )
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: str | Path) -> dict:
    """Read a YAML mapping, with the file and line in any syntax error."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such recipe file") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
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
    return validate(model, data, str(path) if path else "<command line>", list(overrides))
