"""One capture path: read values at call sites during a forward pass, and stop after the last one.

:func:`netphys.recording.record` (no gradient, many batches) and the synthesis objectives (with
gradient, one batch per optimisation step) both read activations through :class:`Capture`, so a site
means the same thing in both: the output of call ``k`` of a module (``CallSite``), optionally passed
through the traced activation function.
"""
from __future__ import annotations

from typing import Callable, Hashable

import torch
from torch import nn

from .._validation import NetphysError
from ..models.layers import CallSite
from .hooks import StopForward, hooks


class Capture:
    """Forward hooks that read ``{key: (CallSite, fn)}`` and stop the forward pass after the last read.

    ``fn(output) -> tensor`` runs inside the hook on the module's output at that call (a gather of
    sampled units, a channel mean, the identity): it must copy what it keeps (``index_select``,
    ``clone``), because a later in-place activation (VGG's ``ReLU(inplace=True)``) overwrites the
    module's output. A reader with the attribute ``reads_input = True`` receives the call's first
    positional input instead (what a linear readout of that layer sees; see :func:`input_reader`). Use it as a context manager; inside, ``capture(x)`` runs ``model(x)`` and returns
    ``{key: fn(output)}``. Gradients flow unless the caller runs under ``torch.no_grad()``.

    Parameters
    ----------
    model : nn.Module
    reads : dict
        ``key -> (CallSite, fn)``; several keys may read the same site.
    stop : bool, default True
        Raise :class:`StopForward` once every site has been read (the rest of the network is skipped).
        The model's return value is then not computed; ``capture.output`` holds it when ``stop`` is
        False.

    Notes
    -----
    Call counters are reset before every forward pass, so ``module:k`` is the k-th call within one
    pass. Hooks are removed in ``finally`` (none survives an exception).
    """

    def __init__(self, model: nn.Module, reads: dict, *, stop: bool = True):
        self.model = model
        self.reads = dict(reads)
        self.stop = stop
        self._by_module: dict[str, dict[int, list]] = {}
        for key, (site, fn) in self.reads.items():
            if not isinstance(site, CallSite):
                raise TypeError(f"Capture reads must be (CallSite, fn) pairs, got {site!r} for {key!r}")
            self._by_module.setdefault(site.module, {}).setdefault(site.call or 0, []).append((key, fn))
        self._n_sites = sum(len(v) for v in self._by_module.values())
        self._calls: dict[str, int] = {}
        self._got: dict[Hashable, torch.Tensor] = {}
        self._done = 0
        self._cm = None
        self.output = None

    def _make(self, module: str, by_call: dict):
        def fn(_m, _inp, output):
            k = self._calls.get(module, 0)
            self._calls[module] = k + 1
            entries = by_call.get(k)
            if entries is None:
                return
            if not isinstance(output, torch.Tensor):
                raise NetphysError(f"module {module!r} returned {type(output).__name__}, not a tensor")
            for key, f in entries:  # a reader marked ``reads_input`` gets the call's first input
                self._got[key] = f(_inp[0] if getattr(f, "reads_input", False) else output)
            self._done += 1
            if self.stop and self._done == self._n_sites:
                raise StopForward
        return fn

    def __enter__(self):
        self._cm = hooks(self.model, {m: self._make(m, bc) for m, bc in self._by_module.items()})
        self._cm.__enter__()
        return self

    def __exit__(self, *exc):
        cm, self._cm = self._cm, None
        return cm.__exit__(*exc)

    def __call__(self, x: torch.Tensor) -> dict:
        if self._cm is None:
            raise RuntimeError("use Capture as a context manager: with Capture(model, reads) as cap: cap(x)")
        self._calls, self._got, self._done, self.output = {}, {}, 0, None
        try:
            self.output = self.model(x)
        except StopForward:
            pass
        missing = [k for k in self.reads if k not in self._got]
        if missing:
            raise NetphysError(f"the forward pass never reached the call site(s) of {missing}; the sites "
                               "must run in every forward pass (check the call index)")
        got, self._got = self._got, {}
        return got


def resolve_site(model: nn.Module, layer: str, site: str, func: str):
    """``(LayerInfo, CallSite)`` read for ``layer`` at ``site`` (``"pre"``: the module's output, ``"post"``:
    after its activation), with the house error when the activation cannot be read."""
    from .._validation import check_choice, param_error
    from ..models.layers import post_error, resolve_layer

    check_choice(site, "site", func, ("pre", "post"))
    li = resolve_layer(model, layer, func, sites=True)
    st = li.pre
    if site == "post":
        why = post_error(model, li)
        if why:
            raise param_error("site", func, f"a site that can be read for layer {layer!r}", site,
                              f"{why}; use site='pre', or make the activation a module")
        if li.post is not None:
            st = li.post
    return li, st


def input_reader(gather: Callable | None = None) -> Callable:
    """``fn(input)`` for :class:`Capture` reading a call's first input (flattened to ``(n, F)`` float32)."""
    def fn(inp):
        v = gather(inp) if gather is not None else inp.flatten(1).clone()
        return v.to(torch.float32)
    fn.reads_input = True
    return fn


def site_reader(site: CallSite, gather: Callable | None = None, *, detach: bool = False) -> Callable:
    """``fn(output)`` for :class:`Capture`: gather (copying) then the site's activation function (if any).

    ``gather(output) -> tensor`` must copy; without one the output is cloned.
    """
    act = site.fn

    def fn(output):
        o = output.detach() if detach else output
        v = gather(o) if gather is not None else o.clone()
        v = v.to(torch.float32)
        return act(v) if act is not None else v
    return fn
