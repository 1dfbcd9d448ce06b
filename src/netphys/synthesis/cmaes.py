"""Batched CMA-ES: the black-box optimiser core of feature visualisation by evolution.

:func:`run_cma` runs ``G`` independent CMA-ES searches (restarts x conditions) side by side and asks
for the scores of *all* their populations in one call per generation, so that the caller does one
batched forward pass through a generator and a network (XDream, Ponce et al. 2019; Wang & Ponce 2022).
The core knows nothing of images or units: it sees a score function
``codes (G, popsize, d) -> scores (G, popsize)``.

Three backends share one loop:

``"sep"``
    separable CMA-ES (diagonal covariance; Ros & Hansen 2008) vectorised over the groups in torch;
    ``O(G d)`` memory, the choice for high-dimensional latent spaces.
``"cholesky"``
    the (mu/mu_w, lambda)-Cholesky-CMA-ES with rank-one updates of a factor ``A`` with ``C = A A^T``
    (Igel, Suttorp & Hansen 2006; Suttorp, Hansen & Igel 2009), the optimiser of Wang & Ponce (2022),
    vectorised with batched matrix products; ``O(G d^2)`` memory (see :data:`CHOLESKY_MAX_BYTES`).
``"pycma"``
    the reference: one :class:`cma.CMAEvolutionStrategy` per group (ask/tell), the asks of all groups
    stacked so that the score function is still called once per generation. :func:`run_pycma_loop`
    is the naive reference that runs the groups one after the other.

Randomness: every group has its own random stream, seeded from :func:`group_seeds`; the numbers that
group ``g`` draws do not depend on how many other groups run beside it, so a group run alone (with its
own seed, ``random_state=[group_seeds(random_state, G)[g]]``) follows exactly the same path.
"""
from __future__ import annotations

import logging
import math
import numbers
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch

from .._random import spawn_seeds
from .._validation import NetphysWarning, check_choice, check_device, check_int, param_error

__all__ = ["BACKENDS", "CHOLESKY_MAX_BYTES", "CHOLESKY_WARN_DIM", "CMAResult", "default_popsize",
           "group_seeds", "run_cma", "run_pycma_loop"]

logger = logging.getLogger(__name__)

#: the backends of :func:`run_cma`
BACKENDS = ("sep", "cholesky", "pycma")
#: the largest covariance factor (``n_groups * d * d * itemsize`` bytes) that the cholesky backend allocates
CHOLESKY_MAX_BYTES = 16 * 2**30
#: above this dimension the cholesky backend warns (sampling costs ``O(popsize d^2)`` per group)
CHOLESKY_WARN_DIM = 4096

_DIRECTIONS = ("max", "min")
_TORCH_OPTION_KEYS = {"sep": ("cc", "cs", "c1", "cmu", "damps"),
                      "cholesky": ("cc", "cs", "c1", "damps")}


@dataclass
class CMAResult:
    """What :func:`run_cma` returns; every array is a NumPy array on the CPU.

    Attributes
    ----------
    best_codes : ndarray, shape (G, d)
        The best code ever sampled by each group (the computation dtype, float32 by default).
    best_scores : ndarray, shape (G,)
        Its score, in the objective's own sign (float64).
    trace_best : ndarray, shape (iterations, G)
        Best-so-far score after each generation (float64).
    trace_mean : ndarray, shape (iterations, G)
        Mean score of each generation's population (float64).
    final_mean : ndarray, shape (G, d)
        The mean of the search distribution after the last generation.
    final_sigma : ndarray, shape (G,)
        The global step size after the last generation.
    n_evaluations : int
        Codes scored in all, ``G * iterations * popsize``.
    settings : dict
        Backend, popsize, mu, weights, learning rates, sigma0, iterations, direction, seed and the
        per-group seeds, dtype and device: enough to rerun the search.
    """

    best_codes: np.ndarray
    best_scores: np.ndarray
    trace_best: np.ndarray
    trace_mean: np.ndarray
    final_mean: np.ndarray
    final_sigma: np.ndarray
    n_evaluations: int
    settings: dict = field(default_factory=dict)

    @property
    def n_groups(self) -> int:
        return int(self.best_codes.shape[0])

    @property
    def dim(self) -> int:
        return int(self.best_codes.shape[1])


def default_popsize(dim: int) -> int:
    """The usual CMA-ES population size ``4 + floor(3 ln d)`` (Hansen 2016)."""
    return 4 + int(math.floor(3 * math.log(dim)))


def group_seeds(random_state, n_groups: int) -> list[int]:
    """One integer seed per group, reproducible from ``random_state``.

    Parameters
    ----------
    random_state : None, int, SeedSequence, Generator, or a sequence of ``n_groups`` ints
        An int, a SeedSequence or a Generator is spawned into ``n_groups`` children
        (:func:`numpy.random.SeedSequence.spawn`); child ``g`` depends only on ``random_state`` and
        ``g``, never on ``n_groups``. A sequence gives each group's seed directly.
    n_groups : int

    Returns
    -------
    list of int
    """
    func = "run_cma"
    if isinstance(random_state, (list, tuple, np.ndarray)):
        seeds = list(random_state)
        if len(seeds) != n_groups:
            raise param_error("random_state", func, f"a seed or a sequence of one seed per group ({n_groups})",
                              f"a sequence of length {len(seeds)}",
                              "pass an int, or as many seeds as x0 has rows")
        out = []
        for s in seeds:
            if not (isinstance(s, numbers.Integral) and not isinstance(s, bool) and int(s) >= 0):
                raise param_error("random_state", func, "a sequence of non-negative ints (one per group)",
                                  s)
            out.append(int(s))
        return out
    return spawn_seeds(random_state, n_groups)


# ----------------------------------------------------------------------------------------------------
# strategy parameters
# ----------------------------------------------------------------------------------------------------
def _weights(lam: int) -> tuple[np.ndarray, float]:
    mu = lam // 2
    w = math.log((lam + 1) / 2) - np.log(np.arange(1, mu + 1))
    w = w / w.sum()
    return w, float(1.0 / np.sum(w**2))


def _parameters(backend: str, d: int, lam: int, options: dict) -> dict:
    """Learning rates of the torch backends (pycma computes its own)."""
    w, mueff = _weights(lam)
    p: dict[str, Any] = {"mu": len(w), "weights": w, "mueff": mueff,
                         "chiN": math.sqrt(d) * (1 - 1 / (4 * d) + 1 / (21 * d**2))}
    if backend == "sep":
        # Hansen (2016) defaults, covariance learning rates multiplied by (d + 2) / 3 (Ros & Hansen 2008)
        p["cc"] = (4 + mueff / d) / (d + 4 + 2 * mueff / d)
        p["cs"] = (mueff + 2) / (d + mueff + 5)
        c1 = 2 / ((d + 1.3) ** 2 + mueff)
        cmu = min(1 - c1, 2 * (mueff - 2 + 1 / mueff) / ((d + 2) ** 2 + mueff))
        p["c1"] = min(1.0, c1 * (d + 2) / 3)
        p["cmu"] = min(1.0 - p["c1"], cmu * (d + 2) / 3)
    else:
        # Suttorp, Hansen & Igel (2009) Alg. 4 / Wang & Ponce (2022) defaults of the Cholesky-CMA-ES
        p["cc"] = 4 / (d + 4)
        p["cs"] = math.sqrt(mueff) / (math.sqrt(d) + math.sqrt(mueff))
        p["c1"] = 2 / (d + math.sqrt(2)) ** 2
    p["damps"] = 1 + 2 * max(0.0, math.sqrt((mueff - 1) / (d + 1)) - 1) + p["cs"]
    for key, value in options.items():
        if not (isinstance(value, numbers.Real) and not isinstance(value, bool) and 0 < value
                and (key == "damps" or value <= 1)):
            raise param_error("options", "run_cma", f"a dict whose '{key}' is a float in (0, 1]"
                              if key != "damps" else "a dict whose 'damps' is a float > 0", value)
        p[key] = float(value)
    return p


# ----------------------------------------------------------------------------------------------------
# strategies: ask() -> codes (G, lam, d); tell(f) with f (G, lam) to be MINIMISED
# ----------------------------------------------------------------------------------------------------
def _randn(gens, lam, d, device, dtype):
    return torch.stack([torch.randn(lam, d, generator=g, device=device, dtype=dtype) for g in gens])


class _TorchStrategy:
    def __init__(self, x0, sigma0, lam, params, seeds):
        self.G, self.d = x0.shape
        self.lam, self.p = lam, params
        self.device, self.dtype = x0.device, x0.dtype
        self.mean = x0.clone()
        self.sigma = sigma0.clone()
        self.ps = torch.zeros_like(x0)
        self.w = torch.as_tensor(params["weights"], dtype=self.dtype, device=self.device)
        self.gens = [torch.Generator(device=self.device).manual_seed(int(s)) for s in seeds]
        self.t = 0

    def _select(self, f, *tensors):
        idx = torch.sort(f, dim=1, stable=True).indices[:, : self.p["mu"]]
        idx = idx.unsqueeze(-1).expand(-1, -1, self.d)
        return [torch.einsum("m,gmd->gd", self.w, torch.gather(t, 1, idx)) for t in tensors]

    def _csa(self, zw):
        """Cumulative step-size adaptation; returns the stall indicator h_sigma (G,)."""
        p, d = self.p, self.d
        self.ps = (1 - p["cs"]) * self.ps + math.sqrt(p["cs"] * (2 - p["cs"]) * p["mueff"]) * zw
        norm = torch.linalg.vector_norm(self.ps, dim=1)
        hsig = (norm / math.sqrt(1 - (1 - p["cs"]) ** (2 * (self.t + 1))) / p["chiN"]
                < 1.4 + 2 / (d + 1)).to(self.dtype)
        self.sigma = self.sigma * torch.exp(torch.clamp(p["cs"] / p["damps"] * (norm / p["chiN"] - 1), max=1.0))
        return hsig


class _SepStrategy(_TorchStrategy):
    def __init__(self, x0, sigma0, lam, params, seeds):
        super().__init__(x0, sigma0, lam, params, seeds)
        self.C = torch.ones_like(x0)
        self.pc = torch.zeros_like(x0)

    def ask(self):
        self.z = _randn(self.gens, self.lam, self.d, self.device, self.dtype)
        self.D = torch.sqrt(self.C)
        return self.mean.unsqueeze(1) + self.sigma[:, None, None] * (self.z * self.D.unsqueeze(1))

    def tell(self, f):
        p = self.p
        idx = torch.sort(f, dim=1, stable=True).indices[:, : p["mu"]]
        zsel = torch.gather(self.z, 1, idx.unsqueeze(-1).expand(-1, -1, self.d))
        ysel = zsel * self.D.unsqueeze(1)
        zw = torch.einsum("m,gmd->gd", self.w, zsel)
        yw = zw * self.D
        self.mean = self.mean + self.sigma[:, None] * yw
        hsig = self._csa(zw)
        cc, c1, cmu = p["cc"], p["c1"], p["cmu"]
        self.pc = (1 - cc) * self.pc + (hsig * math.sqrt(cc * (2 - cc) * p["mueff"]))[:, None] * yw
        decay = 1 - c1 - cmu + ((1 - hsig) * c1 * cc * (2 - cc))[:, None]
        self.C = decay * self.C + c1 * self.pc**2 + cmu * torch.einsum("m,gmd->gd", self.w, ysel**2)
        self.t += 1


def _group_mm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a[g] @ b[g]`` for every group, one product per group: CPU ``torch.bmm`` is not bitwise invariant to the
    number of groups in the batch, and a group run alone must follow exactly its path inside a batch."""
    return torch.stack([a[g] @ b[g] for g in range(a.shape[0])])


class _CholeskyStrategy(_TorchStrategy):
    """State: mean, sigma, the factor as ``At = A^T`` (C = A A^T; kept transposed so that every batched
    product reads contiguous memory), p_sigma, and ``v = A^{-1} p_c`` (the path in z-coordinates)."""

    def __init__(self, x0, sigma0, lam, params, seeds):
        super().__init__(x0, sigma0, lam, params, seeds)
        self.At = torch.eye(self.d, dtype=self.dtype, device=self.device).repeat(self.G, 1, 1)
        self.v = torch.zeros_like(x0)

    def ask(self):
        self.z = _randn(self.gens, self.lam, self.d, self.device, self.dtype)
        self.y = _group_mm(self.z, self.At)  # y_k = A z_k
        return self.mean.unsqueeze(1) + self.sigma[:, None, None] * self.y

    def tell(self, f):
        p = self.p
        zw, yw = self._select(f, self.z, self.y)
        self.mean = self.mean + self.sigma[:, None] * yw
        hsig = self._csa(zw)
        cc, c1 = p["cc"], p["c1"]
        self.v = (1 - cc) * self.v + (hsig * math.sqrt(cc * (2 - cc) * p["mueff"]))[:, None] * zw
        pc = _group_mm(self.v.unsqueeze(1), self.At).squeeze(1)  # p_c = A v
        alpha = 1 - c1 + (1 - hsig) * c1 * cc * (2 - cc)
        nv = torch.clamp((self.v**2).sum(1), min=torch.finfo(self.dtype).tiny)
        s = torch.sqrt(1 + c1 / alpha * nv)
        k = (s - 1) / nv
        # A <- sqrt(alpha) (A + k p_c v^T), i.e. At <- sqrt(alpha) (At + k v p_c^T), in place
        self.At.baddbmm_(self.v.unsqueeze(-1), (k[:, None] * pc).unsqueeze(1))
        self.At.mul_(torch.sqrt(alpha)[:, None, None])
        self.v = self.v / (torch.sqrt(alpha) * s)[:, None]
        self.t += 1


class _PycmaStrategy:
    def __init__(self, x0, sigma0, lam, options, seeds):
        import cma

        self.G, self.d = x0.shape
        self.device, self.dtype = x0.device, x0.dtype
        x0_np = x0.detach().cpu().double().numpy()
        s0 = sigma0.detach().cpu().double().numpy()
        self.es = []
        for g in range(self.G):
            rng = np.random.default_rng(seeds[g])
            opts = {"popsize": lam, "verbose": -9, "verb_log": 0, "verb_disp": 0, "seed": float("nan"),
                    "randn": (lambda n, N, _rng=rng: _rng.standard_normal((n, N)))}
            opts.update(options)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.es.append(cma.CMAEvolutionStrategy(x0_np[g], float(s0[g]), opts))
        self.X = None

    @property
    def mean(self):
        return torch.as_tensor(np.stack([es.mean for es in self.es]), dtype=self.dtype, device=self.device)

    @property
    def sigma(self):
        return torch.as_tensor([float(es.sigma) for es in self.es], dtype=self.dtype, device=self.device)

    def ask(self):
        self.X = [es.ask() for es in self.es]
        return torch.as_tensor(np.stack([np.stack(x) for x in self.X]), dtype=self.dtype, device=self.device)

    def tell(self, f):
        f = f.detach().cpu().double().numpy()
        for es, X, fg in zip(self.es, self.X, f):
            es.tell(X, fg.tolist())


_STRATEGIES = {"sep": _SepStrategy, "cholesky": _CholeskyStrategy, "pycma": _PycmaStrategy}


# ----------------------------------------------------------------------------------------------------
# validation
# ----------------------------------------------------------------------------------------------------
def _check_sigma0(sigma0, G, func):
    what = "a finite float > 0 or an array of one per group"
    if isinstance(sigma0, torch.Tensor):
        sigma0 = sigma0.detach().cpu().numpy()
    try:
        s = np.asarray(sigma0, dtype=np.float64)
    except (TypeError, ValueError):
        raise param_error("sigma0", func, what, sigma0) from None
    if s.ndim == 0:
        s = np.full(G, float(s))
    elif s.shape != (G,):
        raise param_error("sigma0", func, f"a float or an array of shape ({G},) (one per group)",
                          f"an array of shape {s.shape}")
    if not np.all(np.isfinite(s) & (s > 0)):
        bad = sigma0 if np.ndim(sigma0) == 0 else s[~(np.isfinite(s) & (s > 0))][0]
        raise param_error("sigma0", func, what, bad,
                          "sigma0 is the initial step size; about 1/4 to 1/2 of the range of good codes")
    return s


def _check_inputs(func, x0, sigma0, iterations, popsize, backend, direction, random_state, device,
                  callback, dtype, options):
    backend = check_choice(backend, "backend", func, BACKENDS)
    direction = check_choice(direction, "direction", func, _DIRECTIONS)
    iterations = check_int(iterations, "iterations", func, min_value=1)
    if dtype is None:
        dtype = torch.float32
    if dtype not in (torch.float32, torch.float64):
        raise param_error("dtype", func, "torch.float32 or torch.float64", dtype)
    if callback is not None and not callable(callback):
        raise param_error("callback", func, "None or a callable callback(generation, state)", callback)
    if isinstance(x0, torch.Tensor):
        dev0 = x0.device
        x = x0.detach()
    else:
        dev0 = torch.device("cpu")
        try:
            x = torch.as_tensor(np.asarray(x0, dtype=np.float64))
        except (TypeError, ValueError):
            raise param_error("x0", func, "a 2-D array or tensor (n_groups, dim)", type(x0).__name__) from None
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise param_error("x0", func, "a 2-D array or tensor of shape (n_groups, dim)",
                          f"shape {tuple(x.shape)}",
                          "use x0[None] for a single search; one row per restart x condition")
    if not torch.is_floating_point(x) and x.dtype not in (torch.int32, torch.int64):
        raise param_error("x0", func, "a real-valued array", str(x.dtype))
    if not bool(torch.isfinite(x.double()).all()):
        raise param_error("x0", func, "finite (no NaN or inf)",
                          f"{int((~torch.isfinite(x.double())).sum())} non-finite value(s)")
    device = check_device(device, func) or dev0
    G, d = x.shape
    x = x.to(device=device, dtype=dtype).clone()
    s0 = _check_sigma0(sigma0, G, func)
    if popsize is None:
        lam = default_popsize(d)
    else:
        lam = check_int(popsize, "popsize", func, min_value=2)
    if options is None:
        options = {}
    if not isinstance(options, dict):
        raise param_error("options", func, "None or a dict", options)
    if backend in _TORCH_OPTION_KEYS:
        allowed = _TORCH_OPTION_KEYS[backend]
        for key in options:
            if key not in allowed:
                raise param_error("options", func, f"a dict with keys among {', '.join(allowed)}",
                                  f"key {key!r}", f"backend {backend!r} takes only these learning-rate "
                                  "settings; pycma options go with backend='pycma'")
    else:
        import cma

        known = cma.CMAOptions()
        for key in options:
            if key not in known:
                raise param_error("options", func, "a dict of cma.CMAOptions keys", f"key {key!r}",
                                  "see cma.CMAOptions() for the names")
        if d < 2:
            raise param_error("x0", func, "at least 2 columns for backend='pycma'", f"shape {tuple(x.shape)}",
                              "pycma needs dim >= 2; use backend='sep' in one dimension")
    if backend == "cholesky":
        nbytes = G * d * d * torch.finfo(dtype).bits // 8
        if nbytes > CHOLESKY_MAX_BYTES:
            raise param_error("x0", func, f"small enough for a covariance factor of at most "
                              f"{CHOLESKY_MAX_BYTES / 2**30:.3g} GiB with backend='cholesky' "
                              f"(n_groups * dim^2 * {torch.finfo(dtype).bits // 8} bytes)",
                              f"shape {(G, d)}, {nbytes / 2**30:.1f} GiB",
                              "use backend='sep' (O(n_groups * dim) memory) or fewer groups per call")
        if d > CHOLESKY_WARN_DIM:
            warnings.warn(f"run_cma: backend='cholesky' in dim={d} > {CHOLESKY_WARN_DIM} costs O(popsize dim^2) "
                          f"per group and generation and learns its covariance slowly (c_cov ~ 2/dim^2); "
                          "backend='sep' is usually the better choice", NetphysWarning, stacklevel=3)
    seeds = group_seeds(random_state, G)
    return x, s0, iterations, lam, backend, direction, seeds, dtype, options


def _check_scores(scores, shape, generation, group_offset, func, device):
    if not isinstance(scores, torch.Tensor):
        try:
            scores = torch.as_tensor(np.asarray(scores, dtype=np.float64))
        except (TypeError, ValueError):
            raise param_error("score_fn", func, f"a function returning a tensor of scores of shape {shape}",
                              f"a {type(scores).__name__} at generation {generation}") from None
    if tuple(scores.shape) != shape:
        raise param_error("score_fn", func, f"a function returning scores of shape (n_groups, popsize) = {shape}",
                          f"shape {tuple(scores.shape)} at generation {generation}",
                          "return one score per code; codes arrive as (n_groups, popsize, dim)")
    scores = scores.detach().to(device=device, dtype=torch.float32 if device.type == "mps" else torch.float64)
    nan = torch.isnan(scores)
    if bool(nan.any()):
        rows = torch.nonzero(nan.any(1)).flatten().tolist()
        g = rows[0]
        raise param_error("score_fn", func, "a function returning scores without NaN",
                          f"{int(nan[g].sum())} NaN of {shape[1]} scores for group {g + group_offset} at "
                          f"generation {generation}" + (f" (groups with NaN: {[r + group_offset for r in rows]})"
                                                        if len(rows) > 1 else ""),
                          "check the objective for these codes, or score codes to reject with -inf "
                          "(direction='max') or +inf (direction='min')")
    return scores


# ----------------------------------------------------------------------------------------------------
# the shared loop
# ----------------------------------------------------------------------------------------------------
def _loop(strategy, score_fn, iterations, lam, sign, callback, func, group_offset=0):
    """Run ``iterations`` generations; ``sign`` = +1 minimises the score, -1 maximises it."""
    G, d, device = strategy.G, strategy.d, strategy.device
    best_f = torch.full((G,), math.inf, dtype=torch.float64, device=device)
    best_codes = strategy.mean.clone()
    trace_best, trace_mean = [], []
    for t in range(iterations):
        codes = strategy.ask()
        scores = _check_scores(score_fn(codes), (G, lam), t, group_offset, func, device)
        f = sign * scores
        imin = f.argmin(dim=1)  # (argmin + gather: min(dim=) is slow on small CPU tensors)
        fmin = f.gather(1, imin[:, None]).squeeze(1)
        better = fmin < best_f
        new = codes[torch.arange(G, device=device), imin]
        best_codes = torch.where(better[:, None], new.to(best_codes.dtype), best_codes)
        best_f = torch.where(better, fmin, best_f)
        strategy.tell(f)
        trace_best.append(sign * best_f)
        trace_mean.append(scores.mean(dim=1))
        if callback is not None:
            callback(t, {"generation": t, "codes": codes, "scores": scores, "mean": strategy.mean,
                         "sigma": strategy.sigma, "best_scores": sign * best_f, "best_codes": best_codes})
    to_np = lambda a: a.detach().cpu().numpy()  # noqa: E731
    return dict(best_codes=to_np(best_codes), best_scores=to_np(sign * best_f),
                trace_best=to_np(torch.stack(trace_best)), trace_mean=to_np(torch.stack(trace_mean)),
                final_mean=to_np(strategy.mean), final_sigma=to_np(strategy.sigma))


def _settings(backend, lam, s0, iterations, direction, random_state, seeds, dtype, device, params, options):
    settings = {"backend": backend, "popsize": lam, "mu": lam // 2,
                "weights": "positive log-rank weights ln((popsize+1)/2) - ln(i), i <= mu = popsize // 2",
                "sigma0": float(s0[0]) if np.all(s0 == s0[0]) else s0.tolist(),
                "iterations": iterations, "direction": direction,
                "seed": random_state if isinstance(random_state, (numbers.Integral, type(None))) else
                repr(random_state) if not isinstance(random_state, (list, tuple, np.ndarray)) else
                [int(s) for s in random_state],
                "group_seeds": list(seeds), "dtype": str(dtype).replace("torch.", ""), "device": str(device)}
    if params is not None:
        settings["mueff"] = params["mueff"]
        settings["learning_rates"] = {k: params[k] for k in ("cc", "cs", "c1", "cmu", "damps") if k in params}
    if options:
        settings["options"] = {k: (v if isinstance(v, (numbers.Number, str, bool, type(None))) else repr(v))
                               for k, v in options.items()}
    return settings


def run_cma(score_fn: Callable[[torch.Tensor], Any], x0, *, sigma0, iterations: int = 100,
            popsize: int | None = None, backend: str = "sep", direction: str = "max", random_state=0,
            device=None, callback: Callable[[int, dict], Any] | None = None, dtype: torch.dtype | None = None,
            options: dict | None = None) -> CMAResult:
    """Run ``G`` independent CMA-ES searches, scoring all their populations in one call per generation.

    Parameters
    ----------
    score_fn : callable
        ``score_fn(codes) -> scores``: ``codes`` is a tensor ``(G, popsize, d)`` (dtype ``dtype`` on
        ``device``), the populations of all groups in one generation; ``scores`` a tensor or array
        ``(G, popsize)``; row ``g`` scores group ``g``'s codes. Called exactly ``iterations`` times.
        It must not modify ``codes`` in place.
    x0 : tensor or array, shape (G, d)
        Start means, one row per search (restarts x conditions).
    sigma0 : float or array, shape (G,)
        Initial step sizes (> 0).
    iterations : int, default 100
        Generations.
    popsize : int, optional
        Codes per group and generation (lambda >= 2); default ``4 + floor(3 ln d)``.
    backend : {"sep", "cholesky", "pycma"}, default "sep"
        See the module docstring and Notes.
    direction : {"max", "min"}, default "max"
        Maximise or minimise the score. Internally the strategies minimise ``-score`` (``"max"``) or
        ``score`` (``"min"``); every reported score keeps the objective's own sign.
    random_state : None, int, SeedSequence, Generator or sequence of G ints, default 0
        Resolved by :func:`group_seeds` into one seed per group. The torch backends draw from one
        ``torch.Generator`` per group on ``device`` (so the numbers depend on the device type); pycma
        draws from one ``numpy.random.Generator`` per group (its ``randn`` option; never the global
        NumPy state).
    device : str or torch.device, optional
        Where the state and codes live; default the device of ``x0`` (CPU for arrays).
    callback : callable, optional
        ``callback(generation, state)`` after each generation (``generation`` from 0); ``state`` is a
        dict of tensors: ``codes``, ``scores``, ``mean``, ``sigma``, ``best_scores``, ``best_codes``.
    dtype : torch.float32 or torch.float64, optional
        Computation dtype of the torch backends and of the codes passed to ``score_fn``; default
        float32 (pycma computes in float64 whatever this is).
    options : dict, optional
        ``"sep"``: any of ``cc, cs, c1, cmu, damps``; ``"cholesky"``: any of ``cc, cs, c1, damps``
        (overriding the defaults in Notes); ``"pycma"``: :class:`cma.CMAOptions` entries, e.g.
        ``{"CMA_diagonal": True}`` for pycma's separable CMA-ES.

    Returns
    -------
    CMAResult
        NumPy arrays on the CPU: ``best_codes (G, d)``, ``best_scores (G,)``, ``trace_best`` and
        ``trace_mean (iterations, G)``, ``final_mean (G, d)``, ``final_sigma (G,)``,
        ``n_evaluations = G * iterations * popsize`` and ``settings``.

    Raises
    ------
    NetphysError
        On a bad argument (unknown backend, ``x0`` not 2-D, ``sigma0 <= 0``, ``iterations < 1``,
        ``popsize < 2``, ...), when ``score_fn`` returns the wrong shape or NaN (naming the generation
        and the group), or when the cholesky factor would exceed :data:`CHOLESKY_MAX_BYTES`.

    Warns
    -----
    NetphysWarning
        backend ``"cholesky"`` with ``d > CHOLESKY_WARN_DIM`` (4096).

    Notes
    -----
    All backends sample ``x_k = m + sigma y_k``, ``y_k ~ N(0, C)``, ``k = 1..lambda``, rank the codes by
    ``f`` (``-score`` to maximise) and recombine the best ``mu = lambda // 2`` with weights
    ``w_i ∝ ln((lambda+1)/2) - ln i`` (``mu_eff = 1 / sum w_i^2``): ``m <- m + sigma sum w_i y_{i:lambda}``.
    The step size follows cumulative step-size adaptation,
    ``p_s <- (1-c_s) p_s + sqrt(c_s (2-c_s) mu_eff) sum w_i z_{i:lambda}``,
    ``sigma <- sigma exp(min(1, c_s/d_s (|p_s| / E|N(0,I)| - 1)))``, and
    ``h_s = [|p_s| / sqrt(1-(1-c_s)^{2(t+1)}) / E|N(0,I)| < 1.4 + 2/(d+1)]`` stalls the path ``p_c``
    when the step size is growing fast (Hansen 2016).

    ``"sep"`` (Ros & Hansen 2008) keeps ``C = diag(c)``, ``y = sqrt(c) * z`` and
    ``c <- (1 - c_1 - c_mu + (1-h_s) c_1 c_c (2-c_c)) c + c_1 p_c^2 + c_mu sum w_i y_{i:lambda}^2``
    with ``p_c <- (1-c_c) p_c + h_s sqrt(c_c(2-c_c) mu_eff) y_w``; ``c_c = (4 + mu_eff/d)/(d + 4 + 2 mu_eff/d)``,
    ``c_s = (mu_eff + 2)/(d + mu_eff + 5)``, and the full-covariance rates
    ``c_1 = 2/((d+1.3)^2 + mu_eff)``, ``c_mu = 2(mu_eff - 2 + 1/mu_eff)/((d+2)^2 + mu_eff)`` both
    multiplied by ``(d+2)/3`` (capped so that ``c_1 + c_mu <= 1``). Memory ``O(G d)``.

    ``"cholesky"`` (Igel, Suttorp & Hansen 2006; Suttorp, Hansen & Igel 2009, Alg. 4; the optimiser of
    Wang & Ponce 2022) keeps a factor ``A`` with ``C = A A^T``, samples ``y = A z`` and makes the rank-one
    update ``C <- alpha C + c_1 p_c p_c^T`` directly on ``A``: with ``v = A^{-1} p_c``,
    ``s = sqrt(1 + c_1 |v|^2 / alpha)``,
    ``A <- sqrt(alpha) (A + (s - 1)/|v|^2 p_c v^T)``, ``alpha = 1 - c_1 + (1-h_s) c_1 c_c (2-c_c)``
    (``h_s = 1`` gives the paper's ``alpha = 1 - c_cov``). No inverse is stored: ``v`` itself is
    carried in z-coordinates, ``v <- (1-c_c) v + h_s sqrt(c_c (2-c_c) mu_eff) z_w`` and after the update
    ``v <- v / (sqrt(alpha) s)`` (because ``A'^{-1} p_c = v / (sqrt(alpha) s)``), with ``p_c = A v``.
    Defaults ``c_c = 4/(d+4)``, ``c_1 = 2/(d+sqrt 2)^2``, ``c_s = sqrt(mu_eff)/(sqrt d + sqrt(mu_eff))``,
    ``d_s = 1 + 2 max(0, sqrt((mu_eff-1)/(d+1)) - 1) + c_s``. Memory ``G d^2`` floats (``G = 100``,
    ``d = 4096``, float32: 6.7 GB); an error above :data:`CHOLESKY_MAX_BYTES` (16 GiB), a warning above
    ``d = 4096``. Rank-one learning only: on ill-conditioned problems it needs more evaluations than
    pycma's full CMA-ES (rank-mu and active updates): about 2 times on the 10-d ellipsoid of condition 1e6,
    far more in 100-d (``tests/test_cmaes.py``).

    ``"pycma"`` is :class:`cma.CMAEvolutionStrategy` (Hansen et al.) with ``popsize``,
    ``verbose=-9``, no log files, and each group's own ``numpy.random.Generator`` as ``randn``; its
    termination criteria are ignored (every group runs ``iterations`` generations).

    The shape contract is the same for all backends, so the naive baseline, the batched pycma run and
    the torch backends can be swapped under one objective. Budgets and precisions reached on the
    sphere and ellipsoids are stated in ``tests/test_cmaes.py``.

    References
    ----------
    Hansen, N. (2016). The CMA evolution strategy: a tutorial. arXiv:1604.00772.
    Ros, R. & Hansen, N. (2008). A simple modification in CMA-ES achieving linear time and space
    complexity. PPSN X, 296-305.
    Igel, C., Suttorp, T. & Hansen, N. (2006). A computational efficient covariance matrix update and a
    (1+1)-CMA for evolution strategies. GECCO 2006, 453-460.
    Suttorp, T., Hansen, N. & Igel, C. (2009). Efficient covariance matrix update for variable metric
    evolution strategies. Machine Learning 75, 167-197.
    Ponce, C. R. et al. (2019). Evolving images for visual neurons using a deep generative network
    reveals coding principles and neuronal preferences. Cell 177, 999-1009.
    Wang, B. & Ponce, C. R. (2022). High-performance evolutionary algorithms for online neuron control.
    GECCO 2022; and Tuning landscapes of the ventral stream. Cell Reports 41, 111595.
    """
    func = "run_cma"
    x, s0, iterations, lam, backend, direction, seeds, dtype, options = _check_inputs(
        func, x0, sigma0, iterations, popsize, backend, direction, random_state, device, callback, dtype,
        options)
    if not callable(score_fn):
        raise param_error("score_fn", func, "a callable score_fn(codes) -> scores", score_fn)
    G, d = x.shape
    sigma = torch.as_tensor(s0, dtype=dtype, device=x.device)
    params = None
    if backend == "pycma":
        strategy = _PycmaStrategy(x, sigma, lam, options, seeds)
    else:
        params = _parameters(backend, d, lam, options)
        strategy = _STRATEGIES[backend](x, sigma, lam, params, seeds)
    logger.debug("run_cma: backend=%s, G=%d, d=%d, popsize=%d, iterations=%d", backend, G, d, lam, iterations)
    sign = -1.0 if direction == "max" else 1.0
    out = _loop(strategy, score_fn, iterations, lam, sign, callback, func)
    return CMAResult(**out, n_evaluations=G * iterations * lam,
                     settings=_settings(backend, lam, s0, iterations, direction, random_state, seeds, dtype,
                                        x.device, params, options))


def run_pycma_loop(score_fn: Callable[[torch.Tensor, int], Any], x0, *, sigma0, iterations: int = 100,
                   popsize: int | None = None, direction: str = "max", random_state=0, device=None,
                   callback: Callable[[int, dict], Any] | None = None, dtype: torch.dtype | None = None,
                   options: dict | None = None) -> CMAResult:
    """The naive reference: pycma's CMA-ES on each group in turn, one score call per group and generation.

    Parameters
    ----------
    score_fn : callable
        ``score_fn(codes, group) -> scores`` with ``codes`` a tensor ``(popsize, d)`` and ``scores``
        ``(popsize,)``; called ``G * iterations`` times.
    x0, sigma0, iterations, popsize, direction, random_state, device, dtype, options
        As in :func:`run_cma` (``backend="pycma"``).
    callback : callable, optional
        ``callback(generation, state)`` as in :func:`run_cma`, with ``state["group"]`` added and the
        tensors of that one group (leading dimension 1).

    Returns
    -------
    CMAResult
        The same numbers as ``run_cma(..., backend="pycma")`` with the same arguments (the groups'
        random streams are the same), computed ``G`` times more slowly on batched objectives.

    Raises
    ------
    NetphysError
        As :func:`run_cma`.

    Notes
    -----
    This is how pycma is usually driven (one ``ask``/``tell`` loop per search); it exists as the
    baseline against which batching all groups into one call is measured.

    References
    ----------
    Hansen, N., Akimoto, Y. & Baudis, P. (2019). CMA-ES/pycma on GitHub. Zenodo, doi:10.5281/zenodo.2559634.
    """
    func = "run_pycma_loop"
    x, s0, iterations, lam, _, direction, seeds, dtype, options = _check_inputs(
        func, x0, sigma0, iterations, popsize, "pycma", direction, random_state, device, callback, dtype,
        options)
    if not callable(score_fn):
        raise param_error("score_fn", func, "a callable score_fn(codes, group) -> scores", score_fn)
    G, d = x.shape
    sign = -1.0 if direction == "max" else 1.0
    parts = []
    for g in range(G):
        strategy = _PycmaStrategy(x[g:g + 1], torch.as_tensor(s0[g:g + 1], dtype=dtype), lam, options, seeds[g:g + 1])

        def one(codes, _g=g):
            s = score_fn(codes[0], _g)
            if isinstance(s, torch.Tensor) and tuple(s.shape) == (lam,):
                return s.unsqueeze(0)
            a = s if isinstance(s, torch.Tensor) else np.asarray(s, dtype=np.float64)
            if tuple(a.shape) != (lam,):
                raise param_error("score_fn", func, f"a function returning scores of shape (popsize,) = ({lam},)",
                                  f"shape {tuple(a.shape)} for group {_g}",
                                  "return one score per code; codes arrive as (popsize, dim)")
            return a[None]

        cb = None
        if callback is not None:
            def cb(t, state, _g=g):
                callback(t, {**state, "group": _g})
        parts.append(_loop(strategy, one, iterations, lam, sign, cb, func, group_offset=g))
    out = {k: np.concatenate([p[k] for p in parts], axis=1 if k.startswith("trace") else 0) for k in parts[0]}
    settings = _settings("pycma", lam, s0, iterations, direction, random_state, seeds, dtype, x.device, None,
                         options)
    settings["loop"] = True
    return CMAResult(**out, n_evaluations=G * iterations * lam, settings=settings)
