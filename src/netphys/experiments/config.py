"""Typed experiment configs: frozen dataclasses saved and loaded as YAML, TOML or JSON.

:func:`load_config` builds a config from a file, a dict or nothing (the paper defaults) and checks every
field against its annotation before any work starts (types, and the config's own ``validate()`` for
ranges, names and cross-field rules), with the house error template.
"""
from __future__ import annotations

import dataclasses
import json
import numbers
import sys
import typing
from pathlib import Path
from typing import Any

from .._validation import NetphysError, param_error

__all__ = ["config_to_dict", "read_config_dict", "load_config", "save_config", "check_config_types"]


def config_to_dict(cfg) -> dict:
    """A plain dict (tuples as lists) of a config dataclass, for YAML/JSON and provenance."""
    def conv(v):
        if isinstance(v, tuple):
            return [conv(x) for x in v]
        if isinstance(v, dict):
            return {k: conv(x) for k, x in v.items()}
        return v

    return {k: conv(v) for k, v in dataclasses.asdict(cfg).items()}


def _toml_loads(text: str) -> dict:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        try:
            import tomli as tomllib
        except ImportError:
            raise NetphysError("TOML configs on Python 3.10 need the 'tomli' package: pip install tomli "
                               "(or use a YAML/JSON config)") from None
    return tomllib.loads(text)


def read_config_dict(source, owner: str = "config") -> dict:
    """Read a config file (YAML/TOML/JSON) or copy a dict; ``None`` gives ``{}``.

    Raises
    ------
    NetphysError
        If the file does not exist, has an unknown suffix, cannot be parsed (the parser's message and
        position are given) or does not hold a mapping at the top level.
    """
    if source is None:
        return {}
    func = f"load_config({owner})"
    if isinstance(source, dict):
        return dict(source)
    if not isinstance(source, (str, Path)):
        raise param_error("config", func, "a path to a YAML/TOML/JSON file, a dict or None",
                          type(source).__name__)
    path = Path(source)
    if not path.is_file():
        raise param_error("config", func, "an existing YAML/TOML/JSON file", str(path))
    text = path.read_text()
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        elif path.suffix == ".toml":
            data = _toml_loads(text)
        elif path.suffix == ".json":
            data = json.loads(text)
        else:
            raise param_error("config", func, "a .yaml, .yml, .toml or .json file", str(path))
    except NetphysError:
        raise
    except Exception as exc:  # yaml.YAMLError, tomllib.TOMLDecodeError, json.JSONDecodeError
        raise param_error("config", func, f"a valid {path.suffix[1:].upper()} file", str(path),
                          f"the parser says: {type(exc).__name__}: {exc}".replace("\n", " ")) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise param_error("config", func, "a file whose top level is a mapping of config keys to values",
                          f"a top-level {type(data).__name__} in {path}",
                          "write 'key: value' lines (YAML) or a JSON object")
    return data


def _type_ok(value, tp) -> bool:
    """Whether ``value`` fits the annotation ``tp`` (the subset used by netphys configs)."""
    origin = typing.get_origin(tp)
    if tp is typing.Any:
        return True
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", typing.Union)):
        return any(_type_ok(value, a) for a in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if tp is tuple or origin is tuple:
        if not isinstance(value, tuple):
            return False
        args = typing.get_args(tp)
        if not args:
            return True
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_type_ok(v, args[0]) for v in value)
        return len(args) == len(value) and all(_type_ok(v, a) for v, a in zip(value, args))
    if tp is dict or origin is dict:
        return isinstance(value, dict)
    if isinstance(tp, type):
        return isinstance(value, tp)
    return True


def _type_name(tp) -> str:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", typing.Union)):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    if tp is tuple or origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_type_name(args[0])}"
        return "a list"
    return {int: "an int", float: "a number", str: "a string", bool: "true/false"}.get(tp, getattr(
        tp, "__name__", str(tp)))


def _coerce(value, tp):
    """YAML/JSON lists become tuples; a lone string for a list-of-strings field becomes a 1-tuple."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", typing.Union)):
        for a in args:
            if a is not type(None) and (a is tuple or typing.get_origin(a) is tuple):
                return _coerce(value, a)
        if float in args and isinstance(value, numbers.Integral) and not isinstance(value, bool):
            return float(value)
        return value
    if tp is tuple or origin is tuple:
        inner = args[0] if len(args) == 2 and args[1] is Ellipsis else None
        if isinstance(value, str) and inner is str:
            return (value,)
        if isinstance(value, list):
            return tuple(_coerce(v, inner) if inner is not None else
                         (tuple(v) if isinstance(v, list) else v) for v in value)
    if tp is float and isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return float(value)
    return value


def check_config_types(cfg) -> None:
    """Check every field of a config dataclass against its annotation (house error on the first bad one)."""
    hints = typing.get_type_hints(type(cfg))
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        tp = hints.get(f.name, typing.Any)
        if not _type_ok(v, tp):
            raise param_error(f.name, type(cfg).__name__, _type_name(tp), v)


def load_config(cls, source=None, **overrides):
    """Build config ``cls`` from a file (YAML/TOML/JSON), a dict or nothing (paper defaults).

    Unknown keys raise an error that lists the valid ones; values are checked against the field
    annotations and the config's ``validate()`` method (if any) runs before anything is computed.
    """
    if isinstance(source, cls) and not overrides:
        cfg = source
    else:
        if dataclasses.is_dataclass(source) and not isinstance(source, type):
            source = dataclasses.asdict(source)
        data = read_config_dict(source, cls.__name__)
        data.update(overrides)
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise NetphysError(f"unknown key(s) {unknown} in the config of {cls.__name__}; valid keys are: "
                               + ", ".join(fields))
        cfg = cls(**{k: _coerce(v, hints.get(k, typing.Any)) for k, v in data.items()})
    check_config_types(cfg)
    if hasattr(cfg, "validate"):
        cfg = cfg.validate() or cfg
    return cfg


def save_config(cfg, path) -> Path:
    import yaml

    from ..io import atomic_write_text

    path = Path(path)
    atomic_write_text(path, yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
    return path
