"""Figures of the functional-segregation experiments: activation, similarity and objectness vs the
ablated share alpha (the paper's Figs. 1, 4, 5), robustness (Fig. 7), image grids per alpha, neuron models
(Figs. 10, 16-18) and the diverse stimulus set (Fig. 12)."""
from __future__ import annotations

import numpy as np
import xarray as xr

from .style import TRAINED, panel_grid, paper_figure, paper_plot
from .synthesis import as_rgb

__all__ = ["plot_vs_alpha", "plot_objectness", "plot_robustness", "plot_alpha_grid", "plot_neuron_models",
           "plot_diverse", "figure_specs", "POSITIVE", "NEGATIVE"]

POSITIVE = "#c0392b"
NEGATIVE = "#1f4e9c"
CONTROL = "0.35"


def _ci(v, axis=0, n_boot=500, seed=0):
    from ..stats.similarity import bootstrap_ci

    v = np.asarray(v, float)
    if v.shape[axis] < 2:
        m = np.nanmean(v, axis=axis)
        return m, m, m
    c = bootstrap_ci(v, n_boot=n_boot, random_state=seed, axis=axis)
    return np.asarray(c.mean), np.asarray(c.low), np.asarray(c.high)


def _per_unit(result, var, prefix=""):
    """``(case, condition)``: ``var`` averaged over restarts, spaces (and ensemble networks)."""
    da = result[prefix + var]
    dims = [d for d in ("restart", "space", "ensemble") if d in da.dims]
    return da.mean(dims).values


def _sign_lines(ax, alpha, sign, vals, *, control=None, base=None, base_label="control", dashed=None,
                from_control: bool = False):
    """Positive and negative curves over alpha (CIs over units), the control as a line with its band;
    ``from_control``: the curves start at the control (alpha = 0)."""
    c0 = np.flatnonzero(sign == "control")[:1]
    for s, col in (("positive", POSITIVE), ("negative", NEGATIVE)):
        idx = np.flatnonzero(sign == s)
        if not idx.size:
            continue
        order = idx[np.argsort(alpha[idx])]
        if from_control and c0.size:
            order = np.concatenate([c0, order])
        m, lo, hi = _ci(vals[:, order])
        ax.errorbar(alpha[order], m, yerr=[m - lo, hi - m], color=col, marker="o", ms=2.5, lw=1, label=s)
        if dashed is not None:
            ax.plot(alpha[order], np.nanmean(dashed[:, order], 0), color=col, ls=":", lw=0.9)
    if control is not None:
        m, lo, hi = _ci(control)
        ax.axhline(float(m), color=CONTROL, ls="--", lw=0.8, label="control")
        ax.axhspan(float(lo), float(hi), color=CONTROL, alpha=0.12, lw=0)
    if base is not None:
        m, lo, hi = _ci(base)
        ax.axhline(float(m), color="0.55", ls="-.", lw=0.8, label=base_label)
        ax.axhspan(float(lo), float(hi), color="0.55", alpha=0.12, lw=0)
    ax.set_xlim(-0.05, 1.05)


def _short(net: str) -> str:
    return (net.replace("netphys_vgg16:", "vgg16/").replace("efficientnet_", "").replace(":imagenet", "")
            .replace("vgg16/default", "vgg16 (ReLU)"))


@paper_plot
def plot_vs_alpha(result: xr.Dataset, measure: str = "activation", *, prefix: str = "", by: str = "network",
                  layout: str = "double"):
    """One panel per network: ``measure`` of each condition's preferred images vs alpha, positive vs negative.

    ``measure="activation"``: the unit's response to its own condition's images (solid; dotted: the same
    images scored by the intact unit), the control's as a dashed line (Fig. 1). ``"similarity"``: mean
    pairwise cosine similarity of control vs ablated images over the ensemble, with the control-vs-control
    baseline (Fig. 4). Error bars: bootstrap 95% CI over units.
    """
    sign = result["sign"].values.astype(str)
    alpha = result["alpha"].values.astype(float)
    groups = list(dict.fromkeys(result[prefix + by].values)) if by in ("network",) else [None]
    fig, axes = panel_grid(len(groups), layout, 1.45, "plot_vs_alpha", max_cols=5, extra=0.45)
    for ax, g in zip(axes, groups):
        sub = result.isel({prefix + "case": result[prefix + by].values == g}) if g is not None else result
        if measure == "activation":
            vals = _per_unit(sub, "activation", prefix)
            intact = _per_unit(sub, "activation_intact", prefix)
            _sign_lines(ax, alpha, sign, vals, control=vals[:, sign == "control"][:, 0], dashed=intact,
                        from_control=True)
            ax.set_ylabel("activation")
        else:
            vals = _per_unit(sub, "similarity", prefix)
            base = _per_unit(sub, "similarity_baseline", prefix)
            _sign_lines(ax, alpha, sign, vals, base=base, base_label="control vs control")
            ax.set_ylabel("similarity to control")
        ax.set_xlabel("alpha")
        ax.set_title(_short(str(g)) if g is not None else "neuron models", pad=2)
    handles, labels = axes[0].get_legend_handles_labels()
    if measure == "activation":
        from matplotlib.lines import Line2D

        handles.append(Line2D([], [], color="0.3", ls=":", lw=0.9))
        labels.append("scored by the intact unit")
    fig.legend(handles, labels, loc="outside upper center", ncol=len(labels) if layout == "double" else 2)
    return fig


@paper_plot
def plot_objectness(result: xr.Dataset, *, layout: str = "single"):
    """Objectness of the preferred images vs alpha: mean over networks of the network averages (Fig. 5)."""
    sign = result["sign"].values.astype(str)
    alpha = result["alpha"].values.astype(float)
    nets = list(dict.fromkeys(result["network"].values))
    per_net = np.stack([np.nanmean(_per_unit(result.isel(case=result["network"].values == n), "objectness"), 0)
                        for n in nets])  # (network, condition)
    fig, ax = paper_figure(layout, 2.2, nrows=1, ncols=1, func="plot_objectness")
    _sign_lines(ax, alpha, sign, per_net, control=per_net[:, sign == "control"][:, 0], from_control=True)
    ax.set_xlabel("alpha")
    ax.set_ylabel("objectness")
    ax.set_title(f"{result.attrs.get('detector', '')[:60]}", pad=2, fontsize=6)
    fig.legend(*ax.get_legend_handles_labels(), loc="outside upper center", ncol=3)
    return fig


@paper_plot
def plot_robustness(result: xr.Dataset, *, layout: str = "single"):
    """Similarity change (control-vs-control baseline minus control-vs-ablated) at the largest alpha vs the
    training epsilon of the robustness ladder (Fig. 7); error bars: 95% CI over units."""
    eps = result["epsilon"].values
    ok = np.isfinite(eps)
    sub = result.isel(case=ok)
    sign = sub["sign"].values.astype(str)
    alpha = sub["alpha"].values.astype(float)
    change = _per_unit(sub, "similarity_baseline")[:, None] - _per_unit(sub, "similarity")
    nets = list(dict.fromkeys(sub["network"].values))
    e = np.array([float(sub["epsilon"].values[sub["network"].values == n][0]) * 255 for n in nets])
    fig, ax = paper_figure(layout, 2.2, nrows=1, ncols=1, func="plot_robustness")
    amax = alpha.max()
    for s, col in (("positive", POSITIVE), ("negative", NEGATIVE)):
        c = np.flatnonzero((sign == s) & (alpha == amax))
        if not c.size:
            continue
        stats = [_ci(change[sub["network"].values == n, c[0]]) for n in nets]
        m = np.array([x[0] for x in stats])
        ax.errorbar(e, m, yerr=[m - np.array([x[1] for x in stats]), np.array([x[2] for x in stats]) - m],
                    color=col, marker="o", ms=3, label=f"{s}, alpha = {amax:g}")
    ax.axhline(0, color="0.6", lw=0.6)
    ax.set_xlabel("training epsilon (/255)")
    ax.set_ylabel("similarity change")
    fig.legend(*ax.get_legend_handles_labels(), loc="outside upper center", ncol=2)
    return fig


@paper_plot
def plot_alpha_grid(result: xr.Dataset, network, space: str, *, prefix: str = "", max_units: int = 4,
                    layout: str = "double"):
    """Preferred images per alpha: for each unit one row per sign (columns: alpha; first column the
    control), the best restart by the condition's own activation; its activation under each image."""
    case = prefix + "case"
    idx = np.flatnonzero(result[prefix + ("network" if not prefix else "session")].values == network) \
        if network is not None else np.arange(result.sizes[case])
    idx = idx[:max_units]
    sign = result["sign"].values.astype(str)
    alpha = result["alpha"].values.astype(float)
    signs = [s for s in ("positive", "negative") if (sign == s).any()]
    alphas = sorted(set(alpha[sign != "control"]))
    per = 1 + len(alphas)  # columns of one unit: the control, then each alpha
    blocks = max(1, min(len(idx), 12 // per))  # units side by side when there are few alphas
    cols = per * blocks
    rows = int(np.ceil(len(idx) / blocks)) * len(signs)
    cell = min(0.85, (7.0 if layout == "double" else 3.5) / (cols + 0.6))
    fig, axes = paper_figure(layout, cell * 1.25 * rows + 0.3, nrows=rows, ncols=cols, squeeze=False,
                             func="plot_alpha_grid")
    for ax in axes.ravel():
        ax.set_axis_off()
    imgs = result[prefix + "images"].sel(space=space)
    act = result[prefix + "activation"].sel(space=space)
    for ui, c in enumerate(idx):
        b, g = ui % blocks, ui // blocks
        lab = (str(result["class_name"].values[c]) if not prefix else
               f"{result['model_session'].values[c]}/{result['model_neuron'].values[c]}")
        for si, s in enumerate(signs):
            r = g * len(signs) + si
            conds = [int(np.flatnonzero(sign == "control")[0])] + \
                [int(np.flatnonzero((sign == s) & (alpha == a))[0]) for a in alphas]
            for j, cnd in enumerate(conds):
                ax = axes[r, b * per + j]
                ax.set_axis_on()
                ax.set_xticks([])
                ax.set_yticks([])
                for sp in ax.spines.values():
                    sp.set_visible(False)
                a = act.isel({case: c, "condition": cnd}).values
                best = int(np.nanargmax(a))
                ax.imshow(as_rgb(imgs.isel({case: c, "restart": best, "condition": cnd}).values / 255.0),
                          interpolation="nearest")
                ax.set_xlabel(f"{a[best]:.3g}", fontsize=6, labelpad=1)
                if si == 0:
                    ax.set_title(("control" if j == 0 else f"a={alphas[j - 1]:g}") if j else f"{lab[:12]}\ncontrol",
                                 fontsize=6, pad=2)
            axes[r, b * per].set_ylabel(s[:3], fontsize=6, color=POSITIVE if s == "positive" else NEGATIVE)
    return fig


@paper_plot
def plot_neuron_models(result: xr.Dataset, *, layout: str = "double"):
    """Neuron models of V4: (a) held-out r^2 of PLS; (b) Lasso vs positive Lasso r^2; (c) the models'
    positive / |negative| weight balance; (d) the fraction of models agreeing on each feature's sign."""
    has_lasso = "lasso_r2" in result
    n = 4 if has_lasso else 3
    if layout == "single":  # 2 x 2 panels: four across 3.5 in leave no room for the axis labels
        fig, axes = paper_figure(layout, 3.6, nrows=2, ncols=2, squeeze=False, func="plot_neuron_models")
        for ax in axes.ravel()[n:]:
            ax.set_visible(False)
    else:
        fig, axes = paper_figure(layout, 1.9, nrows=1, ncols=n, squeeze=False, func="plot_neuron_models")
    axes = list(axes.ravel())
    r2 = result["neuron_r2"].values
    ax = axes.pop(0)
    ax.hist(r2[np.isfinite(r2)], bins=30, color=TRAINED)
    ax.axvline(float(result.attrs.get("neurons_min_r2", 0.1)), color="0.4", ls="--", lw=0.8)
    ax.set_xlabel("PLS held-out r$^2$")
    ax.set_ylabel("neurons")
    ax.set_title("a", loc="left", fontweight="bold", pad=2)
    if has_lasso:
        ax = axes.pop(0)
        a, b = result["lasso_r2"].values, result["lasso_pos_r2"].values
        ok = np.isfinite(a) & np.isfinite(b)
        ax.scatter(a[ok], b[ok], s=3, color=TRAINED, lw=0)
        lim = [min(a[ok].min(), b[ok].min()) if ok.any() else 0, max(a[ok].max(), b[ok].max()) if ok.any() else 1]
        ax.plot(lim, lim, color="0.5", lw=0.6)
        ax.set_xlabel("Lasso r$^2$")
        ax.set_ylabel("positive Lasso r$^2$")
        ax.set_title("b", loc="left", fontweight="bold", pad=2)
    ax = axes.pop(0)
    bal = result["neuron_balance"].values
    bal = bal[np.isfinite(bal)]
    ax.hist(bal, bins=30, color=TRAINED)
    ax.axvline(1, color="0.4", ls="--", lw=0.8)
    ax.set_xlabel("total positive / |negative|")
    ax.set_title("c" if has_lasso else "b", loc="left", fontweight="bold", pad=2)
    ax = axes.pop(0)
    if "feature_fraction_consistent" in result:
        f = result["feature_fraction_consistent"].values
        ax.hist(f[np.isfinite(f)], bins=25, color=TRAINED)
        ax.axvline(0.9, color="0.4", ls="--", lw=0.8)
        ax.set_xlabel("share of models with\nthe majority sign")
        ax.set_title(f"{'d' if has_lasso else 'c'}   {result.attrs.get('neurons_n_consistent', 0)} consistent",
                     loc="left", fontweight="bold", pad=2)
    ax.set_ylabel("features")
    return fig


@paper_plot
def plot_diverse(result: xr.Dataset, *, layout: str = "double"):
    """The diverse stimulus set: (a) the pool in its first two principal components, selected images
    marked; (b) mean distance from each pool image to the nearest selected image, selection vs random
    subsets of the same size; (c) the first selected images."""
    single = layout == "single"  # (a) and (b) side by side, the thumbnails below them
    fig = paper_figure(layout, 3.4 if single else 2.3, func="plot_diverse")
    gs = fig.add_gridspec(2, 2, height_ratios=[2.6, 1]) if single else fig.add_gridspec(1, 3, width_ratios=[1, 1, 1.3])
    ax = fig.add_subplot(gs[0, 0] if single else gs[0])
    pc = result["diverse_pc"].values
    sel = result["diverse_selected"].values.astype(bool)
    ax.scatter(pc[~sel, 0], pc[~sel, 1], s=1, color="0.75", lw=0, label="pool")
    ax.scatter(pc[sel, 0], pc[sel, 1], s=4, color=POSITIVE, lw=0, label="selected")
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.set_title("a", loc="left", fontweight="bold", pad=2)
    ax = fig.add_subplot(gs[0, 1] if single else gs[1])
    metrics = list(result["metric"].values)
    mi = metrics.index("mean_nearest_distance") if "mean_nearest_distance" in metrics else 0
    rnd = result["coverage_random"].values[mi]
    ax.hist(rnd, bins=20, color="0.6", label="random subsets")
    ax.axvline(float(result["coverage_selected"].values[mi]), color=POSITIVE, lw=1.2, label="diverse set")
    ax.set_xlabel("mean distance to\nnearest selected" if single else "mean distance to nearest selected")
    ax.set_ylabel("subsets")
    ax.set_title("b", loc="left", fontweight="bold", pad=2)
    rows, cols = (2, 12) if single else (4, 6)
    sub = (gs[1, :] if single else gs[2]).subgridspec(rows, cols, wspace=0.05, hspace=0.05)
    th = result["diverse_thumbs"].values
    for i in range(min(rows * cols, th.shape[0])):
        a = fig.add_subplot(sub[i // cols, i % cols])
        a.imshow(th[i], interpolation="nearest")
        a.set_axis_off()
        if i == 0:
            a.set_title("c", loc="left", fontweight="bold", pad=2)
    h0, l0 = fig.axes[0].get_legend_handles_labels()
    h1, l1 = fig.axes[1].get_legend_handles_labels()
    fig.legend(h0 + h1, l0 + l1, loc="outside lower center", ncol=4)
    return fig


def figure_specs(result: xr.Dataset) -> list:
    """``(stem, make(layout) -> Figure, caption)`` of every figure the result supports."""
    specs = []
    if "activation" in result:
        specs.append(("fig1_activation", lambda layout: plot_vs_alpha(result, "activation", layout=layout),
                      "Fig. 1: activation of each unit's preferred images (evolved by CMA-ES under each ablation) vs the "
                      "share alpha of positive (red) or negative (blue) input weight removed; dotted: the same images "
                      "scored by the intact unit; dashed: the control. Mean over units, 95% bootstrap CI."))
        specs.append(("fig4_similarity", lambda layout: plot_vs_alpha(result, "similarity", layout=layout),
                      "Fig. 4: representational similarity of control vs ablated images vs alpha, the share of the "
                      "sign's total input weight removed (mean pairwise cosine "
                      f"similarity over the ensemble {result.attrs.get('ensemble_networks', '')}); dash-dot: control "
                      "vs control (different restarts). Mean over units, 95% bootstrap CI."))
        if np.isfinite(result["objectness"].values).any():
            specs.append(("fig5_objectness", lambda layout: plot_objectness(result, layout=layout),
                          "Fig. 5: objectness of the preferred images, mean over networks of the network averages; "
                          f"95% CI over networks. Detector: {result.attrs.get('detector')}."))
        if np.isfinite(result["epsilon"].values).sum() and \
                len(set(result["network"].values[np.isfinite(result["epsilon"].values)])) >= 2:
            specs.append(("fig7_robustness", lambda layout: plot_robustness(result, layout=layout),
                          "Fig. 7: change of similarity (control-vs-control minus control-vs-ablated) at full "
                          "ablation vs the training epsilon of the PGD robustness ladder; 95% CI over units."))
        for net in dict.fromkeys(result["network"].values):
            for sp in result["space"].values:
                stem = f"grid_{net}_{sp}".replace(":", "_").replace(".", "_")
                specs.append((stem, lambda layout, net=net, sp=sp: plot_alpha_grid(result, net, str(sp), layout=layout),
                              f"{net}, {sp} space: best preferred image per condition (rows: unit and sign; "
                              "columns: alpha), its activation below."))
    if "neuron_r2" in result:
        specs.append(("neuron_models", lambda layout: plot_neuron_models(result, layout=layout),
                      f"Neuron models of V4 ({result.attrs.get('neurons_n')} neurons): PLS held-out r^2 (dashed: the "
                      "threshold for the sign-consistency test), Lasso with and without positivity, the weight "
                      "balance, and the share of models agreeing on each feature's sign (dashed: 90%)."))
    if "model_activation" in result:
        sub = xr.Dataset({k: result["model_" + k] for k in ("activation", "activation_intact", "similarity",
                                                             "similarity_baseline")})
        specs.append(("fig10_neuron_ablation", lambda layout: _neuron_alpha(sub, layout=layout),
                      "Fig. 10 (in silico): the best neuron model of each session under sign ablation: activation of "
                      "its preferred images (left) and their similarity to the control images (right); 95% CI over "
                      "models."))
        for sp in result["space"].values:
            specs.append((f"grid_neuron_models_{sp}", lambda layout, sp=sp: plot_alpha_grid(
                result, None, str(sp), prefix="model_", layout=layout),
                f"Neuron models, {sp} space: best preferred image per condition."))
    if "coverage_selected" in result:
        specs.append(("fig12_diverse_set", lambda layout: plot_diverse(result, layout=layout),
                      f"Diverse stimulus set: {result.sizes.get('diverse_cluster')} images chosen from "
                      f"{result.attrs.get('diverse_pool_n')} by PCA and k-means of the network's output; coverage "
                      "against random subsets of the same size."))
    return specs


@paper_plot
def _neuron_alpha(sub, *, layout="double"):
    sign = sub["sign"].values.astype(str)
    alpha = sub["alpha"].values.astype(float)
    fig, axes = paper_figure(layout, 2.0, nrows=1, ncols=2, squeeze=False, func="plot_neuron_ablation")
    ax = axes[0, 0]
    vals = sub["activation"].mean(("restart", "space")).values
    _sign_lines(ax, alpha, sign, vals, control=vals[:, sign == "control"][:, 0],
                dashed=sub["activation_intact"].mean(("restart", "space")).values, from_control=True)
    ax.set_xlabel("alpha")
    ax.set_ylabel("predicted response")
    ax = axes[0, 1]
    sim = sub["similarity"].mean(("ensemble", "space")).values
    base = sub["similarity_baseline"].mean(("ensemble", "space")).values
    _sign_lines(ax, alpha, sign, sim, base=base, base_label="control vs control")
    ax.set_xlabel("alpha")
    ax.set_ylabel("similarity to control")
    fig.legend(*ax.get_legend_handles_labels(), loc="outside upper center", ncol=3)
    return fig
