"""Shared plotting style: the papers' look (x = layer index, conv and FC markers, error bars)."""
from __future__ import annotations

# the user's backend is left alone: importing netphys.plotting never calls matplotlib.use (headless
# machines fall back to Agg by themselves)
import matplotlib.pyplot as plt

TRAINED = "#1f4e9c"
RANDOM = "#c0392b"
HYBRID = "#2e8b57"
CONV_MARKER = "o"
FC_MARKER = "s"


def new_axes(ax=None, figsize=(5.0, 3.4)):
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
    else:
        fig = ax.figure
    return fig, ax


def layer_axis(ax, layers, kinds=None, rotate=True):
    """Label the x axis with layer indices 1..L and names, with a shaded FC region."""
    x = list(range(1, len(layers) + 1))
    ax.set_xticks(x)
    ax.set_xticklabels(layers, rotation=60 if rotate else 0, ha="right" if rotate else "center",
                       fontsize=7)
    if kinds is not None:
        fc = [i + 1 for i, k in enumerate(kinds) if k == "fc"]
        if fc:
            ax.axvspan(min(fc) - 0.5, max(fc) + 0.5, color="0.93", zorder=0, lw=0)
    ax.set_xlim(0.4, len(layers) + 0.6)
    ax.spines[["top", "right"]].set_visible(False)
    return x


def plot_layer_curve(ax, layers, kinds, mean, sd=None, color=TRAINED, label=None):
    """One curve over layers: conv layers as circles, FC layers as squares, SD error bars."""
    import numpy as np

    x = np.arange(1, len(layers) + 1)
    mean = np.asarray(mean, dtype=float)
    ax.plot(x, mean, "-", color=color, lw=1.3, label=label)
    for marker, kind in ((CONV_MARKER, "conv"), (FC_MARKER, "fc")):
        sel = np.array([k == kind for k in kinds])
        if sel.any():
            ax.errorbar(x[sel], mean[sel], yerr=None if sd is None else np.asarray(sd)[sel], fmt=marker,
                        color=color, ms=4.5, capsize=2, lw=1)
    return ax
