"""Orientation selectivity of units: tuning arrays, gOSI, shuffle control and SPF dependence.

All functions take a *tuning array*: an ``xarray.DataArray`` with dims ``unit``, ``orientation``
(degrees), ``phase`` (degrees) and ``sf`` (cycles per image), built from a stimulus x unit response
matrix by :func:`tuning_array`. Extra leading dims (e.g. ``layer``, ``realisation``) are carried
through. Orientations live on the 180-degree circle.

Negative responses
------------------
gOSI is defined for non-negative responses (firing rates; in the paper, post-ReLU activations).
Recordings of pre-activation or batch-normalised outputs can be negative, for which the index is
neither bounded nor meaningful (the denominator can vanish or change sign). Every function takes
``negative=``:

``"rectify"`` (default)
    Responses are clipped at 0 before anything else, i.e. analysed as the ReLU of what was recorded.
    Non-negative data (post-ReLU recordings, as in the paper) are unchanged, so the paper's numbers
    are reproduced exactly.
``"shift"``
    Baseline subtraction: after the phase maximum and the choice of SPF, the minimum of the unit's
    orientation vector is subtracted, so the weakest orientation responds 0. This makes gOSI
    invariant to additive offsets (``a + b cos^2`` gives 0.5 for any ``a``) but differs from the
    paper's index on non-negative data.
``"raise"``
    Negative responses raise an error.

A unit whose (transformed) orientation vector is all zero, e.g. silent to every grating, gets
``gosi = 0`` (never NaN), ``zero_response = True`` and NaN preferred orientation and SPF.
"""
from __future__ import annotations

import numbers
from typing import Mapping

import numpy as np
import pandas as pd
import xarray as xr

from .._random import check_random_state
from .._validation import check_choice, check_finite, check_int, param_error

__all__ = ["tuning_array", "gosi", "shuffled_gosi", "selective_fraction", "sf_dependence",
           "orientation_vector", "circular_range", "TUNING_DIMS", "THRESHOLD", "channel_gosi",
           "gosi_by_layer", "gosi_by_layer_with_control", "spearman"]

#: The three stimulus dims of a tuning array, in order after ``unit``.
TUNING_DIMS = ("orientation", "phase", "sf")
_NEGATIVE = ("rectify", "shift", "raise")


# ---------------------------------------------------------------------------------------- helpers
def _coords_frame(stimuli_coords, func: str) -> pd.DataFrame:
    if hasattr(stimuli_coords, "coords") and isinstance(getattr(stimuli_coords, "coords"), pd.DataFrame):
        return stimuli_coords.coords  # a StimulusSet
    if isinstance(stimuli_coords, pd.DataFrame):
        return stimuli_coords
    if isinstance(stimuli_coords, Mapping):
        try:
            return pd.DataFrame(dict(stimuli_coords))
        except ValueError as exc:
            raise param_error("stimuli_coords", func, "a mapping of equal-length columns",
                              f"columns of unequal length ({exc})") from None
    raise param_error("stimuli_coords", func, "a pandas DataFrame, a mapping of columns or a StimulusSet "
                      "with columns 'orientation', 'phase' and 'sf'", type(stimuli_coords).__name__)


def _check_tuning(tuning, func: str) -> xr.DataArray:
    if not isinstance(tuning, xr.DataArray):
        raise param_error("tuning", func, "an xarray.DataArray with dims ('unit', 'orientation', "
                          "'phase', 'sf')", type(tuning).__name__, "build it with tuning_array()")
    missing = [d for d in ("unit",) + TUNING_DIMS if d not in tuning.dims]
    if missing:
        raise param_error("tuning", func, "an xarray.DataArray with dims ('unit', 'orientation', "
                          "'phase', 'sf')", f"dims {tuning.dims}",
                          f"missing {missing}; build it with tuning_array()")
    for d in TUNING_DIMS:
        if d not in tuning.coords:
            raise param_error("tuning", func, f"labelled with a '{d}' coordinate", f"dims {tuning.dims} "
                              f"without '{d}' values", "build it with tuning_array()")
    if 0 in tuning.shape:
        raise param_error("tuning", func, "non-empty", f"shape {dict(tuning.sizes)}")
    if tuning.dtype.kind not in "biuf":
        raise param_error("tuning", func, "real-valued", str(tuning.dtype))
    check_finite(tuning.values, "tuning", func, "drop or impute the non-finite responses first")
    return tuning.transpose(..., *TUNING_DIMS)


def _apply_negative(values: np.ndarray, negative: str, func: str) -> np.ndarray:
    check_choice(negative, "negative", func, _NEGATIVE)
    values = values.astype(float, copy=False)
    if negative == "rectify":
        return np.maximum(values, 0.0)
    if negative == "raise" and np.any(values < 0):
        n_neg = int(np.count_nonzero(values < 0))
        raise param_error("tuning", func, "non-negative responses when negative='raise'",
                          f"{n_neg} negative value(s), min {values.min():.4g}",
                          "pass negative='rectify' or 'shift', or record post-ReLU activations")
    return values


def _lead_coords(tuning: xr.DataArray) -> dict:
    """Coordinates of ``tuning`` that do not involve the stimulus dims."""
    return {k: v for k, v in tuning.coords.items() if not set(v.dims) & set(TUNING_DIMS)}


def _select(values: np.ndarray, negative: str):
    """Phase max, best SPF and the orientation vector at it. values: (..., ori, phase, sf)."""
    m = values.max(axis=-2)  # (..., ori, sf)
    sf_idx = m.max(axis=-2).argmax(axis=-1)  # (...)
    vec = np.take_along_axis(m, sf_idx[..., None, None], axis=-1)[..., 0]  # (..., ori)
    if negative == "shift":
        vec = vec - vec.min(axis=-1, keepdims=True)
    return m, sf_idx, vec


def _gosi_core(vec: np.ndarray, theta_deg: np.ndarray):
    """gOSI, zero flag, resultant angle (deg) of orientation vectors (..., ori) >= 0."""
    z = np.exp(2j * np.deg2rad(theta_deg))
    total = vec.sum(axis=-1)
    resultant = (vec * z).sum(axis=-1)
    zero = total <= 0
    safe = np.where(zero, 1.0, total)
    g = np.where(zero, 0.0, np.abs(resultant) / safe)
    g = np.clip(g, 0.0, 1.0)
    ang = np.mod(np.rad2deg(np.angle(resultant)) / 2.0, 180.0)
    ang = np.where(ang > 180.0 - 1e-6, 0.0, ang)
    # a resultant at round-off level (flat tuning) has no direction: gOSI 0, angle undefined
    undefined = zero | (np.abs(resultant) <= 1e-12 * np.where(zero, 1.0, total))
    g = np.where(undefined, 0.0, g)
    ang = np.where(undefined, np.nan, ang)
    return g, zero, ang


# ---------------------------------------------------------------------------------------- public
def tuning_array(responses, stimuli_coords=None) -> xr.DataArray:
    """Reshape a stimulus x unit response matrix into a labelled tuning array.

    Parameters
    ----------
    responses : array-like, shape (n_stimulus, n_unit), or xarray.DataArray with dims (stimulus, unit)
        Responses of each unit to each grating. A DataArray keeps its ``unit`` coordinates (e.g.
        ``layer``, ``channel``) and ``attrs``.
    stimuli_coords : pandas.DataFrame, mapping or StimulusSet, optional
        One row per stimulus (in the order of ``responses``) with columns ``orientation`` (deg),
        ``phase`` (deg) and ``sf``; other columns are ignored. Defaults to the ``orientation``,
        ``phase`` and ``sf`` coordinates of a DataArray ``responses`` along ``stimulus``.

    Returns
    -------
    xarray.DataArray, dims (unit, orientation, phase, sf)
        Named ``"tuning"``; each stimulus dim is labelled with its sorted unique values.

    Raises
    ------
    NetphysError
        If a coordinate column is missing, the shapes disagree, the responses are not finite, or
        the stimuli do not form a complete grid with each (orientation, phase, sf) exactly once
        (e.g. several contrasts: select one first).
    """
    func = "tuning_array"
    attrs, unit_coords, unit_index = {}, {}, None
    if isinstance(responses, xr.DataArray):
        if set(responses.dims) != {"stimulus", "unit"}:
            raise param_error("responses", func, "a DataArray with dims ('stimulus', 'unit')",
                              f"dims {responses.dims}")
        responses = responses.transpose("stimulus", "unit")
        attrs = dict(responses.attrs)
        unit_coords = {k: v.values for k, v in responses.coords.items() if v.dims == ("unit",)}
        if stimuli_coords is None:
            stimuli_coords = {k: v.values for k, v in responses.coords.items()
                              if v.dims == ("stimulus",)}
        unit_index = unit_coords.pop("unit", None)
        values = responses.values
    else:
        try:
            values = np.asarray(responses)
        except Exception:  # noqa: BLE001 - reported with the template
            raise param_error("responses", func, "a 2-D array", type(responses).__name__) from None
    if stimuli_coords is None:
        raise param_error("stimuli_coords", func, "given (a DataFrame with columns 'orientation', "
                          "'phase' and 'sf')", None, "pass StimulusSet.coords of the gratings")
    if values.ndim != 2:
        raise param_error("responses", func, "a 2-D (stimulus x unit) array", f"array of shape "
                          f"{values.shape}", "reshape to (n_stimulus, n_unit)")
    if values.dtype.kind not in "biuf":
        raise param_error("responses", func, "real-valued", str(values.dtype))
    check_finite(values, "responses", func, "drop or impute the non-finite responses first")
    if isinstance(getattr(stimuli_coords, "attrs", None), dict):  # a StimulusSet of gratings
        for key in ("sf_units", "orientation_units", "phase_units"):
            if key in stimuli_coords.attrs:
                attrs.setdefault(key, stimuli_coords.attrs[key])
    df = _coords_frame(stimuli_coords, func)
    missing = [c for c in TUNING_DIMS if c not in df.columns]
    if missing:
        raise param_error("stimuli_coords", func, "a table with columns 'orientation', 'phase' and 'sf'",
                          f"columns {list(df.columns)}", f"missing {missing}")
    n_stim, n_unit = values.shape
    if len(df) != n_stim:
        raise param_error("stimuli_coords", func, f"one row per stimulus ({n_stim} rows, the first "
                          "axis of responses)", f"{len(df)} rows",
                          "pass responses as (n_stimulus, n_unit)")
    axes, codes = {}, []
    for c in TUNING_DIMS:
        col = pd.to_numeric(df[c], errors="coerce").to_numpy(dtype=float)
        if not np.all(np.isfinite(col)):
            raise param_error("stimuli_coords", func, f"finite numbers in column '{c}'",
                              f"{int(np.sum(~np.isfinite(col)))} missing or non-numeric value(s)")
        uniq, inv = np.unique(col, return_inverse=True)
        axes[c] = uniq
        codes.append(inv.ravel())
    shape = tuple(len(axes[c]) for c in TUNING_DIMS)
    flat = np.ravel_multi_index(tuple(codes), shape)
    if n_stim != int(np.prod(shape)) or np.unique(flat).size != n_stim:
        dup = n_stim - np.unique(flat).size
        raise param_error("stimuli_coords", func, "a complete grid with each (orientation, phase, sf) "
                          f"exactly once ({shape[0]} x {shape[1]} x {shape[2]} = {int(np.prod(shape))} "
                          "stimuli)", f"{n_stim} stimuli with {dup} repeated combination(s)",
                          "select one contrast (or other condition) first")
    out = np.empty((n_unit,) + shape, dtype=np.result_type(values.dtype, np.float32))
    out.reshape(n_unit, -1)[:, flat] = values.T
    coords = {c: axes[c] for c in TUNING_DIMS}
    coords["unit"] = unit_index if unit_index is not None else np.arange(n_unit)
    for k, v in unit_coords.items():
        coords[k] = ("unit", v)
    attrs.setdefault("orientation_units", "deg")
    attrs.setdefault("phase_units", "deg")
    return xr.DataArray(out, dims=("unit",) + TUNING_DIMS, coords=coords, name="tuning", attrs=attrs)


def orientation_vector(tuning: xr.DataArray, *, negative: str = "rectify") -> xr.DataArray:
    """The vector of Ukita (2019) that gOSI is computed on.

    Maximum over phase, then the orientation tuning at the SPF with the highest response.

    Parameters
    ----------
    tuning : xarray.DataArray, dims (..., unit, orientation, phase, sf)
    negative : {"rectify", "shift", "raise"}, default "rectify"
        Policy for negative responses (see the module notes).

    Returns
    -------
    xarray.DataArray, dims (..., unit, orientation)
        With a ``preferred_sf`` coordinate along the leading dims.
    """
    func = "orientation_vector"
    t = _check_tuning(tuning, func)
    v = _apply_negative(t.values, negative, func)
    _, sf_idx, vec = _select(v, negative)
    lead = t.dims[:-3]
    coords = _lead_coords(t)
    coords["orientation"] = t["orientation"].values
    coords["preferred_sf"] = (lead, t["sf"].values[sf_idx])
    dims = lead + ("orientation",)
    return xr.DataArray(vec, dims=dims, coords=coords, name="response", attrs=dict(t.attrs))


def gosi(tuning: xr.DataArray, *, negative: str = "rectify") -> xr.Dataset:
    """Global orientation selectivity index (gOSI) of every unit.

    Parameters
    ----------
    tuning : xarray.DataArray, dims (..., unit, orientation, phase, sf)
        From :func:`tuning_array`; orientations in degrees.
    negative : {"rectify", "shift", "raise"}, default "rectify"
        Policy for negative responses (see the module notes).

    Returns
    -------
    xarray.Dataset, dims (..., unit)
        ``gosi``
            In ``[0, 1]``, never NaN.
        ``preferred_orientation``
            Orientation (deg, a grid value) of the largest response at the preferred SPF, as in
            the reference code; NaN for zero-response units.
        ``mean_orientation``
            ``arg(sum_k R_k exp(2 i theta_k)) / 2`` in ``[0, 180)`` deg: the circular-mean
            orientation, not restricted to the grid; NaN where the resultant vanishes.
        ``preferred_sf``
            SPF (in the tuning's ``sf`` units) with the highest response; NaN for zero responses.
        ``peak_response``
            The largest (transformed) response of the unit.
        ``zero_response``
            True where the orientation vector is all zero (gOSI set to 0).

    Raises
    ------
    NetphysError
        If ``tuning`` is not a labelled tuning array, holds NaN/inf, or has negative values with
        ``negative="raise"``.

    Notes
    -----
    With ``R`` the unit's responses, ``M(theta, f) = max_phase R(theta, phase, f)`` and
    ``f* = argmax_f max_theta M(theta, f)`` (first on ties), the vector ``R_k = M(theta_k, f*)`` gives

    .. math:: \\mathrm{gOSI} = \\frac{\\left|\\sum_k R_k e^{2 i \\theta_k}\\right|}{\\sum_k R_k}
              = 1 - \\mathrm{circular\\ variance},

    in ``[0, 1]`` for ``R_k >= 0``: 0 for a flat tuning, 1 when only one orientation responds.
    For ``R(theta) = a + b cos^2(theta - theta0)`` sampled at ``n >= 3`` equally spaced
    orientations (``a, b >= 0``), gOSI ``= (b / 4) / (a + b / 2)``: 0.5 for ``a = 0``. (Write
    ``R = a + b/2 + (b/2) cos 2(theta - theta0)``; over ``n >= 3`` equally spaced orientations
    ``sum_k exp(2 i theta_k) = sum_k exp(4 i theta_k) = 0``, so the resultant is ``n b / 4`` and
    the sum ``n (a + b / 2)``.)

    References
    ----------
    J. Ukita, ICLR 2019 submission, section 2.2, eq. 2; F. Wörgötter and U. T. Eysel, Biol. Cybern.
    57 (1987) 349-355; reference code github.com/ukky17/ori_selectivity_CNN (``get_oristats``).
    """
    func = "gosi"
    t = _check_tuning(tuning, func)
    values = _apply_negative(t.values, negative, func)
    return _gosi_dataset(t, values, negative)


def _gosi_dataset(t: xr.DataArray, values: np.ndarray, negative: str) -> xr.Dataset:
    m, sf_idx, vec = _select(values, negative)
    theta = t["orientation"].values.astype(float)
    g, zero, ang = _gosi_core(vec, theta)
    pref = np.where(zero, np.nan, theta[vec.argmax(axis=-1)])
    sfs = t["sf"].values.astype(float)
    pref_sf = np.where(zero, np.nan, sfs[sf_idx])
    peak = m.max(axis=(-2, -1))
    dims = t.dims[:-3]
    ds = xr.Dataset(
        {"gosi": (dims, g), "preferred_orientation": (dims, pref), "mean_orientation": (dims, ang),
         "preferred_sf": (dims, pref_sf), "peak_response": (dims, peak), "zero_response": (dims, zero)},
        coords=_lead_coords(t), attrs={**t.attrs, "negative": negative})
    ds["gosi"].attrs.update(long_name="gOSI", units="1")
    ds["preferred_orientation"].attrs.update(units="deg")
    ds["mean_orientation"].attrs.update(units="deg")
    if "sf_units" in t.attrs:
        ds["preferred_sf"].attrs.update(units=t.attrs["sf_units"])
    return ds


def shuffled_gosi(tuning: xr.DataArray, random_state=0, n_shuffles: int = 1, *,
                  negative: str = "rectify", independent: bool = True) -> xr.Dataset:
    """gOSI after shuffling each unit's activation matrix: the sparsity control of Ukita (2019).

    Parameters
    ----------
    tuning : xarray.DataArray, dims (..., unit, orientation, phase, sf)
    random_state : None, int, SeedSequence or numpy Generator, default 0
    n_shuffles : int, default 1
        Number of independent shuffles.
    negative : {"rectify", "shift", "raise"}, default "rectify"
    independent : bool, default True
        True (the paper's text): each unit's ``orientation x phase x sf`` matrix is permuted
        independently. False: one permutation of the stimuli per shuffle, shared by all units (what
        the reference code does by presenting the gratings in a shuffled order).

    Returns
    -------
    xarray.Dataset, dims (shuffle, ..., unit)
        The variables of :func:`gosi` for the shuffled matrices.

    Raises
    ------
    NetphysError
        For an invalid ``tuning``, ``random_state`` or ``n_shuffles``.

    Notes
    -----
    Shuffling keeps each unit's distribution of responses (hence its sparsity) but destroys its
    orientation structure, so a sparse but untuned unit keeps a high shuffled gOSI while the gOSI
    of a unit tuned to orientation drops. The shuffle is applied to the recorded values (after the
    ``negative`` policy), before the phase maximum and the choice of SPF.

    References
    ----------
    J. Ukita, ICLR 2019 submission, section 3.1 and Fig. 2.
    """
    func = "shuffled_gosi"
    t = _check_tuning(tuning, func)
    n_shuffles = check_int(n_shuffles, "n_shuffles", func, min_value=1)
    if not isinstance(independent, (bool, np.bool_)):
        raise param_error("independent", func, "a bool", independent)
    rng = check_random_state(random_state, func)
    values = _apply_negative(t.values, negative, func)
    k = int(np.prod(values.shape[-3:]))
    flat = values.reshape(-1, k)
    out = []
    for _ in range(n_shuffles):
        if independent:
            perm = rng.permuted(np.broadcast_to(np.arange(k), flat.shape), axis=1)
            shuffled = np.take_along_axis(flat, perm, axis=1)
        else:
            shuffled = flat[:, rng.permutation(k)]
        out.append(_gosi_dataset(t, shuffled.reshape(values.shape), negative))
    ds = xr.concat(out, dim="shuffle")
    ds = ds.assign_coords(shuffle=np.arange(n_shuffles))
    ds.attrs.update({"control": "shuffled", "independent": bool(independent)})
    return ds


def selective_fraction(gosi, threshold: float = 0.33):
    """Fraction of orientation-selective units (gOSI > ``threshold``).

    Parameters
    ----------
    gosi : xarray.Dataset, xarray.DataArray or array-like
        The output of :func:`gosi` / :func:`shuffled_gosi`, its ``gosi`` variable, or plain values.
    threshold : float, default 0.33
        Selective means strictly greater (Piscopo et al. 2013; Kondo & Ohki 2015).

    Returns
    -------
    float or xarray.DataArray
        For labelled input, the fraction over the ``unit`` dim (other dims such as ``shuffle`` or
        ``layer`` are kept; a 0-d result is returned as a float); for plain arrays, over all values.

    Raises
    ------
    NetphysError
        If ``threshold`` is not in ``[0, 1]``, or the values are empty or not finite.
    """
    func = "selective_fraction"
    ok = isinstance(threshold, numbers.Real) and not isinstance(threshold, bool) and 0 <= threshold <= 1
    if not ok:
        raise param_error("threshold", func, "a number in [0, 1]", threshold)
    if isinstance(gosi, xr.Dataset):
        if "gosi" not in gosi:
            raise param_error("gosi", func, "a Dataset with a 'gosi' variable",
                              f"variables {list(gosi.data_vars)}")
        gosi = gosi["gosi"]
    if isinstance(gosi, xr.DataArray):
        if gosi.size == 0:
            raise param_error("gosi", func, "non-empty", f"shape {dict(gosi.sizes)}")
        check_finite(gosi.values, "gosi", func)
        dim = "unit" if "unit" in gosi.dims else None
        frac = (gosi > threshold).mean(dim=dim, keep_attrs=False)
        if frac.ndim == 0:
            return float(frac)
        frac = frac.rename("selective_fraction")
        frac.attrs.update(threshold=float(threshold), units="1")
        return frac
    a = np.asarray(gosi, dtype=float)
    if a.size == 0:
        raise param_error("gosi", func, "non-empty", f"array of shape {a.shape}")
    check_finite(a, "gosi", func)
    return float(np.mean(a > threshold))


def circular_range(orientations_deg, period: float = 180.0) -> float:
    """Smallest arc (deg) of the ``period``-degree circle that contains all the given orientations.

    ``period`` minus the largest gap between circularly consecutive orientations; 0 for a single
    orientation. For example ``circular_range([165, 0, 15]) == 30``.
    """
    a = np.unique(np.mod(np.asarray(orientations_deg, dtype=float), period))
    if a.size <= 1:
        return 0.0
    gaps = np.diff(np.concatenate([a, [a[0] + period]]))
    return float(period - gaps.max())


def sf_dependence(tuning: xr.DataArray, peak_fraction: float = 0.5, *, negative: str = "rectify",
                  baseline: str = "zero") -> xr.Dataset:
    """How much a unit's preferred orientation changes with spatial frequency.

    Parameters
    ----------
    tuning : xarray.DataArray, dims (..., unit, orientation, phase, sf)
    peak_fraction : float, default 0.5
        SPFs whose peak response exceeds this fraction of the unit's overall peak are used.
    negative : {"rectify", "shift", "raise"}, default "rectify"
        Policy for negative responses; ``"shift"`` subtracts each unit's minimum over the
        phase-maximised ``orientation x sf`` matrix.
    baseline : {"zero", "min"}, default "zero"
        ``"zero"`` (the paper's text): threshold ``peak_fraction * max``. ``"min"`` (the reference
        code): ``min + peak_fraction * (max - min)`` over the per-SPF peaks.

    Returns
    -------
    xarray.Dataset, dims (..., unit)
        ``orientation_range``
            Circular range (deg, in ``[0, 180)``) of the preferred orientations over the selected
            SPFs; NaN for zero-response units.
        ``n_sf``
            Number of SPFs selected.
        ``preferred_orientation_by_sf`` (dims ..., unit, sf)
            Preferred orientation (deg) at each SPF; NaN where the SPF was not selected.

    Raises
    ------
    NetphysError
        For an invalid ``tuning``, ``peak_fraction`` outside ``[0, 1)`` or unknown options.

    Notes
    -----
    After the maximum over phase, ``M(theta, f)``, each SPF ``f`` has a peak ``P(f) = max_theta M``
    and a preferred orientation ``argmax_theta M`` (a grid value, first on ties). SPFs with
    ``P(f) >`` threshold, and always the SPF of the overall peak, are kept. Their preferred
    orientations are placed on the 180-deg circle and the range is the length of the shortest arc
    containing them all (180 minus the largest circular gap; see :func:`circular_range`), so
    preferred orientations of 165 and 0 deg give 15 deg, not 165. The paper applies it to
    orientation-selective units only (gOSI > 0.33); select them with :func:`gosi` first.

    References
    ----------
    J. Ukita, ICLR 2019 submission, appendix A.2 and Figs. A2-A3.
    """
    func = "sf_dependence"
    t = _check_tuning(tuning, func)
    ok = isinstance(peak_fraction, numbers.Real) and not isinstance(peak_fraction, bool) \
        and 0 <= peak_fraction < 1
    if not ok:
        raise param_error("peak_fraction", func, "a number in [0, 1)", peak_fraction)
    check_choice(baseline, "baseline", func, ("zero", "min"))
    values = _apply_negative(t.values, negative, func)
    m = values.max(axis=-2)  # (..., ori, sf)
    if negative == "shift":
        m = m - m.min(axis=(-2, -1), keepdims=True)
    peaks = m.max(axis=-2)  # (..., sf)
    top = peaks.max(axis=-1, keepdims=True)
    floor = 0.0 if baseline == "zero" else peaks.min(axis=-1, keepdims=True)
    thr = floor + peak_fraction * (top - floor)
    keep = (peaks > thr) | (peaks >= top)
    zero = top[..., 0] <= 0
    keep &= ~zero[..., None]
    theta = t["orientation"].values.astype(float)
    pref = theta[m.argmax(axis=-2)]  # (..., sf)
    pref_kept = np.where(keep, pref, np.nan)
    flat = pref_kept.reshape(-1, pref_kept.shape[-1])
    rng = np.array([circular_range(r[np.isfinite(r)]) for r in flat]).reshape(peaks.shape[:-1])
    rng = np.where(zero, np.nan, rng)
    dims = t.dims[:-3]
    coords = _lead_coords(t)
    coords["sf"] = t["sf"].values
    ds = xr.Dataset({"orientation_range": (dims, rng), "n_sf": (dims, keep.sum(axis=-1)),
                     "preferred_orientation_by_sf": (dims + ("sf",), pref_kept)},
                    coords=coords, attrs={**t.attrs, "negative": negative, "baseline": baseline,
                                          "peak_fraction": float(peak_fraction)})
    ds["orientation_range"].attrs.update(units="deg", long_name="Range of preferred orientations")
    return ds


# ---------------------------------------------------------------------------------------- per layer
#: The selectivity threshold of the paper (gOSI > 0.33 is "orientation selective").
THRESHOLD = 0.33


def channel_gosi(responses: xr.DataArray, *, negative: str = "rectify") -> xr.Dataset:
    """gOSI of every unit of a grating recording (``tuning_array`` then :func:`gosi`).

    Parameters
    ----------
    responses : xarray.DataArray, dims (stimulus, unit)
        With stimulus coordinates ``orientation``, ``phase``, ``sf`` (e.g. from
        :func:`netphys.recording.gratings.grating_responses`).
    negative : {"rectify", "shift", "raise"}, default "rectify"

    Returns
    -------
    xarray.Dataset, dims (unit)
        The variables of :func:`gosi`; the unit coordinates (``layer``, ``channel`` ...) are kept.
    """
    return gosi(tuning_array(responses), negative=negative)


def gosi_by_layer(result: xr.Dataset, layers=None, *, threshold: float = THRESHOLD) -> pd.DataFrame:
    """Mean and median gOSI, fraction selective and number of silent units per layer.

    Parameters
    ----------
    result : xarray.Dataset, dims (unit)
        :func:`gosi` output with a ``layer`` unit coordinate.
    layers : sequence of str, optional
        Rows, in this order; default every layer in order of appearance.
    threshold : float, default 0.33
        Selective means gOSI strictly greater.

    Returns
    -------
    pandas.DataFrame indexed by layer
        ``mean_gosi``, ``median_gosi``, ``frac_selective``, ``n_units``, ``n_silent`` (units
        with an all-zero orientation vector, whose gOSI is 0 by convention).

    Raises
    ------
    NetphysError
        If ``result`` lacks ``gosi``/``zero_response``/``layer`` or a requested layer has no unit.
    """
    func = "gosi_by_layer"
    if not isinstance(result, xr.Dataset) or "gosi" not in result or "zero_response" not in result \
            or "layer" not in result.coords or result["gosi"].dims != ("unit",):
        raise param_error("result", func, "a gosi() Dataset with dim 'unit' and a 'layer' coordinate",
                          type(result).__name__)
    lay = result["layer"].values
    layers = list(dict.fromkeys(lay.tolist())) if layers is None else list(layers)
    rows = []
    for l in layers:
        sel = lay == l
        if not sel.any():
            raise param_error("layers", func, f"layers of the result ({sorted(set(lay.tolist()))})", l)
        g = result["gosi"].values[sel]
        z = result["zero_response"].values[sel]
        rows.append({"layer": l, "mean_gosi": float(g.mean()), "median_gosi": float(np.median(g)),
                     "frac_selective": selective_fraction(g, threshold), "n_units": int(g.size),
                     "n_silent": int(z.sum())})
    return pd.DataFrame(rows).set_index("layer")


def gosi_by_layer_with_control(result: xr.Dataset, shuffled: xr.Dataset, layers=None, *,
                               threshold: float = THRESHOLD) -> pd.DataFrame:
    """:func:`gosi_by_layer` joined with the shuffle control's ``mean_gosi_shuffled`` and
    ``frac_selective_shuffled`` (from the first shuffle of :func:`shuffled_gosi`)."""
    first = shuffled.isel(shuffle=0) if "shuffle" in shuffled.dims else shuffled
    shuf = gosi_by_layer(first, layers, threshold=threshold)[["mean_gosi", "frac_selective"]]
    return gosi_by_layer(result, layers, threshold=threshold).join(shuf.add_suffix("_shuffled"))


def spearman(x, y) -> tuple[float, float]:
    """Spearman rank correlation and its two-sided p-value over the pairs where both are finite.

    Returns ``(nan, nan)`` when fewer than 3 finite pairs remain or either side is constant (the
    correlation is undefined), instead of SciPy's warning.
    """
    from scipy.stats import spearmanr

    x, y = np.asarray(x, float), np.asarray(y, float)
    if x.shape != y.shape or x.ndim != 1:
        raise param_error("y", "spearman", f"a 1-D array of the shape of x {x.shape}", f"shape {y.shape}")
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3 or np.ptp(x[ok]) == 0 or np.ptp(y[ok]) == 0:
        return float("nan"), float("nan")
    r = spearmanr(x[ok], y[ok])
    return float(r.statistic), float(r.pvalue)
