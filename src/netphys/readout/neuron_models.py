"""Neuron models: linear read-outs from a network layer to recorded neurons (C4).

The neuron models of [1]_ are a re-weighting of a network's penultimate-layer features: one linear
model per recorded neuron, fitted on 80% of the stimuli and scored by r^2 on the held-out 20%.

* :class:`PLSNeuronModels` -- partial least squares with one component (the paper's models, whose
  weights are sign-ablated and visualised);
* :class:`LassoNeuronModels` -- L1-penalised regression with or without a positivity constraint,
  the penalty chosen by 5-fold cross-validation (Fig. 17: negative weights improve the fits);
* :func:`sign_consistency` -- features whose weight has the same sign in > 90% of the neuron models,
  tested against a fair coin with a Bonferroni correction over features (Fig. 18);
* :func:`weight_balance` -- sum of positive over sum of |negative| weights per model (Table 2, Fig. 16).

A fitted model exposes ``coef_`` (n_neurons, n_features) and ``intercept_`` in the original feature
units, so ``prediction = X @ coef_.T + intercept_``; :meth:`~PLSNeuronModels.as_linear` turns it into a
plain ``torch.nn.Linear`` that the sign-ablation code treats like an output layer and that
:class:`netphys.synthesis.objectives.NeuralModel` accepts as its ``predictor`` (as does the fitted
estimator itself).

References
----------
.. [1] Anonymous authors, "Functional segregation of inputs in artificial neural networks for vision",
   under review (ICLR); Sec. 4 and A.1 ("Models fit on neuronal activity"), Table 2, Figs. 16-18.
"""
from __future__ import annotations

#: version of this module's estimators, part of any cache key that uses them; bump it when a change
#: alters their numbers
ESTIMATOR_VERSION = "1"

import logging
import math
import numbers
import warnings

import numpy as np
import pandas as pd
import xarray as xr
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from .._random import check_random_state
from .._validation import NetphysWarning, check_finite, check_int, param_error

log = logging.getLogger(__name__)

__all__ = ["LassoNeuronModels", "PLSNeuronModels", "sign_consistency", "weight_balance"]


# ---------------------------------------------------------------------------------------------- inputs
def _unit_coords(Y, n: int) -> dict:
    """Coordinates along the neuron dimension of ``Y`` (renamed ``unit``), or ``unit = 0..n-1``."""
    if isinstance(Y, xr.DataArray) and Y.ndim == 2:
        if "stimulus" in Y.dims:
            Y = Y.transpose("stimulus", ...)
        dim = Y.dims[1]
        coords = {("unit" if name == dim else name): ("unit", np.asarray(c.values))
                  for name, c in Y.coords.items() if c.dims == (dim,)}
        coords.setdefault("unit", ("unit", np.arange(n)))
        return coords
    return {"unit": ("unit", np.arange(n))}


def _as_matrix(a, param: str, func: str, what: str, *, allow_1d: bool = False) -> np.ndarray:
    """``a`` as a float64 (n_stimuli, k) array; a DataArray with a ``stimulus`` dim is put first."""
    if isinstance(a, xr.DataArray) and "stimulus" in a.dims:
        a = a.transpose("stimulus", ...)
    try:
        m = np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError):
        raise param_error(param, func, f"a numeric array {what}", type(a).__name__) from None
    if m.ndim == 1 and allow_1d:
        m = m[:, None]
    if m.ndim != 2 or m.shape[0] == 0 or m.shape[1] == 0:
        raise param_error(param, func, f"a non-empty 2-D array {what}", f"an array of shape {m.shape}")
    return m


def _check_xy(X, Y, func: str) -> tuple[np.ndarray, np.ndarray]:
    X = _as_matrix(X, "X", func, "(n_stimuli, n_features)")
    Y = _as_matrix(Y, "Y", func, "(n_stimuli, n_neurons)", allow_1d=True)
    if Y.shape[0] != X.shape[0]:
        raise param_error("Y", func, f"an array with one row per stimulus of X ({X.shape[0]})",
                          f"{Y.shape[0]} rows (shape {Y.shape})",
                          "pass features and responses for the same stimuli, in the same order")
    check_finite(X, "X", func, "the network features contain NaN/inf; check the recording")
    check_finite(Y, "Y", func, "drop the stimuli with missing responses (e.g. Y.dropna('stimulus')) "
                               "and the same rows of X")
    return X, Y


def _check_fraction(value, param: str, func: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value < 1:
        raise param_error(param, func, "a number in (0, 1)", value)
    return float(value)


def _split(n: int, test_size, rng: np.random.Generator, func: str, min_train: int, why: str):
    """Seeded train/test split (sorted indices); ``ceil(test_size * n)`` test stimuli, as scikit-learn."""
    test_size = _check_fraction(test_size, "test_size", func)
    n_test = math.ceil(test_size * n)
    n_train = n - n_test
    if n_test < 2 or n_train < min_train:
        raise param_error("X", func, f"enough stimuli for the split (test_size={test_size}: >= 2 held-out "
                          f"and >= {min_train} training stimuli{why})", f"{n} stimuli "
                          f"({n_train} train / {n_test} test)", "record more stimuli or change test_size")
    perm = rng.permutation(n)
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def _r2(Y: np.ndarray, P: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column r^2 (scikit-learn's ``r2_score``, about the column's own mean); NaN where y is constant."""
    ss_res = ((Y - P) ** 2).sum(axis=0)
    ss_tot = ((Y - Y.mean(axis=0)) ** 2).sum(axis=0)
    const = ss_tot == 0
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.where(const, np.nan, 1.0 - ss_res / np.where(const, 1.0, ss_tot))
    return r2, const


def _warn_constant(idx, func: str, where: str):
    if len(idx):
        shown = ", ".join(str(i) for i in idx[:10]) + (", ..." if len(idx) > 10 else "")
        warnings.warn(f"{func}: {len(idx)} neuron(s) have constant responses on the {where} stimuli "
                      f"(columns {shown}); their r^2 is NaN", NetphysWarning, stacklevel=3)


# ---------------------------------------------------------------------------------------- base class
class _LinearNeuronModels(BaseEstimator):
    """Shared prediction, scoring and export of per-neuron linear models (``coef_``, ``intercept_``)."""

    @property
    def r2_(self) -> xr.DataArray:
        """Alias of ``score_``: held-out r^2 per neuron."""
        check_is_fitted(self, "score_")
        return self.score_

    def _features(self, X, func: str) -> np.ndarray:
        check_is_fitted(self, "coef_")
        Xm = _as_matrix(X, "X", func, "(n_stimuli, n_features)")
        n_feat = self.coef_.shape[1]
        if Xm.shape[1] != n_feat:
            raise param_error("X", func, f"an array with {n_feat} features (columns), as in fit",
                              f"an array of shape {Xm.shape}")
        return check_finite(Xm, "X", func)

    def predict(self, X):
        """Predicted responses ``X @ coef_.T + intercept_``.

        Parameters
        ----------
        X : array-like or xarray.DataArray, (n_stimuli, n_features)

        Returns
        -------
        ndarray (n_stimuli, n_neurons), or xarray.DataArray dims ("stimulus", "unit") when ``X`` is a
        DataArray (stimulus coordinates of ``X``, unit coordinates of the fitted ``Y``).
        """
        func = f"{type(self).__name__}.predict"
        P = self._features(X, func) @ self.coef_.T + self.intercept_
        if isinstance(X, xr.DataArray):
            Xd = X.transpose("stimulus", ...) if "stimulus" in X.dims else X
            dim = Xd.dims[0]
            coords = {("stimulus" if k == dim else k): ("stimulus", np.asarray(c.values))
                      for k, c in Xd.coords.items() if c.dims == (dim,)}
            return xr.DataArray(P, dims=("stimulus", "unit"), coords={**coords, **self._unit_coords},
                                name="prediction")
        return P

    def score(self, X, Y) -> xr.DataArray:
        """r^2 of the predictions per neuron (NaN for neurons whose ``Y`` is constant).

        Returns
        -------
        xarray.DataArray, dims ("unit",)
        """
        func = f"{type(self).__name__}.score"
        P = self.predict(np.asarray(self._features(X, func)))
        Ym = check_finite(_as_matrix(Y, "Y", func, "(n_stimuli, n_neurons)", allow_1d=True), "Y", func)
        if Ym.shape != P.shape:
            raise param_error("Y", func, f"an array of shape {P.shape} (stimuli of X x fitted neurons)",
                              f"an array of shape {Ym.shape}")
        r2, _ = _r2(Ym, P)
        return xr.DataArray(r2, dims=("unit",), coords=self._unit_coords, name="r2")

    def as_linear(self, *, dtype=None, device=None):
        """The fitted models as one ``torch.nn.Linear(n_features, n_neurons)``.

        ``weight = coef_``, ``bias = intercept_`` (float32 unless ``dtype`` is given), in eval mode, so
        ``as_linear()(torch.as_tensor(X))`` equals :meth:`predict` (to float32 precision). The layer is a
        plain ``nn.Linear``: sign ablation of its weights is the same operation as on an output layer, and
        it can be the ``predictor`` of :class:`netphys.synthesis.objectives.NeuralModel`.
        """
        import torch
        from torch import nn

        check_is_fitted(self, "coef_")
        n_out, n_feat = self.coef_.shape
        lin = nn.Linear(n_feat, n_out, dtype=dtype or torch.float32, device=device)
        with torch.no_grad():
            lin.weight.copy_(torch.as_tensor(self.coef_))
            lin.bias.copy_(torch.as_tensor(self.intercept_))
        return lin.eval()

    def _finish(self, X, Y, Ycoords_from, train, test, func):
        """Scores on both parts of the split; ``score_``/``train_score_`` as labelled arrays."""
        self._unit_coords = _unit_coords(Ycoords_from, Y.shape[1])
        P = X @ self.coef_.T + self.intercept_
        train_r2, const_train = _r2(Y[train], P[train])
        test_r2, const_test = _r2(Y[test], P[test])
        test_r2[const_train] = np.nan
        _warn_constant(np.flatnonzero(const_train), func, "training")
        _warn_constant(np.flatnonzero(const_test & ~const_train), func, "held-out")
        attrs = {"test_size": self.test_size, "random_state": repr(self.random_state),
                 "n_train": len(train), "n_test": len(test), "estimator": type(self).__name__,
                 "estimator_version": ESTIMATOR_VERSION}
        self.score_ = xr.DataArray(test_r2, dims=("unit",), coords=self._unit_coords, name="r2",
                                   attrs={**attrs, "split": "test"})
        self.train_score_ = xr.DataArray(train_r2, dims=("unit",), coords=self._unit_coords, name="r2",
                                         attrs={**attrs, "split": "train"})
        self.train_index_, self.test_index_ = train, test
        self.n_features_in_ = X.shape[1]


# ------------------------------------------------------------------------------------------------ PLS
class PLSNeuronModels(_LinearNeuronModels):
    """One PLS regression per recorded neuron from a layer's features, fitted on a seeded 80/20 split.

    A scikit-learn estimator (``get_params``, ``clone``): the constructor only stores settings,
    :meth:`fit` returns ``self``, learned state ends in ``_``.

    Parameters
    ----------
    n_components : int, default 1
        PLS components per neuron (the paper uses 1).
    test_size : float in (0, 1), default 0.2
        Fraction of the stimuli held out (``ceil(test_size * n)`` stimuli); the same split for every
        neuron.
    random_state : int, SeedSequence, Generator or None, default 0
        Seed of the split.
    scale : bool, default True
        Standardise each feature (training mean, SD with ddof=1) before PLS, as scikit-learn's
        ``PLSRegression`` does by default. The paper does not say; it used that default.
        Coefficients are always returned in the original feature units.

    Attributes
    ----------
    coef_ : ndarray (n_neurons, n_features)
        Weights in the original feature units: ``prediction = X @ coef_.T + intercept_``.
    intercept_ : ndarray (n_neurons,)
        The true intercept in original units. (Not scikit-learn's ``PLSRegression.intercept_``, which is
        the training mean of y and is added to the *centred* X.)
    score_ : xarray.DataArray, dims ("unit",)
        r^2 on the held-out stimuli per neuron (coordinates of ``Y``'s neuron dimension); NaN for
        neurons with constant responses. ``r2_`` is an alias.
    train_score_ : xarray.DataArray, dims ("unit",)
        r^2 on the training stimuli.
    train_index_, test_index_ : ndarray of int
        The split (sorted stimulus indices).
    n_features_in_ : int

    Notes
    -----
    With one component and standardised features :math:`X_s` (centred, divided by their SD) and a
    centred response :math:`y_c`, PLS1 is closed form: the weight vector is
    :math:`w \\propto c = X_s^\\top y_c`, the score is :math:`t = X_s w`, and since :math:`p^\\top w = 1`
    the regression coefficient on :math:`X_s` is

    .. math:: \\beta_s = c \\, \\frac{\\lVert c \\rVert^2}{\\lVert X_s c \\rVert^2},

    (independent of any scaling of :math:`y`), so :math:`\\beta = \\beta_s / s_x` in original units and
    :math:`b = \\bar y - \\bar x^\\top \\beta`. All neurons are fitted at once with two matrix products;
    this equals ``sklearn.cross_decomposition.PLSRegression(n_components=1)`` fitted per neuron (tested
    to 1e-6). For ``n_components > 1`` each neuron is fitted with ``PLSRegression`` in a loop.

    A neuron whose training responses are constant gets ``coef_ = 0``, ``intercept_`` = its mean and
    ``score_ = NaN``, with a :class:`~netphys.NetphysWarning`; a neuron constant on the held-out
    stimuli only has ``score_ = NaN`` (r^2 is undefined there). Features constant on the training
    stimuli get weight 0.

    References
    ----------
    .. [1] Anonymous authors, "Functional segregation of inputs in artificial neural networks for
       vision", under review; A.1 "Models fit on neuronal activity": PLS regression with one component,
       80/20 train/test split, r^2 on the 20% held-out set.
    .. [2] S. Wold, M. Sjostrom, L. Eriksson, "PLS-regression: a basic tool of chemometrics",
       Chemometrics and Intelligent Laboratory Systems 58, 109-130 (2001).
    """

    def __init__(self, n_components: int = 1, test_size: float = 0.2, random_state=0, *, scale: bool = True):
        self.n_components = n_components
        self.test_size = test_size
        self.random_state = random_state
        self.scale = scale

    def fit(self, X, Y):
        """Fit one model per neuron on the training split and score it on the held-out split.

        Parameters
        ----------
        X : array-like or xarray.DataArray, (n_stimuli, n_features)
            Network features (e.g. a penultimate-layer recording, dims ("stimulus", "unit")).
        Y : array-like or xarray.DataArray, (n_stimuli, n_neurons) or (n_stimuli,)
            Responses, e.g. ``NeuralDataset.responses("V4")`` (dims ("stimulus", "unit")).

        Returns
        -------
        self

        Raises
        ------
        NetphysError
            NaN/inf in ``X`` or ``Y``, different stimulus counts, non-2-D input, too few stimuli for
            the split (>= 2 held-out and >= 3 training stimuli), ``n_components`` < 1 or > n_features,
            ``test_size`` outside (0, 1), a bad ``random_state``.
        """
        func = "PLSNeuronModels.fit"
        Xm, Ym = _check_xy(X, Y, func)
        n_comp = check_int(self.n_components, "n_components", func, min_value=1)
        if n_comp > Xm.shape[1]:
            raise param_error("n_components", func, f"<= the number of features ({Xm.shape[1]})", n_comp)
        rng = check_random_state(self.random_state, func)
        train, test = _split(len(Xm), self.test_size, rng, func, max(3, n_comp + 1), "")
        Xtr, Ytr = Xm[train], Ym[train]
        const = np.ptp(Ytr, axis=0) == 0
        if n_comp == 1:
            coef = _pls1(Xtr, Ytr, bool(self.scale))
        else:
            coef = _pls_loop(Xtr, Ytr, n_comp, bool(self.scale), const)
        coef[const] = 0.0
        self.coef_ = coef
        self.intercept_ = Ytr.mean(axis=0) - coef @ Xtr.mean(axis=0)
        self._finish(Xm, Ym, Y, train, test, func)
        log.debug("%s: %d neurons, median held-out r2 %.3f", func, Ym.shape[1],
                  float(np.nanmedian(self.score_.values)) if np.any(~np.isnan(self.score_.values)) else np.nan)
        return self


def _x_scale(Xtr: np.ndarray, scale: bool, ddof: int) -> tuple[np.ndarray, np.ndarray]:
    mx = Xtr.mean(axis=0)
    if not scale:
        return mx, np.ones(Xtr.shape[1])
    sx = Xtr.std(axis=0, ddof=ddof)
    sx[sx == 0] = 1.0
    return mx, sx


def _pls1(Xtr: np.ndarray, Ytr: np.ndarray, scale: bool) -> np.ndarray:
    """Closed-form one-component PLS coefficients for every column of ``Ytr``, (n_neurons, F)."""
    mx, sx = _x_scale(Xtr, scale, ddof=1)
    Xs = (Xtr - mx) / sx
    C = Xs.T @ (Ytr - Ytr.mean(axis=0))          # (F, N): PLS weight directions
    T = Xs @ C                                    # (n, N): scores (unnormalised)
    cc, tt = (C ** 2).sum(axis=0), (T ** 2).sum(axis=0)
    factor = np.divide(cc, tt, out=np.zeros_like(cc), where=tt > 0)
    return ((C * factor) / sx[:, None]).T


def _pls_loop(Xtr, Ytr, n_comp, scale, const) -> np.ndarray:
    from sklearn.cross_decomposition import PLSRegression

    coef = np.zeros((Ytr.shape[1], Xtr.shape[1]))
    for j in np.flatnonzero(~const):
        coef[j] = PLSRegression(n_components=n_comp, scale=scale).fit(Xtr, Ytr[:, j]).coef_[0]
    return coef


# ---------------------------------------------------------------------------------------------- Lasso
class LassoNeuronModels(_LinearNeuronModels):
    """One Lasso regression per neuron, the L1 penalty chosen by k-fold CV, optionally positive weights.

    Each neuron's model is ``sklearn.linear_model.LassoCV`` fitted on the training part of a seeded
    split (the same split and the same CV folds for all neurons) and scored by r^2 on the held-out
    stimuli.

    Parameters
    ----------
    positive : bool, default False
        Constrain all weights to be >= 0 (the paper's positivity constraint, a stand-in for Dale's law).
    alphas : array-like of float, optional
        The L1 penalties to search (one grid shared by all neurons, needed to compare neurons or
        ``positive`` settings penalty by penalty). Default: ``n_alphas`` values per neuron, log-spaced
        from the smallest penalty that zeroes all weights down to ``eps`` times it (scikit-learn).
    n_alphas : int, default 100
    eps : float, default 1e-2
        Smallest / largest penalty of the default grid. Larger than scikit-learn's 1e-3: on collinear
        ReLU features the tiny penalties below 1e-2 alpha_max take coordinate descent ~10x longer, do
        not converge, and are not chosen by CV on real data (V4, Cowley et al.). A warning is issued when
        the CV optimum of any neuron is the smallest penalty of its grid (then lower ``eps``).
    cv : int, default 5
        Folds of the cross-validation (shuffled, seeded) on the training stimuli.
    test_size : float in (0, 1), default 0.2
    random_state : int, SeedSequence, Generator or None, default 0
        Seeds the split and the CV folds.
    max_iter : int, default 5000
        Coordinate-descent iterations (non-convergence is reported once, as a NetphysWarning).
    tol : float, default 1e-4
    scale : bool, default True
        Standardise each feature (training mean and SD, ddof=0, as ``StandardScaler``) before the Lasso,
        so that the L1 penalty treats features alike; ``alpha_`` is then the penalty on standardised
        features. ``coef_`` and ``intercept_`` are always in the original units (dividing by the SD
        keeps the signs, so ``positive=True`` still gives non-negative ``coef_``).
    score_path : bool, default False
        Also refit the whole L1 path on the training stimuli and score each penalty on both splits
        (Fig. 17's r^2 against the penalty): ``path_train_score_``, ``path_test_score_``.

    Attributes
    ----------
    coef_ : ndarray (n_neurons, n_features)
    intercept_ : ndarray (n_neurons,)
        ``prediction = X @ coef_.T + intercept_``.
    alpha_ : ndarray (n_neurons,)
        Penalty chosen by CV (NaN for constant neurons).
    alphas_ : ndarray (n_neurons, n_alphas)
        The penalty grid of each neuron (largest first).
    cv_mse_ : ndarray (n_neurons,)
        Mean CV mean squared error at ``alpha_``.
    n_nonzero_ : ndarray of int (n_neurons,)
        Non-zero weights per neuron.
    score_ : xarray.DataArray, dims ("unit",)
        r^2 on the held-out stimuli (not the CV score; that is ``cv_mse_``). ``r2_`` is an alias.
    train_score_ : xarray.DataArray, dims ("unit",)
    path_train_score_, path_test_score_ : xarray.DataArray, dims ("unit", "penalty")
        Only with ``score_path=True``: r^2 at every penalty of the grid (coordinate ``alpha`` with dims
        ("unit", "penalty")).
    train_index_, test_index_ : ndarray of int
    n_features_in_ : int

    Notes
    -----
    Per neuron, on standardised training features :math:`X_s`, the Lasso minimises
    :math:`\\frac{1}{2n}\\lVert y - b - X_s\\beta\\rVert^2 + \\alpha\\lVert\\beta\\rVert_1`
    (subject to :math:`\\beta \\ge 0` with ``positive=True``), :math:`\\alpha` minimising the mean
    squared error over ``cv`` folds. Neurons with constant training responses are not fitted: weights 0,
    intercept their mean, ``alpha_`` and ``score_`` NaN, with a :class:`~netphys.NetphysWarning`.

    References
    ----------
    .. [1] Anonymous authors, "Functional segregation of inputs in artificial neural networks for
       vision", under review; Fig. 17: Lasso with and without the positivity constraint, 5-fold CV,
       train and test r^2 across L1 penalties.
    .. [2] R. Tibshirani, "Regression shrinkage and selection via the lasso", J. R. Stat. Soc. B 58,
       267-288 (1996).
    """

    def __init__(self, positive: bool = False, alphas=None, n_alphas: int = 100, cv: int = 5, *,
                 eps: float = 1e-2, test_size: float = 0.2, random_state=0, max_iter: int = 5000,
                 tol: float = 1e-4, scale: bool = True, score_path: bool = False):
        self.positive = positive
        self.alphas = alphas
        self.n_alphas = n_alphas
        self.cv = cv
        self.eps = eps
        self.test_size = test_size
        self.random_state = random_state
        self.max_iter = max_iter
        self.tol = tol
        self.scale = scale
        self.score_path = score_path

    def _grid(self, func: str):
        if self.alphas is None:
            return check_int(self.n_alphas, "n_alphas", func, min_value=1)
        try:
            a = np.asarray(self.alphas, dtype=np.float64)
        except (TypeError, ValueError):
            a = np.array([np.nan])
        if a.ndim != 1 or a.size == 0 or not np.all(np.isfinite(a)) or np.any(a <= 0):
            raise param_error("alphas", func, "None or a non-empty 1-D array of finite penalties > 0",
                              self.alphas)
        return np.sort(a)[::-1]

    def fit(self, X, Y):
        """Fit one LassoCV per neuron on the training split and score it on the held-out split.

        Parameters
        ----------
        X : array-like or xarray.DataArray, (n_stimuli, n_features)
        Y : array-like or xarray.DataArray, (n_stimuli, n_neurons) or (n_stimuli,)

        Returns
        -------
        self

        Raises
        ------
        NetphysError
            NaN/inf in ``X`` or ``Y``, different stimulus counts, too few stimuli for the split and the
            CV (>= 2 held-out stimuli and >= 2 per CV fold of the training stimuli), bad ``cv``,
            ``alphas``, ``n_alphas``, ``max_iter``, ``test_size`` or ``random_state``.
        """
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import LassoCV, lasso_path
        from sklearn.model_selection import KFold

        func = "LassoNeuronModels.fit"
        Xm, Ym = _check_xy(X, Y, func)
        cv = check_int(self.cv, "cv", func, min_value=2)
        max_iter = check_int(self.max_iter, "max_iter", func, min_value=1)
        for name in ("eps", "tol"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not v > 0:
                raise param_error(name, func, "a number > 0", v)
        grid = self._grid(func)
        rng = check_random_state(self.random_state, func)
        train, test = _split(len(Xm), self.test_size, rng, func, 2 * cv, f" (2 per fold of {cv}-fold CV)")
        folds = KFold(n_splits=cv, shuffle=True, random_state=int(rng.integers(2**31 - 1)))
        Xtr, Ytr = Xm[train], Ym[train]
        mx, sx = _x_scale(Xtr, bool(self.scale), ddof=0)
        Xs = (Xtr - mx) / sx
        n_neurons, n_feat = Ym.shape[1], Xm.shape[1]
        n_grid = grid if isinstance(grid, int) else len(grid)
        coef = np.zeros((n_neurons, n_feat))
        alpha = np.full(n_neurons, np.nan)
        alphas = np.full((n_neurons, n_grid), np.nan)
        cv_mse = np.full(n_neurons, np.nan)
        path_coefs = np.full((n_neurons, n_grid, n_feat), np.nan) if self.score_path else None
        const = np.ptp(Ytr, axis=0) == 0
        not_converged = 0
        for j in np.flatnonzero(~const):
            y = Ytr[:, j]
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", ConvergenceWarning)
                m = LassoCV(alphas=grid, eps=self.eps, cv=folds, positive=bool(self.positive),
                            max_iter=max_iter, tol=self.tol).fit(Xs, y)
                if self.score_path:
                    _, pc, _ = lasso_path(Xs, y - y.mean(), alphas=m.alphas_, positive=bool(self.positive),
                                          max_iter=max_iter, tol=self.tol)
                    path_coefs[j] = pc.T / sx
            not_converged += any(issubclass(w.category, ConvergenceWarning) for w in caught)
            for w in caught:
                if not issubclass(w.category, ConvergenceWarning):
                    warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
            coef[j] = m.coef_ / sx
            alpha[j] = m.alpha_
            alphas[j] = m.alphas_
            cv_mse[j] = m.mse_path_.mean(axis=1)[np.argmin(np.abs(m.alphas_ - m.alpha_))]
        at_edge = np.flatnonzero(~const & (alpha == alphas[:, -1])) if alphas.shape[1] > 1 else []
        if len(at_edge):
            warnings.warn(f"{func}: for {len(at_edge)} neuron(s) the CV optimum is the smallest penalty of "
                          f"the grid (alpha_ == alphas_[:, -1]); lower eps or pass smaller alphas",
                          NetphysWarning, stacklevel=2)
        if not_converged:
            warnings.warn(f"{func}: coordinate descent did not converge for {not_converged} neuron(s); "
                          f"raise max_iter (now {max_iter}) or tol", NetphysWarning, stacklevel=2)
        self.coef_ = coef
        self.intercept_ = Ytr.mean(axis=0) - coef @ mx
        self.alpha_, self.alphas_, self.cv_mse_ = alpha, alphas, cv_mse
        self.n_nonzero_ = np.count_nonzero(coef, axis=1)
        self._finish(Xm, Ym, Y, train, test, func)
        if self.score_path:
            self._score_path(Xm, Ym, train, test, path_coefs, mx)
        return self

    def _score_path(self, Xm, Ym, train, test, path_coefs, mx):
        ymean = Ym[train].mean(axis=0)
        out = {}
        for name, idx in (("train", train), ("test", test)):
            Xc = Xm[idx] - mx
            P = np.einsum("sf,npf->snp", Xc, path_coefs) + ymean[None, :, None]   # (stim, neuron, penalty)
            Yi = Ym[idx][:, :, None]
            ss_res = ((Yi - P) ** 2).sum(axis=0)
            ss_tot = ((Yi - Yi.mean(axis=0)) ** 2).sum(axis=0)
            with np.errstate(divide="ignore", invalid="ignore"):
                r2 = np.where(ss_tot > 0, 1.0 - ss_res / np.where(ss_tot > 0, ss_tot, 1.0), np.nan)
            out[name] = xr.DataArray(r2, dims=("unit", "penalty"),
                                     coords={**self._unit_coords, "alpha": (("unit", "penalty"), self.alphas_)},
                                     name="r2", attrs={"split": name, "positive": bool(self.positive)})
        self.path_train_score_, self.path_test_score_ = out["train"], out["test"]


# ------------------------------------------------------------------------------- weights across models
def _coef_matrix(coef, param: str, func: str) -> np.ndarray:
    """(n_models, n_features) weights from an array, a fitted estimator or an ``nn.Linear``."""
    if hasattr(coef, "coef_"):
        coef = coef.coef_
    elif hasattr(coef, "weight") and not isinstance(coef, (np.ndarray, xr.DataArray)):
        coef = coef.weight.detach().cpu().numpy()
    try:
        W = np.asarray(coef, dtype=np.float64)
    except (TypeError, ValueError):
        raise param_error(param, func, "a numeric array (n_models, n_features), a fitted model with coef_ "
                          "or an nn.Linear", type(coef).__name__) from None
    if W.ndim == 1:
        W = W[None]
    if W.ndim != 2 or W.size == 0:
        raise param_error(param, func, "a non-empty 2-D array (n_models, n_features)", f"shape {W.shape}")
    return check_finite(W, param, func)


def sign_consistency(coef, *, threshold: float = 0.9, alpha: float = 0.05) -> pd.DataFrame:
    """Features whose weight has the same sign in most neuron models (binomial test, Bonferroni).

    Parameters
    ----------
    coef : array-like (n_models, n_features), fitted neuron models, or ``nn.Linear``
        One row of weights per neuron model (``coef_``; an ``nn.Linear``'s ``weight``).
    threshold : float in (0, 1), default 0.9
        A feature is consistent when the fraction of its non-zero weights with the majority sign is
        *strictly greater* than this (the paper's "more than 90%").
    alpha : float in (0, 1), default 0.05
        Family-wise error rate, Bonferroni-corrected over all ``n_features`` features.

    Returns
    -------
    pandas.DataFrame, one row per feature (index ``feature`` = column of ``coef``)
        ``n_nonzero``, ``n_positive``, ``n_negative`` (models with a non-zero / positive / negative
        weight), ``sign`` (majority sign +1 / -1; 0 on a tie or when all weights are zero),
        ``fraction_consistent`` (majority count / ``n_nonzero``; NaN when ``n_nonzero`` is 0),
        ``p_value`` (two-sided ``scipy.stats.binomtest(majority, n_nonzero, 0.5)``; 1 when
        ``n_nonzero`` is 0), ``p_bonferroni`` (``min(1, p_value * n_features)``) and ``consistent``
        (``fraction_consistent > threshold`` and ``p_bonferroni < alpha``).

    Raises
    ------
    NetphysError
        Non-numeric, non-2-D or non-finite ``coef``; ``threshold`` or ``alpha`` outside (0, 1).

    Notes
    -----
    "Consistent across > 90% of neuron models" is counted **among the models where the weight is
    non-zero**: models that do not use a feature (a zero Lasso weight) cast no vote. For the paper's
    PLS models every weight is non-zero, so the denominator is the number of models (51 of 56 models,
    91%, in Fig. 18). Under the null hypothesis each non-zero weight is positive with probability 1/2,
    independently across models; the test is two-sided (either sign can be the consistent one), and
    the Bonferroni correction counts every feature (4096 for AlexNet's fc7 in the paper), including
    those with no non-zero weight.

    References
    ----------
    .. [1] Anonymous authors, "Functional segregation of inputs in artificial neural networks for
       vision", under review; Fig. 18: features with positive or negative weights in 91% of 56 neuron
       models, tested against a Bernoulli(0.5) with Bonferroni correction for 4096 features.
    """
    from scipy.stats import binomtest

    func = "sign_consistency"
    W = _coef_matrix(coef, "coef", func)
    threshold = _check_fraction(threshold, "threshold", func)
    alpha = _check_fraction(alpha, "alpha", func)
    n_pos = (W > 0).sum(axis=0)
    n_neg = (W < 0).sum(axis=0)
    n_nz = n_pos + n_neg
    major = np.maximum(n_pos, n_neg)
    p = np.ones(W.shape[1])
    cache: dict[tuple[int, int], float] = {}
    for f in np.flatnonzero(n_nz > 0):
        key = (int(major[f]), int(n_nz[f]))
        if key not in cache:
            cache[key] = float(binomtest(key[0], key[1], 0.5, alternative="two-sided").pvalue)
        p[f] = cache[key]
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(n_nz > 0, major / np.maximum(n_nz, 1), np.nan)
    p_bonf = np.minimum(1.0, p * W.shape[1])
    df = pd.DataFrame({"n_nonzero": n_nz, "n_positive": n_pos, "n_negative": n_neg,
                       "sign": np.sign(n_pos - n_neg).astype(int), "fraction_consistent": frac,
                       "p_value": p, "p_bonferroni": p_bonf,
                       "consistent": (np.nan_to_num(frac) > threshold) & (p_bonf < alpha)},
                      index=pd.RangeIndex(W.shape[1], name="feature"))
    df.attrs.update(threshold=threshold, alpha=alpha, n_models=W.shape[0], n_tests=W.shape[1])
    return df


def weight_balance(coef) -> xr.DataArray:
    """Total positive over total |negative| weight of each model (Table 2; Fig. 16, right).

    Parameters
    ----------
    coef : array-like (n_models, n_features), fitted neuron models, or ``nn.Linear``
        Weights only (biases and intercepts are not counted). An output layer's ``nn.Linear`` gives
        the balance of the classification units, the same quantity as for neuron models.

    Returns
    -------
    xarray.DataArray, dims ("unit",), name ``weight_balance``
        ``sum(w[w > 0]) / sum(|w[w < 0]|)`` per row; ``inf`` when a model has positive but no negative
        weights, ``0`` when it has only negative weights, NaN when all its weights are zero. Unit
        coordinates of a fitted neuron model are kept.

    Raises
    ------
    NetphysError
        Non-numeric, non-2-D or non-finite ``coef``.

    References
    ----------
    .. [1] Anonymous authors, "Functional segregation of inputs in artificial neural networks for
       vision", under review; Table 2 (output units, ratio ~1.0) and Fig. 16 (neuron models, mean 1.17).
    """
    func = "weight_balance"
    coords = getattr(coef, "_unit_coords", None)
    W = _coef_matrix(coef, "coef", func)
    pos = np.where(W > 0, W, 0.0).sum(axis=1)
    neg = -np.where(W < 0, W, 0.0).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(neg > 0, pos / np.where(neg > 0, neg, 1.0), np.where(pos > 0, np.inf, np.nan))
    return xr.DataArray(ratio, dims=("unit",), coords=coords or {"unit": np.arange(W.shape[0])},
                        name="weight_balance")
