"""Encoding models of recorded neurons from a network layer's features (D3).

For each neuron, a linear model (ridge by default, or lasso) maps the features of one layer of a
network -- or of the V1-like :class:`~netphys.readout.gabor.GaborBank` baseline -- for each stimulus to
the neuron's (repeat-averaged) spike count; the penalty is chosen per neuron by K-fold
cross-validation on the training stimuli, and the model is scored by the Pearson correlation between
predicted and measured responses on held-out stimuli, raw and noise-corrected (Abbasi-Asl [1]_,
ch. 3).

* :class:`EncodingModel` -- the estimator (``fit(X, Y, trials=None)``, ``predict``, ``score``);
  learned ``coef_``, per-neuron ``alpha_``, held-out ``r_`` / ``r_corrected_``, the ``weight_map_``
  (sum of squared weights over channels at each location) and ``filter_importance_`` (over
  locations);
* :func:`layer_features` -- a layer's full feature maps ``(stimulus, channel, row, col)`` for a stack
  of images (resized to the network's input size), or the Gabor bank's;
* :func:`fit_encoding_models` -- features + fit + scores for one (network, layer), as a labelled
  per-neuron Dataset;
* :func:`encoding_table` -- the models x layers summary table (median raw and corrected r).

References
----------
.. [1] R. Abbasi-Asl, "Structural compression of convolutional neural networks with applications in
   interpretability" (PhD thesis, UC Berkeley), ch. 3 and appendix 3.B: CNN features + ridge or lasso
   regression for 71 V4 neurons, held-out and noise-corrected correlation, Gabor wavelet baseline,
   average regression weight map and filter importance.
.. [2] O. Schoppe, N. S. Harper, B. D. B. Willmore, A. J. King, J. W. H. Schnupp, "Measuring the
   performance of neural models", Front. Comput. Neurosci. 10:10 (2016).
"""
from __future__ import annotations

import dataclasses
import logging
import math
import numbers
import warnings
from collections.abc import Mapping

import numpy as np
import pandas as pd
import xarray as xr
from sklearn.base import BaseEstimator, clone
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

from .._random import check_random_state
from .._validation import (
    NetphysError,
    NetphysWarning,
    check_choice,
    check_int,
    param_error,
)
from ..stats.correlation import explainable_variance, noise_ceiling_r, pearson_r

log = logging.getLogger(__name__)

__all__ = ["EncodingModel", "encoding_table", "fit_encoding_models", "layer_features"]

#: version of the encoding estimator, part of any cache key that uses it; bump when numbers change
ENCODING_VERSION = "1"


# --------------------------------------------------------------------------------------------- inputs
def _numpy(a, param: str, func: str) -> np.ndarray:
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    if isinstance(a, xr.DataArray) and "stimulus" in a.dims:
        a = a.transpose("stimulus", ...)
    try:
        return np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError):
        raise param_error(param, func, "a numeric array", type(a).__name__) from None


def _unit_coords(src, n: int) -> dict:
    """Coordinates along the neuron dimension of a DataArray ``src`` (renamed ``unit``), else 0..n-1."""
    if isinstance(src, xr.DataArray) and src.ndim in (2, 3) and "stimulus" in src.dims:
        dims = [d for d in src.dims if d not in ("stimulus", "repeat")]
        if len(dims) == 1 and src.sizes[dims[0]] == n:
            dim = dims[0]
            coords = {("unit" if k == dim else k): ("unit", np.asarray(c.values))
                      for k, c in src.coords.items() if c.dims == (dim,)}
            coords.setdefault("unit", ("unit", np.arange(n)))
            return coords
    return {"unit": ("unit", np.arange(n))}


def _nan_neurons(Y: np.ndarray) -> str:
    bad = np.flatnonzero(~np.isfinite(Y).all(axis=0))
    dead = set(np.flatnonzero(~np.isfinite(Y).any(axis=0)).tolist())
    shown = ", ".join(f"{i}{' (all NaN)' if i in dead else ''}" for i in bad[:10])
    return shown + (", ..." if len(bad) > 10 else "")


def _check_responses(Y, param: str, func: str, n: int) -> np.ndarray:
    Ym = _numpy(Y, param, func)
    if Ym.ndim == 1:
        Ym = Ym[:, None]
    if Ym.ndim != 2 or 0 in Ym.shape:
        raise param_error(param, func, "a non-empty array (n_stimuli, n_neurons)", f"shape {Ym.shape}")
    if Ym.shape[0] != n:
        raise param_error(param, func, f"one row per stimulus ({n})", f"{Ym.shape[0]} rows (shape {Ym.shape})",
                          "pass features and responses for the same stimuli, in the same order")
    if not np.isfinite(Ym).all():
        raise param_error(param, func, "finite (no NaN or inf)", f"non-finite responses of neuron(s) "
                          f"{_nan_neurons(Ym)}", "drop those neurons, or the stimuli without responses "
                          "(and the same stimuli of the features)")
    return Ym


def _check_trials(trials, func: str, n: int, n_neurons: int | None) -> np.ndarray:
    t = _numpy(trials.transpose("stimulus", "unit", "repeat") if isinstance(trials, xr.DataArray)
               and set(trials.dims) == {"stimulus", "unit", "repeat"} else trials, "trials", func)
    if t.ndim != 3 or t.shape[0] != n or (n_neurons is not None and t.shape[1] != n_neurons):
        want = f"({n}, {n_neurons if n_neurons is not None else 'n_neurons'}, n_repeats)"
        raise param_error("trials", func, f"single trials of shape {want}, NaN-padded", f"shape {t.shape}")
    dead = np.flatnonzero(~np.isfinite(t).any(axis=(0, 2)))
    if len(dead):
        raise param_error("trials", func, "at least one recorded trial per neuron",
                          f"all-NaN neuron(s) at unit index {', '.join(map(str, dead[:10]))}",
                          "drop those neurons")
    return t


def _responses_and_trials(Y, trials, func: str, n: int, *, y_param: str = "Y", mean_param: str = "trials"):
    """``(responses (n, n_neurons), trials or None)``: ``Y`` checked against the optional ``trials``, or,
    with ``Y`` None, the repeat mean of ``trials`` (NaN-padded repeats ignored)."""
    if Y is None:
        t = _check_trials(trials, func, n, None)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return _check_responses(np.nanmean(t, axis=2), mean_param, func, n), t
    Ym = _check_responses(Y, y_param, func, n)
    return Ym, (_check_trials(trials, func, n, Ym.shape[1]) if trials is not None else None)


def _flat_features(X, func: str) -> tuple[np.ndarray, tuple]:
    Xm = _numpy(X, "X", func)
    if Xm.ndim not in (2, 4) or 0 in Xm.shape:
        raise param_error("X", func, "features of shape (n_stimuli, n_features) or (n_stimuli, C, H, W)",
                          f"shape {Xm.shape}")
    if not np.isfinite(Xm).all():
        raise param_error("X", func, "finite (no NaN or inf)", f"{int((~np.isfinite(Xm)).sum())} non-finite "
                          f"value(s) in features of shape {Xm.shape}", "check the recording")
    return Xm.reshape(len(Xm), -1), Xm.shape[1:]


# -------------------------------------------------------------------------------------- the estimator
class EncodingModel(BaseEstimator):
    """Per-neuron ridge or lasso regression from a layer's features, scored by held-out Pearson r.

    A scikit-learn estimator (``get_params``, ``clone``): the constructor only stores settings,
    :meth:`fit` returns ``self``, learned state ends in ``_``.

    Parameters
    ----------
    layer : str, optional
        Name of the layer the features come from (a label for tables; not used in the fit).
    estimator : {"ridge", "lasso"}, default "ridge"
    alphas : array-like of float > 0, optional
        Penalties to search (one grid for all neurons). Default for ridge: ``n_alphas`` values
        log-spaced over 1e-4 .. 1e4 times the mean eigenvalue of the centred training Gram matrix
        (``trace(Xc Xc^T) / n_train``, the summed feature variance; the number of features when
        ``scale=True``), so the grid follows the feature count and scale; for lasso: ``n_alphas``
        values from the smallest penalty that zeroes all weights down to ``eps`` times it, per neuron
        (scikit-learn's grid).
    cv : int, default 5
        K of the K-fold cross-validation (shuffled, seeded) on the training stimuli.
    random_state : int, SeedSequence, Generator or None, default 0
        Seeds the train/test split and the CV folds.
    test_size : float in (0, 1), default 0.2
        Fraction of the stimuli held out (``ceil(test_size * n)``); the same split for every neuron.
    scale : bool, default False
        Standardise each feature (training mean and SD, ddof=0) before the penalised fit. Off by
        default: the features are fitted as recorded (as in the thesis, and scikit-learn's ``Ridge``).
        ``coef_`` is always in the original feature units, so with ``scale=True`` nearly silent
        features (tiny SD) get large weights and dominate ``weight_map_`` (on Cowley V4 the maps then
        peak at image corners instead of the receptive field); keep it off for weight maps.
    n_alphas : int, default 25
        Size of the default grids.
    eps : float, default 1e-2
        Lasso only: smallest / largest penalty of the default grid. Larger than scikit-learn's 1e-3:
        on Cowley V4 with ``netphys_vgg16`` ``conv4_1`` (8192 features) the CV optimum lies near 0.1
        of the largest penalty, and the penalties below 1e-2 of it take coordinate descent ~6x longer
        (about 10 s instead of 60 s per neuron on one core). A warning is issued when the optimum of
        any neuron is the smallest penalty of its grid.
    max_iter, tol : int, float
        Coordinate descent settings of the lasso.

    Attributes
    ----------
    coef_ : ndarray (n_neurons, n_features)
        Weights in the original feature units (flattened ``(C, H, W)`` in C order for map features):
        ``prediction = X @ coef_.T + intercept_``.
    intercept_ : ndarray (n_neurons,)
    alpha_ : ndarray (n_neurons,)
        Penalty chosen by CV (NaN for neurons with constant training responses).
    alphas_ : ndarray (n_alphas,) for ridge, (n_neurons, n_alphas) for lasso
        The grid searched.
    cv_mse_ : ndarray (n_neurons,)
        Mean CV squared error at ``alpha_``.
    r_ : xarray.DataArray, dims ("unit",)
        Pearson r between predicted and measured responses on the held-out stimuli.
    train_r_ : xarray.DataArray, dims ("unit",)
    r_corrected_, explainable_variance_, noise_ceiling_ : xarray.DataArray, dims ("unit",)
        Only when ``trials`` are given: ``r_ / sqrt(EV)`` with EV the explainable variance of the
        repeat-averaged held-out responses (:func:`netphys.stats.noise_corrected_r`).
    weight_map_ : xarray.DataArray, dims ("unit", "row", "col")
        For map features ``(C, H, W)``: :math:`\\Phi_{ij} = \\sum_m \\beta_{mij}^2`.
    filter_importance_ : xarray.DataArray, dims ("unit", "channel")
        :math:`I_m = \\sum_{ij} \\beta_{mij}^2`.
    feature_shape_ : tuple
        ``(C, H, W)`` or ``(F,)``.
    train_index_, test_index_ : ndarray of int
    n_features_in_ : int

    Notes
    -----
    Ridge, per neuron, on centred (optionally standardised) training features :math:`X_s` and centred responses
    :math:`y_c` minimises :math:`\\lVert y_c - X_s\\beta\\rVert^2 + \\alpha\\lVert\\beta\\rVert^2`
    (scikit-learn's ``Ridge``), solved in the dual: with the centred Gram matrix
    :math:`G = X_s X_s^\\top = Q\\Lambda Q^\\top`, :math:`\\beta = X_s^\\top Q(\\Lambda + \\alpha)^{-1}Q^\\top
    y_c`. One eigendecomposition per CV fold serves every penalty and every neuron (the fold's Gram
    matrix is re-centred on its training mean, so each fold fits its own intercept), which makes a
    per-neuron penalty by K-fold CV cheap for wide layers (``RidgeCV(alpha_per_target=True)`` only
    offers leave-one-out). Cost: one ``n_train x n_train x n_features`` product. Lasso: one
    ``sklearn.linear_model.LassoCV`` per neuron on the same folds.

    Neurons with constant training responses get ``coef_ = 0``, ``alpha_`` and ``r_`` NaN, with a
    :class:`~netphys.NetphysWarning`.

    References
    ----------
    .. [1] R. Abbasi-Asl, PhD thesis (UC Berkeley), ch. 3: ridge (default) or lasso from CNN features to
       V4 spike rates; held-out correlation; average regression weight map and filter importance.
    .. [2] A. E. Hoerl, R. W. Kennard, "Ridge regression", Technometrics 12, 55-67 (1970).
    .. [3] R. Tibshirani, "Regression shrinkage and selection via the lasso", J. R. Stat. Soc. B 58,
       267-288 (1996).
    """

    def __init__(self, layer: str | None = None, estimator: str = "ridge", alphas=None, cv: int = 5,
                 random_state=0, test_size: float = 0.2, *, scale: bool = False, n_alphas: int = 25,
                 eps: float = 1e-2, max_iter: int = 5000, tol: float = 1e-4):
        self.layer = layer
        self.estimator = estimator
        self.alphas = alphas
        self.cv = cv
        self.random_state = random_state
        self.test_size = test_size
        self.scale = scale
        self.n_alphas = n_alphas
        self.eps = eps
        self.max_iter = max_iter
        self.tol = tol

    # ------------------------------------------------------------------ settings
    def _check_split(self, n: int, func: str) -> tuple[int, int, int]:
        """(cv, n_train, n_test) for ``n`` stimuli, or a templated error naming ``cv`` / ``test_size``."""
        cv = check_int(self.cv, "cv", func, min_value=2)
        ts = self.test_size
        if isinstance(ts, bool) or not isinstance(ts, numbers.Real) or not 0 < ts < 1:
            raise param_error("test_size", func, "a number in (0, 1)", ts)
        n_test = math.ceil(ts * n)
        n_train = n - n_test
        if n_test < 2:
            raise param_error("test_size", func, f"large enough to hold out >= 2 of the {n} stimuli", ts)
        if n_train < max(cv, 3):
            raise param_error("cv", func, f"<= the number of training stimuli ({n_train} of {n} stimuli after "
                              f"holding out test_size={ts}) with >= 3 training stimuli", cv,
                              "use fewer folds or more stimuli")
        return cv, n_train, n_test

    def _grid(self, func: str):
        if self.alphas is None:
            return check_int(self.n_alphas, "n_alphas", func, min_value=1)
        try:
            a = np.atleast_1d(np.asarray(self.alphas, dtype=np.float64))
        except (TypeError, ValueError):
            a = np.array([np.nan])
        if a.ndim != 1 or a.size == 0 or not np.all(np.isfinite(a)) or np.any(a <= 0):
            raise param_error("alphas", func, "None or a non-empty 1-D array of finite penalties > 0", self.alphas)
        return np.sort(a)

    # ------------------------------------------------------------------ fit
    def fit(self, X, Y=None, trials=None):
        """Fit one model per neuron on the training split; score it on the held-out split.

        Parameters
        ----------
        X : array-like, tensor or xarray.DataArray, (n_stimuli, C, H, W) or (n_stimuli, n_features)
            A layer's features (e.g. :func:`layer_features`); map features give weight maps.
        Y : array-like or xarray.DataArray, (n_stimuli, n_neurons) or (n_stimuli,), optional
            Responses (repeat-averaged spike counts). Default: the ``nanmean`` of ``trials`` over
            repeats.
        trials : array-like or xarray.DataArray, (n_stimuli, n_neurons, n_repeats), optional
            Single trials, NaN-padded for unequal repeats: enables ``r_corrected_``.

        Returns
        -------
        self

        Raises
        ------
        NetphysError
            Non-finite features or responses (naming the neurons, all-NaN ones marked), shapes that do
            not match, fewer training stimuli than ``cv`` folds (naming ``cv``), an all-NaN neuron in
            ``trials``, bad ``estimator``, ``alphas``, ``test_size`` or ``random_state``.
        """
        func = "EncodingModel.fit"
        check_choice(self.estimator, "estimator", func, ("ridge", "lasso"))
        Xf, shape = _flat_features(X, func)
        n = len(Xf)
        if Y is None and trials is None:
            raise param_error("Y", func, "responses (n_stimuli, n_neurons), or trials to average", None)
        Ym, t = _responses_and_trials(Y, trials, func, n)
        coords_src = trials if Y is None else Y if isinstance(Y, xr.DataArray) else trials
        cv, n_train, n_test = self._check_split(n, func)
        grid = self._grid(func)
        rng = check_random_state(self.random_state, func)
        perm = rng.permutation(n)
        test, train = np.sort(perm[:n_test]), np.sort(perm[n_test:])
        fold_seed = int(rng.integers(2**31 - 1))
        Xtr, Ytr = Xf[train], Ym[train]
        mx = Xtr.mean(axis=0)
        sx = Xtr.std(axis=0) if self.scale else np.ones(Xf.shape[1])
        sx = np.where(sx > 0, sx, 1.0)
        Xs = (Xtr - mx) / sx
        const = np.ptp(Ytr, axis=0) == 0
        if self.estimator == "ridge":
            coef_s, alpha, alphas, cv_mse = _ridge_kfold(Xs, Ytr, grid, cv, fold_seed, const)
        else:
            coef_s, alpha, alphas, cv_mse = self._lasso(Xs, Ytr, grid, cv, fold_seed, const, func)
        self.coef_ = coef_s / sx[None, :]
        self.intercept_ = Ytr.mean(axis=0) - self.coef_ @ mx
        self.alpha_, self.alphas_, self.cv_mse_ = alpha, alphas, cv_mse
        self.feature_shape_ = tuple(int(s) for s in shape)
        self.n_features_in_ = Xf.shape[1]
        self.train_index_, self.test_index_ = train, test
        self._unit_coords = _unit_coords(coords_src, Ym.shape[1])
        lowest = alphas[..., 0] if np.ndim(alphas) == 2 else alphas[0]
        at_edge = np.flatnonzero(~const & (alpha == lowest)) if np.shape(alphas)[-1] > 1 else []
        if len(at_edge):
            warnings.warn(f"{func}: for {len(at_edge)} neuron(s) the CV optimum is the smallest penalty of the "
                          "grid; pass smaller alphas (lasso: or lower eps)", NetphysWarning, stacklevel=2)
        if const.any():
            idx = np.flatnonzero(const)
            warnings.warn(f"{func}: {len(idx)} neuron(s) have constant training responses (unit index "
                          f"{', '.join(map(str, idx[:10]))}); they are not fitted and their r is NaN",
                          NetphysWarning, stacklevel=2)
        P = Xf @ self.coef_.T + self.intercept_
        attrs = {"estimator": self.estimator, "layer": str(self.layer), "n_train": int(n_train),
                 "n_test": int(n_test), "cv": cv, "random_state": repr(self.random_state),
                 "encoding_version": ENCODING_VERSION}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            r_test = pearson_r(P[test], Ym[test])
            r_train = pearson_r(P[train], Ym[train])
        r_test[const], r_train[const] = np.nan, np.nan
        self.r_ = xr.DataArray(r_test, dims=("unit",), coords=self._unit_coords, name="r",
                               attrs={**attrs, "split": "test"})
        self.train_r_ = xr.DataArray(r_train, dims=("unit",), coords=self._unit_coords, name="r",
                                     attrs={**attrs, "split": "train"})
        for name in ("r_corrected_", "explainable_variance_", "noise_ceiling_"):
            self.__dict__.pop(name, None)
        if t is not None:
            for name, da in self._corrected(t, func).items():
                setattr(self, name + "_", da)
        log.debug("%s: %d neurons, median held-out r %.3f", func, Ym.shape[1],
                  float(np.nanmedian(r_test)) if np.isfinite(r_test).any() else np.nan)
        return self

    def _lasso(self, Xs, Ytr, grid, cv, seed, const, func):
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import LassoCV
        from sklearn.model_selection import KFold

        max_iter = check_int(self.max_iter, "max_iter", func, min_value=1)
        for name in ("eps", "tol"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not v > 0:
                raise param_error(name, func, "a number > 0", v)
        folds = KFold(n_splits=cv, shuffle=True, random_state=seed)
        n_neurons = Ytr.shape[1]
        n_grid = grid if isinstance(grid, int) else len(grid)
        coef = np.zeros((n_neurons, Xs.shape[1]))
        alpha = np.full(n_neurons, np.nan)
        alphas = np.full((n_neurons, n_grid), np.nan)
        cv_mse = np.full(n_neurons, np.nan)
        not_converged = 0
        for j in np.flatnonzero(~const):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", ConvergenceWarning)
                m = LassoCV(alphas=grid if isinstance(grid, int) else grid[::-1], eps=self.eps, cv=folds,
                            max_iter=max_iter, tol=self.tol).fit(Xs, Ytr[:, j])
            not_converged += any(issubclass(w.category, ConvergenceWarning) for w in caught)
            coef[j], alpha[j] = m.coef_, m.alpha_
            alphas[j] = m.alphas_[::-1]
            cv_mse[j] = m.mse_path_.mean(axis=1)[np.argmin(np.abs(m.alphas_ - m.alpha_))]
        if not_converged:
            warnings.warn(f"{func}: coordinate descent did not converge for {not_converged} neuron(s); raise "
                          f"max_iter (now {max_iter}) or tol", NetphysWarning, stacklevel=3)
        return coef, alpha, alphas, cv_mse

    def _corrected(self, t: np.ndarray, func: str) -> dict:
        """r_corrected, explainable_variance and noise_ceiling (DataArrays) from trials of all fit stimuli."""
        tt = t[self.test_index_]
        try:
            ev = explainable_variance(tt)
        except NetphysError as exc:
            raise NetphysError(f"{func}: the held-out trials cannot give a noise ceiling: {exc}") from None
        ceiling = noise_ceiling_r(tt)
        r = self.r_.values
        ok = np.isfinite(ceiling) & (ceiling > 0)
        if (~ok & np.isfinite(r)).any():
            idx = np.flatnonzero(~ok & np.isfinite(r))
            warnings.warn(f"{func}: {len(idx)} neuron(s) have an estimated signal variance <= 0 on the held-out "
                          f"stimuli (unit index {', '.join(map(str, idx[:10]))}); their corrected r is NaN",
                          NetphysWarning, stacklevel=3)
        rc = np.where(ok, r / np.where(ok, ceiling, 1.0), np.nan)
        attrs = {**self.r_.attrs, "correction": "r / sqrt(explainable variance of the repeat-averaged held-out "
                 "responses) (CC_norm, Schoppe et al. 2016; unequal repeats)"}
        uc = self._unit_coords
        return {"r_corrected": xr.DataArray(rc, dims=("unit",), coords=uc, name="r_corrected", attrs=attrs),
                "explainable_variance": xr.DataArray(ev, dims=("unit",), coords=uc, name="explainable_variance",
                                                     attrs={"of": "mean", "split": "test"}),
                "noise_ceiling": xr.DataArray(ceiling, dims=("unit",), coords=uc, name="noise_ceiling",
                                              attrs={"split": "test"})}

    def noise_corrected(self, trials) -> xr.DataArray:
        """Noise-corrected held-out r from single trials of the stimuli passed to :meth:`fit`.

        The same computation as ``fit(..., trials=trials)`` (which stores it as ``r_corrected_``), for a
        model fitted without trials; the estimator is not modified.

        Parameters
        ----------
        trials : array-like or xarray.DataArray, (n_stimuli, n_neurons, n_repeats)
            NaN-padded trials of *all* stimuli of the fit, in the same order; the held-out ones
            (``test_index_``) are used.

        Returns
        -------
        xarray.DataArray, dims ("unit",)
            ``r_ / noise ceiling`` of the held-out stimuli.

        Raises
        ------
        NetphysError
            Wrong shape, an all-NaN neuron, or held-out trials that cannot estimate the noise.
        """
        func = "EncodingModel.noise_corrected"
        check_is_fitted(self, "r_")
        n = len(self.train_index_) + len(self.test_index_)
        return self._corrected(_check_trials(trials, func, n, self.coef_.shape[0]), func)["r_corrected"]

    # ------------------------------------------------------------------ use
    def predict(self, X) -> np.ndarray:
        """Predicted responses ``X @ coef_.T + intercept_``, (n_stimuli, n_neurons)."""
        func = "EncodingModel.predict"
        check_is_fitted(self, "coef_")
        Xf, shape = _flat_features(X, func)
        if Xf.shape[1] != self.coef_.shape[1]:
            raise param_error("X", func, f"features of shape (n, {', '.join(map(str, self.feature_shape_))}) "
                              "as in fit", f"shape {(len(Xf),) + tuple(shape)}")
        return Xf @ self.coef_.T + self.intercept_

    def score(self, X, Y) -> xr.DataArray:
        """Pearson r between :meth:`predict` and ``Y`` per neuron (NaN where either is constant).

        Returns
        -------
        xarray.DataArray, dims ("unit",)
        """
        func = "EncodingModel.score"
        P = self.predict(X)
        Ym = _check_responses(Y, "Y", func, len(P))
        if Ym.shape != P.shape:
            raise param_error("Y", func, f"shape {P.shape} (stimuli of X x fitted neurons)", f"shape {Ym.shape}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            r = pearson_r(P, Ym)
        return xr.DataArray(r, dims=("unit",), coords=self._coords(), name="r")

    def _coords(self) -> dict:
        return getattr(self, "_unit_coords", None) or {"unit": ("unit", np.arange(self.coef_.shape[0]))}

    def _maps(self, func: str) -> np.ndarray:
        check_is_fitted(self, "coef_")
        shape = getattr(self, "feature_shape_", (self.coef_.shape[1],))
        if len(shape) != 3:
            raise NetphysError(f"{func} needs features with a spatial layout (n_stimuli, C, H, W); this model "
                               f"was fitted on flat features of shape (n, {', '.join(map(str, shape))})")
        return np.asarray(self.coef_).reshape((-1,) + tuple(shape))

    @property
    def weight_map_(self) -> xr.DataArray:
        """Sum of squared weights over channels at each location, dims ("unit", "row", "col")."""
        W = self._maps("EncodingModel.weight_map_")
        return xr.DataArray((W ** 2).sum(axis=1), dims=("unit", "row", "col"),
                            coords={**self._coords(), "row": np.arange(W.shape[2]), "col": np.arange(W.shape[3])},
                            name="weight_map", attrs={"definition": "sum over channels of coef_^2 (original units)"})

    @property
    def filter_importance_(self) -> xr.DataArray:
        """Sum of squared weights over locations per channel, dims ("unit", "channel")."""
        W = self._maps("EncodingModel.filter_importance_")
        return xr.DataArray((W ** 2).sum(axis=(2, 3)), dims=("unit", "channel"),
                            coords={**self._coords(), "channel": np.arange(W.shape[1])}, name="filter_importance",
                            attrs={"definition": "sum over locations of coef_^2 (original units)"})

    def to_dataset(self) -> xr.Dataset:
        """The per-neuron results as one Dataset (``r``, ``train_r``, ``alpha`` and, when available,
        ``r_corrected``, ``explainable_variance``, ``noise_ceiling``, ``weight_map``,
        ``filter_importance``); settings in ``attrs``."""
        check_is_fitted(self, "r_")
        out = {"r": self.r_, "train_r": self.train_r_,
               "alpha": xr.DataArray(self.alpha_, dims=("unit",), coords=self._coords())}
        for name in ("r_corrected", "explainable_variance", "noise_ceiling"):
            if hasattr(self, name + "_"):
                out[name] = getattr(self, name + "_")
        if len(self.feature_shape_) == 3:
            out["weight_map"] = self.weight_map_
            out["filter_importance"] = self.filter_importance_
        ds = xr.Dataset(out)
        ds.attrs = {**self.r_.attrs, "model": "features", "feature_shape": list(self.feature_shape_)}
        ds.attrs.pop("split", None)
        return ds


def _ridge_kfold(Xs: np.ndarray, Y: np.ndarray, grid, cv: int, seed: int, const: np.ndarray):
    """Per-neuron ridge with the penalty chosen by K-fold CV, in the dual (see EncodingModel Notes).

    ``Xs`` are the standardised (training-centred) features. Returns (coef on Xs, alpha, alphas, cv_mse).
    """
    from sklearn.model_selection import KFold

    n, n_neurons = Y.shape
    G = Xs @ Xs.T                                             # centred on the whole training set
    if isinstance(grid, int):
        scale = max(float(np.trace(G)) / n, np.finfo(float).tiny)
        alphas = scale * np.logspace(-4, 4, grid)
    else:
        alphas = np.asarray(grid, dtype=np.float64)
    sse = np.zeros((len(alphas), n_neurons))
    for a, v in KFold(n_splits=cv, shuffle=True, random_state=seed).split(np.zeros(n)):
        Gaa, Gva = G[np.ix_(a, a)], G[np.ix_(v, a)]
        ra, rv, c = Gaa.mean(axis=1), Gva.mean(axis=1), Gaa.mean()
        Gc = Gaa - ra[:, None] - ra[None, :] + c               # re-centred on the fold's training mean
        Gcv = Gva - rv[:, None] - ra[None, :] + c
        lam, Q = np.linalg.eigh(Gc)
        lam = np.clip(lam, 0.0, None)
        ya = Y[a].mean(axis=0)
        Z = Q.T @ (Y[a] - ya)
        B = Gcv @ Q
        for k, alpha in enumerate(alphas):
            P = B @ (Z / (lam[:, None] + alpha)) + ya
            sse[k] += ((Y[v] - P) ** 2).sum(axis=0)
    # smallest CV error; ties go to the larger penalty
    best = len(alphas) - 1 - np.argmin(sse[::-1], axis=0)
    alpha = alphas[best]
    lam, Q = np.linalg.eigh(G)
    lam = np.clip(lam, 0.0, None)
    Z = Q.T @ (Y - Y.mean(axis=0))
    D = Q @ (Z / (lam[:, None] + alpha[None, :]))              # dual coefficients (n, n_neurons)
    coef = (Xs.T @ D).T
    coef[const] = 0.0
    alpha = np.where(const, np.nan, alpha)
    cv_mse = np.where(const, np.nan, sse[best, np.arange(n_neurons)] / n)
    return coef, alpha, alphas, cv_mse


# ------------------------------------------------------------------------------------- from a network
def _image_stack(images, func: str) -> np.ndarray:
    if hasattr(images, "detach"):
        images = images.detach().cpu().numpy()
    a = np.asarray(images)
    if a.ndim == 3:
        a = np.repeat(a[..., None], 3, axis=-1)
    if a.ndim == 4 and a.shape[-1] != 3 and a.shape[1] == 3:
        a = np.moveaxis(a, 1, -1)
    if a.ndim != 4 or a.shape[-1] != 3 or a.shape[0] == 0 or a.shape[1] != a.shape[2]:
        raise param_error("images", func, "square RGB images (n, H, W, 3) (e.g. NeuralDataset.images)",
                          f"an array of shape {a.shape}")
    if a.dtype == np.uint8:
        return a
    if a.dtype.kind != "f" or not np.all(np.isfinite(a)) or a.min() < 0 or a.max() > 1:
        raise param_error("images", func, "uint8 in [0, 255] or finite floats in [0, 1]", f"dtype {a.dtype}")
    return np.round(a * 255).astype(np.uint8)


def _resize(a: np.ndarray, size: int) -> np.ndarray:
    """uint8 (n, H, W, 3) -> uint8 (n, size, size, 3), bilinear with antialiasing."""
    import torch
    from torch.nn import functional as F

    if a.shape[1] == size:
        return a
    out = []
    for i in range(0, len(a), 256):
        x = torch.from_numpy(np.ascontiguousarray(a[i:i + 256])).permute(0, 3, 1, 2).float()
        y = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        out.append(y.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy())
    return np.concatenate(out)


def layer_features(model, layer: str | None, images, *, site: str = "post", input_size: int | None = None,
                   grid: int | None = None, batch_size: int = 64, device=None) -> xr.DataArray:
    """All features of one layer for a stack of images, with their spatial layout.

    Parameters
    ----------
    model : nn.Module or GaborBank
        A network (e.g. ``load_model("netphys_vgg16")``, ``load_model("hed_vgg16")``,
        ``load_model("efficientnet_lite0")``), or a :class:`~netphys.readout.gabor.GaborBank` (then
        ``layer`` must be None or ``"gabor"``, and ``grid`` is the bank's own).
    layer : str or None
        A layer alias or call site (as :func:`netphys.recording.record`).
    images : array-like (n, H, W, 3) uint8, or float in [0, 1]
        E.g. ``NeuralDataset.images`` (Cowley V4: 112 x 112). Resized (bilinear, antialiased) to the
        network's input size, then preprocessed with the model's own preprocessing.
    site : {"post", "pre"}, default "post"
        After the layer's activation (default: rectified features, as in the thesis) or before.
    input_size : int, optional
        Pixels the images are resized to; default ``model_info(model).input_size``, else the image size.
    grid : int, optional
        Average-pool each feature map to ``grid`` x ``grid`` (adaptive pooling) -- for wide early
        layers of 224 px networks (``hed_vgg16`` ``conv2_1``: 128 x 112 x 112 features per image).
        Images are then recorded in chunks of 256, so only the pooled features are kept.
        Default: the native resolution.
    batch_size : int, default 64
    device : str or torch.device, optional

    Returns
    -------
    xarray.DataArray, float32
        dims ("stimulus", "channel", "row", "col") for conv layers; ("stimulus", "unit") for fully
        connected layers; ``attrs`` model, weights, layer, site, input_size, grid.

    Raises
    ------
    NetphysError
        Bad images, an unknown layer (listing valid ones), a size the trained model does not take,
        a ``grid`` < 1.
    """
    import torch
    from torch.nn import functional as F

    from ..models.loading import model_info
    from ..recording import record
    from ..stimuli import StimulusSet
    from .gabor import GaborBank

    func = "layer_features"
    a = _image_stack(images, func)
    batch_size = check_int(batch_size, "batch_size", func, min_value=1)
    if isinstance(model, GaborBank):
        if layer not in (None, "gabor"):
            raise param_error("layer", func, "None or 'gabor' for a GaborBank", layer)
        return model.transform(a, batch_size=batch_size)
    if grid is not None:
        grid = check_int(grid, "grid", func, min_value=1)
    info = model_info(model)
    size = input_size or int(info.input_size or 0) or a.shape[1]
    size = check_int(size, "input_size", func, min_value=8)
    pp = info.preprocess
    if pp is None:
        from ..stimuli import Preprocess
        pp = Preprocess.imagenet(size)
    pp = dataclasses.replace(pp, resize=size, crop=size)
    chunk = len(a) if grid is None else 256
    parts, rec = [], None
    for i in range(0, len(a), chunk):
        stim = StimulusSet.from_arrays(_resize(a[i:i + chunk], size), preprocess=pp, name="encoding")
        rec = record(model, stim, [layer], units="all", site=site, batch_size=batch_size, device=device)
        ch, row, col = (rec.coords[c].values for c in ("channel", "row", "col"))
        if (row < 0).any():                                   # a fully connected layer
            parts.append(rec.values)
            continue
        C, H, W = int(ch.max()) + 1, int(row.max()) + 1, int(col.max()) + 1
        maps = np.zeros((rec.sizes["stimulus"], C, H, W), dtype=np.float32)
        maps[:, ch, row, col] = rec.values
        if grid is not None and (H, W) != (grid, grid):
            maps = F.adaptive_avg_pool2d(torch.from_numpy(maps), grid).numpy()
        parts.append(maps)
    out = np.concatenate(parts)
    attrs = {"model": info.name, "weights": str(info.weights), "layer": str(layer), "site": site,
             "input_size": int(size), "grid": "native" if grid is None else int(grid)}
    if out.ndim == 2:
        return xr.DataArray(out, dims=("stimulus", "unit"), coords={"stimulus": np.arange(len(out)),
                            "channel": ("unit", rec.coords["channel"].values)}, name="features", attrs=attrs)
    C, H, W = out.shape[1:]
    return xr.DataArray(out, dims=("stimulus", "channel", "row", "col"),
                        coords={"stimulus": np.arange(len(out)), "channel": np.arange(C), "row": np.arange(H),
                                "col": np.arange(W)}, name="features", attrs=attrs)


def fit_encoding_models(model, layer: str | None, images, responses, *, trials=None,
                        encoder: EncodingModel | None = None, site: str = "post", input_size: int | None = None,
                        grid: int | None = None, batch_size: int = 64, device=None) -> xr.Dataset:
    """Fit encoding models of every neuron from one layer of a network (or the Gabor baseline).

    Parameters
    ----------
    model : nn.Module or GaborBank
    layer : str or None
        See :func:`layer_features`.
    images : array-like (n, H, W, 3)
        The session's images, e.g. ``NeuralDataset.images``.
    responses : array-like or xarray.DataArray, (n, n_neurons) or (n, n_neurons, n_repeats)
        Repeat-averaged responses (``NeuralDataset.responses("V4")``), or NaN-padded single trials
        (``average_repeats=False``), which are averaged and also used for the noise correction.
    trials : array-like, (n, n_neurons, n_repeats), optional
        Single trials for the noise correction when ``responses`` are averages.
    encoder : EncodingModel, optional
        Settings (cloned, not modified); default ``EncodingModel(layer=layer)``.
    site, input_size, grid, batch_size, device
        As :func:`layer_features`.

    Returns
    -------
    xarray.Dataset, dim "unit"
        :meth:`EncodingModel.to_dataset`: ``r`` (held-out), ``train_r``, ``alpha``, and with trials
        ``r_corrected``, ``explainable_variance``, ``noise_ceiling``; for conv layers ``weight_map``
        (unit, row, col) and ``filter_importance`` (unit, channel). ``attrs``: model, weights, layer,
        site, estimator, n_train, n_test, ... (see :func:`encoding_table`).

    Raises
    ------
    NetphysError
        Responses with NaN (naming ``responses`` and the neurons) or of the wrong length, an all-NaN
        neuron in the trials, fewer images than CV folds need (naming ``cv``) -- all checked before
        the network runs -- and anything :func:`layer_features` or :meth:`EncodingModel.fit` raises.
    """
    func = "fit_encoding_models"
    n = len(_image_stack(images, func))
    est = clone(encoder) if encoder is not None else EncodingModel(layer=layer)
    if not isinstance(est, EncodingModel):
        raise param_error("encoder", func, "an EncodingModel or None", type(encoder).__name__)
    if est.layer is None:
        est.set_params(layer=layer)
    is_trials = (isinstance(responses, xr.DataArray) and "repeat" in responses.dims) or np.ndim(responses) == 3
    if is_trials:
        if trials is not None:
            raise param_error("trials", func, "None when responses are single trials (3-D)", "an array")
        Y, t = _responses_and_trials(None, responses, func, n, mean_param="responses")
    else:
        Y, t = _responses_and_trials(responses, trials, func, n, y_param="responses")
    coords_src = responses
    est._check_split(n, func)
    X = layer_features(model, layer, images, site=site, input_size=input_size, grid=grid,
                       batch_size=batch_size, device=device)
    Yda = xr.DataArray(Y, dims=("stimulus", "unit"), coords=_unit_coords(coords_src, Y.shape[1]))
    est.fit(X.values, Yda, trials=t)
    ds = est.to_dataset()
    ds.attrs.update({k: v for k, v in X.attrs.items() if k in ("model", "weights", "layer", "site", "input_size",
                                                                 "grid", "mode", "nonlinearity")})
    ds.attrs["site"] = ds.attrs.get("site", "n/a")
    return ds


# ------------------------------------------------------------------------------------------- table
def encoding_table(results) -> pd.DataFrame:
    """Summary of encoding models: one row per (model, layer, estimator), like the thesis's Fig. 3.2.

    Parameters
    ----------
    results : iterable of xarray.Dataset or EncodingModel, or mapping name -> one of them
        Outputs of :func:`fit_encoding_models` (or fitted estimators, whose model name is "features").
        With a mapping, a key ``(model, layer)`` or ``str`` overrides the model (and layer) name.

    Returns
    -------
    pandas.DataFrame
        Index (model, layer, estimator); columns ``n_neurons`` (finite r), ``median_r``, ``mean_r``,
        ``median_r_corrected``, ``mean_r_corrected``, ``fev`` (mean of ``r_corrected**2``, the
        fraction of the explainable variance explained) -- NaN without trials.

    Raises
    ------
    NetphysError
        An element that is neither, a fitted model missing ``r_``, or the same row twice.
    """
    func = "encoding_table"
    items = list(results.items()) if isinstance(results, Mapping) else [(None, r) for r in results]
    if not items:
        raise param_error("results", func, "a non-empty collection of encoding results", "nothing")
    rows, seen = [], set()
    for key, res in items:
        if isinstance(res, EncodingModel):
            try:
                res = res.to_dataset()
            except NotFittedError:
                raise param_error("results", func, "fitted EncodingModels", "an unfitted EncodingModel") from None
        if not isinstance(res, xr.Dataset) or "r" not in res:
            raise param_error("results", func, "Datasets from fit_encoding_models or fitted EncodingModels",
                              type(res).__name__)
        model, layer = str(res.attrs.get("model", "features")), str(res.attrs.get("layer", "None"))
        if isinstance(key, tuple) and len(key) == 2:
            model, layer = map(str, key)
        elif key is not None:
            model = str(key)
        est = str(res.attrs.get("estimator", "ridge"))
        if (model, layer, est) in seen:
            raise param_error("results", func, "one result per (model, layer, estimator)",
                              f"{(model, layer, est)} twice")
        seen.add((model, layer, est))
        r = res["r"].values
        rc = res["r_corrected"].values if "r_corrected" in res else np.full_like(r, np.nan)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            rows.append({"model": model, "layer": layer, "estimator": est, "n_neurons": int(np.isfinite(r).sum()),
                         "median_r": np.nanmedian(r), "mean_r": np.nanmean(r),
                         "median_r_corrected": np.nanmedian(rc), "mean_r_corrected": np.nanmean(rc),
                         "fev": np.nanmean(rc ** 2)})
    return pd.DataFrame(rows).set_index(["model", "layer", "estimator"])
