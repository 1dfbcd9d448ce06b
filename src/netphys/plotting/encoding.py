"""Figures of ``encoding.*`` results: accuracy per layer, weight maps, RAR curves, DeepTune grids, spectra."""
from __future__ import annotations

import numpy as np
import xarray as xr

from .style import RANDOM, TRAINED, paper_figure, paper_plot

__all__ = ["figure_specs", "plot_r_by_layer", "plot_weight_maps", "plot_rar_curves", "plot_car_compression",
           "plot_deeptune_grid", "plot_polar_spectra"]

GABOR = "gabor"


def _is_summary(name: str) -> bool:
    return name in ("consensus", "rar_compressed") or name.startswith("car_")


def _column(name: str) -> str:
    if name == "consensus":
        return "consensus"
    if name == "rar_compressed":
        return "RAR-compr."
    if name.startswith("car_"):
        return "CAR -" + name[4:]
    return _short(name)


def _short(label: str) -> str:
    """'netphys_vgg16:conv3_1/ridge' -> 'conv3_1' (network kept when it is not netphys_vgg16)."""
    net, rest = label.split(":", 1) if ":" in label else ("", label)
    layer, est = rest.split("/", 1) if "/" in rest else (rest, "")
    name = layer if net in ("netphys_vgg16", "") else f"{net.split('_')[0]} {layer}"
    return name + ("" if est == "ridge" else f" ({est})")


@paper_plot
def plot_r_by_layer(result: xr.Dataset, *, layout: str = "double"):
    """Held-out r and noise-corrected r of every neuron per network layer (box + points); Gabor baseline
    as a dashed line (its median)."""
    models = [str(m) for m in result["model"].values]
    nets = [m for m in models if not m.startswith(GABOR + ":")]
    gab = [m for m in models if m.startswith(GABOR + ":")]
    have_c = bool(np.isfinite(result["r_corrected"].values).any())
    vars_ = [("r", "held-out r")] + ([("r_corrected", "noise-corrected r")] if have_c else [])
    h = 2.6 if layout == "double" else 2.3 * len(vars_)
    fig, axes = paper_figure(layout, h, nrows=1 if layout == "double" else len(vars_),
                             ncols=len(vars_) if layout == "double" else 1, squeeze=False, func="plot_r_by_layer")
    axes = axes.ravel()
    rng = np.random.default_rng(0)
    for ax, (v, name) in zip(axes, vars_):
        vals = [result[v].sel(model=m).values for m in nets]
        vals = [a[np.isfinite(a)] for a in vals]
        pos = np.arange(len(nets))
        ax.boxplot([a if a.size else [np.nan] for a in vals], positions=pos, widths=0.5, showfliers=False,
                   medianprops={"color": TRAINED}, boxprops={"color": "0.3"}, whiskerprops={"color": "0.3"},
                   capprops={"color": "0.3"})
        for i, a in enumerate(vals):
            ax.scatter(i + rng.uniform(-0.18, 0.18, a.size), a, s=3, color=TRAINED, alpha=0.35, lw=0,
                       label="neurons" if i == 0 else None)
        for m in gab:
            g = result[v].sel(model=m).values
            if np.isfinite(g).any():
                ax.axhline(np.nanmedian(g), color=RANDOM, ls="--", lw=1, label="Gabor baseline (median)")
        ax.set_xticks(pos, [_short(m) for m in nets], rotation=30 if len(nets) > 3 else 0,
                      ha="right" if len(nets) > 3 else "center")
        ax.set_ylabel(name)
        ax.set_xlim(-0.6, len(nets) - 0.4)
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncols=2, frameon=False)
    return fig


@paper_plot
def plot_weight_maps(result: xr.Dataset, *, max_units: int = 6, layout: str = "double"):
    """Weight maps (sum over channels of squared weights per location) of the best layer's top neurons."""
    rank = result["best_rank"].values
    order = np.argsort(rank)[:max_units]
    k = len(order)
    ncols = k if layout == "double" else min(k, 3)
    nrows = int(np.ceil(k / ncols))
    cell = (7.0 if layout == "double" else 3.5) / ncols
    fig, axes = paper_figure(layout, cell * nrows + 0.35 * nrows, nrows=nrows, ncols=ncols, squeeze=False,
                             func="plot_weight_maps")
    best = result.attrs["best_model"]
    j = list(result["model"].values).index(best)
    for i, ax in enumerate(axes.ravel()):
        ax.set_xticks([])
        ax.set_yticks([])
        if i >= k:
            ax.set_axis_off()
            continue
        u = order[i]
        wm = result["weight_map"].values[u]
        ax.imshow(wm / (wm.max() or 1), cmap="magma", interpolation="nearest")
        name = str(result["best_unit"].values[u])
        r = float(result["r"].sel(unit=name).values[j])
        ax.set_title(f"{name}\nr = {r:.2f}", fontsize=6, pad=2)
    return fig


@paper_plot
def plot_rar_curves(result: xr.Dataset, *, layout: str = "double"):
    """Selection and test r vs filters kept along each neuron's RAR path (pruning runs left to right); the
    dotted line marks the stop at the relative drop ``max_drop`` of the selection r."""
    units = [str(u) for u in result["rar_unit"].values]
    k = len(units)
    ncols = k if layout == "double" else 1
    nrows = 1 if layout == "double" else k
    fig, axes = paper_figure(layout, 2.3 if layout == "double" else 1.8 * k, nrows=nrows, ncols=ncols,
                             squeeze=False, func="plot_rar_curves")
    for i, ax in enumerate(axes.ravel()):
        kept = result["rar_n_kept"].values[i]
        ok = kept >= 0
        ax.plot(kept[ok], result["rar_selection_r"].values[i][ok], color=TRAINED, lw=1.2, label="selection r")
        ax.plot(kept[ok], result["rar_test_r"].values[i][ok], color=RANDOM, lw=1.2, label="test r")
        stop_k = int(result["rar_stop_n_kept"].values[i])
        ax.axvline(stop_k, color="0.4", ls=":", lw=1,
                   label=f"stop ({100 * result.attrs['max_drop']:g} % drop)")
        ax.invert_xaxis()
        ax.set_xlabel("filters kept")
        if i == 0 or layout == "single":
            ax.set_ylabel("r")
        ax.set_title(f"{units[i]}: ratio {float(result['rar_compression_ratio'].values[i]):.1f}", fontsize=7)
    handles, labels = axes.ravel()[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=3, frameon=False)
    return fig


@paper_plot
def plot_car_compression(result: xr.Dataset, *, layout: str = "double"):
    """Thesis Fig. 4.1: (A) median held-out r of the neuron models vs the fraction of the layer's filters removed
    by CAR (dashed: uncompressed), with the pruned network's test accuracy; (B) each neuron's r, compressed vs
    uncompressed, at every compression level."""
    lv = result["car_level"].values
    r = result["car_r"].values
    rc = result["car_r_corrected"].values
    fig, axes = paper_figure(layout, 2.6 if layout == "double" else 5.0, nrows=1 if layout == "double" else 2,
                             ncols=2 if layout == "double" else 1, squeeze=False, func="plot_car_compression")
    a, b = axes.ravel()
    pct = 100 * lv
    with np.errstate(all="ignore"):
        med = np.nanmedian(r, axis=0)
        a.plot(pct, med, "o-", color=TRAINED, lw=1.2, ms=3, label="median r")
        if np.isfinite(rc).any():
            a.plot(pct, np.nanmedian(rc, axis=0), "s-", color=TRAINED, alpha=0.5, lw=1, ms=3,
                   label="median corrected r")
    a.axhline(med[0], color="0.4", ls="--", lw=1, label="uncompressed")
    a.set_xlabel("filters removed by CAR (%)")
    a.set_ylabel("held-out r")
    t = a.twinx()
    t.plot(pct, result["car_test_accuracy"].values, "^:", color=RANDOM, lw=1, ms=3, label="network test accuracy")
    t.set_ylabel("classification accuracy", color=RANDOM)
    t.tick_params(axis="y", colors=RANDOM)
    t.set_ylim(0, 1)
    h1, l1 = a.get_legend_handles_labels()
    h2, l2 = t.get_legend_handles_labels()
    fig.legend(h1 + h2, l1 + l2, loc="outside lower center", ncols=4 if layout == "double" else 2, frameon=False)
    a.set_title("A", loc="left", fontsize=8)
    import matplotlib as mpl

    cmap = mpl.colormaps["viridis"]
    lo = np.nanmin(r) if np.isfinite(r).any() else 0.0
    hi = np.nanmax(r) if np.isfinite(r).any() else 1.0
    for j in range(1, len(lv)):
        b.scatter(r[:, 0], r[:, j], s=5, lw=0, alpha=0.7, color=cmap((j - 1) / max(1, len(lv) - 2)),
                  label=f"{100 * lv[j]:g} % removed")
    b.plot([lo, hi], [lo, hi], color="0.5", lw=0.8, ls="--")
    b.set_xlabel("r, uncompressed")
    b.set_ylabel("r, CAR-compressed")
    b.legend(fontsize=6, frameon=False, loc="upper left", markerscale=1.5)
    b.set_title("B", loc="left", fontsize=8)
    return fig


@paper_plot
def plot_deeptune_grid(result: xr.Dataset, *, layout: str = "double"):
    """Best-restart DeepTune images: rows neuron x direction (preferred / non-preferred), columns the neuron
    models, the consensus and the RAR-compressed model; under each image: restart-to-restart r and r with
    the consensus."""
    units = [str(u) for u in result["dt_unit"].values]
    dirs = [str(d) for d in result["direction"].values]
    models = [str(m) for m in result["dt_model"].values]
    M = len(models)
    rows = [(i, di) for i in range(len(units)) for di in range(len(dirs))]
    w = 7.0 if layout == "double" else 3.5
    cell = min(w / M, 1.2)
    fig, axes = paper_figure(layout, (cell + 0.4) * len(rows) + 0.3, nrows=len(rows), ncols=M, squeeze=False,
                             func="plot_deeptune_grid")
    for ri, (i, di) in enumerate(rows):
        for mi in range(M):
            ax = axes[ri, mi]
            ax.set_xticks([])
            ax.set_yticks([])
            for sp in ax.spines.values():
                sp.set_visible(False)
            sc = result["dt_final_score"].values[i, di, mi]
            if not np.isfinite(sc).any():
                continue
            b = int(np.nanargmax(sc) if dirs[di] == "max" else np.nanargmin(sc))
            img = np.moveaxis(result["dt_images"].values[i, di, mi, b], 0, -1)
            ax.imshow(np.clip(img, 0, 1), interpolation="nearest")
            rr = result["dt_restart_similarity"].values[i, di, mi]
            cc = result["dt_consensus_similarity"].values[i, di, mi]
            uu = (result["dt_uncompressed_similarity"].values[i, di, mi] if "dt_uncompressed_similarity" in result
                  else np.nan)
            txt = (f"rr {rr:.2f}" + ("" if not np.isfinite(cc) else f"\nrc {cc:.2f}")
                   + ("" if not np.isfinite(uu) else f"\nru {uu:.2f}"))
            ax.set_xlabel(txt, fontsize=5, labelpad=1)
            if ri == 0:
                ax.set_title(_column(models[mi]), fontsize=6 if M <= 8 else 5, pad=2)
            if mi == 0:
                ax.set_ylabel(f"{units[i].split('/')[-1]}\n{'pref.' if dirs[di] == 'max' else 'non-pref.'}",
                              fontsize=6)
    return fig


@paper_plot
def plot_polar_spectra(result: xr.Dataset, *, direction: str = "max", layout: str = "double"):
    """Polar power spectra (orientation x spatial frequency, log power, mean over restarts) of the preferred
    images: per neuron the consensus, the first and last models and the RAR-compressed model."""
    models = [str(m) for m in result["dt_model"].values]
    cars = [m for m in models if m.startswith("car_")]
    show = [m for m in ("consensus", "rar_compressed") if m in models] + cars[-1:]
    base = [m for m in models if not _is_summary(m)]
    show = [base[0]] + ([base[-1]] if len(base) > 1 else []) + show
    units = [str(u) for u in result["dt_unit"].values]
    di = [str(d) for d in result["direction"].values].index(direction)
    ob = np.radians(result["orientation_bin"].values)
    sf = result["sf"].values
    width = np.pi / len(ob)
    theta = np.concatenate([ob - width / 2, ob - width / 2 + np.pi, [2 * np.pi - width / 2]])
    redge = np.concatenate([[0.5], sf + 0.5])
    w = 7.0 if layout == "double" else 3.5
    cell = min(w / len(show), 1.6)
    fig, axes = paper_figure(layout, (cell + 0.3) * len(units) + 0.3, nrows=len(units), ncols=len(show),
                             squeeze=False, subplot_kw={"projection": "polar"}, func="plot_polar_spectra")
    for i in range(len(units)):
        for j, m in enumerate(show):
            ax = axes[i, j]
            P = result["dt_polar_power"].values[i, di, models.index(m)]
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
            if not np.isfinite(P).any():
                ax.set_axis_off()
                continue
            # empty (orientation, sf) bins (no FFT sample at low frequencies) are left blank, not zero power
            L = np.where(P > 0, np.log10(np.where(P > 0, P, 1.0)), np.nan)
            Z = np.ma.masked_invalid(np.concatenate([L, L], axis=0).T)  # (sf, 2 * n_bins), symmetric
            lo, hi = np.nanpercentile(L, [2, 99.5]) if np.isfinite(L).any() else (0, 1)
            ax.pcolormesh(theta, redge, Z, cmap="viridis", shading="flat", vmin=lo, vmax=hi)
            ax.set_ylim(0, redge[-1])
            if i == 0:
                ax.set_title(_column(m), fontsize=6, pad=3)
            if j == 0:
                ax.text(-0.12, 0.5, units[i].split("/")[-1], transform=ax.transAxes, rotation=90, va="center",
                        ha="center", fontsize=6)
    return fig


def figure_specs(result: xr.Dataset) -> list:
    """``(stem, make(layout) -> Figure, caption)`` of every figure of an ``encoding.*`` result."""
    best = result.attrs["best_model"]
    specs = [("r_by_layer", lambda layout: plot_r_by_layer(result, layout=layout),
              "Held-out Pearson r (left) and noise-corrected r (right; sessions with single trials) of every neuron's "
              "encoding model per network layer (box: quartiles; points: neurons); dashed red: the median of the "
              "V1-like Gabor-wavelet baseline (thesis Fig. 3.2)."),
             ("weight_maps", lambda layout: plot_weight_maps(result, layout=layout),
              f"Weight maps of the best layer ({best}) for its best-predicted neurons: sum over filters of the squared "
              "regression weights at each location (normalised per neuron), i.e. where in the image the model reads.")]
    if "rar_selection_r" in result:
        specs.append(("rar_curves", lambda layout: plot_rar_curves(result, layout=layout),
                      f"RAR pruning of {best} per neuron (filters removed left to right): selection r (blue, chooses the "
                      "filters) and test r (red, never used for a choice) of the ridge model refitted on the kept "
                      f"filters; dotted: the stop at a {100 * result.attrs['max_drop']:g} % relative drop of the "
                      "selection r (title: compression ratio = filters / kept)."))
    if "car_r" in result:
        specs.append(("car_compression", lambda layout: plot_car_compression(result, layout=layout),
                      f"CAR-compressed models of the V4 neurons (thesis Fig. 4.1): {best.split('/')[0]} pruned for "
                      f"classification ({result.attrs.get('car_method', '')} on {result.attrs.get('car_data', '')}), "
                      "each neuron's ridge model refitted on the kept filters. A: median held-out r vs the fraction "
                      "of filters removed (dashed: uncompressed; triangles, right axis: the pruned network's test "
                      "accuracy). B: each neuron's r, compressed vs uncompressed (dashed: equality)."))
    if "dt_images" in result:
        specs.append(("deeptune_grid", lambda layout: plot_deeptune_grid(result, layout=layout),
                      "DeepTune images (best restart) of each neuron's models: preferred (max) and non-preferred (min) "
                      "rows; columns the encoding models per layer, the consensus across them (mean normalised "
                      "gradient), the RAR-compressed model and the CAR-compressed models (CAR -x %: x % of the "
                      "filters removed). rr: mean r between restarts; rc: mean r with the consensus image of the "
                      "same restart; ru (compressed models): mean r with the uncompressed model of the same layer, "
                      "same restart (the restarts of all models share their initial images)."))
        specs.append(("polar_spectra", lambda layout: plot_polar_spectra(result, layout=layout),
                      "Polar power spectra of the preferred DeepTune images (angle: orientation of the Fourier "
                      "component, mirrored; radius: spatial frequency, cycles per image; colour: log10 power, mean "
                      "over restarts)."))
    return specs
