"""Figures for orientation selectivity: tuning curves (Ukita 2019, Fig. 1) and gOSI histograms
with the shuffle control (Figs. 2, A4).

The functions take results computed by :mod:`netphys.stats.selectivity`, draw them, and return the
Figure; they never show or save it.
"""
from __future__ import annotations

import numbers
from typing import Mapping, Sequence

import numpy as np
import xarray as xr
from matplotlib.ticker import MaxNLocator

from .._validation import check_int, param_error
from ..stats.selectivity import TUNING_DIMS, gosi as _gosi, orientation_vector

__all__ = ["plot_tuning_curves", "plot_gosi_histograms"]

#: Colours of the paper's histograms: gratings in red, shuffled control in blue.
GRATING_COLOR = "tab:red"
SHUFFLED_COLOR = "tab:blue"


def _axes_list(ax, n: int, param: str, func: str):
    """Normalise ``ax`` (one Axes or a sequence of Axes) to a list."""
    from matplotlib.axes import Axes

    if isinstance(ax, Axes):
        return [ax]
    if isinstance(ax, np.ndarray):
        ax = list(ax.ravel())
    if isinstance(ax, Sequence) and all(isinstance(a, Axes) for a in ax) and len(ax) == n:
        return list(ax)
    raise param_error(param, func, f"a matplotlib Axes or a sequence of {n} Axes", ax)


def _grid(n: int, ncols: int, panel: tuple[float, float], polar: bool = False):
    import matplotlib.pyplot as plt

    ncols = max(1, min(ncols, n))
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(panel[0] * ncols, panel[1] * nrows),
                             squeeze=False, layout="constrained",
                             subplot_kw={"projection": "polar"} if polar else None)
    axes = list(axes.ravel())
    for a in axes[n:]:
        a.remove()
    return fig, axes[:n]


def _unit_label(tuning: xr.DataArray, pos: int) -> str:
    u = tuning["unit"].values[pos]
    parts = []
    if "layer" in tuning.coords and tuning["layer"].dims == ("unit",):
        parts.append(str(tuning["layer"].values[pos]))
    if "channel" in tuning.coords and tuning["channel"].dims == ("unit",):
        parts.append(f"ch {tuning['channel'].values[pos]}")
    else:
        parts.append(f"unit {u}")
    return " ".join(parts)


def plot_tuning_curves(tuning: xr.DataArray, units=None, *, ax=None, polar: bool = False,
                       negative: str = "rectify", ncols: int = 5):
    """Orientation-tuning curves of example units, annotated with their gOSI.

    Each curve is the vector gOSI is computed on (:func:`~netphys.stats.selectivity.orientation_vector`):
    the maximum over phase at the unit's preferred spatial frequency, against orientation.

    Parameters
    ----------
    tuning : xarray.DataArray, dims (unit, orientation, phase, sf)
        From :func:`~netphys.stats.selectivity.tuning_array`.
    units : int or sequence of int, optional
        Positions along ``unit`` to plot; defaults to the first 10 units.
    ax : matplotlib Axes or sequence of Axes, optional
        One Axes: all curves overlaid with a legend. A sequence: one Axes per unit. ``None``: a new
        figure with one panel per unit (``ncols`` per row). With ``polar=True`` the Axes must be
        polar.
    polar : bool, default False
        Polar plot: the response is drawn at ``theta`` and at ``theta + 180`` deg (orientation is
        180-deg periodic), so a selective unit draws a two-lobed "bow tie" along its preferred
        orientation (the wave-vector direction of the grating, see :mod:`netphys.stimuli.gratings`).
    negative : {"rectify", "shift", "raise"}, default "rectify"
        Passed to the gOSI computation (see :mod:`netphys.stats.selectivity`).
    ncols : int, default 5

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    NetphysError
        If ``tuning`` has dims other than (unit, orientation, phase, sf), a unit position is out of
        range, or ``ax`` does not match.

    References
    ----------
    J. Ukita, ICLR 2019 submission, Fig. 1.
    """
    func = "plot_tuning_curves"
    if not isinstance(tuning, xr.DataArray) or set(tuning.dims) != {"unit", *TUNING_DIMS}:
        got = f"dims {tuning.dims}" if isinstance(tuning, xr.DataArray) else type(tuning).__name__
        raise param_error("tuning", func, "a DataArray with dims ('unit', 'orientation', 'phase', 'sf')",
                          got, "select one layer/realisation first (e.g. .isel(layer=0))")
    n_unit = tuning.sizes["unit"]
    if units is None:
        units = list(range(min(10, n_unit)))
    elif isinstance(units, numbers.Integral):
        units = [units]
    units = [check_int(u, "units", func, min_value=0, max_value=n_unit - 1) for u in units]
    if not units:
        raise param_error("units", func, "a non-empty sequence of unit positions", units)
    ncols = check_int(ncols, "ncols", func, min_value=1)
    sub = tuning.isel(unit=units)
    vec = orientation_vector(sub, negative=negative)
    stats = _gosi(sub, negative=negative)
    theta = vec["orientation"].values.astype(float)
    order = np.argsort(np.mod(theta, 180.0))
    theta = np.mod(theta, 180.0)[order]
    resp_units = tuning.attrs.get("units", "a.u.")
    sf_units = tuning.attrs.get("sf_units", "")

    if ax is None:
        fig, axes = _grid(len(units), ncols, (2.4, 2.2) if not polar else (2.4, 2.6), polar=polar)
        overlay = False
    else:
        axes = _axes_list(ax, len(units), "ax", func)
        overlay = len(axes) == 1 and len(units) > 1
        fig = axes[0].figure
    if polar and any(a.name != "polar" for a in axes):
        raise param_error("ax", func, "polar Axes when polar=True", [a.name for a in axes],
                          "create them with subplot_kw={'projection': 'polar'}")

    for j, pos in enumerate(units):
        a = axes[0] if overlay else axes[j]
        r = vec.values[j][order]
        g = float(stats["gosi"].values[j])
        label = _unit_label(tuning, pos)
        pref_sf = float(stats["preferred_sf"].values[j])
        if polar:
            ang = np.deg2rad(np.concatenate([theta, theta + 180.0, theta[:1] + 360.0]))
            rr = np.concatenate([r, r, r[:1]])
            line, = a.plot(ang, rr, marker="o", ms=3, lw=1.5,
                           label=f"{label} (gOSI {g:.2f})" if overlay else None)
            if not overlay:
                a.fill(ang, rr, alpha=0.15, color=line.get_color())
            # orientation is 180-deg periodic: label the upper half only
            a.set_thetagrids(np.arange(0, 360, 45),
                             labels=["0°", "45°", "90°", "135°", "", "", "", ""])
            a.yaxis.set_major_locator(MaxNLocator(3))
            a.set_rlabel_position(112.5)
            a.tick_params(labelsize=7)
        else:
            x = np.concatenate([theta, theta[:1] + 180.0])
            y = np.concatenate([r, r[:1]])
            a.plot(x, y, marker="o", ms=3.5, lw=1.5,
                   label=f"{label} (gOSI {g:.2f})" if overlay else None)
            a.set_xlim(0, 180)
            a.set_xticks([0, 45, 90, 135, 180])
            a.set_xticklabels(["0°", "45°", "90°", "135°", "180°"])
            a.spines[["top", "right"]].set_visible(False)
            a.tick_params(labelsize=8)
        if not overlay:
            sf_txt = "" if np.isnan(pref_sf) else f", SF {pref_sf:.3g}" + (
                " c/img" if sf_units == "cycles/image" else f" {sf_units}" if sf_units else "")
            a.set_title(f"{label}\ngOSI = {g:.2f}{sf_txt}", fontsize=9)
    if polar and ax is None:
        fig.suptitle(f"Radius: activation ({resp_units}) at the preferred SF, max over phase; "
                     "angle: grating orientation", fontsize=8)
    if not polar:
        for a in (axes[:1] if overlay else axes):
            lo = min(float(np.min(line.get_ydata())) for line in a.get_lines())
            a.set_ylim(bottom=min(0.0, lo))
        for a in (axes[:1] if overlay else axes):
            a.set_xlabel("Orientation (deg)", fontsize=9)
            a.set_ylabel(f"Activation ({resp_units})", fontsize=9)
        if not overlay and ax is None:
            # label only the outer panels of the grid
            for a in axes:
                ss = a.get_subplotspec()
                if ss is not None and not ss.is_last_row() and _has_panel_below(a, axes):
                    a.set_xlabel("")
                if ss is not None and not ss.is_first_col():
                    a.set_ylabel("")
    if overlay:
        axes[0].legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        axes[0].set_title("Preferred SF, max over phase", fontsize=9)
    return fig


def _has_panel_below(a, axes) -> bool:
    ss = a.get_subplotspec()
    below = ss.rowspan.stop
    cols = set(ss.colspan)
    return any(o.get_subplotspec().rowspan.start == below and cols & set(o.get_subplotspec().colspan)
               for o in axes if o is not a)


def _values_by_layer(data, param: str, func: str) -> dict:
    """Mapping layer -> 1-D gOSI values from a mapping or a labelled result with a 'layer' coord."""
    def flat(v, key):
        if isinstance(v, xr.Dataset):
            if "gosi" not in v:
                raise param_error(param, func, "gOSI results with a 'gosi' variable",
                                  f"variables {list(v.data_vars)} for {key!r}")
            v = v["gosi"]
        a = np.asarray(v.values if isinstance(v, xr.DataArray) else v, dtype=float).ravel()
        if a.size == 0:
            raise param_error(param, func, "non-empty gOSI values for every layer", f"none for {key!r}")
        a = a[np.isfinite(a)]
        return a

    if isinstance(data, Mapping):
        if not data:
            raise param_error(param, func, "a non-empty mapping layer -> gOSI", data)
        return {str(k): flat(v, k) for k, v in data.items()}
    if isinstance(data, (xr.Dataset, xr.DataArray)):
        if "layer" not in data.coords:
            return {"all units": flat(data, "all units")}
        g = data["gosi"] if isinstance(data, xr.Dataset) and "gosi" in data else data
        layer = data["layer"]
        if "layer" in data.dims:
            return {str(lv): flat(g.sel(layer=lv), lv) for lv in layer.values}
        names = list(dict.fromkeys(np.asarray(layer.values).ravel().tolist()))
        dim = layer.dims[0]
        return {str(n): flat(g.isel({dim: np.flatnonzero(layer.values == n)}), n) for n in names}
    if isinstance(data, (np.ndarray, list, tuple)):
        return {"all units": flat(data, "all units")}
    raise param_error(param, func, "a mapping layer -> gOSI, or a gOSI Dataset/DataArray",
                      type(data).__name__)


def plot_gosi_histograms(gosi_by_layer, shuffled_by_layer=None, threshold: float = 0.33, *,
                         bins: int = 20, ax=None, ncols: int = 4, density: bool = False):
    """Per-layer histograms of gOSI with the shuffle control and the selectivity threshold.

    Parameters
    ----------
    gosi_by_layer : mapping str -> gOSI results, or a labelled gOSI result
        Per layer (in display order): the Dataset of :func:`~netphys.stats.selectivity.gosi`, its
        ``gosi`` DataArray, or plain values. A single Dataset/DataArray is split by its ``layer``
        coordinate (or dim) when it has one.
    shuffled_by_layer : same form, optional
        The control from :func:`~netphys.stats.selectivity.shuffled_gosi`, with the same layers.
        Several shuffles are pooled and their counts divided by the number of shuffles, so both
        histograms count units.
    threshold : float, default 0.33
        Drawn as a dashed line; the fraction of units above it is printed in each panel.
    bins : int, default 20
        Equal-width bins on ``[0, 1]``.
    ax : matplotlib Axes or sequence of Axes, optional
        One Axes per layer; ``None`` makes a new figure with ``ncols`` panels per row.
    ncols : int, default 4
    density : bool, default False
        Plot fractions of units instead of counts.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    NetphysError
        If the inputs are empty, the shuffled layers do not match, or ``ax`` does not match the
        number of layers.

    References
    ----------
    J. Ukita, ICLR 2019 submission, Figs. 2 and A4 (gratings in red, shuffled control in blue).
    """
    func = "plot_gosi_histograms"
    ok = isinstance(threshold, numbers.Real) and not isinstance(threshold, bool) and 0 <= threshold <= 1
    if not ok:
        raise param_error("threshold", func, "a number in [0, 1]", threshold)
    bins = check_int(bins, "bins", func, min_value=1)
    ncols = check_int(ncols, "ncols", func, min_value=1)
    layers = _values_by_layer(gosi_by_layer, "gosi_by_layer", func)
    shuffled = None
    if shuffled_by_layer is not None:
        shuffled = _values_by_layer(shuffled_by_layer, "shuffled_by_layer", func)
        missing = [k for k in layers if k not in shuffled]
        if missing:
            raise param_error("shuffled_by_layer", func, "the same layers as gosi_by_layer",
                              sorted(shuffled), f"missing {missing}")
    n = len(layers)
    if ax is None:
        fig, axes = _grid(n, ncols, (2.6, 2.1))
    else:
        axes = _axes_list(ax, n, "ax", func)
        fig = axes[0].figure
    edges = np.linspace(0.0, 1.0, bins + 1)
    for j, (name, g) in enumerate(layers.items()):
        a = axes[j]
        n_units = max(g.size, 1)
        w = np.full(g.size, 1.0 / n_units if density else 1.0)
        a.hist(g, bins=edges, weights=w, color=GRATING_COLOR, alpha=0.6, label="gratings")
        text = f"{100 * np.mean(g > threshold):.0f}% > {threshold:g}"
        if shuffled is not None:
            s = shuffled[name]
            n_shuf = s.size / n_units  # shuffles pooled: count per shuffle
            ws = np.full(s.size, (1.0 / s.size) if density else 1.0 / max(n_shuf, 1e-12))
            a.hist(s, bins=edges, weights=ws, color=SHUFFLED_COLOR, alpha=0.5, label="shuffled control")
            text += f"\nshuffled {100 * np.mean(s > threshold):.0f}%"
        a.axvline(threshold, color="k", ls="--", lw=1, label=f"threshold ({threshold:g})")
        a.text(0.97, 0.95, text, transform=a.transAxes, ha="right", va="top", fontsize=7)
        a.set_xlim(0, 1)
        a.set_title(f"{name} (n = {g.size})", fontsize=9)
        a.spines[["top", "right"]].set_visible(False)
        a.tick_params(labelsize=8)
        a.set_xlabel("gOSI", fontsize=9)
        a.set_ylabel("Fraction of units" if density else "Units", fontsize=9)
    if ax is None:
        for a in axes:
            ss = a.get_subplotspec()
            if not ss.is_first_col():
                a.set_ylabel("")
            if _has_panel_below(a, axes):
                a.set_xlabel("")
    if ax is None:
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncols=len(labels), fontsize=8,
                   frameon=False)
    else:
        axes[0].legend(fontsize=7, frameon=False, loc="center right")
    return fig
