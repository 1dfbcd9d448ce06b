"""Windowed backward passes for :mod:`netphys.rf.gradient` (convolutional graphs on the CPU).

The input gradient of one unit of a convolutional layer is nonzero only in the unit's cone: the part
of every feature map below the layer that the unit's cotangent can reach, which for a deep unit is
often a fraction of the map (about 40 % of the multiply-adds for a unit of ResNet-50's layer3 at
224 px). Autograd computes every backward node on the whole map; here the autograd graph recorded by
the forward pass is walked node by node instead (in topological order, summing the gradients that
meet at a node), each gradient is kept as a dense tensor over a window (a box of its map, zero
outside it: the box that the cotangent's window can reach through the node's kernel, stride,
padding and dilation) and each node is applied to the window only:

* :class:`WindowedGraph` gives ``sum_c |d unit / d input|`` for groups of units (the units of one
  group share an output position), from the values the forward pass saved in the graph (the gate
  masks of ReLUs, the max-pool indices, the convolution weights, the batch-norm statistics): the
  gradient autograd computes, summed in another order. Gates multiply by their 0/1 mask (which is
  what their backward does on finite values; a non-finite result is refused);
* :class:`SupportGraph` propagates the connectivity of output positions (a one-channel boolean map
  per position) through a structural graph: the support that a NaN cotangent on every channel of the
  position would give, with no backward pass.

Only a known set of backward nodes is handled (2-D convolutions, eval-mode batch norm,
ReLU/threshold/hardtanh gates, max and average pools, spatial constant pads, sums, differences,
clones). Any other node
reaching the input, a node's output other than the first, a missing saved tensor or a non-CPU tensor
raises :class:`Unsupported` when the graph is built; gradients of different shapes meeting
(broadcasting) raise it during the walk. The caller then uses plain autograd.
"""
from __future__ import annotations

import abc

import torch
import torch.nn.functional as F

__all__ = ["Unsupported", "WindowedGraph", "SupportGraph"]


class Unsupported(Exception):
    """The graph (or a node of it) is outside what the windowed backward handles."""


def _reaching(out: torch.Tensor, leaf: torch.Tensor) -> tuple[list, dict]:
    """Backward nodes below ``out`` that reach ``leaf`` (children before parents), and for each of
    them the number of edges from other such nodes that point to it."""
    root = out.grad_fn
    if root is None:
        raise Unsupported("no graph")
    post, seen, stack = [], {root}, [(root, iter(root.next_functions))]
    while stack:  # iterative depth-first post-order (deep graphs: no recursion limit)
        fn, it = stack[-1]
        for child, _ in it:
            if child is not None and child not in seen:
                seen.add(child)
                stack.append((child, iter(child.next_functions)))
                break
        else:
            stack.pop()
            post.append(fn)
    reach: dict = {}
    for fn in post:
        if type(fn).__name__ == "AccumulateGrad":
            reach[fn] = fn.variable is leaf
        else:
            reach[fn] = any(reach.get(c, False) for c, _ in fn.next_functions if c is not None)
    nodes = [fn for fn in post if reach[fn]]
    indeg = {fn: 0 for fn in nodes}
    for fn in nodes:
        for child, nr in fn.next_functions:
            if child is not None and reach.get(child, False):
                if nr != 0:
                    raise Unsupported("a node's output other than the first")
                indeg[child] += 1
    if getattr(out, "output_nr", 0) != 0:
        raise Unsupported("the layer output is not a node's first output")
    return nodes, indeg


def _pair(v) -> tuple[int, int]:
    v = tuple(int(x) for x in v)
    if len(v) == 1:
        v = v * 2
    if len(v) != 2:
        raise Unsupported("not 2-D")
    return v


def _pool_out(n: int, k: int, s: int, p: int, d: int, ceil: bool) -> int:
    """PyTorch's pooling output size."""
    num = n + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil else 0)
    out = num // s + 1
    if ceil and (out - 1) * s >= n + p:
        out -= 1
    return out


def _span(o0: int, h: int, s: int, p: int, d: int, k: int, n: int) -> tuple[int, int, int]:
    """Input rows ``[lo, hi)`` reached from output rows ``[o0, o0 + h)`` of a windowed op (kernel
    ``k``, stride ``s``, padding ``p``, dilation ``d``, input size ``n``) and the offset of ``lo`` in
    the unpadded transposed result (whose index 0 is input row ``o0 * s - p``)."""
    start = o0 * s - p
    stop = start + (h - 1) * s + (k - 1) * d + 1
    lo, hi = max(0, start), min(n, stop)
    return lo, max(lo, hi), lo - start


class _Node:
    """The static description of one handled backward node."""

    __slots__ = ("fn", "kind", "out_hw", "in_hw", "out_c", "k", "s", "p", "d", "extra")

    def __init__(self, fn, kind, out_hw=None, in_hw=None, out_c=None, k=(1, 1), s=(1, 1), p=(0, 0),
                 d=(1, 1), extra=None):
        self.fn, self.kind, self.out_hw, self.in_hw, self.out_c = fn, kind, out_hw, in_hw, out_c
        self.k, self.s, self.p, self.d, self.extra = k, s, p, d, extra


def _cpu(*ts, optional=()):
    """The saved tensors ``ts`` exist and, with the ``optional`` ones that exist, are on the CPU."""
    if any(t is None for t in ts):
        raise Unsupported("a saved tensor is missing")
    if any(t is not None and t.device.type != "cpu" for t in ts + tuple(optional)):
        raise Unsupported("not on the CPU")


def _describe(fn, leaf, values: bool) -> _Node:
    """Static description of ``fn``; ``values``: the node must give gradient values (not only the
    support), so that gates and max-pools (whose gradient depends on the forward values) are allowed."""
    name = type(fn).__name__
    if name == "AccumulateGrad":
        return _Node(fn, "leaf", out_hw=tuple(leaf.shape[-2:]), out_c=leaf.shape[1])
    if name == "ConvolutionBackward0":
        x, w = fn._saved_input, fn._saved_weight
        _cpu(x, w)
        if fn._saved_transposed or x.dim() != 4 or w.dim() != 4 or x.shape[0] != 1:
            raise Unsupported("not a 2-D convolution of one image")
        k, s, p, d = _pair(w.shape[-2:]), _pair(fn._saved_stride), _pair(fn._saved_padding), \
            _pair(fn._saved_dilation)
        in_hw = tuple(x.shape[-2:])
        out_hw = tuple(_pool_out(in_hw[a], k[a], s[a], p[a], d[a], False) for a in (0, 1))
        groups = int(fn._saved_groups)
        extra = {"w": w, "groups": groups, "c_in": x.shape[1]}
        if values and groups == 1 and k == (1, 1):  # the transposed 1 x 1 weight, as a convolution's
            extra["w1"] = w.reshape(w.shape[0], -1).t().contiguous().view(x.shape[1], w.shape[0], 1, 1)
        elif values and groups == 1 and x.shape[1] < 16:  # few input channels (the stem): col2im
            extra["wt"] = w.reshape(w.shape[0], -1).t().contiguous()  # (c_in * kh * kw, c_out)
        return _Node(fn, "conv", out_hw, in_hw, w.shape[0], k, s, p, d, extra)
    if name == "NativeBatchNormBackward0":
        x, var, w = fn._saved_input, fn._saved_running_var, fn._saved_weight
        _cpu(x, optional=(var, w))
        if fn._saved_training or var is None or x.dim() != 4:
            raise Unsupported("batch norm in training mode (it mixes positions)")
        extra = None
        if values:
            invstd = 1 / torch.sqrt(var + fn._saved_eps)
            extra = (invstd if w is None else w * invstd).view(1, -1, 1, 1)
        return _Node(fn, "scale", tuple(x.shape[-2:]), tuple(x.shape[-2:]), x.shape[1], extra=extra)
    if name in ("AddBackward0", "SubBackward0"):
        alpha = float(getattr(fn, "_saved_alpha", 1))
        signs = (1.0, alpha if name == "AddBackward0" else -alpha)
        return _Node(fn, "sum", extra=signs)
    if name == "CloneBackward0":
        return _Node(fn, "sum", extra=(1.0,))
    if name == "ConstantPadNdBackward0":  # F.pad of the two spatial dims: its backward crops
        pad = tuple(int(v) for v in fn._saved_pad)
        if len(pad) != 4:
            raise Unsupported("a pad of other dims than the last two")
        return _Node(fn, "pad", extra=pad)
    if name == "AvgPool2DBackward0":
        x = fn._saved_self
        _cpu(x)
        if x.dim() != 4 or x.shape[0] != 1:
            raise Unsupported("not a 2-D pool of one image")
        k, s, p = _pair(fn._saved_kernel_size), _pair(fn._saved_stride or fn._saved_kernel_size), \
            _pair(fn._saved_padding)
        ceil = bool(fn._saved_ceil_mode)
        in_hw = tuple(x.shape[-2:])
        out_hw = tuple(_pool_out(in_hw[a], k[a], s[a], p[a], 1, ceil) for a in (0, 1))
        extra = (x, fn._saved_kernel_size, fn._saved_stride, fn._saved_padding, ceil,
                 bool(fn._saved_count_include_pad), fn._saved_divisor_override)
        if values and not ceil and extra[5] and extra[6] is None:  # every window divides by kh * kw
            extra = {"divisor": k[0] * k[1], "c": x.shape[1]}
        return _Node(fn, "avgpool", out_hw, in_hw, x.shape[1], k, s, p, (1, 1), extra)
    if values and name == "MaxPool2DWithIndicesBackward0":
        x, idx = fn._saved_self, fn._saved_result1
        _cpu(x, idx)
        if x.dim() != 4 or x.shape[0] != 1:
            raise Unsupported("not a 2-D pool of one image")
        k, s, p, d = _pair(fn._saved_kernel_size), _pair(fn._saved_stride or fn._saved_kernel_size), \
            _pair(fn._saved_padding), _pair(fn._saved_dilation)
        extra = {"idx": idx, "w_in": x.shape[-1]}
        return _Node(fn, "maxpool", tuple(idx.shape[-2:]), tuple(x.shape[-2:]), x.shape[1], k, s, p, d, extra)
    if values and name in ("ReluBackward0", "ThresholdBackward0", "HardtanhBackward0"):
        y = fn._saved_result if name == "ReluBackward0" else fn._saved_self
        _cpu(y)
        if y.dim() != 4 or y.shape[0] != 1:
            raise Unsupported("not a map of one image")
        # the 0/1 mask of ATen's backward: zero where x <= threshold (ReLU: 0, on its output), or where
        # x <= min or x >= max (hardtanh); NaN passes, as there
        if name == "HardtanhBackward0":
            lo, hi = fn._saved_min_val, fn._saved_max_val
            mask = lambda: (~((y <= lo) | (y >= hi))).to(y.dtype)  # noqa: E731
        else:
            thr = 0.0 if name == "ReluBackward0" else fn._saved_threshold
            mask = lambda: (~(y <= thr)).to(y.dtype)  # noqa: E731
        return _Node(fn, "gate", tuple(y.shape[-2:]), tuple(y.shape[-2:]), y.shape[1], extra={"mask": mask})
    raise Unsupported(name)


class _Msg:
    """A gradient over the window ``[r, r + h) x [c, c + w)`` of an ``hw`` map (zero outside)."""

    __slots__ = ("t", "r", "c", "hw")

    def __init__(self, t, r, c, hw):
        self.t, self.r, self.c, self.hw = t, r, c, tuple(hw)


def _merge(a: _Msg, b: _Msg) -> _Msg:
    if a.hw != b.hw or a.t.shape[:2] != b.t.shape[:2]:
        raise Unsupported("gradients of different shapes meet (broadcasting)")
    if a.r == b.r and a.c == b.c and a.t.shape == b.t.shape:
        return _Msg(a.t + b.t, a.r, a.c, a.hw)
    r, c = min(a.r, b.r), min(a.c, b.c)
    h = max(a.r + a.t.shape[2], b.r + b.t.shape[2]) - r
    w = max(a.c + a.t.shape[3], b.c + b.t.shape[3]) - c
    t = a.t.new_zeros(a.t.shape[:2] + (h, w))
    for m in (a, b):
        t[:, :, m.r - r:m.r - r + m.t.shape[2], m.c - c:m.c - c + m.t.shape[3]] += m.t
    return _Msg(t, r, c, a.hw)


class _Walker(abc.ABC):
    """Topological walk of the nodes reaching the input, carrying one message per group of units
    (units at one output position) through each node."""

    values = True

    def __init__(self, out: torch.Tensor, leaf: torch.Tensor):
        _cpu(out, leaf)
        if out.dim() != 4 or out.shape[0] != 1 or leaf.dim() != 4 or leaf.shape[0] != 1:
            raise Unsupported("not a map of one image")
        nodes, self.indeg = _reaching(out, leaf)
        try:
            self.desc = {fn: _describe(fn, leaf, self.values) for fn in nodes}
        except RuntimeError as exc:  # e.g. a saved tensor modified in place
            raise Unsupported(str(exc)) from exc
        for fn, node in self.desc.items():  # a handled node passes gradients on its first edges only
            n_out = 0 if node.kind == "leaf" else len(node.extra) if node.kind == "sum" else 1
            if any(c in self.desc for c, _ in fn.next_functions[n_out:]):
                raise Unsupported(f"{type(fn).__name__} passes the input gradient through a parameter")
        self.root, self.out_shape = out.grad_fn, tuple(out.shape[1:])
        self.leaf_hw = tuple(leaf.shape[-2:])
        if not any(d.kind == "leaf" for d in self.desc.values()):
            raise Unsupported("the input is not reached")

    def _walk(self, seeds: list) -> list:
        n = len(seeds)
        pending = dict(self.indeg)
        inbox = {self.root: list(seeds)}
        ready = [self.root]
        result = [None] * n
        while ready:
            fn = ready.pop()
            msgs = inbox.pop(fn, None)
            if msgs is not None and all(m is None for m in msgs):
                msgs = None
            node = self.desc[fn]
            if node.kind == "leaf":
                result = msgs or result
                continue
            outs = self._apply(node, msgs) if msgs is not None else []
            for e, (child, _) in enumerate(fn.next_functions):
                if child is None or child not in self.desc:
                    continue
                if e < len(outs):
                    box = inbox.get(child)
                    if box is None:
                        box = inbox[child] = [None] * n
                    for i, m in enumerate(outs[e]):
                        if m is not None:
                            box[i] = m if box[i] is None else _merge(box[i], m)
                pending[child] -= 1
                if pending[child] == 0:
                    ready.append(child)
        if any(m is not None and m.hw != self.leaf_hw for m in result):
            raise Unsupported("the input gradient has another shape")
        return result

    def _check(self, node: _Node, msgs: list):
        for m in msgs:
            if m is None:
                continue
            if node.out_hw is not None and m.hw != node.out_hw:
                raise Unsupported("shape mismatch (broadcasting)")
            if self.values and node.out_c is not None and m.t.shape[1] != node.out_c:
                raise Unsupported("channel mismatch (broadcasting)")

    @abc.abstractmethod
    def _apply(self, node: _Node, msgs: list) -> list:
        """The messages ``node`` sends to its inputs, given the messages that reached it."""

    @staticmethod
    def _unpad(node: _Node, m: _Msg) -> _Msg | None:
        """The window of the unpadded input (the pad's backward keeps the input's part)."""
        left, right, top, bottom = node.extra
        H, W = m.hw[0] - top - bottom, m.hw[1] - left - right
        h, w = m.t.shape[-2:]
        r0, r1 = max(0, m.r - top), min(H, m.r - top + h)
        c0, c1 = max(0, m.c - left), min(W, m.c - left + w)
        if r1 <= r0 or c1 <= c0:
            return None
        a, b = r0 - (m.r - top), c0 - (m.c - left)
        return _Msg(m.t[:, :, a:a + r1 - r0, b:b + c1 - c0], r0, c0, (H, W))

    @staticmethod
    def _spans(node: _Node, m: _Msg):
        """``(r0, r1, a0), (c0, c1, b0)``: the input window reached from ``m``'s window, and its
        offset in the unpadded transposed result."""
        return [_span(o, n, node.s[a], node.p[a], node.d[a], node.k[a], node.in_hw[a])
                for a, (o, n) in enumerate(((m.r, m.t.shape[2]), (m.c, m.t.shape[3])))]


class WindowedGraph(_Walker):
    """Input gradients of single units through a recorded graph, computed window by window.

    ``input_grads([(cotangent, row, col), ...])`` gives, for each group, ``sum_c |v . d out / d leaf|``
    for the cotangents ``v`` that are ``cotangent[i]`` (shape ``(k, C)``) at output position
    ``(row, col)`` and zero elsewhere: the values of :func:`netphys.rf._probe.batched_input_grads`,
    up to the order of summation.
    """

    values = True

    def input_grads(self, groups: list) -> list:
        seeds = []
        for cot, row, col in groups:
            if cot.shape[1] != self.out_shape[0]:
                raise Unsupported("cotangent channels")
            seeds.append(_Msg(cot.reshape(cot.shape[0], -1, 1, 1), int(row), int(col), self.out_shape[1:]))
        grads = []
        for (cot, _, _), res in zip(groups, self._walk(seeds)):
            g = torch.zeros((cot.shape[0],) + self.leaf_hw, dtype=torch.float32)
            if res is not None and res.t.numel():
                if not bool(torch.isfinite(res.t).all()):  # the gate masks multiply: keep to finite values
                    raise Unsupported("non-finite gradient")
                h, w = res.t.shape[-2:]
                g[:, res.r:res.r + h, res.c:res.c + w] = res.t.detach().abs().sum(1).float()
            grads.append(g)
        return grads

    def _apply(self, node: _Node, msgs: list) -> list:
        self._check(node, msgs)
        kind = node.kind
        if kind == "sum":
            return [[m if m is None or a == 1 else _Msg(m.t * a, m.r, m.c, m.hw) for m in msgs]
                    for a in node.extra]
        return [[None if m is None else self._one(node, m) for m in msgs]]

    def _one(self, node: _Node, m: _Msg) -> _Msg | None:
        kind, t, e = node.kind, m.t, node.extra
        h, w = t.shape[-2:]
        if kind == "pad":
            return self._unpad(node, m)
        if kind == "scale":
            return _Msg(t * e, m.r, m.c, m.hw)
        if kind == "gate":  # the gate's 0/1 mask (a multiplication: fast on windows; finite values)
            if callable(e["mask"]):
                e["mask"] = e["mask"]()
            return _Msg(t * e["mask"][:, :, m.r:m.r + h, m.c:m.c + w], m.r, m.c, m.hw)
        (r0, r1, a0), (c0, c1, b0) = self._spans(node, m)
        if r1 <= r0 or c1 <= c0:
            return None
        if kind == "conv" or (kind == "avgpool" and isinstance(e, dict)):
            u = self._conv_t(node, t) if kind == "conv" else F.conv_transpose2d(
                t / e["divisor"], t.new_ones((e["c"], 1) + node.k), stride=node.s, groups=e["c"])
            return _Msg(u[:, :, a0:a0 + r1 - r0, b0:b0 + c1 - c0], r0, c0, node.in_hw)
        k, ch = t.shape[:2]
        if kind == "maxpool":  # each output's gradient goes to its argmax, inside the window
            if "rows" not in e:
                e["rows"], e["cols"] = e["idx"][0] // e["w_in"], e["idx"][0] % e["w_in"]
            wc = c1 - c0
            local = ((e["rows"][:, m.r:m.r + h, m.c:m.c + w] - r0) * wc
                     + (e["cols"][:, m.r:m.r + h, m.c:m.c + w] - c0)).reshape(ch, h * w)
            if local.numel() and (int(local.min()) < 0 or int(local.max()) >= (r1 - r0) * wc):
                raise Unsupported("a max-pool index outside its window")
            u = t.new_zeros((k, ch, (r1 - r0) * wc)).scatter_add_(
                2, local.expand(k, -1, -1), t.reshape(k, ch, h * w))
            return _Msg(u.view(k, ch, r1 - r0, wc), r0, c0, node.in_hw)
        # other average pools: the exact ATen backward on the whole map, then the window
        x, ks, st, pd, ceil, cip, div = e
        full = t.new_zeros((k, ch) + node.out_hw)
        full[:, :, m.r:m.r + h, m.c:m.c + w] = t
        u = torch.ops.aten.avg_pool2d_backward(full, x.expand(k, -1, -1, -1), ks, st, pd, ceil, cip, div)
        return _Msg(u[:, :, r0:r1, c0:c1], r0, c0, node.in_hw)

    @staticmethod
    def _conv_t(node: _Node, t: torch.Tensor) -> torch.Tensor:
        """The unpadded transposed convolution of ``t`` (the input gradient before the padding crop):
        a 1 x 1 convolution with the transposed weight (then spread over the stride), a matrix product
        and col2im for few input channels, ``conv_transpose2d`` otherwise (the fastest measured on
        windows, one thread)."""
        e = node.extra
        k, co, h, w = t.shape
        (kh, kw), (sh, sw), (dh, dw) = node.k, node.s, node.d
        size = ((h - 1) * sh + (kh - 1) * dh + 1, (w - 1) * sw + (kw - 1) * dw + 1)
        if "w1" in e:
            g = F.conv2d(t, e["w1"])
            if (sh, sw) == (1, 1):
                return g
            out = t.new_zeros((k, g.shape[1]) + size)
            out[:, :, ::sh, ::sw] = g
            return out
        if "wt" in e:
            cols = torch.matmul(e["wt"], t.reshape(k, co, h * w))  # (k, c_in * kh * kw, h * w)
            return F.fold(cols, size, (kh, kw), dilation=node.d, stride=node.s)
        return F.conv_transpose2d(t, e["w"], stride=node.s, dilation=node.d, groups=e["groups"])


class SupportGraph(_Walker):
    """Connectivity of output positions through a structural graph (gates open, pools averaged).

    ``boxes(rows, cols)`` gives, for each output position, the bounding box of the input pixels
    connected to it (any channel): the support of a NaN cotangent on every channel of that position
    (``nan * w`` is ``nan``, so nothing cancels), computed as a one-channel boolean map.
    """

    values = False

    def boxes(self, rows, cols):
        import numpy as np

        from . import _probe

        h, w = self.out_shape[1:]
        k = len(rows)
        seed = torch.zeros((k, 1, h, w))
        seed[torch.arange(k), 0, torch.as_tensor(rows), torch.as_tensor(cols)] = 1
        (res,) = self._walk([_Msg(seed, 0, 0, (h, w))])  # the whole map: one walk for every position
        if res is None:
            return np.zeros((k, 4), dtype=np.int64)
        full = torch.zeros((k,) + self.leaf_hw, dtype=torch.bool)
        hh, ww = res.t.shape[-2:]
        full[:, res.r:res.r + hh, res.c:res.c + ww] = res.t[:, 0] > 0
        return _probe.boxes_of(full)

    def _apply(self, node: _Node, msgs: list) -> list:
        self._check(node, msgs)
        if node.kind in ("sum", "scale"):
            return [list(msgs) for _ in (node.extra if node.kind == "sum" else (0,))]
        if node.kind == "pad":
            return [[None if m is None else self._unpad(node, m) for m in msgs]]
        out = []
        for m in msgs:  # conv and avg pool: every tap connects (a NaN spreads over the whole footprint)
            if m is not None:
                u = F.conv_transpose2d(m.t, m.t.new_ones((1, 1) + node.k), stride=node.s, dilation=node.d)
                (r0, r1, a0), (c0, c1, b0) = self._spans(node, m)
                m = None if r1 <= r0 or c1 <= c0 else _Msg(
                    (u[:, :, a0:a0 + r1 - r0, b0:b0 + c1 - c0] > 0).to(m.t.dtype), r0, c0, node.in_hw)
            out.append(m)
        return [out]
