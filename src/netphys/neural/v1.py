"""gOSI of macaque V1 single units (Ecker et al. 2010 gratings) with the network's estimator.

The same :func:`netphys.stats.selectivity.gosi` that scores network channels is applied to the
trial-averaged firing rates of V1 single units, so network layers and V1 can be compared on one axis
(:func:`netphys.plotting.selectivity.plot_v1_comparison`).
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from .._validation import NetphysError, check_choice
from ..stats.selectivity import gosi, tuning_array

log = logging.getLogger(__name__)

__all__ = ["v1_gosi", "load_v1_gosi", "V1_FOLDER"]

#: Folder name of the data set in the shared data folder.
V1_FOLDER = "ecker-v1-gratings"

#: The V1 data's orientation grid: 8 orientations 22.5 deg apart (stored rounded, e.g. 22 or 158).
_V1_STEP = 22.5
_V1_N_ORI = 8


def _snap(angles, session) -> np.ndarray:
    a = np.asarray(angles, dtype=float)
    snapped = np.round(a / _V1_STEP) * _V1_STEP
    if np.any(np.abs(snapped - a) > 2.0):
        raise NetphysError(f"Ecker V1 session {session} has angles {sorted(set(a))} off the 22.5-deg grid")
    return snapped


def v1_gosi(root=None, kind: str = "static", *, window_ms=(50.0, 550.0), max_contamination: float = 0.05,
            min_rate_hz: float = 1.0, baseline: str = "none") -> xr.Dataset:
    """gOSI of the Ecker et al. (2010) macaque V1 single units, with the network's estimator.

    The sessions are read by :func:`netphys.neural.load_ecker_v1` (the unmodified ``.mat``, converted
    in memory; CC BY-NC-ND), which marks the zero-padded trials of conditions shown fewer times as
    missing. Per unit, the spike count in ``window_ms`` (ms after onset, on the 10-ms bin grid) is
    averaged over the valid repetitions of each condition, turned into a rate (Hz) and arranged as
    a tuning array for :func:`netphys.stats.selectivity.gosi`. Angles stored rounded (22, 158, ...)
    are snapped to the 22.5-deg grid.

    ``kind="static"``
        8 orientations x 2 contrasts; each session's highest contrast is used; one phase and one
        SPF. Four sessions were recorded at 7 orientations (0-135 deg) only; on an incomplete circle
        the index is biased (a flat response gets gOSI 1/7), so they are skipped
        (``attrs["sessions_skipped"]``).
    ``kind="drifting"``
        16 directions = 8 orientations x 2 opposite directions; the two directions play the role
        of the phase axis (the estimator takes their maximum, as it takes the maximum over phase).

    Parameters
    ----------
    root : path, optional
        The ``ecker-v1-gratings`` folder (or the shared data folder holding it); default: found by
        :func:`netphys.neural.default_shared_root`.
    kind : {"static", "drifting"}
    window_ms : (float, float)
        Response window ``[start, stop)`` in ms after onset (the 500-ms stimulus shifted by the
        ~50-ms latency).
    max_contamination : float
        Units with contamination below this are kept (0.05, the original studies' criterion).
    min_rate_hz : float
        Units whose best condition is below this rate are dropped.
    baseline : {"none", "subtract"}
        Subtract the unit's spontaneous rate (-200..0 ms, same trials) first; negative values are
        then rectified by the estimator.

    Returns
    -------
    xarray.Dataset, dims (unit)
        The :func:`~netphys.stats.selectivity.gosi` variables plus ``session``, ``subject``,
        ``peak_rate_hz`` and ``spontaneous_hz``; attrs with the selection counts.

    Raises
    ------
    NetphysError
        For invalid options or when no unit passes the selection; ``FileNotFoundError`` when the
        file is missing.

    References
    ----------
    A. S. Ecker, P. Berens, G. A. Keliris, M. Bethge, N. K. Logothetis and A. S. Tolias, "Decorrelated
    neuronal firing in cortical microcircuits", Science 327 (2010); P. Berens et al., "A fast and
    simple population code for orientation in primate V1", J. Neurosci. 32 (2012). Data: CC BY-NC-ND
    3.0, bethgelab.org/datasets/v1gratings.
    """
    from .datasets import load_ecker_v1

    func = "v1_gosi"
    check_choice(kind, "kind", func, ("static", "drifting"))
    check_choice(baseline, "baseline", func, ("none", "subtract"))
    src = {"static": "static", "drifting": "moving"}[kind]
    window_ms = tuple(float(w) for w in window_ms)
    duration = (window_ms[1] - window_ms[0]) / 1000.0
    evoked = load_ecker_v1(root, src, window=window_ms)
    spont_ds = load_ecker_v1(root, src, window=(-200, 0))
    tunings, sess_id, subj, peaks, spont, skipped = [], [], [], [], [], []
    n_total = n_clean = 0
    axes = None
    for date, ds in evoked.items():
        da = ds.responses("V1")  # (stimulus, neuron) mean count over valid repeats
        rate = da.values.T / duration  # neurons x conditions
        sp = np.nanmean(spont_ds[date].responses("V1").values, axis=0) / 0.2  # neurons
        contam = da["contamination"].values
        n_total += rate.shape[0]
        if kind == "static":
            ori = _snap(da["orientation"].values, date)
            con = da["contrast"].values.astype(float)
            keep_c = con == con.max()
            ori_axis, phase_axis = np.mod(ori[keep_c], 180.0), np.zeros(int(keep_c.sum()))
            r = rate[:, keep_c]
        else:
            dirs = np.mod(_snap(da["direction"].values, date), 360.0)
            ori_axis, phase_axis = np.mod(dirs, 180.0), np.where(dirs >= 180.0, 180.0, 0.0)
            r = rate
        clean = contam < max_contamination
        n_clean += int(clean.sum())
        if np.unique(ori_axis).size != _V1_N_ORI:
            # an incomplete orientation circle biases gOSI (sum_k exp(2 i theta_k) != 0): skip
            skipped.append(str(date))
            log.info("Ecker V1 %s session %s: %d orientations, not %d; skipped", src, date,
                     np.unique(ori_axis).size, _V1_N_ORI)
            continue
        if not np.all(np.isfinite(r)):
            bad = ~np.all(np.isfinite(r), axis=1)
            log.info("Ecker V1 session %s: %d unit(s) without a valid trial in some condition; dropped", date,
                     int(bad.sum()))
            clean &= ~bad
        if baseline == "subtract":
            r = r - sp[:, None]
        ok = clean & (np.nan_to_num(rate).max(axis=1) >= min_rate_hz)
        if not ok.any():
            continue
        coords = pd.DataFrame({"orientation": ori_axis, "phase": phase_axis, "sf": np.zeros(ori_axis.size)})
        t = tuning_array(r[ok].T, coords)
        tunings.append(t.values)
        sess_id += [str(date)] * int(ok.sum())
        subj += [str(ds.attrs.get("subject", ""))] * int(ok.sum())
        peaks.append(np.nan_to_num(rate[ok]).max(axis=1))
        spont.append(sp[ok])
        axes = {d: t[d].values for d in ("orientation", "phase", "sf")}
    if not tunings:
        raise NetphysError(f"no Ecker V1 {src} unit passes contamination < {max_contamination} and a peak rate "
                           f">= {min_rate_hz} Hz")
    vals = np.concatenate(tunings, axis=0)
    tun = xr.DataArray(vals, dims=("unit", "orientation", "phase", "sf"),
                       coords={**axes, "unit": np.arange(vals.shape[0])}, attrs={"units": "Hz"})
    out = gosi(tun)
    out = out.assign_coords(session=("unit", np.array(sess_id)), subject=("unit", np.array(subj)))
    out["peak_rate_hz"] = ("unit", np.concatenate(peaks))
    out["spontaneous_hz"] = ("unit", np.concatenate(spont))
    first = next(iter(evoked.values()))
    out.attrs.update(kind=kind, n_sessions=len(evoked), sessions_skipped=skipped, n_units_total=int(n_total),
                     n_units_clean=int(n_clean), n_units_used=int(vals.shape[0]), window_ms=list(window_ms),
                     max_contamination=float(max_contamination), min_rate_hz=float(min_rate_hz),
                     baseline=baseline, source=str(first.attrs.get("path", "")),
                     loader="netphys.neural.load_ecker_v1", citation=str(first.attrs.get("citation", "")))
    return out


def _find_root(root) -> Path | None:
    from ._core import default_shared_root

    if root is None:
        base = default_shared_root()
        if base is None:
            return None
        root = base
    root = Path(root).expanduser()
    if (root / V1_FOLDER).is_dir():
        return root / V1_FOLDER
    return root if root.is_dir() else None


def load_v1_gosi(root=None, *, window_ms=(50.0, 550.0), max_contamination: float = 0.05,
                 min_rate_hz: float = 1.0, baseline: str = "none") -> dict:
    """Both V1 populations: ``{"V1 static": Dataset, "V1 drifting": Dataset}`` from :func:`v1_gosi`.

    Parameters
    ----------
    root : path, optional
        The ``ecker-v1-gratings`` folder or the shared data folder holding it; default the shared
        data folder (:func:`netphys.neural.default_shared_root`).
    window_ms, max_contamination, min_rate_hz, baseline
        As in :func:`v1_gosi`.

    Returns
    -------
    dict
        Empty (with a logged warning) when the data are absent: the comparison is optional.
    """
    found = _find_root(root)
    if found is None:
        log.warning("V1 data not found (%s); skipping the V1 comparison",
                    root if root is not None else f"shared data folder/{V1_FOLDER}")
        return {}
    out = {}
    for kind, label in (("static", "V1 static"), ("drifting", "V1 drifting")):
        out[label] = v1_gosi(found, kind, window_ms=tuple(window_ms), max_contamination=max_contamination,
                             min_rate_hz=min_rate_hz, baseline=baseline)
    return out
