"""Sign ablation of a unit's input weights (the functional-segregation paper's intervention).

For one output unit of a linear or convolutional layer, the positive (or the negative) input weights are
sorted by decreasing magnitude and the top ``k`` are set to zero, ``k`` the largest number whose
cumulative share of the total positive (negative) weight is ``<= alpha``. ``alpha = 0`` is the intact
unit, ``alpha = 1`` removes every weight of that sign. :func:`sign_ablation` does it to the model for a
``with`` block and restores the weights bit-exactly afterwards; :func:`sign_ablation_readouts` gives
every sign x alpha condition of many units at once as rows of a readout matrix, so that the conditions'
activations on a set of inputs to the layer are one matrix product.

Notes
-----
For unit ``u`` with weight vector ``w`` (a conv unit's kernel flattened over input channels and kernel
positions) and sign ``s = +1`` (positive) or ``-1`` (negative): ``P = {i : s w_i > 0}``, ``T = sum_{i in P}
|w_i|``; sort ``P`` by decreasing ``|w_i|`` (ties in index order) into ``i_1, i_2, ...``; ``k`` is the
largest ``j`` with ``sum_{m <= j} |w_{i_m}| <= alpha T`` (to a relative tolerance of 1e-9, so that
``alpha = 1`` removes them all despite rounding); the ablated unit has ``w_{i_1..i_k} = 0`` and the same
bias (unless ``bias=True``, which also zeroes a bias of that sign). The achieved share is
``sum_{m <= k} |w_{i_m}| / T`` (0 when the unit has no weight of that sign).

References
----------
The functional-segregation paper (``seeds/functional-segregation.txt``): ablation of the positive and
negative inputs of output units, alpha = 0, 0.1, ..., 1; Table 2: total positive / total |negative|
weight per unit.
"""
from __future__ import annotations

import contextlib
import math
import numbers
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import xarray as xr
from torch import nn

from .._validation import check_choice, param_error
from ..models.layers import resolve_layer

__all__ = ["ALPHAS", "SIGNS", "SignAblation", "sign_ablation", "sign_ablation_mask", "sign_ablation_readouts",
           "sign_balance", "layer_weight", "readout_scores",
           "readouts_from_weights"]

#: The paper's ablation fractions.
ALPHAS = tuple(round(0.1 * i, 1) for i in range(11))
#: Which inputs are removed.
SIGNS = ("positive", "negative")
_RTOL = 1e-9


def layer_weight(model: nn.Module, layer: str, func: str = "sign_ablation") -> tuple[str, nn.Module]:
    """``(module name, module)`` of a linear or convolutional ``layer`` (its weights are what is ablated)."""
    li = resolve_layer(model, layer, func)
    mod = dict(model.named_modules())[li.module]
    w = getattr(mod, "weight", None)
    if not isinstance(w, torch.Tensor) or not isinstance(mod, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        raise param_error("layer", func, "a layer with input weights (nn.Linear or nn.Conv*)",
                          f"{layer!r} ({type(mod).__name__})", "name the classifier's output layer (e.g. 'fc8') "
                          "or a conv layer; list_layers(model) lists them")
    if isinstance(mod, nn.Conv2d) and mod.groups != 1:
        raise param_error("layer", func, "a conv layer with groups=1 (a unit sees every input channel)",
                          f"{layer!r} with groups={mod.groups}", "depthwise convolutions have one input per unit")
    return li.module, mod


def _check_alpha(alpha, func: str) -> float:
    ok = isinstance(alpha, numbers.Real) and not isinstance(alpha, bool) and math.isfinite(alpha) and 0 <= alpha <= 1
    if not ok:
        raise param_error("alpha", func, "a number in [0, 1] (the share of the sign's total weight removed)", alpha)
    return float(alpha)


def _check_units(units, n: int, func: str) -> np.ndarray:
    arr = np.atleast_1d(np.asarray(units))
    if arr.ndim != 1 or arr.size == 0 or arr.dtype.kind not in "iu":
        raise param_error("unit", func, "an int or a non-empty 1-D sequence of ints", units)
    bad = arr[(arr < 0) | (arr >= n)]
    if bad.size:
        raise param_error("unit", func, f"unit indices in [0, {n - 1}] (the layer has {n} output units)",
                          bad.tolist())
    return arr.astype(np.int64)


def sign_ablation_mask(weights, sign: str, alpha: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Which weights the ablation removes, for many units at once.

    Parameters
    ----------
    weights : array (units, F)
        Each row one unit's input weights (flattened).
    sign : {"positive", "negative"}
    alpha : float in [0, 1]

    Returns
    -------
    mask : bool array (units, F)
        True where the weight is zeroed.
    k : int array (units,)
        Number of weights removed.
    share : float array (units,)
        Achieved share of the sign's total weight removed (0 for a unit without weights of that sign).
    """
    func = "sign_ablation_mask"
    check_choice(sign, "sign", func, SIGNS)
    alpha = _check_alpha(alpha, func)
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 2:
        raise param_error("weights", func, "a 2-D array (units, inputs)", f"shape {w.shape}")
    if not np.isfinite(w).all():
        raise param_error("weights", func, "finite weights", "NaN or inf values")
    mag = w if sign == "positive" else -w
    mag = np.where(mag > 0, mag, 0.0)
    total = mag.sum(1)
    order = np.argsort(-mag, axis=1, kind="stable")
    sorted_mag = np.take_along_axis(mag, order, 1)
    cum = np.cumsum(sorted_mag, axis=1)
    limit = alpha * total * (1 + _RTOL)
    keep_going = (cum <= limit[:, None]) & (sorted_mag > 0)
    k = keep_going.sum(1)
    if alpha == 1:  # every weight of the sign, whatever the rounding of the cumulative sums
        k = (mag > 0).sum(1)
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(w.shape[1])[None, :].repeat(w.shape[0], 0), 1)
    mask = ranks < k[:, None]
    removed = np.where(mask, mag, 0.0).sum(1)
    share = np.divide(removed, total, out=np.zeros_like(total), where=total > 0)
    return mask, k.astype(np.int64), share


@dataclass
class SignAblation:
    """What :func:`sign_ablation` removed (``k`` weights, ``share`` of the sign's total weight)."""

    layer: str
    unit: int
    sign: str
    alpha: float
    k: int
    share: float
    n_sign: int
    total: float
    bias_removed: bool = False

    def describe(self) -> dict:
        return {"intervention": "sign_ablation", **self.__dict__}


@contextlib.contextmanager
def sign_ablation(model: nn.Module, layer: str, unit: int, sign: str = "positive", alpha: float = 1.0, *,
                  bias: bool = False):
    """Zero a unit's largest positive (or negative) input weights for a ``with`` block.

    Parameters
    ----------
    model : nn.Module
    layer : str
        A linear or conv layer (alias or module name).
    unit : int
        The output unit (row of a linear weight, output channel of a conv).
    sign : {"positive", "negative"}
    alpha : float in [0, 1]
        Remove the top-``k`` weights of that sign whose cumulative share of the sign's total weight is
        ``<= alpha`` (see the module notes).
    bias : bool, default False
        Also zero the unit's bias if it has the ablated sign.

    Yields
    ------
    SignAblation
        ``k``, the achieved ``share``, the number and total of weights of that sign.

    Raises
    ------
    NetphysError
        For an unknown layer, a layer without input weights, a unit out of range, an unknown sign or an
        alpha outside [0, 1] (before anything is changed).

    Notes
    -----
    The unit's weights (and bias) are copied before the change and copied back in ``finally``: the model
    is bit-identical afterwards, also when the block raises.
    """
    func = "sign_ablation"
    name, mod = layer_weight(model, layer, func)
    check_choice(sign, "sign", func, SIGNS)
    alpha = _check_alpha(alpha, func)
    if isinstance(unit, bool) or not isinstance(unit, numbers.Integral):
        raise param_error("unit", func, "an int", unit)
    u = int(_check_units(int(unit), mod.weight.shape[0], func)[0])
    w = mod.weight.data[u]
    mask, k, share = sign_ablation_mask(w.detach().reshape(1, -1).cpu().numpy(), sign, alpha)
    saved_w = w.detach().clone()
    b = getattr(mod, "bias", None)
    saved_b = b.data[u].detach().clone() if isinstance(b, torch.Tensor) else None
    s = 1.0 if sign == "positive" else -1.0
    flat = saved_w.reshape(-1).double()
    info = SignAblation(layer=layer, unit=u, sign=sign, alpha=alpha, k=int(k[0]), share=float(share[0]),
                        n_sign=int((s * flat > 0).sum()), total=float((s * flat).clamp(min=0).sum()))
    try:
        with torch.no_grad():
            m = torch.from_numpy(mask[0]).to(w.device).reshape(w.shape)
            mod.weight.data[u] = torch.where(m, torch.zeros_like(w), w)
            if bias and saved_b is not None and float(s * saved_b) > 0:
                mod.bias.data[u] = 0
                info.bias_removed = True
        yield info
    finally:
        with torch.no_grad():
            mod.weight.data[u] = saved_w
            if saved_b is not None:
                mod.bias.data[u] = saved_b


def sign_ablation_readouts(model: nn.Module, layer: str, units, *, alphas=ALPHAS, signs=SIGNS,
                           bias: bool = False) -> xr.Dataset:
    """Every sign x alpha condition of many units as readout rows (for a linear layer).

    Parameters
    ----------
    model : nn.Module
    layer : str
        An ``nn.Linear`` layer (e.g. a classifier's output layer).
    units : int or sequence of int
    alphas : sequence of float in [0, 1], default 0, 0.1, ..., 1
    signs : sequence of {"positive", "negative"}
    bias : bool, default False
        As in :func:`sign_ablation`.

    Returns
    -------
    xarray.Dataset
        ``weight`` (unit, condition, input) and ``bias`` (unit, condition), float64; ``k`` and ``share``
        (unit, condition); coordinates ``sign`` and ``alpha`` on ``condition``. ``alpha = 0`` appears once,
        as the intact control (``sign = "control"``): 2 signs x 11 alphas give 21 conditions. The
        activation of unit ``u`` under condition ``c`` for layer inputs ``X (n, F)`` is
        ``X @ weight[u, c] + bias[u, c]`` (:func:`readout_scores`).

    Raises
    ------
    NetphysError
        For a layer that is not ``nn.Linear`` (use :func:`sign_ablation` for conv units), a unit out of
        range, an unknown sign, an alpha outside [0, 1].
    """
    func = "sign_ablation_readouts"
    name, mod = layer_weight(model, layer, func)
    if not isinstance(mod, nn.Linear):
        raise param_error("layer", func, "an nn.Linear layer (its input is the readout's features)",
                          f"{layer!r} ({type(mod).__name__})", "use the sign_ablation context manager for conv units")
    u = _check_units(units, mod.out_features, func)
    W = mod.weight.detach().cpu().double().numpy()[u]
    b0 = (mod.bias.detach().cpu().double().numpy()[u] if mod.bias is not None else np.zeros(len(u)))
    ds = readouts_from_weights(W, b0, alphas=alphas, signs=signs, bias_ablation=bias, units=u)
    ds.attrs.update(layer=layer, module=name)
    return ds


def readouts_from_weights(weight, bias=None, *, alphas=ALPHAS, signs=SIGNS, bias_ablation: bool = False,
                          units=None) -> xr.Dataset:
    """:func:`sign_ablation_readouts` for any linear readout given by its weights (e.g. a neuron model).

    Parameters
    ----------
    weight : array (units, F)
    bias : array (units,), optional
    alphas, signs : as in :func:`sign_ablation_readouts`
    bias_ablation : bool
        Zero a bias of the ablated sign.
    units : array of int, optional
        Labels of the rows (default ``0..units-1``).
    """
    func = "readouts_from_weights"
    bias_flag = bool(bias_ablation)
    W = np.asarray(weight, dtype=np.float64)
    if W.ndim != 2 or not np.isfinite(W).all():
        raise param_error("weight", func, "a finite 2-D array (units, inputs)", f"shape {W.shape}")
    b0 = np.zeros(W.shape[0]) if bias is None else np.asarray(bias, dtype=np.float64).reshape(-1)
    if b0.shape != (W.shape[0],):
        raise param_error("bias", func, f"{W.shape[0]} values", f"shape {b0.shape}")
    u = np.arange(W.shape[0]) if units is None else np.asarray(units)
    signs = tuple(signs)
    for s in signs:
        check_choice(s, "signs", func, SIGNS)
    alphas = [_check_alpha(a, func) for a in alphas]
    conds = [("control", 0.0)] + [(s, a) for s in signs for a in alphas if a > 0]
    weights = np.empty((len(u), len(conds), W.shape[1]))
    biases = np.empty((len(u), len(conds)))
    ks = np.zeros((len(u), len(conds)), dtype=np.int64)
    shares = np.zeros((len(u), len(conds)))
    for c, (s, a) in enumerate(conds):
        if s == "control":
            weights[:, c], biases[:, c] = W, b0
            continue
        mask, k, share = sign_ablation_mask(W, s, a)
        weights[:, c] = np.where(mask, 0.0, W)
        sg = 1.0 if s == "positive" else -1.0
        biases[:, c] = np.where(bias_flag & (sg * b0 > 0), 0.0, b0)
        ks[:, c], shares[:, c] = k, share
    coords = {"unit": u, "condition": np.arange(len(conds)), "sign": ("condition", [c[0] for c in conds]),
              "alpha": ("condition", [c[1] for c in conds])}
    return xr.Dataset({"weight": (("unit", "condition", "input"), weights), "bias": (("unit", "condition"), biases),
                       "k": (("unit", "condition"), ks), "share": (("unit", "condition"), shares)},
                      coords=coords, attrs={"bias_ablated": int(bias_flag)})


def readout_scores(features, readouts: xr.Dataset) -> xr.DataArray:
    """Activations of every unit x condition from a layer's inputs: one matrix product.

    Parameters
    ----------
    features : array or tensor (n, F)
        The layer's inputs (e.g. penultimate features).
    readouts : xarray.Dataset
        From :func:`sign_ablation_readouts`.

    Returns
    -------
    xarray.DataArray (stimulus, unit, condition)
    """
    func = "readout_scores"
    X = features.detach().cpu().double().numpy() if isinstance(features, torch.Tensor) else np.asarray(features, float)
    F = readouts.sizes["input"]
    if X.ndim != 2 or X.shape[1] != F:
        raise param_error("features", func, f"a 2-D array (n, {F}) of the layer's inputs", f"shape {X.shape}")
    if not np.isfinite(X).all():
        raise param_error("features", func, "finite values", "NaN or inf", "check the recording")
    W = readouts["weight"].values  # (U, C, F)
    out = X @ W.reshape(-1, F).T + readouts["bias"].values.reshape(-1)
    out = out.reshape(X.shape[0], W.shape[0], W.shape[1])
    return xr.DataArray(out, dims=("stimulus", "unit", "condition"),
                        coords={"unit": readouts["unit"].values, "condition": readouts["condition"].values,
                                "sign": ("condition", readouts["sign"].values),
                                "alpha": ("condition", readouts["alpha"].values)})


def sign_balance(model: nn.Module, layer: str, units=None) -> pd.DataFrame:
    """Per unit: total positive and total |negative| input weight, and their ratio (the paper's Table 2).

    Returns
    -------
    pandas.DataFrame
        Indexed by ``unit``: ``n_positive``, ``n_negative``, ``total_positive``, ``total_negative``
        (as a positive number), ``ratio`` = positive / |negative| (inf when a unit has no negative weight).
    """
    func = "sign_balance"
    name, mod = layer_weight(model, layer, func)
    W = mod.weight.detach().cpu().double().reshape(mod.weight.shape[0], -1).numpy()
    u = np.arange(W.shape[0]) if units is None else _check_units(units, W.shape[0], func)
    W = W[u]
    pos = np.where(W > 0, W, 0).sum(1)
    neg = np.where(W < 0, -W, 0).sum(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(neg > 0, pos / np.where(neg > 0, neg, 1), np.inf)
    return pd.DataFrame({"n_positive": (W > 0).sum(1), "n_negative": (W < 0).sum(1), "total_positive": pos,
                         "total_negative": neg, "ratio": ratio}, index=pd.Index(u, name="unit"))

