"""Receptive fields measured as the support of the input gradient (any differentiable model)."""
from __future__ import annotations

import contextlib
import numbers
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .._random import torch_generator
from .._validation import NetphysError, NetphysWarning, check_int, param_error
from ..recording.hooks import restored
from . import _probe, _window
from .geometry import (_check_positions, _probing_forward, _infer_in_channels, _input_hw,
                       _model_device_dtype, _output_shape, _resolve_module)

__all__ = ["gradient_receptive_fields", "DeadUnitsWarning"]


class DeadUnitsWarning(NetphysWarning):
    """Some units have a zero input gradient for every probe input; their boxes are masked."""


#: Modules whose gradient is zero on part of their input (gates): linearised in the structural probe.
_GATES = (nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.Threshold, nn.Hardshrink, nn.Softshrink, nn.Hardsigmoid,
          nn.Hardswish)


def _check_channels(channels, n_units: int, n_channels: int, func: str):
    if channels is None:
        return None
    a = np.asarray(channels)
    if a.ndim > 1 or (a.size and a.dtype.kind not in "iu"):
        raise param_error("channels", func, "None, an int or a 1-D array of ints", channels)
    a = np.atleast_1d(a).astype(np.int64)
    if a.size == 1 and n_units != 1:
        a = np.full(n_units, a[0], dtype=np.int64)
    if a.size != n_units:
        raise param_error("channels", func, f"the same length as 'rows' ({n_units})", f"length {a.size}")
    bad = (a < 0) | (a >= n_channels)
    if bad.any():
        raise param_error("channels", func, f"ints in [0, {n_channels - 1}] (the layer has {n_channels} "
                          "channels or units)", int(a[bad][0]))
    return a


def _linear_surrogate(mod: nn.Module, x: torch.Tensor):
    """The linear map whose gradient replaces ``mod``'s in the structural probe (None: keep ``mod``'s)."""
    if isinstance(mod, _GATES):
        return x  # straight through: identity gradient, whatever the gate's state
    if isinstance(mod, nn.MaxPool2d):
        d = mod.dilation if isinstance(mod.dilation, tuple) else (mod.dilation,) * 2
        if mod.return_indices or tuple(d) != (1, 1) or x.dim() not in (3, 4):
            return None
        return F.avg_pool2d(x, mod.kernel_size, mod.stride, mod.padding, ceil_mode=mod.ceil_mode,
                            count_include_pad=True)
    if isinstance(mod, nn.AdaptiveMaxPool2d):
        return None if mod.return_indices else F.adaptive_avg_pool2d(x, mod.output_size)
    return None


@contextlib.contextmanager
def _structural_gradients(model: nn.Module):
    """Hooks that keep every gate's and max-pool's output but route its gradient through a linear
    surrogate (identity for gates, the average over the pooling window for max-pools).

    The output values are unchanged (``out.detach() + (lin - lin.detach())``), so the gradient
    reaching the input is that of the network with every gate open and every pooling window fully
    used: its support is the structural receptive field, independent of the input. The hooks are
    prepended, so that a selecting hook on the same module sees the surrogate output.
    """
    stash: dict = {}
    handles = []

    def pre(mod, args):
        x = args[0] if args else None
        if not isinstance(x, torch.Tensor):
            return None
        stash[id(mod)] = x
        if getattr(mod, "inplace", False):  # the in-place gate must not overwrite the stashed input
            return (x.clone(),) + tuple(args[1:])
        return None

    def post(mod, args, out):
        x = stash.pop(id(mod), None)
        if x is None or not isinstance(out, torch.Tensor) or not x.requires_grad:
            return None
        lin = _linear_surrogate(mod, x)
        if lin is None or lin.shape != out.shape:
            return None
        return out.detach() + (lin - lin.detach())

    try:
        for m in model.modules():
            if isinstance(m, _GATES + (nn.MaxPool2d, nn.AdaptiveMaxPool2d)):
                handles.append(m.register_forward_pre_hook(pre, prepend=True))
                handles.append(m.register_forward_hook(post, prepend=True))
        yield
    finally:
        stash.clear()
        for h in handles:
            h.remove()


def gradient_receptive_fields(model: nn.Module, layer: str, channels, rows, cols, input_size, *,
                              n_samples: int = 8, random_state=0, threshold: float = 0.0,
                              structural: bool = True, batch_size: int = 16,
                              in_channels: int | None = None, progress: bool = False) -> np.ma.MaskedArray:
    """Receptive fields as the bounding box of the input-gradient support (works for any model).

    Parameters
    ----------
    model : torch.nn.Module
        Any differentiable model (ResNets included).
    layer : str
        Alias or dotted name of a leaf module.
    channels : None, int or array-like of int, shape (U,)
        Channel of each unit (for an FC layer, the unit index). An int is used for every unit. None
        sums all channels at each position: the box is then the RF of the position.
    rows, cols : int or array-like of int, shape (U,)
        Output positions; ``-1`` for FC units.
    input_size : int or (int, int)
    n_samples : int
        Number of random probe inputs: ``n_samples // 2`` standard normal images and their negatives
        (plus one more normal image when ``n_samples`` is odd), over which ``|d unit / d input|`` is
        averaged.
    random_state : int, SeedSequence or numpy Generator, default 0
        Seed of the probe inputs.
    threshold : float in [0, 1)
        A pixel belongs to the support when its mean absolute gradient (summed over input channels)
        exceeds ``threshold`` times the unit's maximum; 0 keeps every pixel with a nonzero gradient,
        which measures the RF itself (and adds the structural probe, see ``structural``); a positive
        threshold gives an effective RF (Luo et al. 2016) from the probe inputs only.
    structural : bool, default True
        With ``threshold == 0``, add one structural probe: the gradient of the network with every
        ReLU-like gate open and every max-pool replaced, for the backward pass only, by the average
        over its window (see Notes). Without it, a few random inputs miss the corners of RFs behind
        max-pools.
    batch_size : int
        Units per backward pass (one batched backward over one forward pass of a single probe image,
        or one windowed walk, see Notes); memory grows with ``batch_size`` copies of the network's
        gradients up to ``layer``.
    in_channels : int, optional
        Channels of the input (default: from the first ``Conv2d``).
    progress : bool, default False
        Show a tqdm progress bar over the units (it does not change the result).

    Returns
    -------
    numpy.ma.MaskedArray of int64, shape (U, 4)
        ``(row_start, row_stop, col_start, col_stop)``, half-open, within the image. Dead units (zero
        input gradient for every probe input) are masked (their data are ``-1``) and reported with a
        :class:`DeadUnitsWarning` naming them; no box is ever empty.

    Raises
    ------
    NetphysError
        Unknown layer, bad ``input_size`` / ``n_samples`` / ``threshold`` / positions / channels, or a
        forward pass that fails on the input.

    Warns
    -----
    DeadUnitsWarning
        When some units are dead on the probe inputs (how many, and which).

    Notes
    -----
    For each probe input ``x_s`` the network runs once (one image, stopped at the layer's first call,
    before any in-place activation overwrites it) and a batched backward pass
    (``torch.autograd.grad(..., is_grads_batched=True)``) gives ``g_u = d y_u / d x`` for a chunk of
    ``batch_size`` units, each row of the cotangent selecting one unit. The support is
    ``{(i, j) : mean_s sum_c |g_u(s)[c, i, j]| > threshold * max}``, and the box is its bounding box.
    The model runs in eval mode (modes are restored) and parameters get no gradients.

    With ``threshold == 0`` the box is the bounding box of the union of the supports over the probes,
    which only grows and never leaves the unit's connectivity bound: the pixels connected to the
    unit's position in the structural network, the support of a NaN cotangent on it (``nan * w`` is
    ``nan``, so nothing cancels). A unit is therefore finished as soon as it is alive and its box
    reaches the bound; the bound is used only when every backward node of the structural graph is a
    fixed linear map (convolutions, batch norm, sums, average pools, reshapes, ...), and is the whole
    image otherwise (e.g. behind a functional ReLU), where all probes run. The boxes are those of
    running every probe for every unit. (A model whose ``forward`` branches on the input's values
    could take a graph on other inputs that the bound does not cover.)

    On the CPU, when every backward node reaching the input is a 2-D convolution, an eval-mode batch
    norm, a ReLU/threshold/hardtanh gate, a max or average pool, a sum or a clone (VGG, AlexNet,
    ResNet, ...), the recorded graph is walked node by node instead of calling autograd, and each
    unit's gradient is computed only on the window of each feature map that its cotangent can reach
    (the unit's cone, often a fraction of a deep layer's maps), from the values saved by the forward
    pass (gate masks, max-pool indices): the gradient autograd computes, summed in another order.
    The connectivity bound of each unit's position is then propagated the same way as a boolean map,
    without a backward pass; otherwise it is probed with NaN cotangents on whole output rows and
    columns. Any other node falls back to autograd, with the same boxes.

    The gradient is exactly zero outside the true RF, so the box never exceeds it: for models with
    branches and sums (ResNet) the gradient support *is* the receptive field, which the analytic
    composition cannot give. With max-pools and ReLUs the gradient of one input flows only through
    the winning, active paths, so random inputs under-estimate the RF at its corners (a corner pixel
    reaches a pool-2 unit of AlexNet through one path only, open for about 1 input in 300). The
    structural probe removes this: its forward values are those of the network, but each gate passes
    the gradient unchanged and each max-pool spreads it over its whole window (hooks on ``nn.ReLU``-like
    modules, ``nn.MaxPool2d`` without dilation and ``nn.AdaptiveMaxPool2d``), so the gradient is that
    of a linear network with every path open and its support is the set of pixels connected to the
    unit. Gates applied as functions (``torch.relu`` in ``forward``) are not linearised; the random
    probes still cover them. A unit is dead when its gradient vanishes on every random probe (e.g. a
    ReLU that is off for all of them below a max-pool unit).

    References
    ----------
    Luo, Li, Urtasun & Zemel (2016), "Understanding the effective receptive field in deep
    convolutional neural networks", NeurIPS.
    """
    return _gradient_boxes(model, layer, channels, rows, cols, input_size, n_samples=n_samples,
                           random_state=random_state, threshold=threshold, structural=structural,
                           batch_size=batch_size, in_channels=in_channels,
                           func="gradient_receptive_fields", progress=progress)


def _probe_inputs(n_samples: int, c_in: int, hw, random_state, func: str) -> torch.Tensor:
    """``z_1, -z_1, z_2, -z_2, ...`` with standard normal ``z`` (``n_samples`` images)."""
    gen = torch_generator(random_state, func)
    z = torch.randn(((n_samples + 1) // 2, c_in) + tuple(hw), generator=gen)
    return torch.stack([z, -z], 1).flatten(0, 1)[:n_samples]


def _gradient_boxes(model, layer, channels, rows, cols, input_size, *, n_samples, random_state, threshold,
                    structural, batch_size, in_channels, func: str, progress: bool = False) -> np.ma.MaskedArray:
    info, module = _resolve_module(model, layer, func)
    hw = _input_hw(input_size, func)
    n_samples = check_int(n_samples, "n_samples", func, min_value=1)
    batch_size = check_int(batch_size, "batch_size", func, min_value=1)
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or not 0 <= threshold < 1:
        raise param_error("threshold", func, "a number in [0, 1)", threshold)
    if not isinstance(structural, (bool, np.bool_)):
        raise param_error("structural", func, "True or False", structural)
    if not isinstance(progress, (bool, np.bool_)):
        raise param_error("progress", func, "True or False", progress)
    threshold = float(threshold)
    c_in = _infer_in_channels(model, in_channels, func)
    shape = _output_shape(model, module, info.module, hw, c_in, func)
    rows, cols = _check_positions(rows, cols, shape, func)
    chans = _check_channels(channels, rows.size, shape[0], func)
    device, dtype = _model_device_dtype(model)
    samples = _probe_inputs(n_samples, c_in, hw, random_state, func).to(device=device, dtype=dtype)
    use_structural = bool(structural) and threshold == 0.0

    from tqdm.auto import tqdm

    n_units = rows.size
    state: dict = {}
    bar = tqdm(total=n_units, desc=f"gradient RFs {layer}", unit="unit", disable=not progress)
    with bar, restored(model), torch.enable_grad(), _probe.stopping_hook(model, info.module, state):
        if threshold == 0.0:
            boxes, dead = _support_boxes_exact(model, state, samples, chans, rows, cols, hw, use_structural,
                                               batch_size, bar, func)
        else:
            boxes, dead = _support_boxes_thresholded(model, state, samples, chans, rows, cols, threshold,
                                                     batch_size, bar, func)
    out = np.ma.MaskedArray(boxes, mask=np.repeat(dead[:, None], 4, axis=1))
    if dead.any():
        idx = np.flatnonzero(dead)
        shown = ", ".join(str(i) for i in idx[:20]) + (", ..." if idx.size > 20 else "")
        warnings.warn(f"{func}: {idx.size} of {n_units} unit(s) of {layer!r} have a zero input gradient "
                      f"for every one of the {n_samples} probe inputs (dead units); their boxes are "
                      f"masked: unit index(es) {shown}", DeadUnitsWarning, stacklevel=3)
        out.data[dead] = -1
    return out


def _sub(chans, idx):
    return None if chans is None else chans[idx]


class _Probes:
    """Input gradients ``sum_c |d unit / d input|`` of units on one recorded graph, chunk by chunk.

    On the CPU, a graph of known convolutional nodes is walked window by window
    (:class:`netphys.rf._window.WindowedGraph`: each unit's gradient is computed only on the part of
    each feature map that its cotangent reaches), one output position at a time; otherwise one
    vmapped autograd backward runs per chunk of ``batch_size`` units. Both give the gradient autograd
    computes (up to the order of summation), hence the same supports.
    """

    def __init__(self, leaf, out, chans, rows, cols, hw, batch_size, windowed: dict):
        self.leaf, self.out, self.chans, self.rows, self.cols = leaf, out, chans, rows, cols
        self.hw, self.batch_size, self.windowed = hw, batch_size, windowed
        self.win = None
        if windowed.get("ok", True) and out is not None and out.requires_grad:
            try:
                self.win = _window.WindowedGraph(out, leaf)
            except (_window.Unsupported, AttributeError):  # AttributeError: a torch with other saved-tensor names
                windowed["ok"] = False

    def chunks(self, idx: np.ndarray):
        """``(part, grads)`` for the units ``idx``: chunks of at most ``batch_size`` units."""
        out = self.out
        if out is None:
            for lo in range(0, idx.size, self.batch_size):
                part = idx[lo:lo + self.batch_size]
                yield part, torch.zeros((part.size,) + tuple(self.hw))
            return
        if self.win is not None:
            order = idx[np.lexsort((self.cols[idx], self.rows[idx]))]  # neighbours together
            for lo in range(0, order.size, self.batch_size):
                part = order[lo:lo + self.batch_size]
                g = self._windowed(part)
                if g is None:  # not windowed after all: plain autograd for the rest
                    yield from self._vmapped(order[lo:])
                    return
                yield part, g
            return
        yield from self._vmapped(idx)

    def _windowed(self, part):
        """Gradients of the units ``part`` (sorted by position) in one windowed walk, or None."""
        out = self.out
        pos = np.stack([self.rows[part], self.cols[part]], 1)
        cuts = np.flatnonzero((pos[1:] != pos[:-1]).any(1)) + 1
        groups = []
        for grp in np.split(np.arange(part.size), cuts):
            cot = torch.zeros((grp.size, out.shape[1]), dtype=out.dtype, device=out.device)
            if self.chans is None:
                cot.fill_(1.0)
            else:
                cot[torch.arange(grp.size), torch.as_tensor(self.chans[part[grp]])] = 1.0
            groups.append((cot, int(pos[grp[0], 0]), int(pos[grp[0], 1])))
        try:
            return torch.cat(self.win.input_grads(groups))
        except (_window.Unsupported, AttributeError):  # e.g. a broadcast found on the way: plain autograd from here
            self.win, self.windowed["ok"] = None, False
            return None

    def _vmapped(self, idx):
        """One vmapped autograd backward per chunk of ``batch_size`` units."""
        for lo in range(0, idx.size, self.batch_size):
            part = idx[lo:lo + self.batch_size]
            v = _probe.unit_cotangents(self.out, _sub(self.chans, part), self.rows[part], self.cols[part])
            yield part, _probe.batched_input_grads(self.out, self.leaf, v)


class _Bounds:
    """Connectivity bounds of the units' gradient supports, computed lazily.

    The structural graph (gates open, max-pools averaged; one forward pass on the first probe input,
    kept for the structural probes too) gives the input pixels connected to an output position: the
    support of a NaN cotangent on it (``nan * w`` is ``nan`` whatever ``w``, so nothing cancels). When
    every backward node is such a fixed, NaN-propagating linear map
    (:func:`netphys.rf._probe.dense_graph`) this bounds the support of any input's gradient; otherwise
    the bound is the whole image. For a graph of known convolutional nodes the connectivity of each
    unit's position is propagated as a boolean map (:class:`netphys.rf._window.SupportGraph`, no
    backward pass); otherwise a NaN cotangent on a whole output row (column) gives the row (column)
    extent, one batched backward row per output row (column), each probed at most once. Bounds are
    computed only for the units that need them: an alive unit whose box already spans the image
    along an axis has the image as its bound there (the box never shrinks and cannot leave the image).
    """

    def __init__(self, model, state, x, chans, rows, cols, hw, batch_size, func):
        self.model, self.state, self.x, self.func = model, state, x, func
        self.chans, self.pos, self.hw, self.batch_size = chans, (rows, cols), hw, batch_size
        n = rows.size
        self.bound = np.zeros((n, 4), dtype=np.int64)
        self.known = np.zeros((n, 2), dtype=bool)
        self.cache: tuple[dict, dict] = ({}, {})  # per axis: output row (col) -> (start, stop)
        self.boxes_at: dict = {}  # output position -> connectivity box
        self._graph = None
        self._support = None
        self._probes = None

    def graph(self):
        """``(leaf, out, kind)`` of the structural network on the first probe input; ``kind`` is
        'none' (no gradient reaches the input), 'dense' (NaN bounds hold) or 'open' (bound: image)."""
        if self._graph is None:
            with _structural_gradients(self.model):
                leaf, out = _probe.layer_output(self.model, self.state, self.x, self.func)
            if out is None or not out.requires_grad:
                kind = "none"
            else:
                kind = "dense" if _probe.dense_graph(out) else "open"
            self._graph = (leaf, out, kind)
        return self._graph

    def probes(self) -> _Probes:
        """Input gradients of units on the structural graph (the structural probe)."""
        if self._probes is None:
            leaf, out, _ = self.graph()
            rows, cols = self.pos
            self._probes = _Probes(leaf, out, self.chans, rows, cols, self.hw, self.batch_size, {})
        return self._probes

    def ensure(self, idx, boxes, alive):
        """Make the bounds of units ``idx`` known on both axes."""
        for axis in (0, 1):
            need = idx[~self.known[idx, axis]]
            spans = alive[need] & (boxes[need, 2 * axis] == 0) & (boxes[need, 2 * axis + 1] == self.hw[axis])
            self.bound[need[spans], 2 * axis:2 * axis + 2] = (0, self.hw[axis])
            self.known[need[spans], axis] = True
        need = idx[~self.known[idx].all(1)]
        if need.size == 0:
            return
        at = self._position_boxes(need)
        for axis in (0, 1):
            m = ~self.known[need, axis]
            if m.any():
                sub = need[m]
                self.bound[sub, 2 * axis:2 * axis + 2] = (
                    at[m, 2 * axis:2 * axis + 2] if at is not None else self._extents(axis, self.pos[axis][sub]))
        self.known[need] = True

    def _position_boxes(self, idx):
        """Connectivity boxes of the positions of units ``idx``, or None where the support graph does
        not apply."""
        leaf, out, kind = self.graph()
        if kind != "dense" or out.dim() != 4 or self._support is False:
            return None
        if self._support is None:
            try:
                self._support = _window.SupportGraph(out, leaf)
            except (_window.Unsupported, AttributeError):  # AttributeError: a torch with other saved-tensor names
                self._support = False
                return None
        rows, cols = self.pos[0][idx], self.pos[1][idx]
        keys = list(zip(rows.tolist(), cols.tolist()))
        missing = sorted(set(keys) - self.boxes_at.keys())
        try:
            for lo in range(0, len(missing), 64):
                part = missing[lo:lo + 64]
                got = self._support.boxes([p[0] for p in part], [p[1] for p in part])
                self.boxes_at.update(zip(part, got))
        except (_window.Unsupported, AttributeError):  # AttributeError: a torch with other saved-tensor names
            self._support = False
            return None
        return np.array([self.boxes_at[k] for k in keys], dtype=np.int64).reshape(-1, 4)

    def _extents(self, axis, pos) -> np.ndarray:
        leaf, out, kind = self.graph()
        if kind == "none":
            return np.zeros((pos.size, 2), dtype=np.int64)
        if kind == "open":
            return np.tile(np.array([0, self.hw[axis]], dtype=np.int64), (pos.size, 1))
        cache = self.cache[axis]
        if out.dim() != 4:  # FC-like output: one probe of every unit
            if None not in cache:
                v = torch.full((1,) + tuple(out.shape), float("nan"), dtype=out.dtype, device=out.device)
                box = _probe.boxes_of(_probe.batched_input_grads(out, leaf, v) != 0)[0]
                self.cache[0][None], self.cache[1][None] = tuple(box[:2]), tuple(box[2:])
            return np.tile(np.array(cache[None], dtype=np.int64), (pos.size, 1))
        missing = np.array(sorted({int(p) for p in pos} - cache.keys()), dtype=np.int64)
        for lo in range(0, missing.size, self.batch_size):
            u = missing[lo:lo + self.batch_size]
            v = torch.zeros((u.size,) + tuple(out.shape), dtype=out.dtype, device=out.device)
            i = torch.arange(u.size, device=out.device)
            if axis == 0:
                v[i, 0, :, torch.as_tensor(u, device=out.device), :] = float("nan")
            else:
                v[i, 0, :, :, torch.as_tensor(u, device=out.device)] = float("nan")
            ext = _probe.support_extent(_probe.batched_input_grads(out, leaf, v) != 0, axis)
            cache.update(zip(u.tolist(), map(tuple, ext.tolist())))
        return np.array([cache[int(p)] for p in pos], dtype=np.int64).reshape(-1, 2)


def _support_boxes_exact(model, state, samples, chans, rows, cols, hw, use_structural, batch_size, bar,
                         func):
    """Boxes and dead flags for ``threshold == 0``: the bounding box of the union of the supports.

    The union only grows, and it never leaves the connectivity bound (:class:`_Bounds`); so a unit is
    done as soon as it is alive (nonzero gradient on some random probe) and its box reaches the bound:
    the remaining probes cannot change it. Units whose bound is empty are dead. The others run through
    the probes until then (all of them in the worst case, which is the plain algorithm). Bounds are
    computed only for the units still running after a random probe, and only along an axis that their
    box does not already span (a unit whose box is the whole image needs no bound at all). Each chunk
    of units is settled (random probe, bound, structural probe) before the next one, so that the
    progress bar moves chunk by chunk.
    """
    n_units = rows.size
    windowed: dict = {}  # shared by the random probes' graphs: off once one is not windowed
    bounds = _Bounds(model, state, samples[:1], chans, rows, cols, hw, batch_size, func)
    boxes = np.zeros((n_units, 4), dtype=np.int64)
    alive = np.zeros(n_units, dtype=bool)
    struct_done = np.zeros(n_units, dtype=bool)
    finished = np.zeros(n_units, dtype=bool)

    def done(idx):
        b = bounds.bound[idx]
        known = bounds.known[idx].all(1)
        empty = known & ((b[:, 1] <= b[:, 0]) | (b[:, 3] <= b[:, 2]))
        return (known & alive[idx] & (boxes[idx] == b).all(1)) | empty

    for s in range(samples.shape[0]):
        todo = np.flatnonzero(~finished)
        if todo.size == 0:
            break
        leaf, out = _probe.layer_output(model, state, samples[s:s + 1], func)
        for part, g in _Probes(leaf, out, chans, rows, cols, hw, batch_size, windowed).chunks(todo):
            nz = g != 0
            alive[part] |= nz.flatten(1).any(1).cpu().numpy()
            boxes[part] = _probe.hull(boxes[part], _probe.boxes_of(nz))
            bounds.ensure(part, boxes, alive)
            st = part[alive[part] & ~struct_done[part] & ~done(part)] if use_structural else part[:0]
            if st.size:
                for sub, gs in bounds.probes().chunks(st):
                    boxes[sub] = _probe.hull(boxes[sub], _probe.boxes_of(gs != 0))
                struct_done[st] = True
            now = done(part)
            bar.update(int((now & ~finished[part]).sum()))
            finished[part] = now
        del leaf, out
    bar.update(int((~finished).sum()))
    return boxes, ~alive


def _support_boxes_thresholded(model, state, samples, chans, rows, cols, threshold, batch_size, bar, func):
    """Boxes and dead flags for ``threshold > 0`` (mean absolute gradient over all probes)."""
    n_units = rows.size
    boxes = np.zeros((n_units, 4), dtype=np.int64)
    dead = np.zeros(n_units, dtype=bool)
    n_samples = samples.shape[0]
    for lo in range(0, n_units, batch_size):
        part = np.arange(lo, min(lo + batch_size, n_units))
        acc = None
        for s in range(n_samples):
            leaf, out = _probe.layer_output(model, state, samples[s:s + 1], func)
            if out is None:
                continue
            v = _probe.unit_cotangents(out, _sub(chans, part), rows[part], cols[part])
            g = _probe.batched_input_grads(out, leaf, v)
            acc = g if acc is None else acc + g
            del leaf, out
        if acc is None:
            acc = torch.zeros((part.size,) + tuple(samples.shape[-2:]))
        acc /= n_samples
        dead[part] = (acc.flatten(1).amax(1) == 0).cpu().numpy()
        boxes[part] = _support_boxes(acc, threshold)
        bar.update(part.size)
    return boxes, dead


def _support_boxes(mean_abs: torch.Tensor, threshold: float) -> np.ndarray:
    """Bounding boxes (U, 4) of ``mean_abs > threshold * max`` per unit."""
    peak = mean_abs.flatten(1).amax(1).view(-1, 1, 1)
    support = (mean_abs > threshold * peak) & (mean_abs > 0)
    out = np.zeros((mean_abs.shape[0], 4), dtype=np.int64)
    for axis, dim in ((0, 2), (1, 1)):  # rows: any over columns; cols: any over rows
        hit = support.any(dim).cpu().numpy()  # (U, n)
        n = hit.shape[1]
        has = hit.any(1)
        first = hit.argmax(1)
        last = n - hit[:, ::-1].argmax(1)
        out[has, 2 * axis] = first[has]
        out[has, 2 * axis + 1] = last[has]
    return out
