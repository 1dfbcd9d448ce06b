"""Prune and distill (Figures 3, 4, C, D and the Fig. 3A inset): single-unit information across layers.

Methods (section A of ``METHODS.md``). In every realisation we draw new images, new units and new random
weights. For each layer we sample 250 units (channel and position), compute the features of each unit's
receptive-field patch (luminosity, contrast, orientation, corner) and record the units' activations. The
single-unit information between feature and activation is the plug-in estimate on 20 equal-width bins,
corrected for limited sampling (Panzeri-Treves by default) and normalised by the feature's entropy; the
layer value U is its mean over units. Orientation and corner use the paper's selection rule (the 200
units with the strongest mean xi / zeta and, per unit, its 500 / 400 strongest images) and are not
computed for the first two layers. Next to every estimate we store what the same estimator gives after
shuffling the pairing of feature and activation (the null), so a figure shows the signal above chance.

References
----------
Prune and distill: similar reformatting of image information along rat visual cortex and deep neural
networks (``shared/seeds/prune-and-distill.txt``), section A of ``METHODS.md``.
"""
from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from .._validation import NetphysError, NetphysWarning, check_choice, check_int, param_error
from ..models import default_layers, load_model, resolve_layer
from ..models.hybrid import hybrid_model
from ..models.loading import model_info
from ..recording import record, sample_units
from ..stimuli import folder_or_demo
from ..plotting.style import paper_plot
from .base import Experiment
from .registry import register

log = logging.getLogger(__name__)

FEATURES = ("luminosity", "contrast", "orientation", "corner", "category")
CORRECTIONS = ("pt", "qe", "shuffle", "pt+shuffle", "qe+shuffle", "none")
CORNER_SCHEMES = ("canonical", "literal", "difference")

#: config fields every information piece reads, and those read by one feature only
_COMMON_READS = ("units", "site", "bins", "correction", "n_shuffles")
_FEATURE_READS = {"luminosity": (), "contrast": (), "category": (),
                  "orientation": ("orientation_units", "orientation_images"),
                  "corner": ("corner_units", "corner_images", "corner_scheme", "corner_bins")}


@dataclass(frozen=True)
class Fig3Config:
    """Trained vs random network: information per layer (paper defaults).

    Attributes
    ----------
    model, weights : str
        Network (``load_model`` name) and its trained weights (``"default"``, a path, ...).
    images : str or None
        Image folder (ImageFolder layout); ``None`` uses the shipped demo set.
    on_error : {"raise", "skip", "grey"}
        Undecodable image files: stop (default), leave them out, or replace them by grey images; the
        files skipped or replaced are listed in the provenance and the report.
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
    correction : str
        Limited-sampling correction of :func:`netphys.stats.mutual_information` (``"pt"``: the paper's
        Panzeri-Treves; ``"pt+shuffle"`` additionally subtracts the shuffle null).
    n_shuffles : int
        Label shuffles for the null stored next to every estimate (0: no null).
    orientation_units, orientation_images, corner_units, corner_images : int
        Selection rules: keep the units with the largest mean xi (zeta) and, per unit, the images
        with the largest xi (zeta): 200/500 and 200/400 in the paper.
    corner_scheme : {"canonical", "literal", "difference"}
        Coordinates of the 2-D corner feature (see :func:`netphys.stats.corner_coordinates`);
        ``"literal"`` with ``corner_bins=20`` is the paper's setting.
    corner_bins : int or None
        Bins per corner coordinate; ``None``: :func:`netphys.stats.corner_bins` of the images kept per
        unit (5 for the paper's 400 with the canonical pair; see ``docs/information.md``).
    skip_first : int
        Orientation and corner are not computed for the first ``skip_first`` layers (2).
    random_state : int
    batch_size : int
    device : str or None
    """

    model: str = "netphys_vgg16"
    weights: str = "default"
    images: str | None = None
    on_error: str = "raise"
    n_images: int = 1500
    units: int = 250
    layers: tuple[str, ...] | None = None
    site: str = "pre"
    networks: tuple[str, ...] = ("trained", "random")
    features: tuple[str, ...] = FEATURES
    realisations: int = 5
    bins: int = 20
    correction: str = "pt"
    n_shuffles: int = 20
    orientation_units: int = 200
    orientation_images: int = 500
    corner_units: int = 200
    corner_images: int = 400
    corner_scheme: str = "canonical"
    corner_bins: int | None = None
    skip_first: int = 2
    random_state: int = 0
    batch_size: int = 100
    device: str | None = None

    def validate(self) -> "Fig3Config":
        func = type(self).__name__
        check_int(self.n_images, "n_images", func, min_value=20)
        check_int(self.units, "units", func, min_value=2)
        check_int(self.realisations, "realisations", func, min_value=1)
        check_int(self.bins, "bins", func, min_value=2)
        check_int(self.n_shuffles, "n_shuffles", func, min_value=0)
        if self.corner_bins is not None:
            check_int(self.corner_bins, "corner_bins", func, min_value=2)
        check_int(self.skip_first, "skip_first", func, min_value=0)
        check_int(self.random_state, "random_state", func, min_value=0)
        check_int(self.batch_size, "batch_size", func, min_value=1)
        for name in ("orientation_units", "orientation_images", "corner_units", "corner_images"):
            check_int(getattr(self, name), name, func, min_value=1)
        check_choice(self.site, "site", func, ("pre", "post"))
        check_choice(self.on_error, "on_error", func, ("raise", "skip", "grey"))
        check_choice(self.correction, "correction", func, CORRECTIONS)
        check_choice(self.corner_scheme, "corner_scheme", func, CORNER_SCHEMES)
        if not self.features:
            raise param_error("features", func, "a non-empty list of " + ", ".join(FEATURES), list(self.features))
        for f in self.features:
            check_choice(f, "features", func, FEATURES)
        if not self.networks:
            raise param_error("networks", func, "a non-empty list of 'trained', 'random' or 'hybrid:<l*>'",
                              list(self.networks))
        for n in self.networks:
            if n in ("trained", "random"):
                continue
            tail = str(n).split(":", 1)[1] if str(n).startswith("hybrid:") else ""
            if not (tail.isdigit() and int(tail) >= 1):
                raise param_error("networks", func, "'trained', 'random' or 'hybrid:<l*>' with an int l* >= 1", n)
        if len(set(self.networks)) != len(self.networks):
            raise param_error("networks", func, "a list without repeats", list(self.networks))
        return self


# ----------------------------------------------------------------------------- networks and data
def build_network(cfg: Fig3Config, kind: str, seed_w: int, memo: dict | None = None):
    """The trained network, a random one (weights from ``seed_w``) or a hybrid (first l* trained)."""
    memo = {} if memo is None else memo
    if "trained" not in memo:
        memo["trained"] = load_model(cfg.model, cfg.weights)
    if kind == "trained":
        return memo["trained"]
    key = ("random", seed_w)
    if key not in memo:
        memo[key] = load_model(cfg.model, "random", random_state=seed_w)
    if kind == "random":
        return memo[key]
    return hybrid_model(memo["trained"], memo[key], int(str(kind).split(":", 1)[1]))


def _realisation_units(base, layers, cfg, ctx, r: int, input_size: int) -> pd.DataFrame:
    """Units of realisation r, each layer drawn from its own named seed stream."""
    parts = [sample_units(base, [l], cfg.units, input_size=input_size, random_state=ctx.seed("units", r, l),
                          allow_fewer=True) for l in layers]
    return pd.concat(parts, ignore_index=True)


def feature_information(feature: str, feats: dict, acts: np.ndarray, labels, cfg: Fig3Config, seed: int):
    """Information of one feature for one layer's units, with the paper's selection rule.

    Returns ``(result, units)``: the :class:`~netphys.stats.InformationResult` and the column positions
    of the units it covers (all of them, or the selected ones for orientation and corner).
    """
    from ..stats.information import mutual_information
    from ..stats.selection import select_top, take_selected

    kw = dict(bins=cfg.bins, correction=cfg.correction, n_shuffles=cfg.n_shuffles, random_state=seed)
    all_units = np.arange(acts.shape[1])
    if feature in ("luminosity", "contrast"):
        return mutual_information(feats[feature], acts, **kw), all_units
    if feature == "category":
        return mutual_information(labels, acts, x_discrete=True, **kw), all_units
    if feature == "orientation":
        units, imgs = select_top(feats["xi"], cfg.orientation_units, cfg.orientation_images)
        x = take_selected(feats["theta"], units, imgs)
        return mutual_information(x, take_selected(acts, units, imgs), **kw), units
    if feature == "corner":
        from ..stats.corner import corner_bins, corner_coordinates

        units, imgs = select_top(feats["zeta"], cfg.corner_units, cfg.corner_images)
        xy = corner_coordinates(take_selected(feats["theta1"], units, imgs),
                                take_selected(feats["theta2"], units, imgs), scheme=cfg.corner_scheme)
        xb = cfg.corner_bins or corner_bins(len(imgs), bins=cfg.bins, scheme=cfg.corner_scheme)
        return mutual_information(xy, take_selected(acts, units, imgs), x_bins=xb, **kw), units
    raise param_error("feature", "feature_information", "one of " + ", ".join(FEATURES), feature)


def _piece_dataset(res, units: np.ndarray, table: pd.DataFrame) -> xr.Dataset:
    """Per-unit values of one (network, realisation, layer, feature) piece, labelled by unit."""
    n = len(units)
    null = getattr(res, "null", None)
    null_sd = getattr(res, "null_sd", None)
    sub = table.iloc[units]
    return xr.Dataset(
        {"information": ("unit", np.asarray(res.normalized, dtype=np.float64)),
         "mi_bits": ("unit", np.asarray(res.mi, dtype=np.float64)),
         "null": ("unit", np.full(n, np.nan) if null is None else np.asarray(null, dtype=np.float64)),
         "null_sd": ("unit", np.full(n, np.nan) if null_sd is None else np.asarray(null_sd, dtype=np.float64)),
         "constant": ("unit", np.asarray(res.x_constant | res.y_constant, dtype=np.int8))},
        coords={"unit_index": ("unit", np.asarray(units, dtype=np.int64)),
                "channel": ("unit", sub["channel"].to_numpy(np.int64)),
                "row": ("unit", sub["row"].to_numpy(np.int64)), "col": ("unit", sub["col"].to_numpy(np.int64))},
        attrs={"n_samples": int(res.n_samples), "warnings": list(getattr(res, "warnings", []) or [])})


def _realisation_job(job: dict) -> dict:
    """Compute the missing pieces of one realisation (module level, so executors can ship it).

    ``job``: cfg, r, seed_w, layers, positions, units (table), stimulus sources (subset), the missing
    ``(network, layer, feature)`` cells with their shuffle seeds, and (serial runs) a model memo.
    """
    import time

    from ..features.cache import BoxFeatureCache
    from ..rf.boxes import rf_boxes

    cfg, table, stim = job["cfg"], job["table"], job["stimuli"]
    memo = job.get("memo") or {}
    # receptive-field geometry is that of the architecture: any of the job's networks gives it
    base = job.get("base") or build_network(cfg, job["missing"][0][0], job["seed_w"], memo)
    missing = job["missing"]
    need_layers = sorted({l for _, l, _ in missing}, key=job["layers"].index)
    timings = {"features": 0.0, "record": 0.0, "information": 0.0}
    t0 = time.perf_counter()
    gray = stim.grayscale()
    box_cache = job.get("box_cache") or BoxFeatureCache()
    requests, boxes = [], {}
    for l in need_layers:
        boxes[l] = rf_boxes(base, table[table["layer"] == l], stim.size)
        wanted = {f for _, ll, f in missing if ll == l}
        requests.append((boxes[l], ("luminosity", "contrast")))
        spatial = tuple(f for f in ("orientation", "corner") if f in wanted)
        if spatial:
            requests.append((boxes[l], spatial))
    box_cache.prefetch(job["stim_key"], gray, requests, cfg.device)
    feats = {l: box_cache.get(boxes[l], ("luminosity", "contrast") + tuple(
        f for f in ("orientation", "corner") if any(ll == l and ff == f for _, ll, ff in missing)))
        for l in need_layers}
    del gray
    timings["features"] += time.perf_counter() - t0
    out = {}
    labels = stim.labels
    for net in dict.fromkeys(n for n, _, _ in missing):
        layers_net = [l for l in need_layers if any(n == net and ll == l for n, ll, _ in missing)]
        model = build_network(cfg, net, job["seed_w"], memo)
        t0 = time.perf_counter()
        rec = record(model, stim, units=table[table["layer"].isin(layers_net)], site=cfg.site,
                     batch_size=cfg.batch_size, device=cfg.device)
        timings["record"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        for l in layers_net:
            sel = rec.coords["layer"].values == l
            acts = rec.values[:, sel].astype(np.float64)
            ltab = table[table["layer"] == l].reset_index(drop=True)
            for n, ll, f in missing:
                if n == net and ll == l:
                    with warnings.catch_warnings():  # recorded in the piece, reported once by the runner
                        warnings.simplefilter("ignore", NetphysWarning)
                        res, units = feature_information(f, feats[l], acts, labels, cfg,
                                                         job["shuffle_seeds"][(n, l, f)])
                    out[(n, l, f)] = _piece_dataset(res, units, ltab)
        timings["information"] += time.perf_counter() - t0
    return {"pieces": out, "timings": timings}


def information_across_layers(cfg: Fig3Config, ctx) -> xr.Dataset:
    """The Figure-3 computation (also Fig. 4, C, D through ``networks``, ``site`` and ``model``).

    Every (network, realisation, layer, feature) cell is one cached piece whose key holds the config
    fields it reads, the identities of its network and images, its unit seed and the estimator versions.

    Returns
    -------
    xarray.Dataset
        ``information``, ``null``, ``null_band`` (2 SD of the layer value under shuffles), ``mi_bits``,
        ``n_constant`` with dims (network, realisation, layer, feature); NaN where a feature is not
        computed (orientation and corner in the first ``skip_first`` layers). Per unit:
        ``unit_information`` and ``unit_null`` (network, feature, unit) with unit coordinates
        ``realisation``, ``layer``, ``channel``, ``row``, ``col``.
    """
    from .. import features as features_module
    from ..stats import information as information_module

    memo: dict = {}
    base = load_model(cfg.model, cfg.weights) if any(n != "random" for n in cfg.networks) else None
    if base is not None:
        memo["trained"] = base
    else:
        base = load_model(cfg.model, "random", random_state=ctx.seed("weights", 0))
    ctx.model_identity(base, "base")
    infos = [resolve_layer(base, l, type(ctx.experiment).__name__) for l in (cfg.layers or default_layers(base))]
    layers = [li.alias for li in infos]
    stim_all = folder_or_demo(cfg.images, model_info(base).preprocess, on_error=cfg.on_error)
    ctx.stimuli_identity(stim_all, "images")
    n_img = min(cfg.n_images, len(stim_all))
    if n_img < cfg.n_images:
        ctx.warn(f"n_images={cfg.n_images} but the image set has {len(stim_all)} images; all are used")
    if "category" in cfg.features and len(np.unique(stim_all.labels[stim_all.labels >= 0])) < 2:
        raise param_error("images", ctx.experiment.name, "an image folder with at least 2 class sub-folders for "
                          "the 'category' feature", cfg.images, "point 'images' at the folder that holds one "
                          "sub-folder per class, or drop 'category' from 'features'")
    _check_samples(cfg, n_img, ctx)
    estimators = (information_module, features_module)
    shape = (len(cfg.networks), cfg.realisations, len(layers), len(cfg.features))
    arrays = {k: np.full(shape, np.nan) for k in ("information", "null", "null_band", "mi_bits")}
    nconst = np.zeros(shape, dtype=np.int64)
    unit_parts: dict = {}
    bar = ctx.progress(total=cfg.realisations, desc=ctx.experiment.name)
    from ..features.cache import BoxFeatureCache

    box_cache = BoxFeatureCache()
    jobs, plans = [], []
    for r in range(cfg.realisations):
        stim = stim_all.subsample(n=n_img, random_state=ctx.seed("images", r)) if n_img < len(stim_all) else stim_all
        stim_id = ctx.stimuli_identity(stim, f"images_r{r}")
        table = _realisation_units(base, layers, cfg, ctx, r, stim.size)
        seed_w = ctx.seed("weights", r)
        keys, missing, got, shuffle_seeds = {}, [], {}, {}
        for net in cfg.networks:
            net_id = ctx.model_identity(build_network(cfg, net, seed_w, memo)) if net != "trained" else \
                ctx.model_identity(base)
            for li, l in zip(infos, layers):
                for f in cfg.features:
                    if f in ("orientation", "corner") and li.depth <= cfg.skip_first:
                        continue
                    k = ctx.key("information", reads=_COMMON_READS + _FEATURE_READS[f], estimators=estimators,
                                network=net, model=net_id, stimuli=stim_id["sha256"], realisation=r, layer=l,
                                feature=f, units_seed=ctx.seed("units", r, l))
                    keys[(net, l, f)] = k
                    hit = ctx.lookup("information", k)
                    if hit is None:
                        missing.append((net, l, f))
                        shuffle_seeds[(net, l, f)] = ctx.seed("shuffle", net, r, l, f)
                    else:
                        got[(net, l, f)] = hit
        plans.append((r, table, keys, got))
        if missing:
            job = {"cfg": cfg, "r": r, "seed_w": seed_w, "layers": layers, "table": table, "stimuli": stim,
                   "stim_key": stim_id["sha256"], "missing": missing, "shuffle_seeds": shuffle_seeds}
            if ctx.executor is None:
                job.update(memo=memo, base=base, box_cache=box_cache)
            jobs.append(job)
    keys_of = {r: keys for r, _, keys, _ in plans}
    got_of = {r: got for r, _, _, got in plans}

    def _stored(job, res):
        for name, t in res["timings"].items():
            ctx.timings[name] = round(ctx.timings.get(name, 0.0) + t, 3)
        for cell, ds in res["pieces"].items():  # stored as each realisation finishes: a killed run resumes
            got_of[job["r"]][cell] = ctx.store("information", keys_of[job["r"]][cell], ds)

    if ctx.executor is None:
        for job in jobs:
            _stored(job, _realisation_job(job))
            bar.update(1)
    elif jobs:
        for job, res in zip(jobs, ctx.map(_realisation_job, jobs)):
            _stored(job, res)
    bar.close()
    piece_warnings: dict = {}
    n_cells = sum(len(keys) for _, _, keys, _ in plans)
    for r, table, keys, got in plans:
        for ni, net in enumerate(cfg.networks):
            for li_pos, l in enumerate(layers):
                for fi, f in enumerate(cfg.features):
                    ds = got.get((net, l, f))
                    if ds is None:
                        continue
                    v = ds["information"].values
                    arrays["information"][ni, r, li_pos, fi] = v.mean()
                    arrays["mi_bits"][ni, r, li_pos, fi] = ds["mi_bits"].values.mean()
                    arrays["null"][ni, r, li_pos, fi] = ds["null"].values.mean()
                    arrays["null_band"][ni, r, li_pos, fi] = 2 * np.sqrt(np.mean(ds["null_sd"].values ** 2) / len(v))
                    nconst[ni, r, li_pos, fi] = int(ds["constant"].values.sum())
                    for w in ds.attrs.get("warnings", []) or []:
                        piece_warnings.setdefault((f, str(w)), []).append(f"{net}/r{r}/{l}")
                    unit_parts[(net, f, r, l)] = ds
    for (f, w), cells in piece_warnings.items():
        ctx.warn(f"{f}: {w} (in {len(cells)} of {n_cells} cells, e.g. {cells[0]})")
    # the weights actually loaded: "random"/"hybrid" by construction, the base network's own kind otherwise
    loaded = {net: "random" if net == "random" else "hybrid" if str(net).startswith("hybrid:") else
              model_info(base).kind for net in cfg.networks}
    for net, kind in loaded.items():
        if net == "trained" and kind != "trained":
            ctx.warn(f"the network labelled 'trained' has {kind} weights (weights={cfg.weights!r}); its curve is "
                     "not that of a trained network")
    result = xr.Dataset(
        {k: (("network", "realisation", "layer", "feature"), v) for k, v in arrays.items()}
        | {"n_constant": (("network", "realisation", "layer", "feature"), nconst)},
        coords={"network": list(cfg.networks), "weights_kind": ("network", [loaded[n] for n in cfg.networks]),
                "realisation": np.arange(cfg.realisations), "layer": layers,
                "feature": list(cfg.features), "kind": ("layer", [li.kind for li in infos]),
                "depth": ("layer", [li.depth for li in infos])})
    result = result.merge(_unit_arrays(cfg, plans, layers, unit_parts))
    result.attrs.update({"model": cfg.model, "weights": cfg.weights, "n_images": int(n_img),
                         "correction": cfg.correction, "n_shuffles": cfg.n_shuffles})
    return result


def _unit_arrays(cfg, plans, layers, parts) -> xr.Dataset:
    """``unit_information``/``unit_null`` (network, feature, unit) over all (realisation, layer) units."""
    coords = {"realisation": [], "layer": [], "channel": [], "row": [], "col": []}
    offsets = {}
    n = 0
    for r, table, _, _ in plans:
        for l in layers:
            t = table[table["layer"] == l]
            offsets[(r, l)] = n
            n += len(t)
            coords["realisation"] += [r] * len(t)
            coords["layer"] += [l] * len(t)
            for c in ("channel", "row", "col"):
                coords[c] += t[c].tolist()
    shape = (len(cfg.networks), len(cfg.features), n)
    info, null = np.full(shape, np.nan, dtype=np.float32), np.full(shape, np.nan, dtype=np.float32)
    for (net, f, r, l), ds in parts.items():
        ni, fi = cfg.networks.index(net), cfg.features.index(f)
        idx = offsets[(r, l)] + ds["unit_index"].values
        info[ni, fi, idx] = ds["information"].values
        null[ni, fi, idx] = ds["null"].values
    return xr.Dataset({"unit_information": (("network", "feature", "unit"), info),
                       "unit_null": (("network", "feature", "unit"), null)},
                      coords={"unit_realisation": ("unit", np.asarray(coords["realisation"], dtype=np.int64)),
                              "unit_layer": ("unit", np.asarray(coords["layer"], dtype=str)),
                              "unit_channel": ("unit", np.asarray(coords["channel"], dtype=np.int64)),
                              "unit_row": ("unit", np.asarray(coords["row"], dtype=np.int64)),
                              "unit_col": ("unit", np.asarray(coords["col"], dtype=np.int64))})


def _check_samples(cfg: Fig3Config, n_img: int, ctx) -> None:
    """Warn (recorded in the result) when the images cannot fill the joint histogram."""
    cells = cfg.bins * cfg.bins
    if n_img < 5 * cells:
        ctx.warn(f"{n_img} images for {cfg.bins} x {cfg.bins} = {cells} joint bins (< 5 per cell): the plug-in "
                 "information is mostly bias at this size; compare with the shuffle null shown next to it")
    if "corner" in cfg.features and cfg.corner_bins is not None:
        from ..stats.corner import corner_bins

        n_corner = min(cfg.corner_images, n_img)
        rec = corner_bins(n_corner, bins=cfg.bins, scheme=cfg.corner_scheme)
        if cfg.corner_bins > rec:
            ctx.warn(f"corner: {n_corner} images per unit cannot fill {cfg.corner_bins} bins per coordinate "
                     f"(at most {rec} for {cfg.bins} activation bins, see docs/information.md); the estimate is "
                     "dominated by bias (compare with the null)")


def summary(result: xr.Dataset) -> pd.DataFrame:
    """Tidy table: network, layer, feature, mean and SD over realisations, and the shuffle null."""
    m = result["information"].mean("realisation")
    r = result.sizes["realisation"]
    s = result["information"].std("realisation", ddof=1) if r > 1 else xr.zeros_like(m)
    parts = {"mean": m, "sd": s}
    if "null" in result:
        parts["null"] = result["null"].mean("realisation")
        parts["null_band"] = result["null_band"].mean("realisation")
    df = xr.Dataset(parts).to_dataframe().reset_index()
    df["depth"] = df["layer"].map(dict(zip(result["layer"].values, result["depth"].values)))
    df["kind"] = df["layer"].map(dict(zip(result["layer"].values, result["kind"].values)))
    cols = ["network", "depth", "layer", "kind", "feature", "mean", "sd"] + \
        [c for c in ("null", "null_band") if c in df]
    return df[cols]


# ----------------------------------------------------------------------------- inset
def first_layer_kernel_means(model) -> np.ndarray:
    """Mean weight of each first-layer kernel (one value per (out, in) channel pair)."""
    from ..models.layers import layer_infos

    first = next(li for li in layer_infos(model) if li.kind == "conv")
    w = dict(model.named_modules())[first.module].weight.detach().cpu().numpy()
    return w.reshape(w.shape[0] * w.shape[1], -1).mean(axis=1)


def kernel_inset(cfg: Fig3Config, ctx) -> dict | None:
    """``{"trained": kernel means, "random": kernel means}`` for the Fig. 3A inset."""
    try:
        trained = load_model(cfg.model, cfg.weights)
        rand = load_model(cfg.model, "random", random_state=ctx.seed("weights", 0))
        return {"trained": first_layer_kernel_means(trained), "random": first_layer_kernel_means(rand)}
    except NetphysError as exc:  # pragma: no cover - reported, not fatal
        ctx.warn(f"no kernel inset: {exc}")
        return None


# ----------------------------------------------------------------------------- plots
FEATURE_TITLES = {"luminosity": "Luminosity", "contrast": "Contrast", "orientation": "Orientation",
                  "corner": "Corner", "category": "Category"}


def _network_colors(nets) -> dict:
    import matplotlib.pyplot as plt

    from ..plotting.style import RANDOM, TRAINED

    hyb = [n for n in nets if str(n).startswith("hybrid")]
    cols = plt.cm.Greens(np.linspace(0.45, 0.9, max(1, len(hyb))))
    out = {n: TRAINED if n == "trained" else RANDOM if n == "random" else cols[hyb.index(n)] for n in nets}
    return out


def _network_label(n) -> str:
    return f"hybrid l* = {str(n).split(':')[1]}" if str(n).startswith("hybrid") else str(n)


def _fig3_legend(ax, nets, colors, kinds, null_nets, ncols: int = 1, loc="upper left", **kw):
    """Legend explaining every mark of a Fig.-3-type panel: networks, null bands, conv/FC markers, FC band."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    from ..plotting.style import marker_handles

    hs, ls = [], []
    for n in nets:
        hs.append(Line2D([], [], color=colors[n], lw=1.0))
        ls.append(_network_label(n))
    for n in null_nets:
        hs.append(Patch(color=colors[n], alpha=0.2, lw=0))
        ls.append(f"{_network_label(n)} null ±2 SD")
    for h, l in marker_handles(kinds):
        hs.append(h)
        ls.append(l)
    return ax.legend(hs, ls, loc=loc, ncols=ncols, **kw)


def _draw_kernel_inset(ins, inset: dict, colors: dict) -> None:
    allv = np.concatenate([np.asarray(v) for v in inset.values()])
    bins_ = np.linspace(np.percentile(allv, 0.5), np.percentile(allv, 99.5), 30)
    for k, v in inset.items():
        # outlines: where the two overlap no third colour appears
        ins.hist(v, bins=bins_, color=colors.get(k, "0.5"), histtype="step", lw=1.0, density=True, label=k)
    ins.set_xlabel("mean conv1 kernel weight", labelpad=1)
    ins.set_yticks([])
    ins.spines[["top", "right", "left"]].set_visible(False)
    ins.xaxis.set_major_locator(__import__("matplotlib.ticker", fromlist=["MaxNLocator"]).MaxNLocator(3))


@paper_plot
def plot_fig3(result: xr.Dataset, *, inset: dict | None = None, axes=None, null: bool = True,
              layout: str = "double"):
    """Figure 3: normalised information per layer, one panel per feature, networks as curves.

    The shuffle null of each network is drawn as a band (mean null ± 2 SD of the layer value under
    shuffles) in the network's colour, so a curve inside its band is not above chance. A new figure
    gets one more panel slot than there are features, holding the legend (every mark explained) and the
    kernel-weight histogram, so neither hides data.

    Parameters
    ----------
    result : xarray.Dataset from the ``prune_distill.fig3`` experiment
    inset : dict, optional
        ``{"trained": kernel_means, "random": kernel_means}``: the Fig. 3A inset (histogram of the mean
        weight of each first-layer kernel), drawn as an inset of the luminosity panel.
    axes : sequence of matplotlib Axes, optional
        One Axes per feature (no legend slot is added).
    null : bool
        Draw the shuffle-null bands (default True).
    layout : {"double", "single"}
        Journal layout of a new figure: 7 in (3 panels per row) or 3.5 in (2 per row) wide.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from ..plotting.style import WIDTHS, layer_axis, paper_figure, plot_layer_curve

    feats = list(result["feature"].values)
    own = axes is None
    if own:
        ncols = min(3 if layout == "double" else 2, len(feats) + 1)
        nrows = int(np.ceil((len(feats) + 1) / ncols))
        height = (1.95 if layout == "double" else 1.75) * nrows + 0.1
        fig, grid = paper_figure(layout, height, nrows=nrows, ncols=ncols, squeeze=False,
                                 func="plot_fig3")
        grid = list(grid.ravel())
        axes, spare = grid[:len(feats)], grid[len(feats):]
        width_in = WIDTHS[layout] / ncols - 0.45
    else:
        fig, spare = axes[0].figure, []
        width_in = axes[0].get_position().width * fig.get_size_inches()[0]
    layers = list(result["layer"].values)
    kinds = list(result["kind"].values)
    nets = list(result["network"].values)
    colors = _network_colors(nets)
    x = np.arange(1, len(layers) + 1)
    null_nets = []
    for ax, feat in zip(axes, feats):
        for n in nets:
            v = result["information"].sel(network=n, feature=feat)
            if not np.isfinite(v.values).any():
                continue
            m = v.mean("realisation").values
            sd = v.std("realisation", ddof=1).values if v.sizes["realisation"] > 1 else None
            plot_layer_curve(ax, layers, kinds, m, sd, color=colors[n], label=_network_label(n))
            if null and "null" in result and np.isfinite(result["null"].sel(network=n, feature=feat)).any():
                nm = result["null"].sel(network=n, feature=feat).mean("realisation").values
                nb = result["null_band"].sel(network=n, feature=feat).mean("realisation").values
                nb = np.where(np.isfinite(nb), nb, 0.0)
                ax.fill_between(x, nm - nb, nm + nb, color=colors[n], alpha=0.2, lw=0)
                if n not in null_nets:
                    null_nets.append(n)
        layer_axis(ax, layers, kinds, width_in=width_in)
        ax.set_title(FEATURE_TITLES.get(feat, feat))
        vals = result["information"].sel(feature=feat).values
        if np.isfinite(vals).any():
            ax.set_ylim(bottom=min(0, float(np.nanmin(vals)) - 0.01))
    for i, ax in enumerate(axes):
        if not own or i % ncols == 0:
            ax.set_ylabel("normalised information $U^\\ell$")
    if own:
        for ax in axes[-ncols:]:
            ax.set_xlabel("layer")
        for ax in spare:
            ax.set_axis_off()
        leg_ax = spare[0]
        if inset is not None and "luminosity" in feats:
            # the Fig. 3A inset belongs to the luminosity panel but sits in the spare slot, under the
            # legend, where it hides no data (placed in the slot's coordinates, outside the layout)
            # (single column: below the legend, in the band the neighbour's layer names take)
            box = [0.1, 0.2, 0.85, 0.26] if layout == "double" else [0.12, -0.22, 0.8, 0.2]
            ins = axes[feats.index("luminosity")].inset_axes(box, transform=leg_ax.transAxes)
            ins.set_in_layout(False)
            _draw_kernel_inset(ins, inset, colors)
        _fig3_legend(leg_ax, nets, colors, kinds, null_nets, loc="upper left", borderaxespad=0.0,
                     ncols=2 if layout == "double" else 1, columnspacing=0.8,
                     labelspacing=0.5 if layout == "double" else 0.25)
        for ax in spare[1:]:
            ax.remove()
    elif inset is not None and "luminosity" in feats:
        ins = axes[feats.index("luminosity")].inset_axes([0.5, 0.55, 0.46, 0.3])
        _draw_kernel_inset(ins, inset, colors)
    return fig


def _caption(result) -> str:
    corr = result.attrs.get("correction", "pt")
    k = result.attrs.get("n_shuffles", 0)
    return (f"Mean normalised single-unit information per layer ({corr} correction), mean ± SD over "
            f"{result.sizes['realisation']} realisation(s) (new units, images and random weights). Shaded: the "
            f"same estimator after shuffling feature and activation ({k} shuffles; mean ± 2 SD of the layer "
            "value); a point inside its band is not above chance. Circles: conv layers; squares on the grey "
            "band: FC layers. Orientation and corner are not computed for the first two layers. Inset "
            "(legend panel): histogram of the mean weight of each first-layer kernel, trained vs random.")


# ----------------------------------------------------------------------------- experiments
class _InformationExperiment(Experiment):
    result_name = "information"

    def run(self, cfg, ctx):
        result = information_across_layers(cfg, ctx)
        ctx.extra["kernel_inset"] = None
        self._inset = kernel_inset(cfg, ctx) if "luminosity" in cfg.features else None
        return result

    def subtitle(self, result):
        return (f"model {result.attrs.get('model')} ({result.attrs.get('weights')}); {result.attrs.get('n_images')} "
                f"images; {result.sizes['realisation']} realisation(s)")

    def tables(self, result) -> dict:
        return {"information": summary(result)}

    def figures(self, result, ctx, layout: str = "double") -> list:
        return [("fig3", plot_fig3(result, inset=getattr(self, "_inset", None), layout=layout), _caption(result))]

    def sections(self, result, report, ctx) -> None:
        report.heading("Information per layer")
        _paper_figures(self, result, report, ctx)
        df = summary(result)
        report.heading("Numbers")
        report.table(df.pivot_table(index=["depth", "layer"], columns=["feature", "network"], values="mean"),
                     "layer value U (mean over realisations)")
        if "null" in df:
            report.table(df.pivot_table(index=["depth", "layer"], columns=["feature", "network"], values="null"),
                         "the same estimator on shuffled data (null)")


def _paper_figures(exp, result, report, ctx) -> None:
    """Embed each of ``exp.figures`` (double column) and save it in both layouts (``stem``, ``stem_single``)."""
    n = len(exp.figures(result, ctx, layout="double"))
    for i in range(n):
        stem, _, cap = exp.figures(result, ctx, layout="double")[i]
        report.paper_figure(lambda layout, i=i: exp.figures(result, ctx, layout=layout)[i][1], cap,
                            stem=None if ctx.out is None else ctx.out / stem)


class PaperFigureExperiment(Experiment):
    """Report body shared by Fig. 2, 4, 5, D and ID: every figure in both paper layouts, then the tables."""

    def sections(self, result, report, ctx) -> None:
        _paper_figures(self, result, report, ctx)
        for name, df in self.tables(result).items():
            report.table(df, name)


@register("prune_distill.fig3")
class Fig3(_InformationExperiment):
    """Figure 3: trained vs random network, five features, all layers."""

    Config = Fig3Config
    title = "Prune and distill, Figure 3: single-unit information across layers"
    intro = ("How much each unit's activation tells about a simple feature of the image patch it sees "
             "(luminosity, contrast, orientation, corner) or about the image's category, layer by layer, in a "
             "trained and a randomly initialised network; each point is the mean over units of the "
             "bias-corrected information normalised by the feature's entropy. The paper (trained VGG-16) "
             "found luminosity information falling with depth and collapsing after layer 1 relative to the "
             "random net, contrast peaking near conv 3 then falling below it, orientation and corner peaking "
             "near conv 5 while the random net stays flat, and category information rising only in the last "
             "conv and the FC layers.")


@dataclass(frozen=True)
class FigCConfig(Fig3Config):
    """Appendix C: the Figure-3 analysis on post-ReLU activations."""

    site: str = "post"


@register("prune_distill.figC")
class FigC(_InformationExperiment):
    """Appendix C: the Figure-3 analysis on post-ReLU activations."""

    Config = FigCConfig
    title = "Prune and distill, Figure C: after the ReLU"
    intro = ("The Figure-3 analysis on activations after the ReLU instead of before it. The paper (appendix C) "
             "found the same trends across layers: the reformatting of image information does not depend on "
             "where the unit is read out.")


@dataclass(frozen=True)
class Fig4Config(Fig3Config):
    """Figure 4: hybrid networks (layers <= l* trained, the rest random) for luminosity and contrast."""

    luminosity_l_stars: tuple[int, ...] = (1, 2, 3)
    contrast_l_stars: tuple[int, ...] = (3, 5, 7, 9, 11)

    def validate(self) -> "Fig4Config":
        super().validate()
        for name in ("luminosity_l_stars", "contrast_l_stars"):
            for s in getattr(self, name):
                check_int(s, name, "Fig4Config", min_value=1)
        return self


def _sub_config(cfg: Fig3Config, cls=Fig3Config, **over) -> Fig3Config:
    import dataclasses

    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{**{k: v for k, v in dataclasses.asdict(cfg).items() if k in names}, **over})


@register("prune_distill.fig4")
class Fig4(PaperFigureExperiment):
    """Figure 4: information of hybrid networks, one panel per feature."""

    Config = Fig4Config
    title = "Prune and distill, Figure 4: hybrid networks"
    result_name = "information"

    def run(self, cfg, ctx):
        parts = []
        for feat, stars in (("luminosity", cfg.luminosity_l_stars), ("contrast", cfg.contrast_l_stars)):
            nets = ("trained", "random") + tuple(f"hybrid:{int(s)}" for s in stars)
            sub = _sub_config(cfg, networks=nets, features=(feat,))
            res = information_across_layers(sub, ctx.with_config(sub))
            parts.append(res.drop_dims("unit"))
        order = list(dict.fromkeys(n for p in parts for n in p["network"].values))
        merged = xr.merge(parts, compat="no_conflicts", join="outer", combine_attrs="override")
        return merged.sel(network=order, feature=["luminosity", "contrast"])

    def tables(self, result):
        return {"information": summary(result)}

    intro = ("Information of hybrid networks whose first l* layers carry the trained weights and the rest "
             "random ones, next to the fully trained and fully random networks. The paper found that the loss "
             "of luminosity information (and the rise and fall of contrast information) follows the trained "
             "layers: a hybrid tracks the trained curve up to l* and the random one after it, so the "
             "reformatting is done by the learned weights, layer by layer.")

    def figures(self, result, ctx, layout: str = "double"):
        return [("fig4", plot_fig4(result, layout=layout),
                 "Normalised information of hybrid networks whose first l* layers are trained and the rest random "
                 "(greens, darker = larger l*), with the fully trained (blue) and random (red) networks; mean ± "
                 "SD over realisations; shaded: shuffle null ± 2 SD of the trained and random networks; circles: "
                 "conv layers; squares on the grey band: FC layers.")]



@paper_plot
def plot_fig4(result: xr.Dataset, *, layout: str = "double"):
    """Figure 4: one panel per feature with the hybrid networks, each with its legend beside (double) or
    below (single) it so that no legend hides data.

    Parameters
    ----------
    result : xarray.Dataset from ``prune_distill.fig4``
    layout : {"double", "single"}

    Returns
    -------
    matplotlib.figure.Figure
    """
    from ..plotting.style import paper_figure

    feats = list(result["feature"].values)
    if layout == "double":
        fig, grid = paper_figure(layout, 2.5, nrows=1, ncols=2 * len(feats), squeeze=False, func="plot_fig4",
                                 gridspec_kw={"width_ratios": [2.2, 1] * len(feats)})
        pairs = [(grid[0, 2 * i], grid[0, 2 * i + 1]) for i in range(len(feats))]
    else:
        fig, grid = paper_figure(layout, 2.9 * len(feats), nrows=2 * len(feats), ncols=1, squeeze=False,
                                 func="plot_fig4", gridspec_kw={"height_ratios": [2.4, 1] * len(feats)})
        pairs = [(grid[2 * i, 0], grid[2 * i + 1, 0]) for i in range(len(feats))]
    for (ax, lax), feat in zip(pairs, feats):
        sub = result.sel(feature=[feat]).dropna("network", how="all", subset=["information"])
        if "null" in sub:  # the null bands of the trained and random networks only (those the legend names)
            hyb = xr.DataArray([str(n).startswith("hybrid") for n in sub["network"].values], dims="network",
                               coords={"network": sub["network"]})
            sub = sub.assign(null=sub["null"].where(~hyb))
        plot_fig3(sub, axes=[ax], layout=layout)
        ax.set_title(f"{FEATURE_TITLES[feat]}: hybrid networks")
        ax.set_xlabel("layer")
        nets = list(sub["network"].values)
        colors = _network_colors(nets)
        null_nets = [n for n in nets if "null" in sub and np.isfinite(sub["null"].sel(network=n)).any()
                     and not str(n).startswith("hybrid")]
        lax.set_axis_off()
        _fig3_legend(lax, nets, colors, list(sub["kind"].values), null_nets,
                     ncols=1 if layout == "double" else 3, loc="center left" if layout == "double" else "center",
                     borderaxespad=0.0, columnspacing=0.8)
    return fig


@dataclass(frozen=True)
class FigDConfig(Fig3Config):
    """Appendix D: the Figure-3 analysis on other VGG depths (``models``: (name, weights) pairs)."""

    models: tuple[tuple[str, str], ...] = (("vgg11", "imagenet"), ("vgg19", "imagenet"))

    def validate(self) -> "FigDConfig":
        super().validate()
        if not self.models:
            raise param_error("models", "FigDConfig", "a non-empty list of [name, weights] pairs", list(self.models))
        for m in self.models:
            if not (isinstance(m, tuple) and len(m) == 2 and all(isinstance(v, str) for v in m)):
                raise param_error("models", "FigDConfig", "a list of [name, weights] pairs of strings", m)
        return self


@register("prune_distill.figD")
class FigD(PaperFigureExperiment):
    """Appendix D: the Figure-3 analysis on other VGG depths (trained vs random per model)."""

    Config = FigDConfig
    title = "Prune and distill, Figure D: other VGG depths"
    result_name = "information"

    def run(self, cfg, ctx):
        parts = []
        for name, weights in cfg.models:
            sub = _sub_config(cfg, model=name, weights=weights)
            res = information_across_layers(sub, ctx.with_config(sub))
            res = res.drop_dims("unit")
            parts.append(res.expand_dims(model=[name]).assign_coords(weights=("model", [weights])))
        return xr.concat(parts, dim="model", join="outer", coords="different", compat="equals",
                         combine_attrs="override")

    def tables(self, result):
        frames = []
        for m in result["model"].values:
            df = summary(result.sel(model=m).dropna("layer", how="all", subset=["information"]))
            df.insert(0, "model", m)
            frames.append(df)
        return {"information": pd.concat(frames, ignore_index=True)}

    intro = ("The Figure-3 analysis on VGG networks of other depths (VGG-11, VGG-19). The paper (appendix D) "
             "found the same profiles, stretched or compressed to the network's depth: the reformatting of "
             "image information is not specific to VGG-16.")

    def figures(self, result, ctx, layout: str = "double"):
        out = []
        for m in result["model"].values:
            sub = result.sel(model=m).dropna("layer", how="all", subset=["information"])
            out.append((f"fig3_{m}", plot_fig3(sub, layout=layout), f"{m}: trained vs random. " + _caption(sub)))
        return out



# ----------------------------------------------------------------------------- Python API
def run_fig3(cfg: Fig3Config | None = None, out=None, *, progress: bool = True) -> xr.Dataset:
    """Run Figure 3 and return its labelled result (``out``: cache and files; ``None``: in memory)."""
    from .runner import run_experiment

    return run_experiment(Fig3, cfg or Fig3Config(), out, progress=progress, report=False).result


def run(config=None, out=None, *, progress: bool = True) -> Path:
    """Run Figure 3 with its report (``netphys run prune_distill.fig3``); returns the report path."""
    from .runner import run_experiment

    return run_experiment(Fig3, config, out, progress=progress).report
