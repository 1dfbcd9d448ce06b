"""Batched input-gradient probes for :mod:`netphys.rf.gradient`.

One forward pass per probe input (batch of one, stopped at the layer), then one vmapped backward pass
(``torch.autograd.grad(..., is_grads_batched=True)``) per chunk of units: each row of the batched
cotangent selects one unit, so a chunk of ``k`` units costs ``k`` backward rows but a single forward.
"""
from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import nn

from .._validation import NetphysError
from ..recording.hooks import StopForward, hooks
from .geometry import _probing_forward

#: Backward nodes whose input gradient is a fixed (input-independent) linear map that propagates a NaN
#: cotangent to every input it is connected to (``nan * 0`` is ``nan``): behind these alone, the NaN
#: support of the structural probe bounds the gradient support of every input. Gates, max-pools,
#: ``where``, clamps and data-dependent indexing are absent on purpose.
_DENSE_NODES = frozenset("""
AccumulateGrad ConvolutionBackward0 MkldnnConvolutionBackward0 CudnnConvolutionBackward0
SlowConv2DBackward0 ThnnConv2DBackward0 ConvDepthwise2DBackward0 AddBackward0 AddBackward1 SubBackward0
SubBackward1 MulBackward0 MulBackward1 DivBackward0 DivBackward1 NegBackward0 NativeBatchNormBackward0
CudnnBatchNormBackward0 MiopenBatchNormBackward0 NativeLayerNormBackward0 NativeGroupNormBackward0
AvgPool2DBackward0 AdaptiveAvgPool2DBackward0 ViewBackward0 ReshapeAliasBackward0 UnsafeViewBackward0
CloneBackward0 ExpandBackward0 PermuteBackward0 TransposeBackward0 TBackward0 SqueezeBackward0
SqueezeBackward1 SqueezeBackward2 UnsqueezeBackward0 CatBackward0 SliceBackward0 SelectBackward0
SplitBackward0 SplitWithSizesBackward0 UnbindBackward0 AddmmBackward0 MmBackward0 BmmBackward0
MvBackward0 SumBackward0 SumBackward1 MeanBackward0 MeanBackward1 SigmoidBackward0 TanhBackward0
GeluBackward0 SiluBackward0 ExpBackward0 PowBackward0 SqrtBackward0 RsqrtBackward0 ToCopyBackward0
AliasBackward0 ConstantPadNdBackward0 LinearBackward0 AsStridedBackward0 FlattenBackward0
""".split())


def dense_graph(out: torch.Tensor) -> bool:
    """True when every backward node below ``out`` is in :data:`_DENSE_NODES`."""
    seen, todo = set(), [out.grad_fn]
    while todo:
        fn = todo.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        if type(fn).__name__ not in _DENSE_NODES:
            return False
        todo.extend(f for f, _ in fn.next_functions)
    return True


def stopping_hook(model: nn.Module, name: str, state: dict):
    """Forward hook on module ``name`` that keeps its output on its first call, then stops the pass
    (a :func:`netphys.recording.hooks.hooks` context: removed on exit, also after an exception)."""
    def hook(mod, args, out):
        if not isinstance(out, torch.Tensor):
            raise NetphysError("the layer does not return a tensor; it cannot be a recording site")
        state["out"] = out
        raise StopForward

    return hooks(model, {name: hook})


def layer_output(model: nn.Module, state: dict, x: torch.Tensor, func: str):
    """``(leaf, out)``: the input leaf (batch of one) and the layer's output on it."""
    leaf = x.clone().requires_grad_(True)
    state.pop("out", None)
    with _probing_forward(leaf.shape, func):
        model(leaf.clone())  # a clone, so that in-place first modules cannot touch the leaf
    return leaf, state.pop("out", None)


def unit_cotangents(out: torch.Tensor, chans, rows, cols, fill: float = 1.0) -> torch.Tensor:
    """Batched cotangent ``(k,) + out.shape``: row ``i`` is ``fill`` at unit ``i`` (all channels of its
    position when ``chans`` is None), zero elsewhere."""
    k = rows.size
    v = torch.zeros((k,) + tuple(out.shape), dtype=out.dtype, device=out.device)
    i = torch.arange(k, device=out.device)
    if out.dim() == 4:
        r, c = torch.as_tensor(rows, device=out.device), torch.as_tensor(cols, device=out.device)
        if chans is None:
            v[i, 0, :, r, c] = fill
        else:
            v[i, 0, torch.as_tensor(chans, device=out.device), r, c] = fill
    else:
        flat = v.view(k, -1)
        if chans is None:
            flat.fill_(fill)
        else:
            flat[i, torch.as_tensor(chans, device=out.device)] = fill
    return v


def batched_input_grads(out: torch.Tensor, leaf: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``sum_c |v_i . d out / d leaf|`` for every row of ``v``: shape ``(k, H, W)``, float32."""
    k = v.shape[0]
    if out is None or not out.requires_grad:
        return torch.zeros((k,) + tuple(leaf.shape[-2:]), device=leaf.device)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*performance drop.*")
            (g,) = torch.autograd.grad(out, leaf, v, retain_graph=True, allow_unused=True,
                                       is_grads_batched=True)
    except RuntimeError:  # an op without a batching rule: one backward row at a time
        rows = [torch.autograd.grad(out, leaf, v[i], retain_graph=True, allow_unused=True)[0]
                for i in range(k)]
        g = None if rows[0] is None else torch.stack(rows)
    if g is None:
        return torch.zeros((k,) + tuple(leaf.shape[-2:]), device=leaf.device)
    return g.detach().flatten(0, 1).abs().sum(1).float() if g.dim() == 5 else g.abs().sum(1).float()


def support_extent(s: torch.Tensor, axis: int) -> np.ndarray:
    """Half-open extent ``(start, stop)`` along ``axis`` (0: rows, 1: cols) of boolean maps (k, H, W);
    ``(0, 0)`` where a map is empty."""
    hit = s.any(2 if axis == 0 else 1).cpu().numpy()
    n = hit.shape[1]
    has = hit.any(1)
    out = np.zeros((hit.shape[0], 2), dtype=np.int64)
    out[has, 0] = hit[has].argmax(1)
    out[has, 1] = n - hit[has, ::-1].argmax(1)
    return out


def boxes_of(s: torch.Tensor) -> np.ndarray:
    """Bounding boxes ``(k, 4)`` of boolean maps (k, H, W); zeros where empty."""
    return np.concatenate([support_extent(s, 0), support_extent(s, 1)], 1)


def hull(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bounding box of the union of two box arrays (empty boxes have ``start == stop``)."""
    ea = (a[:, 1] <= a[:, 0]) | (a[:, 3] <= a[:, 2])
    eb = (b[:, 1] <= b[:, 0]) | (b[:, 3] <= b[:, 2])
    out = np.stack([np.minimum(a[:, 0], b[:, 0]), np.maximum(a[:, 1], b[:, 1]),
                    np.minimum(a[:, 2], b[:, 2]), np.maximum(a[:, 3], b[:, 3])], 1)
    out[ea] = b[ea]
    out[eb & ~ea] = a[eb & ~ea]
    return out
