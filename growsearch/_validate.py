"""Strict construction of dataclasses from plain dicts (JSON specs, YAML configs).

One function serves architecture specs, expansion plans, training recipes and search
configs, so that every bad field is reported the same way: the key path, the value,
and what is allowed.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from growsearch.errors import ConfigError

T = TypeVar("T")

MAX_YAML_BYTES = 1 << 20  # a config, plan or space is a few hundred bytes; 1 MiB is generous
MAX_YAML_DEPTH = 50  # nesting levels; real files use 3 or 4


def show(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters: an error line never echoes a huge value."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 5] + " ...]"


def _type_name(tp: Any) -> str:
    if tp is type(None):
        return "null"
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (list, tuple):
        args = typing.get_args(tp)
        return f"a list of {_type_name(args[0])}" if args else "a list"
    if origin is dict:
        return "a mapping"
    return getattr(tp, "__name__", str(tp))


def coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against the type hint ``tp``; return it (lists as lists)."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            try:
                return coerce(value, arg, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: got {show(value)}; allowed: {_type_name(tp)}")
    if origin is typing.Literal:
        if value in typing.get_args(tp):
            return value
        raise ConfigError(f"{where}: got {show(value)}; allowed: {_type_name(tp)}")
    if tp is type(None):
        if value is None:
            return None
        raise ConfigError(f"{where}: got {show(value)}; allowed: null")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: got {show(value)}; allowed: {_type_name(tp)}")
        (arg,) = typing.get_args(tp)[:1] or (Any,)
        return [coerce(v, arg, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: got {show(value)}; allowed: a mapping")
        return dict(value)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):  # .nan / .inf would silently switch checks off
                raise ConfigError(f"{where}: got {show(value)}; allowed: a finite number")
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    else:
        raise TypeError(f"unsupported field type {tp!r}")
    raise ConfigError(f"{where}: got {show(value)}; allowed: {_type_name(tp)}")


def from_dict(cls: type[T], data: Any, where: str) -> T:
    """Build dataclass ``cls`` from ``data``, refusing unknown keys and wrong types."""
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: got {show(data)}; allowed: a mapping with keys of {cls.__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"{where}.{unknown[0]}: unknown key; allowed keys: {', '.join(sorted(fields))}"
        )
    kwargs = {}
    for name, field in fields.items():
        if name in data:
            kwargs[name] = coerce(data[name], hints[name], f"{where}.{name}")
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{where}.{name}: missing; it is required ({_type_name(hints[name])})")
    return cls(**kwargs)


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader without aliases (``*name`` can expand a tiny file into
    gigabytes) and with bounded nesting (deep nesting overflows the parser's recursion)."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise yaml.YAMLError(f"line {mark.line + 1}: YAML aliases (*name) are not allowed; write the "
                                 "value out")
        depth = getattr(self, "_depth", 0) + 1
        if depth > MAX_YAML_DEPTH:
            mark = self.peek_event().start_mark
            raise yaml.YAMLError(f"line {mark.line + 1}: nested more than {MAX_YAML_DEPTH} levels deep")
        self._depth = depth
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth = depth - 1


def read_text(path: str | Path, what: str, limit: int = MAX_YAML_BYTES) -> str:
    """A small UTF-8 text file; missing, oversized or non-UTF-8 is a one-line ConfigError."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what}: file {path} does not exist" + (" (it is a directory)" if path.is_dir() else ""))
    try:
        size = path.stat().st_size
        if size > limit:
            raise ConfigError(f"{what}: {path} has {size} bytes; allowed: at most {limit}")
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{what}: {path} is not UTF-8 text (byte {exc.start}); allowed: a UTF-8 file") from None
    except OSError as exc:
        raise ConfigError(f"{what}: cannot read {path} ({exc.strerror or type(exc).__name__})") from None


def parse_yaml(text: str, what: str, source: str = "") -> Any:
    """Parse YAML text with the strict loader; a malformed document is a one-line ConfigError."""
    try:
        return yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or (str(exc)[:200] if not mark else "invalid YAML")
        raise ConfigError(f"{what}: {source or 'the text'} is not valid YAML{where}: {problem}") from None
    except RecursionError:
        raise ConfigError(f"{what}: {source or 'the text'} is nested too deeply") from None


def read_yaml(path: str | Path, what: str) -> Any:
    """Parse a YAML file; a missing, malformed, non-UTF-8, oversized, aliased or too deeply
    nested file is a one-line ConfigError."""
    return parse_yaml(read_text(path, what), what, str(path))
