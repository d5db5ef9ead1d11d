"""Load a TOML file into a frozen dataclass, naming the file and the key on any error.

Each application declares its configuration as nested frozen dataclasses; this module is
the one place that turns untrusted TOML into them. Unknown keys are errors too, so a typo
(`mqtt.prot = 1883`) fails at start-up instead of silently using a default.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar, Union

T = TypeVar("T")


class ConfigError(Exception):
    """A configuration file that cannot be used; the message names the file and the key."""

    def __init__(self, path: Path | str, key: str, problem: str) -> None:
        self.path = str(path)
        self.key = key
        self.problem = problem
        where = f"key '{key}'" if key else "file"
        super().__init__(f"{self.path}: {where}: {problem}")


def load_config(path: Path | str, cls: type[T]) -> T:
    """Read `path` and build an instance of the dataclass `cls` from it."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(path, "", "no such file") from None
    except OSError as exc:
        raise ConfigError(path, "", f"cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(path, "", "not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, "", f"not valid TOML: {exc}") from None
    return build(raw, cls, path)


def build(raw: dict[str, Any], cls: type[T], path: Path | str, prefix: str = "") -> T:
    """Build dataclass `cls` from an already parsed mapping (used by tests and the demo)."""
    return typing.cast(T, _convert(raw, cls, path, prefix))


def _convert(value: Any, tp: Any, path: Path | str, key: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return _build_dataclass(value, tp, path, key)
    if origin in (Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _convert(value, option, path, key)
            except ConfigError as exc:
                errors.append(exc.problem)
        raise ConfigError(path, key, " or ".join(errors))
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(path, key, f"expected a list, got {_describe(value)}")
        item_type = args[0]
        return tuple(_convert(v, item_type, path, f"{key}[{i}]") for i, v in enumerate(value))
    if origin is typing.Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise ConfigError(path, key, f"expected one of {list(allowed)}, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(path, key, f"expected true or false, got {_describe(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(path, key, f"expected an integer, got {_describe(value)}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(path, key, f"expected a number, got {_describe(value)}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(path, key, f"expected a string, got {_describe(value)}")
        return value
    if tp is Path:
        if not isinstance(value, str) or not value:
            raise ConfigError(path, key, f"expected a path string, got {_describe(value)}")
        p = Path(value).expanduser()
        # Relative paths are relative to the config file, not to wherever the process started.
        return p if p.is_absolute() else (Path(path).resolve().parent / p)
    raise TypeError(f"unsupported config field type {tp!r} at {key}")


def _build_dataclass(value: Any, cls: type, path: Path | str, key: str) -> Any:
    if not isinstance(value, dict):
        raise ConfigError(path, key, f"expected a table, got {_describe(value)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(value) - set(fields))
    if unknown:
        name = f"{key}.{unknown[0]}" if key else unknown[0]
        raise ConfigError(path, name, f"unknown key (known: {', '.join(sorted(fields))})")
    kwargs: dict[str, Any] = {}
    for name, field in fields.items():
        sub = f"{key}.{name}" if key else name
        if name in value:
            kwargs[name] = _convert(value[name], hints[name], path, sub)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError(path, sub, "missing required key")
    try:
        return cls(**kwargs)
    except ValueError as exc:
        # __post_init__ validation names the field in its message: "port: must be 1..65535".
        field_name, _, problem = str(exc).partition(": ")
        if problem and field_name in fields:
            raise ConfigError(path, f"{key}.{field_name}" if key else field_name, problem) from None
        raise ConfigError(path, key, str(exc)) from None


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    return f"{type(value).__name__} {value!r}"
