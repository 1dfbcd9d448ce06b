"""Correlations between predicted and recorded responses, and their noise ceiling (D3).

* :func:`pearson_r` -- Pearson correlation along one axis, vectorised over units;
* :func:`variance_components` -- signal and noise variance of each neuron from repeated presentations
  (single trials ``(stimulus, unit, repeat)``, NaN-padded where a stimulus was shown fewer times);
* :func:`explainable_variance` -- the stimulus-driven fraction of the response variance (of the
  repeat-averaged response, or of single trials);
* :func:`noise_ceiling_r` -- the expected correlation of a perfect model with the averaged response;
* :func:`noise_corrected_r` -- a model's correlation divided by the noise ceiling (``CC_norm``).

Model and estimators
--------------------
For one neuron, trial ``j`` of stimulus ``i`` is :math:`r_{ij} = \\mu_i + \\varepsilon_{ij}`,
:math:`j = 1 \\dots n_i`, with the noise independent across trials, zero-mean, of variance
:math:`\\sigma_i^2` (it may differ between stimuli). The repeat count :math:`n_i` may differ between
stimuli (session 210325 of Cowley et al. has 6 to 10 repeats per image). The averaged response is
:math:`\\bar r_i = \\mu_i + \\bar\\varepsilon_i` with :math:`\\operatorname{Var}\\bar\\varepsilon_i =
\\sigma_i^2 / n_i`. Over the :math:`m` stimuli, with :math:`S^2(\\cdot)` the sample variance (ddof=1),

.. math::

    E\\,S^2(\\bar r) = S^2(\\mu) + \\frac{1}{m} \\sum_i \\frac{\\sigma_i^2}{n_i}

exactly (the cross terms vanish; :math:`E \\sum_i (\\bar\\varepsilon_i - \\bar{\\bar\\varepsilon})^2 =
\\frac{m-1}{m}\\sum_i \\sigma_i^2/n_i` for independent errors of unequal variance). With
:math:`s_i^2` the within-stimulus variance (ddof=1, unbiased for :math:`\\sigma_i^2`) the signal
variance

.. math:: \\hat S = S^2(\\bar r) - \\frac{1}{m}\\sum_i \\frac{s_i^2}{n_i}

is unbiased for :math:`S^2(\\mu)`, for any repeat counts. Stimuli shown once have no :math:`s_i^2`;
they enter :math:`S^2(\\bar r)` and use the pooled noise variance
:math:`\\hat\\sigma^2 = \\sum_i (n_i - 1) s_i^2 / \\sum_i (n_i - 1)` (homoscedastic assumption) in the
correction. With equal repeats it estimates the same quantity as the signal power of Sahani &
Linden [1]_, which uses the across-stimulus variance of each repeat instead of the within-stimulus
variance (the two differ by the spread of the per-repeat means and the ddof convention).

The explainable variance of the averaged response is :math:`EV = \\hat S / S^2(\\bar r)` (expected
value :math:`S^2(\\mu) / (S^2(\\mu) + \\overline{\\sigma^2/n})`), of single trials
:math:`\\hat S / (\\hat S + \\overline{s^2})`. A model prediction :math:`p` that does not see the test
trials' noise has :math:`\\operatorname{cov}(p, \\bar r) = \\operatorname{cov}(p, \\mu)`, so its
correlation with the noise-free response is

.. math:: r(p, \\mu) = \\frac{r(p, \\bar r)}{\\sqrt{EV}},

Schoppe et al.'s [2]_ normalised correlation :math:`CC_{norm} = CC_{abs} / CC_{max}` with
:math:`CC_{max} = \\sqrt{EV}` (Hsu et al. [3]_), here for unequal repeats.

References
----------
.. [1] M. Sahani, J. F. Linden, "How linear are auditory cortical responses?", NIPS 15 (2003).
.. [2] O. Schoppe, N. S. Harper, B. D. B. Willmore, A. J. King, J. W. H. Schnupp, "Measuring the
   performance of neural models", Front. Comput. Neurosci. 10:10 (2016).
.. [3] A. Hsu, A. Borst, F. E. Theunissen, "Quantifying variability in neural responses and its
   application for the validation of model predictions", Network 15, 91-109 (2004).
.. [4] R. Abbasi-Asl, "Structural compression of convolutional neural networks with applications in
   interpretability" (PhD thesis, UC Berkeley), ch. 3: noise-corrected correlation of V4 encoding
   models.
"""
from __future__ import annotations

import warnings

import numpy as np
import xarray as xr

from .._validation import NetphysWarning, check_choice, param_error

__all__ = [
    "explainable_variance",
    "noise_ceiling_r",
    "noise_corrected_r",
    "pearson_r",
    "variance_components",
]

TRIAL_DIMS = ("stimulus", "unit", "repeat")


def pearson_r(x, y, axis: int = 0):
    """Pearson correlation of ``x`` and ``y`` along ``axis``, for every other index at once.

    Parameters
    ----------
    x, y : array-like (numpy, torch or xarray), broadcastable to one shape
        E.g. predictions and responses of shape (n_stimuli, n_neurons).
    axis : int, default 0
        The axis of the observations (stimuli).

    Returns
    -------
    ndarray (float64)
        The broadcast shape without ``axis`` (a 0-d array for 1-D input). NaN where ``x`` or ``y`` is
        constant along ``axis`` or contains NaN.

    Raises
    ------
    NetphysError
        Shapes that do not broadcast, ``axis`` out of range, or fewer than 2 observations.

    Notes
    -----
    :math:`r = \\sum (x - \\bar x)(y - \\bar y) / \\sqrt{\\sum (x - \\bar x)^2 \\sum (y - \\bar y)^2}`,
    the same value as :func:`scipy.stats.pearsonr` per column.
    """
    func = "pearson_r"
    a, b = _float(x, "x", func), _float(y, "y", func)
    try:
        a, b = np.broadcast_arrays(a, b)
    except ValueError:
        raise param_error("y", func, f"an array that broadcasts with x (shape {a.shape})",
                          f"shape {b.shape}") from None
    if a.ndim == 0 or not -a.ndim <= axis < a.ndim:
        raise param_error("axis", func, f"an axis of the {a.ndim}-D inputs", axis)
    if a.shape[axis] < 2:
        raise param_error("x", func, "at least 2 observations along axis", f"shape {a.shape}, axis {axis}")
    # constant along axis (exactly: centring a constant leaves rounding residue, not zeros)
    const = (np.ptp(a, axis=axis) == 0) | (np.ptp(b, axis=axis) == 0)
    a = a - a.mean(axis=axis, keepdims=True)
    b = b - b.mean(axis=axis, keepdims=True)
    num = (a * b).sum(axis=axis)
    den = np.sqrt((a * a).sum(axis=axis) * (b * b).sum(axis=axis))
    ok = ~const & (den > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(ok, num / np.where(ok, den, 1.0), np.nan)
    return np.clip(r, -1.0, 1.0)


def _float(a, param: str, func: str) -> np.ndarray:
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    try:
        return np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError):
        raise param_error(param, func, "a numeric array", type(a).__name__) from None


def _trials(trials, func: str) -> tuple[np.ndarray, dict | None]:
    """(stimulus, unit, repeat) float64 array and the unit coordinates of a DataArray (or None)."""
    coords = None
    if isinstance(trials, xr.DataArray):
        if set(trials.dims) != set(TRIAL_DIMS):
            raise param_error("trials", func, "a DataArray with dims ('stimulus', 'unit', 'repeat')", trials.dims)
        trials = trials.transpose(*TRIAL_DIMS)
        coords = {k: ("unit", np.asarray(c.values)) for k, c in trials.coords.items() if c.dims == ("unit",)}
        coords.setdefault("unit", ("unit", np.arange(trials.sizes["unit"])))
    t = _float(trials, "trials", func)
    if t.ndim != 3 or 0 in t.shape:
        raise param_error("trials", func, "a non-empty 3-D array (stimulus, unit, repeat), NaN-padded "
                          "where a stimulus was shown fewer times", f"shape {t.shape}")
    if np.isinf(t).any():
        raise param_error("trials", func, "finite trials or NaN padding", "an array containing inf")
    return t, coords


def _components(t: np.ndarray, func: str) -> dict:
    """Per-unit variance components of NaN-padded trials ``t`` (stimulus, unit, repeat); see module notes."""
    ok = np.isfinite(t)
    n = ok.sum(axis=2)                                         # (stimulus, unit) repeats that exist
    dead = np.flatnonzero((n == 0).all(axis=0))
    if len(dead):
        shown = ", ".join(map(str, dead[:10])) + (", ..." if len(dead) > 10 else "")
        raise param_error("trials", func, "at least one recorded trial per neuron",
                          f"all-NaN neuron(s) at unit index {shown}", "drop those neurons")
    has = n > 0                                                # stimuli that count, per unit
    m = has.sum(axis=0)                                        # (unit,)
    total = np.where(ok, t, 0.0).sum(axis=2)
    mean = np.where(has, total / np.maximum(n, 1), np.nan)     # (stimulus, unit) trial averages
    dev = np.where(ok, t - mean[:, :, None], 0.0)
    ss = (dev ** 2).sum(axis=2)                                # within-stimulus sums of squares
    df = np.maximum(n - 1, 0)
    s2 = np.where(n >= 2, ss / np.maximum(df, 1), np.nan)      # unbiased within-stimulus variance
    df_sum = df.sum(axis=0)
    few = np.flatnonzero((m < 2) | (df_sum == 0))
    if len(few):
        shown = ", ".join(map(str, few[:10])) + (", ..." if len(few) > 10 else "")
        raise param_error("trials", func, "per neuron, >= 2 stimuli with a trial and >= 1 stimulus with "
                          ">= 2 repeats (to estimate the noise)", f"too few at unit index {shown}")
    pooled = ss.sum(axis=0) / df_sum                           # (unit,) pooled noise variance
    s2_used = np.where(n >= 2, s2, pooled[None, :])            # stimuli shown once: pooled estimate
    mean0 = np.where(has, mean, 0.0)
    grand = mean0.sum(axis=0) / m
    var_mean = (np.where(has, (mean0 - grand) ** 2, 0.0)).sum(axis=0) / (m - 1)    # S^2(rbar), ddof=1
    noise_of_mean = np.where(has, s2_used / np.maximum(n, 1), 0.0).sum(axis=0) / m  # mean sigma_i^2/n_i
    noise_trial = np.where(has, s2_used, 0.0).sum(axis=0) / m                       # mean sigma_i^2
    return {"signal_var": var_mean - noise_of_mean, "noise_var": noise_trial,
            "noise_var_of_mean": noise_of_mean, "var_of_mean": var_mean, "pooled_noise_var": pooled,
            "n_stimuli": m, "n_stimuli_noise": (n >= 2).sum(axis=0),
            "mean_repeats": np.where(has, n, 0).sum(axis=0) / m}


def variance_components(trials) -> xr.Dataset:
    """Signal and noise variance of every neuron from repeated presentations (unequal repeats allowed).

    Parameters
    ----------
    trials : array-like (n_stimuli, n_units, n_repeats) or xarray.DataArray
        Single-trial responses, NaN-padded where a stimulus was shown fewer times (e.g.
        ``NeuralDataset.responses("V4", average_repeats=False)``; a DataArray needs dims
        ``("stimulus", "unit", "repeat")`` in any order).

    Returns
    -------
    xarray.Dataset, dim ("unit",)
        ``signal_var`` (:math:`\\hat S`, may be < 0 by chance for neurons without stimulus drive),
        ``noise_var`` (mean single-trial noise variance :math:`\\overline{s^2}`), ``noise_var_of_mean``
        (:math:`\\overline{s^2/n}`, the noise left in the averaged response), ``var_of_mean``
        (:math:`S^2(\\bar r)`), ``pooled_noise_var``, ``n_stimuli`` (stimuli with >= 1 trial),
        ``n_stimuli_noise`` (stimuli with >= 2 trials, used for the noise estimate), ``mean_repeats``;
        unit coordinates of ``trials`` when it is a DataArray.

    Raises
    ------
    NetphysError
        Not 3-D, inf values, an all-NaN neuron (naming its unit index), or a neuron with fewer than 2
        stimuli with a trial or no stimulus with >= 2 repeats (the noise cannot be estimated).

    Notes
    -----
    The estimator and its derivation for unequal repeat counts are in the module notes
    (:mod:`netphys.stats.correlation`). Stimuli with no trial for a neuron are left out for it; stimuli
    shown once count in the averaged response's variance and use the pooled noise variance.

    References
    ----------
    .. [1] M. Sahani, J. F. Linden, "How linear are auditory cortical responses?", NIPS 15 (2003).
    """
    func = "variance_components"
    t, coords = _trials(trials, func)
    comp = _components(t, func)
    coords = coords or {"unit": ("unit", np.arange(t.shape[1]))}
    return xr.Dataset({k: ("unit", np.asarray(v)) for k, v in comp.items()}, coords=coords,
                      attrs={"estimator": "unequal-repeat signal power (see netphys.stats.correlation)"})


def _wrap(values: np.ndarray, coords: dict | None, name: str, attrs: dict | None = None):
    if coords is None:
        return values
    return xr.DataArray(values, dims=("unit",), coords=coords, name=name, attrs=attrs or {})


def explainable_variance(trials, *, of: str = "mean"):
    """Fraction of the response variance that is driven by the stimulus, per neuron.

    Parameters
    ----------
    trials : array-like (n_stimuli, n_units, n_repeats) or xarray.DataArray
        Single trials, NaN-padded (unequal repeat counts are allowed); see :func:`variance_components`.
    of : {"mean", "trial"}, default "mean"
        ``"mean"``: of the repeat-averaged response, :math:`\\hat S / S^2(\\bar r)`, expected value
        :math:`S^2(\\mu) / (S^2(\\mu) + \\overline{\\sigma^2 / n})` (what :func:`noise_corrected_r`
        divides by). ``"trial"``: of single trials, :math:`\\hat S / (\\hat S + \\overline{s^2})`,
        expected value about :math:`S^2(\\mu) / (S^2(\\mu) + \\overline{\\sigma^2})`.

    Returns
    -------
    ndarray (n_units,), or xarray.DataArray dims ("unit",) for DataArray input
        At most 1; negative when the estimated signal variance is (neurons without stimulus drive).

    Raises
    ------
    NetphysError
        As :func:`variance_components`; an unknown ``of``.

    References
    ----------
    .. [1] M. Sahani, J. F. Linden, "How linear are auditory cortical responses?", NIPS 15 (2003).
    .. [2] O. Schoppe et al., "Measuring the performance of neural models", Front. Comput. Neurosci.
       10:10 (2016).
    """
    func = "explainable_variance"
    check_choice(of, "of", func, ("mean", "trial"))
    t, coords = _trials(trials, func)
    c = _components(t, func)
    with np.errstate(divide="ignore", invalid="ignore"):
        if of == "mean":
            ev = c["signal_var"] / c["var_of_mean"]
        else:
            ev = c["signal_var"] / (c["signal_var"] + c["noise_var"])
    ev = np.where(np.isfinite(ev), ev, np.nan)
    return _wrap(ev, coords, "explainable_variance", {"of": of})


def noise_ceiling_r(trials):
    """Expected correlation of a perfect model (the noise-free response) with the averaged response.

    :math:`CC_{max} = \\sqrt{EV}`, ``EV = explainable_variance(trials, of="mean")``; NaN where the
    estimated signal variance is <= 0.

    Parameters
    ----------
    trials : array-like (n_stimuli, n_units, n_repeats) or xarray.DataArray
        NaN-padded single trials of the stimuli the correlation is computed on (the held-out set).

    Returns
    -------
    ndarray (n_units,), or xarray.DataArray dims ("unit",)

    Raises
    ------
    NetphysError
        As :func:`variance_components`.

    References
    ----------
    .. [1] A. Hsu, A. Borst, F. E. Theunissen, Network 15, 91-109 (2004).
    .. [2] O. Schoppe et al., Front. Comput. Neurosci. 10:10 (2016).
    """
    func = "noise_ceiling_r"
    t, coords = _trials(trials, func)
    c = _components(t, func)
    with np.errstate(divide="ignore", invalid="ignore"):
        ev = c["signal_var"] / c["var_of_mean"]
    cc = np.where(np.isfinite(ev) & (ev > 0), np.sqrt(np.clip(ev, 0, None)), np.nan)
    return _wrap(cc, coords, "noise_ceiling_r")


def noise_corrected_r(r, trials):
    """A model's correlation with the averaged response, divided by the noise ceiling (``CC_norm``).

    Parameters
    ----------
    r : array-like (n_units,) or xarray.DataArray
        Pearson r between a model's predictions and the repeat-averaged responses (the ``nanmean``
        of ``trials`` over repeats) on the same stimuli as ``trials`` -- for an encoding model, the
        held-out stimuli.
    trials : array-like (n_stimuli, n_units, n_repeats) or xarray.DataArray
        NaN-padded single trials of those stimuli.

    Returns
    -------
    ndarray (n_units,), or xarray.DataArray dims ("unit",) when ``r`` or ``trials`` is one
        :math:`r / \\sqrt{EV}`: an estimate of the correlation with the noise-free response. Not
        clipped: sampling error can take it above 1. NaN (with a :class:`~netphys.NetphysWarning`)
        for neurons whose estimated signal variance is <= 0.

    Raises
    ------
    NetphysError
        ``r`` of another length than the units of ``trials``; as :func:`variance_components`.

    Notes
    -----
    Valid when the prediction does not depend on the noise of these trials (held-out data): then
    :math:`\\operatorname{cov}(p, \\bar r) = \\operatorname{cov}(p, \\mu)` and
    :math:`r(p, \\mu) = r(p, \\bar r) / \\sqrt{EV}` (module notes). With unequal repeats this is the
    exact generalisation of Schoppe et al.'s :math:`CC_{norm}`. Checked on synthetic neurons with a
    known signal-to-noise ratio and 6-10 NaN-padded repeats (``tests/test_correlation.py``): the
    corrected r of the true signal averages 1.00.

    References
    ----------
    .. [1] O. Schoppe, N. S. Harper, B. D. B. Willmore, A. J. King, J. W. H. Schnupp, "Measuring the
       performance of neural models", Front. Comput. Neurosci. 10:10 (2016).
    .. [2] A. Hsu, A. Borst, F. E. Theunissen, Network 15, 91-109 (2004).
    """
    func = "noise_corrected_r"
    t, coords = _trials(trials, func)
    if coords is None and isinstance(r, xr.DataArray) and r.dims == ("unit",):
        coords = {k: ("unit", np.asarray(c.values)) for k, c in r.coords.items() if c.dims == ("unit",)}
        coords.setdefault("unit", ("unit", np.arange(r.sizes["unit"])))
    rr = _float(r, "r", func).reshape(-1) if np.ndim(r) <= 1 else None
    if rr is None or rr.shape[0] != t.shape[1]:
        raise param_error("r", func, f"one correlation per unit of trials ({t.shape[1]})",
                          f"shape {np.shape(r)}")
    c = _components(t, func)
    with np.errstate(divide="ignore", invalid="ignore"):
        ev = c["signal_var"] / c["var_of_mean"]
    bad = ~(np.isfinite(ev) & (ev > 0))
    if bad.any():
        idx = np.flatnonzero(bad)
        shown = ", ".join(map(str, idx[:10])) + (", ..." if len(idx) > 10 else "")
        warnings.warn(f"noise_corrected_r: {len(idx)} neuron(s) have an estimated signal variance <= 0 "
                      f"(unit index {shown}); their corrected r is NaN", NetphysWarning, stacklevel=2)
    out = np.where(bad, np.nan, rr / np.sqrt(np.where(bad, 1.0, ev)))
    return _wrap(out, coords, "r_corrected", {"correction": "r / sqrt(explainable variance of the mean)"})
