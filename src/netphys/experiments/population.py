"""Population analyses of Prune and distill: decoding + category information (Fig. 5), intrinsic
dimension across layers (the "hunchback") and ID vs number of neurons on neural data (Fig. 2)."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from .._random import spawn_seeds
from .._validation import check_int
from ..decoding import decode_layers, decoding_summary
from ..io import load_dataset, save_dataset
from ..models import default_layers, load_model, resolve_layer
from ..recording import provenance, record, unit_table
from ..stimuli import folder_or_demo
from .config import config_to_dict, load_config, save_config

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- Fig. 5
@dataclass(frozen=True)
class Fig5Config:
    """Category information and linear-SVM decoding per layer, trained vs random (paper defaults)."""

    model: str = "netphys_vgg16"
    weights: str = "default"
    images: str | None = None
    n_images: int = 3000
    layers: tuple | None = None
    site: str = "pre"
    pool: int = 250
    n_units: int = 100
    n_subsamples: int = 200
    n_train: int = 250
    n_val: int = 50
    n_classes: int = 10
    C: float = 1.0
    bins: int = 20
    random_state: int = 0
    batch_size: int = 100


def run_fig5(cfg: Fig5Config | None = None, out=None, *, progress: bool = True) -> xr.Dataset:
    """Record trained and random networks, decode category per layer and measure category information.

    Returns
    -------
    xarray.Dataset
        ``train_accuracy``, ``val_accuracy`` (network, layer, subsample) and ``category_information``
        (network, layer): mean normalised, PT-corrected I(category; unit) over the pool.
    """
    from ..stats.information import mutual_information

    cfg = cfg or Fig5Config()
    check_int(cfg.n_subsamples, "n_subsamples", "Fig5Config", min_value=1)
    out = Path(out) if out is not None else None
    if out is not None:
        save_config(cfg, out / "config_fig5.yaml")
        f = out / "fig5.nc"
        if f.is_file():
            return load_dataset(f)
    seed_units, seed_w, seed_dec = spawn_seeds(cfg.random_state, 3)
    trained = load_model(cfg.model, cfg.weights)
    rand = load_model(cfg.model, "random", random_state=seed_w)
    pre = trained.netphys.preprocess
    stim = folder_or_demo(cfg.images, pre)
    if cfg.n_images < len(stim):
        stim = stim.subsample(n=cfg.n_images, random_state=seed_units)
    layers = list(cfg.layers) if cfg.layers else default_layers(trained)
    t0 = time.time()
    rec_t = record(trained, stim, layers, units=cfg.pool, site=cfg.site, random_state=seed_units,
                   allow_fewer=True, batch_size=cfg.batch_size)
    rec_r = record(rand, stim, units=unit_table(rec_t), site=cfg.site, batch_size=cfg.batch_size)
    parts = []
    for name, rec in (("trained", rec_t), ("random", rec_r)):
        dec = decode_layers(rec, n_train=cfg.n_train, n_val=cfg.n_val, n_classes=cfg.n_classes, pool=cfg.pool,
                            n_units=cfg.n_units, n_subsamples=cfg.n_subsamples, C=cfg.C,
                            random_state=seed_dec, progress=progress)
        cat = []
        for l in dec["layer"].values:
            sel = rec.coords["layer"].values == l
            res = mutual_information(rec.coords["label"].values, rec.values[:, sel].astype(np.float64),
                                     bins=cfg.bins, x_discrete=True)
            cat.append(float(np.mean(res.normalized)))
        dec["category_information"] = ("layer", np.array(cat))
        parts.append(dec.expand_dims(network=[name]))
    attrs = dict(parts[0].attrs)
    res = xr.concat(parts, dim="network", coords="minimal", compat="override")
    res.attrs = {**attrs, **provenance(trained, config=config_to_dict(cfg), experiment="prune_distill.fig5",
                                       n_images=len(stim), seconds=round(time.time() - t0, 1))}
    if out is not None:
        save_dataset(res, out / "fig5.nc")
    return res


def fig5_summary(result: xr.Dataset) -> pd.DataFrame:
    frames = []
    for n in result["network"].values:
        df = decoding_summary(result.sel(network=n))
        df["category_information"] = result["category_information"].sel(network=n).values
        df.insert(0, "network", n)
        frames.append(df)
    return pd.concat(frames)


def plot_fig5(result: xr.Dataset, axes=None):
    """Fig. 5: (A) category information per layer; (B) SVM training/validation accuracy with chance."""
    import matplotlib.pyplot as plt

    from ..plotting.style import RANDOM, TRAINED, layer_axis, plot_layer_curve

    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    else:
        fig = axes[0].figure
    layers = list(result["layer"].values)
    kinds = list(result["kind"].values)
    for n, c in (("trained", TRAINED), ("random", RANDOM)):
        if n not in result["network"].values:
            continue
        r = result.sel(network=n)
        plot_layer_curve(axes[0], layers, kinds, r["category_information"].values, color=c, label=n)
        plot_layer_curve(axes[1], layers, kinds, r["val_accuracy"].mean("subsample").values,
                         r["val_accuracy"].std("subsample").values, color=c, label=f"{n} validation")
        axes[1].plot(np.arange(1, len(layers) + 1), r["train_accuracy"].mean("subsample").values, ":",
                     color=c, lw=1.2, label=f"{n} training")
    for ax in axes:
        layer_axis(ax, layers, kinds)
        ax.set_xlabel("layer")
    axes[0].set_ylabel("category information $U^\\ell$")
    axes[0].set_title("A  category information", fontsize=10, loc="left")
    axes[1].axhline(result.attrs.get("chance", 0.1), color="0.4", ls="--", lw=0.8, label="chance")
    axes[1].set_ylabel("SVM accuracy")
    axes[1].set_ylim(0, 1.02)
    axes[1].set_title(f"B  linear SVM, {int(result['n_units'].max())} units x "
                      f"{result.sizes['subsample']} subsamples", fontsize=10, loc="left")
    axes[0].legend(frameon=False, fontsize=8)
    axes[1].legend(frameon=False, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return fig


def run_fig5_cli(config=None, out=None, *, progress: bool = True) -> Path:
    import matplotlib.pyplot as plt

    from ..reports import Report

    cfg = load_config(Fig5Config, config) if not isinstance(config, Fig5Config) else config
    out = Path(out or "runs/prune_distill.fig5")
    res = run_fig5(cfg, out, progress=progress)
    rep = Report("Prune and distill, Figure 5: category information and decoding")
    fig = plot_fig5(res)
    rep.figure(fig, "A: mean normalised category information per layer. B: linear-SVM validation accuracy "
               "(solid, mean +- SD over sub-populations) and training accuracy (dotted); dashed: chance.",
               stem=out / "fig5")
    plt.close(fig)
    rep.table(fig5_summary(res), f"split: {res.attrs['n_train_per_class']} train / {res.attrs['n_val_per_class']} "
              "validation images per class")
    rep.json(config_to_dict(cfg), "config")
    return rep.write(out / "report.html")


# ----------------------------------------------------------------------------- ID across layers
@dataclass(frozen=True)
class IDLayersConfig:
    """Intrinsic dimension (TwoNN) of each layer's population response, trained vs random.

    ``units`` units are sampled per layer (all of a smaller layer), ``realisations`` independent draws
    of units give the SD. Post-activation responses by default (the representation passed on).
    """

    model: str = "netphys_vgg16"
    weights: str = "default"
    images: str | None = None
    n_images: int = 1500
    layers: tuple | None = None
    site: str = "post"
    units: int = 1000
    realisations: int = 3
    discard_fraction: float = 0.1
    random_state: int = 0
    batch_size: int = 100


def run_id_layers(cfg: IDLayersConfig | None = None, out=None, *, progress: bool = True) -> xr.Dataset:
    """ID per layer for the trained and a random network; Dataset ``id`` (network, realisation, layer)."""
    from ..stats.dimension import TwoNN

    cfg = cfg or IDLayersConfig()
    out = Path(out) if out is not None else None
    if out is not None and (out / "id_layers.nc").is_file():
        return load_dataset(out / "id_layers.nc")
    seeds = spawn_seeds(cfg.random_state, cfg.realisations + 1)
    trained = load_model(cfg.model, cfg.weights)
    rand = load_model(cfg.model, "random", random_state=seeds[-1])
    pre = trained.netphys.preprocess
    stim = folder_or_demo(cfg.images, pre)
    if cfg.n_images < len(stim):
        stim = stim.subsample(n=cfg.n_images, random_state=seeds[-1])
    layers = list(cfg.layers) if cfg.layers else default_layers(trained)
    ids = np.full((2, cfg.realisations, len(layers)), np.nan)
    errs = np.full_like(ids, np.nan)
    t0 = time.time()
    for r in range(cfg.realisations):
        rec_t = record(trained, stim, layers, units=cfg.units, site=cfg.site, random_state=seeds[r],
                       allow_fewer=True, batch_size=cfg.batch_size, progress=progress)
        rec_r = record(rand, stim, units=unit_table(rec_t), site=cfg.site, batch_size=cfg.batch_size)
        for ni, rec in enumerate((rec_t, rec_r)):
            for li, l in enumerate(layers):
                X = rec.values[:, rec.coords["layer"].values == l].astype(np.float64)
                est = TwoNN(discard_fraction=cfg.discard_fraction, random_state=seeds[r]).fit(X)
                ids[ni, r, li] = est.dimension_
                errs[ni, r, li] = est.dimension_err_
    infos = [resolve_layer(trained, l) for l in layers]
    res = xr.Dataset({"id": (("network", "realisation", "layer"), ids),
                      "id_err": (("network", "realisation", "layer"), errs)},
                     coords={"network": ["trained", "random"], "realisation": np.arange(cfg.realisations),
                             "layer": [li.alias for li in infos], "kind": ("layer", [li.kind for li in infos]),
                             "depth": ("layer", [li.depth for li in infos])},
                     attrs=provenance(trained, config=config_to_dict(cfg), experiment="prune_distill.id_layers",
                                      n_images=len(stim), seconds=round(time.time() - t0, 1)))
    if out is not None:
        save_dataset(res, out / "id_layers.nc")
    return res


def plot_id_layers(result: xr.Dataset, ax=None):
    """ID vs layer (the "hunchback"), trained vs random, mean +- SD over unit draws."""
    from ..plotting.style import RANDOM, TRAINED, layer_axis, new_axes, plot_layer_curve

    fig, ax = new_axes(ax, figsize=(5.2, 3.4))
    layers = list(result["layer"].values)
    kinds = list(result["kind"].values)
    for n, c in (("trained", TRAINED), ("random", RANDOM)):
        v = result["id"].sel(network=n)
        sd = v.std("realisation", ddof=1).values if v.sizes["realisation"] > 1 else None
        plot_layer_curve(ax, layers, kinds, v.mean("realisation").values, sd, color=c, label=n)
    layer_axis(ax, layers, kinds)
    ax.set_xlabel("layer")
    ax.set_ylabel("intrinsic dimension (TwoNN)")
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


def run_id_layers_cli(config=None, out=None, *, progress: bool = True) -> Path:
    import matplotlib.pyplot as plt

    from ..reports import Report

    cfg = load_config(IDLayersConfig, config) if not isinstance(config, IDLayersConfig) else config
    out = Path(out or "runs/prune_distill.id_layers")
    res = run_id_layers(cfg, out, progress=progress)
    rep = Report("Intrinsic dimension across layers")
    fig = plot_id_layers(res)
    rep.figure(fig, "TwoNN intrinsic dimension of each layer's population response (mean +- SD over unit "
               "draws), trained vs random.", stem=out / "id_layers")
    plt.close(fig)
    rep.table(res["id"].mean("realisation").to_pandas().T, "mean ID")
    rep.json(config_to_dict(cfg), "config")
    return rep.write(out / "report.html")


# ----------------------------------------------------------------------------- Fig. 2 (neural data)
@dataclass(frozen=True)
class Fig2Config:
    """ID vs number of neurons per area with power-law extrapolation (Fig. 2).

    ``datasets`` names the sources: ``"cowley_v4"`` (each V4 session an area), ``"allen_v1"``, or
    ``"files:<area>=<path>,<area>=<path>"`` for a user's own (stimuli x neurons) ``.npy``/``.csv`` files
    (e.g. rat V1, LM, LI, LL). Areas are ranked in the order given (``area_order``, default as loaded).
    """

    datasets: tuple = ("cowley_v4", "allen_v1")
    root: str | None = None
    sessions: tuple | None = None
    min_neurons: int = 20
    n_sizes: int = 8
    n_repeats: int = 20
    n_boot: int = 100
    area_order: tuple | None = None
    discard_fraction: float = 0.1
    random_state: int = 0


def _fig2_areas(cfg: Fig2Config) -> dict:
    from ..neural import from_files, load_allen_v1, load_cowley_v4

    areas = {}
    for ds in cfg.datasets:
        if ds == "cowley_v4":
            sess = load_cowley_v4(cfg.root, sessions=cfg.sessions, images=False)
            for s, d in sess.items():
                areas[f"V4 {s}"] = d.responses("V4").values
        elif ds == "allen_v1":
            d = load_allen_v1(cfg.root)
            for a in d.areas:
                areas[f"mouse {a}"] = d.responses(a).values
        elif str(ds).startswith("files:"):
            spec = dict(item.split("=", 1) for item in ds[6:].split(","))
            d = from_files(spec)
            for a in d.areas:
                areas[a] = d.responses(a).values
        else:
            from .._validation import param_error

            raise param_error("datasets", "Fig2Config", "'cowley_v4', 'allen_v1' or 'files:<area>=<path>,...'", ds)
    if cfg.area_order:
        areas = {a: areas[a] for a in cfg.area_order}
    return areas


def run_fig2(cfg: Fig2Config | None = None, out=None, *, progress: bool = True) -> dict:
    """ID vs number of neurons for each area, power-law fits and asymptotes.

    Returns
    -------
    dict with ``curves`` (area -> Dataset from ``id_vs_population``), ``fits`` (area -> PowerLawFit or
    None when the fit fails) and ``table`` (DataFrame: area, n_neurons, n_stimuli, id_full, d_inf,
    d_inf_err).
    """
    from tqdm.auto import tqdm

    from ..stats.dimension import TwoNN, fit_power_law, id_vs_population

    cfg = cfg or Fig2Config()
    areas = _fig2_areas(cfg)
    seeds = spawn_seeds(cfg.random_state, len(areas))
    curves, fits, rows = {}, {}, []
    for (area, X), seed in zip(tqdm(list(areas.items()), desc="fig2", disable=not progress), seeds):
        X = np.asarray(X, dtype=np.float64)
        n_total = X.shape[1]
        lo = min(cfg.min_neurons, n_total)
        sizes = np.unique(np.round(np.geomspace(lo, n_total, cfg.n_sizes)).astype(int))
        curve = id_vs_population(X, sizes, n_repeats=cfg.n_repeats,
                                 estimator=TwoNN(discard_fraction=cfg.discard_fraction), random_state=seed)
        curves[area] = curve
        try:
            fit = fit_power_law(curve["n_units"].values, curve["id_mean"].values, curve["id_sd"].values,
                                id_samples=curve["id"].values, n_boot=cfg.n_boot, random_state=seed)
        except Exception as exc:  # noqa: BLE001 - reported in the table, not fatal
            log.warning("power-law fit failed for %s: %s", area, exc)
            fit = None
        if fit is not None and getattr(fit, "at_bound", False):
            log.warning("power-law exponent of %s ended at its bound: the ID does not saturate, so the "
                        "asymptote is not reported", area)
        fits[area] = fit
        ok = fit is not None and not getattr(fit, "at_bound", False)
        rows.append({"area": area, "n_neurons": n_total, "n_stimuli": X.shape[0],
                     "id_full": float(curve["id_mean"].values[-1]),
                     "d_inf": fit.d_inf if ok else np.nan, "d_inf_err": fit.d_inf_err if ok else np.nan,
                     "d_inf_boot_err": (fit.d_inf_boot_err if ok and fit.d_inf_boot_err is not None
                                        else np.nan), "saturates": bool(ok)})
    table = pd.DataFrame(rows)
    # an asymptote is reported as reliable only when it is positive and its bootstrap SD (or, without a
    # bootstrap, its fit SD) is below half its value; otherwise the curve does not constrain it
    err = table["d_inf_boot_err"].where(np.isfinite(table["d_inf_boot_err"]), table["d_inf_err"])
    table["reliable"] = table["saturates"] & (table["d_inf"] > 0) & (err < 0.5 * table["d_inf"])
    if out is not None:
        out = Path(out)
        from ..io import atomic_write_text

        atomic_write_text(out / "fig2_asymptotes.csv", table.to_csv(index=False))
        for area, c in curves.items():
            save_dataset(c, out / "curves" / f"{area.replace(' ', '_')}.nc")
    return {"curves": curves, "fits": fits, "table": table}


def plot_fig2(result: dict):
    """(A) ID vs number of neurons per area (mean +- SD shading, power-law fit dashed);
    (B) extrapolated asymptote per area against area rank."""
    import matplotlib.pyplot as plt

    curves, fits, table = result["curves"], result["fits"], result["table"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8), gridspec_kw={"width_ratios": [1.4, 1]})
    cmap = plt.cm.viridis(np.linspace(0, 0.9, max(1, len(curves))))
    for (area, c), col in zip(curves.items(), cmap):
        n = c["n_units"].values
        m, s = c["id_mean"].values, c["id_sd"].values
        a.plot(n, m, "o-", color=col, ms=3, lw=1.2, label=area)
        a.fill_between(n, m - s, m + s, color=col, alpha=0.18, lw=0)
        f = fits.get(area)
        if f is not None and not getattr(f, "at_bound", False):
            g, y = f.curve(n_max=n.max() * 4)
            a.plot(g, y, "--", color=col, lw=0.9)
    a.set_xscale("log")
    a.set_xlabel("number of neurons sampled")
    a.set_ylabel("intrinsic dimension (TwoNN)")
    a.set_title("A  ID vs population size (dashed: power-law fit)", fontsize=10, loc="left")
    a.legend(frameon=False, fontsize=6, ncol=2)
    a.spines[["top", "right"]].set_visible(False)
    x = np.arange(1, len(table) + 1)
    err = table["d_inf_boot_err"].where(np.isfinite(table["d_inf_boot_err"]), table["d_inf_err"])
    ok = table["reliable"].to_numpy(bool) if "reliable" in table else np.ones(len(table), bool)
    b.errorbar(x[ok], table["d_inf"][ok], yerr=err[ok], fmt="o", color="k", capsize=3,
               label="asymptote (reliable fits)")
    b.plot(x, table["id_full"], "x", color="0.5", label="ID of all neurons")
    b.set_xticks(x)
    b.set_xticklabels(table["area"], rotation=60, ha="right", fontsize=7)
    b.set_xlabel("area (rank)")
    b.set_ylabel("extrapolated ID asymptote")
    b.set_title("B  asymptotes", fontsize=10, loc="left")
    b.legend(frameon=False, fontsize=7)
    b.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    return fig


def run_fig2_cli(config=None, out=None, *, progress: bool = True) -> Path:
    import matplotlib.pyplot as plt

    from ..reports import Report

    cfg = load_config(Fig2Config, config) if not isinstance(config, Fig2Config) else config
    out = Path(out or "runs/prune_distill.fig2")
    save_config(cfg, out / "config.yaml")
    res = run_fig2(cfg, out, progress=progress)
    rep = Report("Prune and distill, Figure 2: intrinsic dimension of neural populations")
    fig = plot_fig2(res)
    rep.figure(fig, "TwoNN ID of random sub-populations (mean +- SD over sub-populations) with the "
               "saturating power-law fit ID(n) = d_inf - a n^-b; right: asymptotes d_inf "
               "(+- bootstrap SD) where the fit constrains them (positive, SD < 50%), and the ID of all "
               "recorded neurons.", stem=out / "fig2")
    plt.close(fig)
    rep.table(res["table"], "asymptotes")
    rep.json(config_to_dict(cfg), "config")
    return rep.write(out / "report.html")
