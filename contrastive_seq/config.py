"""YAML configs loaded into typed dataclasses, with ``key=value`` overrides.

A config file is a mapping of sections. Sections whose type has variants
(``data``, ``views``, ``encoder``, ``method``) pick the variant by their
``name`` key. Every key is checked against the dataclass: an unknown key or
a value of the wrong type is a :class:`ConfigError` naming the dotted key.
Files are read with ``yaml.safe_load``: a config never runs code.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

import yaml

T = TypeVar("T")
INT_MIN, INT_MAX = -(2**63), 2**63 - 1  # every integer setting ends up in a 64-bit int (torch, NumPy)


class ConfigError(ValueError):
    """A config key is unknown, missing or of the wrong type; the message names the key."""


class Variants:
    """Base of a config section with named variants; ``name`` selects the dataclass."""

    variants: ClassVar[dict[str, type]]

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if Variants in cls.__bases__:
            cls.variants = {}

    @classmethod
    def register(cls, name: str):
        """Class decorator adding a variant under ``name``.

        Raises:
            ValueError: naming the section and ``name`` when another class is
                registered under ``name`` already. The same class again (its
                module and qualified name: a reloaded module) replaces it.
        """

        def add(variant: type[T]) -> type[T]:
            present = cls.variants.get(name)
            if present is not None and _qualified_name(present) != _qualified_name(variant):
                raise ValueError(
                    f"{cls.__name__} already has a variant {name!r} ({_qualified_name(present)}); "
                    f"{_qualified_name(variant)} needs another name (or {cls.__name__}.unregister({name!r}) first)"
                )
            cls.variants[name] = variant
            return variant

        return add

    @classmethod
    def unregister(cls, name: str) -> None:
        """Remove the variant ``name`` (a test's own variant, so that it does not outlive the test)."""
        if name not in cls.variants:
            raise KeyError(f"{cls.__name__} has no variant {name!r}; registered: {sorted(cls.variants)}")
        del cls.variants[name]


def _qualified_name(variant: type) -> str:
    return f"{variant.__module__}.{variant.__qualname__}"


def _describe(value: object) -> str:
    return f"{value!r} ({type(value).__name__})"


def _convert(tp: Any, value: object, key: str) -> Any:
    """Check ``value`` against the type hint ``tp`` and convert where lossless (int -> float, list -> tuple)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if isinstance(tp, type) and issubclass(tp, Variants) and Variants in tp.__bases__:
        return _build_variant(tp, value, key)
    if dataclasses.is_dataclass(tp):
        return from_mapping(tp, value, key)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for option in (a for a in args if a is not type(None)):
            try:
                return _convert(option, value, key)
            except ConfigError:
                continue
        expected = " or ".join(getattr(a, "__name__", str(a)).replace("NoneType", "null") for a in args)
        raise ConfigError(f"{key} must be {expected}, got {_describe(value)}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key} must be one of {list(args)}, got {_describe(value)}")
        return value
    if origin in (tuple, list):
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            raise ConfigError(f"{key} must be a list, got {_describe(value)}")
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            if len(value) != len(args):
                raise ConfigError(f"{key} must have {len(args)} items, got {_describe(value)}")
            return tuple(_convert(a, v, f"{key}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
        item = args[0] if args else Any
        items = [_convert(item, v, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key} must be a mapping, got {_describe(value)}")
        return {k: _convert(args[1], v, f"{key}.{k}") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {_describe(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} must be an integer, got {_describe(value)}")
        if not INT_MIN <= value <= INT_MAX:
            raise ConfigError(f"{key} must be an integer in [-2**63, 2**63 - 1] (a 64-bit int), got {value}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} must be a number, got {_describe(value)}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string, got {_describe(value)}")
        return value
    if tp is os.PathLike:
        if not isinstance(value, (str, os.PathLike)) or not str(value):
            raise ConfigError(f"{key} must be a path (a non-empty string), got {_describe(value)}")
        return value
    raise TypeError(f"config type {tp} of {key} is not supported")


def _build_variant(base: type, value: object, key: str) -> Any:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{key} must be a mapping with a 'name', got {_describe(value)}")
    name = value.get("name")
    if name not in base.variants:
        raise ConfigError(f"{key}.name must be one of {sorted(base.variants)}, got {_describe(name)}")
    return from_mapping(base.variants[name], value, key)


def from_mapping(cls: type[T], data: object, key: str = "config") -> T:
    """Build dataclass ``cls`` from a mapping, checking every key and type.

    Missing keys take the dataclass defaults; a missing key without a default,
    an unknown key or a wrong type raises :class:`ConfigError` naming ``key.field``.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"{key} must be a mapping, got {_describe(data)}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"unknown key {key}.{unknown[0]}; {key} accepts {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    values = {}
    for name, field in fields.items():
        if name in data:
            values[name] = _convert(hints[name], data[name], f"{key}.{name}")
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError(f"missing key {key}.{name}")
    try:
        return cls(**values)
    except (TypeError, ValueError) as error:
        message = str(error)
        prefix = f"{cls.__name__}."  # a dataclass's own check names its field as Class.field: name it by its key
        if message.startswith(prefix):
            raise ConfigError(f"{key}.{message[len(prefix):]}") from error
        raise ConfigError(f"{key}: {message}") from error


def apply_overrides(data: dict, overrides: Sequence[str]) -> dict:
    """Set ``dotted.key=value`` overrides (values parsed as YAML) in a nested dict, in place."""
    for override in overrides:
        key, sep, text = override.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {override!r} must look like section.key=value")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise ConfigError(f"override {override!r}: the value is not valid (safe) YAML: {error}") from error
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {override!r}: {part} is not a section")
            node = child
        node[parts[-1]] = value
    return data


def load_yaml(path: str | Path) -> dict:
    """Read a YAML mapping with the safe loader; errors name the file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError as error:
        raise ConfigError(f"config file {path} does not exist") from error
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {path} is not valid YAML: {error}") from error
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections, got {type(data).__name__}")
    return data


def to_mapping(config: object) -> dict:
    """A dataclass config as plain nested dicts and lists (for saving next to a run)."""
    def plain(value: object) -> object:
        if dataclasses.is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(config)
