"""Typed experiment configs: frozen dataclasses saved and loaded as YAML, TOML or JSON."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from .._validation import NetphysError, param_error


def config_to_dict(cfg) -> dict:
    d = dataclasses.asdict(cfg)
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}


def _coerce(field: dataclasses.Field, value: Any):
    if isinstance(value, list) and (field.type.startswith("tuple") if isinstance(field.type, str) else False):
        return tuple(tuple(v) if isinstance(v, list) else v for v in value)
    return value


def read_config_dict(source, owner: str = "config") -> dict:
    """Read a config file (YAML/TOML/JSON) or copy a dict; ``None`` gives ``{}``."""
    if source is None:
        return {}
    if isinstance(source, dict):
        return dict(source)
    path = Path(source)
    func = f"load_config({owner})"
    if not path.is_file():
        raise param_error("config", func, "an existing YAML/TOML/JSON file", str(path))
    text = path.read_text()
    if path.suffix in (".yaml", ".yml"):
        import yaml

        return yaml.safe_load(text) or {}
    if path.suffix == ".toml":
        import tomllib

        return tomllib.loads(text)
    if path.suffix == ".json":
        return json.loads(text)
    raise param_error("config", func, "a .yaml, .yml, .toml or .json file", str(path))


def load_config(cls, source=None, **overrides):
    """Build config ``cls`` from a file (YAML/TOML/JSON), a dict or nothing (paper defaults).

    Unknown keys raise an error that lists the valid ones.
    """
    data = read_config_dict(source, cls.__name__)
    data.update(overrides)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise NetphysError(f"unknown key(s) {unknown} in the config of {cls.__name__}; valid keys are: "
                           + ", ".join(fields))
    return cls(**{k: _coerce(fields[k], v) for k, v in data.items()})


def save_config(cfg, path) -> Path:
    import yaml

    from ..io import atomic_write_text

    path = Path(path)
    atomic_write_text(path, yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
    return path
