"""CAR filter pruning of every layer of a network: accuracy vs filters kept, compression at a 5 % drop, CARc.

Methods paragraph (the thesis's chapter 2 [1]_). Each listed layer is pruned on its own, the rest of the
network intact. The images (``data``, Imagenette-64's validation split by default; ``n_images`` a
stratified subsample) are split per class into two halves (:func:`~netphys.interventions.split_halves`):
the *selection* half chooses the filters, the *test* half is only reported. Greedy CAR recomputes every
remaining filter's classification accuracy reduction ``Acc(N) - Acc(N(-i, L))`` on the selection half at
each iteration and removes the least important one (ties: the smaller cross-entropy after removal); the
baselines remove filters in order of mean absolute incoming / outgoing weight, or at random
(``random_repeats`` seeded orders). Every path is run down to ``ceil(curve_keep_ratio * n)`` filters, so
that the accuracy-vs-filters-kept curve (thesis Fig. 2.3) goes past the stop criterion; the compression
ratio at the stop (thesis Table 2.1: at most a ``max_drop`` = 5 % relative drop of the selection
accuracy) is read off the path: the network before the first removal whose selection accuracy falls more
than ``max_drop`` x the intact accuracy below it (what :class:`~netphys.interventions.GreedyPruner` with
``max_drop`` would stop at). A path that reaches the curve's end first gives a lower bound (``censored``).
With ``finetune`` the CAR-pruned network at ``finetune_points`` points of the path (and at the stop) is
fine-tuned with the thesis's policy (learning rate 0 for the pruned layer, 1e-3 for the next layer, 1e-4
elsewhere, ``finetune_iterations`` SGD steps; the thesis: 500) on a separate training split
(``finetune_data``, Imagenette-64's training images) and scored again on both halves. CARc, the
class-wise CAR of the intact layer on the selection half, lists for the most important filters the classes
that depend most and least on each (thesis section 2.4). FLOPs and bytes of the pruned layer follow the
thesis's formulas (:func:`~netphys.interventions.layer_costs`; Table 2.1 counts the pruned layer's own
filters).

Resumability. Every piece is cached: the baseline paths per (layer, method[, repeat]), the fine-tuned
networks' scores per (layer, point), and the greedy CAR path per (layer, ``checkpoint_every`` steps): each
chunk is :meth:`GreedyPruner.fit` resumed (``removed=``) from the filters the chunks before it removed, and
its key holds that list, so a killed run restarts at the last finished chunk and a longer curve
(a smaller ``curve_keep_ratio``) reuses every earlier chunk. ``checkpoint_every=1`` checkpoints every step;
each chunk re-runs the network's prefix once over both halves (one forward pass), which for late layers
costs about as much as a CAR step, hence the default of 4.

EfficientNet-Lite0 (``car.efficientnet``): the last stages' layers, 1000-way ImageNet accuracy on
Imagenette-224's validation images (``class_index="imagenette"`` maps the WordNet-id folders to the ImageNet
outputs 0, 217, 482, 491, 497, 566, 569, 571, 574, 701).

References
----------
.. [1] R. Abbasi-Asl, PhD thesis, UC Berkeley (2018), chapter 2; Abbasi-Asl & Yu, "Structural compression
   of convolutional neural networks based on greedy filter pruning", arXiv:1705.07356 (2017).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from .._validation import NetphysError, check_choice, check_int, param_error
from .base import Experiment, torch_threads
from .registry import register

__all__ = ["CARConfig", "QuickCARConfig", "LayersCARConfig", "EfficientNetCARConfig", "CARPruning",
           "CARPruningQuick", "CARPruningLayers", "CARPruningEfficientNet", "VGG16_CONV", "compression_table",
           "carc_table", "curve_table", "stop_step", "chunked_car_path"]

#: the conv layers of netphys_vgg16 (every one pruned by the paper-sized run)
VGG16_CONV = ("conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3", "conv4_1",
              "conv4_2", "conv4_3", "conv5_1", "conv5_2", "conv5_3")
#: methods the experiment runs (the library's :data:`~netphys.interventions.pruning.METHODS`)
METHODS = ("car", "car_oneshot", "incoming", "outgoing", "random")
CLASS_INDEX = ("imagenette",)
_TOL = 1e-12


@dataclass(frozen=True)
class CARConfig:
    """CAR pruning of every conv layer of ``netphys_vgg16`` (a GPU-sized run; defaults: the thesis's).

    ``data`` / ``finetune_data``: image folders (ImageFolder layout), relative to the shared data folder
    (``netphys.neural.default_shared_root()``, e.g. ``../shared/data``) or absolute. ``n_images``: a
    stratified subsample of ``data`` (None: all 3,925), split into selection / test halves.
    ``methods``: of ``car``, ``car_oneshot``, ``incoming``, ``outgoing``, ``random``. ``max_drop``: the
    stop criterion of the compression table (relative drop of the selection accuracy); the paths run on
    to ``curve_keep_ratio`` of the filters. ``class_index``: ``"imagenette"`` maps Imagenette's WordNet
    folders to ImageNet outputs (1000-way networks). ``checkpoint_every``: CAR steps per cached piece.
    ``carc_layer``: the layer of the CARc heatmap (default: the last listed layer with a filter whose
    removal costs at least 3 selection images; else one costing any, CAR > 0; else the one with the
    largest |CARc|); ``carc_top`` filters listed
    per layer with ``carc_classes`` classes each. ``threads``: PyTorch threads while the run lasts.
    """

    model: str = "netphys_vgg16"
    weights: str = "default"
    layers: tuple[str, ...] = VGG16_CONV
    data: str = "imagenette-64/val"
    n_images: int | None = None
    class_index: str | None = None
    methods: tuple[str, ...] = ("car", "incoming", "outgoing", "random")
    random_repeats: int = 10
    max_drop: float = 0.05
    curve_keep_ratio: float = 0.25
    tie_break: str = "loss"
    checkpoint_every: int = 4
    finetune: bool = True
    finetune_data: str = "imagenette-64/train"
    finetune_images: int | None = None
    finetune_iterations: int = 500
    finetune_batch_size: int = 32
    finetune_points: int = 6
    carc_layer: str | None = None
    carc_top: int = 5
    carc_classes: int = 3
    batch_size: int = 256
    device: str | None = None
    threads: int | None = None
    random_state: int = 0

    def validate(self):
        f = type(self).__name__
        if not self.layers:
            raise param_error("layers", f, "a non-empty list of layers with filters", self.layers)
        if len(set(self.layers)) != len(self.layers):
            raise param_error("layers", f, "distinct layers", list(self.layers))
        if not self.methods:
            raise param_error("methods", f, f"a non-empty list of {list(METHODS)}", self.methods)
        for m in self.methods:
            if m not in METHODS:
                raise param_error("methods", f, "a list of " + ", ".join(map(repr, METHODS)), m)
        if len(set(self.methods)) != len(self.methods):
            raise param_error("methods", f, "distinct methods", list(self.methods))
        for name, lo in (("random_repeats", 1), ("checkpoint_every", 1), ("finetune_iterations", 1),
                         ("finetune_batch_size", 1), ("finetune_points", 1), ("carc_top", 1),
                         ("carc_classes", 1), ("batch_size", 1), ("random_state", 0)):
            check_int(getattr(self, name), name, f, min_value=lo)
        for name, lo in (("n_images", 4), ("finetune_images", 1), ("threads", 1)):
            if getattr(self, name) is not None:
                check_int(getattr(self, name), name, f, min_value=lo)
        if not (math.isfinite(self.curve_keep_ratio) and 0 < self.curve_keep_ratio <= 1):
            raise param_error("curve_keep_ratio", f, "a number in (0, 1] (filters kept at the end of the curve / "
                              "original filters)", self.curve_keep_ratio)
        if not (math.isfinite(self.max_drop) and 0 <= self.max_drop < 1):
            raise param_error("max_drop", f, "a number in [0, 1) (relative drop of the selection accuracy)",
                              self.max_drop)
        check_choice(self.tie_break, "tie_break", f, ("loss", "index"))
        if self.class_index is not None:
            check_choice(self.class_index, "class_index", f, CLASS_INDEX)
        if self.carc_layer is not None and self.carc_layer not in self.layers:
            raise param_error("carc_layer", f, "one of the layers " + ", ".join(self.layers), self.carc_layer)
        data_folder(self.data, "data", f)
        if self.finetune:
            data_folder(self.finetune_data, "finetune_data", f)
        sizes = _layer_sizes(self.model, self.weights, f)
        for layer in self.layers:
            if layer not in sizes:
                raise param_error("layers", f, f"layers with filters (Conv2d / Linear) of {self.model}", layer,
                                  "valid: " + ", ".join(list(sizes)[:20]) + (" ..." if len(sizes) > 20 else ""))
            if isinstance(sizes[layer], str):
                raise param_error("layers", f, f"layers with filters (Conv2d / Linear) of {self.model}", layer,
                                  sizes[layer])
        return self


@dataclass(frozen=True)
class QuickCARConfig(CARConfig):
    """A CPU-sized run (about 5 minutes on 2 shared cores, one thread): conv5_2 and conv5_3 of
    ``netphys_vgg16``, 300 images (150 + 150), the curves down to a quarter of the filters (the late layers
    are redundant: at half of them no method loses 5 %), 3 random orders, fine-tuning of 50 iterations
    (batch 16) on 400 training images at 2 points of the CAR path and at its stop. Earlier layers cost
    more per CAR step on a CPU (conv4_1: ~15x conv5_3) and are left to ``car.all``."""

    layers: tuple[str, ...] = ("conv5_2", "conv5_3")
    n_images: int | None = 300
    curve_keep_ratio: float = 0.25
    random_repeats: int = 3
    checkpoint_every: int = 32
    finetune_images: int | None = 400
    finetune_iterations: int = 50
    finetune_batch_size: int = 16
    finetune_points: int = 2
    threads: int | None = 1


@dataclass(frozen=True)
class LayersCARConfig(CARConfig):
    """Every conv layer of ``netphys_vgg16`` at a CPU size (40 minutes on one thread): 200 images
    (100 + 100, accuracy in steps of 1 %), the curves down to half of the filters (a later stop is
    reported as a lower bound, ``censored``), 3 random orders, no fine-tuning. The per-layer compression
    table of the thesis (Table 2.1) for a whole network on a CPU; ``car.all`` is the paper-sized run."""

    n_images: int | None = 200
    curve_keep_ratio: float = 0.5
    random_repeats: int = 3
    checkpoint_every: int = 8
    finetune: bool = False
    threads: int | None = 1


@dataclass(frozen=True)
class EfficientNetCARConfig(CARConfig):
    """EfficientNet-Lite0 (ImageNet weights): the last stages' layers, 1000-way accuracy on Imagenette-224's
    validation images (WordNet folders mapped to ImageNet outputs); no fine-tuning (no 224-px training split
    is shipped; set ``finetune_data`` to one)."""

    model: str = "efficientnet_lite0"
    weights: str = "imagenet"
    layers: tuple[str, ...] = ("block14_project", "block15_expand", "block15_project", "head")
    data: str = "imagenette-224-val/val"
    class_index: str | None = "imagenette"
    curve_keep_ratio: float = 0.5
    finetune: bool = False
    batch_size: int = 128


# ----------------------------------------------------------------------------------------------------------
# helpers

def data_folder(path: str, param: str, func: str) -> Path:
    """``path`` as an existing folder: absolute, relative to the working directory, or to the shared data."""
    if not isinstance(path, str) or not path:
        raise param_error(param, func, "an image folder (relative to the shared data folder or absolute)", path)
    p = Path(path).expanduser()
    if p.is_dir():
        return p
    if not p.is_absolute():
        from ..neural import default_shared_root

        root = default_shared_root()
        if root is not None and (root / p).is_dir():
            return root / p
        if root is None:
            raise param_error(param, func, "an image folder (relative to the shared data folder or absolute)",
                              path, "no shared data folder found: set NETPHYS_SHARED_DATA or pass an "
                              "absolute path")
        raise param_error(param, func, f"an image folder under {root} or an absolute path", path)
    raise param_error(param, func, "an existing image folder", path)


_SIZES: dict = {}


def _layer_sizes(model_name: str, weights: str, func: str) -> dict:
    """``{alias: n_filters}`` of the layers with filters of a model (``{alias: reason}`` for the others)."""
    key = (model_name, weights)
    if key not in _SIZES:
        from ..interventions.pruning import _resolve_target
        from ..models import load_model
        from ..models.layers import layer_infos

        try:
            model = load_model(model_name, weights)
        except NetphysError as exc:
            raise param_error("model", func, "a model netphys can load with these weights",
                              f"{model_name!r} with weights {weights!r}", str(exc)) from None
        out = {}
        for li in layer_infos(model):
            try:
                out[li.alias] = _resolve_target(model, li.alias, func).n
            except NetphysError as exc:
                out[li.alias] = str(exc).split("; ")[0].split(", got ")[0]
        _SIZES[key] = out
    return _SIZES[key]


def _class_index(cfg):
    if cfg.class_index == "imagenette":
        from ..models.efficientnet import IMAGENETTE_IMAGENET_INDEX

        return dict(IMAGENETTE_IMAGENET_INDEX)
    return None


def stop_step(selection_accuracy, max_drop: float) -> tuple[int, bool]:
    """``(step, censored)``: the last step before the first whose selection accuracy is more than
    ``max_drop`` x the intact (step 0) accuracy below it; ``censored`` when no step is (the path ended
    first, so the compression there is a lower bound). NaN steps (padding) end the path."""
    acc = np.asarray(selection_accuracy, dtype=float)
    acc = acc[:np.flatnonzero(np.isnan(acc))[0]] if np.isnan(acc).any() else acc
    s0 = acc[0]
    bad = np.flatnonzero(s0 - acc > max_drop * abs(s0) + _TOL)
    if bad.size:
        return int(bad[0] - 1), False
    return int(acc.size - 1), True


def chunked_car_path(ctx, model, layer: str, n: int, floor: int, sel, tst, *, class_index, tie_break: str,
                     batch_size: int, checkpoint_every: int, reads: tuple, key: dict, piece: str = "car_steps"):
    """The greedy CAR path of ``layer`` down to ``floor`` filters, cached in pieces of ``checkpoint_every``
    steps (each :meth:`GreedyPruner.fit` resumed from the filters the pieces before it removed, its key
    holding that list): a killed run restarts at the last finished piece. Returns ``(path, importance)``,
    the concatenated path and the CAR / CARc of the intact layer."""
    from ..interventions import pruning as pr_mod

    chunks, removed, kept, importance = [], [], n, None
    bar = ctx.progress(total=n - floor, desc=f"CAR {layer}")
    while True:
        end = max(floor, kept - checkpoint_every)

        def compute(start=tuple(removed), end=end):
            pr = pr_mod.GreedyPruner(model, layer, method="car", n_keep=end, tie_break=tie_break,
                                     class_index=class_index, batch_size=batch_size).fit(sel, tst, removed=list(start))
            ds = pr.path_
            if not start:  # CAR and CARc of the intact layer
                imp = pr.importance_.drop_vars("class_name")
                ds = ds.assign({f"intact_{v}": imp[v] for v in imp.data_vars})
                ds.attrs["intact_accuracy"] = pr.importance_.attrs["accuracy"]
            return ds

        ds = ctx.piece(piece, compute, reads=reads, estimators=(pr_mod,), layer=layer, removed=list(removed),
                       n_keep=end, **key)
        if not chunks:
            importance = xr.Dataset({v[len("intact_"):]: ds[v] for v in ds.data_vars if v.startswith("intact_")})
            importance = importance.assign_coords(class_name=ds["class_name"])
            ds = ds.drop_vars([v for v in ds.data_vars if v.startswith("intact_")])
            chunks.append(ds)
        else:
            chunks.append(ds.isel(step=slice(1, None)))
        new = [int(c) for c in ds["removed"].values[1:]]
        removed += new
        bar.update(len(new))
        kept = end
        if kept <= floor or not new:
            break
    bar.close()
    path = xr.concat(chunks, dim="step", data_vars="minimal", coords="minimal", compat="override",
                     join="override", combine_attrs="override") if len(chunks) > 1 else chunks[0]
    path = path.assign_coords(step=np.arange(path.sizes["step"]))
    path.attrs["n_chunks"] = len(chunks)
    return path, importance


def _curve_floor(n: int, ratio: float) -> int:
    return max(1, math.ceil(ratio * n - 1e-9))


# ----------------------------------------------------------------------------------------------------------
@register("car.all")
class CARPruning(Experiment):
    """Greedy CAR filter pruning of each layer vs weight-magnitude and random baselines (thesis ch. 2)."""

    Config = CARConfig
    title = "CAR filter pruning: accuracy vs filters kept and compression at a 5 % accuracy drop"
    intro = ("Structural compression of a CNN by greedy filter pruning (Abbasi-Asl & Yu 2017; the thesis's chapter "
             "2): each layer alone is pruned filter by filter, removing at every step the filter whose removal "
             "reduces the classification accuracy least (CAR, recomputed on the selection half of the images), and "
             "compared with removing the filters of smallest incoming or outgoing weight magnitude and at random. "
             "The thesis reports that CAR keeps the accuracy much longer than the baselines (higher compression "
             "ratio at a 5 % drop, Table 2.1), that fine-tuning raises it further, and that CARc ties filters to "
             "the classes that depend on them. Accuracy is reported on the other half of the images.")

    def run(self, cfg, ctx):
        with torch_threads(cfg.threads):
            return self._run(cfg, ctx)

    def _run(self, cfg, ctx):
        from ..interventions import pruning as pr_mod
        from ..interventions.pruning import split_halves
        from ..models import load_model
        from ..models.loading import model_info
        from ..stimuli import StimulusSet

        func = type(cfg).__name__
        with ctx.timer("load"):
            model = load_model(cfg.model, cfg.weights)
            if cfg.device:
                model = model.to(cfg.device)
            model.eval()
            ident = ctx.model_identity(model, "model")
            prep = model_info(model).preprocess
            images = StimulusSet.from_folder(data_folder(cfg.data, "data", func), preprocess=prep, n=cfg.n_images,
                                             random_state=ctx.seed("images"))
            sel, tst = split_halves(images, random_state=ctx.seed("halves"))
            sid = ctx.stimuli_identity(sel, "selection")
            tid = ctx.stimuli_identity(tst, "test")
            train = trid = None
            if cfg.finetune and ("car" in cfg.methods):
                train = StimulusSet.from_folder(data_folder(cfg.finetune_data, "finetune_data", func),
                                                preprocess=prep, n=cfg.finetune_images,
                                                random_state=ctx.seed("finetune_images"))
                trid = ctx.stimuli_identity(train, "finetune")
        ci = _class_index(cfg)
        common = dict(model=ident, selection=sid, test=tid)
        per_layer = {}
        for layer in ctx.progress(list(cfg.layers), desc="layers"):
            n = pr_mod._resolve_target(model, layer, func).n
            floor = _curve_floor(n, cfg.curve_keep_ratio)
            paths = {}
            importance = None
            for m in cfg.methods:
                if m == "car":
                    with ctx.timer("car"):
                        path, importance = self._car_path(model, layer, n, floor, sel, tst, ci, cfg, ctx, common)
                    paths[m] = [path]
                elif m == "random":
                    reps = []
                    for r in range(cfg.random_repeats):
                        seed = ctx.seed("random", layer, r)
                        with ctx.timer("baselines"):
                            reps.append(ctx.piece(
                                "car_baseline_path", lambda seed=seed, layer=layer, floor=floor: pr_mod.GreedyPruner(
                                    model, layer, method="random", n_keep=floor, class_index=ci,
                                    batch_size=cfg.batch_size, random_state=seed).fit(sel, tst).path_,
                                reads=("class_index",), estimators=(pr_mod,), layer=layer, method=m, n_keep=floor,
                                seed=seed, **common))
                    paths[m] = reps
                else:
                    with ctx.timer("baselines"):
                        paths[m] = [ctx.piece(
                            "car_baseline_path", lambda m=m, layer=layer, floor=floor: pr_mod.GreedyPruner(
                                model, layer, method=m, n_keep=floor, tie_break=cfg.tie_break, class_index=ci,
                                batch_size=cfg.batch_size).fit(sel, tst).path_,
                            reads=("class_index", "tie_break"), estimators=(pr_mod,), layer=layer, method=m,
                            n_keep=floor, **common)]
            if importance is None:  # CARc without the greedy CAR path
                with ctx.timer("car"):
                    importance = ctx.piece(
                        "car_importance", lambda layer=layer: pr_mod.car_importance(
                            model, layer, sel, class_index=ci, batch_size=cfg.batch_size),
                        reads=("class_index",), estimators=(pr_mod,), layer=layer, **common)
            ft = None
            if train is not None:
                with ctx.timer("finetune"):
                    ft = self._finetune(model, layer, paths["car"][0], sel, tst, train, ci, cfg, ctx,
                                        dict(common, finetune=trid))
            per_layer[layer] = (paths, importance, ft)
        return _assemble(per_layer, cfg, sel, tst)

    # --- the greedy CAR path, resumable per chunk of steps --------------------------------------------------
    def _car_path(self, model, layer, n, floor, sel, tst, ci, cfg, ctx, common):
        return chunked_car_path(ctx, model, layer, n, floor, sel, tst, class_index=ci, tie_break=cfg.tie_break,
                                batch_size=cfg.batch_size, checkpoint_every=cfg.checkpoint_every,
                                reads=("class_index", "tie_break"), key=common)

    # --- fine-tuning at points of the CAR path ---------------------------------------------------------------
    def _finetune(self, model, layer, path, sel, tst, train, ci, cfg, ctx, common):
        import copy

        from ..interventions import pruning as pr_mod

        S = path.sizes["step"]
        if S < 2:
            return []
        stop, _ = stop_step(path["selection_accuracy"].values, cfg.max_drop)
        pts = np.round(np.linspace(0, S - 1, cfg.finetune_points + 1)[1:]).astype(int)
        pts = np.unique(np.concatenate([pts, [stop] if stop > 0 else []]).astype(int))
        order = path["removed"].values
        out = []
        for s in pts:
            removed = [int(c) for c in order[1:s + 1]]
            seed = ctx.seed("finetune", layer, len(removed))

            def compute(removed=removed, seed=seed):
                net = copy.deepcopy(model)
                hist = pr_mod.finetune(net, {layer: removed}, train, iterations=cfg.finetune_iterations,
                                       batch_size=cfg.finetune_batch_size, class_index=ci, random_state=seed,
                                       device=cfg.device)
                row = {"n_kept": len(path["filter"]) - len(removed), "step": len(removed),
                       "final_loss": float(hist["loss"].values[-10:].mean()) if len(hist) else np.nan}
                for split, stim in (("selection", sel), ("test", tst)):
                    ev = pr_mod.car_importance(net, layer, stim, removed=removed, filters=[], class_index=ci,
                                               batch_size=cfg.batch_size)
                    row[f"{split}_accuracy"] = ev.attrs["accuracy"]
                    row[f"{split}_loss"] = ev.attrs["loss"]
                return xr.Dataset({k: ((), v) for k, v in row.items()})

            out.append(ctx.piece("car_finetune", compute,
                                 reads=("class_index", "finetune_iterations", "finetune_batch_size"),
                                 estimators=(pr_mod,), layer=layer, removed=removed, seed=seed, **common))
        return out

    # --- tables, figures, report -----------------------------------------------------------------------------
    def tables(self, result):
        return {"compression": compression_table(result), "carc_lists": carc_table(result),
                "accuracy_curves": curve_table(result)}

    def figure_specs(self, result):
        from ..plotting import pruning as P

        return P.figure_specs(result)

    def sections(self, result, report, ctx) -> None:
        for stem, make, cap in self.figure_specs(result):
            report.paper_figure(make, cap, stem=None if ctx.out is None else ctx.out / stem)
        captions = {
            "compression": (f"Thesis Table 2.1 layout: filters kept, compression ratio (original / kept filters), "
                            f"bytes and FLOPs (millions; the pruned layer's own, Table 2.1's convention) at the stop "
                            f"(a {100 * result.attrs['max_drop']:g} % relative drop of the selection accuracy), and "
                            "the accuracy there on both halves. Random: mean (sd) over repeats. 'censored': the path "
                            "reached the end of the curve first (a lower bound). 'car + fine-tuning': the largest "
                            "fine-tuned point of the path before the first one past the stop."),
            "carc_lists": ("CARc (thesis section 2.4): for the most important filters of each layer (largest CAR on the "
                           "selection half), the classes whose accuracy drops most (most dependent) and least when "
                           "the filter alone is removed."),
            "accuracy_curves": "Accuracy vs filters kept (random: mean and sd over repeats), the data of the first figure.",
        }
        for name, df in self.tables(result).items():
            if name == "accuracy_curves" and len(df) > 400:
                report.text(f"The accuracy curves ({len(df)} rows) are in accuracy_curves.csv.")
                continue
            report.table(df, captions.get(name, name))


@register("car.quick")
class CARPruningQuick(CARPruning):
    """Two late layers at a CPU size (:class:`QuickCARConfig`)."""

    Config = QuickCARConfig
    title = "CAR filter pruning (CPU-sized run): accuracy vs filters kept and compression at a 5 % drop"


@register("car.layers")
class CARPruningLayers(CARPruning):
    """Every conv layer of netphys_vgg16 at a CPU size (:class:`LayersCARConfig`)."""

    Config = LayersCARConfig
    title = "CAR filter pruning of every conv layer (CPU-sized run): compression at a 5 % drop per layer"


@register("car.efficientnet")
class CARPruningEfficientNet(CARPruning):
    """EfficientNet-Lite0's last stages, 1000-way accuracy on Imagenette-224 (:class:`EfficientNetCARConfig`)."""

    Config = EfficientNetCARConfig
    title = "CAR filter pruning of EfficientNet-Lite0's last stages (1000-way accuracy on Imagenette)"


# ----------------------------------------------------------------------------------------------------------
# assembly and tables

_PATH_VARS = ("selection_accuracy", "test_accuracy", "selection_loss", "test_loss", "importance")


def _assemble(per_layer: dict, cfg, sel, tst) -> xr.Dataset:
    layers = list(per_layer)
    methods = list(cfg.methods)
    R = cfg.random_repeats if "random" in methods else 1
    first = {l: next(iter(per_layer[l][0].values()))[0] for l in layers}
    n_f = np.array([first[l].sizes["filter"] for l in layers])
    S = max(max(p.sizes["step"] for ps in per_layer[l][0].values() for p in ps) for l in layers)
    F = int(n_f.max())
    classes = first[layers[0]]["class"].values
    class_names = first[layers[0]]["class_name"].values.astype(str)
    K = classes.size
    L, M = len(layers), len(methods)
    shape = (L, M, R, S)
    data = {v: np.full(shape, np.nan) for v in _PATH_VARS}
    removed = np.full(shape, -1, dtype=np.int64)
    n_kept = np.full((L, S), -1, dtype=np.int64)
    layer_flops = np.full((L, S), np.nan)
    layer_bytes = np.full((L, S), np.nan)
    net_flops = np.full((L, S), np.nan)
    car = np.full((L, F), np.nan)
    loss_inc = np.full((L, F), np.nan)
    carc = np.full((L, K, F), np.nan)
    P = max([len(per_layer[l][2] or []) for l in layers] + [1])
    ft = {k: np.full((L, P), np.nan) for k in ("selection_accuracy", "test_accuracy", "selection_loss",
                                                "test_loss", "final_loss")}
    ft_kept = np.full((L, P), -1, dtype=np.int64)
    modules, fast = [], []
    for li, l in enumerate(layers):
        paths, imp, fts = per_layer[l]
        f0 = first[l]
        modules.append(str(f0.attrs["module"]))
        fast.append(int(f0.attrs.get("fast_path", 0)))
        for mi, m in enumerate(methods):
            for r, p in enumerate(paths[m]):
                s = p.sizes["step"]
                for v in _PATH_VARS:
                    data[v][li, mi, r, :s] = p[v].values
                removed[li, mi, r, :s] = p["removed"].values
        longest = max((p for ps in paths.values() for p in ps), key=lambda p: p.sizes["step"])
        s = longest.sizes["step"]
        n_kept[li, :s] = longest["n_kept"].values
        fl = longest["flops"].transpose("step", "layer")
        by = longest["bytes"].transpose("step", "layer")
        layer_flops[li, :s] = fl.sel(layer=modules[-1]).values
        layer_bytes[li, :s] = by.sel(layer=modules[-1]).values
        net_flops[li, :s] = fl.sum("layer").values
        fi = imp["filter"].values.astype(int)
        car[li, fi] = imp["car"].values
        loss_inc[li, fi] = imp["loss_increase"].values
        carc[li][:, fi] = imp["carc"].transpose("class", "filter").values
        for j, d in enumerate(fts or []):
            for k, arr in ft.items():
                arr[li, j] = float(d[k].values)
            ft_kept[li, j] = int(d["n_kept"].values)
    # stop criterion read off the paths
    stop = np.full((L, M, R), -1, dtype=np.int64)
    censored = np.zeros((L, M, R), dtype=bool)
    for li in range(L):
        for mi in range(M):
            for r in range(R):
                acc = data["selection_accuracy"][li, mi, r]
                if np.isfinite(acc[0]):
                    stop[li, mi, r], censored[li, mi, r] = stop_step(acc, cfg.max_drop)
    stop_kept = np.where(stop >= 0, n_f[:, None, None] - stop, -1)
    ratio = np.where(stop >= 0, n_f[:, None, None] / np.maximum(stop_kept, 1), np.nan)
    ft_stop_kept = np.full(L, -1, dtype=np.int64)
    ft_censored = np.zeros(L, dtype=bool)
    for li in range(L):
        ok = ft_kept[li] >= 0
        if not ok.any():
            continue
        order = np.argsort(-ft_kept[li][ok])
        kk, acc = ft_kept[li][ok][order], ft["selection_accuracy"][li][ok][order]
        s0 = data["selection_accuracy"][li, 0, 0, 0]
        bad = np.flatnonzero(s0 - acc > cfg.max_drop * abs(s0) + _TOL)
        if bad.size == 0:
            ft_stop_kept[li], ft_censored[li] = kk[-1], True
        else:
            ft_stop_kept[li] = kk[bad[0] - 1] if bad[0] > 0 else n_f[li]
    ft_ratio = np.where(ft_stop_kept > 0, n_f / np.maximum(ft_stop_kept, 1), np.nan)
    carc_layer = cfg.carc_layer
    if carc_layer is None:
        # the deepest layer with an informative filter: one whose removal costs at least 3 selection images
        # (a single image is the accuracy's resolution), else at least one, else the largest |CARc|
        top = [np.nanmax(np.append(car[li], -np.inf)) for li in range(L)]
        strong = [l for li, l in enumerate(layers) if top[li] >= 3 / len(sel) - _TOL]
        informative = [l for li, l in enumerate(layers) if top[li] > _TOL]
        spread = [np.nanmax(np.append(np.abs(carc[li]).ravel(), -np.inf)) for li in range(L)]
        carc_layer = (strong or informative or [layers[int(np.argmax(spread))]])[-1]
    LMRS = ("layer", "method", "repeat", "step")
    out = xr.Dataset(
        {**{v: (LMRS, data[v]) for v in _PATH_VARS},
         "removed": (LMRS, removed),
         "n_filters": (("layer",), n_f.astype(np.int64)),
         "n_kept": (("layer", "step"), n_kept),
         "layer_flops": (("layer", "step"), layer_flops, {"units": "multiply-accumulates per image"}),
         "layer_bytes": (("layer", "step"), layer_bytes, {"units": "bytes of float32 weights"}),
         "network_flops": (("layer", "step"), net_flops, {"units": "multiply-accumulates per image"}),
         "intact_selection_accuracy": (("layer",), data["selection_accuracy"][:, 0, 0, 0]),
         "intact_test_accuracy": (("layer",), data["test_accuracy"][:, 0, 0, 0]),
         "stop_step": (("layer", "method", "repeat"), stop),
         "stop_n_kept": (("layer", "method", "repeat"), stop_kept),
         "compression_ratio": (("layer", "method", "repeat"), ratio),
         "censored": (("layer", "method", "repeat"), censored),
         "car": (("layer", "filter"), car),
         "loss_increase": (("layer", "filter"), loss_inc),
         "carc": (("layer", "class", "filter"), carc),
         "ft_n_kept": (("layer", "ft_point"), ft_kept),
         **{f"ft_{k}": (("layer", "ft_point"), v) for k, v in ft.items()},
         "ft_stop_n_kept": (("layer",), ft_stop_kept),
         "ft_compression_ratio": (("layer",), ft_ratio),
         "ft_censored": (("layer",), ft_censored)},
        coords={"layer": layers, "method": methods, "repeat": np.arange(R), "step": np.arange(S),
                "filter": np.arange(F), "class": classes, "class_name": ("class", class_names),
                "ft_point": np.arange(P), "module": ("layer", modules)})
    out.attrs.update({
        "model": cfg.model, "weights": cfg.weights, "data": cfg.data, "n_selection": len(sel), "n_test": len(tst),
        "max_drop": float(cfg.max_drop), "curve_keep_ratio": float(cfg.curve_keep_ratio),
        "random_repeats": int(cfg.random_repeats), "finetune": int(bool(cfg.finetune and "car" in methods)),
        "finetune_iterations": int(cfg.finetune_iterations), "finetune_data": cfg.finetune_data,
        "checkpoint_every": int(cfg.checkpoint_every), "fast_path": int(min(fast)),
        "carc_layer": carc_layer, "carc_top": int(cfg.carc_top),
        "carc_classes": int(cfg.carc_classes), "class_index": cfg.class_index or ""})
    return out


def _at(values, step):
    return float(values[step]) if step >= 0 else np.nan


def compression_table(result: xr.Dataset) -> pd.DataFrame:
    """Thesis Table 2.1 layout: per layer the original row, then each method (and CAR + fine-tuning) at
    the stop: filters kept, compression ratio, bytes and FLOPs (millions, the pruned layer's own), the
    accuracy on both halves, whether the path was censored. Random: mean (and sd) over repeats."""
    rows = []
    for li, l in enumerate(result["layer"].values):
        n = int(result["n_filters"].values[li])
        fl, by = result["layer_flops"].values[li], result["layer_bytes"].values[li]
        rows.append({"layer": str(l), "method": "original", "filters": float(n), "filters_sd": np.nan,
                     "compression_ratio": 1.0, "compression_ratio_sd": np.nan, "bytes_M": by[0] / 1e6,
                     "flops_M": fl[0] / 1e6, "selection_accuracy": float(result["intact_selection_accuracy"][li]),
                     "test_accuracy": float(result["intact_test_accuracy"][li]), "censored": False})
        for mi, m in enumerate(result["method"].values):
            steps = result["stop_step"].values[li, mi]
            ok = steps >= 0
            if not ok.any():
                continue
            steps = steps[ok]
            kept = n - steps
            ratio = result["compression_ratio"].values[li, mi][ok]
            sel = [_at(result["selection_accuracy"].values[li, mi, r], s) for r, s in zip(np.flatnonzero(ok), steps)]
            tst = [_at(result["test_accuracy"].values[li, mi, r], s) for r, s in zip(np.flatnonzero(ok), steps)]
            rows.append({"layer": str(l), "method": str(m), "filters": kept.mean(),
                         "filters_sd": kept.std(ddof=1) if kept.size > 1 else np.nan,
                         "compression_ratio": ratio.mean(),
                         "compression_ratio_sd": ratio.std(ddof=1) if ratio.size > 1 else np.nan,
                         "bytes_M": np.mean([by[s] for s in steps]) / 1e6,
                         "flops_M": np.mean([fl[s] for s in steps]) / 1e6,
                         "selection_accuracy": float(np.mean(sel)), "test_accuracy": float(np.mean(tst)),
                         "censored": bool(result["censored"].values[li, mi][ok].any())})
        k = int(result["ft_stop_n_kept"].values[li])
        if k > 0:
            pts = np.flatnonzero(result["ft_n_kept"].values[li] == k)
            sel_a = float(result["ft_selection_accuracy"].values[li, pts[0]]) if pts.size else \
                float(result["intact_selection_accuracy"][li])
            tst_a = float(result["ft_test_accuracy"].values[li, pts[0]]) if pts.size else \
                float(result["intact_test_accuracy"][li])
            rows.append({"layer": str(l), "method": "car + fine-tuning", "filters": float(k), "filters_sd": np.nan,
                         "compression_ratio": n / k, "compression_ratio_sd": np.nan,
                         "bytes_M": by[0] * k / n / 1e6, "flops_M": fl[0] * k / n / 1e6,
                         "selection_accuracy": sel_a, "test_accuracy": tst_a,
                         "censored": bool(result["ft_censored"].values[li])})
    return pd.DataFrame(rows)


def carc_table(result: xr.Dataset, top: int | None = None, n_classes: int | None = None) -> pd.DataFrame:
    """For the ``top`` filters of largest CAR of each layer: the ``n_classes`` classes most and least
    dependent on each (largest / smallest CARc; "most dependent" lists only classes that lose accuracy,
    CARc > 0), with the CARc range."""
    from ..interventions.pruning import class_dependence

    top = int(top or result.attrs.get("carc_top", 5))
    n_classes = int(n_classes or result.attrs.get("carc_classes", 3))
    rows = []
    for li, l in enumerate(result["layer"].values):
        car = result["car"].values[li]
        loss = result["loss_increase"].values[li]
        ok = np.flatnonzero(np.isfinite(car))
        order = ok[np.lexsort((ok, -loss[ok], -car[ok]))][:top]
        sub = xr.Dataset({"carc": (("class", "filter"), result["carc"].values[li][:, order])},
                         coords={"filter": order, "class": result["class"].values,
                                 "class_name": ("class", result["class_name"].values)})
        dep = class_dependence(sub, n=n_classes)
        names = [str(v) for v in result["class_name"].values]
        for rank, f in enumerate(order, 1):
            d = dep.loc[int(f)]
            col = result["carc"].values[li][:, f]
            losing = [c for c in d["most_dependent"] if col[names.index(c)] > 0]
            rows.append({"layer": str(l), "rank": rank, "filter": int(f), "car": float(car[f]),
                         "most_dependent": ", ".join(losing) or "(none: no class loses accuracy)",
                         "least_dependent": ", ".join(d["least_dependent"]),
                         "carc_max": float(d["carc_max"]), "carc_min": float(d["carc_min"])})
    return pd.DataFrame(rows)


def curve_table(result: xr.Dataset) -> pd.DataFrame:
    """Accuracy vs filters kept per layer and method (random: mean and sd over repeats), and the fine-tuned
    points (method ``car + fine-tuning``)."""
    rows = []
    for li, l in enumerate(result["layer"].values):
        kept = result["n_kept"].values[li]
        for mi, m in enumerate(result["method"].values):
            t = result["test_accuracy"].values[li, mi]
            s = result["selection_accuracy"].values[li, mi]
            for j in np.flatnonzero(np.isfinite(t).any(axis=0)):
                tv, sv = t[:, j][np.isfinite(t[:, j])], s[:, j][np.isfinite(s[:, j])]
                rows.append({"layer": str(l), "method": str(m), "n_kept": int(kept[j]),
                             "test_accuracy": tv.mean(), "test_accuracy_sd": tv.std(ddof=1) if tv.size > 1 else np.nan,
                             "selection_accuracy": sv.mean()})
        for j in np.flatnonzero(result["ft_n_kept"].values[li] >= 0):
            rows.append({"layer": str(l), "method": "car + fine-tuning",
                         "n_kept": int(result["ft_n_kept"].values[li, j]),
                         "test_accuracy": float(result["ft_test_accuracy"].values[li, j]), "test_accuracy_sd": np.nan,
                         "selection_accuracy": float(result["ft_selection_accuracy"].values[li, j])})
    return pd.DataFrame(rows)
