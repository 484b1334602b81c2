"""Typed configuration reading shared by every config: frozen dataclasses are the schema, YAML files and
`key=value` overrides use their field names, and every value is coerced to the declared type or refused with
a message naming the key."""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

from fractalad.errors import InputError

T = TypeVar("T")


def coerce(key: str, value: Any, annotation: Any) -> Any:
    """Convert a YAML/override value to `annotation`, or raise InputError naming `key`.

    Unions are tried member by member in declaration order; `Sequence[X]` and `tuple[X, ...]` accept a YAML
    list or a comma-separated string; `Any` (or a missing annotation) keeps the value as YAML read it.
    """
    if annotation is Any or annotation is inspect.Parameter.empty:
        return value
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in (a for a in options if a is not type(None)):
            try:
                return coerce(key, value, option)
            except InputError as error:
                errors.append(str(error))
        raise InputError(errors[0] if len(errors) == 1 else f"config key {key!r}: {value!r} fits no type")
    if origin in (tuple, Sequence, list, typing.get_origin(Sequence[int])):
        return _coerce_sequence(key, value, annotation)
    return _coerce_scalar(key, value, annotation)


def _coerce_sequence(key: str, value: Any, annotation: Any) -> tuple[Any, ...]:
    args = typing.get_args(annotation) or (Any, Ellipsis)
    items = [yaml.safe_load(v) for v in value.split(",") if v.strip()] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)):
        raise InputError(f"config key {key!r}: expected a list, got {value!r}")
    homogeneous = len(args) == 1 or args[-1] is Ellipsis
    if not homogeneous and len(items) != len(args):
        raise InputError(f"config key {key!r}: expected {len(args)} values, got {len(items)} ({value!r})")
    types_ = [args[0]] * len(items) if homogeneous else list(args)
    return tuple(coerce(key, item, item_type) for item, item_type in zip(items, types_, strict=True))


def _coerce_scalar(key: str, value: Any, annotation: Any) -> Any:
    if annotation is bool:
        if isinstance(value, bool):
            return value
    elif annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif annotation is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
    elif isinstance(annotation, type) and isinstance(value, annotation):
        return value
    name = getattr(annotation, "__name__", str(annotation))
    raise InputError(f"config key {key!r}: expected {name}, got {value!r}")


def dataclass_from_mapping(
    cls: type[T], values: Mapping[str, Any], base: T | None = None, source: str = "config"
) -> T:
    """Build the frozen dataclass `cls` from `values` on top of `base` (default: the dataclass defaults)."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    unknown = [k for k in values if k not in names]
    if unknown:
        raise InputError(
            f"{source}: unknown key(s) {', '.join(map(repr, unknown))}; valid keys: {', '.join(names)}"
        )
    changes = {k: coerce(k, v, hints[k]) for k, v in values.items()}
    return dataclasses.replace(base if base is not None else cls(), **changes)  # type: ignore[type-var]


def coerce_call_arguments(
    function: Callable[..., Any], values: Mapping[str, Any], source: str
) -> dict[str, Any]:
    """Check `values` against `function`'s keyword parameters and coerce each to its annotation.

    Used for detector hyper-parameters (`detect --param`, a grid's per-method parameters): an unknown name
    is refused with the list of valid ones.
    """
    signature = inspect.signature(function)
    hints = typing.get_type_hints(function)
    valid = [name for name in signature.parameters if name != "self"]
    unknown = [k for k in values if k not in valid]
    if unknown:
        raise InputError(
            f"{source}: unknown parameter(s) {', '.join(map(repr, unknown))}; valid: {', '.join(valid)}"
        )
    return {k: coerce(k, v, hints.get(k, inspect.Parameter.empty)) for k, v in values.items()}


def read_yaml_mapping(path: str | Path, what: str = "config file") -> dict[str, Any]:
    """A YAML file's top-level mapping (an empty file is an empty mapping)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist or is not a file")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as error:
        raise InputError(f"{what} {path}: not UTF-8 text (byte {error.start}); save it as UTF-8 YAML") from error
    except yaml.YAMLError as error:
        raise InputError(f"{what} {_yaml_problem(path, error)}") from error
    if not isinstance(values, dict):
        raise InputError(f"{what} {path}: expected a mapping of keys to values, got {type(values).__name__}")
    return values


def _yaml_problem(path: Path, error: yaml.YAMLError) -> str:
    """`FILE:LINE:COLUMN: not valid YAML: PROBLEM` (1-based, as editors count)."""
    mark = getattr(error, "problem_mark", None)
    where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
    problem = getattr(error, "problem", None) or str(error)
    return f"{where}: not valid YAML: {problem}; fix the file"


def parse_overrides(overrides: Sequence[str]) -> dict[str, Any]:
    """Parse `key=value` strings; values are read as YAML scalars/lists ("0.1", "true", "null", "[30,60]")."""
    values: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"override {item!r}: expected key=value, e.g. epochs=5")
        try:
            values[key.strip()] = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            values[key.strip()] = raw
    return values
