"""Conformance checks for plug-ins: a user's experiment passes the same checks as the built-ins."""
from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

from .._validation import NetphysError

__all__ = ["check_experiment", "check_detector", "DetectorCheckError"]


def check_experiment(experiment, config=None, *, out=None) -> dict:
    """Check that a registered experiment (name or class) follows the runner's contract.

    Runs it three times on ``config`` (a dict or file of small settings) and raises ``AssertionError`` naming
    the first broken rule:

    1. ``Config`` is a frozen dataclass whose paper defaults build and validate;
    2. ``run`` returns an ``xarray.Dataset`` with provenance (config, versions, seeds) in its attrs, and
       ``tables()`` gives pandas DataFrames;
    3. the same seed gives the same numbers (a run in memory equals a run with a cache folder);
    4. a rerun into the same folder reuses every cached piece (nothing recomputed) and gives the same result.

    Returns
    -------
    dict
        The cache statistics of the first and the repeated run (``{"first": ..., "rerun": ...}``).
    """
    import pandas as pd
    import xarray as xr

    from ..experiments.config import load_config
    from ..experiments.registry import get_experiment
    from ..experiments.runner import run_experiment

    cls = get_experiment(experiment) if isinstance(experiment, str) else experiment
    name = getattr(cls, "name", "") or cls.__name__
    cfg_cls = cls.Config
    assert dataclasses.is_dataclass(cfg_cls), f"{name}: Config must be a dataclass"
    assert cfg_cls.__dataclass_params__.frozen, f"{name}: Config must be frozen (@dataclass(frozen=True))"
    load_config(cfg_cls)  # the paper defaults build and validate
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(out) if out is not None else Path(tmp) / "run"
        memory = run_experiment(cls, config, None, progress=False, report=False).result
        assert isinstance(memory, xr.Dataset), f"{name}: run() must return an xarray.Dataset, got {type(memory)}"
        for key in ("config", "versions", "random_state"):
            assert key in memory.attrs, f"{name}: the result's attrs lack the provenance entry {key!r}"
        for tname, df in cls().tables(memory).items():
            assert isinstance(df, pd.DataFrame), f"{name}: tables()[{tname!r}] must be a DataFrame"
        first = run_experiment(cls, config, folder, progress=False)
        for v in memory.data_vars:
            xr.testing.assert_equal(memory[v], first.result[v])  # same seed, same numbers
        again = run_experiment(cls, config, folder, progress=False)
        computed = {k: v["computed"] for k, v in again.cache.items() if v["computed"]}
        assert not computed, f"{name}: a rerun of the same config recomputed cached pieces {computed}"
        for v in memory.data_vars:
            xr.testing.assert_equal(first.result[v], again.result[v])
        assert (folder / "report.html").is_file(), f"{name}: no report.html was written"
    return {"first": first.cache, "rerun": again.cache}


class DetectorCheckError(NetphysError, AssertionError):
    """A detector broke a rule of the :class:`~netphys.stats.similarity.Detector` protocol (both a
    NetphysError and an AssertionError)."""


def check_detector(detector, images=None, *, n: int = 4, size: int = 32, random_state=0,
                   atol: float = 1e-6) -> dict:
    """Check that ``detector`` follows the :class:`~netphys.stats.similarity.Detector` protocol.

    Parameters
    ----------
    detector : Detector
        A user's wrapped detector (e.g. YOLO) or a built-in proxy.
    images : tensor or array (n, 3, H, W), float in [0, 1], optional
        Probe images; default ``n`` uniform-noise images of ``size`` x ``size`` pixels drawn from
        ``random_state`` (pass real-looking images for a detector that needs them).
    n, size : int
        Shape of the default probe images.
    random_state : int, default 0
        Seed of the default probe images.
    atol : float, default 1e-6
        Tolerance of the determinism rule.

    Returns
    -------
    dict
        ``name``, ``is_proxy``, ``checks`` (the rules passed, in order) and ``scores`` (numpy, ``(n,)``).

    Raises
    ------
    DetectorCheckError
        (a :class:`~netphys.NetphysError` and an ``AssertionError``) naming the first rule broken:

        1. ``attributes``: callable, a non-empty str ``name``, a bool ``is_proxy``, and an instance of
           the runtime-checkable ``Detector`` protocol;
        2. ``scores``: ``detector(images)`` gives ``n`` scores of shape ``(n,)``, finite, in ``[0, 1]``;
        3. ``determinism``: a second call on the same images gives the same scores (within ``atol``).
    """
    import numpy as np
    import torch

    from .._random import check_random_state
    from .._validation import check_int
    from ..stats.similarity import Detector, _as_images, _check_detector_attrs, objectness

    label = repr(getattr(detector, "name", type(detector).__name__))

    def fail(rule, detail):
        raise DetectorCheckError(f"check_detector: the detector {label} breaks the rule '{rule}': {detail}")

    func = "check_detector"
    if images is None:
        n = check_int(n, "n", func, min_value=1)
        size = check_int(size, "size", func, min_value=1)
        rng = check_random_state(random_state, func)
        images = torch.from_numpy(rng.random((n, 3, size, size), dtype=np.float32))
    images = _as_images(images, "images", func)
    checks = []
    try:
        _check_detector_attrs(detector, func)
    except NetphysError as exc:
        fail("attributes", str(exc))
    if not isinstance(detector, Detector):
        fail("attributes", "it is not an instance of the Detector protocol")
    checks.append("attributes")
    try:
        first = objectness(images.clone(), detector).values
    except NetphysError as exc:
        fail("scores", str(exc))
    checks.append("scores")
    second = objectness(images.clone(), detector).values
    diff = float(np.max(np.abs(first - second)))
    if diff > atol:
        fail("determinism", f"two calls on the same images differ by up to {diff:.3g} (> atol={atol})")
    checks.append("determinism")
    return {"name": detector.name, "is_proxy": bool(detector.is_proxy), "checks": checks, "scores": first}
