"""The one experiment runner: validate, seed, cache, dispatch, provenance, files, report.

:func:`run_experiment` is what ``netphys run NAME --config FILE`` calls. For every experiment it

1. builds and validates the whole config before any work (types, ranges, names; the output folder is
   checked to be writable);
2. opens the keyed piece cache under ``out/cache`` (removing orphaned temporary files), so a killed run
   resumes and a changed config recomputes exactly the pieces whose keys it changes;
3. runs the experiment with a :class:`~netphys.experiments.base.RunContext` (named seed streams,
   identities, an executor for independent pieces, progress bars);
4. writes the labelled result (netCDF), its tables (CSV), figures (PNG + SVG), ``config.yaml``,
   ``provenance.json`` and a self-contained ``report.html``, all atomically.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import platform
import time
from pathlib import Path

from .._validation import param_error
from .base import Experiment, RunContext
from .cache import PieceCache
from .config import config_to_dict, load_config

log = logging.getLogger(__name__)

__all__ = ["run_experiment", "ExperimentRun", "check_writable"]


@dataclasses.dataclass
class ExperimentRun:
    """What :func:`run_experiment` returns."""

    name: str
    config: object
    result: object
    out: Path | None
    report: Path | None
    cache: dict
    seconds: float


def check_writable(out, func: str = "run_experiment") -> Path:
    """Create ``out`` and check a file can be written there (before any work starts)."""
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".netphys-write-check-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise param_error("out", func, "a folder netphys can create and write to", str(out),
                          f"{exc.strerror or exc}; choose another --out") from None
    return out


def _versions() -> dict:
    import numpy
    import torch

    import netphys

    out = {"netphys": netphys.__version__, "torch": torch.__version__, "numpy": numpy.__version__,
           "python": platform.python_version()}
    for mod in ("scipy", "sklearn", "xarray"):
        try:
            out[mod] = __import__(mod).__version__
        except Exception:  # pragma: no cover
            pass
    return out


def run_experiment(experiment, config=None, out=None, *, progress: bool = True, report: bool = True,
                   backend: str = "serial", max_workers: int | None = None, executor=None,
                   **overrides) -> ExperimentRun:
    """Run a registered experiment.

    Parameters
    ----------
    experiment : str or Experiment subclass
        A registered name (``netphys run --help`` lists them) or the class itself.
    config : path, dict, config dataclass or None
        YAML/TOML/JSON file or dict overriding the paper defaults of the experiment's config.
    out : path, optional
        Output folder (default ``runs/<name>``); ``None`` with ``report=False`` runs in memory.
    progress : bool
    report : bool
        Write figures and ``report.html`` (default True).
    backend, max_workers : str, int
        Executor for independent pieces (``"serial"``, ``"process"``, ``"ray"``; see
        :mod:`netphys.experiments.parallel`); results are identical to serial.
    executor : optional
        An already-open executor (overrides ``backend``).
    **overrides
        Config fields set on top of ``config``.

    Returns
    -------
    ExperimentRun
        ``result`` (xarray.Dataset with provenance in ``attrs``), ``report`` path, cache statistics.
    """
    from .registry import get_experiment

    cls = get_experiment(experiment) if isinstance(experiment, str) else experiment
    if not (isinstance(cls, type) and issubclass(cls, Experiment)):
        raise param_error("experiment", "run_experiment", "a registered name or an Experiment subclass",
                          experiment)
    cfg = load_config(cls.Config, config, **overrides)
    exp = cls()
    if out is None and report:
        out = Path("runs") / cls.name
    if out is not None:
        out = check_writable(out)
    t0 = time.time()
    cache = PieceCache(None if out is None else out / "cache")
    if out is not None:  # temporary files of an interrupted write of the outputs themselves
        for tmp in out.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)
            cache.events.append(f"removed orphaned temporary file {tmp.name}")
    own_executor = None
    if executor is None and backend != "serial":
        from .parallel import get_executor

        own_executor = executor = get_executor(backend, max_workers).__enter__()
    ctx = RunContext(exp, cfg, out, cache, executor=executor, progress=progress)
    try:
        result = exp.run(cfg, ctx)
        ctx.flush_warnings()
        ctx.report_unreadable()
    finally:
        if own_executor is not None:
            own_executor.__exit__(None, None, None)
    seconds = round(time.time() - t0, 2)
    prov = {"experiment": cls.name, "config": config_to_dict(cfg),
            "random_state": getattr(cfg, "random_state", None), "versions": _versions(),
            "models": ctx.models, "stimuli": ctx.stimuli, "cache": cache.stats(),
            "cache_events": cache.events, "warnings": ctx.warnings, "timings": ctx.timings,
            "seconds": seconds, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **ctx.extra}
    result.attrs.update(_attrs(prov))
    rep_path = None
    if out is not None:
        _write_outputs(exp, cfg, result, prov, out)
        if report:
            rep_path = write_report(exp, result, ctx, prov)
    return ExperimentRun(cls.name, cfg, result, out, rep_path, cache.stats(), seconds)


def _attrs(prov: dict) -> dict:
    """Provenance as netCDF-friendly attrs (scalars as they are, the rest as JSON)."""
    out = {}
    for k, v in prov.items():
        out[k] = v if isinstance(v, (str, int, float)) and not isinstance(v, bool) else json.dumps(v, default=str)
    return out


def _write_outputs(exp, cfg, result, prov: dict, out: Path) -> None:
    import yaml

    from ..io import atomic_write_text, save_dataset

    tables = exp.tables(result)  # computed before anything is written: a failing table leaves no half-written run
    atomic_write_text(out / "config.yaml", yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
    atomic_write_text(out / "provenance.json", json.dumps(prov, indent=2, default=str))
    save_dataset(result, out / f"{exp.result_name}.nc")
    for name, df in tables.items():
        atomic_write_text(out / f"{name}.csv", df.to_csv(index=False))


def write_report(exp, result, ctx: RunContext, prov: dict) -> Path:
    """Write ``report.html``.

    Order: the experiment's introduction (``exp.intro``: a string, or a method taking the result), a
    warning box (the run's warnings, layer values not above their shuffle null), the experiment's
    sections, then the config and the provenance as tables (the full record is ``provenance.json``).
    """
    from ..reports import Report, null_warnings

    rep = Report(exp.title or exp.name, getattr(exp, "subtitle", lambda r: "")(result))
    intro = getattr(exp, "intro", "")
    rep.intro(intro(result) if callable(intro) else intro)
    rep.warning(list(prov["warnings"]) + null_warnings(result) + list(prov["cache_events"]),
                "Warnings: read the results below with care")
    exp.sections(result, rep, ctx)
    rep.heading("Config")
    rep.mapping(prov["config"], "every field of the run's config (config.yaml)")
    rep.heading("Provenance")
    rep.mapping({k: v for k, v in prov.items() if k not in ("config", "warnings")},
                "versions, identities of models and stimuli, cache use and timings (provenance.json)",
                header=("item", "value"))
    return rep.write(ctx.out / "report.html")


def describe(name: str) -> str:
    """One line per config field of experiment ``name`` with its default (for ``netphys run --help``)."""
    from .registry import get_experiment

    cls = get_experiment(name)
    lines = [f"{cls.name}: {cls.title}"]
    for f in dataclasses.fields(cls.Config):
        d = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else "")
        lines.append(f"  {f.name} = {d!r}")
    return "\n".join(lines)

