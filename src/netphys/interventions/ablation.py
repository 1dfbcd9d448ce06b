"""Unit ablation: clamp channels of a layer to a constant while a ``with`` block runs.

A forward hook on the layer (``site="pre"``) or on the activation after it (``site="post"``)
replaces the chosen channels of the output by ``value`` (0: the unit is silenced) for every
spatial position of a convolutional map, or the chosen features of a fully connected layer. The
hook lives only inside the context manager and is removed in ``finally``, so the network is intact
again after the block, also when the block raises.
"""
from __future__ import annotations

import contextlib
import numbers

import numpy as np
import torch
from torch import nn

from .._validation import NetphysError, check_choice, param_error
from ..models.layers import post_error, resolve_layer
from ..recording.hooks import hooks

# elementwise activations whose inverse gives the pre-activation value that the activation maps to
# ``value`` (a functional activation, ``F.relu`` in a forward, has no module whose output a hook can
# change: the clamp is applied to its input instead); name -> (inverse, valid range of value)
_INVERSES = {
    "relu": (lambda v: v, lambda v: v >= 0),
    "tanh": (np.arctanh, lambda v: -1 < v < 1),
    "sigmoid": (lambda v: np.log(v / (1 - v)), lambda v: 0 < v < 1),
}  # in-place forms (``relu_``) share their entry

__all__ = ["ablate_units", "layer_channels", "split_by_score"]


def layer_channels(model: nn.Module, layer: str, func: str = "layer_channels") -> int:
    """Number of channels (conv) or features (FC) of ``layer``'s output."""
    li = resolve_layer(model, layer, func)
    m = dict(model.named_modules())[li.module]
    n = getattr(m, "out_channels", None) or getattr(m, "out_features", None)
    if n is None:
        raise NetphysError(f"cannot tell how many channels layer {layer!r} ({type(m).__name__}) has; "
                           "name a Conv2d or Linear layer")
    return int(n)


def _check_channels(channels, n: int, func: str) -> np.ndarray:
    if isinstance(channels, numbers.Integral) and not isinstance(channels, bool):
        channels = [channels]
    try:
        a = np.asarray(list(channels))
    except TypeError:
        raise param_error("channels", func, "a sequence of channel indices", channels) from None
    if a.size == 0:
        return a.astype(np.int64)
    if a.dtype.kind == "b":
        if a.shape != (n,):
            raise param_error("channels", func, f"a boolean mask of length {n} or channel indices",
                              f"a mask of shape {a.shape}")
        return np.flatnonzero(a).astype(np.int64)
    if a.dtype.kind not in "iu":
        raise param_error("channels", func, "integer channel indices", f"dtype {a.dtype}")
    if a.ndim != 1 or a.min() < 0 or a.max() >= n:
        raise param_error("channels", func, f"channel indices in [0, {n - 1}]",
                          a.tolist() if a.ndim == 1 else f"an array of shape {a.shape}")
    if np.unique(a).size != a.size:
        raise param_error("channels", func, "distinct channel indices", a.tolist())
    return a.astype(np.int64)


@contextlib.contextmanager
def ablate_units(model: nn.Module, layer: str, channels, site: str = "post", *, value: float = 0.0):
    """Clamp ``channels`` of ``layer`` to ``value`` for the duration of the ``with`` block.

    Parameters
    ----------
    model : nn.Module
    layer : str
        Alias (``conv2``, ``fc7``) or dotted module name of a Conv2d or Linear layer.
    channels : int, sequence of int or boolean mask
        Channels (conv) or features (FC) to clamp; for a conv layer every spatial position of the
        channel's map is clamped (the paper's "unit" is the feature map). Empty: no change.
    site : {"post", "pre"}, default "post"
        ``"post"``: the output of the activation after the layer, found in the traced graph as for
        :func:`netphys.recording.record` (what the next layer receives; the layer output itself if
        it has no activation). A shared activation module is clamped only at the call that follows
        this layer (torchvision ResNet's ``relu``, called twice per block); for a ResNet block's last
        conv that call follows the residual sum, so the block output's channel is clamped. A
        functional activation (``F.relu`` in a ``forward``) is clamped through its input, set to the
        value the activation maps to ``value`` (ReLU, tanh, sigmoid). ``"pre"``: the conv/linear output.
    value : float, default 0.0
        The clamp value (0 silences the unit).

    Yields
    ------
    nn.Module
        The same ``model``, with the ablation active.

    Raises
    ------
    NetphysError
        For an unknown layer or site, channels out of range or repeated.

    Notes
    -----
    The hook returns a modified copy of the output (it never writes in place), so in-place
    activations downstream cannot undo it and the tensors of other hooks are untouched. Hooks are
    registered through :func:`netphys.recording.hooks` and removed in ``finally``.

    References
    ----------
    J. Ukita, ICLR 2019 submission, section 3.4 (after Morcos et al., ICLR 2018).
    """
    func = "ablate_units"
    check_choice(site, "site", func, ("post", "pre"))
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not np.isfinite(value):
        raise param_error("value", func, "a finite number", value)
    li = resolve_layer(model, layer, func)
    n = layer_channels(model, li.module, func)
    idx = _check_channels(channels, n, func)
    target, call, fill = li.module, li.call, float(value)
    if site == "post":
        why = post_error(model, li)
        if why:
            raise param_error("site", func, "a site a hook can change", "post",
                              f"layer {layer!r}: {why}; ablate site='pre'")
        st = li.post
        if st is not None:
            target, call = st.module, st.call
            if st.fn is not None:
                inv = _INVERSES.get((st.fn_name or "").rstrip("_"))
                if inv is None or not inv[1](fill):
                    what = (f"a value its activation {st.fn_name!r} can take" if inv is not None else
                            f"a layer whose activation is a module or ReLU/tanh/sigmoid (its activation "
                            f"{st.fn_name!r} is a function no hook can change)")
                    raise param_error("site", func, what, "post",
                                      f"layer {layer!r}, value={value}; ablate site='pre'")
                fill = float(inv[0](fill))
    if idx.size == 0:
        yield model
        return
    cache: dict = {}
    calls = {"k": 0}

    def reset(_m, _inp):
        calls["k"] = 0

    def clamp(_m, _inp, out):
        k = calls["k"]
        calls["k"] = k + 1
        if call is not None and k != call:
            return None
        if not isinstance(out, torch.Tensor) or out.ndim < 2 or out.shape[1] != n:
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise NetphysError(f"ablate_units expected the output of {target!r} to have {n} channels "
                               f"along dim 1, got {shape}")
        key = out.device
        if key not in cache:
            cache[key] = torch.as_tensor(idx, device=out.device)
        out = out.clone()
        out.index_fill_(1, cache[key], fill)
        return out

    handle = model.register_forward_pre_hook(reset)  # call indices count within one forward pass
    try:
        with hooks(model, {target: clamp}):
            yield model
    finally:
        handle.remove()


def split_by_score(scores, fraction: float = 0.5, *, descending: bool = True):
    """Indices of the top and bottom ``fraction`` of units ranked by ``scores``.

    Parameters
    ----------
    scores : array-like, shape (n,)
        E.g. each channel's gOSI.
    fraction : float, default 0.5
        Share of units in each group (``floor(fraction * n)``, at least 1).

    Returns
    -------
    top, bottom : ndarray of int
        Sorted indices of the ``k`` highest and the ``k`` lowest scores; ties are broken by index
        (stable sort), so the two groups never overlap for ``fraction <= 0.5``.
    """
    func = "split_by_score"
    s = np.asarray(scores, dtype=float).ravel()
    if s.size < 2:
        raise param_error("scores", func, "at least 2 values", s.size)
    if not np.all(np.isfinite(s)):
        raise param_error("scores", func, "finite values", "NaN or inf in scores")
    ok = isinstance(fraction, numbers.Real) and not isinstance(fraction, bool) and 0 < fraction <= 0.5
    if not ok:
        raise param_error("fraction", func, "a number in (0, 0.5]", fraction)
    k = max(1, int(np.floor(fraction * s.size)))
    order = np.argsort(-s if descending else s, kind="stable")
    return np.sort(order[:k]), np.sort(order[-k:])
