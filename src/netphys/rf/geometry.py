"""Analytic receptive-field geometry of sequential CNNs (method A2) and patch cropping.

The receptive field (RF) of a unit is the patch of the input image that can influence it. For a
network that is a simple chain of convolutions, poolings and elementwise modules it follows from
composing the kernel size, stride, padding and dilation of every module below the unit; the patch is
then clipped at the image border. :func:`layer_geometry` discovers that chain with one forward pass on
a zero image (so it works for any ``nn.Module`` whose executed modules form a chain, not only for
``nn.Sequential``) and :func:`receptive_fields` turns it into per-unit boxes. Models that are not a
chain (ResNet: a block's output is a sum) are handled by
:func:`netphys.rf.gradient_receptive_fields`.
"""
from __future__ import annotations

import contextlib
import logging
import numbers
from dataclasses import asdict, dataclass
from typing import Iterator, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from .._validation import NetphysError, check_choice, check_int, param_error
from ..models.layers import LayerInfo, layer_infos, resolve_layer
from ..recording.hooks import StopForward, restored

log = logging.getLogger(__name__)

__all__ = ["AnalyticRFError", "RFGeometry", "layer_geometry", "receptive_fields", "rf_table",
           "crop_patches", "iter_patches"]


class AnalyticRFError(NetphysError):
    """The analytic receptive field cannot be computed for this model (not a simple chain of modules,
    or a module whose spatial footprint netphys does not know); use the gradient method instead."""


_GRADIENT_HINT = ("use gradient_receptive_fields(...) or receptive_fields(..., method='gradient') "
                  "(method='auto' picks it for you), which measures the RF as the support of the input "
                  "gradient")

#: Modules that act on each spatial position separately (identity for the RF), in eval mode.
_POINTWISE = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU,
    nn.Mish, nn.Tanh, nn.Sigmoid, nn.Softplus, nn.Softsign, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid,
    nn.Hardshrink, nn.Softshrink, nn.Tanhshrink, nn.Threshold, nn.LogSigmoid, nn.Identity,
    nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout,
    nn.LocalResponseNorm, nn.CrossMapLRN2d, nn.Softmax2d,
)
#: Modules whose outputs depend on every input position (spatial structure is gone after them).
_GLOBAL = (nn.Flatten, nn.Unflatten, nn.Linear, nn.Bilinear, nn.LazyLinear, nn.GroupNorm, nn.LayerNorm,
           nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)
_BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


# --------------------------------------------------------------------------------------------------
# the geometry object
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RFGeometry:
    """Receptive-field geometry of one layer at one input size.

    The RF of the unit at output position ``(r, c)`` covers, before clipping, the input rows
    ``[start[0] + r * jump[0], start[0] + r * jump[0] + size[0])`` and the columns likewise with
    index 1. When ``full_image`` is true every unit of the layer sees the whole image; then
    ``jump = (0, 0)``, ``start = (0, 0)`` and ``size = input_size``, so the same formula holds.

    Attributes
    ----------
    layer : str
        Alias of the layer (``conv3_1``) or its dotted module name.
    module : str
        Dotted module name.
    input_size : tuple of int
        ``(H, W)`` of the input image.
    shape : tuple of int
        Output shape of the layer without the batch dimension: ``(C, H, W)`` for conv/pool layers,
        ``(F,)`` for fully connected ones.
    jump : tuple of int
        Effective stride ``(rows, cols)``: input pixels between neighbouring output units.
    size : tuple of int
        Effective kernel size ``(rows, cols)``, unclipped.
    start : tuple of int
        Input coordinate of the first row / column of the RF of output unit ``(0, 0)`` (negative
        when the padding reaches outside the image).
    full_image : bool
        Whether every unit sees the whole image (FC layers, after ``Flatten`` or a global pooling).
    """

    layer: str
    module: str
    input_size: tuple
    shape: tuple
    jump: tuple
    size: tuple
    start: tuple
    full_image: bool

    @property
    def is_spatial(self) -> bool:
        """Whether units are addressed by ``(channel, row, col)`` (a ``(C, H, W)`` output)."""
        return len(self.shape) == 3

    def to_dict(self) -> dict:
        return asdict(self)

    def boxes(self, rows, cols) -> np.ndarray:
        """Clipped RF boxes of the units at ``(rows, cols)``.

        Parameters
        ----------
        rows, cols : int or array-like of int, shape (U,)
            Output positions. For a non-spatial (FC) layer they must be ``-1``.

        Returns
        -------
        ndarray of int64, shape (U, 4)
            ``(row_start, row_stop, col_start, col_stop)``, half-open, clipped to the image. A unit
            whose window lies entirely in the padding gets an empty box (``stop == start``).

        Raises
        ------
        NetphysError
            Positions that are not ints, have different lengths, or are out of range.
        """
        rows, cols = _check_positions(rows, cols, self.shape, "RFGeometry.boxes")
        return _boxes(self, rows, cols)


def _boxes(geom: RFGeometry, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    h, w = geom.input_size
    out = np.empty((rows.size, 4), dtype=np.int64)
    if geom.full_image:
        out[:] = (0, h, 0, w)
        return out
    for axis, (pos, n) in enumerate(((rows, h), (cols, w))):
        lo = geom.start[axis] + pos * geom.jump[axis]
        hi = lo + geom.size[axis]
        lo = np.clip(lo, 0, n)
        out[:, 2 * axis] = lo
        out[:, 2 * axis + 1] = np.clip(hi, lo, n)
    return out


def _check_positions(rows, cols, shape: tuple, func: str) -> tuple[np.ndarray, np.ndarray]:
    """Validate unit positions against a layer's output ``shape``; return them as int64 arrays."""
    arrays = []
    for name, v in (("rows", rows), ("cols", cols)):
        a = np.asarray(v)
        if a.ndim > 1 or (a.size and (a.dtype.kind not in "iu")):
            raise param_error(name, func, "an int or a 1-D array of ints", v)
        arrays.append(np.atleast_1d(a).astype(np.int64))
    r, c = arrays
    if r.size != c.size:
        raise param_error("cols", func, f"the same length as 'rows' ({r.size})", f"length {c.size}")
    if len(shape) == 3:
        for name, a, n, what in (("rows", r, shape[1], "height"), ("cols", c, shape[2], "width")):
            bad = (a < 0) | (a >= n)
            if bad.any():
                raise param_error(name, func, f"ints in [0, {n - 1}] (the layer's output {what} is {n})",
                                  int(a[bad][0]))
    else:
        for name, a in (("rows", r), ("cols", c)):
            if (a != -1).any():
                raise param_error(name, func, f"-1 for the units of a layer with output shape {shape} "
                                  "(not a spatial map; such units see the whole image)",
                                  int(a[a != -1][0]))
    return r, c


# --------------------------------------------------------------------------------------------------
# small helpers shared with gradient.py
# --------------------------------------------------------------------------------------------------
def _input_hw(input_size, func: str) -> tuple[int, int]:
    """``input_size`` (int or ``(H, W)``) as a pair of positive ints."""
    if isinstance(input_size, (tuple, list)) and len(input_size) == 2:
        return (check_int(input_size[0], "input_size", func, min_value=1),
                check_int(input_size[1], "input_size", func, min_value=1))
    if isinstance(input_size, numbers.Integral) and not isinstance(input_size, bool) and input_size >= 1:
        return int(input_size), int(input_size)
    raise param_error("input_size", func, "a positive int or a pair (H, W) of positive ints", input_size)


def _resolve_module(model: nn.Module, layer: str, func: str) -> tuple[LayerInfo, nn.Module]:
    """Resolve ``layer`` (alias or dotted name of a leaf module) to its info and module."""
    if not isinstance(model, nn.Module):
        raise param_error("model", func, "a torch.nn.Module", type(model).__name__)
    info = resolve_layer(model, layer, func)
    return info, dict(model.named_modules())[info.module]


def _infer_in_channels(model: nn.Module, in_channels, func: str) -> int:
    """``in_channels`` if given, else the ``in_channels`` of the model's first ``Conv2d`` (3 if none)."""
    if in_channels is not None:
        return check_int(in_channels, "in_channels", func, min_value=1)
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            return int(m.in_channels)
    return 3


def _model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    for t in list(model.parameters()) + list(model.buffers()):
        if t.is_floating_point():
            return t.device, t.dtype
    return torch.device("cpu"), torch.float32


def _forward_error(exc: Exception, shape: tuple, func: str) -> NetphysError:
    """The templated error for a forward pass that fails on the probe input."""
    h, w = shape[-2:]
    first = (str(exc).strip().splitlines() or [""])[0]
    return param_error("input_size", func, "a size the network accepts", h if h == w else (h, w),
                       f"the forward pass on an input of shape {tuple(shape)} failed "
                       f"({type(exc).__name__}: {first}); the input may be too small for the network's "
                       "strides and pools, or 'in_channels' may not match the model")


@contextlib.contextmanager
def _probing_forward(shape: tuple, func: str) -> Iterator[None]:
    """Context of a probe forward pass: :class:`StopForward` ends it quietly, and a failure on the
    probe input (``RuntimeError``, ``ValueError``, ``IndexError``) becomes :func:`_forward_error`."""
    try:
        yield
    except StopForward:
        pass
    except (RuntimeError, ValueError, IndexError) as exc:
        if isinstance(exc, NetphysError):
            raise
        raise _forward_error(exc, shape, func) from exc


# --------------------------------------------------------------------------------------------------
# tracing
# --------------------------------------------------------------------------------------------------
class _Call:
    """One executed leaf module: how its input relates to the previous call's output ('same',
    'reshape' or None, see :func:`_link`) and the input/output shapes, all taken when the hooks run."""

    __slots__ = ("name", "module", "link", "inp_shape", "out_shape")

    def __init__(self, name, module, link, inp_shape):
        self.name, self.module, self.link, self.inp_shape = name, module, link, inp_shape
        self.out_shape = None


def _link(prev: torch.Tensor | None, prev_version, inp) -> str | None:
    """How ``inp`` relates to ``prev`` (the previous call's output, still alive): the 'same' tensor,
    unchanged since (in-place modules return their input, and bump its version themselves), a
    'reshape'd view of it (``torch.flatten``: the spatial layout is gone) or None (a tensor computed
    by code outside the leaf modules, such as a residual sum, or modified in place by such code)."""
    if prev is None or not isinstance(inp, torch.Tensor) or inp._version != prev_version:
        return None
    if inp is prev:
        return "same"
    if (inp.device == prev.device and inp.dtype == prev.dtype and inp.numel() == prev.numel()
            and inp.data_ptr() == prev.data_ptr()):
        if inp.shape == prev.shape and inp.stride() == prev.stride():
            return "same"
        return "reshape"
    return None


@contextlib.contextmanager
def _tracing_hooks(model: nn.Module, x: torch.Tensor, calls: list, targets: set):
    """Pre/post forward hooks on every leaf module recording the calls in order (see :class:`_Call`).

    Only the latest output tensor is kept alive (to compare it with the next call's input), so the
    trace holds no more memory than the forward pass itself.
    """
    handles = []
    remaining = set(targets)
    last = {"out": x, "version": x._version}

    def make(name):
        def pre(mod, args):
            inp = args[0] if args else None
            link = _link(last["out"], last["version"], inp)
            shape = tuple(inp.shape) if isinstance(inp, torch.Tensor) else None
            calls.append(_Call(name, mod, link, shape))

        def post(mod, args, out):
            call = calls[-1]
            if isinstance(out, torch.Tensor):
                call.out_shape = tuple(out.shape)
                last["out"], last["version"] = out, out._version
            else:
                last["out"], last["version"] = None, None
            remaining.discard(id(mod))
            if targets and not remaining:
                raise StopForward
        return pre, post

    try:
        for name, m in model.named_modules():
            if name and not any(True for _ in m.children()):
                pre, post = make(name)
                handles.append(m.register_forward_pre_hook(pre))
                handles.append(m.register_forward_hook(post))
        yield
    finally:
        last.clear()
        for h in handles:
            h.remove()


def _trace(model: nn.Module, hw: tuple[int, int], in_channels: int, targets: Sequence[nn.Module],
           func: str) -> list:
    """One forward pass on a zero image, stopped once every target has run; the leaf calls in order."""
    device, dtype = _model_device_dtype(model)
    x = torch.zeros((1, in_channels) + tuple(hw), device=device, dtype=dtype)
    calls: list[_Call] = []
    with _probing_forward(x.shape, func), restored(model), torch.no_grad(), \
            _tracing_hooks(model, x, calls, {id(t) for t in targets}):
        model(x)
    return calls


def _output_shape(model: nn.Module, module: nn.Module, name: str, hw, in_channels: int, func: str) -> tuple:
    """Output shape (without batch) of the first call of ``module`` on a zero image."""
    call = _first_call(_trace(model, hw, in_channels, [module], func), module, name, func)
    if call.out_shape is None:
        raise NetphysError(f"the layer {name!r} does not return a tensor; it cannot be a recording site")
    return call.out_shape[1:]


def _first_call(calls, module, name, func):
    for c in calls:
        if c.module is module:
            return c
    raise NetphysError(f"the 'layer' parameter of {func} names a module that the forward pass never "
                       f"executes, got {name!r}")


# --------------------------------------------------------------------------------------------------
# composing the chain
# --------------------------------------------------------------------------------------------------
def _pair(v) -> tuple[int, int]:
    if isinstance(v, (tuple, list)):
        return (int(v[0]), int(v[0])) if len(v) == 1 else (int(v[0]), int(v[1]))
    return int(v), int(v)


class _State:
    def __init__(self):
        self.jump = [1, 1]
        self.size = [1, 1]
        self.start = [0, 0]
        self.full = False

    def window(self, kernel, stride, padding, dilation=(1, 1)):
        for a in range(2):
            k_eff = dilation[a] * (kernel[a] - 1) + 1
            self.start[a] -= padding[a] * self.jump[a]
            self.size[a] += (k_eff - 1) * self.jump[a]
            self.jump[a] *= stride[a]


def _unsupported(call: _Call, why: str) -> AnalyticRFError:
    return AnalyticRFError(f"the analytic receptive field cannot handle module {call.name!r} "
                           f"({type(call.module).__name__}): {why}; {_GRADIENT_HINT}")


def _step(state: _State, call: _Call) -> None:
    m = call.module
    if state.full:
        return
    in_shape, out_shape = call.inp_shape, call.out_shape
    if isinstance(m, nn.Conv2d):
        if m.padding_mode != "zeros":
            raise _unsupported(call, f"padding_mode={m.padding_mode!r} (only 'zeros' is supported)")
        k, d = _pair(m.kernel_size), _pair(m.dilation)
        if isinstance(m.padding, str):
            p = (0, 0) if m.padding == "valid" else tuple((d[a] * (k[a] - 1)) // 2 for a in range(2))
        else:
            p = _pair(m.padding)
        state.window(k, _pair(m.stride), p, d)
    elif isinstance(m, (nn.MaxPool2d, nn.AvgPool2d, nn.LPPool2d)):
        k = _pair(m.kernel_size)
        s = k if m.stride is None else _pair(m.stride)
        p = _pair(getattr(m, "padding", 0))
        d = _pair(getattr(m, "dilation", 1))
        state.window(k, s, p, d)  # ceil_mode only adds outputs at the far border; clipping handles them
    elif isinstance(m, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        for a in range(2):
            n_in, n_out = in_shape[-2 + a], out_shape[-2 + a]
            if n_in == n_out:
                continue
            if n_out < n_in and n_in % n_out == 0:  # exactly a pooling with kernel = stride = n_in / n_out
                step = n_in // n_out
                k_eff = step
                state.size[a] += (k_eff - 1) * state.jump[a]
                state.jump[a] *= step
            else:
                state.full = True
    elif isinstance(m, (nn.ZeroPad2d, nn.ConstantPad2d)):
        left, _right, top, _bottom = m.padding  # torch stores (left, right, top, bottom)
        state.start[0] -= top * state.jump[0]
        state.start[1] -= left * state.jump[1]
    elif isinstance(m, _BATCHNORMS):
        if m.running_mean is None or not m.track_running_stats:
            state.full = True  # normalised with the statistics of the whole map, even in eval mode
        elif in_shape != out_shape:
            raise _unsupported(call, f"it changes the shape from {in_shape} to {out_shape}")
    elif isinstance(m, _POINTWISE):
        if in_shape != out_shape:
            raise _unsupported(call, f"it changes the shape from {in_shape} to {out_shape}")
    elif isinstance(m, _GLOBAL):
        state.full = True
    else:
        raise _unsupported(call, "its spatial footprint is unknown")


def _compose(calls: list, module: nn.Module, info: LayerInfo, hw, func: str) -> RFGeometry:
    target = _first_call(calls, module, info.module, func)
    state = _State()
    prev_name = "the input image"
    for call in calls:
        if call.link is None:
            raise AnalyticRFError(
                f"the analytic receptive field needs a sequential model (a chain in which every module "
                f"takes the output of the module run before it), but the input of {call.name!r} "
                f"({type(call.module).__name__}) is not the output of {prev_name} (e.g. a residual sum "
                f"or a branch, as in a ResNet); {_GRADIENT_HINT}")
        if call.out_shape is None:
            raise _unsupported(call, "it does not return a single tensor")
        if call.link == "reshape":
            state.full = True
        _step(state, call)
        if call is target:
            break
        prev_name = f"{call.name!r} ({type(call.module).__name__})"
    shape = target.out_shape[1:]
    if len(shape) != 3:
        state.full = True
    if state.full:
        return RFGeometry(info.alias, info.module, tuple(hw), shape, (0, 0), tuple(hw), (0, 0), True)
    return RFGeometry(info.alias, info.module, tuple(hw), shape, tuple(state.jump), tuple(state.size),
                      tuple(state.start), False)


# --------------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------------
def layer_geometry(model: nn.Module, layer: str, input_size, *, in_channels: int | None = None) -> RFGeometry:
    """Analytic receptive-field geometry of ``layer`` for square (or ``(H, W)``) inputs.

    Parameters
    ----------
    model : torch.nn.Module
        Any model whose executed leaf modules form a chain (VGG, AlexNet, the netphys default).
    layer : str
        Alias (``conv3_1``, ``pool2``, ``fc6``) or dotted name of a leaf module.
    input_size : int or (int, int)
        Input height and width in pixels.
    in_channels : int, optional
        Channels of the probe input; default: ``in_channels`` of the first ``Conv2d`` (3 if none).

    Returns
    -------
    RFGeometry
        Effective ``jump`` (stride), ``size`` (kernel) and ``start`` offset per axis, the layer's output
        ``shape`` and whether it is ``full_image``.

    Raises
    ------
    NetphysError
        Unknown layer (the message lists the valid ones), a bad ``input_size``, or a forward pass that
        fails on the probe input (e.g. an input too small for the network's pools).
    AnalyticRFError
        (a :class:`NetphysError`) The executed modules are not a simple chain (ResNet) or include a
        module whose footprint is unknown; use :func:`netphys.rf.gradient_receptive_fields`.

    Notes
    -----
    One forward pass on a zero tensor of shape ``(1, C, H, W)`` with pre/post hooks on every leaf
    module (in eval mode; the hooks are removed and every module's mode restored afterwards, also on
    error) records the call order, the shapes, and whether each call's input is the previous call's
    output (tensor identity, storage and version counter, checked while the pass runs). It stops once
    ``layer`` has run (its first call is the one used). The executed modules form a chain when each
    one's input is the previous one's output (the same tensor, unchanged since, which also accepts
    in-place activations) or a reshaped view of it (``torch.flatten``; spatial structure is then lost).
    Along the chain, per axis, with effective kernel ``k' = d (k - 1) + 1``::

        start <- start - p * jump;   size <- size + (k' - 1) * jump;   jump <- jump * s

    from ``jump = size = 1, start = 0``, for ``Conv2d``, ``MaxPool2d``, ``AvgPool2d``, ``LPPool2d``
    (``ceil_mode`` only adds units whose window crosses the far border: clipping handles them) and
    ``ZeroPad2d``/``ConstantPad2d``. Elementwise modules (activations, eval-mode ``BatchNorm`` with
    running statistics, dropout, cross-channel LRN) are the identity. ``AdaptiveAvg/MaxPool2d`` is
    the identity when its input and output sizes agree and a pooling with kernel = stride =
    ``n_in / n_out`` when that divides; otherwise, and after ``Flatten``, ``Linear``, instance, group
    and layer normalisation, every unit sees the whole image.

    References
    ----------
    Method A2 of netphys' METHODS.md (prune-and-distill): Image_RF from kernel, stride, padding and
    dilation, clipped at the image border. Araujo, Norris & Sim (2019), "Computing receptive fields of
    convolutional neural networks", Distill.
    """
    func = "layer_geometry"
    info, module = _resolve_module(model, layer, func)
    hw = _input_hw(input_size, func)
    c = _infer_in_channels(model, in_channels, func)
    calls = _trace(model, hw, c, [module], func)
    return _compose(calls, module, info, hw, func)


def receptive_fields(model: nn.Module, layer: str, rows, cols, input_size, method: str = "analytic", *,
                     channels=None, n_samples: int = 8, random_state=0, threshold: float = 0.0,
                     structural: bool = True, in_channels: int | None = None,
                     progress: bool = False) -> np.ndarray:
    """Receptive-field boxes of units of ``layer``, clipped at the image border.

    Parameters
    ----------
    model : torch.nn.Module
    layer : str
        Alias or dotted module name.
    rows, cols : int or array-like of int, shape (U,)
        Output positions of the units; ``-1`` for units of fully connected layers.
    input_size : int or (int, int)
    method : {"analytic", "gradient", "auto"}
        ``"analytic"``: :func:`layer_geometry` (sequential models only). ``"gradient"``: the support
        of the input gradient, :func:`netphys.rf.gradient_receptive_fields`. ``"auto"``: analytic
        when the model is a chain of known modules, gradient otherwise (e.g. a ResNet).
    channels : int or array-like of int, optional
        Channel (or FC unit index) of each unit, used by the gradient method only; None sums all
        channels at the position, which gives the RF of the position.
    n_samples, random_state, threshold, structural
        Passed to the gradient method (``random_state`` defaults to 0).
    in_channels : int, optional
        Channels of the probe input (default: from the first ``Conv2d``).
    progress : bool, default False
        Progress bar of the gradient method (the analytic one is immediate).

    Returns
    -------
    ndarray of int64, shape (U, 4)
        ``(row_start, row_stop, col_start, col_stop)`` per unit, half-open, clipped to the image;
        the whole image for FC units. The gradient method returns a ``numpy.ma.MaskedArray`` whose
        dead units (zero input gradient on every probe) are masked, with a
        :class:`netphys.rf.DeadUnitsWarning`.

    Raises
    ------
    NetphysError
        Unknown layer, bad ``method`` / ``input_size`` / positions (out of range for the layer's
        output map, or not -1 for an FC layer).
    AnalyticRFError
        ``method="analytic"`` on a model that is not a simple chain.

    See Also
    --------
    layer_geometry, netphys.rf.gradient_receptive_fields
    """
    func = "receptive_fields"
    check_choice(method, "method", func, ("analytic", "gradient", "auto"))
    if method != "gradient":
        info, module = _resolve_module(model, layer, func)
        hw = _input_hw(input_size, func)
        c = _infer_in_channels(model, in_channels, func)
        calls = _trace(model, hw, c, [module], func)
        try:
            geom = _compose(calls, module, info, hw, func)
        except AnalyticRFError as exc:
            if method == "analytic":
                raise
            log.info("receptive_fields: analytic RF not available for %r (%s); using the gradient method",
                     layer, exc)
        else:
            rows, cols = _check_positions(rows, cols, geom.shape, func)
            return _boxes(geom, rows, cols)
    from .gradient import _gradient_boxes

    return _gradient_boxes(model, layer, channels, rows, cols, input_size, n_samples=n_samples,
                           random_state=random_state, threshold=threshold, structural=structural,
                           batch_size=16, in_channels=in_channels, func=func, progress=progress)


def rf_table(model: nn.Module, input_size, layers: Sequence[str] | None = None, *,
             in_channels: int | None = None) -> pd.DataFrame:
    """Table of the analytic receptive fields of several layers (one forward pass in all).

    Parameters
    ----------
    model : torch.nn.Module
    input_size : int or (int, int)
    layers : sequence of str, optional
        Aliases or dotted names; default: every conv, pool and FC layer of
        :func:`netphys.models.layer_infos`, in order.
    in_channels : int, optional

    Returns
    -------
    pandas.DataFrame
        One row per layer: ``layer``, ``module``, ``kind``, ``shape`` (output, without batch),
        ``rf_size`` (nominal RF side, rows; equal to ``rf_size_cols`` for square kernels),
        ``rf_size_cols``, ``jump``, ``jump_cols``, ``start``, ``start_cols``, ``full_image`` and
        ``clipped_sizes`` (the distinct row extents of the clipped RFs over the layer's output rows,
        i.e. the RF sizes of border units up to the nominal one).

    Raises
    ------
    NetphysError, AnalyticRFError
        As :func:`layer_geometry`.
    """
    func = "rf_table"
    hw = _input_hw(input_size, func)
    if layers is None:
        layers = [li.alias for li in layer_infos(model)]
    elif isinstance(layers, str):
        layers = [layers]
    resolved = [_resolve_module(model, name, func) for name in layers]
    c = _infer_in_channels(model, in_channels, func)
    calls = _trace(model, hw, c, [m for _, m in resolved], func)
    rows = []
    for info, module in resolved:
        g = _compose(calls, module, info, hw, func)
        n_rows = g.shape[1] if g.is_spatial else 1
        r = np.arange(n_rows) if g.is_spatial else np.full(1, -1)
        b = _boxes(g, r, np.full_like(r, -1 if not g.is_spatial else 0))
        rows.append({"layer": info.alias, "module": info.module, "kind": info.kind, "shape": g.shape,
                     "rf_size": g.size[0], "rf_size_cols": g.size[1], "jump": g.jump[0],
                     "jump_cols": g.jump[1], "start": g.start[0], "start_cols": g.start[1],
                     "full_image": g.full_image,
                     "clipped_sizes": tuple(sorted(set((b[:, 1] - b[:, 0]).tolist())))})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------------
# patches
# --------------------------------------------------------------------------------------------------
def _check_images(gray_images, func: str) -> np.ndarray:
    a = np.asarray(gray_images)
    if a.ndim != 3:
        raise param_error("gray_images", func, "an array of shape (N, H, W) (grayscale images)",
                          f"an array of shape {a.shape}")
    return a


def _check_box(box, shape, func: str, param: str = "box") -> tuple[int, int, int, int]:
    b = np.asarray(box)
    if b.shape != (4,) or b.dtype.kind not in "iu":
        raise param_error(param, func, "4 ints (row_start, row_stop, col_start, col_stop)", box)
    r0, r1, c0, c1 = (int(v) for v in b)
    h, w = shape[-2:]
    if not (0 <= r0 < r1 <= h and 0 <= c0 < c1 <= w):
        raise param_error(param, func, f"a non-empty box inside the {h}x{w} images",
                          (r0, r1, c0, c1))
    return r0, r1, c0, c1


def crop_patches(gray_images, box) -> np.ndarray:
    """Crop the RF patch ``box`` out of every image.

    Parameters
    ----------
    gray_images : array-like, shape (N, H, W)
        Grayscale images at the network's input geometry.
    box : array-like of 4 ints
        ``(row_start, row_stop, col_start, col_stop)``, e.g. one row of :func:`receptive_fields`.

    Returns
    -------
    ndarray, shape (N, row_stop - row_start, col_stop - col_start)
        A view into ``gray_images`` (no copy) when it is already an ndarray.

    Raises
    ------
    NetphysError
        Images not 3-D, or a box that is empty or outside the images.
    """
    func = "crop_patches"
    a = _check_images(gray_images, func)
    r0, r1, c0, c1 = _check_box(box, a.shape, func)
    return a[:, r0:r1, c0:c1]


def iter_patches(gray_images, boxes) -> Iterator[np.ndarray]:
    """Iterate over :func:`crop_patches` for each row of ``boxes`` (shape (U, 4)), in order.

    All boxes are validated when this function is called, before any patch is produced.
    """
    func = "iter_patches"
    a = _check_images(gray_images, func)
    b = np.asarray(boxes)
    if b.ndim != 2 or b.shape[1] != 4:
        raise param_error("boxes", func, "an int array of shape (U, 4)", f"an array of shape {b.shape}")
    checked = [_check_box(row, a.shape, func, "boxes") for row in b]
    return (a[:, r0:r1, c0:c1] for r0, r1, c0, c1 in checked)
