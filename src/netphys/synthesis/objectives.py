"""Composable objectives for stimulus synthesis: images in ``[0, 1]`` -> scores ``(n, n_conditions)``.

Leaves read a model (a unit, a channel mean, an output logit, a fitted neural model on a layer's
features) through the same :class:`netphys.recording.capture.Capture` path as
:func:`netphys.recording.record`, so ``"conv3_1"`` with ``site="post"`` is the same value in a
recording and in an objective, and the forward pass stops at the last layer an objective needs.
Objectives combine with ``+ - *`` (by numbers or by each other: weights, sums, differences), run under
an intervention with :meth:`Objective.under`, and the leaves of one expression that read the same
model share one forward pass.

Every objective returns one column per **condition** (several units, several neurons, several classes):
an optimiser runs one search per condition and scores a condition's images on its own column.
"""
from __future__ import annotations

import numbers
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .._validation import NetphysError, check_choice, param_error
from ..models.layers import CallSite, resolve_layer
from ..models.loading import model_info
from ..recording.capture import Capture
from ..recording.hooks import restored

__all__ = ["Objective", "Unit", "ChannelMean", "Logit", "NeuralModel", "LayerReadout", "SignAblated", "model_input"]


def _model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")


def model_input(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Images ``(n, 3, S, S)`` in ``[0, 1]`` -> the network input, differentiably.

    Resized (bilinear, antialiased when shrinking) to the model's input size when it has one, scaled,
    channel-ordered and normalised with the preprocessing recorded with the model
    (``model_info(model).preprocess``), and moved to the model's device.
    """
    info = model_info(model)
    pre = info.preprocess
    x = images.to(_model_device(model), torch.float32)
    size = info.input_size
    if size and x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                          antialias=x.shape[-1] > size)
    x = x * pre.scale
    if pre.bgr:
        x = x.flip(1)
    mean = torch.tensor(pre.mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(pre.std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def _check_images(images, func: str) -> torch.Tensor:
    if not isinstance(images, torch.Tensor):
        raise param_error("images", func, "a float tensor (n, 3, S, S) in [0, 1]", type(images).__name__,
                          "pass the generator's output")
    if images.dim() != 4 or images.shape[1] != 3:
        raise param_error("images", func, "a float tensor (n, 3, S, S) in [0, 1]",
                          f"shape {tuple(images.shape)}", "grayscale images must be repeated to 3 channels")
    if not images.is_floating_point():
        raise param_error("images", func, "a float tensor in [0, 1]", str(images.dtype),
                          "convert uint8 images with images.float() / 255")
    return images


class Objective:
    """Base class: ``objective(images (n, 3, S, S) in [0, 1]) -> scores (n, n_conditions)``, differentiable.

    Subclasses implement :meth:`_leaves` (model readers) or override :meth:`__call__`. Arithmetic:
    ``a + b``, ``a - b``, ``2 * a``, ``-a`` (conditions broadcast: equal counts, or one side with a
    single condition); :meth:`under` evaluates an objective under an intervention.
    """

    names: list

    @property
    def n_conditions(self) -> int:
        return len(self.names)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        images = _check_images(images, type(self).__name__)
        return _evaluate(self, images)

    # expression tree ---------------------------------------------------------------------------
    def _eval(self, images, cache) -> torch.Tensor:
        raise NotImplementedError

    def _leaves(self):
        return []

    def describe(self) -> dict:
        return {"objective": repr(self), "conditions": list(map(str, self.names))}

    def __add__(self, other):
        return _Combine(self, _as_objective(other, "+"), 1.0, "+")

    def __radd__(self, other):
        return _Combine(_as_objective(other, "+"), self, 1.0, "+")

    def __sub__(self, other):
        return _Combine(self, _as_objective(other, "-"), -1.0, "-")

    def __rsub__(self, other):
        return _Combine(_as_objective(other, "-"), self, -1.0, "-")

    def __mul__(self, w):
        if not isinstance(w, numbers.Real) or isinstance(w, bool) or not np.isfinite(w):
            raise param_error("weight", "Objective.__mul__", "a finite number", w,
                              "weight an objective by a number; combine objectives with + and -")
        return _Scaled(self, float(w))

    __rmul__ = __mul__

    def __truediv__(self, w):
        if not isinstance(w, numbers.Real) or isinstance(w, bool) or w == 0 or not np.isfinite(w):
            raise param_error("weight", "Objective.__truediv__", "a finite non-zero number", w)
        return _Scaled(self, 1.0 / float(w))

    def __neg__(self):
        return _Scaled(self, -1.0)

    def under(self, intervention: Callable, *args, **kwargs) -> "Objective":
        """This objective evaluated inside ``intervention(*args, **kwargs)`` (a context manager factory).

        E.g. ``Unit(model, "fc8", 1).under(ablate_units, model, "conv5_3", [0, 4, 9])``: the score of
        fc8 unit 1 with three conv5_3 channels silenced. The factory is called anew at every
        evaluation, so one-shot context managers (``contextlib.contextmanager``) work; the
        intervention is undone after each evaluation, also after an exception.
        """
        if not callable(intervention):
            raise param_error("intervention", "Objective.under", "a context-manager factory (a callable)",
                              type(intervention).__name__,
                              "pass e.g. netphys.interventions.ablate_units and its arguments")
        return _Under(self, intervention, args, kwargs)


def _as_objective(other, op: str) -> Objective:
    if isinstance(other, Objective):
        return other
    if isinstance(other, numbers.Real) and not isinstance(other, bool):
        return _Constant(float(other))
    raise param_error("other", f"Objective.__{op}__", "an Objective or a number", type(other).__name__)


def _broadcast_names(a: Objective, b: Objective, op: str) -> list:
    na, nb = a.n_conditions, b.n_conditions
    if na == nb:
        return [f"{x}{op}{y}" if x != y else str(x) for x, y in zip(a.names, b.names)]
    if nb == 1:
        return [f"{x}{op}{b.names[0]}" for x in a.names]
    if na == 1:
        return [f"{a.names[0]}{op}{y}" for y in b.names]
    raise param_error("other", f"Objective {op}", f"an objective with 1 or {na} conditions", f"{nb} conditions",
                      "combine objectives with equal condition counts, or with a single-condition one")


class _Constant(Objective):
    def __init__(self, value: float):
        self.value = value
        self.names = [repr(value)]

    def _eval(self, images, cache):
        return torch.full((images.shape[0], 1), self.value, dtype=torch.float32, device=images.device)

    def __repr__(self):
        return repr(self.value)


class _Combine(Objective):
    def __init__(self, a: Objective, b: Objective, sign: float, op: str):
        self.a, self.b, self.sign, self.op = a, b, sign, op
        self.names = _broadcast_names(a, b, op)

    def _leaves(self):
        return self.a._leaves() + self.b._leaves()

    def _eval(self, images, cache):
        va, vb = self.a._eval(images, cache), self.b._eval(images, cache)
        return va + self.sign * vb.to(va.device)

    def __repr__(self):
        return f"({self.a!r} {self.op} {self.b!r})"


class _Scaled(Objective):
    def __init__(self, inner: Objective, w: float):
        self.inner, self.w = inner, w
        self.names = [f"{w:g}*{n}" for n in inner.names]

    def _leaves(self):
        return self.inner._leaves()

    def _eval(self, images, cache):
        return self.w * self.inner._eval(images, cache)

    def __repr__(self):
        return f"{self.w:g} * {self.inner!r}"


class _Under(Objective):
    def __init__(self, inner, factory, args, kwargs):
        self.inner, self.factory, self.args, self.kwargs = inner, factory, args, kwargs
        self.names = list(inner.names)

    def _eval(self, images, cache):
        with self.factory(*self.args, **self.kwargs):
            return _evaluate(self.inner, images)  # its own forward passes, inside the intervention

    def __repr__(self):
        return f"{self.inner!r}.under({getattr(self.factory, '__name__', self.factory)!r})"


def _evaluate(obj: Objective, images: torch.Tensor) -> torch.Tensor:
    """Evaluate an expression: one forward pass per model for all the leaves that read it."""
    by_model: dict[int, list] = {}
    for leaf in obj._leaves():
        by_model.setdefault(id(leaf.model), []).append(leaf)
    cache: dict = {}
    for leaves in by_model.values():
        model = leaves[0].model
        reads = {}
        for leaf in leaves:
            for key, val in leaf.reads.items():
                reads[(id(leaf), key)] = val
        needs_output = any(leaf.needs_output for leaf in leaves)
        x = model_input(model, images)
        with restored(model), Capture(model, reads, stop=not needs_output) as cap:
            try:
                got = cap(x)
            except RuntimeError as exc:
                raise NetphysError(f"the forward pass of {model_info(model).name!r} failed on images of shape "
                                   f"{tuple(x.shape)}: {exc}") from exc
        for leaf in leaves:
            vals = {key: got[(id(leaf), key)] for key in leaf.reads}
            cache[id(leaf)] = leaf._finish(vals, cap.output)
    return obj._eval(images, cache)


class _ModelLeaf(Objective):
    """A leaf that reads call sites of ``model`` (``reads``) and turns them into ``(n, K)`` scores."""

    needs_output = False
    model: nn.Module
    reads: dict

    def _leaves(self):
        return [self]

    def _eval(self, images, cache):
        if id(self) not in cache:  # evaluated on its own
            return _evaluate(self, images)
        return cache[id(self)]

    def _finish(self, vals: dict, output) -> torch.Tensor:
        raise NotImplementedError


def _site(model, layer, site, func) -> tuple:
    """(LayerInfo, CallSite read, output shape) of ``layer`` at ``site`` ('pre'/'post')."""
    from ..recording.capture import resolve_site
    from ..recording.record import _probe

    li, st = resolve_site(model, layer, site, func)
    size = model_info(model).input_size
    if not size:
        raise param_error("model", func, "a model whose input size is known (model_info(model).input_size)",
                          model_info(model).name, "load it with load_model(..., input_size=...)")
    shapes = _probe(model, {CallSite(st.module, st.call): layer}, size, func=func, param="layer")
    return li, st, shapes[CallSite(st.module, st.call)]


def _ints(values, param, func, low, high) -> np.ndarray:
    arr = np.atleast_1d(np.asarray(values))
    if arr.ndim != 1 or arr.size == 0 or not np.issubdtype(arr.dtype, np.integer):
        raise param_error(param, func, "an int or a non-empty 1-D sequence of ints", values)
    bad = arr[(arr < low) | (arr >= high)]
    if bad.size:
        raise param_error(param, func, f"values in [0, {high})", bad.tolist(),
                          "the unit is out of range for this layer; see list_layers(model) for its shape")
    return arr.astype(np.int64)


class Unit(_ModelLeaf):
    """Single units: ``(channel, row, col)`` of a conv layer, or ``channel`` of an FC layer.

    Parameters
    ----------
    model : nn.Module
    layer : str
        A call site as in :func:`netphys.recording.record` (alias, dotted name, ``module:k``).
    channel : int or sequence of int
        One condition per entry.
    row, col : int or sequence of int, optional
        Spatial position (broadcast against ``channel``); default the centre of the map (``H // 2``,
        ``W // 2``). Ignored for FC layers.
    site : {"pre", "post"}
        As in :func:`~netphys.recording.record`.

    Raises
    ------
    NetphysError
        Unknown layer, unit out of range, unreadable site.
    """

    def __init__(self, model: nn.Module, layer: str, channel, row=None, col=None, *, site: str = "pre"):
        func = "Unit"
        self.model, self.layer, self.site = model, layer, site
        _, st, shape = _site(model, layer, site, func)
        ch = _ints(channel, "channel", func, 0, shape[0])
        if len(shape) == 3:
            h, w = shape[1], shape[2]
            r = _ints(h // 2 if row is None else row, "row", func, 0, h)
            c = _ints(w // 2 if col is None else col, "col", func, 0, w)
            try:
                ch, r, c = np.broadcast_arrays(ch, r, c)
            except ValueError:
                raise param_error("row", func, f"as many entries as channel ({ch.size}) or one", r.size) from None
            self.index = (ch.copy(), r.copy(), c.copy())
            self.names = [f"{layer}[{a},{b},{d}]" for a, b, d in zip(*self.index)]
        else:
            self.index = (ch,)
            self.names = [f"{layer}[{a}]" for a in ch]
        dev = _model_device(model)
        idx = tuple(torch.as_tensor(i, device=dev) for i in self.index)
        act = st.fn

        def gather(o):
            v = o[(slice(None), *idx)]
            v = v.to(torch.float32)
            return act(v) if act is not None else v
        self.reads = {"units": (CallSite(st.module, st.call), gather)}
        self.call_site = str(st)

    def _finish(self, vals, output):
        return vals["units"]

    def __repr__(self):
        return f"Unit({self.layer!r}, {len(self.names)} unit(s), site={self.site!r})"


class ChannelMean(_ModelLeaf):
    """The spatial mean of whole channels (FC layers: the feature itself); one condition per channel."""

    def __init__(self, model: nn.Module, layer: str, channel, *, site: str = "pre"):
        func = "ChannelMean"
        self.model, self.layer, self.site = model, layer, site
        _, st, shape = _site(model, layer, site, func)
        ch = _ints(channel, "channel", func, 0, shape[0])
        self.names = [f"{layer}[{a},:,:]" for a in ch]
        idx = torch.as_tensor(ch, device=_model_device(model))
        act = st.fn

        def gather(o):
            v = o.index_select(1, idx).to(torch.float32)
            if act is not None:
                v = act(v)
            return v.mean(dim=(2, 3)) if v.dim() == 4 else v
        self.reads = {"channels": (CallSite(st.module, st.call), gather)}

    def _finish(self, vals, output):
        return vals["channels"]

    def __repr__(self):
        return f"ChannelMean({self.layer!r}, {len(self.names)} channel(s), site={self.site!r})"


class Logit(_ModelLeaf):
    """The model's output (e.g. a class logit) for ``classes``; one condition per class.

    ``softmax=True`` scores the class probability instead (needs the whole output row).
    """

    needs_output = True

    def __init__(self, model: nn.Module, classes, *, softmax: bool = False, n_outputs: int | None = None):
        func = "Logit"
        self.model, self.softmax = model, softmax
        if n_outputs is None:
            n_outputs = _n_outputs(model, func)
        self.classes = _ints(classes, "classes", func, 0, n_outputs)
        self.names = [f"logit[{c}]" for c in self.classes]
        self.reads = {}
        self._idx = torch.as_tensor(self.classes, device=_model_device(model))

    def _finish(self, vals, output):
        if not isinstance(output, torch.Tensor) or output.dim() != 2:
            raise NetphysError(f"Logit needs a model returning (n, classes) logits, got "
                               f"{type(output).__name__} {getattr(output, 'shape', '')}")
        out = output.to(torch.float32)
        if self.softmax:
            out = out.softmax(dim=1)
        return out.index_select(1, self._idx.to(out.device))

    def __repr__(self):
        return f"Logit({self.classes.tolist()}{', softmax' if self.softmax else ''})"


def _n_outputs(model, func) -> int:
    size = model_info(model).input_size or 64
    with restored(model), torch.no_grad():
        out = model(torch.zeros(1, 3, size, size, device=_model_device(model)))
    if not isinstance(out, torch.Tensor) or out.dim() != 2:
        raise param_error("model", func, "a model returning (n, classes) logits",
                          f"{type(out).__name__} {getattr(out, 'shape', '')}")
    return int(out.shape[1])


class NeuralModel(_ModelLeaf):
    """A fitted neural (encoding) model's prediction from a layer's features; one condition per neuron.

    Parameters
    ----------
    model : nn.Module
        The network whose features the encoding model reads.
    layer : str
    predictor : nn.Module, fitted linear estimator, or callable
        ``features (n, F) -> responses (n, neurons)``. A fitted scikit-learn linear model (``coef_``
        ``(neurons, F)`` and ``intercept_``) becomes a torch linear map (differentiable); an
        ``nn.Module`` or a callable on tensors is used as is.
    neurons : int or sequence of int, optional
        Which predicted neurons are conditions (default all).
    features : {"flatten", "channel_mean"}
        How the layer's output becomes ``F`` features.
    site : {"pre", "post"}
    """

    def __init__(self, model: nn.Module, layer: str, predictor, *, neurons=None, features: str = "flatten",
                 site: str = "post"):
        func = "NeuralModel"
        check_choice(features, "features", func, ("flatten", "channel_mean"))
        self.model, self.layer, self.site, self.features = model, layer, site, features
        _, st, shape = _site(model, layer, site, func)
        n_feat = int(np.prod(shape)) if features == "flatten" else int(shape[0])
        dev = _model_device(model)
        self.predictor = _as_predictor(predictor, n_feat, dev, func)
        with torch.no_grad():
            n_out = int(self.predictor(torch.zeros(1, n_feat, device=dev)).shape[1])
        self.neurons = np.arange(n_out) if neurons is None else _ints(neurons, "neurons", func, 0, n_out)
        self.names = [f"neuron[{i}]" for i in self.neurons]
        self._idx = torch.as_tensor(self.neurons, device=dev)
        act = st.fn

        def gather(o):
            v = o.to(torch.float32)
            v = act(v) if act is not None else v.clone()
            if features == "channel_mean" and v.dim() == 4:
                return v.mean(dim=(2, 3))
            return v.flatten(1)
        self.reads = {"features": (CallSite(st.module, st.call), gather)}

    def _finish(self, vals, output):
        pred = self.predictor(vals["features"])
        return pred.to(torch.float32).index_select(1, self._idx.to(pred.device))

    def __repr__(self):
        return f"NeuralModel({self.layer!r}, {len(self.names)} neuron(s))"


class LayerReadout(_ModelLeaf):
    """Linear readouts of a layer's *input*: ``scores = X @ weight.T + bias``, one condition per row.

    The weights of a linear layer's unit under any change of its input weights (sign ablation: every
    sign x alpha condition of many units, :func:`netphys.interventions.sign_ablation_readouts`) are rows
    of ``weight``: all conditions are scored from one forward pass that stops at that layer.

    Parameters
    ----------
    model : nn.Module
    layer : str
        An ``nn.Linear`` layer; its first input, flattened to ``(n, F)``, is ``X``.
    weight : array (K, F)
    bias : array (K,), optional
    names : sequence of str, optional
        One per condition.
    """

    def __init__(self, model: nn.Module, layer: str, weight, bias=None, *, names=None):
        from ..recording.capture import input_reader

        func = "LayerReadout"
        li = resolve_layer(model, layer, func)
        mod = dict(model.named_modules())[li.module]
        if not isinstance(mod, nn.Linear):
            raise param_error("layer", func, "an nn.Linear layer", f"{layer!r} ({type(mod).__name__})")
        w = np.atleast_2d(np.asarray(weight, dtype=np.float64))
        if w.ndim != 2 or w.shape[1] != mod.in_features or not np.isfinite(w).all():
            raise param_error("weight", func, f"a finite (K, {mod.in_features}) array", f"shape {w.shape}")
        b = np.zeros(w.shape[0]) if bias is None else np.asarray(bias, dtype=np.float64).reshape(-1)
        if b.shape != (w.shape[0],) or not np.isfinite(b).all():
            raise param_error("bias", func, f"a finite array of {w.shape[0]} values", f"shape {b.shape}")
        self.model, self.layer = model, layer
        dev = _model_device(model)
        self.weight = torch.as_tensor(w, dtype=torch.float32, device=dev)
        self.bias = torch.as_tensor(b, dtype=torch.float32, device=dev)
        self.names = list(names) if names is not None else [f"{layer}.readout[{i}]" for i in range(w.shape[0])]
        if len(self.names) != w.shape[0]:
            raise param_error("names", func, f"{w.shape[0]} names", len(self.names))
        self.reads = {"input": (CallSite(li.module, None), input_reader())}

    def _finish(self, vals, output):
        x = vals["input"]
        return torch.addmm(self.bias.to(x.device), x, self.weight.to(x.device).T)

    def __repr__(self):
        return f"LayerReadout({self.layer!r}, {len(self.names)} condition(s))"


def SignAblated(model: nn.Module, layer: str, units, *, alphas=None, signs=None, bias: bool = False) -> LayerReadout:
    """The activation of linear units under every sign x alpha ablation of their input weights.

    One condition per (unit, condition) of :func:`netphys.interventions.sign_ablation_readouts`, unit-major
    (``names`` like ``fc8[3]|positive|0.3``); ``objective.readouts`` keeps that Dataset.
    """
    from ..interventions.weights import ALPHAS, SIGNS, sign_ablation_readouts

    ro = sign_ablation_readouts(model, layer, units, alphas=ALPHAS if alphas is None else alphas,
                                signs=SIGNS if signs is None else signs, bias=bias)
    U, C = ro.sizes["unit"], ro.sizes["condition"]
    names = [f"{layer}[{u}]|{s}|{a:g}" for u in ro["unit"].values
             for s, a in zip(ro["sign"].values, ro["alpha"].values)]
    obj = LayerReadout(model, layer, ro["weight"].values.reshape(U * C, -1), ro["bias"].values.reshape(-1),
                       names=names)
    obj.readouts = ro
    return obj


def _as_predictor(predictor, n_feat: int, device, func):
    if isinstance(predictor, nn.Module):
        return predictor.to(device).eval()
    coef = getattr(predictor, "coef_", None)
    if coef is not None:
        w = np.atleast_2d(np.asarray(coef, dtype=np.float32))
        if w.shape[1] != n_feat:
            raise param_error("predictor", func, f"a linear model fitted on {n_feat} features", f"coef_ of shape {w.shape}",
                              "fit it on this layer's features (flattened, or channel means with "
                              "features='channel_mean')")
        b = np.asarray(getattr(predictor, "intercept_", np.zeros(w.shape[0])), dtype=np.float32).reshape(-1)
        lin = nn.Linear(n_feat, w.shape[0])
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(w))
            lin.bias.copy_(torch.from_numpy(np.broadcast_to(b, (w.shape[0],)).copy()))
        return lin.to(device).eval()
    if callable(predictor):
        return predictor
    raise param_error("predictor", func, "an nn.Module, a fitted linear model (coef_, intercept_) or a callable",
                      type(predictor).__name__)

