"""Figures for orientation selectivity: tuning curves (Ukita 2019, Fig. 1), gOSI histograms with
the shuffle control (Figs. 2, A4), training dynamics (Fig. 3), the generalisation sweep (Fig. 4),
ablation (Fig. 5), shift invariance (Fig. 6) and network vs V1.

The functions take results computed by :mod:`netphys.stats.selectivity`, draw them, and return the
Figure; they never show or save it.
"""
from __future__ import annotations

import numbers
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.ticker import MaxNLocator
from matplotlib.transforms import offset_copy

from .._validation import check_int, param_error
from .style import WIDTHS, clear_texts, paper_plot
from ..stats.selectivity import THRESHOLD, TUNING_DIMS, gosi as _gosi, orientation_vector

__all__ = ["plot_tuning_curves", "plot_gosi_histograms", "plot_dynamics", "plot_sweep", "plot_ablation",
           "plot_invariance", "plot_v1_comparison"]

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


def _grid(n: int, ncols: int, panel: tuple[float, float], polar: bool = False, layout: str | None = None):
    """Panels on a grid; with ``layout`` the figure is the layout's width and ``panel`` gives the aspect."""
    import matplotlib.pyplot as plt

    ncols = max(1, min(ncols, n))
    nrows = int(np.ceil(n / ncols))
    if layout is not None:
        w = WIDTHS[layout]
        size = (w, w / ncols * panel[1] / panel[0] * nrows + 0.35)
    else:
        size = (panel[0] * ncols, panel[1] * nrows)
    fig, axes = plt.subplots(nrows, ncols, figsize=size,
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


@paper_plot
def plot_tuning_curves(tuning: xr.DataArray, units=None, *, ax=None, polar: bool = False,
                       negative: str = "rectify", ncols: int | None = None, layout: str = "double"):
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
    ncols : int, optional
        Panels per row of a new figure (default 5 in the double-column layout, 3 in the single).
    layout : {"double", "single"}
        Width of a new figure: 7 in or 3.5 in (text at print size).

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
    ncols = check_int(ncols if ncols is not None else (5 if layout == "double" else 3), "ncols", func, min_value=1)
    sub = tuning.isel(unit=units)
    vec = orientation_vector(sub, negative=negative)
    stats = _gosi(sub, negative=negative)
    theta = vec["orientation"].values.astype(float)
    order = np.argsort(np.mod(theta, 180.0))
    theta = np.mod(theta, 180.0)[order]
    resp_units = tuning.attrs.get("units", "a.u.")
    sf_units = tuning.attrs.get("sf_units", "")

    if ax is None:
        fig, axes = _grid(len(units), ncols, (2.4, 2.2) if not polar else (2.4, 2.6), polar=polar, layout=layout)
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
            a.tick_params(labelsize=6.5)
        else:
            x = np.concatenate([theta, theta[:1] + 180.0])
            y = np.concatenate([r, r[:1]])
            a.plot(x, y, marker="o", ms=3.5, lw=1.5,
                   label=f"{label} (gOSI {g:.2f})" if overlay else None)
            a.set_xlim(-8, 188)  # room for the end markers, which the axes would cut in half
            ticks = [0, 45, 90, 135, 180] if layout == "double" else [0, 90, 180]
            a.set_xticks(ticks)
            a.set_xticklabels([f"{t}°" for t in ticks])
            a.spines[["top", "right"]].set_visible(False)
            a.tick_params(labelsize=6.5)
        if not overlay:
            sf_txt = "" if np.isnan(pref_sf) else f", SF {pref_sf:.3g}"
            a.set_title(f"{label}\ngOSI = {g:.2f}{sf_txt}", fontsize=7)
    sf_note = f"(SF, {sf_units})" if sf_units else "(SF)"
    brk = "\n" if layout == "single" else " "
    if polar and ax is None:
        fig.suptitle(f"Radius: activation ({resp_units}), max over phase at the preferred spatial frequency "
                     f"{sf_note};{brk}angle: grating orientation", fontsize=7)
    elif not overlay and ax is None:
        fig.suptitle(f"Activation: max over phase at the preferred{brk}spatial frequency {sf_note}", fontsize=7)
    if not polar:
        for a in (axes[:1] if overlay else axes):
            lo = min(0.0, min(float(np.min(line.get_ydata())) for line in a.get_lines()))
            hi = max(float(np.max(line.get_ydata())) for line in a.get_lines())
            pad = 0.08 * ((hi - lo) or 1.0)
            a.set_ylim(lo - pad, hi + pad)  # the markers at the bottom and at the top whole
        for a in (axes[:1] if overlay else axes):
            a.set_xlabel("Orientation (deg)", fontsize=7)
            a.set_ylabel(f"Activation ({resp_units})", fontsize=7)
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
        axes[0].set_title("Preferred SF, max over phase", fontsize=7)
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


@paper_plot
def plot_gosi_histograms(gosi_by_layer, shuffled_by_layer=None, threshold: float = 0.33, *,
                         bins: int = 20, ax=None, ncols: int | None = None, density: bool = False,
                         layout: str = "double"):
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
    ncols : int, optional
        Panels per row of a new figure (default 4 in the double-column layout, 2 in the single).
    density : bool, default False
        Plot fractions of units instead of counts.
    layout : {"double", "single"}
        Width of a new figure: 7 in or 3.5 in (text at print size).

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
    ncols = check_int(ncols if ncols is not None else (4 if layout == "double" else 2), "ncols", func, min_value=1)
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
        fig, axes = _grid(n, ncols, (2.6, 2.1), layout=layout)
    else:
        axes = _axes_list(ax, n, "ax", func)
        fig = axes[0].figure
    edges = np.linspace(0.0, 1.0, bins + 1)
    for j, (name, g) in enumerate(layers.items()):
        a = axes[j]
        n_units = max(g.size, 1)
        w = np.full(g.size, 1.0 / n_units if density else 1.0)
        a.hist(g, bins=edges, weights=w, color=GRATING_COLOR, alpha=0.6, label="gratings")
        # top right: the percentage above the threshold, in the colour of its histogram
        a.text(0.97, 0.97, f"{100 * np.mean(g > threshold):.0f}%", transform=a.transAxes, ha="right", va="top",
               fontsize=7, color=GRATING_COLOR)
        if shuffled is not None:
            s = shuffled[name]
            n_shuf = s.size / n_units  # shuffles pooled: count per shuffle
            ws = np.full(s.size, (1.0 / s.size) if density else 1.0 / max(n_shuf, 1e-12))
            # an outline, so that where the two overlap no third colour appears
            a.hist(s, bins=edges, weights=ws, histtype="step", color=SHUFFLED_COLOR, lw=1.0,
                   label="shuffled control")
            a.text(0.97, 0.97, f"{100 * np.mean(s > threshold):.0f}%", ha="right", va="top", fontsize=7,
                   color=SHUFFLED_COLOR, transform=offset_copy(a.transAxes, fig=a.figure, y=-8.5, units="points"))
        a.axvline(threshold, color="k", ls="--", lw=1, label=f"threshold {threshold:g} (top right: % above it)")
        a.set_xlim(0, 1)
        a.set_xticks([0, 0.5, 1], ["0", "0.5", "1"])
        if not density:
            a.yaxis.set_major_locator(MaxNLocator(nbins=4, integer=True))
        a.set_title(f"{name} (n={g.size})", fontsize=7)
        a.spines[["top", "right"]].set_visible(False)
        a.tick_params(labelsize=6.5)
        a.set_xlabel("gOSI", fontsize=7)
        a.set_ylabel("Fraction of units" if density else "Units", fontsize=7)
    if ax is None:
        for a in axes:
            ss = a.get_subplotspec()
            if not ss.is_first_col():
                a.set_ylabel("")
            if _has_panel_below(a, axes):
                a.set_xlabel("")
    if ax is None:
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncols=len(labels) if layout == "double" else 2,
                   fontsize=7, frameon=False)
    else:
        axes[0].legend(fontsize=7, frameon=False, loc="center right")
    clear_texts(axes)  # the percentages above the bars, not on them
    return fig


# ---------------------------------------------------------------------------------------- experiments
def _tick_rotation(labels, width_in: float, fontsize: float = 6.5) -> int:
    """90 when ``labels`` side by side along ``width_in`` inches would come within a font size of each
    other (about 0.62 em per character), else 0."""
    room = width_in * 72.0 / max(1, len(labels))
    return 90 if max(len(str(l)) for l in labels) * 0.62 * fontsize + fontsize > room else 0


def _layer_colors(layers):
    import matplotlib.pyplot as plt

    cmap = plt.get_cmap("viridis")
    return {l: cmap(i / max(1, len(layers) - 1) * 0.9) for i, l in enumerate(layers)}


@paper_plot
def plot_dynamics(history: pd.DataFrame, spearman: pd.DataFrame, layers=None, *, epochs: int | None = None,
                  layout: str = "double"):
    """Fig. 3: losses and mean gOSI per layer over epochs; validation loss vs mean gOSI per layer
    (one point per epoch, first ``epochs``); Spearman rho per layer.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    layers = list(layers or spearman.index)
    cols = _layer_colors(layers)
    n = len(layers)
    per_row = n if layout == "double" else min(n, 4)
    rows_b = int(np.ceil(n / per_row))
    # nested grids: the legends beside a and b take no width from the panels of c
    if layout == "double":
        fig = plt.figure(figsize=(WIDTHS[layout], 1.7 * (2 + rows_b)), layout="constrained")
        outer = fig.add_gridspec(3, 1, height_ratios=[1, rows_b, 1])
        top = outer[0].subgridspec(1, 2)
        ax_loss, ax_g = fig.add_subplot(top[0]), fig.add_subplot(top[1])
    else:  # a and b one above the other, each with its legend beside it
        fig = plt.figure(figsize=(WIDTHS[layout], 1.35 * (3 + rows_b)), layout="constrained")
        outer = fig.add_gridspec(4, 1, height_ratios=[1, 1, rows_b, 1])
        ax_loss, ax_g = fig.add_subplot(outer[0]), fig.add_subplot(outer[1])
    gs = outer[-2].subgridspec(rows_b, per_row)
    ep = history.index.values
    ax_loss.plot(ep[1:], history["train_loss"].values[1:], color="0.55", ls="--", label="training")
    ax_loss.plot(ep, history["val_loss"].values, color="k", label="validation")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("cross-entropy loss")
    ax_loss.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_loss.legend(frameon=False, fontsize=6.5, loc="upper left", bbox_to_anchor=(1.01, 1.0),
                   handlelength=1.6)  # beside the panel: it hides no curve
    ax_loss.set_title("a  loss", loc="left", fontsize=7)
    for l in layers:
        ax_g.plot(ep, history[f"gosi_{l}"].values, color=cols[l], label=l)
    ax_g.set_xlabel("epoch (0 = initialisation)")
    ax_g.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_g.set_ylabel("mean gOSI")
    ax_g.legend(frameon=False, fontsize=6.5, ncols=1, loc="upper left", bbox_to_anchor=(1.01, 1.0),
                handlelength=1.2)  # beside the panel: it hides no curve
    ax_g.set_title("b  mean gOSI per layer", loc="left", fontsize=7)
    win = history.loc[1:epochs] if epochs else history.loc[1:]
    for j, l in enumerate(layers):
        a = fig.add_subplot(gs[j // per_row, j % per_row])
        a.scatter(win["val_loss"], win[f"gosi_{l}"], c=win.index.values, cmap="Greys", s=14,
                  edgecolor=cols[l], linewidths=0.8)
        a.margins(0.2)  # whole markers at the panel's edges
        a.set_title(l, fontsize=7)
        a.tick_params(labelsize=6.5)
        a.set_xlabel("val. loss", fontsize=7)
        a.xaxis.set_major_locator(MaxNLocator(2))
        a.tick_params(axis="x", labelrotation=90)
        a.ticklabel_format(axis="x", useOffset=False)
        if j % per_row == 0:
            a.set_ylabel("mean gOSI", fontsize=7)
        if j == 0:
            a.set_title("c", loc="left", fontsize=7)
    ax_r = fig.add_subplot(outer[-1])
    rho = spearman.loc[layers, "rho"].values
    ax_r.bar(np.arange(n), rho, color=[cols[l] for l in layers])
    for i, (r, p) in enumerate(zip(rho, spearman.loc[layers, "p"].values)):
        if np.isfinite(p) and p < 0.05:  # beyond the end of the bar, not on it
            ax_r.annotate("*", (i, r), xytext=(0, 1 if r >= 0 else -1), textcoords="offset points",
                          ha="center", va="bottom" if r >= 0 else "top", fontsize=9)
    ax_r.axhline(0, color="k", lw=0.8)
    ax_r.set_xticks(np.arange(n), layers, rotation=_tick_rotation(layers, WIDTHS[layout] - 0.7))
    ax_r.set_ylim(-1.5, 1.5)  # room for an asterisk beyond |rho| = 1
    ax_r.set_yticks([-1, 0, 1])
    ax_r.set_ylabel("Spearman rho\n(val. loss, mean gOSI)")
    ax_r.set_title("d  correlation over epochs (* p < 0.05)", loc="left", fontsize=7)
    return fig


@paper_plot
def plot_sweep(sweep: pd.DataFrame, rho: pd.DataFrame, layers=None, *, layout: str = "double"):
    """Fig. 4: (a) test loss vs mean gOSI per layer (one point per network), (b) mean gOSI vs
    label-corruption rate, (c) Spearman rho per layer.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    layers = list(layers or rho.index)
    n = len(layers)
    aug_colors = {"none": "tab:gray", "shift": "tab:blue", "flip": "tab:orange", "shift+flip": "tab:green"}
    per_row = n if layout == "double" else min(n, 4)
    rows = int(np.ceil(n / per_row))
    fig = plt.figure(figsize=(WIDTHS[layout], (1.6 if layout == "double" else 1.35) * (2 * rows + 1) + 0.45),
                     layout="constrained")
    gs = fig.add_gridspec(2 * rows + 1, per_row)
    cor = sweep[sweep["augmentation"] == "none"].sort_values("corruption")
    augs = [a for a in aug_colors if a in set(sweep["augmentation"])] + \
        sorted(set(sweep["augmentation"]) - set(aug_colors))
    for j, l in enumerate(layers):
        a = fig.add_subplot(gs[j // per_row, j % per_row])
        for aug in augs:
            clean = sweep[(sweep["augmentation"] == aug) & (sweep["corruption"] == 0)]
            a.scatter(clean["test_loss"], clean[f"gosi_{l}"], s=16, color=aug_colors.get(aug, "k"))
        corr = sweep[sweep["corruption"] > 0]
        a.scatter(corr["test_loss"], corr[f"gosi_{l}"], s=18, marker="x", color="tab:red")
        a.margins(0.15)  # whole markers at the panel's edges
        a.set_title(l, fontsize=7)
        a.tick_params(labelsize=6.5)
        a.ticklabel_format(useOffset=False)
        a.set_xlabel("test loss", fontsize=7)
        a.xaxis.set_major_locator(MaxNLocator(2))
        a.tick_params(axis="x", labelrotation=90)
        b = fig.add_subplot(gs[rows + j // per_row, j % per_row])
        b.plot(cor["corruption"], cor[f"gosi_{l}"], "o-", color="tab:red", ms=4)
        b.margins(0.12)
        b.set_title(l, fontsize=7)
        b.tick_params(labelsize=6.5)
        b.set_xlabel("corruption", fontsize=7)
        if j % per_row == 0:
            a.set_ylabel("mean gOSI", fontsize=7)
            b.set_ylabel("mean gOSI", fontsize=7)
        if j == 0:
            for ax_, letter in ((a, "a"), (b, "b")):
                ax_.set_title(letter, loc="left", fontsize=7)
    handles = [Line2D([], [], ls="none", marker="o", ms=4, color=aug_colors.get(aug, "k")) for aug in augs]
    labels = list(augs)
    handles.append(Line2D([], [], ls="none", marker="x", ms=4.5, color="tab:red"))
    labels.append("label corruption > 0 (no augmentation)")
    fig.legend(handles, labels, loc="outside upper center", frameon=False, ncols=5 if layout == "double" else 3,
               title="a: augmentation (clean labels) or label corruption", columnspacing=1.0)
    ax_r = fig.add_subplot(gs[-1, :])
    x = np.arange(n)
    ax_r.bar(x - 0.2, rho.loc[layers, "rho_all"], width=0.4, color="tab:purple", label="all networks")
    ax_r.bar(x + 0.2, rho.loc[layers, "rho_augmentation"], width=0.4, color="tab:green",
             label="clean labels only")
    ax_r.axhline(0, color="k", lw=0.8)
    ax_r.set_xticks(x, layers, rotation=_tick_rotation(layers, WIDTHS[layout] - 0.7))
    ax_r.set_ylim(-1.1, 1.75)  # room above rho <= 1 for the legend, which then hides no bar
    ax_r.set_yticks([-1, 0, 1])
    ax_r.set_ylabel("Spearman rho\n(test loss, mean gOSI)")
    ax_r.legend(frameon=False, fontsize=7, loc="upper center", ncols=2)
    ax_r.set_title(f"c  correlation over {len(sweep)} networks", loc="left", fontsize=7)
    return fig


@paper_plot
def plot_ablation(ablation: pd.DataFrame, *, ax=None, layout: str = "double"):
    """Fig. 5: change of test loss per layer after ablating the top (red) vs bottom (blue) 50% gOSI
    units (random halves in grey, mean \u00b1 SD); asterisks where top > 2x bottom.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from .style import new_axes

    fig, ax = new_axes(ax, figsize=(WIDTHS[layout], 2.7 if layout == "double" else 2.8))
    layers = list(ablation.index)
    x = np.arange(len(layers))
    ax.plot(x, ablation["d_top"], "o-", color="tab:red", label="top 50% gOSI ablated")
    ax.plot(x, ablation["d_bottom"], "o-", color="tab:blue", label="bottom 50% gOSI ablated")
    if ablation["d_random"].notna().any():
        ax.errorbar(x, ablation["d_random"], yerr=ablation["d_random_sd"].fillna(0), fmt="s--", color="0.55",
                    ms=3, capsize=2, lw=1, label="random 50% (mean \u00b1 SD)")
    marked = np.asarray(ablation["marked"].values, dtype=bool)
    if marked.any():  # a marker above the higher of the two points (a data mark: the axes make room)
        cols = ["d_top", "d_bottom"] + (["d_random"] if ablation["d_random"].notna().any() else [])
        lo = float(np.nanmin(ablation[cols].values))
        hi = float(np.nanmax(ablation[cols].values))
        top = ablation[["d_top", "d_bottom"]].max(axis=1).values
        ax.plot(x[marked], top[marked] + 0.08 * ((hi - lo) or 1.0), ls="none", marker="$*$", ms=7, color="k",
                label="top > 2 \u00d7 bottom")
    ax.axhline(0, color="k", lw=0.7)
    many = len(layers) > 8
    ax.set_xticks(x, layers, rotation=90 if many else 0, ha="center")
    ax.set_ylabel("change of test loss")
    ax.set_xlabel("ablated layer")
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(frameon=False, fontsize=7, loc="lower center", bbox_to_anchor=(0.5, 1.0), borderaxespad=0.2,
              ncols=4 if layout == "double" else 2, columnspacing=1.0)  # above the panel: it hides no data
    return fig


@paper_plot
def plot_invariance(invariance: pd.DataFrame, *, direction: str = "all", layout: str = "double"):
    """Fig. 6: coefficient of variation under shifts per layer (mean +- SEM over units), intact
    network (black) vs the top-gOSI (red) and bottom-gOSI (blue) halves of a layer ablated; one
    panel per ablated layer.

    Parameters
    ----------
    invariance : pandas.DataFrame
        The summary of :func:`netphys.interventions.invariance_effects`.
    direction : {"all", "horizontal", "vertical", "both"}

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    d = invariance[invariance["direction"] == direction]
    ablated = [l for l in dict.fromkeys(d["ablated_layer"]) if l != "none"]
    n = max(1, len(ablated))
    n_layers = len(dict.fromkeys(d.loc[d["network"] == "intact", "layer"]))
    # one column of full-width panels in a single column when the layer names would not fit
    ncols = min(n, 3 if layout == "double" else (2 if n_layers <= 8 else 1))
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(WIDTHS[layout], (2.3 if layout == "double" else 2.0) * nrows + 0.45),
                             squeeze=False, layout="constrained")
    for a in axes.ravel()[n:]:
        a.remove()
    axes = [list(axes.ravel()[:n])]
    base = d[d["network"] == "intact"]
    layers = list(dict.fromkeys(base["layer"]))
    x = np.arange(len(layers))
    colors = {"top": "tab:red", "bottom": "tab:blue"}
    for a, l in zip(axes[0], ablated or [None]):
        a.errorbar(x, base["mean"], yerr=base["sem"], fmt="o-", color="k", capsize=2, label="no ablation")
        for k, (group, grp) in enumerate(d[d["ablated_layer"] == l].groupby("group", sort=False)):
            s = grp.set_index("layer").loc[layers]
            a.errorbar(x + 0.08 * (k + 1), s["mean"], yerr=s["sem"], fmt="o-", color=colors.get(group, "0.5"),
                       capsize=2, ms=4, label=f"{group}-gOSI half ablated")
        a.set_xticks(x, layers, fontsize=6.5, rotation=90 if len(layers) > 8 or layout == "single" else 0,
                     ha="center")
        a.set_title(f"{l} ablation" if l else "intact", fontsize=7)
        a.spines[["top", "right"]].set_visible(False)
        ss = a.get_subplotspec()
        if ss.is_first_col():
            a.set_ylabel(f"CV under shift ({direction})")
        if not _has_panel_below(a, axes[0]):
            a.set_xlabel("layer")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=3 if layout == "double" else 2, frameon=False,
               fontsize=7)  # below the panels: it hides no data
    return fig


@paper_plot
def plot_v1_comparison(network: xr.Dataset, v1: dict, layers=None, *, threshold: float = THRESHOLD,
                       layout: str = "double"):
    """gOSI distributions of the network's layers next to V1 populations (bottom), with the percentage of
    selective units (gOSI > ``threshold``) of each above it (top); the number of units in each name.

    Parameters
    ----------
    network : xarray.Dataset
        :func:`netphys.stats.selectivity.channel_gosi` output (``layer`` coordinate).
    v1 : dict
        Population name -> Dataset with a ``gosi`` variable (e.g. from :func:`netphys.neural.v1.load_v1_gosi`).

    Returns
    -------
    matplotlib.figure.Figure

    Notes
    -----
    Boxes: median and quartiles; whiskers: the furthest unit within 1.5 interquartile ranges; dots: single
    units (jittered sideways); dashed: the threshold. Network channels in blue, V1 units in orange.
    """
    import matplotlib.pyplot as plt

    lay = network["layer"].values
    layers = list(layers or dict.fromkeys(lay.tolist()))
    groups = {l: network["gosi"].values[lay == l] for l in layers}
    groups.update({k: d["gosi"].values for k, d in v1.items()})
    groups = {k: np.asarray(v, dtype=float)[np.isfinite(np.asarray(v, dtype=float))] for k, v in groups.items()}
    names = list(groups)
    fig, (top, ax) = plt.subplots(2, 1, figsize=(WIDTHS[layout], 3.3 if layout == "double" else 3.9),
                                  layout="constrained", sharex=True, gridspec_kw={"height_ratios": [1, 3]})
    rng = np.random.default_rng(0)
    colors = ["tab:blue"] * len(layers) + ["tab:orange"] * len(v1)
    x = np.arange(len(names))
    for i, (k, v) in enumerate(groups.items()):
        ax.boxplot([v], positions=[i], widths=0.6, showfliers=False,
                   medianprops={"color": "k"}, boxprops={"color": colors[i]},
                   whiskerprops={"color": colors[i]}, capprops={"color": colors[i]})
        ax.scatter(i + rng.uniform(-0.22, 0.22, v.size), v, s=4, alpha=0.35, color=colors[i], lw=0)
    frac = [100 * np.mean(v > threshold) if v.size else np.nan for v in groups.values()]
    top.bar(x, frac, width=0.6, color=colors)
    top.set_ylim(0, 100)
    top.set_yticks([0, 50, 100])
    top.set_ylabel(f"% gOSI\n> {threshold:g}")
    top.spines[["top", "right"]].set_visible(False)
    top.tick_params(axis="x", length=0)
    ax.axhline(threshold, color="k", ls="--", lw=0.8)
    ax.set_xticks(x, [f"{k} ({v.size})" for k, v in groups.items()], rotation=90, ha="center", fontsize=6.5)
    ax.set_xlim(-0.6, len(names) - 0.4)
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("gOSI")
    ax.set_xlabel("network layer (blue) or V1 population (orange)" + ("\n" if layout == "single" else " ")
                  + "(number of units)")
    ax.spines[["top", "right"]].set_visible(False)
    return fig
