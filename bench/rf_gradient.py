"""Benchmark: gradient receptive fields of a ResNet-50 layer, windowed/bounded probes vs the plain loop.

Times :func:`netphys.rf.gradient_receptive_fields` on ``--units`` units of one layer of a torchvision
ResNet-50 (random weights, seeded; nothing is downloaded) at ``--size`` px, against a copy of the
previous implementation kept here as the naive reference (every probe for every unit, the input
replicated once per unit of a batch, a full forward per replica). Checks that both give the same
boxes and dead units, and prints both times and their ratio.

On the CPU the implementation walks the recorded graph window by window (each unit's gradient only
on its cone, :mod:`netphys.rf._window`), takes the connectivity bound of each unit's position from a
boolean walk (no backward pass) and stops a unit once its box reaches it; for layer3.5.conv2 at
224 px every unit is settled by its first random probe, so the time is about one windowed backward
per unit (about 40 % of a full one's multiply-adds) plus two forward passes.

    python bench/rf_gradient.py                       # layer3.5.conv2, 64 units, 224 px, 1 thread
    python bench/rf_gradient.py --layer layer3 --units 64 --threads 1
    python bench/rf_gradient.py --skip-naive          # the new implementation only
"""
from __future__ import annotations

import argparse
import contextlib
import json
import time
import warnings

import numpy as np
import torch


# --------------------------------------------------------------------------------------------------
# the previous algorithm (naive reference), copied as it was before the batched probes
# --------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _selecting_hook(module, state):
    from netphys.recording.hooks import StopForward

    def hook(mod, args, out):
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


def naive_gradient_boxes(model, layer, channels, rows, cols, input_size, *, n_samples=8, random_state=0,
                         threshold=0.0, structural=True, batch_size=16):
    """Boxes (U, 4) and dead flags (U,) exactly as the previous implementation computed them."""
    from netphys.recording.hooks import restored
    from netphys.rf.geometry import _infer_in_channels, _input_hw, _probing_forward, _resolve_module
    from netphys.rf.gradient import _probe_inputs, _structural_gradients, _support_boxes

    func = "naive"
    _, module = _resolve_module(model, layer, func)
    hw = _input_hw(input_size, func)
    rows, cols = np.atleast_1d(np.asarray(rows, dtype=np.int64)), np.atleast_1d(np.asarray(cols, dtype=np.int64))
    chans = None if channels is None else np.broadcast_to(np.asarray(channels, dtype=np.int64), rows.shape)
    samples = _probe_inputs(n_samples, _infer_in_channels(model, None, func), hw, random_state, func)
    use_structural = structural and threshold == 0.0
    n_units = rows.size
    boxes = np.zeros((n_units, 4), dtype=np.int64)
    dead = np.zeros(n_units, dtype=bool)
    state: dict = {}

    def unit_gradients(x, k):
        leaf = x.expand(k, -1, -1, -1).clone().requires_grad_(True)
        state.pop("selected", None)
        with _probing_forward(leaf.shape, func):
            model(leaf.clone())
        sel = state.pop("selected", None)
        if sel is None or not sel.requires_grad:
            return None
        (grad,) = torch.autograd.grad(sel.sum(), leaf, allow_unused=True)
        return None if grad is None else grad.detach().abs().sum(1).float()

    with restored(model), torch.enable_grad(), _selecting_hook(module, state):
        for lo in range(0, n_units, batch_size):
            hi = min(lo + batch_size, n_units)
            state["rows"] = torch.as_tensor(rows[lo:hi])
            state["cols"] = torch.as_tensor(cols[lo:hi])
            state["channels"] = None if chans is None else torch.as_tensor(chans[lo:hi])
            acc = torch.zeros((hi - lo,) + hw, dtype=torch.float32)
            for s in range(n_samples):
                g = unit_gradients(samples[s:s + 1], hi - lo)
                if g is not None:
                    acc += g
            acc /= n_samples
            dead[lo:hi] = (acc.flatten(1).amax(1) == 0).cpu().numpy()
            if use_structural:
                with _structural_gradients(model):
                    g = unit_gradients(samples[:1], hi - lo)
                if g is not None:
                    acc += g * (acc.flatten(1).amax(1) == 0).logical_not().view(-1, 1, 1)
            boxes[lo:hi] = _support_boxes(acc, threshold)
    boxes[dead] = -1
    return boxes, dead


# --------------------------------------------------------------------------------------------------
def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layer", default="layer3.5.conv2")
    ap.add_argument("--units", type=int, default=64)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-naive", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    import torchvision

    from netphys.rf import gradient_receptive_fields
    from netphys.rf.geometry import _output_shape, _resolve_module

    torch.manual_seed(args.seed)
    model = torchvision.models.resnet50(weights=None).eval()
    info, module = _resolve_module(model, args.layer, "bench")
    c, h, w = _output_shape(model, module, info.module, (args.size, args.size), 3, "bench")
    rng = np.random.default_rng(args.seed)
    chans, rows, cols = rng.integers(0, c, args.units), rng.integers(0, h, args.units), rng.integers(0, w, args.units)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        new = gradient_receptive_fields(model, args.layer, chans, rows, cols, args.size,
                                        batch_size=args.batch_size)
        t_new = time.perf_counter() - t0
        res = {"layer": args.layer, "units": args.units, "size": args.size, "threads": args.threads,
               "output_shape": [c, h, w], "new_s": round(t_new, 2),
               "dead_units": int(np.ma.getmaskarray(new).any(1).sum())}
        if not args.skip_naive:
            t0 = time.perf_counter()
            ref, dead = naive_gradient_boxes(model, args.layer, chans, rows, cols, args.size,
                                             batch_size=args.batch_size)
            t_ref = time.perf_counter() - t0
            same = bool(np.array_equal(new.data, ref) and np.array_equal(np.ma.getmaskarray(new).any(1), dead))
            res.update(naive_s=round(t_ref, 2), speedup=round(t_ref / t_new, 1), identical=same)
    print(json.dumps(res))
    return res


if __name__ == "__main__":
    main()
