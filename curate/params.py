"""Typed parameters: check TOML values against dataclass type hints, and export them as JSON Schema.

Stages and config sections are dataclasses; their fields are their TOML keys. `check_params` turns a
TOML table into keyword arguments, collecting every problem with its location instead of stopping at
the first one, and `json_schema_for` derives the JSON Schema from the same type hints.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Any, Literal, get_args, get_origin

_TYPE_NAMES = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}


def did_you_mean(word: str, choices: typing.Iterable[str]) -> str:
    """Return ", did you mean 'x'" for the closest choice, or an empty string."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f", did you mean '{close[0]}'" if close else ""


def describe(value: Any) -> str:
    """Name a TOML value's type the way a user wrote it."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a table"
    return type(value).__name__


def type_name(tp: Any) -> str:
    """Human wording of a type hint, for error messages and `curate stages`."""
    origin = get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_name(a) for a in get_args(tp) if a is not type(None))
    if origin is list:
        return f"a list of {type_name(get_args(tp)[0]).removeprefix('a ').removeprefix('an ')}s"
    if origin is dict:
        return f"a table of {type_name(get_args(tp)[1]).removeprefix('a ').removeprefix('an ')}s"
    if tp is Any:
        return "a value"
    return _TYPE_NAMES.get(tp, getattr(tp, "__name__", str(tp)))


def check_value(value: Any, tp: Any, where: str) -> tuple[Any, list[str]]:
    """Check one value against a type hint; return the (converted) value and the problems."""
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None, []
        for arg in args:
            if arg is type(None):
                continue
            converted, problems = check_value(value, arg, where)
            if not problems:
                return converted, []
        return value, [f"{where}: must be {type_name(tp)}, got {describe(value)} {value!r}"]
    if origin is Literal:
        if value in get_args(tp):
            return value, []
        hint = did_you_mean(value, [str(a) for a in get_args(tp)]) if isinstance(value, str) else ""
        return value, [f"{where}: must be one of {type_name(tp)}, got {value!r}{hint}"]
    if origin is list:
        if not isinstance(value, list):
            return value, [f"{where}: must be {type_name(tp)}, got {describe(value)}"]
        out, problems = [], []
        for i, item in enumerate(value):
            converted, item_problems = check_value(item, get_args(tp)[0], f"{where}[{i}]")
            out.append(converted)
            problems += item_problems
        return out, problems
    if origin is dict:
        if not isinstance(value, dict):
            return value, [f"{where}: must be {type_name(tp)}, got {describe(value)}"]
        out, problems = {}, []
        for key, item in value.items():
            converted, item_problems = check_value(item, get_args(tp)[1], f"{where}.{key}")
            out[key] = converted
            problems += item_problems
        return out, problems
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value), []
    if tp in (int, float, str) and isinstance(value, bool):
        return value, [f"{where}: must be {type_name(tp)}, got a boolean"]
    if tp is Any or isinstance(value, tp):
        return value, []
    return value, [f"{where}: must be {type_name(tp)}, got {describe(value)} {value!r}"]


def check_params(cls: type, table: dict[str, Any], where: str, skip: tuple[str, ...] = ()) -> tuple[dict, list]:
    """Check a TOML table against a dataclass: unknown keys, missing required keys, types.

    Returns the keyword arguments for `cls` and the list of problems (empty when valid).
    """
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init and not f.name.startswith("_")}
    kwargs: dict[str, Any] = {}
    problems: list[str] = []
    for key, value in table.items():
        if key in skip:
            continue
        if key not in fields:
            problems.append(f"{where}.{key}: unknown key{did_you_mean(key, fields)}")
            continue
        converted, value_problems = check_value(value, hints[key], f"{where}.{key}")
        problems += value_problems
        if not value_problems:  # invalid values are left out, so cross-checks can still run on the rest
            kwargs[key] = converted
    for name, f in fields.items():
        no_default = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if no_default and name not in table:
            problems.append(f"{where}.{name}: required key is missing ({type_name(hints[name])})")
    return kwargs, problems


def json_schema_of_type(tp: Any) -> dict[str, Any]:
    """JSON Schema fragment for a type hint."""
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return {"anyOf": [json_schema_of_type(a) for a in get_args(tp)]}
    if origin is Literal:
        return {"enum": list(get_args(tp))}
    if origin is list:
        return {"type": "array", "items": json_schema_of_type(get_args(tp)[0])}
    if origin is dict:
        return {"type": "object", "additionalProperties": json_schema_of_type(get_args(tp)[1])}
    simple = {bool: "boolean", int: "integer", float: "number", str: "string", type(None): "null"}
    if tp in simple:
        return {"type": simple[tp]}
    return {}


def below_minimum(where: str, obj: Any, **minimums: float) -> list[str]:
    """`where.key: must be >= m, got v` for each attribute of `obj` below its minimum (None is skipped)."""
    return [
        f"{where}.{key}: must be >= {minimum}, got {getattr(obj, key)}"
        for key, minimum in minimums.items()
        if getattr(obj, key) is not None and getattr(obj, key) < minimum
    ]


def json_schema_for(cls: type, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """JSON Schema of a dataclass's TOML table (fields, types, defaults, descriptions)."""
    hints = typing.get_type_hints(cls)
    props: dict[str, Any] = dict(extra or {})
    required = []
    for f in dataclasses.fields(cls):
        if not f.init or f.name.startswith("_"):
            continue
        prop = json_schema_of_type(hints[f.name])
        if f.metadata.get("doc"):
            prop["description"] = f.metadata["doc"]
        if f.default is not dataclasses.MISSING:
            prop["default"] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            prop["default"] = f.default_factory()
        else:
            required.append(f.name)
        props[f.name] = prop
    schema: dict[str, Any] = {"type": "object", "properties": props, "additionalProperties": False}
    if required:
        schema["required"] = required
    return schema


def param(
    default: Any = dataclasses.MISSING, doc: str = "", factory: Any = dataclasses.MISSING, in_repr: bool = True
) -> Any:
    """A dataclass field with a one-line doc (shown by `curate stages` and in the JSON Schema); `in_repr`
    False leaves it out of the dataclass's repr (a value that may hold credentials)."""
    if factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=factory, metadata={"doc": doc}, repr=in_repr)
    return dataclasses.field(default=default, metadata={"doc": doc}, repr=in_repr)
