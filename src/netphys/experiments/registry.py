"""Registration of named experiments (``@register("paper.figure")``) for ``netphys run NAME``.

There is no hand-kept table of names: an experiment module registers its classes with the decorator
when it is imported. The runner imports the built-in experiment modules (``_BUILTIN_MODULES``) and
every module advertised under the ``netphys.experiments`` entry-point group by installed plug-ins.
"""
from __future__ import annotations

import importlib
import logging

from .._validation import NetphysError, param_error

log = logging.getLogger(__name__)

__all__ = ["register", "get_experiment", "experiment_names", "EXPERIMENTS"]

#: name -> Experiment subclass, filled by :func:`register`
EXPERIMENTS: dict = {}

_BUILTIN_MODULES = ("netphys.experiments.prune_distill", "netphys.experiments.population", "netphys.experiments.encoding",
                    "netphys.experiments.segregation",
                    "netphys.experiments.orientation", "netphys.experiments.synthesis", "netphys.experiments.car")
_loaded = False


def register(name: str):
    """Class decorator registering an :class:`~netphys.experiments.base.Experiment` under ``name``."""
    from .base import Experiment

    def deco(cls):
        if not (isinstance(cls, type) and issubclass(cls, Experiment)):
            raise TypeError(f"@register({name!r}) decorates Experiment subclasses, got {cls!r}")
        if cls.Config is None:
            raise TypeError(f"experiment {name!r} has no Config dataclass")
        old = EXPERIMENTS.get(name)
        if old is not None and old is not cls and old.__qualname__ != cls.__qualname__:
            raise NetphysError(f"two experiments registered as {name!r}: {old.__module__}.{old.__qualname__} "
                               f"and {cls.__module__}.{cls.__qualname__}")
        cls.name = name
        EXPERIMENTS[name] = cls
        return cls

    return deco


def _load_all() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for mod in _BUILTIN_MODULES:
        importlib.import_module(mod)
    try:
        from importlib.metadata import entry_points

        for ep in entry_points(group="netphys.experiments"):
            try:
                ep.load()
            except Exception as exc:  # a broken plug-in must not break the built-ins
                log.warning("could not load the experiment plug-in %s: %s", ep.name, exc)
    except Exception:  # pragma: no cover - very old importlib.metadata
        pass


def experiment_names() -> list[str]:
    """Sorted names of all registered experiments."""
    _load_all()
    return sorted(EXPERIMENTS)


def get_experiment(name: str):
    """The registered Experiment class ``name`` (house error listing the valid names otherwise)."""
    _load_all()
    if name not in EXPERIMENTS:
        raise param_error("experiment", "netphys run", "one of " + ", ".join(sorted(EXPERIMENTS)), name)
    return EXPERIMENTS[name]


def run_experiment(name, config=None, out=None, *, progress: bool = True, **kw):
    """Deprecated location: see :func:`netphys.experiments.runner.run_experiment`."""
    from .runner import run_experiment as _run

    return _run(name, config, out, progress=progress, **kw)
