"""Population analyses of Prune and distill: decoding + category information (Fig. 5), intrinsic
dimension across layers (the "hunchback") and ID vs number of neurons on neural data (Fig. 2).

Methods (section A of ``METHODS.md``). Fig. 5: a pool of 250 units per layer, 200 random sub-populations
of 100 units, a linear SVM per sub-population trained on 250 and validated on 50 images per class; the
category information of the pool's units is the normalised, bias-corrected single-unit information with
its shuffle null. ID across layers: the TwoNN intrinsic dimension of each layer's population response,
trained vs random, over independent draws of units. Fig. 2: the TwoNN ID of random sub-populations of
recorded neurons against their size, with a saturating power-law fit whose asymptote is compared across
areas.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from .._validation import check_choice, check_int, param_error
from ..decoding import decode_layers, decoding_summary
from ..models import default_layers, load_model, resolve_layer
from ..models.loading import model_info
from ..recording import record, sample_units
from ..stimuli import folder_or_demo
from ..plotting.style import paper_plot
from .prune_distill import PaperFigureExperiment
from .registry import register

log = logging.getLogger(__name__)

CORRECTIONS = ("pt", "qe", "shuffle", "pt+shuffle", "qe+shuffle", "none")


def _networks(cfg, ctx, seed_name: str):
    """``{"trained": model, "random": model}`` with identities registered in the provenance.

    A network is labelled "trained" only when trained weights were loaded (``weights != "random"``).
    """
    trained = load_model(cfg.model, cfg.weights)
    rand = load_model(cfg.model, "random", random_state=ctx.seed(seed_name))
    first = "trained" if str(cfg.weights) != "random" else "random-weights"
    ctx.model_identity(trained, first)
    ctx.model_identity(rand, "random")
    return {first: trained, "random": rand}


def _layer_units(model, layers, n, ctx, input_size, *stream):
    return pd.concat([sample_units(model, [l], n, input_size=input_size, random_state=ctx.seed("units", *stream, l),
                                   allow_fewer=True) for l in layers], ignore_index=True)


def _stimuli(cfg, ctx, model, seed_name: str):
    stim = folder_or_demo(cfg.images, model_info(model).preprocess, on_error=cfg.on_error)
    ctx.stimuli_identity(stim, "images")
    if cfg.n_images < len(stim):
        stim = stim.subsample(n=cfg.n_images, random_state=ctx.seed(seed_name))
    elif cfg.n_images > len(stim):
        ctx.warn(f"n_images={cfg.n_images} but the image set has {len(stim)} images; all are used")
    return stim, ctx.stimuli_identity(stim, "images_used")


def _setup(cfg, ctx, owner: str):
    """Networks, the image set used (and its identity) and the resolved layer aliases of a run."""
    nets = _networks(cfg, ctx, "weights")
    first = next(iter(nets.values()))
    stim, stim_id = _stimuli(cfg, ctx, first, "images")
    layers = [resolve_layer(first, l, owner).alias for l in (list(cfg.layers) if cfg.layers else default_layers(first))]
    return nets, first, stim, stim_id, layers


def _layer_coords(model, layers):
    infos = [resolve_layer(model, l) for l in layers]
    return {"layer": [li.alias for li in infos], "kind": ("layer", [li.kind for li in infos]),
            "depth": ("layer", [li.depth for li in infos])}


def _layer_pieces(ctx, piece: str, model, stim, table, layers, cfg, *, key_of, compute) -> dict:
    """``{layer: piece}``: cached pieces, the missing layers recorded in one pass and computed.

    ``key_of(layer)`` gives the piece's key, ``compute(layer, recording)`` its Dataset from that layer's
    recorded units (``table`` rows of the layer, ``cfg.site``, ``cfg.batch_size``).
    """
    keys = {l: key_of(l) for l in layers}
    got = {l: ctx.lookup(piece, k) for l, k in keys.items()}
    todo = [l for l in layers if got[l] is None]
    if todo:
        with ctx.timer("record"):
            rec = record(model, stim, units=table[table["layer"].isin(todo)], site=cfg.site, batch_size=cfg.batch_size)
        for l in ctx.progress(todo, desc=piece):
            got[l] = ctx.store(piece, keys[l], compute(l, rec[:, rec.coords["layer"].values == l]))
    return got


# ----------------------------------------------------------------------------- Fig. 5
@dataclass(frozen=True)
class Fig5Config:
    """Category information and linear-SVM decoding per layer, trained vs random (paper defaults)."""

    model: str = "netphys_vgg16"
    weights: str = "default"
    images: str | None = None
    on_error: str = "raise"
    n_images: int = 3000
    layers: tuple[str, ...] | None = None
    site: str = "pre"
    pool: int = 250
    n_units: int = 100
    n_subsamples: int = 200
    n_train: int = 250
    n_val: int = 50
    n_classes: int = 10
    C: float = 1.0
    bins: int = 20
    correction: str = "pt"
    n_shuffles: int = 20
    random_state: int = 0
    batch_size: int = 100

    def validate(self):
        f = "Fig5Config"
        for name, lo in (("n_images", 20), ("pool", 1), ("n_units", 1), ("n_subsamples", 1), ("n_train", 1),
                         ("n_val", 1), ("n_classes", 2), ("bins", 2), ("n_shuffles", 0), ("random_state", 0),
                         ("batch_size", 1)):
            check_int(getattr(self, name), name, f, min_value=lo)
        check_choice(self.site, "site", f, ("pre", "post"))
        check_choice(self.on_error, "on_error", f, ("raise", "skip", "grey"))
        check_choice(self.correction, "correction", f, CORRECTIONS)
        if not (self.C > 0 and np.isfinite(self.C)):
            raise param_error("C", f, "a finite number > 0", self.C)
        return self


_FIG5_READS = ("pool", "n_units", "n_subsamples", "n_train", "n_val", "n_classes", "C", "bins", "correction",
               "n_shuffles", "site")


@register("prune_distill.fig5")
class Fig5(PaperFigureExperiment):
    """Figure 5: category information and linear-SVM decoding per layer."""

    Config = Fig5Config
    title = "Prune and distill, Figure 5: category information and decoding"
    result_name = "fig5"

    def run(self, cfg, ctx):
        from .. import decoding
        from ..stats import information
        from ..stats.information import mutual_information

        nets, first, stim, stim_id, layers = _setup(cfg, ctx, "Fig5Config")
        table = _layer_units(first, layers, cfg.pool, ctx, stim.size)
        labels = stim.coords["label"].values
        parts = []
        for name, model in nets.items():
            ident = ctx.model_identity(model)

            def compute(l, sub, name=name):
                with ctx.timer("decoding"):
                    dec = decode_layers(sub, n_train=cfg.n_train, n_val=cfg.n_val, n_classes=cfg.n_classes,
                                        pool=cfg.pool, n_units=cfg.n_units, n_subsamples=cfg.n_subsamples,
                                        C=cfg.C, random_state=ctx.seed("decode", l))
                with ctx.timer("information"), ctx.collect_warnings("category information"):
                    res = mutual_information(labels, sub.values.astype(np.float64), bins=cfg.bins,
                                             x_discrete=True, correction=cfg.correction,
                                             n_shuffles=cfg.n_shuffles, random_state=ctx.seed("shuffle", name, l))
                return xr.Dataset(
                    {"train_accuracy": ("subsample", dec["train_accuracy"].values[0]),
                     "val_accuracy": ("subsample", dec["val_accuracy"].values[0]),
                     "n_units": ((), int(dec["n_units"].values[0]) if "n_units" in dec else cfg.n_units),
                     "category_information": ((), float(np.mean(res.normalized))),
                     "category_null": ((), float(np.mean(res.null)) if cfg.n_shuffles else np.nan)},
                    attrs={k: v for k, v in dec.attrs.items() if isinstance(v, (int, float, str))})

            got = _layer_pieces(ctx, "fig5_layer", model, stim, table, layers, cfg, compute=compute,
                                key_of=lambda l, name=name, ident=ident: ctx.key(
                                    "fig5_layer", reads=_FIG5_READS, estimators=(decoding, information),
                                    network=name, model=ident, stimuli=stim_id["sha256"], layer=l,
                                    units_seed=ctx.seed("units", l)))
            ds = xr.concat([got[l] for l in layers], dim="layer", combine_attrs="override")
            parts.append(ds.expand_dims(network=[name]))
        res = xr.concat(parts, dim="network", combine_attrs="override").assign_coords(_layer_coords(first, layers))
        res.attrs.update({"model": cfg.model, "weights": cfg.weights, "n_images": len(stim), "pool": cfg.pool})
        return res

    def tables(self, result):
        return {"fig5": fig5_summary(result)}

    intro = ("Left: how much the activations of single units tell about the image's category, layer by layer "
             "(normalised, bias-corrected information, with its shuffle null); right: how well a linear SVM "
             "reads the category from a population of units. The paper (trained VGG-16) found category "
             "information low for the first half of the network, rising in the last conv layers and sharply in "
             "the FC layers, with decoding accuracy tracking it; the random network stays near chance.")

    def figures(self, result, ctx, layout: str = "double"):
        return [("fig5", plot_fig5(result, layout=layout),
                 f"A: mean normalised category information per layer (thick faint line: shuffle null). B: linear-SVM "
                 f"validation accuracy (solid, mean ± SD over {result.sizes['subsample']} sub-populations of "
                 f"{int(result['n_units'].max())} units from a pool of {result.attrs.get('pool')}) and training "
                 "accuracy (dotted); dashed: chance.")]


def fig5_summary(result: xr.Dataset) -> pd.DataFrame:
    frames = []
    for n in result["network"].values:
        df = decoding_summary(result.sel(network=n)).rename_axis("layer").reset_index()
        df["category_information"] = result["category_information"].sel(network=n).values
        if "category_null" in result:
            df["category_null"] = result["category_null"].sel(network=n).values
        df.insert(0, "network", n)
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def _net_color(name, names) -> str:
    """Trained blue, random red; any other network name a colour of its own (by position)."""
    from ..plotting.style import HYBRID, RANDOM, TRAINED

    fixed = {"trained": TRAINED, "random": RANDOM}
    if name in fixed:
        return fixed[name]
    free = [c for c in (TRAINED, RANDOM, HYBRID, "#7b3294", "#e08214") if c not in
            [fixed[n] for n in names if n in fixed]]
    others = [n for n in names if n not in fixed]
    return free[others.index(name) % len(free)]


@paper_plot
def plot_fig5(result: xr.Dataset, axes=None, *, layout: str = "double"):
    """Fig. 5: (A) category information per layer with its null; (B) SVM accuracy with chance.

    Parameters
    ----------
    result : xarray.Dataset from ``prune_distill.fig5``
    axes : two matplotlib Axes, optional
    layout : {"double", "single"}
        A new figure: A, B and the legend side by side (7 in) or stacked (3.5 in).

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.lines import Line2D

    from ..plotting.style import RANDOM, TRAINED, WIDTHS, layer_axis, marker_handles, paper_figure, plot_layer_curve

    lax = None
    if axes is None:
        if layout == "double":
            fig, grid = paper_figure(layout, 2.5, nrows=1, ncols=3, func="plot_fig5",
                                     gridspec_kw={"width_ratios": [1, 1, 0.55]})
            width_in = 2.6
        else:
            fig, grid = paper_figure(layout, 5.2, nrows=3, ncols=1, func="plot_fig5",
                                     gridspec_kw={"height_ratios": [1, 1, 0.42]})
            width_in = WIDTHS["single"] - 0.5
        axes, lax = list(grid[:2]), grid[2]
    else:
        fig = axes[0].figure
        width_in = None
    layers = list(result["layer"].values)
    kinds = list(result["kind"].values)
    x = np.arange(1, len(layers) + 1)
    nets = list(result["network"].values)
    has_null = False
    for n in nets:
        c = _net_color(n, nets)
        r = result.sel(network=n)
        plot_layer_curve(axes[0], layers, kinds, r["category_information"].values, color=c, label=n)
        if "category_null" in r and np.isfinite(r["category_null"].values).any():
            axes[0].plot(x, r["category_null"].values, color=c, lw=3, alpha=0.25)
            has_null = True
        plot_layer_curve(axes[1], layers, kinds, r["val_accuracy"].mean("subsample").values,
                         r["val_accuracy"].std("subsample").values, color=c)
        axes[1].plot(x, r["train_accuracy"].mean("subsample").values, ":", color=c, lw=1.0)
    for ax in axes:
        layer_axis(ax, layers, kinds, width_in=width_in)
        ax.set_xlabel("layer")
    axes[0].set_ylabel("category information $U^\\ell$")
    axes[0].set_title("A  category information", loc="left")
    chance = float(result.attrs.get("chance", 0.1))
    axes[1].axhline(chance, color="0.4", ls="--", lw=0.8)
    axes[1].set_ylabel("SVM accuracy")
    axes[1].set_ylim(0, 1.02)
    axes[1].set_title(f"B  linear SVM, {int(result['n_units'].max())} units × "
                      f"{result.sizes['subsample']} subsamples", loc="left")
    hs, ls = [], []
    for n in nets:
        c = _net_color(n, nets)
        hs.append(Line2D([], [], color=c, lw=1.0))
        ls.append(f"{n} (B: validation ± SD)")
    for n in nets:
        c = _net_color(n, nets)
        if has_null:
            hs.append(Line2D([], [], color=c, lw=3, alpha=0.25))
            ls.append(f"A: {n} shuffle null")
        hs.append(Line2D([], [], color=c, ls=":", lw=1.0))
        ls.append(f"B: {n} training")
    hs.append(Line2D([], [], color="0.4", ls="--", lw=0.8))
    ls.append(f"B: chance ({chance:.2g})")
    for h, l in marker_handles(kinds):
        hs.append(h)
        ls.append(l)
    if lax is not None:
        lax.set_axis_off()
        lax.legend(hs, ls, loc="center left" if layout == "double" else "center", borderaxespad=0.0,
                   ncols=1 if layout == "double" else 2, columnspacing=0.8)
    else:
        axes[1].legend(hs, ls, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


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
    on_error: str = "raise"
    n_images: int = 1500
    layers: tuple[str, ...] | None = None
    site: str = "post"
    units: int = 1000
    realisations: int = 3
    discard_fraction: float = 0.1
    random_state: int = 0
    batch_size: int = 100

    def validate(self):
        f = "IDLayersConfig"
        for name, lo in (("n_images", 3), ("units", 2), ("realisations", 1), ("random_state", 0), ("batch_size", 1)):
            check_int(getattr(self, name), name, f, min_value=lo)
        check_choice(self.site, "site", f, ("pre", "post"))
        check_choice(self.on_error, "on_error", f, ("raise", "skip", "grey"))
        if not (0 <= self.discard_fraction < 1):
            raise param_error("discard_fraction", f, "a number in [0, 1)", self.discard_fraction)
        return self


@register("prune_distill.id_layers")
class IDLayers(PaperFigureExperiment):
    """Intrinsic dimension across layers, trained vs random."""

    Config = IDLayersConfig
    title = "Intrinsic dimension across layers"
    result_name = "id_layers"

    def run(self, cfg, ctx):
        from ..stats import dimension
        from ..stats.dimension import TwoNN

        nets, first, stim, stim_id, layers = _setup(cfg, ctx, "IDLayersConfig")
        ids = np.full((len(nets), cfg.realisations, len(layers)), np.nan)
        errs = np.full_like(ids, np.nan)
        for r in ctx.progress(range(cfg.realisations), desc="id_layers"):
            table = _layer_units(first, layers, cfg.units, ctx, stim.size, r)
            for ni, (name, model) in enumerate(nets.items()):
                ident = ctx.model_identity(model)

                def compute(l, sub, r=r):
                    X = sub.values.astype(np.float64)
                    with ctx.timer("twonn"), ctx.collect_warnings("TwoNN"):
                        est = TwoNN(discard_fraction=cfg.discard_fraction, random_state=ctx.seed("twonn", r, l)).fit(X)
                    return xr.Dataset({"id": ((), float(est.dimension_)), "id_err": ((), float(est.dimension_err_)),
                                       "n_units": ((), X.shape[1])})

                got = _layer_pieces(ctx, "id_layer", model, stim, table, layers, cfg, compute=compute,
                                    key_of=lambda l, name=name, ident=ident, r=r: ctx.key(
                                        "id_layer", reads=("units", "site", "discard_fraction"),
                                        estimators=(dimension,), network=name, model=ident,
                                        stimuli=stim_id["sha256"], realisation=r, layer=l,
                                        units_seed=ctx.seed("units", r, l)))
                for li, l in enumerate(layers):
                    ids[ni, r, li] = float(got[l]["id"])
                    errs[ni, r, li] = float(got[l]["id_err"])
        res = xr.Dataset({"id": (("network", "realisation", "layer"), ids),
                          "id_err": (("network", "realisation", "layer"), errs)},
                         coords={"network": list(nets), "realisation": np.arange(cfg.realisations),
                                 **_layer_coords(first, layers)},
                         attrs={"model": cfg.model, "weights": cfg.weights, "n_images": len(stim), "units": cfg.units})
        return res

    def tables(self, result):
        df = result["id"].mean("realisation").to_pandas().T.reset_index()
        return {"id_layers": df}

    intro = ("The intrinsic dimension (TwoNN) of each layer's representation of the images, trained vs random "
             "network. Ansuini et al. (2019), cited by the paper, found a 'hunchback' in trained networks: the "
             "dimension rises in the first layers and falls towards the output, while a random network shows no "
             "such profile; the paper found the same rise and fall across rat areas V1 -> LI -> LL.")

    def figures(self, result, ctx, layout: str = "double"):
        return [("id_layers", plot_id_layers(result, layout=layout),
                 f"TwoNN intrinsic dimension of {result.attrs.get('units')} units per layer (mean ± SD over "
                 f"{result.sizes['realisation']} draws of units); circles: conv layers, squares on the grey band: "
                 "FC layers.")]


@paper_plot
def plot_id_layers(result: xr.Dataset, ax=None, *, layout: str = "double"):
    """ID vs layer (the "hunchback"), trained vs random, mean ± SD over unit draws.

    Parameters
    ----------
    result : xarray.Dataset from ``prune_distill.id_layers``
    ax : matplotlib Axes, optional
    layout : {"double", "single"}
        Width of a new figure (7 or 3.5 in); the legend sits right of the axes.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.lines import Line2D

    from ..plotting.style import RANDOM, TRAINED, WIDTHS, layer_axis, marker_handles, paper_figure, plot_layer_curve

    if ax is None:
        if layout == "double":
            fig, (ax, lax) = paper_figure(layout, 2.6, nrows=1, ncols=2, func="plot_id_layers",
                                          gridspec_kw={"width_ratios": [3.2, 1]})
        else:
            fig, (ax, lax) = paper_figure(layout, 3.1, nrows=2, ncols=1, func="plot_id_layers",
                                          gridspec_kw={"height_ratios": [3.6, 1]})
        width_in = WIDTHS[layout] * (0.72 if layout == "double" else 0.85)
    else:
        fig, lax, width_in = ax.figure, None, None
    layers = list(result["layer"].values)
    kinds = list(result["kind"].values)
    hs, ls = [], []
    for n in result["network"].values:
        v = result["id"].sel(network=n)
        sd = v.std("realisation", ddof=1).values if v.sizes["realisation"] > 1 else None
        c = _net_color(n, list(result["network"].values))
        plot_layer_curve(ax, layers, kinds, v.mean("realisation").values, sd, color=c, label=str(n))
        hs.append(Line2D([], [], color=c, lw=1.0))
        ls.append(f"{n} (mean ± SD)")
    layer_axis(ax, layers, kinds, width_in=width_in)
    ax.set_xlabel("layer")
    ax.set_ylabel("intrinsic dimension (TwoNN)")
    for h, l in marker_handles(kinds):
        hs.append(h)
        ls.append(l)
    if lax is not None:
        lax.set_axis_off()
        lax.legend(hs, ls, loc="center left" if layout == "double" else "center", borderaxespad=0.0,
                   ncols=1 if layout == "double" else 3, columnspacing=0.8)
    else:
        ax.legend(hs, ls, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


# ----------------------------------------------------------------------------- Fig. 2 (neural data)
@dataclass(frozen=True)
class Fig2Config:
    """ID vs number of neurons per area with power-law extrapolation (Fig. 2).

    ``datasets`` names the sources: ``"cowley_v4"`` (each V4 session an area), ``"allen_v1"``, or
    ``"files:<area>=<path>,<area>=<path>"`` for a user's own (stimuli x neurons) ``.npy``/``.csv`` files
    (e.g. rat V1, LM, LI, LL). Areas are ranked in the order given (``area_order``, default as loaded).
    """

    datasets: tuple[str, ...] = ("cowley_v4", "allen_v1")
    root: str | None = None
    sessions: tuple | None = None
    min_neurons: int = 20
    n_sizes: int = 8
    n_repeats: int = 20
    n_boot: int = 100
    area_order: tuple[str, ...] | None = None
    discard_fraction: float = 0.1
    random_state: int = 0

    def validate(self):
        f = "Fig2Config"
        if not self.datasets:
            raise param_error("datasets", f, "a non-empty list of 'cowley_v4', 'allen_v1' or 'files:...'", [])
        for d in self.datasets:
            if d not in ("cowley_v4", "allen_v1") and not str(d).startswith("files:"):
                raise param_error("datasets", f, "'cowley_v4', 'allen_v1' or 'files:<area>=<path>,...'", d)
        for name, lo in (("min_neurons", 2), ("n_sizes", 2), ("n_repeats", 1), ("n_boot", 0), ("random_state", 0)):
            check_int(getattr(self, name), name, f, min_value=lo)
        return self


def _fig2_areas(cfg: Fig2Config) -> dict:
    from ..neural import from_files, load_allen_v1, load_cowley_v4

    areas = {}
    for ds in cfg.datasets:
        if ds == "cowley_v4":
            for s, d in load_cowley_v4(cfg.root, sessions=cfg.sessions, images=False).items():
                areas[f"V4 {s}"] = d.responses("V4").values
        elif ds == "allen_v1":
            d = load_allen_v1(cfg.root)
            for a in d.areas:
                areas[f"mouse {a}"] = d.responses(a).values
        else:
            d = from_files(dict(item.split("=", 1) for item in ds[6:].split(",")))
            for a in d.areas:
                areas[a] = d.responses(a).values
    if cfg.area_order:
        missing = [a for a in cfg.area_order if a not in areas]
        if missing:
            raise param_error("area_order", "Fig2Config", "names of loaded areas (" + ", ".join(areas) + ")", missing)
        areas = {a: areas[a] for a in cfg.area_order}
    return areas


def _fig2_area(X, cfg, seed: int) -> xr.Dataset:
    """ID-vs-size curve and power-law fit of one area."""
    from ..stats.dimension import TwoNN, fit_power_law, id_vs_population

    n_total = X.shape[1]
    sizes = np.unique(np.round(np.geomspace(min(cfg.min_neurons, n_total), n_total, cfg.n_sizes)).astype(int))
    curve = id_vs_population(X, sizes, n_repeats=cfg.n_repeats, estimator=TwoNN(discard_fraction=cfg.discard_fraction),
                             random_state=seed)
    warn = ""
    try:
        fit = fit_power_law(curve["n_units"].values, curve["id_mean"].values, curve["id_sd"].values,
                            id_samples=curve["id"].values, n_boot=cfg.n_boot, random_state=seed)
    except Exception as exc:  # noqa: BLE001 - reported in the result, not fatal
        fit, warn = None, f"power-law fit failed: {exc}"
    if fit is not None and getattr(fit, "at_bound", False):
        warn = "power-law exponent ended at its bound: the ID does not saturate; no asymptote is reported"
    ok = fit is not None and not getattr(fit, "at_bound", False)
    nan = np.nan
    return xr.Dataset(
        {"n_units": ("size", curve["n_units"].values.astype(np.float64)),
         "id_mean": ("size", curve["id_mean"].values), "id_sd": ("size", curve["id_sd"].values),
         "n_neurons": ((), n_total), "n_stimuli": ((), X.shape[0]),
         "id_full": ((), float(curve["id_mean"].values[-1])),
         "d_inf": ((), fit.d_inf if ok else nan), "d_inf_err": ((), fit.d_inf_err if ok else nan),
         "d_inf_boot_err": ((), fit.d_inf_boot_err if ok and fit.d_inf_boot_err is not None else nan),
         "fit_a": ((), fit.a if fit is not None else nan), "fit_b": ((), fit.b if fit is not None else nan),
         "saturates": ((), int(ok))}, attrs={"warning": warn})


@register("prune_distill.fig2")
class Fig2(PaperFigureExperiment):
    """Figure 2: ID vs number of neurons in real recordings, power-law asymptotes per area."""

    Config = Fig2Config
    title = "Prune and distill, Figure 2: intrinsic dimension of neural populations"
    result_name = "fig2"

    def run(self, cfg, ctx):
        from ..stats import dimension

        areas = _fig2_areas(cfg)
        parts = []
        for area, X in ctx.progress(list(areas.items()), desc="fig2"):
            X = np.ascontiguousarray(X, dtype=np.float64)
            data_id = hashlib.sha256(X.tobytes() + str(X.shape).encode()).hexdigest()
            ctx.extra.setdefault("data", {})[area] = {"shape": list(X.shape), "sha256": data_id}
            with ctx.collect_warnings(area):
                ds = ctx.piece("fig2_area", lambda: _fig2_area(X, cfg, ctx.seed("area", area)),
                               reads=("min_neurons", "n_sizes", "n_repeats", "n_boot", "discard_fraction"),
                               estimators=(dimension,), area=area, data=data_id, seed=ctx.seed("area", area))
            if ds.attrs.get("warning"):
                ctx.warn(f"{area}: {ds.attrs['warning']}")
            # a small area has fewer distinct sample sizes: index 'size' so the outer join pads with NaN
            parts.append(ds.assign_coords(size=np.arange(ds.sizes["size"])))
        res = xr.concat(parts, dim="area", join="outer", combine_attrs="drop").assign_coords(area=list(areas))
        # an asymptote is reliable when positive and its bootstrap SD (else its fit SD) is < half of it
        err = res["d_inf_boot_err"].where(np.isfinite(res["d_inf_boot_err"]), res["d_inf_err"])
        res["reliable"] = (res["saturates"] > 0) & (res["d_inf"] > 0) & (err < 0.5 * res["d_inf"])
        return res

    def tables(self, result):
        cols = ["n_neurons", "n_stimuli", "id_full", "d_inf", "d_inf_err", "d_inf_boot_err", "saturates", "reliable"]
        return {"fig2_asymptotes": result[cols].to_dataframe().reset_index()}

    intro = ("The intrinsic dimension (TwoNN) of neural population responses as a function of how many neurons "
             "are sampled, per visual area, with a saturating power-law fit whose asymptote estimates the "
             "dimension of the whole population. The paper (rat V1, LM, LI, LL) found the dimension growing with "
             "the number of neurons and saturating, with asymptotes that rise from V1 to LI and fall in LL, the "
             "same rise and fall as across the layers of a trained network.")

    def figures(self, result, ctx, layout: str = "double"):
        return [("fig2", plot_fig2(result, layout=layout),
                 "A: TwoNN ID of random sub-populations (mean ± SD over sub-populations, shaded) with the "
                 "saturating power-law fit ID(n) = d_inf - a n^-b (dashed). B: asymptotes d_inf (± bootstrap SD) "
                 "where the fit constrains them (positive, SD < 50%), and the ID of all recorded neurons (x).")]


@paper_plot
def plot_fig2(result: xr.Dataset, *, layout: str = "double"):
    """(A) ID vs number of neurons per area (mean ± SD shading, power-law fit dashed);
    (B) extrapolated asymptote per area against area rank.

    Parameters
    ----------
    result : xarray.Dataset from ``prune_distill.fig2``
    layout : {"double", "single"}
        A and B side by side (7 in) or stacked (3.5 in); the legend below, outside the data.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    from ..plotting.style import paper_figure

    areas = list(result["area"].values)
    # the legend below grows with the number of areas; the panels keep their height
    ncols = 4 if layout == "double" else 2
    extra = 0.13 * max(0, int(np.ceil((len(areas) + 4) / ncols)) - 2)
    if layout == "double":
        fig, (a, b) = paper_figure(layout, 2.7 + extra, nrows=1, ncols=2, func="plot_fig2",
                                   gridspec_kw={"width_ratios": [1.4, 1]})
    else:
        fig, (a, b) = paper_figure(layout, 4.9 + extra, nrows=2, ncols=1, func="plot_fig2")
    cmap = plt.cm.viridis(np.linspace(0, 0.9, max(1, len(areas))))
    hs, ls = [], []
    for area, col in zip(areas, cmap):
        c = result.sel(area=area)
        ok = np.isfinite(c["n_units"].values)
        n, m, s = c["n_units"].values[ok], c["id_mean"].values[ok], c["id_sd"].values[ok]
        line, = a.plot(n, m, "o-", color=col, ms=2.5, lw=1.0)
        a.fill_between(n, m - s, m + s, color=col, alpha=0.18, lw=0)
        hs.append(line)
        ls.append(str(area))
        if int(c["saturates"]):
            g = np.geomspace(n.min(), n.max() * 4, 100)
            a.plot(g, float(c["d_inf"]) - float(c["fit_a"]) * g ** (-float(c["fit_b"])), "--", color=col, lw=0.8)
    a.set_xscale("log")
    # log axis: plain numbers at 1-2-5 steps, no minor labels (they collide on short ranges)
    a.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    a.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    a.xaxis.set_minor_formatter(NullFormatter())
    a.set_xlabel("number of neurons sampled")
    a.set_ylabel("intrinsic dimension (TwoNN)")
    a.set_title("A  ID vs population size", loc="left")
    x = np.arange(1, len(areas) + 1)
    err = np.where(np.isfinite(result["d_inf_boot_err"].values), result["d_inf_boot_err"].values,
                   result["d_inf_err"].values)
    ok = result["reliable"].values.astype(bool)
    b.errorbar(x[ok], result["d_inf"].values[ok], yerr=err[ok], fmt="o", color="k", capsize=2, ms=3)
    b.plot(x, result["id_full"].values, "x", color="0.5", ms=4)
    b.set_xticks(x)
    b.set_xticklabels(areas, rotation=0 if len(areas) <= 6 else 90)
    b.set_xlim(0.4, len(areas) + 0.6)
    b.set_xlabel("area (rank)")
    b.set_ylabel("ID asymptote")
    b.set_title("B  asymptotes", loc="left")
    hs += [Line2D([], [], color="0.3", ls="--", lw=0.8), plt.matplotlib.patches.Patch(color="0.3", alpha=0.18, lw=0),
           Line2D([], [], ls="none", marker="o", color="k", ms=3), Line2D([], [], ls="none", marker="x", color="0.5")]
    ls += ["A: power-law fit", "A: ± SD over sub-populations", "B: asymptote ± bootstrap SD (reliable fits)",
           "B: ID of all neurons"]
    fig.legend(hs, ls, loc="outside lower center", ncols=ncols, columnspacing=1.0)
    return fig


# ----------------------------------------------------------------------------- Python API
def _run(cls, cfg, out, progress):
    from .runner import run_experiment

    return run_experiment(cls, cfg, out, progress=progress, report=False).result


def run_fig5(cfg: Fig5Config | None = None, out=None, *, progress: bool = True) -> xr.Dataset:
    """Run Figure 5; returns the labelled result."""
    return _run(Fig5, cfg or Fig5Config(), out, progress)


def run_id_layers(cfg: IDLayersConfig | None = None, out=None, *, progress: bool = True) -> xr.Dataset:
    """Run the ID-across-layers experiment; returns the labelled result."""
    return _run(IDLayers, cfg or IDLayersConfig(), out, progress)


def run_fig2(cfg: Fig2Config | None = None, out=None, *, progress: bool = True) -> xr.Dataset:
    """Run Figure 2 on neural data; returns the labelled result (dims area, size)."""
    return _run(Fig2, cfg or Fig2Config(), out, progress)
