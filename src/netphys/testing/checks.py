"""Conformance checks for plug-ins: a user's experiment passes the same checks as the built-ins."""
from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

__all__ = ["check_experiment"]


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
