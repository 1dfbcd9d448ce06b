"""Forward hooks that live only inside a context manager."""
from __future__ import annotations

import contextlib

from torch import nn


@contextlib.contextmanager
def hooks(model: nn.Module, fns: dict):
    """Register forward hooks ``{dotted_module_name: fn(module, inputs, output)}`` for the block's duration.

    Hooks are removed in ``finally``, so none survives an exception raised by the forward pass.
    """
    named = dict(model.named_modules())
    handles = []
    try:
        for name, fn in fns.items():
            handles.append(named[name].register_forward_hook(fn))
        yield
    finally:
        for h in handles:
            h.remove()


@contextlib.contextmanager
def restored(model: nn.Module, *, eval_mode: bool = True, device=None):
    """Put ``model`` in eval mode (and on ``device``) for the block; restore mode and device after."""
    # every module's own flag: model.train(flag) would also flip sub-modules deliberately kept in
    # another mode (e.g. batch norm frozen in eval while fine-tuning)
    modes = [(m, m.training) for m in model.modules()]
    params = list(model.parameters()) + list(model.buffers())
    old_device = params[0].device if params else None
    try:
        if eval_mode:
            model.eval()
        if device is not None and old_device is not None and str(device) != str(old_device):
            model.to(device)
        yield model
    finally:
        if device is not None and old_device is not None and str(device) != str(old_device):
            model.to(old_device)
        for m, flag in modes:
            m.training = flag


class StopForward(Exception):
    """Raised by the last needed hook to skip the rest of the network."""
