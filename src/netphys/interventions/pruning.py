"""CAR filter pruning: greedy structural compression of one layer by classification accuracy reduction.

The importance of filter ``i`` of layer ``L`` is its classification accuracy reduction [1]_

.. math:: \\mathrm{CAR}(i, L) = \\mathrm{Acc}(N) - \\mathrm{Acc}(N(-i, L)),

where ``N(-i, L)`` is the network without filter ``i`` and its connections to the next layer.
:class:`GreedyPruner` recomputes CAR for every remaining filter at each iteration and removes the least
important one (Algorithm 1 of [1]_), until a target share of filters is kept, a number of filters is
kept, or the accuracy on the selection split would drop by more than a relative ``max_drop`` (5 %,
Table 2.1 of [1]_). The baselines of the thesis (mean incoming and mean outgoing weight magnitude [2]_,
random pruning over 10 repeats) and a one-shot CAR variant produce paths of the same format.

Removal is by masking, never by editing weights: the filter's channel is set to zero where the next
layer reads it (the output of the activation after the layer; the batch-norm output when there is no
activation module; the layer's own output when there is neither). Zeroing after the batch norm matters:
a zeroed convolution would still pass the batch norm's shift ``beta - gamma * mu / sigma`` on as a
constant map. Masking equals physically removing the filter, its batch-norm entries and the next
layer's input channel (:func:`remove_filters`; tested to 1e-5).

Fast CAR: the network prefix up to the masked site is run once per image set and its output cached
(with any other prefix value used later, such as the input of a residual block); each candidate is then
the cached activation with one more channel zeroed, passed through the suffix only, several candidates
stacked along the batch dimension per forward. The split is made on the :func:`torch.fx` graph, so it
works for any traceable model (VGG, EfficientNet-Lite's blocks, ResNets); a model that cannot be traced
falls back to full forward passes with a masking hook (same numbers, slower).

References
----------
.. [1] R. Abbasi-Asl, "Interpretable machine learning with applications in neuroscience", PhD thesis,
   UC Berkeley (2018), chapter 2 (after Abbasi-Asl & Yu, "Structural compression of convolutional
   neural networks based on greedy filter pruning", arXiv:1705.07356, 2017).
   ``shared/seeds/car-pruning-deeptune-thesis.txt``.
.. [2] H. Hu, R. Peng, Y.-W. Tai, C.-K. Tang, "Network trimming: a data-driven neuron pruning approach
   towards efficient deep architectures", arXiv:1607.03250 (2016); reference [26] of [1]_.
"""
from __future__ import annotations

import contextlib
import copy
import logging
import math
import numbers
from dataclasses import dataclass, field
from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from .. import __version__
from .._random import check_random_state, spawn_seeds, torch_generator
from .._validation import NetphysError, check_choice, check_int, param_error
from ..models.layers import layer_infos, resolve_layer
from ..recording.hooks import hooks, restored

log = logging.getLogger(__name__)

__all__ = ["GreedyPruner", "METHODS", "LayerSpec", "car_importance", "class_dependence", "finetune",
           "layer_costs", "layer_specs", "mask_filters", "random_pruning", "remove_filters", "split_halves"]

#: Pruning orders: greedy CAR (recomputed every iteration), one-shot CAR (ranked once on the intact
#: network), mean incoming / outgoing weight magnitude (smallest first) and uniform random.
METHODS = ("car", "car_oneshot", "incoming", "outgoing", "random")

_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
# modules that act on every channel separately (a removed channel stays removed through them)
_PER_CHANNEL = (*_BN, nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid,
                nn.Hardswish, nn.Hardtanh, nn.Mish, nn.Softplus, nn.MaxPool2d, nn.AvgPool2d,
                nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Dropout, nn.Dropout2d, nn.Identity, nn.Flatten)
_TIE_ATOL = 1e-12


# ---------------------------------------------------------------------------------------------- target
@dataclass(frozen=True)
class _Target:
    """A prunable layer: where its channels are masked and which layer reads them."""

    layer: str  # as the user named it
    module: str  # dotted name of the Conv2d / Linear
    n: int  # filters (output channels / features)
    site: str  # module whose output is masked
    call: int | None  # call index of ``site`` (None: its only call)
    site_kind: str  # "activation", "batchnorm" or "layer"
    bn: str | None  # batch norm right after the layer
    next: str | None  # next Conv2d / Linear in registration order (the layer reading the channels)


def _leaves(model: nn.Module) -> list:
    return [(n, m) for n, m in model.named_modules() if n and not list(m.children())]


def _resolve_target(model: nn.Module, layer, func: str) -> _Target:
    if not isinstance(model, nn.Module):
        raise param_error("model", func, "a torch.nn.Module", type(model).__name__)
    if not isinstance(layer, str) or not layer:
        raise param_error("layer", func, "the alias or dotted name of a Conv2d or Linear layer", layer)
    li = resolve_layer(model, layer, func)
    named = dict(model.named_modules())
    m = named[li.module]
    if not isinstance(m, (nn.Conv2d, nn.Linear)):
        convs = [x.alias for x in layer_infos(model) if x.kind == "conv"][:3]
        raise param_error("layer", func, "a Conv2d or Linear layer (a layer with filters)",
                          f"{layer!r} ({type(m).__name__})",
                          "name a convolution" + (f" such as {', '.join(map(repr, convs))}" if convs else ""))
    n = int(m.out_channels if isinstance(m, nn.Conv2d) else m.out_features)
    leaves = _leaves(model)
    names = [nm for nm, _ in leaves]
    i = names.index(li.module)
    bn = None
    if i + 1 < len(leaves) and isinstance(leaves[i + 1][1], _BN) and leaves[i + 1][1].num_features == n:
        bn = names[i + 1]
    nxt = next((nm for nm, mm in leaves[i + 1:] if isinstance(mm, (nn.Conv2d, nn.Linear))), None)
    post = li.post
    if post is not None and post.fn is None:
        site, call, kind = post.module, post.call, "activation"
    else:
        # a functional activation (F.relu in forward): the channel is zeroed before it, so it must map 0 to 0
        if post is not None and float(post.fn(torch.zeros(1))) != 0.0:
            raise param_error("layer", func, "a layer whose activation is a module, or maps 0 to 0",
                              f"{layer!r} (activation {post.fn_name!r})",
                              "a zeroed input would not remove the channel; register the activation "
                              "as a module")
        site, call, kind = (bn, None, "batchnorm") if bn is not None else (li.module, li.call, "layer")
    return _Target(layer, li.module, n, site, call, kind, bn, nxt)


def _check_filters(filters, n: int, func: str, param: str = "filters") -> np.ndarray:
    """Removed filters as sorted unique int indices (from indices or a boolean 'removed' mask)."""
    if isinstance(filters, numbers.Integral) and not isinstance(filters, bool):
        filters = [filters]
    if isinstance(filters, torch.Tensor):
        filters = filters.detach().cpu().numpy()
    try:
        a = np.asarray(list(filters))
    except TypeError:
        raise param_error(param, func, "filter indices or a boolean mask of removed filters", filters) from None
    if a.size == 0:
        return np.zeros(0, dtype=np.int64)
    if a.dtype.kind == "b":
        if a.shape != (n,):
            raise param_error(param, func, f"a boolean mask of length {n} (True: removed) or filter indices",
                              f"a mask of shape {a.shape}")
        return np.flatnonzero(a).astype(np.int64)
    if a.dtype.kind not in "iu" or a.ndim != 1:
        raise param_error(param, func, "integer filter indices", f"{a.dtype} array of shape {a.shape}")
    if a.min() < 0 or a.max() >= n:
        raise param_error(param, func, f"filter indices in [0, {n - 1}]", a.tolist())
    if np.unique(a).size != a.size:
        raise param_error(param, func, "distinct filter indices", a.tolist())
    return np.sort(a).astype(np.int64)


@contextlib.contextmanager
def _masked(model: nn.Module, target: _Target, removed: np.ndarray):
    """Zero channels ``removed`` at ``target.site`` while the block runs (hook removed in finally)."""
    if removed.size == 0:
        yield model
        return
    cache: dict = {}
    calls = {"k": 0}

    def reset(_m, _inp):
        calls["k"] = 0

    def zero(_m, _inp, out):
        k = calls["k"]
        calls["k"] = k + 1
        if target.call is not None and k != target.call:
            return None
        if not isinstance(out, torch.Tensor) or out.ndim < 2 or out.shape[1] != target.n:
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise NetphysError(f"pruning expected the output of {target.site!r} to have {target.n} channels "
                               f"along dim 1, got {shape}")
        if out.device not in cache:
            cache[out.device] = torch.as_tensor(removed, device=out.device)
        out = out.clone()
        out.index_fill_(1, cache[out.device], 0.0)
        return out

    handle = model.register_forward_pre_hook(reset)
    try:
        with hooks(model, {target.site: zero}):
            yield model
    finally:
        handle.remove()


@contextlib.contextmanager
def mask_filters(model: nn.Module, layer: str, filters):
    """Remove ``filters`` of ``layer`` (by masking their channels) for the duration of the ``with`` block.

    Parameters
    ----------
    model : nn.Module
    layer : str
        Alias (``conv5_1``, ``block14_expand``) or dotted module name of a Conv2d or Linear layer.
    filters : int, sequence of int or boolean mask of length n_filters
        The filters to remove (a mask: True = removed, e.g. ``~pruner.kept_``). Empty: no change.

    Yields
    ------
    nn.Module
        The same ``model`` with the filters removed.

    Raises
    ------
    NetphysError
        For a layer without filters, indices out of range or repeated.

    Notes
    -----
    The channel is set to zero at the output of the activation module after the layer (what the next
    layer reads), else of the batch norm after it, else of the layer itself, so the network computes
    exactly what the network without the filter, its batch-norm entries and the next layer's input
    channel computes (:func:`remove_filters`). The weights are never changed; the hook is removed in
    ``finally``.

    References
    ----------
    R. Abbasi-Asl, PhD thesis (2018), chapter 2: ``N(-i, L)``.
    """
    func = "mask_filters"
    target = _resolve_target(model, layer, func)
    removed = _check_filters(filters, target.n, func)
    with _masked(model, target, removed):
        yield model


# ---------------------------------------------------------------------------------------------- data
@dataclass
class _Data:
    """Labelled network input held in memory (uint8 images normalised per chunk, or float tensors)."""

    x: torch.Tensor
    normalise: Callable | None
    labels: np.ndarray  # dataset labels (class coordinate)
    targets: np.ndarray  # model output index of each stimulus
    class_names: list = field(default_factory=list)
    sources: list | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def batch(self, idx, device) -> torch.Tensor:
        x = self.x[torch.as_tensor(idx, dtype=torch.long)].to(device)
        return self.normalise(x).contiguous() if self.normalise is not None else x


def _map_targets(labels: np.ndarray, class_names: list, class_index, param: str, func: str,
                 folders=None) -> np.ndarray:
    if class_index is None:
        return labels.astype(np.int64)
    if isinstance(class_index, Mapping):
        out = []
        for j, lab in enumerate(labels):
            key = int(lab)
            if key in class_index:
                out.append(class_index[key])
            elif class_names and key < len(class_names) and class_names[key] in class_index:
                out.append(class_index[class_names[key]])
            elif folders is not None and folders[j] in class_index:  # WordNet id folders (Imagenette)
                out.append(class_index[folders[j]])
            else:
                name = class_names[key] if class_names and key < len(class_names) else key
                raise param_error("class_index", func, "a mapping with an entry for every label or class name",
                                  f"no entry for label {key} ({name!r}) of {param}")
        return np.asarray(out, dtype=np.int64)
    idx = np.asarray(class_index)
    if idx.ndim != 1 or idx.dtype.kind not in "iu" or labels.max() >= idx.size:
        raise param_error("class_index", func, f"a sequence of output indices, one per label (>= {labels.max() + 1})",
                          class_index)
    return idx[labels].astype(np.int64)


def _as_data(obj, param: str, func: str, class_index) -> _Data:
    from ..stimuli import StimulusSet

    if isinstance(obj, StimulusSet):
        labels = np.asarray(obj.labels)
        if len(obj) == 0:
            raise param_error(param, func, "a non-empty labelled StimulusSet", obj)
        if labels.dtype.kind not in "iu" or labels.min() < 0:
            raise param_error(param, func, "a labelled StimulusSet (labels >= 0)", obj,
                              "build it from a folder with class sub-folders or pass labels")
        u8 = torch.from_numpy(np.ascontiguousarray(obj.load_images())).permute(0, 3, 1, 2).contiguous()
        names = list(obj.class_names)
        sources = list(obj.coords["source"]) if "source" in obj.coords else None
        folders = list(obj.coords["folder"]) if "folder" in obj.coords else None
        return _Data(u8, obj.preprocess.normalise, labels.astype(np.int64),
                     _map_targets(labels, names, class_index, param, func, folders), names, sources)
    if isinstance(obj, (tuple, list)) and len(obj) == 2:
        x, y = obj
        if isinstance(x, np.ndarray):
            x = torch.from_numpy(x)
        if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.ndim < 2 or len(x) == 0:
            raise param_error(param, func, "a labelled StimulusSet or a pair (inputs, labels) of a float "
                              "tensor (n, ...) and n integer labels", type(x).__name__)
        y = np.asarray(y.detach().cpu() if isinstance(y, torch.Tensor) else y)
        if y.shape != (len(x),) or y.dtype.kind not in "iu" or y.min() < 0:
            raise param_error(param, func, f"{len(x)} non-negative integer labels", f"{y.dtype} of shape {y.shape}")
        if not torch.isfinite(x).all():
            raise param_error(param, func, "finite inputs", "inputs containing NaN or inf")
        return _Data(x.detach(), None, y.astype(np.int64), _map_targets(y, [], class_index, param, func))
    raise param_error(param, func, "a labelled StimulusSet or a pair (inputs, labels)", type(obj).__name__)


def split_halves(stimuli, *, random_state=0):
    """Split a labelled stimulus set into two disjoint halves, stratified by class.

    The thesis computes CAR on one half of the test set and reports accuracy on the other [1]_.

    Parameters
    ----------
    stimuli : StimulusSet
        Labelled.
    random_state : None, int or Generator, default 0

    Returns
    -------
    selection, test : StimulusSet
        Per class, a random ``ceil(n_c / 2)`` images go to ``selection`` and the rest to ``test``.

    References
    ----------
    .. [1] R. Abbasi-Asl, PhD thesis (2018), section 2.3.
    """
    from ..stimuli import StimulusSet

    func = "split_halves"
    if not isinstance(stimuli, StimulusSet) or len(stimuli) < 2:
        raise param_error("stimuli", func, "a labelled StimulusSet with at least 2 stimuli", stimuli)
    rng = check_random_state(random_state, func)
    labels = stimuli.labels
    a, b = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        h = (len(idx) + 1) // 2
        a.append(idx[:h])
        b.append(idx[h:])
    return stimuli.take(np.sort(np.concatenate(a))), stimuli.take(np.sort(np.concatenate(b)))


# ---------------------------------------------------------------------------------------------- scoring
def _fx_split(model: nn.Module, target: _Target):
    """``(prefix, suffix)`` GraphModules cut at ``target.site``, or None when the model cannot be split.

    ``prefix(x)`` returns a tuple of boundary tensors, the masked site first; ``suffix(*boundary)``
    returns the model's output. The GraphModules share the model's sub-modules (and so its weights).
    """
    import torch.fx as fx

    try:
        gm = fx.symbolic_trace(model)
    except Exception as exc:  # noqa: BLE001 - untraceable models fall back to full forward passes
        log.info("torch.fx cannot trace %s (%s); CAR uses full forward passes", type(model).__name__, exc)
        return None
    nodes = list(gm.graph.nodes)
    hits = [n for n in nodes if n.op == "call_module" and n.target == target.site]
    k = target.call or 0
    if len(hits) <= k or (target.call is None and len(hits) != 1):
        return None
    cut = hits[k]
    pos = {n: i for i, n in enumerate(nodes)}
    after = [n for n in nodes if pos[n] > pos[cut]]
    boundary, consts = [cut], []
    for n in after:
        for a in n.all_input_nodes:
            if pos[a] <= pos[cut] and a not in boundary and a not in consts:
                (consts if a.op == "get_attr" else boundary).append(a)
    pg, env = fx.Graph(), {}
    for n in nodes[:pos[cut] + 1]:
        env[n] = pg.node_copy(n, lambda a: env[a])
    pg.output(tuple(env[b] for b in boundary))
    sg, env2 = fx.Graph(), {}
    for j, b in enumerate(boundary):
        env2[b] = sg.placeholder(f"boundary_{j}")
    for c in consts:
        env2[c] = sg.node_copy(c, lambda a: env2[a])
    for n in after:
        env2[n] = sg.node_copy(n, lambda a: env2[a])
    return fx.GraphModule(gm, pg), fx.GraphModule(gm, sg)


@dataclass
class _Result:
    """Scores of k candidate networks on one image set."""

    correct: np.ndarray  # (k, n) bool
    nll: np.ndarray  # (k, n) float64
    score: np.ndarray  # (k,)

    def accuracy(self) -> np.ndarray:
        return self.correct.mean(axis=1)

    def loss(self) -> np.ndarray:
        return self.nll.mean(axis=1)

    def class_accuracy(self, labels: np.ndarray, classes: np.ndarray) -> np.ndarray:
        out = np.full((self.correct.shape[0], classes.size), np.nan)
        for j, c in enumerate(classes):
            sel = labels == c
            if sel.any():
                out[:, j] = self.correct[:, sel].mean(axis=1)
        return out


class _Evaluator:
    """Scores candidate masks of one layer on one labelled image set (fast suffix path or full forwards)."""

    def __init__(self, model, target: _Target, data: _Data, *, score, fast: bool, batch_size: int, func: str):
        self.model, self.target, self.data, self.score = model, target, data, score
        self.batch_size, self.func = batch_size, func
        self.device = next((p.device for p in model.parameters()), torch.device("cpu"))
        self.targets = torch.as_tensor(data.targets, device=self.device)
        self.split = _fx_split(model, target) if fast else None
        self.cache = None
        if self.split is not None:
            self.cache = self._build_cache()

    @property
    def fast(self) -> bool:
        return self.cache is not None

    def _chunks(self, n: int, size: int):
        for s in range(0, n, size):
            yield torch.arange(s, min(n, s + size))

    def _build_cache(self):
        prefix = self.split[0]
        parts = None
        for idx in self._chunks(len(self.data), self.batch_size):
            out = prefix(self.data.batch(idx, self.device))
            if not all(isinstance(o, torch.Tensor) and o.ndim >= 1 and o.shape[0] == len(idx) for o in out):
                log.info("a value crossing the cut at %s is not a per-image tensor; CAR uses full forward "
                         "passes", self.target.site)
                return None
            parts = [[o] for o in out] if parts is None else [p + [o] for p, o in zip(parts, out)]
        return [torch.cat(p) for p in parts]

    def _check_logits(self, logits):
        if logits.ndim != 2 or int(self.data.targets.max()) >= logits.shape[1]:
            raise param_error("model", self.func, "a classifier with logits (n, n_classes) covering every target",
                              f"output of shape {tuple(logits.shape)} for targets up to {int(self.data.targets.max())}",
                              "map the labels to output indices with class_index=")

    def _finish(self, logits_k, tk):
        """``logits_k`` (k, m, K) -> correct (k, m), nll (k, m)."""
        k, m, K = logits_k.shape
        correct = (logits_k.argmax(-1) == tk[None]).cpu().numpy()
        nll = F.cross_entropy(logits_k.reshape(k * m, K), tk.repeat(k), reduction="none").view(k, m)
        return correct, nll.double().cpu().numpy()

    def run(self, removed_masks: np.ndarray) -> _Result:
        """Scores of the networks with channels ``removed_masks[j]`` (bool (k, n_filters)) zeroed."""
        removed_masks = np.atleast_2d(removed_masks)
        k_all, n = removed_masks.shape[0], len(self.data)
        per_fwd = max(1, self.batch_size // n) if self.fast and n < self.batch_size else 1
        size = min(n, self.batch_size)
        correct = np.zeros((k_all, n), dtype=bool)
        nll = np.zeros((k_all, n))
        scores = np.full(k_all, np.nan)
        with torch.no_grad():
            for g0 in range(0, k_all, per_fwd):
                group = removed_masks[g0:g0 + per_fwd]
                k = group.shape[0]
                logits_all = [] if callable(self.score) else None
                for idx in self._chunks(n, size):
                    tk = self.targets[idx.to(self.device)]
                    if self.fast:
                        lk = self._suffix(group, idx)
                    else:
                        with _masked(self.model, self.target, np.flatnonzero(group[0])):
                            lk = self.model(self.data.batch(idx, self.device))[None]
                    if g0 == 0 and idx[0] == 0:
                        self._check_logits(lk[0])
                    c, l_ = self._finish(lk, tk)
                    correct[g0:g0 + k, idx.numpy()] = c
                    nll[g0:g0 + k, idx.numpy()] = l_
                    if logits_all is not None:
                        logits_all.append(lk)
                for j in range(k):
                    if logits_all is None:
                        scores[g0 + j] = correct[g0 + j].mean()
                    else:
                        scores[g0 + j] = self._user_score(torch.cat([lk[j] for lk in logits_all]))
        return _Result(correct, nll, scores)

    def _user_score(self, logits) -> float:
        value = self.score(logits, self.targets)
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise param_error("score", self.func, "a callable score(logits, targets) returning a float",
                              type(value).__name__) from None
        if not math.isfinite(value):
            raise param_error("score", self.func, "a callable returning a finite score", value,
                              "check the score function; nothing was pruned")
        return value

    def _suffix(self, group: np.ndarray, idx: torch.Tensor) -> torch.Tensor:
        k, m = group.shape[0], len(idx)
        dix = idx.to(self.cache[0].device)
        a = self.cache[0][dix]
        keep = torch.as_tensor(~group, device=a.device).view((k, 1, a.shape[1]) + (1,) * (a.ndim - 2))
        a = torch.where(keep, a.unsqueeze(0), torch.zeros((), dtype=a.dtype, device=a.device))
        inputs = [a.reshape((k * m,) + tuple(a.shape[2:]))]
        for c in self.cache[1:]:
            v = c[dix]  # advanced indexing: a copy, so in-place ops downstream never touch the cache
            inputs.append(v.unsqueeze(0).expand((k,) + tuple(v.shape)).reshape((k * m,) + tuple(v.shape[1:])))
        out = self.split[1](*inputs)
        return out.reshape((k, m) + tuple(out.shape[1:]))


def _check_score(score, func: str):
    if isinstance(score, str):
        return check_choice(score, "score", func, ("accuracy",))
    if not callable(score):
        raise param_error("score", func, "'accuracy' or a callable score(logits, targets) -> float", score)
    return score


def _choose(imp: np.ndarray, loss: np.ndarray, tie_break: str):
    """Index (into the candidate arrays) of the least important candidate, its tie count and rule."""
    tied = np.flatnonzero(np.abs(imp - imp.min()) <= _TIE_ATOL)
    if tied.size == 1:
        return int(tied[0]), 1, "none"
    if tie_break == "index":
        return int(tied[0]), int(tied.size), "index"
    lt = loss[tied]
    best = tied[np.abs(lt - lt.min()) <= _TIE_ATOL]
    return int(best[0]), int(tied.size), "loss" if best.size == 1 else "index"


def car_importance(model: nn.Module, layer: str, stimuli, *, removed=(), filters=None, score="accuracy",
                   class_index=None, fast: bool = True, batch_size: int = 256):
    """CAR and CARc of filters of ``layer``: the accuracy lost, overall and per class, when each is removed.

    Parameters
    ----------
    model : nn.Module
        A classifier (logits ``(n, n_outputs)``); run in eval mode, its mode is restored.
    layer : str
        Alias or dotted name of a Conv2d or Linear layer.
    stimuli : StimulusSet or (inputs, labels)
        Labelled images (or network inputs as a float tensor and integer labels).
    removed : filters, optional
        Filters already removed (indices or a boolean mask): CAR of the others on that network.
    filters : sequence of int, optional
        The candidates to score (default: every filter not in ``removed``).
    score : "accuracy" or callable
        ``score(logits, targets) -> float`` (higher is better) replaces top-1 accuracy in ``car``.
    class_index : sequence or mapping, optional
        Output index of each label (or class name): e.g.
        :data:`netphys.models.efficientnet.IMAGENETTE_IMAGENET_INDEX` for 1000-way accuracy on Imagenette.
    fast : bool, default True
        Cache the prefix and run the suffix only (see the module notes); False: one full forward pass
        per candidate (the reference).
    batch_size : int, default 256
        Rows per forward pass; with fewer images than this, several candidates share a pass.

    Returns
    -------
    xarray.Dataset
        Dims ``filter`` and ``class``: ``car`` (filter) = score(N) - score(N without the filter);
        ``loss_increase`` (filter), mean cross-entropy after minus before; ``accuracy_after``,
        ``loss_after`` (filter); ``carc`` (class, filter) = per-class accuracy before minus after;
        ``class_accuracy`` (class) of the reference network. ``attrs``: ``accuracy``, ``loss``,
        ``score`` of the reference network, ``fast_path`` (whether the suffix path ran).

    Raises
    ------
    NetphysError
        For a layer without filters, unlabelled stimuli, bad filter indices, or a score that is not finite.

    Notes
    -----
    CARc [1]_ is the same reduction restricted to the images of one class; :func:`class_dependence`
    lists the classes that depend most and least on each filter.

    References
    ----------
    .. [1] R. Abbasi-Asl, PhD thesis (2018), chapter 2 (CAR) and section 2.4 (class-wise CAR).
    """
    import xarray as xr

    func = "car_importance"
    target = _resolve_target(model, layer, func)
    removed = _check_filters(removed, target.n, func, "removed")
    score = _check_score(score, func)
    batch_size = check_int(batch_size, "batch_size", func, min_value=1)
    data = _as_data(stimuli, "stimuli", func, class_index)
    base = np.zeros(target.n, dtype=bool)
    base[removed] = True
    cands = np.flatnonzero(~base) if filters is None else _check_filters(filters, target.n, func)
    if np.intersect1d(cands, removed).size:
        raise param_error("filters", func, "filters not already removed", np.intersect1d(cands, removed).tolist())
    classes = _classes(data)
    with restored(model):
        ev = _Evaluator(model, target, data, score=score, fast=bool(fast), batch_size=batch_size, func=func)
        ref = ev.run(base[None])
        masks = np.repeat(base[None], cands.size, axis=0)
        masks[np.arange(cands.size), cands] = True
        res = ev.run(masks) if cands.size else _Result(np.zeros((0, len(data)), bool), np.zeros((0, len(data))),
                                                       np.zeros(0))
    ca_ref = ref.class_accuracy(data.labels, classes)[0]
    ca = res.class_accuracy(data.labels, classes)
    ds = xr.Dataset(
        {"car": ("filter", ref.score[0] - res.score),
         "loss_increase": ("filter", res.loss() - ref.loss()[0]),
         "accuracy_after": ("filter", res.accuracy()),
         "loss_after": ("filter", res.loss()),
         "carc": (("class", "filter"), (ca_ref[None] - ca).T),
         "class_accuracy": ("class", ca_ref)},
        coords={"filter": cands, "class": classes, "class_name": ("class", _class_names(data, classes))},
        attrs={"layer": layer, "module": target.module, "accuracy": float(ref.accuracy()[0]),
               "loss": float(ref.loss()[0]), "score": float(ref.score[0]), "fast_path": int(ev.fast),
               "n_removed": int(removed.size), "n_stimuli": len(data), "netphys_version": __version__})
    return ds


def class_dependence(importance, n: int = 3) -> pd.DataFrame:
    """The classes most and least dependent on each filter, from CARc.

    Parameters
    ----------
    importance : xarray.Dataset
        The result of :func:`car_importance` (or ``GreedyPruner.importance_``), with ``carc`` (class, filter).
    n : int, default 3
        Classes listed per filter.

    Returns
    -------
    pandas.DataFrame
        Indexed by filter: ``most_dependent`` and ``least_dependent`` (lists of class names, largest /
        smallest CARc first), ``carc_max`` and ``carc_min``. Classes without images are skipped.
    """
    func = "class_dependence"
    if not hasattr(importance, "data_vars") or "carc" not in importance.data_vars:
        raise param_error("importance", func, "a Dataset with a 'carc' variable (from car_importance)",
                          type(importance).__name__)
    n = check_int(n, "n", func, min_value=1)
    carc = importance["carc"].transpose("class", "filter").values
    names = [str(v) for v in importance["class_name"].values] if "class_name" in importance.coords \
        else [str(v) for v in importance["class"].values]
    rows = []
    for j, f in enumerate(importance["filter"].values):
        col = carc[:, j]
        ok = np.flatnonzero(np.isfinite(col))
        order = ok[np.argsort(-col[ok], kind="stable")]
        rows.append({"filter": int(f), "most_dependent": [names[i] for i in order[:n]],
                     "least_dependent": [names[i] for i in order[::-1][:n]],
                     "carc_max": float(col[order[0]]) if order.size else np.nan,
                     "carc_min": float(col[order[-1]]) if order.size else np.nan})
    return pd.DataFrame(rows).set_index("filter")


def _classes(*datas) -> np.ndarray:
    names = next((d.class_names for d in datas if d is not None and d.class_names), None)
    if names:
        return np.arange(len(names))
    return np.unique(np.concatenate([d.labels for d in datas if d is not None]))


def _class_names(data: _Data, classes: np.ndarray) -> list:
    if data.class_names:
        return [str(data.class_names[c]) if c < len(data.class_names) else str(c) for c in classes]
    return [str(c) for c in classes]


# ---------------------------------------------------------------------------------------------- costs
@dataclass(frozen=True)
class LayerSpec:
    """A weightless description of a conv or FC layer for FLOPs and bytes.

    Parameters
    ----------
    name : str
    kind : {"conv", "fc"}
    in_channels, out_channels : int
        ``n_{L-1}`` (all groups together) and ``n_L``; for "fc" the input and output features.
    kernel : int or (int, int), default 1
        ``f_L`` (filter side).
    out_size : int or (int, int), default 1
        ``k_L`` (output side).
    groups : int, default 1
        Grouped convolution (Caffe AlexNet's conv2, conv4, conv5: 2): each filter sees
        ``in_channels / groups`` channels.
    """

    name: str
    kind: str
    in_channels: int
    out_channels: int
    kernel: tuple = (1, 1)
    out_size: tuple = (1, 1)
    groups: int = 1

    def __post_init__(self):
        func = "LayerSpec"
        check_choice(self.kind, "kind", func, ("conv", "fc"))
        for p in ("in_channels", "out_channels", "groups"):
            check_int(getattr(self, p), p, func, min_value=1)
        for p in ("kernel", "out_size"):
            v = getattr(self, p)
            v = (v, v) if isinstance(v, numbers.Integral) else tuple(v)
            if len(v) != 2 or not all(isinstance(a, numbers.Integral) and a >= 1 for a in v):
                raise param_error(p, func, "an int >= 1 or a pair of them", getattr(self, p))
            object.__setattr__(self, p, (int(v[0]), int(v[1])))
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise param_error("groups", func, "a divisor of in_channels and out_channels", self.groups)

    def cost(self, filters: float | None = None, inputs: float | None = None) -> tuple[float, float]:
        """``(flops, bytes)`` with ``filters`` output channels and ``inputs`` input channels left."""
        n_out = self.out_channels if filters is None else filters
        n_in = self.in_channels if inputs is None else inputs
        if self.kind == "fc":
            return float(n_in * n_out), float(4 * n_in * n_out)
        f2 = self.kernel[0] * self.kernel[1]
        per_group = n_in / self.groups
        return (float(self.out_size[0] * self.out_size[1] * n_out * f2 * per_group),
                float(4 * f2 * per_group * n_out))


def layer_specs(model: nn.Module, example: torch.Tensor) -> list[LayerSpec]:
    """:class:`LayerSpec` of every Conv2d and Linear module that runs on ``example`` (first call of each).

    Parameters
    ----------
    model : nn.Module
    example : torch.Tensor
        One network input batch, e.g. ``stimuli.tensor([0])``.

    Returns
    -------
    list of LayerSpec
        In order of execution, named by dotted module name.
    """
    func = "layer_specs"
    if not isinstance(example, torch.Tensor):
        raise param_error("example", func, "a network input tensor", type(example).__name__)
    named = {n: m for n, m in _leaves(model) if isinstance(m, (nn.Conv2d, nn.Linear))}
    found: dict = {}

    def rec(name):
        def fn(m, inp, out):
            if name in found:
                return
            if isinstance(m, nn.Conv2d):
                found[name] = LayerSpec(name, "conv", m.in_channels, m.out_channels, tuple(m.kernel_size),
                                        tuple(out.shape[-2:]), m.groups)
            else:
                found[name] = LayerSpec(name, "fc", m.in_features, m.out_features)
        return fn

    with restored(model), torch.no_grad(), hooks(model, {n: rec(n) for n in named}):
        model(example)
    return list(found.values())


def layer_costs(specs, filters: Mapping | None = None, inputs: Mapping | None = None) -> pd.DataFrame:
    """FLOPs and bytes per layer, with some filters removed, by the thesis's formulas.

    Parameters
    ----------
    specs : sequence of LayerSpec
    filters : mapping of layer name to int, optional
        Remaining output channels of pruned layers.
    inputs : mapping of layer name to int, optional
        Remaining input channels (features) of the layers that read a pruned layer.

    Returns
    -------
    pandas.DataFrame
        Indexed by layer name: ``filters``, ``inputs``, ``flops``, ``bytes``.

    Notes
    -----
    For a convolution with ``n_L`` filters of size ``f_L x f_L`` over ``n_{L-1}`` input channels (per
    group) and output maps ``k_L x k_L``: FLOPs ``= k_L^2 n_L f_L^2 n_{L-1}`` (multiply-accumulates per
    image) and bytes ``= 4 f_L^2 n_{L-1} n_L`` (float32 weights, biases not counted) [1]_. For a linear
    layer: ``n_in n_out`` and ``4 n_in n_out``. Table 2.1 of [1]_ counts only the pruned layer's own
    filters: its numbers are ``filters={layer: kept}`` with the next layer's ``inputs`` left whole.

    References
    ----------
    .. [1] R. Abbasi-Asl, PhD thesis (2018), section 2.2 and Table 2.1 (after Han et al. 2015).
    """
    func = "layer_costs"
    specs = list(specs)
    if not all(isinstance(s, LayerSpec) for s in specs):
        raise param_error("specs", func, "a sequence of LayerSpec", specs)
    filters, inputs = dict(filters or {}), dict(inputs or {})
    names = {s.name for s in specs}
    for p, d in (("filters", filters), ("inputs", inputs)):
        bad = sorted(set(d) - names)
        if bad:
            raise param_error(p, func, "a mapping keyed by layer names of the specs", bad)
    rows = []
    for s in specs:
        nf, ni = filters.get(s.name, s.out_channels), inputs.get(s.name, s.in_channels)
        fl, by = s.cost(nf, ni)
        rows.append({"layer": s.name, "filters": nf, "inputs": ni, "flops": fl, "bytes": by})
    return pd.DataFrame(rows).set_index("layer")


def _consumer_costs(specs: list, target: _Target, n_kept: int) -> tuple[dict, dict]:
    """``filters``/``inputs`` for :func:`layer_costs` with ``n_kept`` filters of ``target`` left."""
    filters, inputs = {target.module: n_kept}, {}
    nxt = next((s for s in specs if s.name == target.next), None)
    removed = target.n - n_kept
    if nxt is not None and removed and nxt.in_channels % target.n == 0:
        s = nxt.in_channels // target.n  # features per channel after flatten (1 for a conv)
        if nxt.kind == "conv" and nxt.groups == nxt.in_channels:  # depthwise: its filters go too
            filters[nxt.name] = nxt.out_channels * n_kept / target.n
        else:
            inputs[nxt.name] = nxt.in_channels - removed * s
    return filters, inputs


# ---------------------------------------------------------------------------------------------- weights
def _reading_slices(model: nn.Module, target: _Target, func: str):
    """For each channel of ``target``: an index into the next layer's weight reading it (or None)."""
    if target.next is None:
        return None
    m = dict(model.named_modules())[target.next]
    n = target.n
    if isinstance(m, nn.Linear):
        if m.in_features % n:
            return None
        s = m.in_features // n
        return [(slice(None), slice(c * s, (c + 1) * s)) for c in range(n)]
    if m.in_channels != n:
        return None
    in_pg, out_pg = m.in_channels // m.groups, m.out_channels // m.groups
    return [(slice((c // in_pg) * out_pg, (c // in_pg + 1) * out_pg), c % in_pg) for c in range(n)]


def _weight_importance(model: nn.Module, target: _Target, which: str, func: str) -> np.ndarray:
    named = dict(model.named_modules())
    if which == "incoming":
        w = named[target.module].weight.detach()
        return w.abs().reshape(target.n, -1).double().mean(1).cpu().numpy()
    sl = _reading_slices(model, target, func)
    if sl is None:
        raise param_error("method", func, "a method the layer supports", "outgoing",
                          f"layer {target.layer!r} has no next Conv2d / Linear layer reading its {target.n} "
                          "channels")
    w = named[target.next].weight.detach()
    return np.array([float(w[s].abs().double().mean()) for s in sl])


# ---------------------------------------------------------------------------------------------- pruner
def _check_stop(n: int, keep_ratio, n_keep, max_drop, func: str):
    if keep_ratio is not None:
        ok = isinstance(keep_ratio, numbers.Real) and not isinstance(keep_ratio, bool) \
            and math.isfinite(keep_ratio) and 0 < keep_ratio <= 1
        if not ok:
            raise param_error("keep_ratio", func, "a number in (0, 1] (filters kept / original filters)",
                              keep_ratio, "a layer is never pruned to zero; keep_ratio=1 prunes nothing")
    if n_keep is not None:
        n_keep = check_int(n_keep, "n_keep", func, min_value=1, max_value=n)
    if max_drop is not None:
        ok = isinstance(max_drop, numbers.Real) and not isinstance(max_drop, bool) \
            and math.isfinite(max_drop) and 0 <= max_drop < 1
        if not ok:
            raise param_error("max_drop", func, "a number in [0, 1) (relative drop of the selection score)",
                              max_drop)
    if keep_ratio is None and n_keep is None and max_drop is None:
        max_drop = 0.05
    floor = 1
    if keep_ratio is not None:
        floor = max(floor, math.ceil(keep_ratio * n - 1e-9))
    if n_keep is not None:
        floor = max(floor, n_keep)
    return floor, (None if max_drop is None else float(max_drop))


class _Session:
    """Evaluators and layer specs for one (model, layer, selection, test), shared by several paths."""

    def __init__(self, model, target, selection, test, *, score, class_index, fast, batch_size, func):
        self.model, self.target, self.score = model, target, score
        self.sel = _as_data(selection, "selection", func, class_index)
        self.tst = _as_data(test, "test", func, class_index) if test is not None else None
        if self.tst is not None and self.sel.sources and self.tst.sources:
            same = set(self.sel.sources) & set(self.tst.sources)
            looks_like_files = any(("/" in s or "\\" in s) for s in same)
            if same and looks_like_files:
                raise param_error("test", func, "stimuli disjoint from the selection split",
                                  f"{len(same)} shared image(s), e.g. {min(same)!r}",
                                  "split one set with netphys.interventions.split_halves")
        self.classes = _classes(self.sel, self.tst)
        named = self.sel if self.sel.class_names or self.tst is None else self.tst
        self.class_names = _class_names(named, self.classes)
        kw = dict(score=score, fast=fast, batch_size=batch_size, func=func)
        self.ev_sel = _Evaluator(model, target, self.sel, **kw)
        self.ev_tst = _Evaluator(model, target, self.tst, **kw) if self.tst is not None else None
        dev = self.ev_sel.device
        self.specs = layer_specs(model, self.sel.batch([0], dev))
        self.aliases = {li.module: li.alias for li in layer_infos(model)}

    def evaluate(self, removed: np.ndarray, splits=("selection", "test")) -> dict:
        out = {}
        for split, ev, data in (("selection", self.ev_sel, self.sel), ("test", self.ev_tst, self.tst)):
            if ev is None or split not in splits:
                out[split] = None
                continue
            r = ev.run(removed[None])
            out[split] = {"accuracy": float(r.accuracy()[0]), "loss": float(r.loss()[0]), "score": float(r.score[0]),
                          "class_accuracy": r.class_accuracy(data.labels, self.classes)[0]}
        return out


def _path(session: _Session, method: str, *, floor: int, max_drop, tie_break: str, rng, progress: bool = False,
          start: np.ndarray | None = None):
    """Run one pruning path; returns (list of step records, importance tuple or None, stopped_by).

    ``start``: filters already removed (a resumed path). Step 0 is then that network, the path goes on
    from it exactly as an uninterrupted run would, and ``max_drop`` still refers to the intact network.
    The importance tuple is ``(result, importance, candidate filters, removed mask of its reference)``.
    """
    from tqdm.auto import tqdm

    t = session.target
    n = t.n
    removed = np.zeros(n, dtype=bool)
    if start is not None and len(start):
        removed[np.asarray(start, dtype=np.int64)] = True
    resumed = bool(removed.any())
    ev = session.ev_sel
    steps = []

    def record(c, imp, tied, rule, after_sel, all_imp):
        k = int((~removed).sum())
        filters, inputs = _consumer_costs(session.specs, t, k)
        costs = layer_costs(session.specs, filters, inputs)
        if after_sel is None:
            res = session.evaluate(removed)
        else:
            res = {"selection": after_sel, "test": session.evaluate(removed, ("test",))["test"]}
        steps.append({"removed": c, "importance": imp, "tied": tied, "tie_break": rule, "n_kept": k,
                      "kept": ~removed.copy(), "res": res, "flops": costs["flops"].to_numpy(),
                      "bytes": costs["bytes"].to_numpy(), "all_importance": all_imp})

    record(-1, np.nan, 0, "none", None, np.full(n, np.nan))
    base = steps[0]["res"]["selection"]
    # the stop criterion refers to the intact network, also on a resumed path
    s0 = base["score"] if not resumed else session.evaluate(np.zeros(n, dtype=bool), ("selection",))["selection"]["score"]
    importance_ds = None
    order = None
    if method == "car" and resumed:  # CAR of the remaining filters on the start network
        cands = np.flatnonzero(~removed)
        masks = np.repeat(removed[None], cands.size, axis=0)
        masks[np.arange(cands.size), cands] = True
        r = ev.run(masks)
        importance_ds = (r, base["score"] - r.score, cands, removed.copy())
    elif method == "car_oneshot" or method == "car":
        cands = np.arange(n)
        masks = np.eye(n, dtype=bool)
        r = ev.run(masks)
        imp0, loss0 = s0 - r.score, r.loss()
        importance_ds = (r, imp0, cands, np.zeros(n, dtype=bool))
        if method == "car_oneshot":
            order = np.lexsort((cands, loss0, imp0)) if tie_break == "loss" else np.lexsort((cands, imp0))
            base_imp = imp0
    elif method in ("incoming", "outgoing"):
        base_imp = _weight_importance(session.model, t, method, "GreedyPruner")
        order = np.lexsort((np.arange(n), base_imp))
    elif method == "random":
        order = rng.permutation(n)
        base_imp = np.full(n, np.nan)
    if order is not None and resumed:  # the same order without the filters already removed
        order = order[~removed[order]]
    stopped_by = "n_kept"
    cur_sel = base
    bar = tqdm(total=n - floor, desc=f"prune {t.layer} ({method})", disable=not progress)
    it = 0
    try:
        while int((~removed).sum()) > floor:
            rem = np.flatnonzero(~removed)
            if method == "car":
                if it == 0:
                    r, imp = importance_ds[:2]
                    res_score, res_loss = r.score, r.loss()
                    r_sub = r
                else:
                    masks = np.repeat(removed[None], rem.size, axis=0)
                    masks[np.arange(rem.size), rem] = True
                    r_sub = ev.run(masks)
                    res_score, res_loss = r_sub.score, r_sub.loss()
                    imp = cur_sel["score"] - res_score
                j, tied, rule = _choose(imp, res_loss, tie_break)
                c = int(rem[j])
                all_imp = np.full(n, np.nan)
                all_imp[rem] = imp
                after = {"accuracy": float(r_sub.accuracy()[j]), "loss": float(res_loss[j]),
                         "score": float(res_score[j]),
                         "class_accuracy": r_sub.class_accuracy(session.sel.labels, session.classes)[j]}
                value = float(imp[j])
            else:
                c = int(order[it])
                value = float(base_imp[c])
                if method == "random":
                    tied, rule = 1, "none"
                else:
                    left = base_imp[rem]
                    tied = int(np.sum(np.abs(left - value) <= _TIE_ATOL))
                    rule = "none" if tied == 1 else (
                        "loss" if method == "car_oneshot" and tie_break == "loss" else "index")
                all_imp = np.full(n, np.nan)
                if it == 0:
                    all_imp = base_imp.astype(float).copy()
                    all_imp[removed] = np.nan
                trial = removed.copy()
                trial[c] = True
                r1 = ev.run(trial[None])
                after = {"accuracy": float(r1.accuracy()[0]), "loss": float(r1.loss()[0]), "score": float(r1.score[0]),
                         "class_accuracy": r1.class_accuracy(session.sel.labels, session.classes)[0]}
            if max_drop is not None and s0 - after["score"] > max_drop * abs(s0) + _TIE_ATOL:
                stopped_by = "max_drop"
                break
            removed[c] = True
            record(c, value, tied, rule, after, all_imp)
            cur_sel = after
            it += 1
            bar.update(1)
    finally:
        bar.close()
    if int((~removed).sum()) <= floor and stopped_by != "max_drop":
        stopped_by = "n_kept"
    return steps, importance_ds, stopped_by


def _path_dataset(session: _Session, steps: list, *, method: str, attrs: dict):
    import xarray as xr

    t = session.target
    S = len(steps)
    layers = [s.name for s in session.specs]

    def split_var(split, key):
        return np.array([np.nan if st["res"][split] is None else st["res"][split][key] for st in steps])

    def split_cls(split):
        k = session.classes.size
        return np.stack([np.full(k, np.nan) if st["res"][split] is None else st["res"][split]["class_accuracy"]
                         for st in steps])

    n_kept = np.array([st["n_kept"] for st in steps])
    data = {
        "removed": ("step", np.array([st["removed"] for st in steps], dtype=np.int64)),
        "n_kept": ("step", n_kept.astype(np.int64)),
        "compression_ratio": ("step", t.n / n_kept),
        "importance": ("step", np.array([st["importance"] for st in steps], dtype=float)),
        "tied": ("step", np.array([st["tied"] for st in steps], dtype=np.int64)),
        "tie_break": ("step", np.array([st["tie_break"] for st in steps], dtype=object).astype(str)),
        "kept": (("step", "filter"), np.stack([st["kept"] for st in steps])),
        "filter_importance": (("step", "filter"), np.stack([st["all_importance"] for st in steps])),
        "flops": (("step", "layer"), np.stack([st["flops"] for st in steps])),
        "bytes": (("step", "layer"), np.stack([st["bytes"] for st in steps])),
    }
    for split in ("selection", "test"):
        for key in ("accuracy", "loss", "score"):
            data[f"{split}_{key}"] = ("step", split_var(split, key))
        data[f"{split}_class_accuracy"] = (("step", "class"), split_cls(split))
    coords = {"step": np.arange(S), "filter": np.arange(t.n), "class": session.classes,
              "class_name": ("class", session.class_names), "layer": layers,
              "layer_alias": ("layer", [session.aliases.get(l, l) for l in layers])}
    info = dict(method=method, layer=t.layer, module=t.module, n_filters=t.n, mask_site=t.site,
                mask_site_kind=t.site_kind, next_layer=t.next or "", fast_path=int(session.ev_sel.fast),
                n_selection=len(session.sel), n_test=0 if session.tst is None else len(session.tst),
                netphys_version=__version__)
    model_info = getattr(session.model, "netphys", None)
    if model_info is not None:
        info["model"] = str(getattr(model_info, "name", ""))
        info["weights"] = str(getattr(model_info, "weights", ""))
    info.update({k: ("" if v is None else v) for k, v in attrs.items()})
    if method in ("incoming", "outgoing"):
        info["importance_reduction"] = (
            "mean of |w| over the filter's kernel (in_channels x kh x kw)" if method == "incoming" else
            "mean of |w| over the next layer's weights reading the channel (out x kh x kw; a linear layer: "
            "out x the channel's flattened features)")
    return xr.Dataset(data, coords=coords, attrs=info)


class GreedyPruner:
    """Greedy CAR filter pruning of one layer (and its baselines), on a selection split with a test split.

    Parameters
    ----------
    model : nn.Module
        A classifier; never modified (filters are removed by masking during the run). Run in eval
        mode; its mode is restored.
    layer : str
        Alias (``conv5_1``, ``block14_expand``) or dotted name of a Conv2d or Linear layer.
    method : {"car", "car_oneshot", "incoming", "outgoing", "random"}, default "car"
        ``"car"``: recompute CAR of every remaining filter at each iteration and remove the smallest
        (Algorithm 1 of [1]_); ``"car_oneshot"``: rank once by the CAR of the intact network;
        ``"incoming"`` / ``"outgoing"``: smallest mean absolute incoming weight (over the filter's
        ``in x kh x kw`` kernel) / outgoing weight (over the next layer's weights that read the channel)
        first [2]_; ``"random"``: a uniformly random order (see :func:`random_pruning` for repeats).
    score : "accuracy" or callable, default "accuracy"
        Top-1 accuracy, or ``score(logits, targets) -> float`` (higher is better) on the whole split.
    keep_ratio : float in (0, 1], optional
        Stop when ``ceil(keep_ratio * n)`` filters are left.
    n_keep : int >= 1, optional
        Stop when ``n_keep`` filters are left.
    max_drop : float in [0, 1), optional
        Stop before the removal that would make the selection score fall more than
        ``max_drop * |score(intact)|`` below the intact network's. Defaults to 0.05 (the thesis's 5 %
        relative drop, Table 2.1) when neither ``keep_ratio`` nor ``n_keep`` is given. Whichever
        criterion is reached first stops the run; at least one filter is always kept.
    tie_break : {"loss", "index"}, default "loss"
        Among filters of equal importance (frequent: accuracy moves in steps of 1/N) remove the one
        whose removal gives the smallest mean cross-entropy on the selection split (then the lowest
        index), or simply the lowest index.
    class_index : sequence or mapping, optional
        Model output index of each label (a sequence indexed by label, or a mapping keyed by label, class
        name or image folder): 1000-way ImageNet accuracy on Imagenette with
        :data:`netphys.models.efficientnet.IMAGENETTE_IMAGENET_INDEX` (keyed by the WordNet-id folders).
    fast : bool, default True
        Fast CAR: cache the network up to the masked site once and run candidates through the suffix only
        (several per forward pass); False: full forward passes with a masking hook (same numbers).
    batch_size : int, default 256
        Rows per forward pass.
    random_state : None, int, SeedSequence or Generator, optional
        For ``method="random"``.
    progress : bool, default False

    Attributes
    ----------
    path_ : xarray.Dataset
        One entry per step (step 0: the intact network), dims ``step``, ``filter``, ``class``, ``layer``:
        ``removed`` (filter removed at the step, -1 at step 0), ``n_kept``, ``compression_ratio``
        (original / remaining filters), ``importance`` (its CAR, or weight magnitude),
        ``filter_importance`` (step, filter; every remaining filter's, where computed), ``tied`` (filters
        sharing the smallest importance), ``tie_break`` ("none", "loss" or "index"), ``kept``
        (step, filter), ``selection_accuracy`` / ``_loss`` / ``_score``, ``test_accuracy`` / ``_loss`` /
        ``_score`` (NaN without a test split), ``selection_class_accuracy`` and ``test_class_accuracy``
        (step, class), ``flops`` and ``bytes`` (step, layer; every Conv2d / Linear layer, the pruned one
        with its kept filters and the next one with its kept input channels). ``attrs`` record the method,
        stop criteria, ``stopped_by``, the mask site, whether the fast path ran and, for a resumed fit,
        the filters it started without (``n_start_removed``, ``start_removed``).
    kept_ : ndarray of bool, shape (n_filters,)
        The filters left at the end.
    removed_ : ndarray of int
        The filters removed, in order (after ``fit(..., removed=start)``: ``start`` first).
    importance_ : xarray.Dataset or None
        For the CAR methods, :func:`car_importance`'s result on the intact network (``car``, ``carc``,
        ...), computed in the first iteration.

    Notes
    -----
    Each iteration of ``"car"`` costs one suffix pass per remaining filter on the selection split and
    one on the test split. The thesis computed CAR on one half of the ImageNet test set and reported the
    other half (:func:`split_halves`).

    References
    ----------
    .. [1] R. Abbasi-Asl, PhD thesis (2018), chapter 2; Abbasi-Asl & Yu, arXiv:1705.07356 (2017).
    .. [2] Hu et al., arXiv:1607.03250 (2016), the incoming / outgoing weight benchmarks of [1]_.
    """

    def __init__(self, model: nn.Module, layer: str, *, method: str = "car", score="accuracy",
                 keep_ratio: float | None = None, n_keep: int | None = None, max_drop: float | None = None,
                 tie_break: str = "loss", class_index=None, fast: bool = True, batch_size: int = 256,
                 random_state=None, progress: bool = False):
        func = "GreedyPruner"
        self._target = _resolve_target(model, layer, func)
        check_choice(method, "method", func, METHODS)
        _check_score(score, func)
        _check_stop(self._target.n, keep_ratio, n_keep, max_drop, func)
        check_choice(tie_break, "tie_break", func, ("loss", "index"))
        check_int(batch_size, "batch_size", func, min_value=1)
        if method == "random":
            check_random_state(random_state, func)
        self.model, self.layer, self.method, self.score = model, layer, method, score
        self.keep_ratio, self.n_keep, self.max_drop = keep_ratio, n_keep, max_drop
        self.tie_break, self.class_index, self.fast = tie_break, class_index, fast
        self.batch_size, self.random_state, self.progress = batch_size, random_state, progress

    def _session(self, selection, test, func):
        return _Session(self.model, self._target, selection, test, score=self.score, class_index=self.class_index,
                        fast=bool(self.fast), batch_size=self.batch_size, func=func)

    def _attrs(self, floor, max_drop, stopped_by):
        return dict(score="accuracy" if isinstance(self.score, str) else getattr(self.score, "__name__", "callable"),
                    keep_ratio=self.keep_ratio, n_keep=self.n_keep, max_drop=max_drop, min_kept=floor,
                    tie_break_rule=self.tie_break, stopped_by=stopped_by,
                    random_state=self.random_state if isinstance(self.random_state, int) else None)

    def fit(self, selection, test=None, *, removed=()) -> "GreedyPruner":
        """Prune on ``selection``, recording accuracy on ``test`` at every step.

        Parameters
        ----------
        selection : StimulusSet or (inputs, labels)
            Labelled images whose score chooses the filters.
        test : StimulusSet or (inputs, labels), optional
            A disjoint labelled split, only recorded (image sets sharing files are refused).
        removed : sequence of int, optional
            Resume a path: the filters an earlier run on the same splits removed, in order (its
            ``removed_``). The path starts from that network (step 0) and goes on exactly as the
            uninterrupted run would (the same CAR values and choices; a seeded random order or a weight
            order skips the filters already gone); ``max_drop`` still refers to the intact network and
            ``keep_ratio`` / ``n_keep`` to the layer's original filters. ``importance_`` is then CAR on
            the start network (the remaining filters only).

        Returns
        -------
        self

        Raises
        ------
        NetphysError
            Unlabelled or empty splits, overlapping splits, a model whose output is not class logits
            covering the targets, or a score function returning a non-finite value (the model is
            untouched).
        """
        func = "GreedyPruner.fit"
        floor, max_drop = _check_stop(self._target.n, self.keep_ratio, self.n_keep, self.max_drop, func)
        start = _check_start(removed, self._target.n, func)
        rng = check_random_state(self.random_state, func) if self.method == "random" else None
        with restored(self.model):
            session = self._session(selection, test, func)
            steps, imp, stopped_by = _path(session, self.method, floor=floor, max_drop=max_drop,
                                           tie_break=self.tie_break, rng=rng, progress=self.progress, start=start)
        attrs = self._attrs(floor, max_drop, stopped_by)
        attrs["n_start_removed"] = int(start.size)
        attrs["start_removed"] = ",".join(str(int(c)) for c in start)
        self.path_ = _path_dataset(session, steps, method=self.method, attrs=attrs)
        self.kept_ = np.asarray(self.path_["kept"].values[-1], dtype=bool)
        self.removed_ = np.concatenate([start, self.path_["removed"].values[1:]]).astype(np.int64)
        self.importance_ = _importance_dataset(session, imp) if imp is not None else None
        return self

    @contextlib.contextmanager
    def masked(self):
        """Context manager: the model with the removed filters masked (:func:`mask_filters`)."""
        if not hasattr(self, "kept_"):
            raise NetphysError("GreedyPruner.masked needs a fitted pruner; call fit(selection, test) first")
        with _masked(self.model, self._target, np.flatnonzero(~self.kept_)):
            yield self.model


def _check_start(removed, n: int, func: str) -> np.ndarray:
    """The filters a resumed path starts without, in the order given (distinct, in range, not all)."""
    if isinstance(removed, np.ndarray) and removed.dtype.kind == "b":
        start = _check_filters(removed, n, func, "removed")
    else:
        if isinstance(removed, torch.Tensor):
            removed = removed.detach().cpu().numpy()
        try:
            start = np.asarray(list(removed))
        except TypeError:
            raise param_error("removed", func, "the filters an earlier run removed (its removed_)", removed) from None
        if start.size == 0:
            return np.zeros(0, dtype=np.int64)
        if start.dtype.kind == "b":
            start = _check_filters(start, n, func, "removed")
        else:
            _check_filters(start, n, func, "removed")  # integer, in range, distinct
            start = start.astype(np.int64)
    if start.size >= n:
        raise param_error("removed", func, f"at most {n - 1} of the {n} filters", int(start.size),
                          "a layer is never pruned to zero")
    return start


def _importance_dataset(session: _Session, imp):
    import xarray as xr

    r, car, cands, base = imp
    data = session.sel
    ref = session.ev_sel.run(base[None])
    ca_ref = ref.class_accuracy(data.labels, session.classes)[0]
    ca = r.class_accuracy(data.labels, session.classes)
    return xr.Dataset(
        {"car": ("filter", car), "loss_increase": ("filter", r.loss() - ref.loss()[0]),
         "accuracy_after": ("filter", r.accuracy()), "loss_after": ("filter", r.loss()),
         "carc": (("class", "filter"), (ca_ref[None] - ca).T), "class_accuracy": ("class", ca_ref)},
        coords={"filter": np.asarray(cands), "class": session.classes,
                "class_name": ("class", session.class_names)},
        attrs={"layer": session.target.layer, "module": session.target.module,
               "accuracy": float(ref.accuracy()[0]), "loss": float(ref.loss()[0]), "score": float(ref.score[0]),
               "fast_path": int(session.ev_sel.fast), "n_removed": int(base.sum()), "n_stimuli": len(data),
               "netphys_version": __version__})


def random_pruning(model: nn.Module, layer: str, selection, test=None, *, n_repeats: int = 10, random_state=0,
                   **kwargs):
    """Random pruning paths (the thesis's chance baseline, 10 repeats), in :class:`GreedyPruner`'s format.

    Parameters
    ----------
    model, layer, selection, test
        As for :class:`GreedyPruner` and its ``fit``.
    n_repeats : int, default 10
    random_state : int or SeedSequence, default 0
        Each repeat draws from a seed spawned from it (recorded in the ``seed`` coordinate).
    **kwargs
        Other :class:`GreedyPruner` options (``keep_ratio``, ``n_keep``, ``max_drop``, ``score``,
        ``class_index``, ``fast``, ``batch_size``).

    Returns
    -------
    xarray.Dataset
        The paths stacked along ``repeat`` (shorter paths padded with NaN / -1), with ``seed`` and
        ``stopped_by`` per repeat.
    """
    import xarray as xr

    func = "random_pruning"
    n_repeats = check_int(n_repeats, "n_repeats", func, min_value=1)
    if "method" in kwargs or "random_state" in kwargs:
        raise param_error("kwargs", func, "GreedyPruner options other than method and random_state",
                          sorted(kwargs))
    pr = GreedyPruner(model, layer, method="random", random_state=0, **kwargs)
    floor, max_drop = _check_stop(pr._target.n, pr.keep_ratio, pr.n_keep, pr.max_drop, func)
    seeds = spawn_seeds(random_state, n_repeats)
    paths = []
    with restored(model):
        session = pr._session(selection, test, func)
        for s in seeds:
            steps, _, stopped_by = _path(session, "random", floor=floor, max_drop=max_drop, tie_break="index",
                                         rng=np.random.default_rng(s))
            ds = _path_dataset(session, steps, method="random", attrs=pr._attrs(floor, max_drop, stopped_by))
            ds["stopped_by"] = ds.attrs.pop("stopped_by")
            ds.attrs.pop("random_state", None)
            paths.append(ds)
    out = xr.concat(paths, dim="repeat", join="outer", fill_value={"removed": -1, "n_kept": -1, "tied": -1})
    out = out.assign_coords(repeat=np.arange(n_repeats), seed=("repeat", np.asarray(seeds, dtype=np.int64)))
    out.attrs["random_state"] = random_state if isinstance(random_state, int) else ""
    return out


# ---------------------------------------------------------------------------------------------- physical
def _chain_to_next(model: nn.Module, target: _Target, func: str):
    """Check (on the traced graph) that the layer's output reaches only ``target.next``, per channel."""
    import torch.fx as fx

    named = dict(model.named_modules())
    try:
        graph = fx.symbolic_trace(model).graph
    except Exception as exc:  # noqa: BLE001
        raise param_error("model", func, "a model torch.fx can trace", type(model).__name__,
                          f"({exc}); use mask_filters") from None
    start = [n for n in graph.nodes if n.op == "call_module" and n.target == target.module]
    if len(start) != 1:
        raise param_error("layer", func, "a layer called once per forward pass", target.layer, "use mask_filters")
    cur, flattened = start[0], False
    while True:
        users = list(cur.users)
        if len(users) != 1:
            break
        u = users[0]
        if u.op == "call_module" and u.target == target.next:
            return flattened
        if u.op == "call_module" and isinstance(named.get(u.target), _PER_CHANNEL):
            flattened |= isinstance(named[u.target], nn.Flatten)
        elif u.op == "call_function" and getattr(u.target, "__name__", "") in ("flatten", "relu", "relu_"):
            flattened |= u.target.__name__ == "flatten"
        elif u.op == "call_method" and u.target in ("flatten", "view", "reshape", "relu", "relu_"):
            flattened |= u.target != "relu" and u.target != "relu_"
        else:
            break
        cur = u
    raise param_error("layer", func, "a layer whose channels reach only the next Conv2d / Linear through "
                      "per-channel operations (batch norm, activations, pooling, flatten)", target.layer,
                      "a residual connection or branch cannot be removed physically; use mask_filters")


def remove_filters(model: nn.Module, layer: str, filters) -> nn.Module:
    """A copy of ``model`` with ``filters`` of ``layer`` physically removed (a smaller network).

    Removes the filters' output channels of the Conv2d (or rows of the Linear), their batch-norm entries,
    and the next layer's input channels (or the columns of a Linear after a flatten). ``model`` is not
    changed.

    Parameters
    ----------
    model : nn.Module
    layer : str
    filters : int, sequence of int or boolean mask (True = removed)

    Returns
    -------
    nn.Module
        A deep copy with smaller modules.

    Raises
    ------
    NetphysError
        For a layer whose channels do not flow to the next Conv2d / Linear through per-channel operations
        only (residual blocks, branches), a grouped layer or consumer, or removing every filter.
    """
    func = "remove_filters"
    target = _resolve_target(model, layer, func)
    removed = _check_filters(filters, target.n, func)
    keep = np.setdiff1d(np.arange(target.n), removed)
    if keep.size == 0:
        raise param_error("filters", func, f"at most {target.n - 1} of the {target.n} filters", removed.size,
                          "a layer is never pruned to zero")
    if target.next is None:
        raise param_error("layer", func, "a layer followed by a Conv2d or Linear layer", layer)
    _chain_to_next(model, target, func)
    named = dict(model.named_modules())
    conv, nxt = named[target.module], named[target.next]
    for nm, m in ((target.module, conv), (target.next, nxt)):
        if isinstance(m, nn.Conv2d) and m.groups != 1:
            raise param_error("layer", func, "ungrouped convolutions", f"{nm} with groups={m.groups}",
                              "use mask_filters")
    new = copy.deepcopy(model)
    nnamed = dict(new.named_modules())
    kt = torch.as_tensor(keep, device=conv.weight.device)

    def put(name, module):
        parent, _, child = name.rpartition(".")
        setattr(nnamed[parent] if parent else new, child, module)

    def like(m, **over):
        kw = dict(device=m.weight.device, dtype=m.weight.dtype)
        if isinstance(m, nn.Conv2d):
            args = dict(in_channels=m.in_channels, out_channels=m.out_channels, kernel_size=m.kernel_size,
                        stride=m.stride, padding=m.padding, dilation=m.dilation, bias=m.bias is not None,
                        padding_mode=m.padding_mode)
            args.update(over)
            return nn.Conv2d(**args, **kw)
        args = dict(in_features=m.in_features, out_features=m.out_features, bias=m.bias is not None)
        args.update(over)
        return nn.Linear(**args, **kw)

    with torch.no_grad():
        over = {"out_channels": keep.size} if isinstance(conv, nn.Conv2d) else {"out_features": keep.size}
        c2 = like(conv, **over)
        c2.weight.copy_(conv.weight[kt])
        if conv.bias is not None:
            c2.bias.copy_(conv.bias[kt])
        put(target.module, c2)
        if target.bn is not None:
            bn = named[target.bn]
            b2 = type(bn)(keep.size, eps=bn.eps, momentum=bn.momentum, affine=bn.affine,
                          track_running_stats=bn.track_running_stats, device=conv.weight.device)
            if bn.affine:
                b2.weight.copy_(bn.weight[kt])
                b2.bias.copy_(bn.bias[kt])
            if bn.track_running_stats:
                b2.running_mean.copy_(bn.running_mean[kt])
                b2.running_var.copy_(bn.running_var[kt])
                b2.num_batches_tracked.copy_(bn.num_batches_tracked)
            put(target.bn, b2)
        if isinstance(nxt, nn.Conv2d):
            n2 = like(nxt, in_channels=keep.size)
            n2.weight.copy_(nxt.weight[:, kt])
        else:
            if nxt.in_features % target.n:
                raise param_error("layer", func, "a layer whose channels map to whole groups of the next "
                                  "layer's features", layer)
            s = nxt.in_features // target.n
            cols = torch.as_tensor((keep[:, None] * s + np.arange(s)[None]).ravel(), device=nxt.weight.device)
            n2 = like(nxt, in_features=cols.numel())
            n2.weight.copy_(nxt.weight[:, cols])
        if nxt.bias is not None:
            n2.bias.copy_(nxt.bias)
        put(target.next, n2)
    new.train(model.training)
    return new


# ---------------------------------------------------------------------------------------------- finetune
def _masks_arg(model, masks, func):
    if isinstance(masks, GreedyPruner):
        if not hasattr(masks, "kept_"):
            raise param_error("masks", func, "a fitted GreedyPruner", "an unfitted one", "call fit first")
        masks = {masks.layer: ~masks.kept_}
    if not isinstance(masks, Mapping) or not masks:
        raise param_error("masks", func, "a mapping {layer: removed filters} or a fitted GreedyPruner",
                          type(masks).__name__)
    out = []
    for layer, f in masks.items():
        t = _resolve_target(model, layer, func)
        r = _check_filters(f, t.n, func, "masks")
        if r.size >= t.n:
            raise param_error("masks", func, "masks that keep at least one filter per layer", layer)
        out.append((t, r))
    return out


def _bake(model, pairs):
    """Zero the removed filters' weights, biases, batch-norm affine terms and outgoing weights."""
    named = dict(model.named_modules())
    with torch.no_grad():
        for t, r in pairs:
            if r.size == 0:
                continue
            idx = torch.as_tensor(r, device=named[t.module].weight.device)
            m = named[t.module]
            m.weight.index_fill_(0, idx, 0.0)
            if m.bias is not None:
                m.bias.index_fill_(0, idx, 0.0)
            if t.bn is not None and named[t.bn].affine:
                named[t.bn].weight.index_fill_(0, idx, 0.0)
                named[t.bn].bias.index_fill_(0, idx, 0.0)
            sl = _reading_slices(model, t, "finetune")
            if sl is not None:
                w = named[t.next].weight
                for c in r:
                    w[sl[c]] = 0.0


def finetune(model: nn.Module, masks, data, *, iterations: int = 500, batch_size: int = 32,
             lr_pruned: float = 0.0, lr_next: float = 1e-3, lr_other: float = 1e-4, momentum: float = 0.9,
             class_index=None, random_state=0, device=None) -> pd.DataFrame:
    """Fine-tune a pruned network in place with the thesis's learning-rate policy, keeping the filters removed.

    Parameters
    ----------
    model : nn.Module
        Trained in place; its mode is restored on return.
    masks : mapping {layer: removed filters} or fitted GreedyPruner
        Removed filters per layer (indices or boolean masks, True = removed).
    data : StimulusSet, (inputs, labels) or splits mapping
        Labelled training images (a mapping from :mod:`netphys.training.data`: its ``train`` split).
    iterations : int, default 500
        SGD steps (the thesis: 500, enough for the accuracy to converge).
    batch_size : int, default 32
    lr_pruned, lr_next, lr_other : float, default 0, 1e-3, 1e-4
        Learning rates of the pruned layers (and their batch norms), of the layers reading them (the next
        Conv2d / Linear and its batch norm), and of every other parameter.
    momentum : float, default 0.9
        SGD momentum (Caffe's default solver).
    class_index : sequence or mapping, optional
        Output index of each label (see :class:`GreedyPruner`).
    random_state : int, default 0
        Seeds the minibatch order.
    device : optional
        Default: the model's device.

    Returns
    -------
    pandas.DataFrame
        ``iteration`` and training ``loss``.

    Raises
    ------
    NetphysError
        Bad masks or options (nothing is changed), or a non-finite loss.

    Notes
    -----
    The removed filters stay removed: their channels are masked in every forward pass, and after every
    step their weights, biases, batch-norm scale and shift and the next layer's weights reading them are
    set to zero again, so the returned network computes the pruned network without any mask. Batch-norm
    statistics are kept frozen (eval mode) while dropout is active.

    References
    ----------
    R. Abbasi-Asl, PhD thesis (2018), section 2.3: learning rate 0 for the compressed layer, 0.001 for the
    next layer and 0.0001 for all others, 500 iterations.
    """
    func = "finetune"
    pairs = _masks_arg(model, masks, func)
    iterations = check_int(iterations, "iterations", func, min_value=1)
    batch_size = check_int(batch_size, "batch_size", func, min_value=1)
    for p, v in (("lr_pruned", lr_pruned), ("lr_next", lr_next), ("lr_other", lr_other), ("momentum", momentum)):
        if not isinstance(v, numbers.Real) or isinstance(v, bool) or not math.isfinite(v) or v < 0:
            raise param_error(p, func, "a finite number >= 0", v)
    if isinstance(data, Mapping):
        from ..training.data import split_stimuli

        data = split_stimuli(data, "train")
    d = _as_data(data, "data", func, class_index)
    gen = torch_generator(random_state, func)
    named = dict(model.named_modules())
    pruned_params, next_params = set(), set()
    for t, _ in pairs:
        for nm in (t.module, t.bn):
            if nm:
                pruned_params |= {id(p) for p in named[nm].parameters()}
        if t.next:
            nb = _resolve_target(model, t.next, func).bn
            for nm in (t.next, nb):
                if nm:
                    next_params |= {id(p) for p in named[nm].parameters()}
    groups = {"pruned": [], "next": [], "other": []}
    for p in model.parameters():
        key = "pruned" if id(p) in pruned_params else "next" if id(p) in next_params else "other"
        groups[key].append(p)
    lrs = {"pruned": lr_pruned, "next": lr_next, "other": lr_other}
    pg = [{"params": ps, "lr": float(lrs[k])} for k, ps in groups.items() if ps and lrs[k] > 0]
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    history = []
    with restored(model, eval_mode=False, device=dev):
        _bake(model, pairs)
        if not pg:
            return pd.DataFrame({"iteration": [], "loss": []})
        opt = torch.optim.SGD(pg, lr=float(max(lrs.values())), momentum=float(momentum))
        targets = torch.as_tensor(d.targets)
        n, perm, pos = len(d), None, 0
        with contextlib.ExitStack() as stack:
            for t, r in pairs:
                stack.enter_context(_masked(model, t, r))
            for it in range(1, iterations + 1):
                if perm is None or pos + min(batch_size, n) > n:
                    perm, pos = torch.randperm(n, generator=gen), 0
                idx = perm[pos:pos + min(batch_size, n)]
                pos += len(idx)
                model.train()
                for m in model.modules():
                    if isinstance(m, _BN):
                        m.eval()
                loss = F.cross_entropy(model(d.batch(idx, dev)), targets[idx].to(dev))
                value = float(loss.item())
                if not math.isfinite(value):
                    raise NetphysError(f"fine-tuning diverged: the loss of finetune became {value} at iteration "
                                       f"{it}; lower the learning rates")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                _bake(model, pairs)
                history.append({"iteration": it, "loss": value})
    return pd.DataFrame(history)
