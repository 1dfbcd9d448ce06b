"""The experiment protocol and the run context every experiment receives.

An experiment is a class registered with :func:`netphys.experiments.register`:

.. code-block:: python

    @register("paper.figure")
    class Figure(Experiment):
        Config = FigureConfig          # frozen dataclass, defaults = the paper's values
        title = "Paper, Figure 1"

        def run(self, cfg, ctx) -> xr.Dataset: ...        # labelled results, pieces through ctx
        def tables(self, result) -> dict: ...             # name -> DataFrame (written as CSV)
        def figures(self, result, ctx) -> list: ...       # (stem, Figure, caption)
        def sections(self, result, report, ctx): ...      # the report (default: figures + tables)

:class:`RunContext` owns what an experiment must not re-implement: named seed streams from one
``SeedSequence``, the keyed piece cache (:mod:`.cache`), model and stimulus identities, dispatch of
independent pieces through an executor, progress bars and warnings recorded with the result.
"""
from __future__ import annotations

import abc
import dataclasses
import hashlib
import logging
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable

import numpy as np

from .cache import PieceCache, canonical_json, key_hash

log = logging.getLogger(__name__)

__all__ = ["Experiment", "RunContext", "model_identity", "stimuli_identity", "estimator_version", "piece_key",
           "torch_threads"]


@contextmanager
def torch_threads(n: int | None):
    """PyTorch's intra-op threads set to ``n`` while the block lasts (None or 0: unchanged), then restored."""
    import torch

    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def estimator_version(module) -> str:
    """``module.ESTIMATOR_VERSION`` if the library module declares one, else the netphys version."""
    import importlib

    import netphys

    if isinstance(module, str):
        module = importlib.import_module(module)
    return str(getattr(module, "ESTIMATOR_VERSION", netphys.__version__))


_IDENTITY_CACHE: dict = {}


def model_identity(model) -> dict:
    """Identity of a model for cache keys and provenance: class, name, weights, parameter sha256.

    The parameter hash is of the state dict actually loaded (names, shapes, dtypes and bytes), so two
    random networks with different seeds, or a user's network with other weights, never share a key.
    """
    from ..models.loading import model_info

    state = model.state_dict()
    stamp = (id(model), tuple((k, v.data_ptr(), getattr(v, "_version", 0)) for k, v in state.items()))
    hit = _IDENTITY_CACHE.get(id(model))
    if hit is not None and hit[0] == stamp:
        return dict(hit[1])
    h = hashlib.sha256()
    for k, v in sorted(state.items()):
        t = v.detach().cpu().contiguous()
        h.update(f"{k}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.numpy().tobytes() if t.dtype.is_floating_point or t.dtype.is_signed or
                 str(t.dtype) in ("torch.uint8", "torch.bool") else bytes(str(t.tolist()), "utf8"))
    info = model_info(model)
    ident = {"class": f"{type(model).__module__}.{type(model).__qualname__}", "name": info.name,
             "weights": str(info.weights), "weights_sha256": info.sha256 or "",
             "parameters_sha256": h.hexdigest(), "preprocess": info.preprocess.to_dict()}
    if len(_IDENTITY_CACHE) > 64:
        _IDENTITY_CACHE.clear()
    _IDENTITY_CACHE[id(model)] = (stamp, ident)
    return dict(ident)


def stimuli_identity(stim) -> dict:
    """Identity of a StimulusSet: sources (with file size and mtime), labels, preprocessing, a hash."""
    import os

    sources = [str(s) for s in stim.coords["source"]]
    h = hashlib.sha256()
    stats = {}
    for s in sources:
        h.update(s.encode())
        path = s.split(":", 1)[0] if ":" in s and not os.path.exists(s) else s
        if path not in stats:
            try:
                st = os.stat(path)
                stats[path] = f"{st.st_size}:{st.st_mtime_ns}"
            except OSError:
                stats[path] = ""
        h.update(stats[path].encode())
    h.update(np.asarray(stim.labels, dtype=np.int64).tobytes())
    h.update(str(getattr(stim, "on_error", "")).encode())
    arrays = getattr(stim, "_arrays_sha256", None)
    if callable(arrays):
        h.update(str(arrays()).encode())
    return {"n": len(stim), "sha256": h.hexdigest(), "preprocess": stim.preprocess.to_dict(),
            "size": int(stim.size)}


def piece_key(config, piece: str, *, reads: Iterable[str] = (), estimators: Iterable = (),
              **deps) -> tuple[str, str]:
    """``(sha256, canonical JSON)`` of a piece of work: what :meth:`RunContext.key` returns.

    The experiment's name is not part of the key: two experiments that compute the same piece from the
    same inputs (Figure 3 and the trained/random curves of Figure 4) share it.
    """
    doc = {"piece": piece, "config": {f: getattr(config, f) for f in sorted(set(reads))}, "deps": deps,
           "estimators": {str(getattr(m, "__name__", m)): estimator_version(m) for m in estimators}}
    return key_hash(doc), canonical_json(doc)


class Experiment(abc.ABC):
    """Base class of registered experiments (see the module docstring); subclasses implement ``run``."""

    name: ClassVar[str] = ""
    Config: ClassVar[type] = None  # type: ignore[assignment]
    title: ClassVar[str] = ""
    #: file stem of the saved result (``<result_name>.nc``)
    result_name: ClassVar[str] = "result"

    @abc.abstractmethod
    def run(self, cfg, ctx: "RunContext"):
        """Compute the experiment's labelled result (an ``xarray.Dataset``) from ``cfg``, through ``ctx``."""

    def tables(self, result) -> dict:
        return {}

    def figure_specs(self, result) -> list:
        """``(stem, make(layout) -> Figure, caption)`` of every paper figure, drawn only when asked for."""
        return []

    def figures(self, result, ctx: "RunContext", layout: str = "double") -> list:
        return [(stem, make(layout), cap) for stem, make, cap in self.figure_specs(result)]

    def sections(self, result, report, ctx: "RunContext") -> None:
        """Default report: every figure (both layouts when the experiment has ``figure_specs``), then every table."""
        import matplotlib.pyplot as plt

        specs = self.figure_specs(result)
        for stem, make, cap in specs:
            report.paper_figure(make, cap, stem=None if ctx.out is None else ctx.out / stem)
        if not specs:
            for stem, fig, caption in self.figures(result, ctx):
                report.figure(fig, caption, stem=None if ctx.out is None else ctx.out / stem)
                plt.close(fig)
        for name, df in self.tables(result).items():
            report.table(df, name)


class RunContext:
    """What the runner gives an experiment's ``run``: seeds, cache, identities, dispatch, progress.

    Parameters
    ----------
    experiment : Experiment
    config : frozen dataclass
    out : Path or None
        Output folder; ``None`` keeps the cache in memory (nothing is written).
    cache : PieceCache
    executor : executor from :func:`netphys.experiments.parallel.get_executor`, optional
    progress : bool
    """

    def __init__(self, experiment: Experiment, config, out: Path | None, cache: PieceCache, *,
                 executor=None, progress: bool = True):
        self.experiment = experiment
        self.config = config
        self.out = out
        self.cache = cache
        self.executor = executor
        self.progress_enabled = progress
        self.warnings: list[str] = []
        self.timings: dict = {}
        self.models: dict = {}
        self.stimuli: dict = {}
        self.extra: dict = {}
        self._collected: dict = {}
        self._stimulus_sets: dict = {}
        self._random_state = getattr(config, "random_state", 0)

    def with_config(self, config) -> "RunContext":
        """This context with another config (same cache, seeds root, warnings and provenance): a composite
        experiment (Fig. 4, Fig. D) runs sub-analyses whose pieces are keyed by the fields *they* read."""
        import copy

        view = copy.copy(self)
        view.config = config
        return view

    # ------------------------------------------------------------------ seeds
    def seed_sequence(self, *names) -> np.random.SeedSequence:
        """The named stream ``names`` (strings and ints) spawned from the config's ``random_state``.

        Streams are addressed by name, not by the order they are asked for: the units of layer
        ``conv3_1`` in realisation 2 come from ``ctx.seed("units", 2, "conv3_1")`` whatever other
        layers or realisations the config lists, so adding a layer or a realisation leaves every other
        piece (and its cache entry) unchanged.
        """
        key = []
        for n in names:
            if isinstance(n, (int, np.integer)) and not isinstance(n, bool):
                key.append(int(n))
            else:
                key.append(int.from_bytes(hashlib.sha256(str(n).encode()).digest()[:4], "little"))
        return np.random.SeedSequence(int(self._random_state), spawn_key=tuple(key))

    def seed(self, *names) -> int:
        """An int seed (0 <= seed < 2**31 - 1) of the named stream (see :meth:`seed_sequence`)."""
        return int(self.seed_sequence(*names).generate_state(1, dtype=np.uint64)[0] % (2 ** 31 - 1))

    def rng(self, *names) -> np.random.Generator:
        return np.random.default_rng(self.seed_sequence(*names))

    # ------------------------------------------------------------------ identities
    def model_identity(self, model, label: str | None = None) -> dict:
        ident = model_identity(model)
        if label is not None:
            self.models[label] = ident
        return ident

    def stimuli_identity(self, stim, label: str = "stimuli") -> dict:
        ident = stimuli_identity(stim)
        self.stimuli[label] = ident
        self._stimulus_sets[label] = stim
        return ident

    def report_unreadable(self) -> None:
        """Record the files an image set skipped or replaced by grey (policy ``on_error``)."""
        for label, stim in self._stimulus_sets.items():
            d = stim.to_dict() if hasattr(stim, "to_dict") else {}
            for kind, verb in (("skipped", "left out"), ("unreadable", "replaced by grey images")):
                files = list(d.get(kind, []))
                if files:
                    self.stimuli[label][kind] = files
                    self.warn(f"{len(files)} unreadable image file(s) {verb} ({label}): "
                              + ", ".join(files[:5]) + (" ..." if len(files) > 5 else ""))

    # ------------------------------------------------------------------ cache
    def key(self, piece: str, *, reads: Iterable[str] = (), estimators: Iterable = (), **deps) -> tuple[str, str]:
        """``(hash, document)`` of a piece: its name, the config fields it reads, its dependencies
        (identities, coordinates) and the versions of the estimator modules it calls."""
        return piece_key(self.config, piece, reads=reads, estimators=estimators, **deps)

    def lookup(self, piece: str, key: tuple[str, str]):
        """The cached piece, or ``None`` when it must be computed."""
        return self.cache.get(piece, key[0], key[1])

    def store(self, piece: str, key: tuple[str, str], ds):
        return self.cache.put(piece, key[0], key[1], ds)

    def piece(self, piece: str, compute: Callable[[], Any], *, reads=(), estimators=(), **deps):
        """Return the cached piece or compute, store and return it."""
        k = self.key(piece, reads=reads, estimators=estimators, **deps)
        got = self.lookup(piece, k)
        if got is None:
            got = self.store(piece, k, compute())
        return got

    def state_piece(self, piece: str, compute: Callable[[], tuple], *, reads=(), estimators=(), **deps):
        """:meth:`piece` for work that yields torch tensors (trained weights) next to a Dataset.

        ``compute()`` returns ``(state_dict, dataset)``; both are stored as one piece (one variable per
        tensor, see :func:`.cache.state_dataset`). Returns ``(state_dict, dataset)``, from the cache
        when the key matches.
        """
        from .cache import split_state, state_dataset

        def both():
            state, ds = compute()
            return state_dataset(state, ds)

        return split_state(self.piece(piece, both, reads=reads, estimators=estimators, **deps))

    # ------------------------------------------------------------------ dispatch, progress, warnings
    def map(self, fn: Callable, items: list) -> list:
        """Apply a module-level ``fn`` to independent ``items`` through the run's executor (in order)."""
        items = list(items)
        if self.executor is None or len(items) <= 1:
            return [fn(it) for it in items]
        return list(self.executor.map(fn, items))

    def progress(self, iterable=None, *, desc: str = "", total: int | None = None):
        from tqdm.auto import tqdm

        return tqdm(iterable, desc=desc, total=total, disable=not self.progress_enabled, leave=False)

    def warn(self, message: str) -> None:
        """A warning recorded in the result's provenance and shown in the report."""
        from .._validation import NetphysWarning

        if message not in self.warnings:
            self.warnings.append(message)
            warnings.warn(message, NetphysWarning, stacklevel=2)

    @contextmanager
    def collect_warnings(self, where: str = ""):
        """Catch the library's NetphysWarnings inside the block and record each distinct one once
        (with how often it occurred), instead of printing it for every layer or unit."""
        from .._validation import NetphysWarning

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", NetphysWarning)
            yield
        for w in caught:
            if issubclass(w.category, NetphysWarning):
                msg = str(w.message)
                entry = self._collected.setdefault(msg, [0, where])
                entry[0] += 1
            else:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)

    def flush_warnings(self) -> None:
        """Turn the collected warnings into recorded ones (called by the runner)."""
        for msg, (count, where) in self._collected.items():
            self.warn(f"{where + ': ' if where else ''}{msg}" + (f" ({count} times)" if count > 1 else ""))
        self._collected = {}

    @contextmanager
    def timer(self, name: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = round(self.timings.get(name, 0.0) + time.perf_counter() - t0, 3)


def config_fields(cfg) -> tuple:
    return tuple(f.name for f in dataclasses.fields(cfg))
