"""Figures of the CAR pruning experiment (:mod:`netphys.experiments.car`): accuracy vs filters kept per layer
(the thesis's Fig. 2.3, in its colours), the compression ratio at the stop criterion per layer and method
(Table 2.1 as bars), and a CARc heatmap (classes x the most important filters of one layer)."""
from __future__ import annotations

import numpy as np
import xarray as xr

from .style import panel_grid, paper_figure, paper_plot

__all__ = ["plot_accuracy_vs_kept", "plot_compression", "plot_carc_heatmap", "figure_specs", "COLORS", "LABELS"]

#: Fig. 2.3 of the thesis: CAR purple, CAR + fine-tuning blue, outgoing black, incoming green, random red
COLORS = {"car": "#7b2d8e", "car_finetuned": "#1f5fbf", "outgoing": "black", "incoming": "#2e8b57",
          "random": "#d62728", "car_oneshot": "#e08214"}
LABELS = {"car": "CAR", "car_finetuned": "CAR + fine-tuning", "outgoing": "outgoing weights",
          "incoming": "incoming weights", "random": "random", "car_oneshot": "CAR (one-shot)"}
INTACT = "#d62728"


def _legend(fig, handles, labels, layout, ncol=None):
    ncol = ncol or min(len(labels), 6 if layout == "double" else 3)
    fig.legend(handles, labels, loc="outside upper center", ncols=ncol, frameon=False, handlelength=1.8,
               columnspacing=1.0)


@paper_plot
def plot_accuracy_vs_kept(result: xr.Dataset, layers=None, *, layout: str = "double"):
    """Test accuracy vs filters kept, one panel per layer, every method (random: mean +/- sd over repeats),
    CAR + fine-tuning at its fine-tuned points, the uncompressed network as a dashed line.

    Parameters
    ----------
    result : xarray.Dataset
        The result of ``car.all`` / ``car.quick``.
    layers : sequence of str, optional
        Default: every layer of the result.
    layout : {"double", "single"}

    Returns
    -------
    matplotlib.figure.Figure
    """
    layers = [str(l) for l in (result["layer"].values if layers is None else layers)]
    fig, axes = panel_grid(len(layers), layout, 1.45 if layout == "double" else 1.35, "plot_accuracy_vs_kept",
                           max_cols=4, extra=0.55)
    seen = {}
    ncols = min(len(layers), 4 if layout == "double" else 2)
    for i, (ax, l) in enumerate(zip(axes, layers)):
        sub = result.sel(layer=l)
        kept = sub["n_kept"].values
        ok_steps = kept >= 0
        for m in [str(v) for v in result["method"].values]:
            t = sub["test_accuracy"].sel({"method": m}).values[:, ok_steps]
            x = kept[ok_steps]
            if not np.isfinite(t).any():
                continue
            col, lab = COLORS.get(m, "0.4"), LABELS.get(m, m)
            if m == "random":
                reps = np.isfinite(t).any(axis=1)
                t = t[reps]
                mean = np.nanmean(t, axis=0)
                sd = np.nanstd(t, axis=0, ddof=1) if t.shape[0] > 1 else None
                every = max(1, x.size // 10)
                h = ax.errorbar(x, mean, yerr=sd, color=col, lw=0.9, elinewidth=0.6, capsize=1.2, errorevery=every,
                                label=lab, zorder=2)
            else:
                (h,) = ax.plot(x, t[0], color=col, lw=1.0, label=lab, zorder=3 if m == "car" else 2)
            seen.setdefault(lab, h)
        ftk = sub["ft_n_kept"].values
        okf = ftk >= 0
        if okf.any():
            order = np.argsort(-ftk[okf])
            (h,) = ax.plot(ftk[okf][order], sub["ft_test_accuracy"].values[okf][order], color=COLORS["car_finetuned"],
                           marker="o", ms=2.8, lw=1.0, label=LABELS["car_finetuned"], zorder=4)
            seen.setdefault(LABELS["car_finetuned"], h)
        h = ax.axhline(float(sub["intact_test_accuracy"]), color=INTACT, ls="--", lw=0.8, label="uncompressed",
                       zorder=1)
        seen.setdefault("uncompressed", h)
        n = int(sub["n_filters"])
        lo = int(kept[ok_steps].min())
        ax.set_xlim(n + 0.02 * (n - lo) + 0.5, lo - 0.02 * (n - lo) - 0.5)  # pruning runs left to right
        ax.set_title(f"{l} ({n} filters)")
        if i % ncols == 0:
            ax.set_ylabel("test accuracy")
        ax.locator_params(axis="x", nbins=4)
    fig.supxlabel("filters kept")
    _legend(fig, list(seen.values()), list(seen), layout)
    return fig


@paper_plot
def plot_compression(result: xr.Dataset, *, layout: str = "double"):
    """Compression ratio (original / kept filters) at the stop criterion, per layer and method (random:
    mean +/- sd over repeats; hatched: the path reached the end of the curve first, a lower bound).

    Returns
    -------
    matplotlib.figure.Figure
    """
    layers = [str(l) for l in result["layer"].values]
    methods = [str(m) for m in result["method"].values]
    series = []
    for m in methods:
        r = result["compression_ratio"].sel({"method": m}).values  # (layer, repeat)
        mean, sd = np.full(r.shape[0], np.nan), np.full(r.shape[0], np.nan)
        for i, row in enumerate(r):
            v = row[np.isfinite(row)]
            if v.size:
                mean[i] = v.mean()
            if v.size > 1:
                sd[i] = v.std(ddof=1)
        cens = result["censored"].sel({"method": m}).values.any(axis=1)
        series.append((m, mean, sd if m == "random" else None, cens))
    if "ft_compression_ratio" in result and np.isfinite(result["ft_compression_ratio"].values).any():
        series.insert(methods.index("car") + 1 if "car" in methods else 0,
                      ("car_finetuned", result["ft_compression_ratio"].values, None, result["ft_censored"].values))
    h = 2.0 if layout == "double" else 1.9
    fig, ax = paper_figure(layout, h, func="plot_compression", nrows=1, ncols=1)
    x = np.arange(len(layers))
    width = 0.8 / len(series)
    from matplotlib.patches import Patch

    handles = []
    for j, (m, mean, sd, cens) in enumerate(series):
        xs = x - 0.4 + width * (j + 0.5)
        hb = ax.bar(xs, mean, width=width * 0.92, color=COLORS.get(m, "0.5"), label=LABELS.get(m, m), lw=0)
        for b, c in zip(hb.patches, cens):
            if c:
                b.set_hatch("////")
                b.set_edgecolor("white")
        if sd is not None and np.isfinite(sd).any():
            ax.errorbar(xs, mean, yerr=np.nan_to_num(sd), fmt="none", ecolor="0.25", elinewidth=0.6, capsize=1.2)
        handles.append(Patch(color=COLORS.get(m, "0.5"), lw=0))
    if any(np.any(s[3]) for s in series):
        handles.append(Patch(facecolor="0.6", hatch="////", edgecolor="white", lw=0))
    ax.axhline(1.0, color="0.5", lw=0.6, ls=":")
    ax.set_xticks(x)
    ax.set_xticklabels(layers, rotation=90 if (len(layers) > 4 or layout == "single") else 0)
    ax.set_xlim(-0.6, len(layers) - 0.4)
    top = np.nanmax([np.nanmax(s[1] + (np.nan_to_num(s[2]) if s[2] is not None else 0)) for s in series])
    ax.set_ylim(0, max(1.2, float(top) * 1.08))
    ax.set_ylabel(f"compression ratio at a {100 * float(result.attrs.get('max_drop', 0.05)):g} % drop")
    labels = [LABELS.get(s[0], s[0]) for s in series]
    labels += ["hatched: curve ended first"] * (len(handles) - len(labels))
    _legend(fig, handles, labels, layout, ncol=min(len(labels), 4 if layout == "double" else 2))
    return fig


@paper_plot
def plot_carc_heatmap(result: xr.Dataset, layer: str | None = None, n_filters: int = 10, *, layout: str = "double"):
    """CARc (class-wise accuracy drop when the filter alone is removed) of the ``n_filters`` filters of
    largest CAR of ``layer``: classes x filters, most important filter first.

    Returns
    -------
    matplotlib.figure.Figure
    """
    layer = str(layer or result.attrs.get("carc_layer") or result["layer"].values[-1])
    sub = result.sel(layer=layer)
    car = sub["car"].values
    ok = np.flatnonzero(np.isfinite(car))
    loss = sub["loss_increase"].values
    order = ok[np.lexsort((ok, -loss[ok], -car[ok]))][:n_filters]
    c = sub["carc"].values[:, order]
    names = [str(v) for v in result["class_name"].values]
    vmax = float(np.nanmax(np.abs(c))) if np.isfinite(c).any() and np.nanmax(np.abs(c)) > 0 else 0.01
    h = 0.35 + 0.16 * len(names) + 0.55
    fig, ax = paper_figure(layout, h, func="plot_carc_heatmap", nrows=1, ncols=1)
    im = ax.imshow(c, cmap="RdBu_r", vmin=-vmax, vmax=vmax, aspect="auto", interpolation="nearest")
    ax.set_yticks(np.arange(len(names)))
    ax.set_yticklabels(names)
    ax.set_xticks(np.arange(order.size))
    ax.set_xticklabels([str(int(f)) for f in order], rotation=90 if layout == "single" and order.size > 8 else 0)
    ax.set_xlabel(f"filter of {layer} (largest CAR first)")
    for s in ax.spines.values():
        s.set_visible(False)
    cb = fig.colorbar(im, ax=ax, shrink=0.95, pad=0.02)
    cb.set_label("CARc (class accuracy drop)")
    cb.ax.tick_params(labelsize=6.5)
    return fig


def figure_specs(result: xr.Dataset) -> list:
    """``(stem, make(layout) -> Figure, caption)`` of every figure of a ``car.*`` result."""
    drop = 100 * float(result.attrs.get("max_drop", 0.05))
    n_sel, n_test = result.attrs.get("n_selection", "?"), result.attrs.get("n_test", "?")
    ft = int(result.attrs.get("finetune", 0))
    specs = [
        ("accuracy_vs_filters_kept", lambda layout: plot_accuracy_vs_kept(result, layout=layout),
         f"Test accuracy ({n_test} images) vs filters kept as each layer alone is pruned (pruning runs left to "
         f"right), filters chosen on the selection half ({n_sel} images): greedy CAR (purple), outgoing (black) and "
         "incoming (green) weight magnitude, random order (red: mean +/- sd over "
         f"{result.attrs.get('random_repeats', '?')} repeats); dashed red: the uncompressed network"
         + (f"; blue dots: the CAR-pruned network fine-tuned for {result.attrs.get('finetune_iterations')} "
            "iterations (thesis policy) on training images" if ft else "") + " (thesis Fig. 2.3)."),
        ("compression_ratio", lambda layout: plot_compression(result, layout=layout),
         (f"Compression ratio (original / kept filters) at the stop criterion, the last network before the "
          f"selection accuracy falls more than {drop:g} % below the intact network's (thesis Table 2.1), per layer "
          "and method; random: mean +/- sd over repeats; hatched: the path reached the end of the curve "
          f"({100 * float(result.attrs.get('curve_keep_ratio', 0)):g} % of the filters) first, a lower bound.")),
    ]
    layer = str(result.attrs.get("carc_layer") or result["layer"].values[-1])
    carc = result["carc"].sel(layer=layer).values
    flat = not (np.isfinite(carc).any() and np.nanmax(np.abs(carc)) > 0)
    specs.append((f"carc_{layer}", lambda layout: plot_carc_heatmap(result, layer, layout=layout),
                  f"CARc of {layer} (thesis section 2.4): the drop of each class's selection accuracy when one filter "
                  "alone is removed, for the filters of largest CAR (red: the class depends on the filter; blue: "
                  "the class gains without it)."
                  + (" Every value is 0: no single filter changes a class's accuracy on these images." if flat else "")))
    return specs
