"""RAR pruning of a neuron's ridge encoding model by dual-form removal of per-filter Gram blocks (D2).

RAR ("regression accuracy reduction", [1]_ Sec. 4.5-4.6) is the CAR greedy pruning engine with the
accuracy replaced by the held-out Pearson correlation of a regression (encoding) model of a neuron:

    RAR(i, L) = r(N) - r(N without filter i of layer L),

and at each step the filter with the smallest RAR (the one whose removal keeps r highest) is removed.
The encoding model reads the features of a layer ``L``, ``X (n, C, H, W)``; filter ``c`` owns the block
``X_c = X[:, c].reshape(n, H*W)``, and removing the filter removes its block. With a ridge regression
every candidate removal needs a refit; here each refit costs one ``(n_fit, n_fit)`` Cholesky solve on
precomputed per-filter Gram blocks instead of a fit from the raw features.

* :class:`DualRidgeRemoval` -- the dual-form ridge with removable filters: candidate scores, current
  state, predictions on a held-out split;
* :func:`rar_scores` -- functional form: RAR values of candidate filters for one removal state;
* :func:`rar_path` -- the greedy RAR loop on three disjoint splits (fit / selection / report), an
  :class:`xarray.Dataset` over ``step``;
* :func:`choose_lambda` -- the ridge penalty by K-fold CV on the fit split (scikit-learn ``RidgeCV``);
* :func:`three_way_split` -- disjoint fit / selection / test stimulus indices;
* :func:`bench_rar` -- one RAR iteration, dual form vs scikit-learn ``Ridge`` refit per candidate.

References
----------
.. [1] R. Abbasi-Asl, "Structural compression of convolutional neural networks with applications in
   interpretability" (PhD thesis, UC Berkeley), Ch. 4: RAR compression, Algorithm 2, Fig. 4.4.
"""
from __future__ import annotations

import math
import numbers
import time
import warnings

import numpy as np
import xarray as xr

from .._random import check_random_state
from .._validation import NetphysWarning, check_choice, check_int, param_error

__all__ = ["DualRidgeRemoval", "bench_rar", "choose_lambda", "rar_path", "rar_scores", "three_way_split"]

#: default bound on the stored per-filter Gram blocks G (C, n_fit, n_fit) and S (C, n_sel, n_fit)
DEFAULT_MAX_GRAM_BYTES = 1 << 30
#: default bound on the temporaries of one batch of candidate solves
DEFAULT_CHUNK_BYTES = 1 << 25


# ---------------------------------------------------------------------------------------------- inputs
def _torch():
    import torch

    return torch


def _as_blocks(X, param: str, func: str, *, n_filters: int | None = None, widths: tuple | None = None):
    """``X`` as a float64 tensor of per-filter blocks ``(C, n, p_max)`` (zero-padded) and the widths.

    ``X`` is an array / tensor ``(n, C, ...)`` (filter ``c`` owns ``X[:, c].reshape(n, -1)``; a 2-D
    ``(n, C)`` array has one feature per filter) or a list of ``C`` blocks ``(n, ...)``.
    """
    torch = _torch()
    fix = "pass the layer's features as (n_stimuli, n_filters, ...) or a list of per-filter blocks"
    if isinstance(X, (list, tuple)):
        if len(X) == 0:
            raise param_error(param, func, "a non-empty list of per-filter blocks", "an empty list", fix)
        mats = []
        for c, b in enumerate(X):
            if isinstance(b, torch.Tensor):
                b = b.detach().cpu().numpy()
            try:
                b = np.asarray(b, dtype=np.float64)
            except (TypeError, ValueError):
                raise param_error(param, func, "a list of numeric blocks", f"block {c} of type "
                                  f"{type(X[c]).__name__}") from None
            if b.ndim == 1:
                b = b[:, None]
            if b.ndim < 1 or b.shape[0] == 0 or b.size == 0:
                raise param_error(param, func, "a list of non-empty blocks (n_stimuli, ...)",
                                  f"block {c} of shape {b.shape}")
            mats.append(b.reshape(b.shape[0], -1))
        ns = {m.shape[0] for m in mats}
        if len(ns) != 1:
            raise param_error(param, func, "blocks with the same number of stimuli (rows)",
                              f"blocks with {sorted(ns)} rows")
        n = mats[0].shape[0]
        w = tuple(m.shape[1] for m in mats)
        arr = np.zeros((len(mats), n, max(w)))
        for c, m in enumerate(mats):
            arr[c, :, :m.shape[1]] = m
    else:
        if isinstance(X, torch.Tensor):
            X = X.detach().cpu().numpy()
        if isinstance(X, xr.DataArray) and "stimulus" in X.dims:
            X = X.transpose("stimulus", ...)
        try:
            a = np.asarray(X, dtype=np.float64)
        except (TypeError, ValueError):
            raise param_error(param, func, "a numeric array (n_stimuli, n_filters, ...)",
                              type(X).__name__, fix) from None
        if a.ndim < 2 or a.size == 0:
            raise param_error(param, func, "a non-empty array (n_stimuli, n_filters, ...)",
                              f"an array of shape {a.shape}", fix)
        n, C = a.shape[:2]
        arr = np.ascontiguousarray(a.reshape(n, C, -1).transpose(1, 0, 2))
        w = (arr.shape[2],) * C
    if not np.all(np.isfinite(arr)):
        n_bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
        raise param_error(param, func, "finite (no NaN or inf)",
                          f"{n_bad} non-finite value(s) in features of {arr.shape[0]} filters",
                          "drop or impute the stimuli with non-finite features")
    if n_filters is not None and (arr.shape[0] != n_filters or w != widths):
        raise param_error(param, func, f"features with the fit split's filters ({n_filters} filters of "
                          f"{widths[0] if len(set(widths)) == 1 else 'the same'} features each)",
                          f"{arr.shape[0]} filters of widths {sorted(set(w))}",
                          "use the same layer (and the same block structure) on every split")
    return torch.from_numpy(arr), w


def _as_targets(Y, param: str, func: str, n: int, n_neurons: int | None = None):
    """``Y`` as a float64 ``(n, m)`` array and whether it was 1-D; finite and non-constant columns."""
    if isinstance(Y, xr.DataArray) and Y.ndim == 2 and "stimulus" in Y.dims:
        Y = Y.transpose("stimulus", ...)
    try:
        y = np.asarray(Y.detach().cpu().numpy() if hasattr(Y, "detach") else Y, dtype=np.float64)
    except (TypeError, ValueError):
        raise param_error(param, func, "a numeric array (n_stimuli,) or (n_stimuli, n_neurons)",
                          type(Y).__name__) from None
    one_d = y.ndim == 1
    if one_d:
        y = y[:, None]
    if y.ndim != 2 or y.shape[1] == 0:
        raise param_error(param, func, "an array (n_stimuli,) or (n_stimuli, n_neurons)",
                          f"an array of shape {np.shape(Y)}")
    if y.shape[0] != n:
        raise param_error(param, func, f"an array with one row per stimulus of the features ({n} rows)",
                          f"{y.shape[0]} rows", "pass the responses of the same stimuli, in the same order")
    if n_neurons is not None and y.shape[1] != n_neurons:
        raise param_error(param, func, f"responses of the fit split's {n_neurons} neuron(s)",
                          f"{y.shape[1]} column(s)")
    if not np.all(np.isfinite(y)):
        n_bad = int(y.size - np.count_nonzero(np.isfinite(y)))
        raise param_error(param, func, "finite (no NaN or inf)",
                          f"{n_bad} non-finite value(s) in an array of shape {np.shape(Y)}",
                          "drop the stimuli without a response, on the features too")
    const = np.flatnonzero(np.ptp(y, axis=0) == 0)
    if const.size:
        raise param_error(param, func, "non-constant responses (a correlation needs variance)",
                          f"constant response(s) for neuron(s) {const.tolist()}",
                          "drop the neurons that do not respond on this split")
    return y, one_d


def _check_lam(lam, func: str) -> float:
    ok = isinstance(lam, numbers.Real) and not isinstance(lam, bool) and math.isfinite(lam) and lam > 0
    if not ok:
        raise param_error("lam", func, "a finite float > 0", lam,
                          "choose it with choose_lambda(X_fit, Y_fit) (K-fold CV on the fit split)")
    return float(lam)


def _pearson_cols(yhat, ys_c):
    """Pearson r along dim -2 of ``yhat (..., n, m)`` with centred targets ``ys_c (n, m)``; NaN if flat."""
    torch = _torch()
    yc = yhat - yhat.mean(dim=-2, keepdim=True)
    num = (yc * ys_c).sum(dim=-2)
    ss = (yc * yc).sum(dim=-2)
    den = torch.sqrt(ss * (ys_c * ys_c).sum(dim=-2))
    r = num / den
    flat = ss <= (1e-28 * (yhat * yhat).sum(dim=-2)).clamp_min(1e-300)
    return torch.where(flat, torch.full_like(r, float("nan")), r)


def _chunks(seq, size):
    for i in range(0, len(seq), max(1, size)):
        yield seq[i:i + size]


# ------------------------------------------------------------------------------------- the dual model
class DualRidgeRemoval:
    """Ridge regression in dual form whose input filters can be removed at the cost of one solve.

    Parameters
    ----------
    lam : float
        Ridge penalty ``lambda > 0`` (scikit-learn's ``alpha``), fixed while filters are removed; see
        :func:`choose_lambda`.
    fit_intercept : bool, default True
        Centre the features and responses on the fit split (an unpenalised intercept, as
        ``sklearn.linear_model.Ridge``).
    max_gram_bytes : int, default 2**30
        Store the per-filter Gram blocks ``G`` and ``S`` (see Notes) when they take at most this many
        bytes; otherwise each candidate's blocks are recomputed from its features, chunk by chunk.
    chunk_bytes : int, default 2**25
        Bound on the temporaries of one batch of candidate solves (sets the batch size).

    Attributes
    ----------
    n_filters_, n_neurons_ : int
    removed_ : tuple of int
        Filters removed from the current state (by :meth:`remove`), sorted.
    kept_ : tuple of int
    gram_stored_ : bool
        Whether ``G`` and ``S`` are stored (else recomputed per chunk of candidates).
    memory_bytes_ : int
        Bytes held by the fitted model (feature blocks and, if stored, Gram blocks).

    Notes
    -----
    Let the fit split's features of filter ``c`` be the block :math:`X_c \\in R^{n \\times p_c}`,
    centred on the fit split with column means :math:`\\mu_c` (when ``fit_intercept``), and
    :math:`Y_c = Y - \\bar y` the centred responses of ``m`` neurons. For a kept set :math:`F`, ridge
    regression :math:`\\min_\\beta \\|Y_c - X_F \\beta\\|^2 + \\lambda \\|\\beta\\|^2` has the dual solution

    .. math:: \\beta = X_F^T A, \\qquad A = (K_F + \\lambda I_n)^{-1} Y_c, \\qquad
              K_F = \\sum_{c \\in F} G_c, \\quad G_c = X_c X_c^T,

    and the predictions on the selection split (features :math:`Z_c`, centred with the *fit* means)

    .. math:: \\hat Y = S_F A + \\bar y, \\qquad S_F = \\sum_{c \\in F} S_c, \\quad S_c = Z_c X_c^T.

    The Gram blocks :math:`G_c` (``(C, n_fit, n_fit)``) and cross blocks :math:`S_c`
    (``(C, n_sel, n_fit)``) are computed once; removing the set :math:`R` gives
    :math:`K' = K - \\sum_{c \\in R} G_c` and :math:`S' = S - \\sum_{c \\in R} S_c`, so a candidate costs an
    ``(n_fit, n_fit)`` Cholesky factorisation (float64, batched over candidates), a triangular solve
    with the ``m`` neurons as a matrix right-hand side, and an ``(n_sel, n_fit, m)`` product -- no refit
    from the raw ``n x sum p_c`` features. This is exactly ``Ridge(alpha=lam)`` on the kept columns.
    The score is the Pearson r between :math:`\\hat Y` and the selection responses, per neuron (the
    intercept :math:`\\bar y` does not change r). A removal that leaves no filter has a constant
    prediction: its r is NaN.

    Memory: ``8 C n_fit (n_fit + n_sel)`` bytes for the stored blocks (128 filters, 300 + 300 stimuli:
    184 MB), plus the float64 features ``8 n p`` per split. Above ``max_gram_bytes`` the blocks of
    each chunk of candidates are recomputed (``n_fit^2 p_c`` flops each). The current state's ``K``
    is re-summed from the kept blocks on each :meth:`remove` (no drift from repeated subtraction);
    a candidate's ``K_cur - G_c`` loses about ``eps ||K_cur||`` to cancellation, negligible unless
    ``lam`` is below ``~1e-10 ||K||``.
    """

    def __init__(self, lam, *, fit_intercept: bool = True, max_gram_bytes: int = DEFAULT_MAX_GRAM_BYTES,
                 chunk_bytes: int = DEFAULT_CHUNK_BYTES):
        self.lam = _check_lam(lam, "DualRidgeRemoval")
        self.fit_intercept = bool(fit_intercept)
        self.max_gram_bytes = check_int(max_gram_bytes, "max_gram_bytes", "DualRidgeRemoval", min_value=0)
        self.chunk_bytes = check_int(chunk_bytes, "chunk_bytes", "DualRidgeRemoval", min_value=1)

    # ------------------------------------------------------------------ fitting
    def fit(self, X_fit, Y_fit, X_sel, Y_sel):
        """Precompute the per-filter Gram blocks of the fit and selection splits.

        Parameters
        ----------
        X_fit : array or tensor (n_fit, C, ...), or list of C blocks (n_fit, ...)
            The layer's features on the fit split; filter ``c`` owns ``X_fit[:, c]``.
        Y_fit : array (n_fit,) or (n_fit, n_neurons)
            Responses on the fit split (finite, non-constant).
        X_sel, Y_sel :
            The same on the selection split (used by :meth:`scores` and :meth:`score_current`).

        Returns
        -------
        self
        """
        return self._fit(X_fit, Y_fit, X_sel, Y_sel, "DualRidgeRemoval.fit")

    def _fit(self, X_fit, Y_fit, X_sel, Y_sel, func):
        torch = _torch()
        Xf, w = _as_blocks(X_fit, "X_fit", func)
        C, n, p = Xf.shape
        if n < 2:
            raise param_error("X_fit", func, "features of >= 2 stimuli", f"{n} stimulus")
        Y, one_d = _as_targets(Y_fit, "Y_fit", func, n)
        Xs, _ = _as_blocks(X_sel, "X_sel", func, n_filters=C, widths=w)
        n_s = Xs.shape[1]
        if n_s < 2:
            raise param_error("X_sel", func, "features of >= 2 stimuli", f"{n_s} stimulus")
        Ys, _ = _as_targets(Y_sel, "Y_sel", func, n_s, Y.shape[1])
        if self.fit_intercept:
            self._mu = Xf.mean(dim=1, keepdim=True)  # (C, 1, p)
            self._ybar = torch.from_numpy(Y.mean(axis=0))
        else:
            self._mu = torch.zeros(C, 1, p, dtype=torch.float64)
            self._ybar = torch.zeros(Y.shape[1], dtype=torch.float64)
        self._Xf = Xf - self._mu
        self._Xs = Xs - self._mu
        self._Yc = torch.from_numpy(Y) - self._ybar
        Ys_t = torch.from_numpy(Ys)
        self._Ys_c = Ys_t - Ys_t.mean(dim=0, keepdim=True)
        self._widths = w
        self._one_d = one_d
        self.n_filters_, self.n_neurons_ = C, Y.shape[1]
        self._n, self._n_s = n, n_s
        gram_bytes = 8 * C * n * (n + n_s)
        self.gram_stored_ = gram_bytes <= self.max_gram_bytes
        if self.gram_stored_:
            self._G = torch.empty(C, n, n, dtype=torch.float64)
            self._S = torch.empty(C, n_s, n, dtype=torch.float64)
            per = max(1, self.chunk_bytes // max(1, 8 * n * (n + n_s)))
            for idx in _chunks(list(range(C)), per):
                sl = slice(idx[0], idx[-1] + 1)
                torch.bmm(self._Xf[sl], self._Xf[sl].transpose(1, 2), out=self._G[sl])
                torch.bmm(self._Xs[sl], self._Xf[sl].transpose(1, 2), out=self._S[sl])
        else:
            self._G = self._S = None
        self.memory_bytes_ = 8 * (self._Xf.numel() + self._Xs.numel()) + (gram_bytes if self.gram_stored_ else 0)
        self._K_full, self._S_full = self._sums(list(range(C)))
        self.removed_ = ()
        self.kept_ = tuple(range(C))
        self._K_cur, self._S_cur = self._K_full, self._S_full
        return self

    def _check_fitted(self, func):
        if not hasattr(self, "_Xf"):
            raise param_error("self", func, "a fitted DualRidgeRemoval", "an unfitted one",
                              "call .fit(X_fit, Y_fit, X_sel, Y_sel) first")

    def _workspace(self, b):
        """Reusable buffers for a batch of ``b`` candidates (allocation once: no page faults per call)."""
        torch = _torch()
        ws = getattr(self, "_ws", None)
        if ws is None or ws["M"].shape[0] < b:
            f64 = torch.float64
            ws = self._ws = {"M": torch.empty(b, self._n, self._n, dtype=f64),
                             "L": torch.empty(b, self._n, self._n, dtype=f64),
                             "S": torch.empty(b, self._n_s, self._n, dtype=f64),
                             "info": torch.empty(b, dtype=torch.int32)}
        return {k: v[:b] for k, v in ws.items()}

    def _blocks(self, idx, G_out=None, S_out=None):
        """``(G[idx], S[idx])`` for a list of filters: stored, or computed from the feature blocks."""
        torch = _torch()
        t = torch.as_tensor(idx, dtype=torch.long)
        b = len(idx)
        if G_out is None:
            G_out = torch.empty(b, self._n, self._n, dtype=torch.float64)
            S_out = torch.empty(b, self._n_s, self._n, dtype=torch.float64)
        if self.gram_stored_:
            torch.index_select(self._G, 0, t, out=G_out)
            torch.index_select(self._S, 0, t, out=S_out)
        else:
            Xf = self._Xf.index_select(0, t)
            torch.bmm(Xf, Xf.transpose(1, 2), out=G_out)
            torch.bmm(self._Xs.index_select(0, t), Xf.transpose(1, 2), out=S_out)
        return G_out, S_out

    def _sums(self, idx):
        """``(sum_{c in idx} G_c, sum_{c in idx} S_c)``: sums of contiguous runs, or chunked."""
        torch = _torch()
        K = torch.zeros(self._n, self._n, dtype=torch.float64)
        S = torch.zeros(self._n_s, self._n, dtype=torch.float64)
        idx = sorted(idx)
        if self.gram_stored_:
            start = 0
            for i in range(1, len(idx) + 1):
                if i == len(idx) or idx[i] != idx[i - 1] + 1:
                    sl = slice(idx[start], idx[i - 1] + 1)
                    K += self._G[sl].sum(0)
                    S += self._S[sl].sum(0)
                    start = i
            return K, S
        for ch in _chunks(idx, self._batch_size()):
            G_ch, S_ch = self._blocks(ch)
            K += G_ch.sum(0)
            S += S_ch.sum(0)
        return K, S

    def _batch_size(self):
        per = 8 * self._n * (3 * self._n + 2 * self._n_s + 2 * self.n_neurons_)
        return max(1, int(self.chunk_bytes // per))

    def _check_filters(self, filters, param, func, *, allow_empty=True):
        try:
            vals = [int(f) for f in filters]
            ok = all(isinstance(f, numbers.Integral) and not isinstance(f, bool) for f in filters)
        except (TypeError, ValueError):
            vals, ok = [], False
        if not ok or any(v < 0 or v >= self.n_filters_ for v in vals):
            raise param_error(param, func, f"filter indices in [0, {self.n_filters_ - 1}]", filters)
        if not allow_empty and not vals:
            raise param_error(param, func, "a non-empty list of filter indices", filters,
                              "pass at least one filter (or None for every kept filter)")
        return vals

    def _state(self, removed, func):
        """``(removed set, K, S)`` for ``removed`` (None: the current state)."""
        if removed is None:
            return set(self.removed_), self._K_cur, self._S_cur
        rem = set(self._check_filters(list(removed), "removed", func))
        if rem == set(self.removed_):
            return rem, self._K_cur, self._S_cur
        K, S = self._sums([c for c in range(self.n_filters_) if c not in rem])
        return rem, K, S

    def _solve(self, M, func, L=None, info=None):
        """``(M + lam I)^-1 Yc`` for ``M (n, n)`` or a batch ``(B, n, n)`` (a batch is overwritten).

        Cholesky (float64) and two triangular solves; LU where the factorisation fails.
        """
        torch = _torch()
        if M.ndim == 2:
            M = M[None].clone()
        M.diagonal(dim1=-2, dim2=-1).add_(self.lam)
        if L is None:
            L, info = torch.linalg.cholesky_ex(M)
        else:
            torch.linalg.cholesky_ex(M, out=(L, info))
        rhs = self._Yc.expand(M.shape[0], -1, -1)
        Z = torch.linalg.solve_triangular(L, rhs, upper=False)
        A = torch.linalg.solve_triangular(L.mT, Z, upper=True)
        bad = torch.nonzero(info).flatten()
        if bad.numel():
            warnings.warn(f"{func}: K + lam I is not numerically positive definite for {bad.numel()} "
                          f"solve(s) (lam={self.lam:g} is tiny next to the Gram matrix); solved by LU",
                          NetphysWarning, stacklevel=3)
            A[bad] = torch.linalg.solve(M[bad], rhs[bad])
        return A

    def _out(self, r):
        r = r.numpy()
        return r[..., 0] if self._one_d else r

    # ------------------------------------------------------------------ scores
    def scores(self, removed=None, candidates=None):
        """Selection-split Pearson r after removing ``removed ∪ {candidate}``, for each candidate.

        Parameters
        ----------
        removed : iterable of int, optional
            Filters already removed; None (default) uses the current state (:meth:`remove`).
        candidates : list of int, optional
            Filters to try removing (each on its own); default every filter not in ``removed``.
            A candidate already in ``removed`` is refused.

        Returns
        -------
        r : ndarray (n_candidates,) or (n_candidates, n_neurons)
            Per neuron when ``Y_fit`` was 2-D. NaN where the removal leaves no filter.
        """
        torch = _torch()
        func = "DualRidgeRemoval.scores"
        self._check_fitted(func)
        rem, K_b, S_b = self._state(removed, func)
        if candidates is None:
            cand = [c for c in range(self.n_filters_) if c not in rem]
            if not cand:
                raise param_error("candidates", func, "a non-empty list of filter indices", [],
                                  "every filter is removed already")
        else:
            cand = self._check_filters(list(candidates), "candidates", func, allow_empty=False)
            dup = sorted(set(cand) & rem)
            if dup:
                raise param_error("candidates", func, "filters that are not removed already",
                                  f"removed filter(s) {dup}")
        empty_after = len(rem) + 1 >= self.n_filters_
        out = []
        for ch in _chunks(cand, self._batch_size()):
            ws = self._workspace(len(ch))
            M, S_ch = self._blocks(ch, ws["M"], ws["S"])
            torch.sub(K_b.expand_as(M), M, out=M)                      # K' = K - G_c, in place
            A = self._solve(M, func, ws["L"], ws["info"])              # (B, n, m)
            yhat = torch.matmul(S_b, A) - torch.bmm(S_ch, A)           # (B, n_s, m), intercept-free
            r = _pearson_cols(yhat, self._Ys_c)
            if empty_after:
                r[:] = float("nan")
            out.append(r)
        return self._out(torch.cat(out, dim=0))

    def score_current(self, removed=None):
        """Selection-split Pearson r of the current state (or with ``removed`` removed).

        Returns
        -------
        r : float or ndarray (n_neurons,)
        """
        func = "DualRidgeRemoval.score_current"
        self._check_fitted(func)
        rem, K, S = self._state(removed, func)
        if len(rem) >= self.n_filters_:
            r = _torch().full((self.n_neurons_,), float("nan"), dtype=_torch().float64)
        else:
            r = _pearson_cols(S @ self._solve(K, func)[0], self._Ys_c)
        r = self._out(r)
        return float(r) if np.ndim(r) == 0 else r

    # ------------------------------------------------------------------ state
    def remove(self, c):
        """Remove filter ``c`` from the current state (re-sums ``K`` and ``S`` over the kept filters).

        Returns
        -------
        self
        """
        func = "DualRidgeRemoval.remove"
        self._check_fitted(func)
        if isinstance(c, bool) or not isinstance(c, numbers.Integral) or not 0 <= int(c) < self.n_filters_:
            raise param_error("c", func, f"a filter index in [0, {self.n_filters_ - 1}]", c)
        c = int(c)
        if c in self.removed_:
            raise param_error("c", func, "a filter that is not removed already", c)
        if len(self.kept_) == 1:
            raise param_error("c", func, "a filter other than the last kept one", c,
                              "at least one filter must remain")
        self.removed_ = tuple(sorted(self.removed_ + (c,)))
        self.kept_ = tuple(k for k in self.kept_ if k != c)
        self._K_cur, self._S_cur = self._sums(list(self.kept_))
        return self

    def reset(self):
        """Restore every filter. Returns ``self``."""
        self._check_fitted("DualRidgeRemoval.reset")
        self.removed_, self.kept_ = (), tuple(range(self.n_filters_))
        self._K_cur, self._S_cur = self._K_full, self._S_full
        return self

    # ------------------------------------------------------------------ held-out split
    def _held_out(self, X, param, func, *, precompute=True):
        """A held-out split, centred with the fit means: ``("T", T)`` with the per-filter cross blocks
        ``T_c = (X_c - mu_c) X_fit,c^T`` ``(C, n_x, n_fit)`` when they fit in ``max_gram_bytes`` (and
        ``precompute``), else ``("Z", centred feature blocks)``."""
        torch = _torch()
        Xt, _ = _as_blocks(X, param, func, n_filters=self.n_filters_, widths=self._widths)
        Xt = Xt - self._mu
        n_x = Xt.shape[1]
        if not precompute or 8 * self.n_filters_ * n_x * self._n > self.max_gram_bytes:
            return "Z", Xt
        T = torch.empty(self.n_filters_, n_x, self._n, dtype=torch.float64)
        per = max(1, self.chunk_bytes // max(1, 8 * n_x * self._n))
        for idx in _chunks(list(range(self.n_filters_)), per):
            sl = slice(idx[0], idx[-1] + 1)
            torch.bmm(Xt[sl], self._Xf[sl].transpose(1, 2), out=T[sl])
        return "T", T

    def _predict_held_out(self, held, rem, K, func):
        """Prediction (intercept included) on a :meth:`_held_out` split with the filters ``rem`` removed."""
        torch = _torch()
        kept = [c for c in range(self.n_filters_) if c not in rem]
        if not kept:
            raise param_error("removed", func, "a set that leaves at least one filter", sorted(rem))
        t = torch.as_tensor(kept)
        kind, H = held
        if kind == "T":
            T_k = H.index_select(0, t).sum(0)
        else:
            n_x = H.shape[1]
            Z = H.index_select(0, t).permute(1, 0, 2).reshape(n_x, -1)
            F = self._Xf.index_select(0, t).permute(1, 0, 2).reshape(self._n, -1)
            T_k = Z @ F.T
        return T_k @ self._solve(K, func)[0] + self._ybar

    def predict(self, X, removed=None):
        """Predicted responses of the model refit with the kept filters (held-out / report split).

        Parameters
        ----------
        X : array or tensor (n, C, ...), or list of blocks
            Features of the same layer on any split (e.g. the test split).
        removed : iterable of int, optional
            Filters to leave out; None (default) uses the current state.

        Returns
        -------
        yhat : ndarray (n,) or (n, n_neurons)
            In the responses' units (intercept included): equal to
            ``Ridge(alpha=lam).fit(X_fit[:, kept], Y_fit).predict(X[:, kept])``.
        """
        func = "DualRidgeRemoval.predict"
        self._check_fitted(func)
        rem, K, _ = self._state(removed, func)
        held = self._held_out(X, "X", func, precompute=False)
        return self._out(self._predict_held_out(held, rem, K, func))

    def coef(self, removed=None):
        """Primal weights ``beta = X_F^T A`` per filter: ``(C, p_max)`` or ``(n_neurons, C, p_max)``.

        Removed filters (and the zero padding of narrower blocks) have weight 0; ``predict`` equals
        ``sum_c (X_c - mu_c) beta_c + ybar``.
        """
        func = "DualRidgeRemoval.coef"
        self._check_fitted(func)
        rem, K, _ = self._state(removed, func)
        A = self._solve(K, func)[0]                                  # (n, m)
        beta = _torch().einsum("cnp,nm->mcp", self._Xf, A)
        if rem:
            beta[:, sorted(rem)] = 0.0
        beta = beta.numpy()
        return beta[0] if self._one_d else beta


# ------------------------------------------------------------------------------------ functional form
def rar_scores(X_fit, Y_fit, X_sel, Y_sel, lam, *, removed=(), candidates=None, fit_intercept=True):
    """RAR values of candidate filters: ``r(removed) - r(removed ∪ {i})`` on the selection split.

    Parameters
    ----------
    X_fit, Y_fit, X_sel, Y_sel, lam :
        As :meth:`DualRidgeRemoval.fit` and :class:`DualRidgeRemoval`.
    removed : iterable of int, default ()
        Filters already removed.
    candidates : list of int, optional
        Default every filter not in ``removed``.
    fit_intercept : bool, default True

    Returns
    -------
    rar : ndarray (n_candidates,) or (n_candidates, n_neurons)
        Per neuron when ``Y_fit`` is 2-D; the least important filter has the smallest RAR.

    Notes
    -----
    :math:`RAR(i) = r(F) - r(F \\setminus \\{i\\})` with :math:`r` the Pearson correlation of the ridge
    model's prediction with the selection responses ([1]_ Sec. 4.5).
    """
    m = DualRidgeRemoval(lam, fit_intercept=fit_intercept).fit(X_fit, Y_fit, X_sel, Y_sel)
    base = m.score_current(removed=removed)
    return base - m.scores(removed=removed, candidates=candidates)


# --------------------------------------------------------------------------------------------- lambda
def choose_lambda(X_fit, Y_fit, *, lambdas=None, cv: int = 5, random_state=0, scoring=None) -> float:
    """Ridge penalty by K-fold CV on the fit split with every filter (``sklearn RidgeCV``).

    Parameters
    ----------
    X_fit : array (n, C, ...) or list of blocks
    Y_fit : array (n,) or (n, n_neurons)
    lambdas : array of float > 0, optional
        The grid; default ``s * logspace(-3, 3, 13)`` with ``s = trace(K)/n`` the mean squared norm of
        the centred feature rows (scale-free).
    cv : int, default 5
        Number of folds (shuffled ``KFold`` seeded by ``random_state``).
    scoring : str or callable, optional
        scikit-learn scorer; default R^2 (averaged over neurons).

    Returns
    -------
    lam : float

    Notes
    -----
    The penalty is chosen once with the full feature set and held fixed while filters are removed, as
    in [1]_ (the pruning then compares models that differ only in their filters). All neurons share the
    one penalty; for per-neuron penalties call it per neuron (RAR pruning is per neuron in [1]_).
    """
    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import KFold

    func = "choose_lambda"
    Xf, _ = _as_blocks(X_fit, "X_fit", func)
    n = Xf.shape[1]
    Y, one_d = _as_targets(Y_fit, "Y_fit", func, n)
    cv = check_int(cv, "cv", func, min_value=2, max_value=n)
    Xm = Xf.permute(1, 0, 2).reshape(n, -1).numpy()
    if lambdas is None:
        s = float(((Xm - Xm.mean(0)) ** 2).sum() / n)
        lambdas = max(s, 1e-12) * np.logspace(-3, 3, 13)
    lambdas = np.asarray(lambdas, dtype=np.float64).ravel()
    if lambdas.size == 0 or not np.all(np.isfinite(lambdas)) or np.any(lambdas <= 0):
        raise param_error("lambdas", func, "a non-empty array of finite floats > 0", lambdas)
    est = RidgeCV(alphas=lambdas, cv=KFold(cv, shuffle=True, random_state=random_state), scoring=scoring)
    est.fit(Xm, Y[:, 0] if one_d else Y)
    return float(est.alpha_)


def three_way_split(n_stimuli: int, fractions=(0.6, 0.2, 0.2), random_state=None):
    """Disjoint random fit / selection / test index arrays over ``n_stimuli`` stimuli.

    Parameters
    ----------
    n_stimuli : int
    fractions : 3 floats > 0
        Normalised to sum to 1; every split gets >= 2 stimuli.
    random_state : None, int or Generator

    Returns
    -------
    fit, sel, test : ndarray of int (sorted, pairwise disjoint, together ``0..n_stimuli-1``)
    """
    func = "three_way_split"
    n = check_int(n_stimuli, "n_stimuli", func, min_value=6)
    f = np.asarray(fractions, dtype=np.float64)
    if f.shape != (3,) or not np.all(np.isfinite(f)) or np.any(f <= 0):
        raise param_error("fractions", func, "three floats > 0 (fit, selection, test)", fractions)
    f = f / f.sum()
    n_sel = max(2, round(float(f[1]) * n))
    n_test = max(2, round(float(f[2]) * n))
    n_fit = n - n_sel - n_test
    if n_fit < 2:
        raise param_error("fractions", func, "fractions that leave >= 2 stimuli to the fit split",
                          fractions)
    perm = check_random_state(random_state, func).permutation(n)
    return np.sort(perm[:n_fit]), np.sort(perm[n_fit:n_fit + n_sel]), np.sort(perm[n_fit + n_sel:])


def _row_keys(blocks):
    a = np.ascontiguousarray(blocks.permute(1, 0, 2).reshape(blocks.shape[1], -1).numpy())
    return {r.tobytes() for r in a}


# --------------------------------------------------------------------------------------- greedy path
def rar_path(X_fit, Y_fit, X_sel, Y_sel, X_test, Y_test, lam, *, stop_ratio=None, n_keep=None,
             max_drop=0.05, tie_break: str = "first", tie_tol: float = 1e-10, random_state=None,
             fit_intercept: bool = True, check_disjoint: bool = True,
             max_gram_bytes: int = DEFAULT_MAX_GRAM_BYTES) -> xr.Dataset:
    """Greedy RAR pruning of a layer's filters for a ridge encoding model (Algorithm 2 of [1]_).

    Parameters
    ----------
    X_fit, Y_fit : the fit split (the ridge regression is fitted here, for every filter set)
    X_sel, Y_sel : the selection split (RAR is computed here; chooses the filter to remove)
    X_test, Y_test : the report split (``test_score``; never used for a choice)
        Features ``(n, C, ...)`` or lists of per-filter blocks; responses ``(n,)`` or
        ``(n, n_neurons)``. The three splits must be disjoint stimuli (see :func:`three_way_split`).
    lam : float > 0 or "cv"
        Ridge penalty, fixed during pruning; ``"cv"`` chooses it with :func:`choose_lambda` on the fit
        split with every filter.
    stop_ratio : float >= 1, optional
        Target compression ratio ``n_filters / n_remaining`` ([1]_'s ``r_target``): stop once it is
        reached, i.e. at ``n_remaining = max(1, floor(C / stop_ratio))``.
    n_keep : int >= 1, optional
        Stop at this many remaining filters.
    max_drop : float >= 0 or None, default 0.05
        Stop before a removal whose selection score would fall below ``r_full - max_drop * |r_full|``
        (5% relative drop by default); None disables.
    tie_break : {"first", "last", "random"}, default "first"
        Among candidates whose selection score is within ``tie_tol`` of the best: lowest index,
        highest index, or a random one (``random_state``).
    tie_tol : float >= 0, default 1e-10
    random_state : None, int or Generator
        For ``tie_break="random"``.
    fit_intercept : bool, default True
    check_disjoint : bool, default True
        Refuse splits that share a feature row (the same stimulus on two splits).
    max_gram_bytes : int
        See :class:`DualRidgeRemoval`.

    Returns
    -------
    xarray.Dataset over ``step`` (0 = the full model), with

    * ``removed`` (step): filter removed at this step (-1 at step 0);
    * ``selection_score``, ``test_score`` (step): Pearson r on the selection / test split after the
      step, averaged over neurons; ``selection_r``, ``test_r`` (step, unit): per neuron;
    * ``n_remaining`` (step);
    * ``tied`` (step): number of candidates tied for least important (1: no tie; 0 at step 0);
    * ``rar`` (step, filter): the RAR values that chose this step's filter (NaN at step 0 and for
      filters removed before the step);
    * attrs: ``lam``, ``n_filters``, ``stop_reason``, ``score``, ``method``, ``tie_break`` ...

    Notes
    -----
    At each step, for each remaining filter ``i``, :math:`RAR(i) = r(F) - r(F \\setminus \\{i\\})`
    with :math:`r` the selection-split Pearson correlation (mean over neurons) of the ridge model
    refitted on the fit split with the filter set; the filter with the smallest RAR is removed
    (equivalently the removal that keeps r highest; RAR can be negative). Every refit is exact
    (:class:`DualRidgeRemoval`); the test score uses the same refit model. The last filter is never
    removed. Pruning is specific to the neurons in ``Y_fit``: [1]_ prunes per neuron, so pass one
    neuron's responses for per-neuron paths (several neurons share the mean-r criterion).
    """
    func = "rar_path"
    tie_break = check_choice(tie_break, "tie_break", func, ["first", "last", "random"])
    if not (isinstance(tie_tol, numbers.Real) and math.isfinite(tie_tol) and tie_tol >= 0):
        raise param_error("tie_tol", func, "a finite float >= 0", tie_tol)
    if max_drop is not None and not (isinstance(max_drop, numbers.Real) and not isinstance(max_drop, bool)
                                     and math.isfinite(max_drop) and max_drop >= 0):
        raise param_error("max_drop", func, "a finite float >= 0 or None", max_drop)
    if isinstance(lam, str):
        if lam != "cv":
            raise param_error("lam", func, "a finite float > 0 or 'cv'", lam)
        lam = choose_lambda(X_fit, Y_fit)
    lam = _check_lam(lam, func)
    rng = check_random_state(random_state, func)

    model = DualRidgeRemoval(lam, fit_intercept=fit_intercept, max_gram_bytes=max_gram_bytes)
    model._fit(X_fit, Y_fit, X_sel, Y_sel, func)
    C, m = model.n_filters_, model.n_neurons_
    held = model._held_out(X_test, "X_test", func)
    n_test = held[1].shape[1]
    Yt, _ = _as_targets(Y_test, "Y_test", func, n_test, m)
    if check_disjoint:
        keys = {k: _row_keys(_as_blocks(v, k, func)[0])
                for k, v in (("X_fit", X_fit), ("X_sel", X_sel), ("X_test", X_test))}
        for a, b in (("X_fit", "X_sel"), ("X_fit", "X_test"), ("X_sel", "X_test")):
            shared = len(keys[a] & keys[b])
            if shared:
                raise param_error(b, func, f"stimuli disjoint from {a}'s", f"{shared} identical feature row(s)",
                                  "split the stimuli with three_way_split (or pass check_disjoint=False)")
    Yt_c = _torch().from_numpy(Yt - Yt.mean(0))

    keep_target, keep_reason = 1, "one_filter_left"
    if n_keep is not None:
        k = check_int(n_keep, "n_keep", func, min_value=1, max_value=C)
        if k > keep_target:
            keep_target, keep_reason = k, "n_keep"
    if stop_ratio is not None:
        if not (isinstance(stop_ratio, numbers.Real) and math.isfinite(stop_ratio) and stop_ratio >= 1):
            raise param_error("stop_ratio", func, "a float >= 1 (n_filters / n_remaining)", stop_ratio)
        k = math.floor(C / stop_ratio + 1e-9)
        if k > keep_target:
            keep_target, keep_reason = k, "stop_ratio"

    def test_r():
        return _pearson_cols(model._predict_held_out(held, set(model.removed_), model._K_cur, func), Yt_c).numpy()

    sel0 = np.atleast_1d(model.score_current())
    r_full = float(np.mean(sel0))
    threshold = None if max_drop is None else r_full - max_drop * abs(r_full)
    rec = {"removed": [-1], "sel": [sel0], "test": [test_r()], "n": [C], "tied": [0], "rar": [np.full(C, np.nan)]}
    stop_reason = None
    r_cur = r_full
    while stop_reason is None:
        if len(model.kept_) <= keep_target:
            stop_reason = keep_reason
            break
        cand = list(model.kept_)
        per = np.asarray(model.scores(candidates=cand)).reshape(len(cand), m)
        agg = per.mean(axis=1)
        best = float(np.max(agg))
        ties = np.flatnonzero(agg >= best - tie_tol)
        j = {"first": ties[0], "last": ties[-1]}.get(tie_break) if tie_break != "random" else rng.choice(ties)
        if threshold is not None and agg[j] < threshold:
            stop_reason = "max_drop"
            break
        rar = np.full(C, np.nan)
        rar[cand] = r_cur - agg
        model.remove(cand[j])
        r_cur = float(agg[j])
        rec["removed"].append(cand[j])
        rec["sel"].append(per[j])
        rec["test"].append(test_r())
        rec["n"].append(len(model.kept_))
        rec["tied"].append(len(ties))
        rec["rar"].append(rar)

    sel_r, tst_r = np.vstack(rec["sel"]), np.vstack(rec["test"])
    steps = np.arange(len(rec["removed"]))
    return xr.Dataset(
        {"removed": ("step", np.asarray(rec["removed"], dtype=np.int64)),
         "selection_score": ("step", sel_r.mean(axis=1)),
         "test_score": ("step", tst_r.mean(axis=1)),
         "n_remaining": ("step", np.asarray(rec["n"], dtype=np.int64)),
         "tied": ("step", np.asarray(rec["tied"], dtype=np.int64)),
         "selection_r": (("step", "unit"), sel_r),
         "test_r": (("step", "unit"), tst_r),
         "rar": (("step", "filter"), np.vstack(rec["rar"]))},
        coords={"step": steps, "unit": np.arange(m), "filter": np.arange(C)},
        attrs={"method": "RAR", "score": "pearson_r", "lam": lam, "n_filters": C,
               "stop_reason": stop_reason, "tie_break": tie_break, "tie_tol": float(tie_tol),
               "max_drop": "none" if max_drop is None else float(max_drop), "keep_target": keep_target,
               "fit_intercept": int(fit_intercept), "n_fit": model._n, "n_sel": model._n_s,
               "n_test": n_test, "gram_stored": int(model.gram_stored_)},
    )


# ------------------------------------------------------------------------------------------- benchmark
def bench_rar(n_fit: int = 300, n_sel: int = 300, C: int = 128, HW: int = 16, n_neurons: int = 1,
              repeats: int = 1, lam: float = 10.0, random_state=0) -> dict:
    """Time one full RAR iteration (every filter a candidate): dual form vs ``Ridge`` refit per candidate.

    Parameters
    ----------
    n_fit, n_sel, C, HW, n_neurons : int
        Random features ``(n, C, HW)`` (a ReLU of Gaussians) and responses driven by a few filters.
    repeats : int
        Timings are the minimum over repeats.
    lam : float
    random_state : int

    Returns
    -------
    dict with ``dual_setup_s`` (fit: Gram blocks), ``dual_iter_s`` (scores for all C candidates),
    ``sklearn_iter_s`` (C fits of ``sklearn.linear_model.Ridge`` on the kept columns + predict +
    Pearson r), ``ratio`` (= sklearn_iter_s / dual_iter_s), ``ratio_with_setup``, ``max_abs_dr``
    (max |r_dual - r_sklearn| over candidates and neurons), and the sizes.

    Notes
    -----
    Thread counts are left as they are (set them with ``torch.set_num_threads`` and
    ``threadpoolctl`` for a like-for-like comparison).
    """
    from sklearn.linear_model import Ridge

    rng = np.random.default_rng(random_state)
    n = n_fit + n_sel
    X = np.maximum(rng.normal(size=(n, C, HW)), 0.0)
    w = np.zeros((C, HW, n_neurons))
    drive = rng.choice(C, size=min(C, 4), replace=False)
    w[drive] = rng.normal(size=(len(drive), HW, n_neurons))
    Y = np.einsum("ncp,cpm->nm", X, w) + rng.normal(size=(n, n_neurons))
    Xf, Xs, Yf, Ys = X[:n_fit], X[n_fit:], Y[:n_fit], Y[n_fit:]
    Xf2, Xs2 = Xf.reshape(n_fit, -1), Xs.reshape(n_sel, -1)

    t_setup, t_dual, t_sk = [], [], []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        model = DualRidgeRemoval(lam).fit(Xf, Yf, Xs, Ys)
        t1 = time.perf_counter()
        r_dual = np.asarray(model.scores(candidates=list(range(C)))).reshape(C, n_neurons)
        t2 = time.perf_counter()
        r_sk = np.empty((C, n_neurons))
        cols = np.arange(C * HW).reshape(C, HW)
        for c in range(C):
            keep = np.delete(cols, c, axis=0).ravel()
            pred = Ridge(alpha=lam).fit(Xf2[:, keep], Yf).predict(Xs2[:, keep]).reshape(n_sel, n_neurons)
            pc, yc = pred - pred.mean(0), Ys - Ys.mean(0)
            r_sk[c] = (pc * yc).sum(0) / np.sqrt((pc ** 2).sum(0) * (yc ** 2).sum(0))
        t3 = time.perf_counter()
        t_setup.append(t1 - t0)
        t_dual.append(t2 - t1)
        t_sk.append(t3 - t2)
    d, s, su = min(t_dual), min(t_sk), min(t_setup)
    return {"n_fit": n_fit, "n_sel": n_sel, "C": C, "HW": HW, "n_neurons": n_neurons, "lam": lam,
            "dual_setup_s": su, "dual_iter_s": d, "sklearn_iter_s": s, "ratio": s / d,
            "ratio_with_setup": s / (d + su), "max_abs_dr": float(np.max(np.abs(r_dual - r_sk))),
            "gram_bytes": 8 * C * n_fit * (n_fit + n_sel)}
