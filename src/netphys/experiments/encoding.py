"""Encoding models of Cowley V4 neurons (D3), RAR compression of a neuron model (D2), DeepTune on them (D4).

Methods paragraph (the thesis's chapters 3 and 4 [1]_).

*Encoding models.* For every session, every listed (network, layer) -- ``"network:layer"``, or
``"network:layer@G"`` for a layer average-pooled to ``G x G`` -- and the V1-like Gabor-wavelet baseline
(:class:`~netphys.readout.gabor.GaborBank`), a linear model per neuron (:class:`~netphys.readout.encoding.
EncodingModel`: ridge, optionally lasso; the penalty per neuron by ``cv``-fold CV on the training
stimuli) maps the layer's rectified features of each image to the neuron's repeat-averaged spike
count. Scores on the held-out ``test_size`` of the images: Pearson r, and, for sessions with single
trials (210325), the noise-corrected r (r / sqrt(explainable variance of the held-out repeat means))
and the explainable variance. For the *best layer* (the network layer with the largest median
corrected r -- raw r without trials -- of the analysis session) the weight maps (sum over channels of
squared weights per location) and filter importances (sum over locations) are kept.

*RAR (D2).* For the ``rar_neurons`` neurons of largest held-out r in the best layer, one greedy RAR
path per neuron (the thesis prunes per neuron): the images are split 60/20/20 into fit / selection /
test (:func:`~netphys.readout.ridge_dual.three_way_split`); the ridge penalty is chosen by 5-fold CV on
the fit split with every filter and held fixed; at every step the filter whose removal keeps the
selection r highest is removed (exact dual-form refits, :func:`~netphys.readout.ridge_dual.rar_path`).
The path runs on to ``rar_curve_keep_ratio`` of the filters; the compression ratio is read off it at
``max_drop`` (5 %) relative drop of the selection r (filters / filters kept at the last step before the
first step past the drop), and the test r along the path is reported.

*DeepTune (D4).* For the ``deeptune_neurons`` neurons of largest r in the best layer, preferred
(``max``) and non-preferred (``min``) images of each neuron model (every network layer of
``deeptune_models`` x estimator: :class:`~netphys.synthesis.objectives.NeuralModel` with the fitted
linear model; pooled layers through the same average pooling), the consensus image across the models
(``consensus="mean_grad"``), and :func:`~netphys.synthesis.deeptune.stability`: restart-to-restart
correlation, correlation between models and with the consensus, polar power spectra. Chapter-4 claim:
the RAR-compressed model of the neuron (the best layer's encoding model refitted on the filters kept at
the 5 % stop: the removed filters' features zeroed) gives an image close to the uncompressed consensus;
its correlation with the consensus is compared with the uncompressed models' own restart-to-restart
correlation. CAR-compressed networks are not included (CAR needs classification data and is run by
``car.*``).

Resumability: every piece is cached: the encoding fit per (session, network, layer, estimator), the
RAR path per (session, layer, neuron), each DeepTune run per (neuron, model, direction), the consensus
and the compressed model's run per (neuron, direction).

References
----------
.. [1] R. Abbasi-Asl, "Structural compression of convolutional neural networks with applications in
   interpretability" (PhD thesis, UC Berkeley, 2018), chapters 3 and 4.
"""
from __future__ import annotations

import hashlib
import math
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr

from .._validation import check_choice, check_int, param_error
from .base import Experiment, torch_threads
from .registry import register

__all__ = ["EncodingV4Config", "EncodingAllConfig", "EncodingV4", "EncodingAll", "parse_model_spec",
           "encoding_summary", "neuron_table", "rar_table", "car_table", "deeptune_table", "is_summary_model"]

GABOR = "gabor"
ESTIMATORS = ("ridge", "lasso")
COWLEY_SESSIONS = ("190923", "190925", "190927", "190928", "190929", "201025", "210224", "210225", "210305",
                   "210322", "210325", "210621")


@dataclass(frozen=True)
class EncodingV4Config:
    """Encoding models of Cowley V4 (a CPU-sized default, a few minutes on one thread).

    ``sessions``: Cowley V4 session ids (single trials, hence noise-corrected r, exist for 210325).
    ``models``: ``"network:layer"`` or ``"network:layer@G"`` (average-pooled to ``G x G``); ``gabor``:
    add the Gabor-wavelet baseline. ``estimators``: of ``ridge``, ``lasso`` (lasso: ~10 s per neuron and
    layer). ``cv``, ``test_size``: the EncodingModel's CV folds and held-out fraction. ``n_neurons``:
    only the first neurons of each session (None: all). ``analysis_session``: the session of the best
    layer, RAR and DeepTune (default the first listed). ``rar_neurons``: neurons with a RAR path
    (0: none); ``rar_fractions``: fit / selection / test; ``max_drop``: the stop (relative drop of the
    selection r); ``rar_curve_keep_ratio``: the path runs to this fraction of the filters.
    ``deeptune_neurons`` (0: none), ``deeptune_models`` (default: every network entry of ``models``),
    ``deeptune_steps``, ``deeptune_restarts``, ``deeptune_size`` (pixels), ``deeptune_lr``;
    ``deeptune_compressed``: the RAR-compressed model's images (needs the neuron to have a RAR path).
    ``car_compression``: fractions of the best layer's filters removed by CAR (classification accuracy of
    the network, thesis chapter 4; ``()``: none); ``car_method``: ``car`` (greedy, recomputed each step)
    or ``car_oneshot`` (ranked once; the CPU default); ``car_data``: labelled images the CAR is computed
    on (None: Imagenette-64 val for ``netphys_vgg16``, Imagenette-224 val with the 1000-way outputs for
    the EfficientNet-Lite models; other networks have no classification task here and are skipped unless
    it is set), ``car_images``: a stratified subsample split into selection / test halves (None: all);
    ``deeptune_car``: DeepTune images of the CAR-compressed models too.
    ``threads``: PyTorch threads while the run lasts.
    """

    sessions: tuple[str, ...] = ("210325",)
    models: tuple[str, ...] = ("netphys_vgg16:conv2_2", "netphys_vgg16:conv3_1", "netphys_vgg16:conv4_1",
                               "netphys_vgg16:conv5_1")
    gabor: bool = True
    estimators: tuple[str, ...] = ("ridge",)
    cv: int = 5
    test_size: float = 0.2
    n_neurons: int | None = None
    analysis_session: str | None = None
    rar_neurons: int = 3
    rar_fractions: tuple[float, ...] = (0.6, 0.2, 0.2)
    max_drop: float = 0.05
    rar_curve_keep_ratio: float = 0.05
    deeptune_neurons: int = 2
    deeptune_models: tuple[str, ...] | None = None
    deeptune_steps: int = 100
    deeptune_restarts: int = 3
    deeptune_size: int = 64
    deeptune_lr: float = 0.01
    deeptune_compressed: bool = True
    car_compression: tuple[float, ...] = (0.5, 0.7, 0.9)
    car_method: str = "car_oneshot"
    car_data: str | None = None
    car_images: int | None = 200
    deeptune_car: bool = True
    batch_size: int = 64
    device: str | None = None
    threads: int | None = 1
    random_state: int = 0

    def validate(self):
        f = type(self).__name__
        if not self.sessions:
            raise param_error("sessions", f, "a non-empty list of Cowley V4 session ids", self.sessions)
        known = _available_sessions(f)
        for s in self.sessions:
            if str(s) not in known:
                raise param_error("sessions", f, "session ids among " + ", ".join(known), s)
        if len(set(map(str, self.sessions))) != len(self.sessions):
            raise param_error("sessions", f, "distinct sessions", list(self.sessions))
        if self.analysis_session is not None and str(self.analysis_session) not in map(str, self.sessions):
            raise param_error("analysis_session", f, "one of the sessions " + ", ".join(map(str, self.sessions)),
                              self.analysis_session)
        if not self.models:
            raise param_error("models", f, "a non-empty list of 'network:layer[@grid]'", self.models)
        specs = [parse_model_spec(m, "models", f) for m in self.models]
        if len(set(specs)) != len(specs):
            raise param_error("models", f, "distinct entries", list(self.models))
        for net, layer, grid in specs:
            _check_layer(net, layer, f, "models")
        if not self.estimators:
            raise param_error("estimators", f, "a non-empty list of " + ", ".join(ESTIMATORS), self.estimators)
        for e in self.estimators:
            check_choice(e, "estimators", f, ESTIMATORS)
        check_int(self.cv, "cv", f, min_value=2)
        if isinstance(self.test_size, bool) or not (0 < float(self.test_size) < 1):
            raise param_error("test_size", f, "a number in (0, 1)", self.test_size)
        for name, lo in (("rar_neurons", 0), ("deeptune_neurons", 0), ("deeptune_steps", 1),
                         ("deeptune_restarts", 1), ("deeptune_size", 16), ("batch_size", 1), ("random_state", 0)):
            check_int(getattr(self, name), name, f, min_value=lo)
        for name in ("n_neurons", "threads"):
            if getattr(self, name) is not None:
                check_int(getattr(self, name), name, f, min_value=1)
        if len(self.rar_fractions) != 3 or any(not (float(x) > 0) for x in self.rar_fractions):
            raise param_error("rar_fractions", f, "three fractions > 0 (fit, selection, test)", self.rar_fractions)
        if not (math.isfinite(self.max_drop) and 0 <= self.max_drop < 1):
            raise param_error("max_drop", f, "a number in [0, 1) (relative drop of the selection r)", self.max_drop)
        if not (math.isfinite(self.rar_curve_keep_ratio) and 0 < self.rar_curve_keep_ratio <= 1):
            raise param_error("rar_curve_keep_ratio", f, "a number in (0, 1]", self.rar_curve_keep_ratio)
        for c in self.car_compression:
            if isinstance(c, bool) or not isinstance(c, (int, float)) or not (0 < float(c) < 1):
                raise param_error("car_compression", f, "fractions of filters removed, each in (0, 1)", c)
        if len(set(map(float, self.car_compression))) != len(self.car_compression):
            raise param_error("car_compression", f, "distinct fractions", list(self.car_compression))
        check_choice(self.car_method, "car_method", f, ("car", "car_oneshot"))
        if self.car_images is not None:
            check_int(self.car_images, "car_images", f, min_value=4)
        if self.car_data is not None and self.car_compression:
            from .car import data_folder

            data_folder(self.car_data, "car_data", f)
        if not (math.isfinite(self.deeptune_lr) and self.deeptune_lr > 0):
            raise param_error("deeptune_lr", f, "a number > 0", self.deeptune_lr)
        if self.deeptune_models is not None:
            if not self.deeptune_models:
                raise param_error("deeptune_models", f, "None or a non-empty list of entries of models", ())
            for m in self.deeptune_models:
                if m not in self.models:
                    raise param_error("deeptune_models", f, "entries of models: " + ", ".join(self.models), m)
        # image counts (cheap: the response files, no images decoded)
        sizes = _session_sizes(tuple(map(str, self.sessions)), f)
        for s, (n_img, n_units) in sizes.items():
            n_test = math.ceil(float(self.test_size) * n_img)
            if n_img - n_test < max(self.cv, 3):
                raise param_error("cv", f, f"<= the training images of session {s} ({n_img - n_test} of {n_img})",
                                  self.cv, "use fewer folds")
            k = min(n_units, self.n_neurons or n_units)
            if s == str(self.analysis_session or self.sessions[0]):
                for name in ("rar_neurons", "deeptune_neurons"):
                    if getattr(self, name) > k:
                        raise param_error(name, f, f"<= the neurons analysed in session {s} ({k})",
                                          getattr(self, name))
        return self


@dataclass(frozen=True)
class EncodingAllConfig(EncodingV4Config):
    """The paper-sized run (a GPU / long run): all 12 sessions, netphys_vgg16 plus HED VGG-16 and
    EfficientNet-Lite0 layers average-pooled to a 7 x 7 grid, ridge and lasso, 5 RAR neurons, 4 DeepTune
    neurons with 500 steps and 5 restarts at 112 px; greedy CAR of the best layer on all 3,925 Imagenette
    validation images at the thesis's nine compression rates (10-90 %)."""

    sessions: tuple[str, ...] = COWLEY_SESSIONS
    analysis_session: str | None = "210325"
    models: tuple[str, ...] = ("netphys_vgg16:conv2_2", "netphys_vgg16:conv3_1", "netphys_vgg16:conv3_3",
                               "netphys_vgg16:conv4_1", "netphys_vgg16:conv4_3", "netphys_vgg16:conv5_1",
                               "hed_vgg16:conv3_1@7", "hed_vgg16:conv4_1@7", "hed_vgg16:conv5_1@7",
                               "efficientnet_lite0:block5_expand@7", "efficientnet_lite0:block10_expand@7",
                               "efficientnet_lite0:block15_expand@7")
    estimators: tuple[str, ...] = ("ridge", "lasso")
    rar_neurons: int = 5
    deeptune_neurons: int = 4
    deeptune_steps: int = 500
    deeptune_restarts: int = 5
    deeptune_size: int = 112
    car_compression: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
    car_method: str = "car"
    car_images: int | None = None
    threads: int | None = None


# ----------------------------------------------------------------------------------------------------------
# helpers

def parse_model_spec(spec, param: str = "models", func: str = "parse_model_spec") -> tuple[str, str, int | None]:
    """``"network:layer[@grid]"`` -> ``(network, layer, grid or None)``."""
    if not isinstance(spec, str) or spec.count(":") != 1:
        raise param_error(param, func, "entries 'network:layer' or 'network:layer@grid'", spec)
    net, rest = spec.split(":")
    grid = None
    if "@" in rest:
        rest, g = rest.split("@", 1)
        try:
            grid = int(g)
        except ValueError:
            raise param_error(param, func, "an int grid after '@' (e.g. 'hed_vgg16:conv3_1@7')", spec) from None
        if grid < 1:
            raise param_error(param, func, "a grid >= 1 after '@'", spec)
    if not net or not rest:
        raise param_error(param, func, "entries 'network:layer' or 'network:layer@grid'", spec)
    return net, rest, grid


_MODELS: dict = {}


def _model(net: str, func: str = "encoding"):
    if net not in _MODELS:
        from .._validation import NetphysError
        from ..models import load_model

        try:
            m = load_model(net)
        except NetphysError as exc:
            raise param_error("models", func, "networks netphys can load", net, str(exc)) from None
        _MODELS[net] = m.eval()
    return _MODELS[net]


def _check_layer(net: str, layer: str, func: str, param: str) -> None:
    from ..models.layers import layer_infos

    aliases = [li.alias for li in layer_infos(_model(net, func))]
    if layer not in aliases:
        raise param_error(param, func, f"layers of {net}", f"{net}:{layer}",
                          "valid: " + ", ".join(aliases[:30]) + (" ..." if len(aliases) > 30 else ""))


def _car_task(cfg, net: str, func: str):
    """``(folder, class_index, name)`` of the labelled images a network's CAR is computed on, or None."""
    from .car import data_folder

    if cfg.car_data is not None:
        ci = None
        if net.startswith("efficientnet_lite"):
            from ..models.efficientnet import IMAGENETTE_IMAGENET_INDEX

            ci = dict(IMAGENETTE_IMAGENET_INDEX)
        return data_folder(cfg.car_data, "car_data", func), ci, cfg.car_data
    if net == "netphys_vgg16":
        return data_folder("imagenette-64/val", "car_data", func), None, "imagenette-64/val"
    if net.startswith("efficientnet_lite"):
        from ..models.efficientnet import IMAGENETTE_IMAGENET_INDEX

        return (data_folder("imagenette-224-val/val", "car_data", func), dict(IMAGENETTE_IMAGENET_INDEX),
                "imagenette-224-val/val (1000-way)")
    return None


def _available_sessions(func: str) -> list[str]:
    from ..neural.datasets import _available_sessions as avail
    from ..neural.datasets import resolve_root

    try:
        folder = resolve_root(None, "cowley-v4", func)
    except (FileNotFoundError, Exception) as exc:  # noqa: BLE001 - reported as a config error
        raise param_error("sessions", func, "Cowley V4 sessions in the shared data folder", "no cowley-v4 data",
                          str(exc)) from None
    return avail(folder / "responses_repeat_averaged")


_SIZES: dict = {}


def _session_sizes(sessions: tuple, func: str) -> dict:
    """``{session: (n_images, n_neurons)}`` from the repeat-averaged response files (neurons x images)."""
    from ..neural.datasets import resolve_root

    folder = resolve_root(None, "cowley-v4", func) / "responses_repeat_averaged"
    out = {}
    for s in sessions:
        if s not in _SIZES:
            a = np.load(folder / f"responses_{s}.npy", mmap_mode="r")
            _SIZES[s] = (int(a.shape[1]), int(a.shape[0]))
        out[s] = _SIZES[s]
    return out


def _has_trials(session: str, func: str) -> bool:
    from ..neural.datasets import resolve_root

    return (resolve_root(None, "cowley-v4", func) / "responses_raw" / f"responses_{session}.npy").is_file()


def is_summary_model(name: str) -> bool:
    """True for the DeepTune columns that are not one layer's uncompressed model (consensus, compressed)."""
    return name in ("consensus", "rar_compressed") or name.startswith("car_")


def _car_name(fraction: float) -> str:
    """The DeepTune model name of the CAR-compressed model with ``fraction`` of the filters removed."""
    return f"car_{100 * float(fraction):g}%"


def _label(net: str, layer: str, grid, est: str) -> str:
    return f"{net}:{layer}" + (f"@{grid}" if grid else "") + f"/{est}"


def _digest(*arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:20]


class _Pooled:
    """Predictor on a layer average-pooled to ``grid x grid`` (the features of ``layer_features(grid=)``)."""

    def __new__(cls, coef, intercept, shape, grid):
        import torch
        from torch import nn

        class Pooled(nn.Module):
            def __init__(self):
                super().__init__()
                self.lin = nn.Linear(coef.shape[1], coef.shape[0])
                with torch.no_grad():
                    self.lin.weight.copy_(torch.as_tensor(coef, dtype=torch.float32))
                    self.lin.bias.copy_(torch.as_tensor(intercept, dtype=torch.float32))

            def forward(self, f):
                x = f.reshape(len(f), *shape)
                if tuple(x.shape[-2:]) != (grid, grid):
                    x = nn.functional.adaptive_avg_pool2d(x, grid)
                return self.lin(x.flatten(1))

        return Pooled().eval()


class _Linear:
    def __init__(self, coef, intercept):
        self.coef_ = np.asarray(coef, dtype=np.float64)
        self.intercept_ = np.asarray(intercept, dtype=np.float64)


# ----------------------------------------------------------------------------------------------------------
@register("encoding.v4")
class EncodingV4(Experiment):
    """Encoding models, RAR and DeepTune on Cowley V4 (thesis chapters 3-4), CPU-sized."""

    Config = EncodingV4Config
    title = "Encoding models of V4 neurons: accuracy per layer, RAR compression and DeepTune images"
    intro = ("Linear encoding models map the features of a CNN layer (or of a V1-like Gabor-wavelet bank) for each "
             "image to a V4 neuron's spike count (Cowley et al. 2023 data); the thesis (Abbasi-Asl 2018, chapter 3) "
             "reports that intermediate layers predict V4 best, above the Gabor baseline, and that DeepTune images "
             "of a neuron are stable across models; chapter 4 that RAR compresses a neuron model's layer strongly "
             "at a small accuracy cost, with DeepTune images of the compressed model close to the uncompressed "
             "consensus. Accuracy is the Pearson r on held-out images, raw and noise-corrected.")

    def run(self, cfg, ctx):
        with torch_threads(cfg.threads), ctx.collect_warnings("encoding"):
            return self._run(cfg, ctx)

    # ------------------------------------------------------------------------------------------------------
    def _run(self, cfg, ctx):
        from ..neural import load_cowley_v4
        from ..readout import encoding as enc_mod
        from ..readout.encoding import EncodingModel, layer_features
        from ..readout.gabor import GaborBank

        sessions = [str(s) for s in cfg.sessions]
        asess = str(cfg.analysis_session or sessions[0])
        specs = [parse_model_spec(m) for m in cfg.models]
        entries = [(net, layer, grid) for net, layer, grid in specs]
        if cfg.gabor:
            entries.append((GABOR, GABOR, None))
        labels = [_label(n, l, g, e) for n, l, g in entries for e in cfg.estimators]
        data = {}
        fits = {}           # (session, label) -> Dataset (with coef, intercept)
        for s in ctx.progress(sessions, desc="sessions"):
            with ctx.timer("load"):
                ds = load_cowley_v4(sessions=[s], repeats=_has_trials(s, "encoding.v4"))[s]
                resp = ds.responses("V4", average_repeats=False)
                if cfg.n_neurons:
                    resp = resp.isel(unit=slice(0, cfg.n_neurons))
                images = ds.images
                data[s] = (resp, images)
            trials = "repeat" in resp.dims
            Y = resp.mean("repeat", skipna=True) if trials else resp
            ctx.stimuli[f"cowley_v4_{s}"] = {"session": s, "n_images": len(images),
                                             "n_neurons": int(resp.sizes["unit"]), "trials": int(trials),
                                             "images_sha256": _digest(images), "responses_sha256":
                                             _digest(np.nan_to_num(resp.values, nan=-1.0))}
            did = {"session": s, "images": ctx.stimuli[f"cowley_v4_{s}"]["images_sha256"],
                   "responses": ctx.stimuli[f"cowley_v4_{s}"]["responses_sha256"]}
            for net, layer, grid in entries:
                if net == GABOR:
                    model, ident = GaborBank(), {"name": GABOR, "repr": repr(GaborBank())}
                else:
                    model = _model(net)
                    if cfg.device:
                        model = model.to(cfg.device)
                    ident = ctx.model_identity(model, net)
                X = None
                for est in cfg.estimators:
                    lab = _label(net, layer, grid, est)

                    def compute(est=est, net=net, layer=layer, grid=grid, model=model):
                        nonlocal X
                        if X is None:
                            with ctx.timer("features"):
                                X = layer_features(model, None if net == GABOR else layer, images, grid=grid,
                                                   batch_size=cfg.batch_size, device=cfg.device)
                        with ctx.timer("fit"):
                            e = EncodingModel(layer=layer, estimator=est, cv=cfg.cv, test_size=cfg.test_size,
                                              random_state=ctx.seed("split", s))
                            with warnings.catch_warnings():
                                warnings.simplefilter("ignore", RuntimeWarning)
                                e.fit(X.values, Y.values, trials=resp.transpose("stimulus", "unit", "repeat").values
                                      if trials else None)
                        out = e.to_dataset()
                        out = out.drop_vars([v for v in ("weight_map", "filter_importance") if v in out])
                        out["coef"] = (("unit", "feature"), e.coef_.astype(np.float32))
                        out["intercept"] = (("unit",), e.intercept_)
                        out["test_index"] = (("test",), e.test_index_)
                        out.attrs.update(feature_shape=list(e.feature_shape_), model=net, layer=layer,
                                         grid=grid or 0)
                        return out

                    fits[(s, lab)] = ctx.piece("encoding_fit", compute, reads=("cv", "test_size", "n_neurons"),
                                               estimators=(enc_mod,), data=did, model=ident, layer=layer,
                                               grid=grid, estimator=est, seed=ctx.seed("split", s))
        # --- per neuron x model ------------------------------------------------------------------------
        units, sess_of = [], []
        for s in sessions:
            u = data[s][0]["unit_id"].values if "unit_id" in data[s][0].coords else \
                np.array([f"{s}/{i}" for i in range(data[s][0].sizes["unit"])])
            units += [str(x) for x in u]
            sess_of += [s] * len(u)
        NU, NM = len(units), len(labels)
        per = {v: np.full((NU, NM), np.nan) for v in ("r", "r_corrected", "explainable_variance", "noise_ceiling",
                                                      "train_r", "alpha")}
        i0 = 0
        for s in sessions:
            n = data[s][0].sizes["unit"]
            for j, lab in enumerate(labels):
                f = fits[(s, lab)]
                for v in per:
                    if v in f:
                        per[v][i0:i0 + n, j] = f[v].values
            i0 += n
        out = {v: (("unit", "model"), a) for v, a in per.items()}
        coords = {"unit": units, "session": ("unit", sess_of), "model": labels,
                  "network": ("model", [lab.split(":")[0] for lab in labels]),
                  "layer": ("model", [lab.split(":")[1].split("/")[0].split("@")[0] for lab in labels]),
                  "estimator": ("model", [lab.split("/")[-1] for lab in labels])}
        # --- best layer of the analysis session --------------------------------------------------------
        amask = np.array([s == asess for s in sess_of])
        net_models = [j for j, lab in enumerate(labels) if not lab.startswith(GABOR + ":")
                      and lab.endswith("/" + cfg.estimators[0])]
        score = per["r_corrected"] if np.isfinite(per["r_corrected"][amask]).any() else per["r"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            meds = [np.nanmedian(score[amask, j]) for j in net_models]
        best_j = net_models[int(np.nanargmax(meds))]
        best = labels[best_j]
        bnet, blayer, bgrid = entries[[_label(*e, cfg.estimators[0]) for e in entries].index(best)]
        bfit = fits[(asess, best)]
        shape = tuple(int(x) for x in bfit.attrs["feature_shape"])
        W = bfit["coef"].values.astype(np.float64).reshape((-1,) + shape)
        aunits = np.flatnonzero(amask)
        r_best = per["r"][amask, best_j]
        order = np.argsort(-np.nan_to_num(r_best, nan=-np.inf), kind="stable")
        out["weight_map"] = (("best_unit", "wm_row", "wm_col"), (W ** 2).sum(axis=1))
        out["filter_importance"] = (("best_unit", "channel"), (W ** 2).sum(axis=(2, 3)))
        coords.update(best_unit=[units[i] for i in aunits], best_rank=("best_unit", np.argsort(order)),
                      wm_row=np.arange(shape[1]), wm_col=np.arange(shape[2]), channel=np.arange(shape[0]))
        attrs = {"best_model": best, "best_network": bnet, "best_layer": blayer, "best_grid": bgrid or 0,
                 "analysis_session": asess, "best_by": "median r_corrected" if score is per["r_corrected"]
                 else "median r", "max_drop": float(cfg.max_drop), "n_sessions": len(sessions),
                 "test_size": float(cfg.test_size), "cv": int(cfg.cv), "gabor": int(bool(cfg.gabor))}
        # --- features of the best layer (RAR, compressed model) ----------------------------------------
        resp, images = data[asess]
        trials = "repeat" in resp.dims
        Ya = (resp.mean("repeat", skipna=True) if trials else resp).values
        need_rar = (cfg.rar_neurons > 0 or (cfg.deeptune_neurons > 0 and cfg.deeptune_compressed)
                    or bool(cfg.car_compression))
        _xb: list = []

        def Xb():  # the best layer's features, computed only when a piece needs them
            if not _xb:
                with ctx.timer("features"):
                    _xb.append(layer_features(_model(bnet), blayer, images, grid=bgrid, batch_size=cfg.batch_size,
                                              device=cfg.device).values)
            return _xb[0]
        if not need_rar or bnet == GABOR:
            Xb = None
        did = {"session": asess, "images": ctx.stimuli[f"cowley_v4_{asess}"]["images_sha256"],
               "responses": ctx.stimuli[f"cowley_v4_{asess}"]["responses_sha256"]}
        bident = ctx.model_identity(_model(bnet), bnet)
        rar_units = [int(u) for u in order[:cfg.rar_neurons]]
        paths = {}
        if Xb is not None and rar_units:
            with ctx.timer("rar"):
                paths = self._rar(cfg, ctx, Xb, Ya, rar_units, did, bident, blayer, bgrid, shape[0])
            out.update(self._rar_vars(cfg, paths, rar_units, shape[0]))
            coords.update(rar_unit=[units[aunits[u]] for u in rar_units], rar_step=np.arange(
                out["rar_selection_r"][1].shape[1]))
        # --- CAR-compressed networks (thesis chapter 4) --------------------------------------------------
        car_fits = {}
        if cfg.car_compression and Xb is not None:
            task = _car_task(cfg, bnet, func="encoding")
            if task is None:
                attrs["car_skipped"] = (f"{bnet} has no classification task here (CAR needs labelled images the "
                                        "network classifies): set car_data")
            else:
                with ctx.timer("car"):
                    cvars, ccoords, cattrs, car_fits = self._car(
                        cfg, ctx, task, (bnet, blayer, bgrid), shape[0], Xb, Ya, resp, asess, did, bident,
                        (per["r"][amask, best_j], per["r_corrected"][amask, best_j]))
                out.update(cvars)
                coords.update(ccoords)
                attrs.update(cattrs)
        # --- DeepTune ----------------------------------------------------------------------------------
        dt_units = [int(u) for u in order[:cfg.deeptune_neurons]]
        if dt_units:
            with ctx.timer("deeptune"):
                dvars, dcoords, dattrs = self._deeptune(cfg, ctx, fits, entries, asess, dt_units, paths, Xb, Ya, resp,
                                                bfit, (bnet, blayer, bgrid), did,
                                                car_fits if cfg.deeptune_car else {})
            out.update(dvars)
            coords.update(dcoords)
            attrs.update(dattrs)
            coords["dt_unit"] = [units[aunits[u]] for u in dt_units]
        res = xr.Dataset(out, coords=coords, attrs=attrs)
        return res

    # ------------------------------------------------------------------------------------------------------
    def _car(self, cfg, ctx, task, best, C, Xb, Ya, resp, asess, did, bident, uncompressed):
        """CAR-prune the best layer for classification, then refit every neuron's model on the kept filters."""
        from ..interventions import pruning as pr_mod
        from ..interventions.pruning import GreedyPruner, split_halves
        from ..models.loading import model_info
        from ..readout import encoding as enc_mod
        from ..readout.encoding import EncodingModel
        from ..stimuli import StimulusSet

        bnet, blayer, bgrid = best
        folder, ci, data_name = task
        model = _model(bnet)
        images = StimulusSet.from_folder(folder, preprocess=model_info(model).preprocess, n=cfg.car_images,
                                         random_state=ctx.seed("car_images"))
        sel, tst = split_halves(images, random_state=ctx.seed("car_halves"))
        common = dict(model=bident, layer=blayer, selection=ctx.stimuli_identity(sel, "car_selection"),
                      test=ctx.stimuli_identity(tst, "car_test"))
        levels = sorted(float(c) for c in cfg.car_compression)
        n_rm = [min(max(int(round(c * C)), 1), C - 1) for c in levels]   # at least one filter removed and one kept
        n_keep = C - max(n_rm)

        keep = ["removed", "n_kept", "selection_accuracy", "test_accuracy", "importance"]
        if cfg.car_method == "car":   # greedy: cached every 8 steps, a killed run resumes
            from .car import chunked_car_path

            path, _ = chunked_car_path(ctx, model, blayer, C, n_keep, sel, tst, class_index=ci, tie_break="loss",
                                       batch_size=max(cfg.batch_size, 256), checkpoint_every=8,
                                       reads=("car_images", "car_data"),
                                       key={k: v for k, v in common.items() if k != "layer"}, piece="car_steps")
            path = path[keep]
            path = path.drop_vars([c for c in path.coords if c != "step"])
        else:
            def compute():
                p = GreedyPruner(model, blayer, method=cfg.car_method, n_keep=n_keep, class_index=ci,
                                 batch_size=max(cfg.batch_size, 256), progress=False).fit(sel, tst)
                path = p.path_[keep]
                return path.drop_vars([c for c in path.coords if c != "step"])

            path = ctx.piece("car_path", compute, reads=("car_method", "car_images", "car_data"),
                             estimators=(pr_mod,), method=cfg.car_method, n_keep=n_keep, **common)
        trials = resp.transpose("stimulus", "unit", "repeat").values if "repeat" in resp.dims else None
        est = cfg.estimators[0]
        fits_out = {}
        U = Ya.shape[1]
        r = np.full((U, len(levels) + 1), np.nan)
        rc = np.full((U, len(levels) + 1), np.nan)
        r[:, 0], rc[:, 0] = uncompressed
        for li, (c, k) in enumerate(zip(levels, n_rm)):
            removed = [int(x) for x in path["removed"].values[1:k + 1]]

            def refit(removed=removed):
                Xk = Xb().copy()
                Xk[:, removed] = 0.0   # the masked layer's output: the removed filters' features are zero
                e = EncodingModel(layer=blayer, estimator=est, cv=cfg.cv, test_size=cfg.test_size,
                                  random_state=ctx.seed("split", asess))
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    e.fit(Xk, Ya, trials=trials)
                d = e.to_dataset()
                out = xr.Dataset({"coef": (("unit", "feature"), e.coef_.astype(np.float32)),
                                  "intercept": (("unit",), np.asarray(e.intercept_, dtype=np.float64)),
                                  "r": (("unit",), d["r"].values)})
                if "r_corrected" in d:
                    out["r_corrected"] = (("unit",), d["r_corrected"].values)
                return out

            f = ctx.piece("car_compressed_fit", refit, reads=("cv", "test_size", "n_neurons"), estimators=(enc_mod,),
                          data=did, grid=bgrid, estimator=est, removed=removed, seed=ctx.seed("split", asess),
                          **common)
            fits_out[c] = f
            r[:, li + 1] = f["r"].values
            if "r_corrected" in f:
                rc[:, li + 1] = f["r_corrected"].values
        steps = [0] + n_rm
        sa, ta = path["selection_accuracy"].values, path["test_accuracy"].values
        vars_ = {"car_r": (("best_unit", "car_level"), r), "car_r_corrected": (("best_unit", "car_level"), rc),
                 "car_n_kept": (("car_level",), np.array([C - k for k in steps])),
                 "car_selection_accuracy": (("car_level",), sa[steps]),
                 "car_test_accuracy": (("car_level",), ta[steps]),
                 "car_path_removed": (("car_step",), path["removed"].values),
                 "car_path_selection_accuracy": (("car_step",), sa),
                 "car_path_test_accuracy": (("car_step",), ta)}
        coords = {"car_level": [0.0] + levels, "car_step": np.arange(path.sizes["step"])}
        attrs = {"car_method": cfg.car_method, "car_data": data_name, "car_n_selection": len(sel),
                 "car_n_test": len(tst), "car_n_filters": int(C), "car_estimator": est}
        return vars_, coords, attrs, fits_out

    # ------------------------------------------------------------------------------------------------------
    def _rar(self, cfg, ctx, Xb, Y, rar_units, did, ident, layer, grid, C):
        from ..readout import ridge_dual as rd

        fit, sel, tst = rd.three_way_split(len(Y), tuple(cfg.rar_fractions), random_state=ctx.seed("rar_split"))
        floor = max(1, math.ceil(cfg.rar_curve_keep_ratio * C - 1e-9))
        paths = {}
        for u in ctx.progress(rar_units, desc="RAR"):
            def compute(u=u):
                X = Xb()
                y = Y[:, u]
                lam = rd.choose_lambda(X[fit], y[fit], random_state=ctx.seed("rar_lambda"))
                p = rd.rar_path(X[fit], y[fit], X[sel], y[sel], X[tst], y[tst], lam, n_keep=floor, max_drop=None)
                return p.drop_vars("rar").assign(lam=lam)

            paths[u] = ctx.piece("rar_path", compute, reads=("rar_fractions", "rar_curve_keep_ratio", "n_neurons"),
                                 estimators=(rd,), data=did, model=ident, layer=layer, grid=grid, unit=u,
                                 split_seed=ctx.seed("rar_split"))
        return paths

    def _rar_vars(self, cfg, paths, rar_units, C):
        from .car import stop_step

        S = max(p.sizes["step"] for p in paths.values())
        R = len(rar_units)
        sel, tst = np.full((R, S), np.nan), np.full((R, S), np.nan)
        kept = np.full((R, S), -1, dtype=np.int64)
        removed = np.full((R, S), -1, dtype=np.int64)
        stop = np.zeros(R, dtype=np.int64)
        cens = np.zeros(R, dtype=bool)
        lam = np.zeros(R)
        for i, u in enumerate(rar_units):
            p = paths[u]
            s = p.sizes["step"]
            sel[i, :s] = p["selection_score"].values
            tst[i, :s] = p["test_score"].values
            kept[i, :s] = p["n_remaining"].values
            removed[i, :s] = p["removed"].values
            stop[i], cens[i] = stop_step(sel[i], cfg.max_drop)
            lam[i] = float(p["lam"])
        stop_kept = C - stop
        return {"rar_selection_r": (("rar_unit", "rar_step"), sel), "rar_test_r": (("rar_unit", "rar_step"), tst),
                "rar_n_kept": (("rar_unit", "rar_step"), kept), "rar_removed": (("rar_unit", "rar_step"), removed),
                "rar_stop_step": (("rar_unit",), stop), "rar_stop_n_kept": (("rar_unit",), stop_kept),
                "rar_compression_ratio": (("rar_unit",), C / stop_kept), "rar_censored": (("rar_unit",), cens),
                "rar_lambda": (("rar_unit",), lam), "rar_n_filters": ((), C)}

    # ------------------------------------------------------------------------------------------------------
    def _deeptune(self, cfg, ctx, fits, entries, asess, dt_units, paths, Xb, Ya, resp, bfit, best, did,
                  car_fits=None):
        from ..readout.encoding import EncodingModel
        from ..synthesis import deeptune as dt_mod
        from ..synthesis.deeptune import deeptune, stability
        from ..synthesis.objectives import NeuralModel

        chosen = list(cfg.deeptune_models) if cfg.deeptune_models else list(cfg.models)
        dmodels = []   # (label, net, layer, grid, fit Dataset)
        for spec in chosen:
            net, layer, grid = parse_model_spec(spec)
            for est in cfg.estimators:
                lab = _label(net, layer, grid, est)
                dmodels.append((lab, net, layer, grid, fits[(asess, lab)]))

        def objective(net, layer, grid, coef, intercept, shape):
            model = _model(net)
            if grid:
                from ..synthesis.objectives import _site

                native = tuple(int(x) for x in _site(model, layer, "post", "encoding.v4")[2])
                pred = _Pooled(coef, intercept, native, grid)
            else:
                pred = _Linear(coef, intercept)
            return NeuralModel(model, layer, pred, neurons=[0])

        settings = dict(image_size=cfg.deeptune_size, n_restarts=cfg.deeptune_restarts, steps=cfg.deeptune_steps,
                        lr=cfg.deeptune_lr)
        reads = ("deeptune_size", "deeptune_restarts", "deeptune_steps", "deeptune_lr")

        def keep(r):
            r = r[["images", "final_score", "best_restart"]]
            r = r.drop_vars([c for c in r.coords if c not in ("restart", "condition", "channel", "y", "x")])
            return r.assign_coords(condition=[0])

        bnet, blayer, bgrid = best
        shape_b = tuple(int(x) for x in bfit.attrs["feature_shape"])
        # the uncompressed model of the compressed layer (the reference of the compressed models' images)
        ref_label = _label(bnet, blayer, bgrid, cfg.estimators[0])
        ref = [m[0] for m in dmodels].index(ref_label) if ref_label in [m[0] for m in dmodels] else None
        comp = cfg.deeptune_compressed and Xb is not None and bool(paths)   # RAR paths exist to compress by
        car_fits = car_fits or {}
        car_names = [_car_name(c) for c in car_fits]
        comp_names = (["rar_compressed"] if comp else []) + car_names
        names = [m[0] for m in dmodels] + ["consensus"] + comp_names
        D, M = ("max", "min"), len(names)
        U, R, S = len(dt_units), cfg.deeptune_restarts, cfg.deeptune_size
        n_base = len(dmodels)
        imgs = np.full((U, 2, M, R, 3, S, S), np.nan, dtype=np.float32)
        fscore = np.full((U, 2, M, R), np.nan)
        rsim = np.full((U, 2, M), np.nan)
        csim = np.full((U, 2, M), np.nan)
        usim = np.full((U, 2, M), np.nan)
        msim = np.full((U, 2), np.nan)
        polar = None
        comp_kept = np.full(U, -1, dtype=np.int64)
        comp_r = np.full(U, np.nan)
        for ui, u in enumerate(ctx.progress(dt_units, desc="DeepTune")):
            objs, keys = [], []
            for lab, net, layer, grid, f in dmodels:
                coef = f["coef"].values[u:u + 1].astype(np.float64)
                icp = f["intercept"].values[u:u + 1]
                objs.append(objective(net, layer, grid, coef, icp, tuple(f.attrs["feature_shape"])))
                keys.append({"model": lab, "coef": _digest(coef, icp)})
            cobjs = {}   # compressed model name -> (objective, cache key)
            if comp and u in paths:
                from .car import stop_step

                p = paths[u]
                st, _ = stop_step(p["selection_score"].values, cfg.max_drop)
                removed = [int(c) for c in p["removed"].values[1:st + 1]]
                def refit(u=u, removed=removed):
                    Xk = Xb().copy()
                    Xk[:, removed] = 0.0            # ridge on the kept filters: zero columns get zero weights
                    e = EncodingModel(layer=blayer, cv=cfg.cv, test_size=cfg.test_size,
                                      random_state=ctx.seed("split", asess))
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        e.fit(Xk, Ya[:, u:u + 1])
                    return xr.Dataset({"coef": (("unit", "feature"), e.coef_), "intercept": (("unit",), e.intercept_),
                                       "r": (("unit",), e.r_.values)})

                from ..readout import encoding as enc_mod
                e = ctx.piece("rar_compressed_fit", refit, reads=("cv", "test_size", "n_neurons"),
                              estimators=(enc_mod,), data=did, layer=blayer, grid=bgrid, unit=u, removed=removed,
                              model=_digest(bfit["coef"].values))
                comp_kept[ui] = shape_b[0] - len(removed)
                comp_r[ui] = float(e["r"].values[0])
                cobjs["rar_compressed"] = (
                    objective(bnet, blayer, bgrid, e["coef"].values, e["intercept"].values, shape_b),
                    {"model": "rar_compressed", "coef": _digest(e["coef"].values, e["intercept"].values)})
            for c, name in zip(car_fits, car_names):
                f = car_fits[c]
                coef = f["coef"].values[u:u + 1].astype(np.float64)
                icp = f["intercept"].values[u:u + 1]
                cobjs[name] = (objective(bnet, blayer, bgrid, coef, icp, shape_b),
                               {"model": name, "coef": _digest(coef, icp)})
            for di, d in enumerate(D):
                seed = ctx.seed("deeptune", u)
                runs = []
                for o, k in zip(objs, keys):
                    runs.append(ctx.piece("deeptune_model", lambda o=o, d=d, seed=seed: keep(deeptune(
                        o, direction=d, random_state=seed, **settings)), reads=reads, estimators=(dt_mod,),
                        data=did, unit=u, direction=d, seed=seed, **k))
                cons = ctx.piece("deeptune_consensus", lambda d=d, seed=seed: keep(deeptune(
                    objs, direction=d, consensus="mean_grad", random_state=seed, **settings)), reads=reads,
                    estimators=(dt_mod,), data=did, unit=u, direction=d, seed=seed, models=keys)
                allr = runs + [cons]
                for name in comp_names:
                    if name not in cobjs:
                        allr.append(None)
                        continue
                    o, k = cobjs[name]
                    allr.append(ctx.piece("deeptune_compressed", lambda o=o, d=d, seed=seed: keep(deeptune(
                        o, direction=d, random_state=seed, **settings)), reads=reads, estimators=(dt_mod,),
                        data=did, unit=u, direction=d, seed=seed, **k))
                for mi, r in enumerate(allr):
                    if r is None:
                        continue
                    imgs[ui, di, mi] = r["images"].transpose("restart", "condition", "channel", "y", "x").values[:, 0]
                    fs = r["final_score"]
                    fscore[ui, di, mi] = (fs.mean("model") if "model" in fs.dims else fs).transpose(
                        "restart", ...).values.reshape(R, -1)[:, 0]

                def one(mi):
                    return xr.Dataset({"images": (("restart", "condition", "channel", "y", "x"),
                                                  imgs[ui, di, mi][:, None])},
                                      coords={"restart": np.arange(R), "condition": [0]})
                mset = xr.Dataset({"images": (("restart", "condition", "model", "channel", "y", "x"),
                                              imgs[ui, di, :n_base].transpose(1, 0, 2, 3, 4)[:, None])},
                                  coords={"restart": np.arange(R), "condition": [0], "model": np.arange(n_base)})
                cset = one(n_base)
                st_m = stability(mset, cset)
                st_c = stability(cset)
                rsim[ui, di, :n_base] = st_m["restart_similarity"].values[0]
                csim[ui, di, :n_base] = st_m["consensus_similarity"].values[0]
                msim[ui, di] = float(st_m["model_similarity"].values[0])
                rsim[ui, di, n_base] = float(st_c["restart_similarity"].values[0])
                pp = [st_m["polar_power"].mean("restart").values[0], st_c["polar_power"].mean("restart").values]
                for j, name in enumerate(comp_names):
                    mi = n_base + 1 + j
                    if allr[mi] is None:
                        pp.append(np.full_like(pp[1], np.nan))
                        continue
                    kset = one(mi)
                    st_k = stability(kset, cset)
                    rsim[ui, di, mi] = float(st_k["restart_similarity"].values[0])
                    csim[ui, di, mi] = float(st_k["consensus_similarity"].values[0])
                    if ref is not None:
                        usim[ui, di, mi] = float(stability(kset, one(ref))["consensus_similarity"].values[0])
                    pp.append(st_k["polar_power"].mean("restart").values)
                P = np.concatenate(pp, axis=0)
                if polar is None:
                    polar = np.full((U, 2) + P.shape, np.nan)
                    ob, sf = st_m["orientation_bin"].values, st_m["sf"].values
                polar[ui, di] = P
        dv = {"dt_images": (("dt_unit", "direction", "dt_model", "restart", "rgb", "y", "x"), imgs),
              "dt_final_score": (("dt_unit", "direction", "dt_model", "restart"), fscore),
              "dt_restart_similarity": (("dt_unit", "direction", "dt_model"), rsim),
              "dt_consensus_similarity": (("dt_unit", "direction", "dt_model"), csim),
              "dt_uncompressed_similarity": (("dt_unit", "direction", "dt_model"), usim),
              "dt_model_similarity": (("dt_unit", "direction"), msim),
              "dt_polar_power": (("dt_unit", "direction", "dt_model", "orientation_bin", "sf"), polar),
              "dt_compressed_n_kept": (("dt_unit",), comp_kept), "dt_compressed_r": (("dt_unit",), comp_r)}
        dc = {"direction": list(D), "dt_model": names, "restart": np.arange(R), "rgb": np.arange(3),
              "y": np.arange(S), "x": np.arange(S), "orientation_bin": ob, "sf": sf}
        return dv, dc, ({"dt_reference_model": ref_label} if ref is not None else {})

    # --- tables, figures, report ---------------------------------------------------------------------------
    def tables(self, result):
        out = {"encoding_summary": encoding_summary(result), "neurons": neuron_table(result)}
        if "rar_selection_r" in result:
            out["rar"] = rar_table(result)
        if "car_r" in result:
            out["car_compression"] = car_table(result)
        if "dt_images" in result:
            out["deeptune_stability"] = deeptune_table(result)
        return out

    def figure_specs(self, result):
        from ..plotting import encoding as P

        return P.figure_specs(result)

    def sections(self, result, report, ctx) -> None:
        specs = self.figure_specs(result)
        tabs = self.tables(result)
        report.text(_findings(result))
        for stem, make, cap in specs:
            report.paper_figure(make, cap, stem=None if ctx.out is None else ctx.out / stem)
        captions = {
            "encoding_summary": ("Models x layers (thesis Fig. 3.2): median and mean held-out r over neurons, "
                                 "noise-corrected r (sessions with single trials), and the fraction of explainable "
                                 "variance explained (mean corrected r squared)."),
            "rar": (f"RAR per neuron of the best layer ({result.attrs['best_model']}): filters kept and compression "
                    f"ratio at a {100 * result.attrs['max_drop']:g} % relative drop of the selection r, the selection "
                    "and test r of the full and the compressed model. 'censored': the path ended first."),
            "car_compression": (f"CAR-compressed {result.attrs['best_model'].split('/')[0]} (thesis Fig. 4.1; "
                                f"{result.attrs.get('car_method', '')}, classification on "
                                f"{result.attrs.get('car_data', '')}): filters kept, the pruned network's selection "
                                "and test accuracy, and the encoding models refitted on the kept filters: median "
                                "held-out r (raw and noise-corrected) over neurons, median r relative to the "
                                "uncompressed model, and the fraction of neurons within 5 % of their uncompressed r."),
            "deeptune_stability": ("DeepTune stability: mean r between restarts of each model, r of each model's "
                                   "image with the consensus image of the same restart, r of each compressed model's "
                                   "image with the uncompressed model of the same layer (same restart), and the mean "
                                   "r between models (per neuron and direction)."),
        }
        for name, df in tabs.items():
            if name == "neurons":
                report.text(f"Per-neuron scores ({len(df)} rows) are in neurons.csv.")
                continue
            report.table(df, captions.get(name, name))
        if "car_skipped" in result.attrs:
            report.text("CAR compression was not run: " + result.attrs["car_skipped"] + ".")


@register("encoding.all")
class EncodingAll(EncodingV4):
    """All sessions, three networks (pooled layers), ridge and lasso (:class:`EncodingAllConfig`)."""

    Config = EncodingAllConfig
    title = "Encoding models of V4 neurons (all sessions, three networks): accuracy, RAR and DeepTune"


# ----------------------------------------------------------------------------------------------------------
# tables

def encoding_summary(result: xr.Dataset) -> pd.DataFrame:
    """The models x layers table (:func:`netphys.readout.encoding.encoding_table`) over all sessions' neurons."""
    from ..readout.encoding import encoding_table

    items = {}
    for m in result["model"].values:
        sub = result.sel(model=m)
        ds = xr.Dataset({"r": sub["r"], "r_corrected": sub["r_corrected"]},
                        attrs={"estimator": str(sub["estimator"].values)})
        items[(str(sub["network"].values), str(m).split(":", 1)[1].split("/")[0])] = ds
    df = encoding_table(items).reset_index()
    df.insert(3, "best", [f"{a}:{b}/{c}" == result.attrs["best_model"] for a, b, c in
                          zip(df["model"], df["layer"], df["estimator"])])
    return df


def neuron_table(result: xr.Dataset) -> pd.DataFrame:
    """One row per (neuron, model): r, r_corrected, explainable variance, train r, penalty."""
    df = result[["r", "r_corrected", "explainable_variance", "train_r", "alpha"]].to_dataframe().reset_index()
    keep = ["unit", "session", "model", "r", "r_corrected", "explainable_variance", "train_r", "alpha"]
    return df[[c for c in keep if c in df.columns]]


def rar_table(result: xr.Dataset) -> pd.DataFrame:
    rows = []
    C = int(result["rar_n_filters"])
    for i, u in enumerate(result["rar_unit"].values):
        s = int(result["rar_stop_step"].values[i])
        sel, tst = result["rar_selection_r"].values[i], result["rar_test_r"].values[i]
        rows.append({"neuron": str(u), "layer": result.attrs["best_model"], "filters": C,
                     "filters_kept": int(result["rar_stop_n_kept"].values[i]),
                     "compression_ratio": float(result["rar_compression_ratio"].values[i]),
                     "selection_r_full": sel[0], "selection_r_stop": sel[s], "test_r_full": tst[0],
                     "test_r_stop": tst[s], "lambda": float(result["rar_lambda"].values[i]),
                     "censored": bool(result["rar_censored"].values[i])})
    return pd.DataFrame(rows)


def car_table(result: xr.Dataset) -> pd.DataFrame:
    """One row per CAR compression level (0: the uncompressed layer) of the best layer."""
    rows = []
    r, rc = result["car_r"].values, result["car_r_corrected"].values
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for j, c in enumerate(result["car_level"].values):
            rel = r[:, j] / r[:, 0]
            ok = np.isfinite(rel) & (r[:, 0] > 0)
            rows.append({"fraction_removed": float(c), "filters_kept": int(result["car_n_kept"].values[j]),
                         "selection_accuracy": float(result["car_selection_accuracy"].values[j]),
                         "test_accuracy": float(result["car_test_accuracy"].values[j]),
                         "median_r": float(np.nanmedian(r[:, j])), "median_r_corrected": float(np.nanmedian(rc[:, j]))
                         if np.isfinite(rc[:, j]).any() else np.nan,
                         "median_relative_r": float(np.median(rel[ok])) if ok.any() else np.nan,
                         "neurons_within_5pct": float(np.mean(r[ok, j] >= 0.95 * r[ok, 0])) if ok.any() else np.nan})
    return pd.DataFrame(rows)


def deeptune_table(result: xr.Dataset) -> pd.DataFrame:
    rows = []
    for i, u in enumerate(result["dt_unit"].values):
        for di, d in enumerate(result["direction"].values):
            for mi, m in enumerate(result["dt_model"].values):
                rows.append({"neuron": str(u), "direction": str(d), "model": str(m),
                             "restart_r": float(result["dt_restart_similarity"].values[i, di, mi]),
                             "consensus_r": float(result["dt_consensus_similarity"].values[i, di, mi]),
                             "uncompressed_r": float(result["dt_uncompressed_similarity"].values[i, di, mi])
                             if "dt_uncompressed_similarity" in result else np.nan,
                             "between_models_r": float(result["dt_model_similarity"].values[i, di]),
                             "final_score": float(np.nanmean(result["dt_final_score"].values[i, di, mi]))})
    return pd.DataFrame(rows)


def _findings(result: xr.Dataset) -> str:
    df = encoding_summary(result)
    parts = [f"Best layer ({result.attrs['best_by']}, session {result.attrs['analysis_session']}): "
             f"{result.attrs['best_model']}."]
    g = df[df["model"] == GABOR]
    nets = df[df["model"] != GABOR]
    if len(g) and len(nets):
        parts.append(f"Median held-out r: networks {nets['median_r'].min():.3f}-{nets['median_r'].max():.3f}, "
                     f"Gabor baseline {g['median_r'].iloc[0]:.3f}.")
    if "rar_compression_ratio" in result:
        cr = result["rar_compression_ratio"].values
        parts.append(f"RAR compression ratio at a {100 * result.attrs['max_drop']:g} % drop: "
                     + ", ".join(f"{c:.2f}" for c in cr) + f" (median {np.median(cr):.2f}).")
    if "car_r" in result:
        tab = car_table(result)
        parts.append(f"CAR compression of {result.attrs['best_model'].split('/')[0]} ({result.attrs['car_method']}): "
                     + "; ".join(f"{100 * row.fraction_removed:g} % removed -> median r {row.median_r:.3f} "
                                 f"(test accuracy {row.test_accuracy:.2f})" for row in tab.itertuples()) + ".")
    if "dt_images" in result:
        names = list(result["dt_model"].values)
        base = [i for i, n in enumerate(names) if not is_summary_model(n)]
        rr = np.nanmean(result["dt_restart_similarity"].values[:, :, base])
        cr_ = np.nanmean(result["dt_consensus_similarity"].values[:, :, base])
        ms = result["dt_model_similarity"].values
        ms = f"{np.mean(ms[np.isfinite(ms)]):.2f}" if np.isfinite(ms).any() else "n/a (one model)"
        parts.append(f"DeepTune: restart-to-restart r {rr:.2f} (mean over models, neurons, directions), "
                     f"model-to-consensus r {cr_:.2f}, between models {ms}.")
        ref = result.attrs.get("dt_reference_model")
        for n in names:
            if is_summary_model(n) and n != "consensus":
                k = names.index(n)
                txt = (f"{n} model vs the uncompressed consensus: r "
                       f"{np.nanmean(result['dt_consensus_similarity'].values[:, :, k]):.2f}")
                if ref in names and "dt_uncompressed_similarity" in result:
                    txt += (f"; vs the uncompressed {ref.split('/')[0]} model: r "
                            f"{np.nanmean(result['dt_uncompressed_similarity'].values[:, :, k]):.2f}")
                parts.append(txt + ".")
        if ref in names:
            k = names.index(ref)
            parts.append(f"Reference: the uncompressed {ref.split('/')[0]} model vs the consensus r "
                         f"{np.nanmean(result['dt_consensus_similarity'].values[:, :, k]):.2f}.")
    return " ".join(parts)
