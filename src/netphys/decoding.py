"""Category decoding from layer populations with linear SVMs on random sub-populations (A6).

``LinearSVM`` fits many independent one-vs-rest linear SVMs (one per sub-population) with
scikit-learn's ``LinearSVC(penalty="l2", loss="squared_hinge", dual=False)``, i.e.

    min_w  1/2 ||w||^2 + C sum_i max(0, 1 - y_i w.[x_i, s])^2   (s = intercept_scaling, y_i = +-1)

solved by liblinear's primal trust-region Newton method. (A batched L-BFGS solver of the same
objective in torch was tried and was ~10x slower on 2 CPU cores than liblinear, so it was dropped.)
"""
from __future__ import annotations

#: version of this module's estimators, part of every experiment cache key that uses them; bump it when
#: a change alters their numbers (1: balanced splits + LinearSVM as of netphys 0.1)
ESTIMATOR_VERSION = "1"

import logging

import numpy as np
import pandas as pd
import xarray as xr
from sklearn.base import BaseEstimator

from ._random import check_random_state
from ._validation import NetphysError, check_choice, check_finite, check_int, param_error

log = logging.getLogger(__name__)


class LinearSVM(BaseEstimator):
    """Batched one-vs-rest linear SVMs (squared hinge, L2), the objective of ``LinearSVC(dual=False)``.

    A scikit-learn estimator (``get_params``, ``set_params``, ``sklearn.base.clone``): the
    constructor only stores its settings, :meth:`fit` returns ``self`` and learned state ends in ``_``.

    Parameters
    ----------
    C : float
        Inverse regularisation strength (scikit-learn's convention).
    intercept_scaling : float
        The intercept is a weight on a constant feature of this value (regularised, as in LinearSVC).
    max_iter : int
        Solver iterations.
    tol : float
        Gradient tolerance.
    backend : {"sklearn"}

    Attributes
    ----------
    coef_ : ndarray (n_problems, n_classes, n_features)
    intercept_ : ndarray (n_problems, n_classes)
    classes_ : ndarray
    """

    def __init__(self, C: float = 1.0, *, intercept_scaling: float = 1.0, max_iter: int = 1000,
                 tol: float = 1e-6, backend: str = "sklearn"):
        self.C = C
        self.intercept_scaling = intercept_scaling
        self.max_iter = max_iter
        self.tol = tol
        self.backend = backend

    def fit(self, X, y):
        """Fit one model per leading index of ``X``.

        Parameters
        ----------
        X : array (n_problems, n_samples, n_features) or (n_samples, n_features)
        y : array (n_samples,) class labels shared by all problems
        """
        func = "LinearSVM.fit"
        check_choice(self.backend, "backend", func, ("sklearn",))
        X = check_finite(np.asarray(X, dtype=np.float64), "X", func)
        if X.ndim == 2:
            X = X[None]
        if X.ndim != 3:
            raise param_error("X", func, "an array (n_problems, n_samples, n_features)", f"shape {X.shape}")
        for name, v in (("C", self.C), ("intercept_scaling", self.intercept_scaling), ("tol", self.tol)):
            if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)) or not v > 0:
                raise param_error(name, func, "a number > 0", v)
        check_int(self.max_iter, "max_iter", func, min_value=1)
        y = np.asarray(y)
        if y.shape != (X.shape[1],):
            raise param_error("y", func, f"{X.shape[1]} labels", f"shape {y.shape}")
        self.classes_ = np.unique(y)
        if len(self.classes_) < 2:
            raise param_error("y", func, "labels of at least 2 classes", self.classes_.tolist())
        if self.backend == "sklearn":
            from sklearn.svm import LinearSVC

            coefs, ints = [], []
            for p in range(X.shape[0]):
                m = LinearSVC(C=self.C, dual=False, intercept_scaling=self.intercept_scaling,
                              max_iter=self.max_iter, tol=self.tol).fit(X[p], y)
                c, b = m.coef_, m.intercept_
                if len(self.classes_) == 2:  # sklearn keeps one row for binary problems
                    c, b = np.concatenate([-c, c]), np.concatenate([-b, b])
                coefs.append(c)
                ints.append(b)
            self.coef_, self.intercept_ = np.stack(coefs), np.stack(ints)
            return self
        raise NetphysError(f"unknown backend {self.backend!r}")  # pragma: no cover

    def decision_function(self, X) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim == 2:
            X = X[None]
        return np.einsum("pnd,pkd->pnk", X, self.coef_) + self.intercept_[:, None, :]

    def predict(self, X) -> np.ndarray:
        return self.classes_[self.decision_function(X).argmax(-1)]

    def problem_scores(self, X, y) -> np.ndarray:
        """Accuracy of each problem's model, shape (n_problems,)."""
        return (self.predict(X) == np.asarray(y)[None, :]).mean(axis=1)

    def score(self, X, y) -> float:
        """Mean accuracy over the problems (the accuracy itself for a single problem), a float.

        :meth:`problem_scores` gives one accuracy per problem.
        """
        return float(self.problem_scores(X, y).mean())


def balanced_split(labels, n_train: int = 250, n_val: int = 50, *, n_classes: int | None = 10,
                   random_state=0):
    """Class-balanced training/validation split.

    Draws ``n_classes`` random classes (all if fewer), then per class ``n_train`` training and
    ``n_val`` validation stimuli. When a class has fewer than ``n_train + n_val`` stimuli, every class
    gets the same reduced numbers, keeping the train:val ratio (stated in the returned dict).

    Returns
    -------
    dict with ``train``, ``val`` (index arrays), ``classes``, ``n_train``, ``n_val`` (per class) and
    ``reduced`` (bool).
    """
    func = "balanced_split"
    rng = check_random_state(random_state, func)
    labels = np.asarray(labels)
    classes = np.unique(labels[labels >= 0])
    if len(classes) < 2:
        raise param_error("labels", func, "labels of at least 2 classes", classes.tolist(),
                          "decoding needs labelled stimuli")
    if n_classes is not None and len(classes) > n_classes:
        classes = np.sort(rng.choice(classes, size=n_classes, replace=False))
    counts = np.array([(labels == c).sum() for c in classes])
    m = int(counts.min())
    reduced = m < n_train + n_val
    if reduced:
        frac = n_train / (n_train + n_val)
        tr = max(1, int(np.floor(m * frac)))
        va = m - tr
        if va < 1:
            raise param_error("labels", func, "at least 2 stimuli per class", int(m))
        log.info("classes have only %d stimuli; using %d train / %d val per class", m, tr, va)
        n_train, n_val = tr, va
    train, val = [], []
    for c in classes:
        idx = rng.permutation(np.flatnonzero(labels == c))
        train.append(idx[:n_train])
        val.append(idx[n_train:n_train + n_val])
    return {"train": np.concatenate(train), "val": np.concatenate(val), "classes": classes,
            "n_train": n_train, "n_val": n_val, "reduced": reduced}


def decode_layers(recording: xr.DataArray, *, n_train: int = 250, n_val: int = 50, n_classes: int = 10,
                  pool: int = 250, n_units: int = 100, n_subsamples: int = 200, C: float = 1.0,
                  backend: str = "sklearn", random_state=0, progress: bool = False) -> xr.Dataset:
    """Linear-SVM category decoding per layer from random sub-populations (Prune and distill, Fig. 5B).

    For each layer: a pool of ``pool`` recorded units, ``n_subsamples`` random draws of ``n_units``
    units from it, a linear SVM per draw trained on a class-balanced training split and scored on the
    validation split. Features are z-scored with training-set statistics.

    Parameters
    ----------
    recording : DataArray (stimulus, unit)
        From :func:`netphys.recording.record`, with a ``label`` stimulus coordinate.
    n_train, n_val : int
        Per class (250/50 in the paper; reduced proportionally when the data has fewer).
    n_classes : int
        Random classes to use (10).
    pool, n_units, n_subsamples : int
        250, 100, 200 in the paper. Layers with fewer units than ``n_units`` use all of them.
    C : float
    backend : {"sklearn"}
    random_state : int or Generator, default 0

    Returns
    -------
    xarray.Dataset
        ``train_accuracy`` and ``val_accuracy`` (layer, subsample), with layer coordinates kind and
        depth; ``attrs`` give the split sizes, the classes and the chance level.
    """
    from tqdm.auto import tqdm

    func = "decode_layers"
    if not isinstance(recording, xr.DataArray):
        raise param_error("recording", func, "an xarray.DataArray (stimulus, unit) from record()",
                          type(recording).__name__,
                          "record the network with netphys.recording.record, or wrap a stimulus x unit "
                          "array as xarray.DataArray(X, dims=('stimulus', 'unit'), coords={'label': "
                          "('stimulus', y), 'layer': ('unit', layers)})")
    if "stimulus" not in recording.dims or "unit" not in recording.dims or recording.ndim != 2:
        raise param_error("recording", func, "a DataArray with dims ('stimulus', 'unit')", recording.dims)
    if "layer" not in recording.coords:
        raise param_error("recording", func, "a recording with a 'layer' unit coordinate",
                          list(recording.coords))
    recording = recording.transpose("stimulus", "unit")
    for name, v, lo in (("n_units", n_units, 1), ("n_subsamples", n_subsamples, 1), ("pool", pool, 1),
                        ("n_train", n_train, 1), ("n_val", n_val, 1)):
        check_int(v, name, func, min_value=lo)
    if "label" not in recording.coords:
        raise param_error("recording", func, "a recording with a 'label' stimulus coordinate",
                          list(recording.coords))
    rng = check_random_state(random_state, func)
    split = balanced_split(recording.coords["label"].values, n_train, n_val, n_classes=n_classes,
                           random_state=rng)
    y_all = recording.coords["label"].values
    layers = list(dict.fromkeys(recording.coords["layer"].values))
    tr_acc = np.full((len(layers), n_subsamples), np.nan)
    va_acc = np.full_like(tr_acc, np.nan)
    kinds, depths, used = [], [], []
    for li, l in enumerate(tqdm(layers, desc="decode", disable=not progress)):
        cols = np.flatnonzero(recording.coords["layer"].values == l)
        kinds.append(str(recording.coords["kind"].values[cols[0]]) if "kind" in recording.coords else "")
        depths.append(int(recording.coords["depth"].values[cols[0]]) if "depth" in recording.coords else li + 1)
        if len(cols) > pool:
            cols = np.sort(rng.choice(cols, size=pool, replace=False))
        k = min(n_units, len(cols))
        used.append(k)
        A = recording.values[:, cols].astype(np.float64)
        Xtr, Xva = A[split["train"]], A[split["val"]]
        mu, sd = Xtr.mean(0), Xtr.std(0)
        sd[sd == 0] = 1.0
        Xtr, Xva = (Xtr - mu) / sd, (Xva - mu) / sd
        subs = np.stack([np.sort(rng.choice(len(cols), size=k, replace=False)) for _ in range(n_subsamples)])
        # chunk the batched fit to bound memory
        chunk = max(1, int(2e7 // max(1, Xtr.shape[0] * k)))
        for s in range(0, n_subsamples, chunk):
            sl = subs[s:s + chunk]
            Xt = Xtr[:, sl].transpose(1, 0, 2)
            Xv = Xva[:, sl].transpose(1, 0, 2)
            svm = LinearSVM(C=C, backend=backend).fit(Xt, y_all[split["train"]])
            tr_acc[li, s:s + chunk] = svm.problem_scores(Xt, y_all[split["train"]])
            va_acc[li, s:s + chunk] = svm.problem_scores(Xv, y_all[split["val"]])
    return xr.Dataset(
        {"train_accuracy": (("layer", "subsample"), tr_acc), "val_accuracy": (("layer", "subsample"), va_acc)},
        coords={"layer": layers, "subsample": np.arange(n_subsamples), "kind": ("layer", kinds),
                "depth": ("layer", depths), "n_units": ("layer", used)},
        attrs={"n_train_per_class": split["n_train"], "n_val_per_class": split["n_val"],
               "reduced_split": int(split["reduced"]), "classes": [int(c) for c in split["classes"]],
               "chance": 1.0 / len(split["classes"]), "C": C, "backend": backend, "pool": pool})


def decoding_summary(result: xr.Dataset) -> pd.DataFrame:
    """Mean and SD of training and validation accuracy per layer."""
    return pd.DataFrame({
        "depth": result["depth"].values, "kind": result["kind"].values,
        "train_mean": result["train_accuracy"].mean("subsample").values,
        "train_sd": result["train_accuracy"].std("subsample").values,
        "val_mean": result["val_accuracy"].mean("subsample").values,
        "val_sd": result["val_accuracy"].std("subsample").values}, index=result["layer"].values)
