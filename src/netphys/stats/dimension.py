"""Intrinsic dimension: the TwoNN estimator and its scaling with population size.

The TwoNN estimator of Facco et al. (2017) needs only the distances of every point to its first two
nearest neighbours. This module provides

* :class:`TwoNN` -- the estimator (scikit-learn pattern: ``TwoNN().fit(X).dimension_``), with an
  exact, chunked nearest-neighbour search that handles ``N = 10000`` points in ``D = 4096``
  dimensions on a laptop CPU, an explicit policy for duplicate points and an error estimate;
* :func:`id_vs_population` -- the ID of random sub-populations of units (columns) as a function of
  their number, as in Fig. 2A of Muratore et al. (2022);
* :func:`fit_power_law` -- a saturating power law ``ID(n) = d_inf - a n^(-b)`` fitted to that curve,
  whose asymptote extrapolates the ID to an infinitely large population (Fig. 2B).

Conventions follow DADApy's ``Data.compute_id_2NN`` (Glielmo et al. 2022): with ``N`` points and
sorted ratios ``mu_(1) <= ... <= mu_(N)``, the ``n_fit = int(N * (1 - discard_fraction))`` smallest
ratios are kept, the empirical CDF is ``F_i = i / N`` (``i = 1..n_fit``; the denominator is the
number of *all* points, not of the kept ones), and the dimension is the least-squares slope through
the origin of ``-log(1 - F_i)`` against ``log mu_(i)``. Results agree with DADApy to floating-point
precision on the same data (see ``tests/test_dimension.py``).
"""
from __future__ import annotations

#: version of this module's estimators, part of every experiment cache key that uses them; bump it when
#: a change alters their numbers (1: TwoNN as of netphys 0.1)
ESTIMATOR_VERSION = "1"

import logging
import math
import numbers
import warnings
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np
from sklearn.base import BaseEstimator

from .._random import check_random_state
from .._validation import NetphysError, check_choice, check_finite, check_int, param_error

log = logging.getLogger(__name__)

__all__ = [
    "TwoNN",
    "DuplicatePointsWarning",
    "PowerLawFit",
    "id_vs_population",
    "fit_power_law",
    "power_law",
]

DUPLICATE_POLICIES = ("drop", "jitter", "error")

# Memory budget of one block of the float32 distance matrix (bytes).
_BLOCK_BYTES = 64 * 2**20
# Candidates kept per point by the float32 screening pass before exact float64 refinement.
_N_CANDIDATES = 8
# Memory budget of one block of exact float64 difference vectors in the refinement step (bytes).
_REFINE_BYTES = 32 * 2**20
# Block size of the exact refinement (fits in L2 cache).
_REFINE_CACHE_BYTES = 2**20
# Blocks at least this large use torch.topk for the k smallest entries per row.
_TORCH_TOPK_MIN = 2**20


class DuplicatePointsWarning(UserWarning):
    """Duplicate points (zero nearest-neighbour distance) were found and handled by the policy."""


# --------------------------------------------------------------------------------------- validation
def _check_points(X, func: str, *, min_points: int = 3) -> np.ndarray:
    """Validate a (n_points, n_features) array of finite numbers and return it as a float array."""
    a = np.asarray(X)
    if a.dtype.kind not in "biuf":
        raise param_error("X", func, "a numeric array of shape (n_points, n_features)",
                          f"an array of dtype {a.dtype}")
    if a.ndim != 2:
        raise param_error("X", func, "a 2-D array of shape (n_points, n_features)",
                          f"an array of shape {a.shape}",
                          "reshape 1-D data with X.reshape(-1, 1) (one feature) or X.reshape(1, -1)")
    if a.dtype.kind != "f" or a.dtype.itemsize < 4:
        a = a.astype(np.float64)
    elif a.dtype.itemsize > 8:
        a = a.astype(np.float64)
    check_finite(a, "X", func, "remove or impute the non-finite values first")
    if a.shape[0] < min_points:
        raise param_error("X", func, f"an array with at least {min_points} points (rows)",
                          f"{a.shape[0]} point(s)")
    if a.shape[1] < 1:
        raise param_error("X", func, "an array with at least 1 feature (column)", f"shape {a.shape}")
    return a


def _check_fraction(value, param: str, func: str) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and 0.0 < float(value) < 1.0
    if not ok:
        raise param_error(param, func, "a float in the open interval (0, 1)", value)
    return float(value)


def _valid_metrics() -> list[str]:
    from sklearn.neighbors import VALID_METRICS

    return sorted(set(VALID_METRICS["brute"]) - {"precomputed"})


def _check_metric(metric, func: str):
    if callable(metric):
        return metric
    if not isinstance(metric, str):
        raise param_error("metric", func, "'euclidean', 'precomputed', a scikit-learn metric name or a "
                          "callable", metric)
    if metric in ("euclidean", "precomputed"):
        return metric
    if metric not in _valid_metrics():
        raise param_error("metric", func, "'euclidean', 'precomputed' or a metric name accepted by "
                          "sklearn.neighbors.NearestNeighbors", metric)
    return metric


# ------------------------------------------------------------------------------ nearest neighbours
def _duplicate_groups(X: np.ndarray) -> np.ndarray:
    """Index of the first identical row for every row (``first[i] == i`` for first occurrences).

    Rows are compared byte for byte after mapping -0.0 to +0.0, so only exact duplicates count.
    Hashing the row bytes keeps this O(N D) instead of the O(N log N D) of ``np.unique(axis=0)``.
    """
    first = np.arange(X.shape[0])
    seen: dict[int, list[int]] = {}
    for i in range(X.shape[0]):
        row = X[i] + 0.0  # -0.0 -> +0.0
        h = hash(row.tobytes())
        bucket = seen.get(h)
        if bucket is None:
            seen[h] = [i]
            continue
        for j in bucket:
            if np.array_equal(X[j], row):
                first[i] = j
                break
        else:
            bucket.append(i)
    return first


def _refine(X: np.ndarray, rows: np.ndarray, cand: np.ndarray) -> np.ndarray:
    """Exact float64 squared distances between ``X[rows]`` and their candidate neighbours ``X[cand]``.

    Cache-sized row blocks (~1 MiB), one candidate slot at a time: the gather, subtraction and
    reduction stay in cache, about twice as fast as one large 3-D difference array.
    """
    n_rows, k = cand.shape
    D = X.shape[1]
    out = np.empty((n_rows, k))
    step = max(1, _REFINE_CACHE_BYTES // max(1, 8 * D))
    for s in range(0, n_rows, step):
        xs = X[rows[s:s + step]].astype(np.float64, copy=False)
        for m in range(k):
            d = np.take(X, cand[s:s + step, m], axis=0).astype(np.float64, copy=False)  # a new array
            d -= xs
            out[s:s + step, m] = np.einsum("ij,ij->i", d, d)
    return out


def _gamma(D: int, dtype) -> float:
    """Bound factor ``c`` with ``|approx - exact| <= c (|x_i|^2 + |x_j|^2)`` for ``|x_j|^2 - 2 x_i.x_j``.

    Higham's ``gamma_m = m u / (1 - m u)`` for a length-``D`` dot product, widened (``m = D + 8``, x2) to
    cover the rounding of the inputs, of the squared norms and of the final additions.
    """
    u = float(np.finfo(dtype).eps) / 2
    m = D + 8
    return 2.0 * m * u / (1.0 - m * u) if m * u < 0.25 else np.inf


def _smallest(G: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Values and column indices of the ``k`` smallest entries of every row of ``G``, sorted ascending.

    Uses ``torch.topk`` (multi-threaded, no full partition) on large blocks when torch is importable,
    else ``numpy.argpartition``.
    """
    if G.size >= _TORCH_TOPK_MIN and G.dtype in (np.float32, np.float64):
        try:
            import torch
        except ImportError:  # pragma: no cover - torch is a dependency of netphys
            torch = None
        if torch is not None:
            vals, idx = torch.topk(torch.from_numpy(G), k, dim=1, largest=False, sorted=True)
            return vals.numpy(), idx.numpy()
    part = np.argpartition(G, k - 1, axis=1)[:, :k]
    vals = np.take_along_axis(G, part, axis=1)
    order = np.argsort(vals, axis=1)
    return np.take_along_axis(vals, order, axis=1), np.take_along_axis(part, order, axis=1)


def _screen_block(G, idx, sq, c, k, X):
    """From approximate ``sq_j - 2 x_i.x_j`` (rows ``idx``; self already +inf) get the two exact nearest
    distances of every row and whether they are certified.

    The ``k + 1`` smallest approximate values are taken in order; the best ``3`` candidates are refined
    exactly first, all ``k`` only for rows that the first stage cannot certify. A row is certified when
    every point not refined has, by the rounding bound ``c``, an exact squared distance at least the
    second smallest refined one: first with the largest squared norm (no pass over ``G``), then, for
    rows that fail, with every point's own norm. ``G`` may be modified in place.
    """
    n = G.shape[1]
    if k >= n - 1:  # every other point is a candidate
        _, cand = _smallest(G, k)
        exact = _refine(X, idx, cand)
        exact.sort(axis=1)
        return exact[:, :2], np.ones(idx.size, dtype=bool)
    vals, cand = _smallest(G, k + 1)
    vals = vals.astype(np.float64)
    slack = (1.0 - c) * sq[idx] - c * float(sq.max())
    m = min(3, k)
    exact = _refine(X, idx, cand[:, :m])
    exact.sort(axis=1)
    best = exact[:, :2].copy()
    refined = np.full(idx.size, m)
    ok = vals[:, m] + slack >= best[:, 1]
    if m < k and not ok.all():
        bad = np.flatnonzero(~ok)
        exact = _refine(X, idx[bad], cand[bad, :k])
        exact.sort(axis=1)
        best[bad] = exact[:, :2]
        refined[bad] = k
        ok[bad] = vals[bad, k] + slack[bad] >= best[bad, 1]
    if not ok.all():
        # per-point bound: exact d2_ij >= G_ij - c sq_j + (1 - c) sq_i for every j not refined
        bad = np.flatnonzero(~ok)
        H = G[bad] - (c * sq).astype(G.dtype)[None, :]
        for r, i in enumerate(bad):
            H[r, cand[i, :refined[i]]] = np.inf
        ok[bad] = H.min(axis=1).astype(np.float64) + (1.0 - c) * sq[idx[bad]] >= best[bad, 1]
    return best, ok


def _direct_rows(X: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Exact two smallest squared distances of ``X[rows]`` to all other points, from differences."""
    n, D = X.shape
    out = np.empty((rows.size, 2))
    step = max(1, _REFINE_BYTES // max(1, 8 * D))
    for a, i in enumerate(rows):
        xi = X[i].astype(np.float64)
        best = np.full(2, np.inf)
        for t in range(0, n, step):
            diff = X[t:t + step].astype(np.float64) - xi
            d2 = np.einsum("ij,ij->i", diff, diff)
            if t <= i < t + step:
                d2[i - t] = np.inf
            best = np.partition(np.concatenate([best, d2]), 1)[:2]
        out[a] = np.sort(best)
    return out


def _two_nn_euclidean(X: np.ndarray, *, block_bytes: int = _BLOCK_BYTES,
                      n_candidates: int = _N_CANDIDATES) -> tuple[np.ndarray, np.ndarray]:
    """Exact Euclidean distances of every point to its first and second nearest neighbour.

    Three passes, each only over the rows the previous one could not certify:

    1. float32 matrix products over row blocks (``block_bytes`` each) screen ``n_candidates``
       neighbours per point; their distances are recomputed exactly in float64 from difference
       vectors. A rigorous bound on the rounding error of every other pair certifies that no
       non-candidate is closer than the second neighbour found.
    2. The same in float64 for uncertified rows (neighbour distances tiny compared with the norms).
    3. Direct float64 differences against all points for rows still uncertified.

    The result is that of an exact brute-force search on difference vectors.
    """
    n, D = X.shape
    k = min(n - 1, n_candidates)
    mean = X.mean(axis=0, dtype=np.float64)
    # centred float32 copy with one more column holding the squared norms, so that a single product
    # of [-2 x_i, 1] with [x_j, |x_j|^2] gives |x_j|^2 - 2 x_i.x_j (the row-wise order of distances)
    X32 = np.empty((n, D + 1), dtype=np.float32)
    sq = np.empty(n)
    step = max(1, _REFINE_BYTES // max(1, 8 * D))
    for s in range(0, n, step):
        c = np.subtract(X[s:s + step], mean, dtype=np.float64)
        sq[s:s + step] = np.einsum("ij,ij->i", c, c)
        X32[s:s + step, :D] = c
    X32[:, D] = sq

    r2 = np.empty((n, 2))
    todo: list[np.ndarray] = []
    c32 = _gamma(D + 1, np.float32)
    rows_per_block = int(max(1, min(n, block_bytes // (4 * n))))
    G_buf = np.empty((rows_per_block, n), dtype=np.float32)
    for start in range(0, n, rows_per_block):
        idx = np.arange(start, min(n, start + rows_per_block))
        A = X32[idx]  # a copy
        A[:, :D] *= -2.0
        A[:, D] = 1.0
        G = np.matmul(A, X32.T, out=G_buf[:idx.size])
        G[idx - start, idx] = np.inf
        r2[idx], ok = _screen_block(G, idx, sq, c32, k, X)
        if not ok.all():
            todo.append(idx[~ok])
    del G_buf
    del X32
    rows = np.concatenate(todo) if todo else np.empty(0, dtype=int)
    if rows.size:
        log.debug("TwoNN: %d of %d rows not certified in float32; redoing them in float64", rows.size, n)
        c64 = _gamma(D, np.float64)
        per = int(max(1, min(rows.size, block_bytes // (8 * n))))
        left = []
        for s in range(0, rows.size, per):
            idx = rows[s:s + per]
            A = X[idx].astype(np.float64) - mean
            G = np.empty((idx.size, n))
            for t in range(0, n, step):
                G[:, t:t + step] = A @ (X[t:t + step].astype(np.float64) - mean).T
            G *= -2.0
            G += sq[None, :]
            G[np.arange(idx.size), idx] = np.inf
            r2[idx], ok = _screen_block(G, idx, sq, c64, k, X)
            if not ok.all():
                left.append(idx[~ok])
        rows = np.concatenate(left) if left else np.empty(0, dtype=int)
    if rows.size:
        log.debug("TwoNN: %d rows not certified in float64; exact search from differences", rows.size)
        r2[rows] = _direct_rows(X, rows)
    return np.sqrt(r2[:, 0]), np.sqrt(r2[:, 1])


def _two_nn_precomputed(Dm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    Dm = np.array(Dm, dtype=np.float64)
    np.fill_diagonal(Dm, np.inf)
    two = np.partition(Dm, 1, axis=1)[:, :2]
    return two[:, 0], two[:, 1]


def _two_nn_sklearn(X: np.ndarray, metric) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.neighbors import NearestNeighbors

    nn = NearestNeighbors(n_neighbors=2, metric=metric).fit(X)
    dist, _ = nn.kneighbors()  # excludes each point itself
    return dist[:, 0], dist[:, 1]


# ------------------------------------------------------------------------------------- the fit
def _twonn_fit(mu: np.ndarray, discard_fraction: float) -> tuple[float, float, int]:
    """Least-squares TwoNN fit (DADApy conventions) and the delta-method SD of the estimate.

    Returns ``(dimension, dimension_sd, n_fit)``.
    """
    N = mu.size
    n_fit = min(int(N * (1.0 - discard_fraction)), N - 1)
    x = np.sort(np.log(mu))[:n_fit]
    i = np.arange(1, n_fit + 1)
    y = -np.log1p(-i / N)
    sxx = float(np.dot(x, x))
    if not sxx > 0:
        raise NetphysError(
            "TwoNN cannot estimate a dimension: the first and second nearest-neighbour distances are equal "
            "(mu = 1) for all retained points, as on a regular grid; add a little noise to the data")
    d = float(np.dot(x, y)) / sxx
    return d, d * _relative_sd(N, n_fit, y), n_fit


def _relative_sd(N: int, n_fit: int, y: np.ndarray) -> float:
    """Relative asymptotic SD of the least-squares TwoNN slope under the model.

    Under the TwoNN model ``log mu`` is exponential with rate ``d``, so the sorted values are ``E_(i)/d``
    with ``E_(i)`` standard exponential order statistics, ``E_(i) = sum_{k<=i} Z_k / (N - k + 1)`` (Renyi).
    The slope is ``d * A / B`` with ``A = sum y_i E_(i)``, ``B = sum E_(i)^2``; linearising ``A/B`` around
    the means ``m_i = E[E_(i)]`` gives ``Var = sum_k (sum_{i>=k} g_i)^2 / (N - k + 1)^2`` with
    ``g_i = y_i / B0 - 2 A0 m_i / B0^2``.
    """
    k = np.arange(1, n_fit + 1, dtype=np.float64)
    m = np.cumsum(1.0 / (N - k + 1.0))
    A0 = float(np.dot(y, m))
    B0 = float(np.dot(m, m))
    g = y / B0 - 2.0 * A0 * m / B0**2
    G = np.cumsum(g[::-1])[::-1]
    var = float(np.sum(G**2 / (N - k + 1.0) ** 2))
    return math.sqrt(var) / (A0 / B0)


class TwoNN(BaseEstimator):
    """TwoNN intrinsic-dimension estimator (Facco et al. 2017).

    A scikit-learn estimator (``get_params``, ``set_params``, ``sklearn.base.clone``): the
    constructor only stores its settings, :meth:`fit` returns ``self``, learned state ends in ``_``
    and :meth:`score` gives the mean log-likelihood of the TwoNN model (a float).

    Parameters
    ----------
    discard_fraction : float, default 0.1
        Fraction of the largest ratios ``mu = r2 / r1`` left out of the fit, in (0, 1). The tail of
        large ``mu`` is the most affected by density variations and curvature (Facco et al. use 0.1;
        DADApy's ``mu_fraction = 1 - discard_fraction``).
    duplicates : {'drop', 'jitter', 'error'}, default 'drop'
        What to do with duplicate points (zero distance to the nearest neighbour, where ``mu`` is
        undefined):

        * ``'drop'`` -- keep the first occurrence of every set of identical rows, estimate on the
          distinct points, warn (:class:`DuplicatePointsWarning`) and report the number of dropped rows
          in ``n_duplicates_``. This is the estimate for the *set* of distinct points.
        * ``'jitter'`` -- displace every copy (all but the first occurrence) by isotropic Gaussian noise
          whose expected distance to the original is ``1e-3`` times the median nearest-neighbour
          distance of the distinct points, then estimate on all rows (``mu_`` is aligned with the
          rows of ``X``). Jittered copies have very large ``mu`` and carry no information about the
          manifold; when they are more than ``discard_fraction`` of the points they bias the estimate
          downwards. Prefer ``'drop'``. Not available with ``metric='precomputed'``.
        * ``'error'`` -- raise :class:`~netphys._validation.NetphysError`.

        With non-Euclidean metrics, distinct rows can still be at distance zero (e.g. parallel
        vectors under ``'cosine'``); such points are dropped (``'drop'``, ``'jitter'``) or raise.
    metric : str or callable, default 'euclidean'
        ``'euclidean'`` uses an exact chunked search (float32 screening, float64 refinement,
        certified; see Notes); ``'precomputed'`` takes a square distance matrix as ``X``; any other
        metric accepted by :class:`sklearn.neighbors.NearestNeighbors` is passed to it.
    random_state : None, int, SeedSequence or numpy Generator, default 0
        Only used by ``duplicates='jitter'``.

    Attributes
    ----------
    dimension_ : float
        The intrinsic dimension.
    dimension_err_ : float
        Asymptotic standard deviation of ``dimension_`` under the TwoNN model with independent points
        (see Notes); about ``1.07 * dimension_ / sqrt(n_used_)`` for ``discard_fraction = 0.1``.
    mu_ : ndarray of shape (n_used_,)
        ``r2 / r1`` of every point used, in the order of ``sample_indices_``.
    sample_indices_ : ndarray of int, shape (n_used_,)
        Rows of ``X`` whose ``mu`` entered the estimate.
    n_used_ : int
        Number of points ``N`` whose ``mu`` defines the empirical CDF.
    n_fit_ : int
        Number of (smallest) ratios in the least-squares fit, ``int(N * (1 - discard_fraction))``.
    n_duplicates_ : int
        Number of rows dropped (``'drop'``) or jittered (``'jitter'``) as duplicates.
    n_features_in_ : int

    Raises
    ------
    NetphysError
        On invalid parameters, non-finite values, inputs that are not 2-D, fewer than 3 (distinct)
        points, duplicates with ``duplicates='error'``, or degenerate ratios (all ``mu == 1``).

    Notes
    -----
    For each point, ``mu = r2 / r1`` with ``r1 <= r2`` its distances to its two nearest neighbours.
    If the density is locally constant on a ``d``-dimensional manifold, ``mu`` follows a Pareto law,
    ``F(mu) = 1 - mu^(-d)``, so ``-log(1 - F(mu)) = d log(mu)``. With the ratios sorted, the empirical
    ``F_i = i / N`` and the ``n_fit`` smallest ratios, the estimate is the least-squares slope through the
    origin ``d = sum_i x_i y_i / sum_i x_i^2`` with ``x_i = log mu_(i)``, ``y_i = -log(1 - i / N)``.

    ``dimension_err_`` is the delta-method standard deviation of this least-squares slope over the
    exponential order statistics of ``log mu`` (independent points, exact Pareto law), evaluated at
    the estimate; for independent Pareto ratios it agrees with simulations within a few per cent for
    ``N >= 100``. On real point clouds the ratios of neighbouring points are dependent (mutual nearest
    neighbours share ``r1``), and the spread of the estimate over independent samples is larger: by a
    factor 1.1-1.5 on uniform 2-D and 5-D tori (N = 500-2000). Read it as a lower bound on the
    sampling noise. It excludes the bias from curvature, boundaries, density gradients or noise;
    for those, compare estimates across scales or sub-samples (:func:`id_vs_population`). It is not
    the standard error of the regression, which treats the strongly correlated CDF residuals as
    independent and is far too small.

    Euclidean neighbours: the distance matrix is never held in memory. Row blocks of the float32
    matrix product (``64 MiB`` each) give candidate neighbours, whose distances are recomputed in
    float64 from difference vectors; a worst-case bound on the float32 rounding error (Higham's
    ``gamma_D``) certifies each row, and uncertified rows are redone in float64. The result is that
    of an exact float64 search.

    References
    ----------
    .. [1] E. Facco, M. d'Errico, A. Rodriguez, A. Laio, "Estimating the intrinsic dimension of datasets
       by a minimal neighborhood information", Scientific Reports 7, 12140 (2017).
    .. [2] A. Glielmo et al., "DADApy: Distance-based analysis of data-manifolds in Python",
       Patterns 3, 100589 (2022).
    .. [3] A. Ansuini, A. Laio, J. H. Macke, D. Zoccolan, "Intrinsic dimension of data representations in
       deep neural networks", NeurIPS (2019).

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).random((2000, 3))
    >>> est = TwoNN().fit(X)
    >>> round(est.dimension_)
    3
    """

    def __init__(self, discard_fraction: float = 0.1, *, duplicates: str = "drop", metric="euclidean",
                 random_state=0):
        self.discard_fraction = discard_fraction
        self.duplicates = duplicates
        self.metric = metric
        self.random_state = random_state

    def __repr__(self, N_CHAR_MAX: int = 700) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"TwoNN({args})"

    def score(self, X, y=None) -> float:
        """Mean log-likelihood per point of the ratios ``mu`` of ``X`` under the fitted Pareto law.

        Parameters
        ----------
        X : array-like of shape (n_points, n_features)
            Points treated as in :meth:`fit` (same metric and duplicate policy).
        y : ignored

        Returns
        -------
        float
            ``mean_i [log d - (d + 1) log mu_i]`` with ``d = dimension_``: the log-density of
            ``mu ~ Pareto(d)``, ``f(mu) = d mu^(-d-1)``. For points that follow the model it is about
            ``log d - (d + 1) / d``; it is highest near the dimension of the data.

        Raises
        ------
        NetphysError
            If the estimator is not fitted, or ``X`` is invalid (as in :meth:`fit`).
        """
        if not hasattr(self, "dimension_"):
            raise NetphysError("this TwoNN is not fitted yet; call fit(X) before score")
        from sklearn.base import clone

        mu = clone(self).fit(X).mu_
        d = float(self.dimension_)
        return float(np.mean(math.log(d) - (d + 1.0) * np.log(mu)))

    def fit(self, X, y=None) -> "TwoNN":
        """Estimate the intrinsic dimension of the points in ``X``.

        Parameters
        ----------
        X : array-like of shape (n_points, n_features), or (n_points, n_points) if ``metric='precomputed'``
            One point per row (for neural data: stimuli x neurons).
        y : ignored

        Returns
        -------
        self : TwoNN
        """
        func = "TwoNN.fit"
        f = _check_fraction(self.discard_fraction, "discard_fraction", func)
        policy = check_choice(self.duplicates, "duplicates", func, DUPLICATE_POLICIES)
        metric = _check_metric(self.metric, func)
        X = _check_points(X, func)
        n = X.shape[0]

        if metric == "precomputed":
            if X.shape[0] != X.shape[1]:
                raise param_error("X", func, "a square distance matrix when metric='precomputed'",
                                  f"shape {X.shape}")
            if np.any(X < 0):
                raise param_error("X", func, "non-negative distances when metric='precomputed'",
                                  f"{int(np.sum(X < 0))} negative value(s)")
            if policy == "jitter":
                raise param_error("duplicates", func, "'drop' or 'error' when metric='precomputed'",
                                  policy, "jittering needs coordinates")
            zero = (X == 0)
            np.fill_diagonal(zero, False)
            keep = np.ones(n, dtype=bool)
            for i in range(n):
                if keep[i]:
                    keep[np.flatnonzero(zero[i, i + 1:]) + i + 1] = False
            first_mask = keep
        else:
            first = _duplicate_groups(X)
            first_mask = first == np.arange(n)

        n_dup = int(n - first_mask.sum())
        if n_dup and policy == "error":
            raise param_error("X", func, "free of duplicate points when duplicates='error'",
                              f"{n_dup} duplicate row(s)",
                              "use duplicates='drop' to estimate on the distinct points")
        n_distinct = int(first_mask.sum())
        if n_distinct < 3:
            raise param_error("X", func, "an array with at least 3 distinct points (rows)",
                              f"{n_distinct} distinct point(s) out of {n}")

        def two_nn(Z):
            if metric == "euclidean":
                return _two_nn_euclidean(Z)
            if metric == "precomputed":
                return _two_nn_precomputed(Z)
            return _two_nn_sklearn(Z, metric)

        rows = np.flatnonzero(first_mask)
        if n_dup and policy == "jitter":
            r1, _ = two_nn(X[rows])
            rng = check_random_state(self.random_state, func)
            positive = r1[r1 > 0]
            scale = float(np.median(positive)) if positive.size else 1.0
            sigma = 1e-3 * scale / math.sqrt(2.0 * X.shape[1])
            Xj = np.array(X, dtype=np.float64)
            copies = np.flatnonzero(~first_mask)
            Xj[copies] += sigma * rng.standard_normal((copies.size, X.shape[1]))
            rows = np.arange(n)
            r1, r2 = two_nn(Xj)
        elif metric == "precomputed":
            r1, r2 = two_nn(X[np.ix_(rows, rows)])
        else:
            r1, r2 = two_nn(X[rows] if n_dup else X)

        zero = ~(r1 > 0)
        n_zero = int(zero.sum())
        if n_zero:
            # only possible for pseudo-metrics (distinct rows at distance 0) or underflow
            if policy == "error":
                raise param_error("X", func, "free of points at zero distance from each other when "
                                  "duplicates='error'", f"{n_zero} point(s) at distance 0 from a neighbour")
            rows, r1, r2 = rows[~zero], r1[~zero], r2[~zero]
            n_dup += n_zero
            if rows.size < 3:
                raise param_error("X", func, "an array with at least 3 points at non-zero distance from "
                                  "their neighbours", f"{rows.size} such point(s) out of {n}")
        if n_dup:
            action = "jittered" if policy == "jitter" else "dropped"
            msg = (f"TwoNN: {n_dup} of {n} points are duplicates (zero distance to a neighbour) and were "
                   f"{action}; the dimension is estimated on {rows.size} points")
            warnings.warn(msg, DuplicatePointsWarning, stacklevel=2)
            log.info(msg)

        mu = r2 / r1
        d, d_sd, n_fit = _twonn_fit(mu, f)
        self.dimension_ = d
        self.dimension_err_ = d_sd
        self.mu_ = mu
        self.sample_indices_ = rows
        self.n_used_ = int(mu.size)
        self.n_fit_ = int(n_fit)
        self.n_duplicates_ = int(n_dup)
        self.n_features_in_ = int(X.shape[1])
        log.debug("TwoNN: d = %.4g +- %.2g from %d points (%d fitted)", d, d_sd, mu.size, n_fit)
        return self


# ------------------------------------------------------------------------- scaling with population
def _seed_sequence(random_state, func: str) -> np.random.SeedSequence:
    """A SeedSequence from ``random_state`` (ints and SeedSequences map deterministically)."""
    if isinstance(random_state, np.random.SeedSequence):
        return random_state
    rng = check_random_state(random_state, func)  # validates
    if isinstance(random_state, numbers.Integral):
        return np.random.SeedSequence(int(random_state))
    return np.random.SeedSequence(int(rng.integers(2**63)))


def _check_estimator(estimator, func: str) -> TwoNN:
    if estimator is None:
        return TwoNN()
    if not isinstance(estimator, TwoNN):
        raise param_error("estimator", func, "None or a TwoNN instance", estimator)
    return estimator


def id_vs_population(X, n_units, *, n_repeats: int = 20, estimator: TwoNN | None = None,
                     random_state=0):
    """Intrinsic dimension of random sub-populations of units, as a function of their number.

    For each ``n`` in ``n_units``, ``n_repeats`` random subsets of ``n`` columns (units) of ``X`` are
    drawn without replacement and the TwoNN dimension of the points (rows, e.g. stimuli) in that
    ``n``-dimensional space is estimated.

    Parameters
    ----------
    X : array-like of shape (n_points, n_total_units)
        Population vectors: one row per stimulus, one column per unit (an ``xarray.DataArray`` with
        dims ``(stimulus, neuron)`` works as is).
    n_units : sequence of int
        Sub-population sizes, each in ``[1, n_total_units]``; sorted and de-duplicated.
    n_repeats : int, default 20
        Random subsets per size. When fewer distinct subsets exist (``comb(n_total, n) <= n_repeats``,
        always the case for ``n = n_total``), all of them are used once instead.
    estimator : TwoNN, optional
        Settings of the estimator (``discard_fraction``, ``duplicates``, ``metric``); default
        ``TwoNN()``. Its ``random_state`` is replaced by seeds spawned from ``random_state``.
    random_state : None, int, SeedSequence or numpy Generator, default 0
        Seeds the choice of subsets (one spawned stream per size, so adding a size does not change
        the others).

    Returns
    -------
    xarray.Dataset
        Dimensions ``n_units`` and ``realisation``. Variables: ``id`` (n_units, realisation; NaN where
        fewer subsets were drawn or an estimate failed), ``id_mean``, ``id_sd`` (sample SD over subsets,
        ddof=1; 0 where a single subset exists), ``n_subsets``, ``n_failed`` (subsets whose estimate
        failed, e.g. too few distinct points), ``n_duplicates`` (n_units, realisation). ``attrs`` hold
        the settings and ``n_total_units``, ``n_points``. Use ``.to_dataframe()`` for a tidy table.

    Raises
    ------
    NetphysError
        On invalid input (see :class:`TwoNN`) or sizes outside ``[1, n_total_units]``.

    Notes
    -----
    Duplicate warnings (frequent for spike counts of few units) are collected and reported once.
    Sub-populations of the same size share units, so the SD across subsets measures the
    variability due to the choice of units for a fixed recorded population, not the uncertainty
    about the whole population.

    References
    ----------
    .. [1] P. Muratore, S. Tafazoli, E. Piasini, A. Laio, D. Zoccolan, "Prune and distill: similar
       reformatting of image information along rat visual cortex and deep neural networks",
       NeurIPS (2022), Fig. 2A.
    """
    import xarray as xr

    from .. import __version__

    func = "id_vs_population"
    est = _check_estimator(estimator, func)
    A = _check_points(X, func)
    n_points, n_total = A.shape
    n_repeats = check_int(n_repeats, "n_repeats", func, min_value=1)
    sizes = np.atleast_1d(np.asarray(n_units))
    if sizes.size == 0 or sizes.dtype.kind not in "iu" or sizes.ndim != 1:
        raise param_error("n_units", func, "a non-empty sequence of ints", n_units)
    bad = sizes[(sizes < 1) | (sizes > n_total)]
    if bad.size:
        raise param_error("n_units", func, f"a sequence of ints in [1, {n_total}] (the number of units, "
                          "columns of X)", n_units)
    sizes = np.unique(sizes.astype(int))

    ss = _seed_sequence(random_state, func)
    streams = ss.spawn(sizes.size)

    ids = np.full((sizes.size, n_repeats), np.nan)
    dups = np.zeros((sizes.size, n_repeats), dtype=int)
    n_subsets = np.zeros(sizes.size, dtype=int)
    n_failed = np.zeros(sizes.size, dtype=int)
    total_dup_warnings = 0
    first_failure = None
    for a, (n, stream) in enumerate(zip(sizes, streams)):
        rng = np.random.default_rng(stream)
        if math.comb(n_total, int(n)) <= n_repeats:
            subsets = [np.array(c) for c in combinations(range(n_total), int(n))]
        else:
            subsets = [np.sort(rng.choice(n_total, size=int(n), replace=False)) for _ in range(n_repeats)]
        n_subsets[a] = len(subsets)
        for r, cols in enumerate(subsets):
            e = TwoNN(discard_fraction=est.discard_fraction, duplicates=est.duplicates,
                      metric=est.metric, random_state=rng)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", DuplicatePointsWarning)
                try:
                    e.fit(A[:, cols])
                except NetphysError as exc:
                    n_failed[a] += 1
                    if first_failure is None:
                        first_failure = f"n_units={int(n)}: {exc}"
                    continue
            for w in caught:
                if not issubclass(w.category, DuplicatePointsWarning):
                    warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
            total_dup_warnings += sum(issubclass(w.category, DuplicatePointsWarning) for w in caught)
            ids[a, r] = e.dimension_
            dups[a, r] = e.n_duplicates_

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(ids, axis=1)
        counts = np.sum(np.isfinite(ids), axis=1)
        sd = np.where(counts > 1, np.nanstd(ids, axis=1, ddof=1) if ids.shape[1] > 1 else 0.0, 0.0)
        sd = np.where(counts == 0, np.nan, sd)
    if total_dup_warnings:
        warnings.warn(f"id_vs_population: {total_dup_warnings} sub-population estimate(s) met duplicate "
                      f"points (policy {est.duplicates!r}); see the 'n_duplicates' variable",
                      DuplicatePointsWarning, stacklevel=2)
    if n_failed.any():
        warnings.warn(f"id_vs_population: {int(n_failed.sum())} sub-population estimate(s) failed and are "
                      f"NaN; first: {first_failure}", RuntimeWarning, stacklevel=2)

    coords = {"n_units": sizes, "realisation": np.arange(n_repeats)}
    ds = xr.Dataset(
        {
            "id": (("n_units", "realisation"), ids),
            "id_mean": (("n_units",), mean),
            "id_sd": (("n_units",), sd),
            "n_subsets": (("n_units",), n_subsets),
            "n_failed": (("n_units",), n_failed),
            "n_duplicates": (("n_units", "realisation"), dups),
        },
        coords=coords,
        attrs={
            "estimator": "TwoNN",
            "discard_fraction": float(est.discard_fraction),
            "duplicates": str(est.duplicates),
            "metric": str(est.metric),
            "n_total_units": int(n_total),
            "n_points": int(n_points),
            "n_repeats": int(n_repeats),
            "random_state": repr(random_state),
            "netphys_version": __version__,
        },
    )
    return ds


# ------------------------------------------------------------------------------------ power law
def power_law(n, d_inf, a, b):
    """Saturating power law ``d_inf - a * n ** (-b)``."""
    return d_inf - a * np.power(np.asarray(n, dtype=np.float64), -b)


@dataclass(frozen=True)
class PowerLawFit:
    """Result of :func:`fit_power_law`; ``ID(n) = d_inf - a * n^(-b)``.

    Attributes
    ----------
    d_inf, a, b : float
        Fitted parameters; ``d_inf`` is the asymptote (the ID of an infinitely large population).
    d_inf_err, a_err, b_err : float
        Standard deviations from the covariance of the least-squares fit.
    cov : ndarray of shape (3, 3)
        Covariance of ``(d_inf, a, b)`` (scaled by the residual variance; see :func:`fit_power_law`).
    n, id_mean : ndarray
        The data fitted.
    id_fit : ndarray
        The fitted curve at ``n``.
    d_inf_boot : ndarray or None
        Asymptotes of the bootstrap refits (when requested).
    d_inf_boot_err : float or None
        SD of ``d_inf_boot``.
    weighted : bool
        Whether ``id_sd`` weighted the fit.
    at_bound : bool
        The exponent ``b`` ended at a bound of its range ``[1e-3, 10]``. At the lower bound the data are
        consistent with unbounded (about logarithmic) growth and ``d_inf`` and its errors are not
        meaningful; report no asymptote.
    """

    d_inf: float
    a: float
    b: float
    d_inf_err: float
    a_err: float
    b_err: float
    cov: np.ndarray = field(repr=False)
    n: np.ndarray = field(repr=False)
    id_mean: np.ndarray = field(repr=False)
    id_fit: np.ndarray = field(repr=False)
    d_inf_boot: np.ndarray | None = field(default=None, repr=False)
    d_inf_boot_err: float | None = None
    weighted: bool = False
    at_bound: bool = False

    def predict(self, n) -> np.ndarray:
        """Evaluate the fitted curve at population sizes ``n``."""
        return power_law(n, self.d_inf, self.a, self.b)

    def curve(self, n_max: float | None = None, num: int = 200) -> tuple[np.ndarray, np.ndarray]:
        """The fitted curve on a log-spaced grid from ``min(n)`` to ``n_max`` (default ``max(n)``)."""
        hi = float(self.n.max() if n_max is None else n_max)
        grid = np.geomspace(float(self.n.min()), hi, int(num))
        return grid, self.predict(grid)


_B_BOUNDS = (1e-3, 10.0)


def _fit_once(n, y, sigma):
    """Profile the exponent on a grid (linear least squares in d_inf, a), then refine with curve_fit."""
    from scipy.optimize import curve_fit

    w = 1.0 / sigma if sigma is not None else np.ones_like(y)
    best = None
    for b in np.geomspace(0.01, 5.0, 60):
        M = np.column_stack([np.ones_like(n), -np.power(n, -b)])
        coef, *_ = np.linalg.lstsq(M * w[:, None], y * w, rcond=None)
        sse = float(np.sum(((M @ coef - y) * w) ** 2))
        if best is None or sse < best[0]:
            best = (sse, coef[0], coef[1], b)
    _, d0, a0, b0 = best
    popt, pcov = curve_fit(power_law, n, y, p0=(d0, a0, b0), sigma=sigma, absolute_sigma=False,
                           bounds=([-np.inf, -np.inf, _B_BOUNDS[0]], [np.inf, np.inf, _B_BOUNDS[1]]),
                           max_nfev=10000)
    return popt, pcov


def fit_power_law(n, id_mean, id_sd=None, *, id_samples=None, n_boot: int = 0,
                  random_state=0) -> PowerLawFit:
    """Fit ``ID(n) = d_inf - a * n^(-b)`` to the ID of sub-populations of ``n`` units.

    Parameters
    ----------
    n : array-like of shape (k,)
        Sub-population sizes (> 0), ``k >= 4``.
    id_mean : array-like of shape (k,)
        Mean ID at each size (e.g. ``ds.id_mean`` from :func:`id_vs_population`).
    id_sd : array-like of shape (k,), optional
        SD of the ID at each size; used as relative weights (``sigma`` of ``curve_fit`` with
        ``absolute_sigma=False``). Zero SDs (a single subset, e.g. the full population) are replaced by
        the smallest positive SD. Default: unweighted.
    id_samples : array-like of shape (k, n_realisations), optional
        The individual estimates (``ds.id``; NaN allowed); needed for the bootstrap.
    n_boot : int, default 0
        Bootstrap refits: at each size, resample the sub-population estimates with replacement,
        average, refit; ``d_inf_boot_err`` is the SD of the refitted asymptotes.
    random_state : None, int, SeedSequence or numpy Generator, default 0
        Seeds the bootstrap.

    Returns
    -------
    PowerLawFit

    Raises
    ------
    NetphysError
        On fewer than 4 sizes, non-positive sizes, non-finite values, mismatched lengths, or
        ``n_boot > 0`` without ``id_samples``.

    Notes
    -----
    Form. ``d_inf - a n^(-b)`` with ``b > 0`` (bounded to ``[1e-3, 10]``) is the simplest law that
    (i) saturates, so it has a finite asymptote ``d_inf`` at ``n -> inf``, (ii) lets the approach be
    from below (``a > 0``, the usual case: small populations under-resolve the manifold) or from above
    (``a < 0``), and (iii) describes finite-size corrections that decay as a power of the number of
    coordinates, as in the power-law fits of Muratore et al. (2022, Fig. 2). Three parameters need
    ``k >= 4`` sizes for a covariance. The exponent is first profiled on a grid (``d_inf`` and ``a`` are
    then linear) and the fit refined with :func:`scipy.optimize.curve_fit` (trust-region, bounds).

    Uncertainty. ``d_inf_err`` is ``sqrt(cov[0, 0])`` with the covariance scaled by the residual
    variance (``absolute_sigma=False``), because sub-population SDs are not independent absolute errors
    (subsets of different sizes share units). With few sizes the residual variance rests on few degrees
    of freedom and this error is optimistic: in simulations with 8 sizes and 30 independent
    estimates per size, ``|d_inf - truth| / d_inf_err`` had an rms of 1.4 (90% of the nominal 95%
    intervals covered the truth), against 1.0 (94%) for the bootstrap over sub-population repeats,
    which is preferable when ``id_samples`` are available. Extrapolated asymptotes are fragile when
    ``b`` is small or the curve is far from saturation. When ``b`` ends at a bound (a curve that keeps
    growing, e.g. macaque V4 sessions of Cowley et al. with 1200 stimuli), a warning is issued and
    ``at_bound`` is set: do not report ``d_inf`` then.

    References
    ----------
    .. [1] P. Muratore et al., "Prune and distill", NeurIPS (2022), Fig. 2B.
    """
    func = "fit_power_law"
    x = np.asarray(n, dtype=np.float64).ravel()
    y = np.asarray(id_mean, dtype=np.float64).ravel()
    if x.size != y.size:
        raise param_error("id_mean", func, f"an array of the same length as 'n' ({x.size})",
                          f"length {y.size}")
    if x.size < 4:
        raise param_error("n", func, "at least 4 population sizes to fit 3 parameters", f"{x.size} size(s)")
    check_finite(x, "n", func)
    check_finite(y, "id_mean", func, "drop sizes whose estimate failed")
    if np.any(x <= 0):
        raise param_error("n", func, "positive population sizes", x.tolist())
    sigma = None
    if id_sd is not None:
        s = np.asarray(id_sd, dtype=np.float64).ravel()
        if s.size != x.size:
            raise param_error("id_sd", func, f"an array of the same length as 'n' ({x.size})",
                              f"length {s.size}")
        check_finite(s, "id_sd", func)
        if np.any(s < 0):
            raise param_error("id_sd", func, "non-negative standard deviations", s.tolist())
        if np.any(s > 0):
            sigma = np.where(s > 0, s, s[s > 0].min())
    n_boot = check_int(n_boot, "n_boot", func, min_value=0)
    samples = None
    if id_samples is not None:
        samples = np.asarray(id_samples, dtype=np.float64)
        if samples.ndim != 2 or samples.shape[0] != x.size:
            raise param_error("id_samples", func, f"a 2-D array with {x.size} rows (one per size)",
                              f"shape {samples.shape}")
        if np.any(np.sum(np.isfinite(samples), axis=1) == 0):
            raise param_error("id_samples", func, "at least one finite estimate per size",
                              "a row of NaN")
    if n_boot and samples is None:
        raise param_error("id_samples", func, "given when n_boot > 0", None,
                          "pass ds.id from id_vs_population")

    order = np.argsort(x)
    x, y = x[order], y[order]
    if sigma is not None:
        sigma = sigma[order]
    if samples is not None:
        samples = samples[order]

    popt, pcov = _fit_once(x, y, sigma)
    at_bound = bool(np.isclose(popt[2], _B_BOUNDS[0], rtol=0.01) or np.isclose(popt[2], _B_BOUNDS[1], rtol=0.01))
    if at_bound:
        warnings.warn(f"fit_power_law: the exponent b = {popt[2]:.3g} is at its bound {_B_BOUNDS}; the "
                      "asymptote is not constrained by the data (PowerLawFit.at_bound is True)",
                      RuntimeWarning, stacklevel=2)
    perr = np.sqrt(np.clip(np.diag(pcov), 0, np.inf))

    boot = None
    boot_err = None
    if n_boot:
        rng = check_random_state(random_state, func)
        rows = [r[np.isfinite(r)] for r in samples]
        vals = []
        for _ in range(n_boot):
            yb = np.array([rng.choice(r, size=r.size, replace=True).mean() for r in rows])
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    pb, _ = _fit_once(x, yb, sigma)
                vals.append(pb[0])
            except (RuntimeError, ValueError):  # pragma: no cover - rare non-convergence
                continue
        boot = np.asarray(vals)
        boot_err = float(np.std(boot, ddof=1)) if boot.size > 1 else float("nan")

    return PowerLawFit(d_inf=float(popt[0]), a=float(popt[1]), b=float(popt[2]),
                       d_inf_err=float(perr[0]), a_err=float(perr[1]), b_err=float(perr[2]),
                       cov=pcov, n=x, id_mean=y, id_fit=power_law(x, *popt),
                       d_inf_boot=boot, d_inf_boot_err=boot_err, weighted=sigma is not None,
                       at_bound=at_bound)
