"""Preferred stimuli by evolution: CMA-ES over an image space's codes, scored by an objective.

``evolve(objective, space)`` runs ``restarts x conditions`` independent searches (one per restart and
objective column) as one population tensor: each generation generates all their images in one batched
call of the space and scores them in one batched forward of the objective (chunked by ``batch_size``).
"""
from __future__ import annotations

import logging
import numbers

import numpy as np
import torch
import xarray as xr

from .. import __version__
from .._random import spawn_seeds
from .._validation import NetphysError, check_choice, check_int, param_error
from .base import Generator
from .cmaes import run_cma, run_pycma_loop

log = logging.getLogger(__name__)

OPTIMIZERS = ("sep", "cholesky", "pycma")


def _objective_info(objective) -> dict:
    info = {"objective": repr(objective)}
    model = getattr(objective, "model", None)
    leaves = getattr(objective, "_leaves", None)
    models = [getattr(l, "model", None) for l in leaves()] if callable(leaves) else [model]
    models = [m for m in models if m is not None]
    if models:
        from ..models.loading import model_info

        names = []
        for m in {id(m): m for m in models}.values():
            mi = model_info(m)
            names.append(f"{mi.name} ({mi.weights})")
        info["models"] = names
    return info


def _condition_names(objective, n: int) -> list:
    names = getattr(objective, "names", None)
    if names is not None and len(names) == n:
        return [str(x) for x in names]
    return [f"condition{k}" for k in range(n)]


def score_images(objective, images: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
    """``objective(images)`` in chunks of ``batch_size`` without gradient: scores ``(n, K)`` float32."""
    n = images.shape[0]
    step = n if batch_size is None else batch_size
    with torch.no_grad():
        parts = [torch.as_tensor(objective(images[i:i + step])) for i in range(0, n, step)]
    out = torch.cat(parts, 0) if len(parts) > 1 else parts[0]
    if out.dim() == 1:
        out = out[:, None]
    if out.dim() != 2 or out.shape[0] != n:
        raise param_error("objective", "evolve", "a callable returning scores (n, n_conditions)",
                          f"scores of shape {tuple(out.shape)} for {n} images")
    return out.to(torch.float32)


def evolve(objective, space: Generator, *, optimizer: str = "sep", iterations: int = 100, restarts: int = 10,
           popsize: int | None = None, sigma0=None, direction: str = "max", batch_size: int | None = 512,
           random_state=0, progress: bool = False, keep_traces: bool = True) -> xr.Dataset:
    """Evolve each condition's preferred (or, with ``direction="min"``, non-preferred) images.

    Parameters
    ----------
    objective : Objective or callable
        ``images (n, 3, S, S) in [0, 1] -> scores (n, K)``; one search per restart and column.
    space : Generator
        The image space (``netphys.synthesis.generators``, a trained prior, a user's GAN).
    optimizer : {"sep", "cholesky", "pycma"}
        ``"sep"``: separable CMA-ES (Ros & Hansen 2008), ``"cholesky"``: Cholesky rank-one CMA-ES (the
        kind Wang & Ponce 2022 use), both vectorised in torch over all searches on the space's device;
        ``"pycma"``: pycma's full CMA-ES, one instance per search (the reference), still scored in one
        batched call per generation.
    iterations : int
        Generations per search.
    restarts : int
        Independent searches per condition, each from its own initial code and seed; all are kept.
    popsize : int, optional
        Population per search per generation; default ``4 + floor(3 ln d)``.
    sigma0 : float, optional
        Initial step size; default the space's ``sigma0``.
    direction : {"max", "min"}
    batch_size : int or None
        Images per forward pass of the objective (bounds memory); None: all at once.
    random_state : int, default 0
        Seeds the initial codes and the searches (spawned streams).
    progress : bool
        A tqdm bar over generations.
    keep_traces : bool
        Keep the per-generation score traces (always small).

    Returns
    -------
    xarray.Dataset
        ``best_score`` (restart, condition); ``score`` and ``mean_score`` (restart, condition,
        iteration): best-so-far and population-mean score per generation; ``codes`` (restart, condition,
        latent): best codes; ``images`` (restart, condition, channel, y, x): their images;
        ``best_restart`` (condition) and ``best_image`` (condition, channel, y, x); attrs: optimizer
        settings, space and objective descriptions, seed, versions.

    Raises
    ------
    NetphysError
        Unknown optimizer, sigma0 <= 0, iterations/restarts < 1, a space that is not a Generator, an
        objective returning the wrong shape, NaN scores (naming the generation and search).
    """
    func = "evolve"
    check_choice(optimizer, "optimizer", func, OPTIMIZERS)
    check_choice(direction, "direction", func, ("max", "min"))
    iterations = check_int(iterations, "iterations", func, min_value=1)
    restarts = check_int(restarts, "restarts", func, min_value=1)
    if batch_size is not None:
        batch_size = check_int(batch_size, "batch_size", func, min_value=1)
    if not isinstance(space, Generator):
        raise param_error("space", func, "a netphys.synthesis Generator (an image space)", type(space).__name__,
                          "use PixelSpace, FourierSpace, a prior, or subclass netphys.synthesis.Generator")
    if not callable(objective):
        raise param_error("objective", func, "an Objective or a callable images -> scores", type(objective).__name__)
    if sigma0 is None:
        sigma0 = float(space.sigma0)
    if (not isinstance(sigma0, numbers.Real) or isinstance(sigma0, bool) or not np.isfinite(sigma0)
            or sigma0 <= 0):
        raise param_error("sigma0", func, "a finite number > 0", sigma0,
                          f"the space {space.name!r} suggests sigma0={space.sigma0}")
    init_seed, search_seed = spawn_seeds(random_state, 2)
    device = space.device
    d = int(space.latent_size)

    # conditions from one probe image (also checks the objective runs on the space's images)
    probe = space.initial_codes(1, random_state=init_seed)
    with torch.no_grad():
        k_cond = score_images(objective, space(probe)).shape[1]
    names = _condition_names(objective, k_cond)
    G = restarts * k_cond  # group g = restart * K + condition
    x0 = space.initial_codes(restarts, random_state=init_seed)  # one start per restart, shared by conditions
    x0 = x0.repeat_interleave(k_cond, dim=0)
    cond_of_group = torch.arange(G, device=device) % k_cond

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=iterations, desc=f"evolve {space.name}", unit="gen")

    def callback(gen, _state):
        if bar is not None:
            bar.update(1)

    def score_fn(codes):  # (G, lam, d) -> (G, lam)
        g, lam, _ = codes.shape
        with torch.no_grad():
            imgs = space(codes.reshape(g * lam, d))
            s = score_images(objective, imgs, batch_size).to(device).reshape(g, lam, k_cond)
        return s.gather(2, cond_of_group[:, None, None].expand(g, lam, 1)).squeeze(2)

    try:
        res = run_cma(score_fn, x0, sigma0=float(sigma0), iterations=iterations, popsize=popsize,
                      backend=optimizer, direction=direction, random_state=search_seed, device=device,
                      callback=callback)
    finally:
        if bar is not None:
            bar.close()
    return _as_dataset(res, space, objective, names, restarts, k_cond, optimizer=optimizer, sigma0=float(sigma0),
                       direction=direction, random_state=random_state, batch_size=batch_size, keep_traces=keep_traces)


def _as_dataset(res, space, objective, names, restarts, k_cond, *, optimizer, sigma0, direction, random_state,
                batch_size, keep_traces) -> xr.Dataset:
    d = int(space.latent_size)
    codes = torch.as_tensor(res.best_codes, device=space.device, dtype=torch.float32)
    with torch.no_grad():
        imgs = torch.cat([space(codes[i:i + 256]) for i in range(0, codes.shape[0], 256)]).cpu().numpy()
    c, h, w = imgs.shape[1:]
    best = np.asarray(res.best_scores, dtype=np.float64).reshape(restarts, k_cond)
    best_r = (best.argmax(0) if direction == "max" else best.argmin(0))
    imgs = imgs.reshape(restarts, k_cond, c, h, w).astype(np.float32)
    data = {
        "best_score": (("restart", "condition"), best),
        "codes": (("restart", "condition", "latent"), np.asarray(res.best_codes, np.float32).reshape(restarts, k_cond, d)),
        "images": (("restart", "condition", "channel", "y", "x"), imgs),
        "best_restart": (("condition",), best_r.astype(np.int64)),
        "best_image": (("condition", "channel", "y", "x"), imgs[best_r, np.arange(k_cond)]),
    }
    if keep_traces:
        tb = np.asarray(res.trace_best, np.float64).T.reshape(restarts, k_cond, -1)
        tm = np.asarray(res.trace_mean, np.float64).T.reshape(restarts, k_cond, -1)
        data["score"] = (("restart", "condition", "iteration"), tb)
        data["mean_score"] = (("restart", "condition", "iteration"), tm)
    settings = {k: v for k, v in res.settings.items() if isinstance(v, (str, int, float, bool))}
    attrs = {
        "method": "evolve", "optimizer": optimizer, "iterations": int(res.trace_best.shape[0]),
        "restarts": restarts, "popsize": int(res.settings.get("popsize", 0)), "sigma0": sigma0,
        "direction": direction, "random_state": str(random_state), "batch_size": str(batch_size),
        "n_evaluations": int(res.n_evaluations), "netphys_version": __version__, "torch_version": torch.__version__,
        "space": str(space.describe()), **{f"objective_{k}": str(v) for k, v in _objective_info(objective).items()},
        **{f"cma_{k}": v for k, v in settings.items()},
    }
    coords = {"restart": np.arange(restarts), "condition": np.arange(k_cond),
              "condition_name": ("condition", np.array(names, dtype=str)), "latent": np.arange(d),
              "channel": np.arange(c), "y": np.arange(h), "x": np.arange(w)}
    if keep_traces:
        coords["iteration"] = np.arange(res.trace_best.shape[0])
    return xr.Dataset(data, coords=coords, attrs=attrs)


def evolve_loop(objective, space: Generator, *, iterations: int = 100, restarts: int = 10, popsize: int | None = None,
                sigma0=None, direction: str = "max", random_state=0, options: dict | None = None) -> xr.Dataset:
    """The naive reference of :func:`evolve`: one pycma instance per search, each scored on its own.

    Searches run one after another; every generation of every search is one forward pass of the
    objective on that search's population (the way per-neuron CMA scripts work). Same result layout
    as :func:`evolve` (``optimizer="pycma-loop"``); used by ``bench/synthesis.py``. ``options``: pycma
    options, e.g. ``{"AdaptSigma": cma.sigma_adaptation.CMAAdaptSigmaCSA}`` (cumulative step-size
    adaptation, as the torch backends; pycma's default in high dimension is two-point adaptation, TPA)
    and ``"CMA_diagonal": True`` (sep-CMA), so that the reference runs the same algorithm.
    """
    func = "evolve_loop"
    iterations = check_int(iterations, "iterations", func, min_value=1)
    restarts = check_int(restarts, "restarts", func, min_value=1)
    sigma0 = float(space.sigma0 if sigma0 is None else sigma0)
    if sigma0 <= 0:
        raise param_error("sigma0", func, "a number > 0", sigma0)
    init_seed, search_seed = spawn_seeds(random_state, 2)
    d = int(space.latent_size)
    probe = space.initial_codes(1, random_state=init_seed)
    k_cond = score_images(objective, space(probe)).shape[1]
    names = _condition_names(objective, k_cond)
    x0 = space.initial_codes(restarts, random_state=init_seed).repeat_interleave(k_cond, dim=0)

    def score_fn(codes, group):  # (lam, d) -> (lam,)
        with torch.no_grad():
            s = score_images(objective, space(codes.reshape(-1, d)))
        return s[:, group % k_cond]

    res = run_pycma_loop(score_fn, x0, sigma0=sigma0, iterations=iterations, popsize=popsize, direction=direction,
                         random_state=search_seed, device=space.device, options=options)
    return _as_dataset(res, space, objective, names, restarts, k_cond, optimizer="pycma-loop", sigma0=sigma0,
                       direction=direction, random_state=random_state, batch_size=None, keep_traces=True)


__all__ = ["evolve", "evolve_loop", "score_images", "OPTIMIZERS", "NetphysError"]
