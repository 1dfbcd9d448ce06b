"""Receptive fields measured as the support of the input gradient (any differentiable model)."""
from __future__ import annotations

import contextlib
import logging
import numbers

import numpy as np
import torch
from torch import nn

from .._random import torch_generator
from .._validation import NetphysError, check_int, param_error
from ..recording.hooks import StopForward, restored
from .geometry import (check_positions, probing_forward, infer_in_channels, input_hw,
                       model_device_dtype, output_shape, resolve_module)

log = logging.getLogger(__name__)

__all__ = ["gradient_receptive_fields"]


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


@contextlib.contextmanager
def _selecting_hook(module: nn.Module, state: dict):
    """Forward hook that picks one unit per batch element on the module's first call, then stops."""
    def hook(mod, args, out):
        if not isinstance(out, torch.Tensor):
            raise NetphysError("the layer does not return a tensor; it cannot be a recording site")
        b = torch.arange(out.shape[0], device=out.device)
        ch, r, c = state["channels"], state["rows"], state["cols"]
        if out.dim() == 4:
            state["selected"] = out[b, :, r, c].sum(1) if ch is None else out[b, ch, r, c]
        else:
            flat = out.reshape(out.shape[0], -1)
            state["selected"] = flat.sum(1) if ch is None else flat[b, ch]
        raise StopForward

    handle = module.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def gradient_receptive_fields(model: nn.Module, layer: str, channels, rows, cols, input_size,
                              n_samples: int = 8, random_state=None, threshold: float = 0.0, *,
                              batch_size: int = 16, in_channels: int | None = None) -> np.ndarray:
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
        Number of random inputs (standard normal pixels) over which ``|d unit / d input|`` is averaged.
    random_state : None, int, SeedSequence or numpy Generator
        Seed of the random inputs.
    threshold : float in [0, 1)
        A pixel belongs to the support when its mean absolute gradient (summed over input channels)
        exceeds ``threshold`` times the unit's maximum; 0 keeps every pixel with a nonzero gradient,
        which measures the RF itself.
    batch_size : int
        Units per forward/backward pass; memory grows with ``batch_size`` copies of the network's
        activations up to ``layer`` (reduce it for large inputs and deep layers).
    in_channels : int, optional
        Channels of the input (default: from the first ``Conv2d``).

    Returns
    -------
    ndarray of int64, shape (U, 4)
        ``(row_start, row_stop, col_start, col_stop)``, half-open, within the image. A unit whose
        gradient vanishes for every sample gets ``(0, 0, 0, 0)`` (and a warning is logged).

    Raises
    ------
    NetphysError
        Unknown layer, bad ``input_size`` / ``n_samples`` / ``threshold`` / positions / channels, or a
        forward pass that fails on the input.

    Notes
    -----
    For each random input ``x_s`` and each batch of units, the input is replicated once per unit,
    one unit is selected per batch element (on the layer's first call, before any in-place activation
    overwrites it; the pass then stops), the selections are summed and a single backward gives every
    unit's own gradient ``g_u = d y_u / d x`` (batch elements are independent in eval mode). The
    support is ``{(i, j) : mean_s sum_c |g_u(s)[c, i, j]| > threshold * max}``, and the box is its
    bounding box. The model runs in eval mode (modes are restored) and parameters get no gradients.

    The gradient is exactly zero outside the true RF, so the box never exceeds it: for models with
    branches and sums (ResNet) the gradient support *is* the receptive field, which the analytic
    composition cannot give. With max-pools and ReLUs the gradient of one input flows through only the
    winning, active paths, so a single random input can under-estimate the RF (notably at its corners);
    averaging absolute gradients over ``n_samples`` inputs makes such misses unlikely.

    References
    ----------
    Luo, Li, Urtasun & Zemel (2016), "Understanding the effective receptive field in deep
    convolutional neural networks", NeurIPS.
    """
    return _gradient_boxes(model, layer, channels, rows, cols, input_size, n_samples, random_state, threshold,
                           batch_size, in_channels, "gradient_receptive_fields")


def _gradient_boxes(model, layer, channels, rows, cols, input_size, n_samples, random_state, threshold,
                    batch_size, in_channels, func: str) -> np.ndarray:
    info, module = resolve_module(model, layer, func)
    hw = input_hw(input_size, func)
    n_samples = check_int(n_samples, "n_samples", func, min_value=1)
    batch_size = check_int(batch_size, "batch_size", func, min_value=1)
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or not 0 <= threshold < 1:
        raise param_error("threshold", func, "a number in [0, 1)", threshold)
    threshold = float(threshold)
    c_in = infer_in_channels(model, in_channels, func)
    shape = output_shape(model, module, info.module, hw, c_in, func)
    rows, cols = check_positions(rows, cols, shape, func)
    chans = _check_channels(channels, rows.size, shape[0], func)
    gen = torch_generator(random_state, func)
    device, dtype = model_device_dtype(model)
    samples = torch.randn((n_samples, c_in) + hw, generator=gen).to(device=device, dtype=dtype)

    n_units = rows.size
    boxes = np.zeros((n_units, 4), dtype=np.int64)
    state: dict = {}
    with restored(model), torch.enable_grad(), _selecting_hook(module, state):
        for lo in range(0, n_units, batch_size):
            hi = min(lo + batch_size, n_units)
            state["rows"] = torch.as_tensor(rows[lo:hi], device=device)
            state["cols"] = torch.as_tensor(cols[lo:hi], device=device)
            state["channels"] = None if chans is None else torch.as_tensor(chans[lo:hi], device=device)
            acc = torch.zeros((hi - lo,) + hw, device=device, dtype=torch.float32)
            for s in range(n_samples):
                leaf = samples[s:s + 1].expand(hi - lo, -1, -1, -1).clone().requires_grad_(True)
                state.pop("selected", None)
                with probing_forward(leaf.shape, func):
                    model(leaf.clone())  # a clone, so that in-place first modules cannot touch the leaf
                sel = state.pop("selected", None)
                if sel is None or not sel.requires_grad:
                    continue
                (grad,) = torch.autograd.grad(sel.sum(), leaf, allow_unused=True)
                if grad is not None:
                    acc += grad.detach().abs().sum(1).float()
            boxes[lo:hi] = _support_boxes(acc / n_samples, threshold)
    empty = np.flatnonzero(boxes[:, 1] == boxes[:, 0])
    if empty.size:
        log.warning("gradient_receptive_fields: %d unit(s) of %r have a zero input gradient for every "
                    "sample (dead units); their boxes are (0, 0, 0, 0)", empty.size, layer)
    return boxes


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
