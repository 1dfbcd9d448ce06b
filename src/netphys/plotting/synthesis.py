"""Figures of synthesised stimuli: image grids (best of restarts, all restarts) and score traces."""
from __future__ import annotations

import numpy as np
import xarray as xr

from .style import TRAINED, paper_figure, paper_plot

__all__ = ["plot_image_grid", "plot_restarts", "plot_score_traces", "plot_prior_check", "as_rgb"]


def as_rgb(img) -> np.ndarray:
    """``(channel, y, x)`` in ``[0, 1]`` -> ``(y, x, 3)`` clipped (1 channel repeated)."""
    a = np.asarray(img, dtype=np.float32)
    if a.ndim == 3 and a.shape[0] in (1, 3):
        a = np.moveaxis(a, 0, -1)
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    return np.clip(a, 0.0, 1.0)


def _titles(result, k):
    if "condition_name" in result.coords:
        return [str(v) for v in result["condition_name"].values[:k]]
    return [str(v) for v in result["condition"].values[:k]]


@paper_plot
def plot_image_grid(result: xr.Dataset, *, variable: str = "best_image", max_conditions: int = 12,
                    ncols: int = 6, scores: str | None = "best_score", layout: str = "double"):
    """One image per condition (default the best of its restarts), titled by condition and score.

    Parameters
    ----------
    result : xarray.Dataset from :func:`netphys.synthesis.evolve` / ``deeptune`` (``variable`` with dims
        condition, channel, y, x)
    max_conditions, ncols : int
    scores : str or None
        A (restart, condition) variable whose best value is printed under each image.
    layout : {"double", "single"}

    Returns
    -------
    matplotlib.figure.Figure
    """
    imgs = result[variable]
    k = min(int(imgs.sizes["condition"]), max_conditions)
    ncols = min(ncols, k)
    nrows = int(np.ceil(k / ncols))
    w_in = 7.0 if layout == "double" else 3.5
    cell = w_in / ncols
    fig, axes = paper_figure(layout, cell * nrows + 0.25 * nrows, nrows=nrows, ncols=ncols, squeeze=False,
                             func="plot_image_grid")
    titles = _titles(result, k)
    best = None
    if scores and scores in result:
        s = result[scores]
        best = (s.max("restart") if result.attrs.get("direction", "max") == "max" else s.min("restart")).values
    for i, ax in enumerate(axes.ravel()):
        ax.set_axis_off()
        if i >= k:
            continue
        ax.imshow(as_rgb(imgs.isel(condition=i).values), interpolation="nearest")
        t = titles[i] if best is None else f"{titles[i]}\n{best[i]:.3g}"
        ax.set_title(t, fontsize=6, pad=2)
    return fig


@paper_plot
def plot_restarts(result: xr.Dataset, *, max_conditions: int = 6, max_restarts: int = 10, layout: str = "double"):
    """All restarts' images: rows conditions, columns restarts (the best restart outlined)."""
    imgs = result["images"]
    k = min(int(imgs.sizes["condition"]), max_conditions)
    r = min(int(imgs.sizes["restart"]), max_restarts)
    w_in = 7.0 if layout == "double" else 3.5
    cell = min(w_in / (r + 0.6), 1.1)
    # with few restarts, keep the images at their cell size (left-aligned) instead of spreading them out
    ncols = max(r, int((w_in - 0.6) // cell))
    fig, axes = paper_figure(layout, cell * k + 0.3, nrows=k, ncols=ncols, squeeze=False, func="plot_restarts")
    for ax in axes[:, r:].ravel():
        ax.set_axis_off()
    titles = _titles(result, k)
    best_r = result["best_restart"].values if "best_restart" in result else np.full(k, -1)
    for i in range(k):
        for j in range(r):
            ax = axes[i, j]
            ax.imshow(as_rgb(imgs.isel(condition=i, restart=j).values), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            outline = j == best_r[i]
            for sp in ax.spines.values():
                sp.set_visible(outline)
                sp.set_color(TRAINED)
                sp.set_linewidth(1.5)
            if i == 0:
                ax.set_title(f"restart {j}", fontsize=6, pad=2)
        axes[i, 0].set_ylabel(titles[i], fontsize=6, rotation=0, ha="right", va="center")
    return fig


@paper_plot
def plot_score_traces(result: xr.Dataset, *, max_conditions: int = 6, layout: str = "double", ax=None):
    """Best-so-far score per generation (mean over restarts, band: min-max), one line per condition."""
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = paper_figure(layout, 2.4, nrows=1, ncols=1, func="plot_score_traces")
    else:
        fig = ax.figure
    s = result["score"]
    k = min(int(s.sizes["condition"]), max_conditions)
    it = s["iteration"].values + 1
    cmap = plt.get_cmap("viridis")
    titles = _titles(result, k)
    for i in range(k):
        v = s.isel(condition=i)
        c = cmap(i / max(k - 1, 1))
        ax.plot(it, v.mean("restart").values, color=c, lw=1.0, label=titles[i])
        ax.fill_between(it, v.min("restart").values, v.max("restart").values, color=c, alpha=0.2, lw=0)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("generation" if result.attrs.get("method") == "evolve" else "step")
    ax.set_ylabel("best score so far")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=6)
    return fig


@paper_plot
def plot_prior_check(originals, reconstructions, samples, *, pixel_corr: float | None = None,
                     baseline_pixel_corr: float | None = None, ncols: int = 8, layout: str = "double"):
    """How an image prior (a generator trained to invert an encoder) looks: three rows of images.

    Row a: held-out images ``x``; row b: their reconstructions ``G(E(x))``; row c: samples ``G(z)`` from
    the prior's initial-code distribution (what an evolution starts from).

    Parameters
    ----------
    originals, reconstructions, samples : array (n, channel, y, x) in [0, 1]
    pixel_corr, baseline_pixel_corr : float, optional
        Median pixel correlation of reconstructions with their originals, and of the mean training image
        with them (printed in row b's label).
    ncols : int
        Images per row.
    layout : {"double", "single"}

    Returns
    -------
    matplotlib.figure.Figure
    """
    rows = [np.asarray(originals), np.asarray(reconstructions), np.asarray(samples)]
    n = min(ncols, *(len(r) for r in rows))
    if n < 1:
        raise ValueError("plot_prior_check needs at least one image in every row")
    if layout == "single":
        n = min(n, 5)
    w_in = 7.0 if layout == "double" else 3.5
    cell = (w_in - 0.5) / n
    fig, axes = paper_figure(layout, 3 * cell + 0.2, nrows=3, ncols=n, squeeze=False, func="plot_prior_check")
    b = "G(E(x))"
    if pixel_corr is not None:
        b += f"\nr = {pixel_corr:.2f}"
        if baseline_pixel_corr is not None:
            b += f"\n(mean {baseline_pixel_corr:.2f})"
    labels = ["a  held-out x", "b  " + b, "c  sample G(z)"]
    for i, (imgs, lab) in enumerate(zip(rows, labels)):
        for j in range(n):
            ax = axes[i, j]
            ax.imshow(as_rgb(imgs[j]), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            for sp in ax.spines.values():
                sp.set_visible(False)
        axes[i, 0].set_ylabel(lab, fontsize=6, rotation=0, ha="right", va="center")
    return fig
