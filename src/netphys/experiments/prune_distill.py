"""Prune and distill (Figures 3, 4, C, D and the Fig. 3A inset): single-unit information across layers.

For every realisation (new units, new images and, for random networks, new weights) and every layer:
record 250 sampled units on the images, compute the features of each unit's receptive-field patch
(luminosity, contrast, orientation, corner), apply the paper's selection rules and estimate the
normalised, Panzeri-Treves-corrected information between feature and activation (and between
category and activation). Work is cached per (network, realisation, layer), so a killed run resumes.

References
----------
Prune and distill: similar reformatting of image information along rat visual cortex and deep neural
networks (``shared/seeds/prune-and-distill.txt``), section A of ``METHODS.md``.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from .._random import spawn_seeds
from .._validation import NetphysError, check_choice, check_int, param_error
from ..features import FEATURE_KEYS
from ..io import load_dataset, save_dataset
from ..models import default_layers, load_model, resolve_layer
from ..models.hybrid import hybrid_model
from ..models.loading import model_info
from ..recording import provenance, record, sample_units
from ..stimuli import folder_or_demo
from .config import config_to_dict, load_config, read_config_dict, save_config

log = logging.getLogger(__name__)

FEATURES = ("luminosity", "contrast", "orientation", "corner", "category")


@dataclass(frozen=True)
class Fig3Config:
    """Trained vs random network: information per layer (paper defaults).

    Attributes
    ----------
    model, weights : str
        Network (``load_model`` name) and its trained weights (``"default"``, a path, ...).
    images : str or None
        Image folder (ImageFolder layout); ``None`` uses the shipped demo set.
    n_images : int
        Images per realisation (1500 in the paper; capped at the set's size).
    units : int
        Units sampled per layer (250).
    layers : tuple of str or None
        Layers to analyse; ``None``: all conv and FC layers.
    site : {"pre", "post"}
        Before (paper) or after the ReLU (appendix C).
    networks : tuple of str
        Which networks: ``"trained"``, ``"random"`` and/or ``"hybrid:<l*>"``.
    features : tuple of str
    realisations : int
        Independent realisations (5): new units, images and random weights.
    bins : int
        Equal-width bins per variable (20).
    orientation_units, orientation_images, corner_units, corner_images : int
        Selection rules: keep the units with the largest mean xi (zeta) and, per unit, the images
        with the largest xi (zeta): 200/500 and 200/400 in the paper.
    skip_first : int
        Orientation and corner are not computed for the first ``skip_first`` layers (2).
    random_state : int
    batch_size : int
    device : str or None
    """

    model: str = "netphys_vgg16"
    weights: str = "default"
    images: str | None = None
    n_images: int = 1500
    units: int = 250
    layers: tuple | None = None
    site: str = "pre"
    networks: tuple = ("trained", "random")
    features: tuple = FEATURES
    realisations: int = 5
    bins: int = 20
    orientation_units: int = 200
    orientation_images: int = 500
    corner_units: int = 200
    corner_images: int = 400
    skip_first: int = 2
    random_state: int = 0
    batch_size: int = 100
    device: str | None = None

    def validate(self) -> "Fig3Config":
        func = "Fig3Config"
        check_int(self.n_images, "n_images", func, min_value=20)
        check_int(self.units, "units", func, min_value=2)
        check_int(self.realisations, "realisations", func, min_value=1)
        check_int(self.bins, "bins", func, min_value=2)
        check_choice(self.site, "site", func, ("pre", "post"))
        for f in self.features:
            check_choice(f, "features", func, FEATURES)
        for n in self.networks:
            if n not in ("trained", "random") and not str(n).startswith("hybrid:"):
                raise param_error("networks", func, "'trained', 'random' or 'hybrid:<l*>'", n)
        return self


# ----------------------------------------------------------------------------- building blocks
def _network(cfg: Fig3Config, kind: str, seed: int, trained_cache: dict):
    if "trained" not in trained_cache:
        trained_cache["trained"] = load_model(cfg.model, cfg.weights)
    trained = trained_cache["trained"]
    if kind == "trained":
        return trained
    rand = load_model(cfg.model, "random", random_state=seed)
    if kind == "random":
        return rand
    l_star = int(str(kind).split(":", 1)[1])
    return hybrid_model(trained, rand, l_star)


def rf_boxes(model, table: pd.DataFrame, input_size: int) -> np.ndarray:
    """(U, 4) receptive-field boxes (row_start, row_stop, col_start, col_stop) of the units in ``table``."""
    from ..rf import receptive_fields

    boxes = np.empty((len(table), 4), dtype=np.int64)
    for layer, idx in table.groupby("layer", sort=False).indices.items():
        sub = table.iloc[idx]
        boxes[idx] = receptive_fields(model, layer, sub["row"].to_numpy(), sub["col"].to_numpy(), input_size)
    return boxes


def select_top(strength: np.ndarray, n_units: int, n_images: int):
    """The paper's selection rule.

    Keep the ``n_units`` units with the largest mean strength over all images, and for each of them
    the ``n_images`` images with the largest strength.

    Returns
    -------
    units : (n_units,) int positions (sorted)
    images : (n_images, n_units) int positions of the images kept for each unit
    """
    n, u = strength.shape
    n_units, n_images = min(n_units, u), min(n_images, n)
    mean = strength.mean(axis=0)
    units = np.sort(np.argsort(-mean, kind="stable")[:n_units])
    s = strength[:, units]
    images = np.argsort(-s, axis=0, kind="stable")[:n_images]
    return units, images


def layer_information(features: dict, acts: np.ndarray, labels: np.ndarray, cfg: Fig3Config,
                      layer_position: int) -> dict:
    """Normalised information of each feature for one layer (mean over units and per-unit values)."""
    from ..stats.information import mutual_information

    out = {}
    for feat in cfg.features:
        if feat in ("orientation", "corner") and layer_position < cfg.skip_first:
            out[feat] = None
            continue
        if feat == "luminosity":
            res = mutual_information(features["luminosity"], acts, bins=cfg.bins)
        elif feat == "contrast":
            res = mutual_information(features["contrast"], acts, bins=cfg.bins)
        elif feat == "category":
            res = mutual_information(labels, acts, bins=cfg.bins, x_discrete=True)
        elif feat == "orientation":
            units, imgs = select_top(features["xi"], cfg.orientation_units, cfg.orientation_images)
            x = np.take_along_axis(features["theta"][:, units], imgs, axis=0)
            y = np.take_along_axis(acts[:, units], imgs, axis=0)
            res = mutual_information(x, y, bins=cfg.bins)
        elif feat == "corner":
            units, imgs = select_top(features["zeta"], cfg.corner_units, cfg.corner_images)
            t1 = np.take_along_axis(features["theta1"][:, units], imgs, axis=0)
            t2 = np.take_along_axis(features["theta2"][:, units], imgs, axis=0)
            y = np.take_along_axis(acts[:, units], imgs, axis=0)
            res = mutual_information(np.stack([t1, t2], axis=-1), y, bins=cfg.bins)
        out[feat] = res
    return out


# ----------------------------------------------------------------------------- runner
class _BoxFeatureCache:
    """Features per RF box over one image set, shared across layers, networks and realisations.

    Features depend only on the images and the box, so boxes shared by several layers (or by
    realisations that draw the same images, e.g. all of a 1000-image demo set) are computed once, and
    all the boxes of a realisation go through :func:`~netphys.features.rf_features` in one call per
    feature set (its integral images and shared row spectra then serve every layer).
    """

    def __init__(self):
        self.key = None
        self.store: dict = {}

    def prefetch(self, stim_key, gray, requests, device) -> None:
        """Compute what is missing for ``requests``: a list of ``(boxes (U, 4), features)``."""
        from ..features import rf_features

        if stim_key != self.key:
            self.key, self.store = stim_key, {}
        by_want: dict = {}
        for boxes, want in requests:
            for b in boxes:
                by_want.setdefault(tuple(want), set()).add(tuple(int(v) for v in b))
        for want, tuples in by_want.items():
            missing = sorted(t for t in tuples if not all(
                k in self.store.get(t, {}) for f in want for k in FEATURE_KEYS[f]))
            if missing:
                new = rf_features(gray, np.array(missing, dtype=np.int64), features=want, device=device)
                for j, t in enumerate(missing):
                    self.store.setdefault(t, {}).update({k: v[:, j] for k, v in new.items()})

    def get(self, boxes, want) -> dict:
        tuples = [tuple(int(v) for v in b) for b in boxes]
        keys = [k for f in want for k in FEATURE_KEYS[f]]
        return {k: np.stack([self.store[t][k] for t in tuples], axis=1) for k in keys}


def _seeds(cfg: Fig3Config):
    """Per realisation: (units/images seed, random-weights seed), spawned from ``random_state``."""
    out = []
    for s in spawn_seeds(cfg.random_state, cfg.realisations):
        a, b = spawn_seeds(s, 2)
        out.append((a, b))
    return out


def run_fig3(cfg: Fig3Config | None = None, out=None, *, progress: bool = True) -> xr.Dataset:
    """Run the Figure-3 experiment (or Fig. 4 / C / D through ``networks``, ``site`` and ``model``).

    Parameters
    ----------
    cfg : Fig3Config
    out : path, optional
        Cache folder: per-(network, realisation, layer) results are written there as they finish and
        re-used on a rerun (a killed run resumes and gives identical numbers).
    progress : bool

    Returns
    -------
    xarray.Dataset
        ``information`` (network, realisation, layer, feature): the layer value U (mean normalised
        information over units; NaN where a feature is not computed, e.g. orientation in the first
        two layers); ``mi_bits`` the mean corrected information in bits; ``n_constant`` the number of
        units with zero-entropy feature or activation; layer coordinates ``kind`` and ``depth``;
        provenance and the config in ``attrs``.
    """
    from tqdm.auto import tqdm

    cfg = (cfg or Fig3Config()).validate()
    out = Path(out) if out is not None else None
    cache = out / "cache" if out is not None else None
    if out is not None:
        save_config(cfg, out / "config.yaml")
    trained_cache: dict = {}
    base = load_model(cfg.model, cfg.weights) if "trained" in cfg.networks or any(
        str(n).startswith("hybrid") for n in cfg.networks) else load_model(cfg.model, "random")
    trained_cache["trained"] = base
    info = model_info(base)
    layers = list(cfg.layers) if cfg.layers else default_layers(base)
    infos = [resolve_layer(base, l, "run_fig3") for l in layers]
    layers = [li.alias for li in infos]
    pre = info.preprocess
    stim_all = folder_or_demo(cfg.images, pre)
    n_img = min(cfg.n_images, len(stim_all))
    if "category" in cfg.features and len(np.unique(stim_all.labels[stim_all.labels >= 0])) < 2:
        raise param_error("images", "run_fig3", "an image folder with at least 2 class sub-folders for the "
                          "'category' feature", cfg.images, "point 'images' at the folder that holds one "
                          "sub-folder per class, or drop 'category' from 'features'")
    seeds = _seeds(cfg)
    t_start = time.time()
    values = np.full((len(cfg.networks), cfg.realisations, len(layers), len(cfg.features)), np.nan)
    bits = np.full_like(values, np.nan)
    nconst = np.zeros(values.shape, dtype=np.int64)
    timings: dict = {"record": 0.0, "features": 0.0, "information": 0.0}
    total = len(cfg.networks) * cfg.realisations
    bar = tqdm(total=total * len(layers), desc="fig3", disable=not progress)
    box_cache = _BoxFeatureCache()
    for r, (seed_ui, seed_w) in enumerate(seeds):
        stim = stim_all.subsample(n=n_img, random_state=seed_ui) if n_img < len(stim_all) else stim_all
        table = sample_units(base, layers, cfg.units, input_size=stim.size, random_state=seed_ui,
                             allow_fewer=True)
        stim_key = tuple(stim.coords["source"])
        labels = stim.labels
        done: dict = {}
        todo: dict = {}
        for net in cfg.networks:
            done[net], todo[net] = {}, []
            for l in layers:
                f = cache / f"{net.replace(':', '-')}_r{r}_{l}.nc" if cache is not None else None
                if f is not None and f.is_file():
                    done[net][l] = load_dataset(f)
                else:
                    todo[net].append(l)
        need = [l for l in layers if any(l in todo[net] for net in cfg.networks)]
        feats: dict = {}
        if need:
            # features of every layer still to do, in one pass over the images (shared by all networks)
            t0 = time.time()
            gray = stim.grayscale()
            requests = []
            for l in need:
                li_pos = layers.index(l)
                want = ["luminosity", "contrast"]
                if li_pos >= cfg.skip_first:
                    want += [f for f in ("orientation", "corner") if f in cfg.features]
                requests.append((l, rf_boxes(base, table[table["layer"] == l], stim.size), tuple(want)))
            box_cache.prefetch(stim_key, gray,
                               [(bx, ("luminosity", "contrast")) for _, bx, _ in requests]
                               + [(bx, tuple(w[2:])) for _, bx, w in requests if len(w) > 2], cfg.device)
            feats = {l: box_cache.get(bx, w) for l, bx, w in requests}
            del gray
            timings["features"] += time.time() - t0
        for ni, net in enumerate(cfg.networks):
            if todo[net]:
                model = _network(cfg, net, seed_w, trained_cache)
                t0 = time.time()
                rec = record(model, stim, units=table[table["layer"].isin(todo[net])], site=cfg.site,
                             batch_size=cfg.batch_size, device=cfg.device)
                timings["record"] += time.time() - t0
                for l in todo[net]:
                    li_pos = layers.index(l)
                    sel = rec.coords["layer"].values == l
                    acts = rec.values[:, sel].astype(np.float64)
                    t0 = time.time()
                    res = layer_information(feats[l], acts, labels, cfg, li_pos)
                    timings["information"] += time.time() - t0
                    ds = _layer_dataset(res, cfg)
                    ds.attrs.update({"network": net, "realisation": r, "layer": l})
                    if cache is not None:
                        save_dataset(ds, cache / f"{net.replace(':', '-')}_r{r}_{l}.nc")
                    done[net][l] = ds
                    bar.update(1)
            bar.update(len(layers) - len(todo[net]))
            for li_pos, l in enumerate(layers):
                ds = done[net][l]
                values[ni, r, li_pos] = ds["information"].values
                bits[ni, r, li_pos] = ds["mi_bits"].values
                nconst[ni, r, li_pos] = ds["n_constant"].values
    bar.close()
    kinds = [li.kind for li in infos]
    result = xr.Dataset(
        {"information": (("network", "realisation", "layer", "feature"), values),
         "mi_bits": (("network", "realisation", "layer", "feature"), bits),
         "n_constant": (("network", "realisation", "layer", "feature"), nconst)},
        coords={"network": list(cfg.networks), "realisation": np.arange(cfg.realisations),
                "layer": layers, "feature": list(cfg.features), "kind": ("layer", kinds),
                "depth": ("layer", [li.depth for li in infos])},
        attrs=provenance(base, config=config_to_dict(cfg), experiment="prune_distill.fig3",
                         seeds=[list(s) for s in seeds], n_images=n_img,
                         stimuli=stim_all.to_dict(), timings=timings,
                         seconds=round(time.time() - t_start, 2)))
    if out is not None:
        save_dataset(result, out / "information.nc")
        summary(result).to_csv(out / "information.csv")
    return result


def _layer_dataset(res: dict, cfg: Fig3Config) -> xr.Dataset:
    vals, bits, nconst = [], [], []
    per_unit = {}
    for feat in cfg.features:
        r = res.get(feat)
        if r is None:
            vals.append(np.nan)
            bits.append(np.nan)
            nconst.append(0)
        else:
            vals.append(float(np.mean(r.normalized)))
            bits.append(float(np.mean(r.mi)))
            nconst.append(int(np.sum(r.x_constant | r.y_constant)))
            per_unit[feat] = r.normalized
    return xr.Dataset({"information": ("feature", vals), "mi_bits": ("feature", bits),
                       "n_constant": ("feature", nconst)}, coords={"feature": list(cfg.features)},
                      attrs={"per_unit": {k: v.tolist() for k, v in per_unit.items()}})


def summary(result: xr.Dataset) -> pd.DataFrame:
    """Tidy table: network, layer, feature, mean and SD over realisations."""
    m = result["information"].mean("realisation")
    s = result["information"].std("realisation", ddof=1) if result.sizes["realisation"] > 1 else \
        xr.zeros_like(m)
    df = xr.Dataset({"mean": m, "sd": s}).to_dataframe().reset_index()
    df["depth"] = df["layer"].map(dict(zip(result["layer"].values, result["depth"].values)))
    df["kind"] = df["layer"].map(dict(zip(result["layer"].values, result["kind"].values)))
    return df[["network", "depth", "layer", "kind", "feature", "mean", "sd"]]


# ----------------------------------------------------------------------------- inset
def first_layer_kernel_means(model) -> np.ndarray:
    """Mean weight of each first-layer kernel (one value per (out, in) channel pair)."""
    from ..models.layers import layer_infos

    first = next(li for li in layer_infos(model) if li.kind == "conv")
    w = dict(model.named_modules())[first.module].weight.detach().cpu().numpy()
    return w.reshape(w.shape[0] * w.shape[1], -1).mean(axis=1)


# ----------------------------------------------------------------------------- plots
FEATURE_TITLES = {"luminosity": "Luminosity", "contrast": "Contrast", "orientation": "Orientation",
                  "corner": "Corner", "category": "Category"}


def plot_fig3(result: xr.Dataset, *, inset: dict | None = None, axes=None):
    """Figure 3: normalised information per layer, one panel per feature, networks as curves.

    Parameters
    ----------
    result : xarray.Dataset from :func:`run_fig3`
    inset : dict, optional
        ``{"trained": kernel_means, "random": kernel_means}`` drawn as an inset of the luminosity panel
        (Fig. 3A inset: histogram of the mean weight of each first-layer kernel).
    axes : sequence of matplotlib Axes, optional
    """
    import matplotlib.pyplot as plt

    from ..plotting.style import RANDOM, TRAINED, layer_axis, plot_layer_curve

    feats = list(result["feature"].values)
    if axes is None:
        fig, axes = plt.subplots(1, len(feats), figsize=(3.3 * len(feats), 3.2), squeeze=False)
        axes = axes[0]
    else:
        fig = axes[0].figure
    layers = list(result["layer"].values)
    kinds = list(result["kind"].values)
    nets = list(result["network"].values)
    hybrid_cols = plt.cm.Greens(np.linspace(0.45, 0.9, max(1, sum(str(n).startswith("hybrid") for n in nets))))
    hi = 0
    colors = {}
    for n in nets:
        if n == "trained":
            colors[n] = TRAINED
        elif n == "random":
            colors[n] = RANDOM
        else:
            colors[n] = hybrid_cols[hi]
            hi += 1
    for ax, feat in zip(axes, feats):
        for n in nets:
            v = result["information"].sel(network=n, feature=feat)
            m = v.mean("realisation").values
            sd = v.std("realisation", ddof=1).values if v.sizes["realisation"] > 1 else None
            label = n if not str(n).startswith("hybrid") else f"hybrid l*={n.split(':')[1]}"
            plot_layer_curve(ax, layers, kinds, m, sd, color=colors[n], label=label)
        layer_axis(ax, layers, kinds)
        ax.set_title(FEATURE_TITLES.get(feat, feat), fontsize=10)
        ax.set_xlabel("layer")
        vals = result["information"].sel(feature=feat).values
        if np.isfinite(vals).any():
            ax.set_ylim(bottom=min(0, float(np.nanmin(vals)) - 0.01))
    axes[0].set_ylabel("normalised information  $U^\\ell$")
    axes[-1].legend(frameon=False, fontsize=8, loc="upper left")
    if inset is not None and "luminosity" in feats:
        ax = axes[feats.index("luminosity")]
        ins = ax.inset_axes([0.45, 0.45, 0.5, 0.38])
        allv = np.concatenate([np.asarray(v) for v in inset.values()])
        bins_ = np.linspace(np.percentile(allv, 0.5), np.percentile(allv, 99.5), 40)
        for k, v in inset.items():
            ins.hist(v, bins=bins_, color=colors.get(k, "0.5"), alpha=0.6, density=True)
        ins.set_title("mean conv1 kernel weight", fontsize=6)
        ins.tick_params(labelsize=5)
        ins.set_yticks([])
    fig.tight_layout()
    return fig


def report_fig3(result: xr.Dataset, out, *, inset: dict | None = None, title: str | None = None,
                extra_figures=()):
    """Write the figure (PNG/SVG), CSV and an HTML report for a Fig-3-type result."""
    import matplotlib.pyplot as plt

    from ..reports import Report

    out = Path(out)
    cfg = result.attrs.get("config", {})
    rep = Report(title or "Prune and distill: single-unit information across layers",
                 f"model {result.attrs.get('model')} ({result.attrs.get('weights')}); "
                 f"{result.attrs.get('n_images')} images; {result.sizes['realisation']} realisation(s)")
    fig = plot_fig3(result, inset=inset)
    rep.heading("Figure 3: information per layer")
    rep.figure(fig, "Mean normalised, Panzeri-Treves-corrected single-unit information per layer "
               "(mean +- SD over realisations). Circles: conv layers; squares (shaded): FC layers.",
               stem=out / "fig3")
    plt.close(fig)
    for f, cap, stem in extra_figures:
        rep.figure(f, cap, stem=out / stem)
        plt.close(f)
    df = summary(result)
    rep.heading("Numbers")
    wide = df.pivot_table(index=["depth", "layer"], columns=["feature", "network"], values="mean")
    rep.table(wide, "layer value U (mean over realisations)")
    rep.heading("Config and provenance")
    rep.json(cfg, "config")
    rep.json({k: v for k, v in result.attrs.items() if k != "config"}, "provenance")
    return rep.write(out / "report.html")


def run(config=None, out=None, *, progress: bool = True) -> Path:
    """CLI entry: ``netphys run prune_distill.fig3 --config file``."""
    cfg = load_config(Fig3Config, config)
    out = Path(out or "runs/prune_distill.fig3")
    result = run_fig3(cfg, out, progress=progress)
    inset = _inset(cfg)
    return report_fig3(result, out, inset=inset)


def _inset(cfg: Fig3Config):
    try:
        trained = load_model(cfg.model, cfg.weights)
        rand = load_model(cfg.model, "random", random_state=cfg.random_state)
        return {"trained": first_layer_kernel_means(trained), "random": first_layer_kernel_means(rand)}
    except NetphysError as exc:  # pragma: no cover - reported, not fatal
        log.warning("no kernel inset: %s", exc)
        return None


# ----------------------------------------------------------------------------- Fig. 4, C, D
@dataclass(frozen=True)
class Fig4Config:
    """Hybrid networks (layers <= l* trained, the rest random) for luminosity and contrast."""

    base: Fig3Config = field(default_factory=Fig3Config)
    luminosity_l_stars: tuple = (1, 2, 3)
    contrast_l_stars: tuple = (3, 5, 7, 9, 11)


def run_fig4(cfg: Fig4Config | None = None, out=None, *, progress: bool = True) -> dict:
    """Figure 4: information of hybrid networks; returns ``{"luminosity": Dataset, "contrast": Dataset}``."""
    cfg = cfg or Fig4Config()
    res = {}
    for feat, stars in (("luminosity", cfg.luminosity_l_stars), ("contrast", cfg.contrast_l_stars)):
        nets = ("trained", "random") + tuple(f"hybrid:{int(s)}" for s in stars)
        sub = replace(cfg.base, networks=nets, features=(feat,))
        res[feat] = run_fig3(sub, None if out is None else Path(out) / feat, progress=progress)
    return res


def plot_fig4(results: dict):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(4.2 * len(results), 3.4), squeeze=False)
    for ax, (feat, res) in zip(axes[0], results.items()):
        plot_fig3(res, axes=[ax])
        ax.set_title(f"{FEATURE_TITLES[feat]}: hybrid networks", fontsize=10)
        ax.legend(frameon=False, fontsize=7)
    fig.tight_layout()
    return fig


def _cfg_from(config, cls=Fig3Config, **over):
    if isinstance(config, cls):
        return replace(config, **over) if over else config
    return load_config(cls, config, **over)


def run_fig4_cli(config=None, out=None, *, progress: bool = True) -> Path:
    import matplotlib.pyplot as plt

    from ..reports import Report

    data = read_config_dict(config)
    stars = {k: tuple(data.pop(k)) for k in ("luminosity_l_stars", "contrast_l_stars") if k in data}
    cfg = Fig4Config(base=load_config(Fig3Config, data), **stars)
    out = Path(out or "runs/prune_distill.fig4")
    res = run_fig4(cfg, out, progress=progress)
    rep = Report("Prune and distill, Figure 4: hybrid networks")
    fig = plot_fig4(res)
    rep.figure(fig, "Normalised information of hybrid networks whose first l* layers are trained and the "
               "rest random, with the fully trained and random networks.", stem=out / "fig4")
    plt.close(fig)
    for feat, r in res.items():
        rep.table(summary(r).pivot_table(index=["depth", "layer"], columns="network", values="mean"), feat)
    rep.json(config_to_dict(cfg.base), "base config")
    return rep.write(out / "report.html")


def run_figC(config=None, out=None, *, progress: bool = True) -> Path:
    """Appendix C: the Figure-3 analysis on post-ReLU activations."""
    cfg = _cfg_from(config, site="post")
    out = Path(out or "runs/prune_distill.figC")
    result = run_fig3(cfg, out, progress=progress)
    return report_fig3(result, out, title="Prune and distill, Figure C: after the ReLU")


@dataclass(frozen=True)
class FigDConfig:
    """Appendix D: the Figure-3 analysis on other VGG depths (``models``: (name, weights) pairs)."""

    base: Fig3Config = field(default_factory=Fig3Config)
    models: tuple = (("vgg11", "imagenet"), ("vgg19", "imagenet"))


def run_figD(config=None, out=None, *, progress: bool = True) -> Path:
    import matplotlib.pyplot as plt

    from ..reports import Report

    data = read_config_dict(config)
    models = tuple(tuple(m) for m in data.pop("models", FigDConfig().models))
    base = load_config(Fig3Config, data)
    out = Path(out or "runs/prune_distill.figD")
    rep = Report("Prune and distill, Figure D: other VGG depths")
    for name, weights in models:
        cfg = replace(base, model=name, weights=weights)
        res = run_fig3(cfg, out / name, progress=progress)
        fig = plot_fig3(res)
        rep.heading(f"{name} ({weights})")
        rep.figure(fig, f"{name}: trained vs random", stem=out / name / "fig3")
        plt.close(fig)
    rep.json({"models": models, **config_to_dict(base)}, "config")
    return rep.write(out / "report.html")
