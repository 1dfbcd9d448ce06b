"""Hybrid networks: the first ``l*`` layers trained, the rest random (Fig. 4 of Prune and distill)."""
from __future__ import annotations

import copy

from torch import nn

from .._validation import check_int, param_error
from .layers import layer_infos
from .loading import ModelInfo, model_info


def layer_of_modules(model: nn.Module) -> dict[str, int]:
    """Map each parameterised leaf module to the depth of the conv/FC layer it belongs to.

    A batch-norm (or any parameterised module) after a conv/FC layer belongs to that layer.
    """
    depth_of = {li.module: li.depth for li in layer_infos(model) if li.kind in ("conv", "fc")}
    current = 0
    out = {}
    for name, m in model.named_modules():
        if not name or list(m.children()):
            continue
        if name in depth_of:
            current = depth_of[name]
        if any(True for _ in m.parameters(recurse=False)) or any(True for _ in m.buffers(recurse=False)):
            out[name] = current
    return out


def hybrid_model(trained: nn.Module, random: nn.Module, l_star: int) -> nn.Module:
    """A copy of ``trained`` whose conv/FC layers deeper than ``l_star`` carry ``random``'s weights.

    Parameters
    ----------
    trained, random : nn.Module
        Two networks of the same architecture.
    l_star : int
        Number of trained layers at the bottom (1-based depth among conv and FC layers); 0 gives the
        random network, the total depth the trained one.

    Returns
    -------
    nn.Module
        A new module (the inputs are not modified) with provenance in ``.netphys``.
    """
    func = "hybrid_model"
    n_layers = sum(1 for li in layer_infos(trained) if li.kind in ("conv", "fc"))
    l_star = check_int(l_star, "l_star", func, min_value=0, max_value=n_layers)
    ts, rs = trained.state_dict(), random.state_dict()
    if ts.keys() != rs.keys() or any(ts[k].shape != rs[k].shape for k in ts):
        raise param_error("random", func, "a network with the same architecture as 'trained'",
                          type(random).__name__)
    model = copy.deepcopy(trained)
    depths = layer_of_modules(model)
    named_r = dict(random.named_modules())
    named_h = dict(model.named_modules())
    for name, d in depths.items():
        if d > l_star:
            named_h[name].load_state_dict(named_r[name].state_dict())
    ti, ri = model_info(trained), model_info(random)
    model.netphys = ModelInfo(name=ti.name, weights=f"hybrid(l*={l_star}; trained={ti.weights}; "
                              f"random={ri.weights})", family=ti.family, input_size=ti.input_size,
                              preprocess=ti.preprocess, seed=ri.seed, sha256=None,
                              extra={"l_star": l_star})
    return model
