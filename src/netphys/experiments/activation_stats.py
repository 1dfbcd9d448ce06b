"""Activation statistics per layer (mean, SD, fraction of positive pre-activations)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr


def activation_statistics(recording: xr.DataArray) -> pd.DataFrame:
    """Per-layer summary of a recording: mean, SD, fraction > 0 and mean |lifetime sparseness|.

    Returns
    -------
    DataFrame indexed by layer (in recording order) with columns depth, kind, n_units, mean, sd,
    frac_positive, sparseness (Treves-Rolls lifetime sparseness of the rectified responses).
    """
    rows = []
    layers = list(dict.fromkeys(recording.coords["layer"].values))
    for l in layers:
        sel = recording.coords["layer"].values == l
        a = recording.values[:, sel].astype(np.float64)
        r = np.maximum(a, 0)
        num = r.mean(0) ** 2
        den = (r ** 2).mean(0)
        with np.errstate(invalid="ignore", divide="ignore"):
            s = np.where(den > 0, 1 - num / den, 0.0)
        rows.append({"layer": l, "depth": int(recording.coords["depth"].values[sel][0]),
                     "kind": str(recording.coords["kind"].values[sel][0]), "n_units": int(sel.sum()),
                     "mean": a.mean(), "sd": a.std(axis=0).mean(), "frac_positive": (a > 0).mean(),
                     "sparseness": float(np.mean(s))})
    return pd.DataFrame(rows).set_index("layer")


def plot_activation_statistics(stats: dict, axes=None):
    """Plot per-layer activation statistics of several networks (``{name: DataFrame}``)."""
    import matplotlib.pyplot as plt

    from ..plotting.style import RANDOM, TRAINED, layer_axis, plot_layer_curve

    if axes is None:
        fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    else:
        fig = axes[0].figure
    colors = [TRAINED, RANDOM, "#2e8b57", "#8e44ad"]
    for ax, col, title in zip(axes, ["sd", "frac_positive", "sparseness"],
                              ["response SD (pre-activation)", "fraction of responses > 0",
                               "lifetime sparseness (rectified)"]):
        for (name, df), c in zip(stats.items(), colors):
            layers = list(df.index)
            plot_layer_curve(ax, layers, list(df["kind"]), df[col].to_numpy(), color=c, label=name)
            layer_axis(ax, layers, list(df["kind"]))
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("layer")
    axes[0].legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig
