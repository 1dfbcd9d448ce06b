"""Preferred images of sampled units, by evolution (CMA-ES over an image space) and by DeepTune.

Methods paragraph: for each layer, ``units`` units are sampled (at the centre of the map for conv
layers); each unit's preferred image is evolved by CMA-ES over the codes of an image space
(``restarts`` independent searches of ``iterations`` generations, all kept, the best shown), following
the functional-segregation paper (CMA-ES over a generator's latent code, ~100 generations, 10 restarts),
and found by DeepTune's regularised gradient ascent (Lp of the mean-subtracted image and total
variation) from ``deeptune_restarts`` seeded starts. The stability of each set of images (pairwise
correlation across restarts) and their polar power spectra are reported next to the images.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr

from .._validation import check_choice, check_int, param_error
from .base import Experiment
from .registry import register

__all__ = ["PreferredImagesConfig", "PreferredImages"]


@dataclass(frozen=True)
class PreferredImagesConfig:
    """Preferred images of sampled units (defaults: the functional-segregation paper's CMA-ES settings).

    ``space``: ``fourier`` (default: decorrelated colour, ``freq_cut`` of Nyquist), ``pixel``,
    ``grayscale``, ``prior`` (the shipped 64-px DeePSiM-style prior), ``dcgan_faces``.
    ``unit``: ``"unit"`` (the centre unit of a conv map, or an FC feature) or ``"channel"`` (the channel
    mean). ``directions``: ``["max"]`` for preferred images, add ``"min"`` for non-preferred ones.
    """

    model: str = "netphys_vgg16"
    weights: str = "default"
    layers: tuple[str, ...] = ("conv2_1", "conv3_1", "conv4_1", "conv5_1", "fc7")
    units: int = 4
    unit: str = "unit"
    site: str = "post"
    space: str = "fourier"
    freq_cut: float | None = 0.5
    optimizer: str = "sep"
    iterations: int = 100
    restarts: int = 10
    popsize: int | None = None
    sigma0: float | None = None
    directions: tuple[str, ...] = ("max",)
    deeptune: bool = True
    deeptune_steps: int = 200
    deeptune_restarts: int = 4
    deeptune_lr: float = 0.05
    batch_size: int = 512
    device: str | None = None
    random_state: int = 0

    def validate(self):
        f = "PreferredImagesConfig"
        for name, lo in (("units", 1), ("iterations", 1), ("restarts", 1), ("deeptune_steps", 1),
                         ("deeptune_restarts", 1), ("batch_size", 1), ("random_state", 0)):
            check_int(getattr(self, name), name, f, min_value=lo)
        check_choice(self.unit, "unit", f, ("unit", "channel"))
        check_choice(self.site, "site", f, ("pre", "post"))
        from ..synthesis.evolve import OPTIMIZERS
        from ..synthesis.generators import SPACES

        check_choice(self.space, "space", f, SPACES)
        check_choice(self.optimizer, "optimizer", f, OPTIMIZERS)
        if not self.layers:
            raise param_error("layers", f, "a non-empty list of layers", self.layers)
        if not self.directions or any(d not in ("max", "min") for d in self.directions):
            raise param_error("directions", f, "a non-empty list of 'max' / 'min'", self.directions)
        if self.sigma0 is not None and not self.sigma0 > 0:
            raise param_error("sigma0", f, "a number > 0 or null (the space's default)", self.sigma0)
        if not self.deeptune_lr > 0:
            raise param_error("deeptune_lr", f, "a number > 0", self.deeptune_lr)
        return self


def _objective(model, layer, channels, cfg):
    from ..synthesis.objectives import ChannelMean, Unit

    if cfg.unit == "channel":
        return ChannelMean(model, layer, channels, site=cfg.site)
    return Unit(model, layer, channels, site=cfg.site)


def _space(cfg, size):
    from ..synthesis.generators import make_space

    opts = {"freq_cut": cfg.freq_cut} if cfg.space in ("fourier", "grayscale") else {}
    return make_space(cfg.space, size, **opts)


@register("synthesis.preferred_images")
class PreferredImages(Experiment):
    """Preferred (and non-preferred) images of sampled units of any model, by CMA-ES and DeepTune."""

    Config = PreferredImagesConfig
    title = "Preferred images of single units: evolution (CMA-ES) and gradient ascent (DeepTune)"
    intro = ("Each unit's preferred image found two ways: gradient-free evolution of an image space's codes by "
             "CMA-ES, as in closed-loop experiments with neurons (Ponce et al., 2019; the functional-segregation "
             "paper: ~100 generations, 10 restarts, the best shown, all kept), and DeepTune's regularised gradient "
             "ascent on the pixels (Lp norm of the mean-subtracted image, p = 6, and total variation). Early layers "
             "should prefer oriented edges and colour blobs at the unit's receptive field, later layers larger "
             "textured patterns; restart-to-restart correlation measures how unique the preferred image is.")

    def run(self, cfg, ctx):
        import torch

        from ..models import load_model
        from ..models.loading import model_info
        from ..recording import sample_units
        from ..synthesis import deeptune as dt_mod
        from ..synthesis import evolve as ev_mod
        from ..synthesis.deeptune import deeptune, stability
        from ..synthesis.evolve import evolve

        model = load_model(cfg.model, cfg.weights, random_state=ctx.seed("model"))
        if cfg.device:
            model = model.to(cfg.device)
        ident = ctx.model_identity(model, "model")
        size = model_info(model).input_size or 224
        space = _space(cfg, size)
        if cfg.device:
            space = space.to(cfg.device)
        table = pd.concat([sample_units(model, [l], cfg.units, input_size=size, random_state=ctx.seed("units", l),
                                        allow_fewer=True) for l in cfg.layers], ignore_index=True)
        out = {}
        torch_threads = torch.get_num_threads()
        for l in ctx.progress(list(cfg.layers), desc="preferred images"):
            channels = table.loc[table["layer"] == l, "channel"].to_numpy()
            obj = _objective(model, l, channels, cfg)
            for d in cfg.directions:
                def run_evolve(obj=obj, d=d, l=l):
                    with ctx.timer("evolve"):
                        ds = evolve(obj, space, optimizer=cfg.optimizer, iterations=cfg.iterations,
                                    restarts=cfg.restarts, popsize=cfg.popsize, sigma0=cfg.sigma0, direction=d,
                                    batch_size=cfg.batch_size, random_state=ctx.seed("evolve", l, d))
                    st = stability(ds)
                    return ds.assign(restart_similarity=st["restart_similarity"])

                out[("evolve", l, d)] = ctx.piece(
                    "evolve_layer", run_evolve,
                    reads=("unit", "site", "space", "freq_cut", "optimizer", "iterations", "restarts", "popsize",
                           "sigma0", "batch_size"),
                    estimators=(ev_mod,), model=ident, layer=l, direction=d, channels=channels.tolist(),
                    seed=ctx.seed("evolve", l, d))
                if cfg.deeptune:
                    def run_deeptune(obj=obj, d=d, l=l):
                        with ctx.timer("deeptune"):
                            ds = deeptune(obj, image_size=size, n_restarts=cfg.deeptune_restarts,
                                          steps=cfg.deeptune_steps, lr=cfg.deeptune_lr, direction=d,
                                          random_state=ctx.seed("deeptune", l, d))
                        st = stability(ds)
                        return ds.assign(restart_similarity=st["restart_similarity"])

                    out[("deeptune", l, d)] = ctx.piece(
                        "deeptune_layer", run_deeptune,
                        reads=("unit", "site", "deeptune_steps", "deeptune_restarts", "deeptune_lr"),
                        estimators=(dt_mod,), model=ident, layer=l, direction=d, channels=channels.tolist(),
                        seed=ctx.seed("deeptune", l, d))
        torch.set_num_threads(torch_threads)
        result = _assemble(out, table, cfg, space)
        if cfg.space == "prior":  # what the prior itself can express: reconstructions and samples
            from ..synthesis import prior as prior_mod

            check = ctx.piece("prior_check", lambda: prior_check(space, random_state=ctx.seed("prior_check")),
                              estimators=(prior_mod,), prior=space.describe(), seed=ctx.seed("prior_check"))
            result = result.merge(check)
            result.attrs.update({f"prior_{k}": v for k, v in check.attrs.items()})
        return result

    def tables(self, result):
        rows = []
        for m in result["method"].values:
            for d in result["direction"].values:
                sub = result.sel({"method": m, "direction": d})
                for u in range(result.sizes["unit"]):
                    rows.append({"method": str(m), "direction": str(d), "layer": str(result["layer"].values[u]),
                                 "unit": str(result["unit_name"].values[u]),
                                 "best_score": float(sub["best_of_restarts"].values[u]),
                                 "restart_similarity": float(sub["restart_similarity"].values[u])})
        return {"preferred_images": pd.DataFrame(rows)}

    def figure_specs(self, result):
        """``(stem, make(layout) -> Figure, caption)`` for every figure, drawn only when asked for."""
        from ..plotting.synthesis import plot_image_grid, plot_restarts, plot_score_traces

        specs = []
        for m in result["method"].values:
            for d in result["direction"].values:
                for layer in dict.fromkeys(result["layer"].values):
                    ds = layer_view(result, str(m), str(layer), str(d))
                    what = "preferred" if d == "max" else "non-preferred"
                    how = (f"CMA-ES ({result.attrs['optimizer']}, {result.attrs['iterations']} generations) over the "
                           f"{result.attrs['space']} space" if m == "evolve"
                           else f"DeepTune ({result.attrs['deeptune_steps']} steps)")
                    stem = f"{m}_{layer}_{d}".replace(".", "_").replace(":", "_")
                    specs.append((f"{stem}_best", lambda layout, ds=ds: plot_image_grid(ds, layout=layout),
                                  f"{layer}: {what} image of each unit by {how} (best of {ds.sizes['restart']} "
                                  "restarts; its score below the unit)."))
                    specs.append((f"{stem}_restarts", lambda layout, ds=ds: plot_restarts(ds, layout=layout),
                                  f"{layer}, {how}: every restart's image (rows: units; outlined: the best); mean "
                                  f"restart-to-restart correlation {float(ds['restart_similarity'].mean()):.2f}."))
                    specs.append((f"{stem}_traces", lambda layout, ds=ds: plot_score_traces(ds, layout=layout),
                                  f"{layer}, {how}: best score so far (mean over restarts; band: min to max)."))
        if "prior_original" in result:
            from ..plotting.synthesis import plot_prior_check

            a = result.attrs
            specs.insert(0, ("prior_check", lambda layout: plot_prior_check(
                result["prior_original"].values, result["prior_reconstruction"].values, result["prior_sample"].values,
                pixel_corr=a.get("prior_pixel_corr"), baseline_pixel_corr=a.get("prior_baseline_pixel_corr"),
                layout=layout),
                "The image space: the shipped DeePSiM-style prior G, trained (pixel loss) to invert the fc6 code E of "
                f"the default network; its images are blurred colour layouts, not sharp objects. (a) held-out demo images x; (b) G(E(x)) (median pixel correlation with x over "
                f"{a.get('prior_n')} images {a.get('prior_pixel_corr', float('nan')):.2f}, against "
                f"{a.get('prior_baseline_pixel_corr', float('nan')):.2f} for the mean training image); (c) samples "
                "G(z) from the Gaussian of real codes that evolution starts from."))
        return specs


def _assemble(out: dict, table: pd.DataFrame, cfg, space) -> xr.Dataset:
    """One Dataset: dims method, direction, unit (all layers' units), restart (padded), channel, y, x."""
    methods = ["evolve"] + (["deeptune"] if cfg.deeptune else [])
    dirs = list(cfg.directions)
    layers = list(cfg.layers)
    n_u = len(table)
    n_r = max(cfg.restarts, cfg.deeptune_restarts if cfg.deeptune else 1)
    first = next(iter(out.values()))
    c, h, w = (first.sizes[k] for k in ("channel", "y", "x"))
    shape = (len(methods), len(dirs), n_u)
    images = np.zeros(shape + (n_r, c, h, w), np.uint8)
    best_image = np.zeros(shape + (c, h, w), np.float32)
    score = np.full(shape + (n_r,), np.nan)
    best_of = np.full(shape, np.nan)
    best_r = np.zeros(shape, np.int64)
    sim = np.full(shape, np.nan)
    n_gen = cfg.iterations
    ev_trace = np.full((len(dirs), n_u, cfg.restarts, n_gen), np.nan)
    dt_trace, dt_steps = None, None
    names = np.empty(n_u, dtype=object)
    for (m, l, d), ds in out.items():
        mi, di = methods.index(m), dirs.index(d)
        rows = np.flatnonzero(table["layer"].to_numpy() == l)
        names[rows] = ds["condition_name"].values
        r = ds.sizes["restart"]
        img = ds["images"].transpose("condition", "restart", "channel", "y", "x").values
        images[mi, di, rows, :r] = np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)
        best_image[mi, di, rows] = ds["best_image"].values
        sc = (ds["best_score"] if m == "evolve" else ds["final_score"]).transpose("condition", "restart").values
        score[mi, di, rows, :r] = sc
        best_of[mi, di, rows] = sc.max(1) if d == "max" else sc.min(1)
        best_r[mi, di, rows] = ds["best_restart"].values
        sim[mi, di, rows] = ds["restart_similarity"].values
        tr = ds["score"].transpose("condition", "restart", "iteration").values
        if m == "evolve":
            ev_trace[di, rows] = tr
        else:
            if dt_trace is None:
                dt_steps = ds["iteration"].values
                dt_trace = np.full((len(dirs), n_u, cfg.deeptune_restarts, len(dt_steps)), np.nan)
            dt_trace[di, rows] = tr
    dims = ("method", "direction", "unit")
    data = {
        "images": (dims + ("restart", "channel", "y", "x"), images, {"scale": "uint8: value / 255 in [0, 1]"}),
        "best_image": (dims + ("channel", "y", "x"), best_image),
        "score": (dims + ("restart",), score),
        "best_of_restarts": (dims, best_of),
        "best_restart": (dims, best_r),
        "restart_similarity": (dims, sim),
        "evolve_trace": (("direction", "unit", "evolve_restart", "generation"), ev_trace),
    }
    coords = {"method": methods, "direction": dirs, "unit": np.arange(n_u), "restart": np.arange(n_r),
              "layer": ("unit", table["layer"].to_numpy().astype(str)),
              "channel_index": ("unit", table["channel"].to_numpy()),
              "unit_name": ("unit", names.astype(str)), "channel": np.arange(c), "y": np.arange(h), "x": np.arange(w),
              "generation": np.arange(n_gen), "evolve_restart": np.arange(cfg.restarts)}
    if dt_trace is not None:
        data["deeptune_trace"] = (("direction", "unit", "deeptune_restart", "step"), dt_trace)
        coords.update(step=dt_steps, deeptune_restart=np.arange(cfg.deeptune_restarts))
    attrs = {"model": cfg.model, "weights": cfg.weights, "space": space.name, "space_settings": str(space.describe()),
             "optimizer": cfg.optimizer, "iterations": cfg.iterations, "restarts": cfg.restarts,
             "deeptune_steps": cfg.deeptune_steps, "deeptune_restarts": cfg.deeptune_restarts}
    return xr.Dataset(data, coords=coords, attrs=attrs)


def prior_check(prior, *, n: int = 40, n_show: int = 8, random_state=0) -> xr.Dataset:
    """Reconstructions of ``n`` shipped demo images by ``prior`` and ``n_show`` samples from its codes.

    Returns a Dataset with ``prior_original``, ``prior_reconstruction`` (``n_show`` of the ``n`` images,
    spread over the classes) and ``prior_sample`` (dims ``prior_image, channel, prior_y, prior_x``), and the
    median pixel correlations (reconstruction vs original, mean image vs original) in attrs.
    """
    import torch

    from ..stimuli import demo_stimuli
    from ..synthesis.prior import reconstruction_scores

    st = demo_stimuli()
    idx = np.linspace(0, len(st) - 1, n).round().astype(int)
    x = torch.from_numpy(np.ascontiguousarray(st.load_images(idx))).permute(0, 3, 1, 2)
    sc = reconstruction_scores(prior, x)
    show = np.linspace(0, n - 1, n_show).round().astype(int)
    with torch.no_grad():
        samples = prior(prior.initial_codes(n_show, random_state=random_state)).cpu().numpy()
    dims = ("prior_image", "channel", "prior_y", "prior_x")
    return xr.Dataset(
        {"prior_original": (dims, x[show].float().numpy() / 255.0),
         "prior_reconstruction": (dims, sc["reconstructions"][show].numpy()),
         "prior_sample": (dims, samples)},
        attrs={"pixel_corr": sc["pixel_corr"], "baseline_pixel_corr": sc["baseline_pixel_corr"], "n": int(n),
               "code_corr": sc["feature_corr"]["code"]})


def layer_view(result: xr.Dataset, method: str, layer: str, direction: str) -> xr.Dataset:
    """The units of one layer as an evolve/deeptune-style Dataset (dims restart, condition, ...) for plots."""
    sub = result.sel({"method": method, "direction": direction}).isel(unit=result["layer"].values == layer)
    n_r = result.attrs["restarts"] if method == "evolve" else result.attrs["deeptune_restarts"]
    sub = sub.isel(restart=slice(0, n_r))
    if method == "evolve":
        trace = sub["evolve_trace"].rename(evolve_restart="restart", generation="iteration")
    else:
        trace = sub["deeptune_trace"].rename(deeptune_restart="restart", step="iteration")
    ds = xr.Dataset({
        "images": (sub["images"].astype(np.float32) / 255.0).transpose("restart", "unit", "channel", "y", "x"),
        "best_image": sub["best_image"],
        "best_score": sub["score"].transpose("restart", "unit"),
        "best_restart": sub["best_restart"],
        "restart_similarity": sub["restart_similarity"],
        "score": trace.transpose("restart", "unit", "iteration"),
    }).rename(unit="condition")
    ds = ds.assign_coords(condition_name=("condition", sub["unit_name"].values))
    ds.attrs.update(direction=direction, method=method)
    return ds
