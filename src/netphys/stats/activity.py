"""Activation statistics of recordings: lifetime sparseness and per-layer summaries."""
from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from .._validation import check_finite, param_error

__all__ = ["lifetime_sparseness", "activation_statistics"]


def _check_recording(recording, func: str) -> xr.DataArray:
    if not isinstance(recording, xr.DataArray) or recording.dims != ("stimulus", "unit"):
        got = f"dims {recording.dims}" if isinstance(recording, xr.DataArray) else type(recording).__name__
        raise param_error("recording", func, "an xarray.DataArray with dims ('stimulus', 'unit')", got,
                          "record one with netphys.recording.record")
    if recording.sizes["stimulus"] < 1 or recording.sizes["unit"] < 1:
        raise param_error("recording", func, "non-empty", dict(recording.sizes))
    check_finite(recording.values, "recording", func)
    return recording


def lifetime_sparseness(recording: xr.DataArray, *, normalise: bool = False) -> xr.DataArray:
    """Treves-Rolls lifetime sparseness of every unit's rectified responses over the stimuli.

    Parameters
    ----------
    recording : xarray.DataArray, dims (stimulus, unit)
    normalise : bool, default False
        False: ``S = 1 - a`` with the Treves-Rolls activity ratio ``a = (mean r)^2 / mean(r^2)``,
        in ``[0, 1 - 1/n]``. True: Vinje & Gallant's ``(1 - a) / (1 - 1/n)``, in ``[0, 1]``.

    Returns
    -------
    xarray.DataArray, dims (unit)
        With the recording's unit coordinates. 0 for a unit responding equally to every stimulus,
        ``1 - 1/n`` (normalised: 1) for one responding to a single stimulus of ``n``; 0 for a unit
        silent to all.

    Notes
    -----
    ``r = max(response, 0)``; ``a = (sum_i r_i / n)^2 / (sum_i r_i^2 / n)``.

    References
    ----------
    A. Treves and E. T. Rolls, Network 2 (1991) 371-397; W. E. Vinje and J. L. Gallant, Science 287
    (2000) 1273-1276.
    """
    func = "lifetime_sparseness"
    rec = _check_recording(recording, func)
    if not isinstance(normalise, (bool, np.bool_)):
        raise param_error("normalise", func, "a bool", normalise)
    r = np.maximum(rec.values.astype(np.float64), 0)
    n = r.shape[0]
    num = r.mean(axis=0) ** 2
    den = (r ** 2).mean(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        s = np.where(den > 0, 1 - num / np.where(den > 0, den, 1), 0.0)
    if normalise:
        if n < 2:
            raise param_error("recording", func, "at least 2 stimuli for normalise=True", f"{n} stimulus")
        s = s / (1 - 1 / n)
    coords = {k: v for k, v in rec.coords.items() if v.dims == ("unit",)}
    return xr.DataArray(s, dims=("unit",), coords=coords, name="lifetime_sparseness",
                        attrs={"normalised": bool(normalise), "n_stimuli": int(n)})


def activation_statistics(recording: xr.DataArray) -> pd.DataFrame:
    """Per-layer summary of a recording: mean, SD, fraction > 0 and mean lifetime sparseness.

    Parameters
    ----------
    recording : xarray.DataArray, dims (stimulus, unit)
        With a ``layer`` unit coordinate (``depth`` and ``kind`` are reported when present).

    Returns
    -------
    pandas.DataFrame indexed by layer (in recording order)
        ``n_units``, ``mean`` (over stimuli and units), ``sd`` (mean over units of each unit's SD
        over stimuli), ``frac_positive`` and ``sparseness`` (mean :func:`lifetime_sparseness`), plus
        ``depth`` and ``kind``.
    """
    func = "activation_statistics"
    rec = _check_recording(recording, func)
    if "layer" not in rec.coords:
        raise param_error("recording", func, "a recording with a 'layer' unit coordinate", list(rec.coords))
    sparse = lifetime_sparseness(rec).values
    lay = rec.coords["layer"].values
    rows = []
    for l in dict.fromkeys(lay.tolist()):
        sel = lay == l
        a = rec.values[:, sel].astype(np.float64)
        row = {"layer": l}
        for c in ("depth", "kind"):
            if c in rec.coords:
                row[c] = rec.coords[c].values[sel][0].item()
        row.update(n_units=int(sel.sum()), mean=float(a.mean()), sd=float(a.std(axis=0).mean()),
                   frac_positive=float((a > 0).mean()), sparseness=float(sparse[sel].mean()))
        rows.append(row)
    return pd.DataFrame(rows).set_index("layer")
