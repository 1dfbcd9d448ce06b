"""Benchmark: fast CAR and dual-form RAR against their naive references, ratios measured in one run.

(a) One full CAR iteration over a layer: the CAR (and CARc) of every filter of the intact layer, as the
    first iteration of :class:`~netphys.interventions.GreedyPruner` computes it
    (:func:`~netphys.interventions.car_importance`):

    * fast: the network's prefix up to the masked site run once over the images and cached, then each
      candidate (one more channel zeroed) through the suffix only, several candidates per forward pass
      when the images are fewer than ``--batch-size`` (``fast=True``; the prefix pass is inside the timing);
    * naive: one full forward pass of the images per candidate, the filter masked by a hook
      (``fast=False``).

    The CAR values must be identical (accuracy differences, multiples of 1 / n images: compared exactly;
    CARc exactly; the cross-entropy after removal to 1e-5). The naive reference costs one full forward
    pass per filter, so by default it runs on ``--naive-candidates`` evenly spaced filters and its time
    is scaled to the whole layer (``--full-naive`` runs every filter); both sides are compared on those
    filters. The fast iteration is timed before and after the naive one (the better of the two kept: the
    machine's load drifts). Goal >= 5x.

    Default: ``netphys_vgg16`` (shipped weights) conv5_1, 500 Imagenette-64 validation images;
    ``--layer all``: every conv layer of the network, one after the other (a summary table at the end; the
    fast path gains least on the first layers, whose suffix is nearly the whole network).
    ``--efficientnet``: also EfficientNet-Lite0 (ImageNet weights) ``block15_project`` (its last stage),
    100 Imagenette-224 validation images, 1000-way accuracy (WordNet folders mapped to ImageNet outputs).

(b) RAR refits (:func:`netphys.readout.ridge_dual.bench_rar`): one full RAR iteration, the held-out r of
    a ridge encoding model with each filter's block of features removed in turn, by the dual form
    (Cholesky solves on per-filter Gram blocks) vs a scikit-learn ``Ridge`` refit per candidate; the r
    must agree to 1e-6. Goal >= 10x (the dual form's one-off Gram set-up reported apart and with it).

One torch / BLAS thread by default (a shared, oversubscribed CPU makes two threads up to 30x slower at
random; ``--threads``).

    python bench/pruning.py --json bench/results/pruning.json       # ~4 min on 2 shared cores
    python bench/pruning.py --efficientnet --naive-candidates 4
    python bench/pruning.py --skip-car --rar-c 256                   # RAR only, a larger layer
    python bench/pruning.py --layer all --n-images 200 --naive-candidates 4 --efficientnet \
        --efficientnet-layer block14_project,block15_project,head --skip-rar \
        --json bench/results/pruning_layers.json                     # every conv layer + Lite0's last stages
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def _shared(sub: str) -> Path:
    from netphys.neural import default_shared_root

    root = default_shared_root()
    if root is None or not (root / sub).is_dir():
        sys.exit(f"bench/pruning.py needs the shared data folder {sub} (../shared/data); not found")
    return root / sub


def bench_car(model_name, weights, layer, data, n_images, args, class_index=None) -> dict:
    from netphys.interventions import car_importance
    from netphys.models import load_model
    from netphys.stimuli import StimulusSet

    model = load_model(model_name, weights)
    stim = StimulusSet.from_folder(_shared(data), preprocess=model.netphys.preprocess, n=n_images,
                                   random_state=args.seed)
    stim.load_images()  # decode the JPEGs once, outside the timings
    kw = dict(class_index=class_index, batch_size=args.batch_size)

    def fast():
        t = time.perf_counter()
        imp = car_importance(model, layer, stim, fast=True, **kw)
        return time.perf_counter() - t, imp

    t_fast1, imp_fast = fast()
    n = imp_fast.sizes["filter"]
    k = n if args.full_naive else min(n, args.naive_candidates)
    cand = np.unique(np.linspace(0, n - 1, k).round().astype(int))
    t = time.perf_counter()
    imp_naive = car_importance(model, layer, stim, fast=False, filters=cand, **kw)
    t_naive_part = time.perf_counter() - t
    t_fast2, imp_fast2 = fast()
    t_fast = min(t_fast1, t_fast2)
    t_naive = t_naive_part * n / cand.size
    sub = imp_fast.sel(filter=cand)
    d_car = np.abs(sub["car"].values - imp_naive["car"].values)
    d_carc = np.abs(sub["carc"].values - imp_naive["carc"].values)
    d_loss = np.abs(sub["loss_after"].values - imp_naive["loss_after"].values)
    identical = bool(d_car.max() == 0 and d_carc.max() == 0 and d_loss.max() <= 1e-5
                     and np.array_equal(imp_fast["car"].values, imp_fast2["car"].values))
    res = {"model": model_name, "weights": weights, "layer": layer, "data": data, "n_images": len(stim),
           "n_filters": int(n), "naive_candidates": int(cand.size), "naive_extrapolated": bool(cand.size < n),
           "fast_path": int(imp_fast.attrs["fast_path"]), "batch_size": args.batch_size,
           "accuracy_intact": float(imp_fast.attrs["accuracy"]),
           "seconds_fast_iteration": t_fast, "seconds_fast_runs": [t_fast1, t_fast2],
           "seconds_naive_measured": t_naive_part, "seconds_naive_iteration": t_naive,
           "seconds_naive_per_candidate": t_naive_part / cand.size,
           "ratio": t_naive / t_fast, "max_abs_car_difference": float(d_car.max()),
           "max_abs_carc_difference": float(d_carc.max()), "max_abs_loss_difference": float(d_loss.max()),
           "identical_car": identical, "goal": 5.0}
    assert identical, f"fast and naive CAR differ: {res}"
    print(f"[CAR/{model_name} {layer}] {len(stim)} images, {n} filters: fast iteration {t_fast:.1f} s "
          f"(runs {t_fast1:.1f}, {t_fast2:.1f}), naive {t_naive:.1f} s "
          f"({'measured' if cand.size == n else f'{cand.size} candidates measured, scaled'}: "
          f"{t_naive_part / cand.size:.2f} s per candidate) -> {res['ratio']:.1f}x (goal >= 5x); "
          f"CAR identical: {identical} (max |dCAR| {d_car.max():.1e}, |dCARc| {d_carc.max():.1e}, "
          f"|dloss| {d_loss.max():.1e})", flush=True)
    return res


def bench_rar_refits(args) -> dict:
    from threadpoolctl import threadpool_limits

    from netphys.readout.ridge_dual import bench_rar

    with threadpool_limits(args.threads):
        res = bench_rar(n_fit=args.rar_n, n_sel=args.rar_n, C=args.rar_c, HW=args.rar_hw, n_neurons=1,
                        repeats=args.rar_repeats, lam=10.0, random_state=args.seed)
    res["goal"] = 10.0
    res["agree_1e-6"] = bool(res["max_abs_dr"] < 1e-6)
    assert res["agree_1e-6"], f"dual-form and scikit-learn r differ: {res}"
    print(f"[RAR] X ({args.rar_n} fit + {args.rar_n} selection, {args.rar_c} filters x {args.rar_hw}): dual "
          f"{res['dual_iter_s']:.3f} s per iteration (+ {res['dual_setup_s']:.3f} s Gram blocks, once), "
          f"sklearn Ridge refit per candidate {res['sklearn_iter_s']:.2f} s -> {res['ratio']:.1f}x "
          f"({res['ratio_with_setup']:.1f}x with the set-up; goal >= 10x); max |dr| {res['max_abs_dr']:.1e}",
          flush=True)
    return res


def _layers(spec: str, model_name: str, weights: str) -> list:
    """``"conv5_1"``, ``"conv4_1,conv5_1"`` or ``"all"`` (every Conv2d layer with filters, in order)."""
    if spec != "all":
        return [x.strip() for x in spec.split(",") if x.strip()]
    from netphys.interventions.pruning import _resolve_target
    from netphys.models import load_model
    from netphys.models.layers import layer_infos

    model = load_model(model_name, weights)
    out = []
    for li in layer_infos(model):
        if li.kind != "conv":
            continue
        try:
            _resolve_target(model, li.alias, "bench")
        except Exception:  # noqa: BLE001 - a conv without prunable filters (e.g. depthwise) is skipped
            continue
        out.append(li.alias)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="netphys_vgg16")
    p.add_argument("--weights", default="default")
    p.add_argument("--layer", default="conv5_1", help="a layer, a comma-separated list, or 'all' (every conv layer)")
    p.add_argument("--data", default="imagenette-64/val", help="under the shared data folder")
    p.add_argument("--n-images", type=int, default=500)
    p.add_argument("--naive-candidates", type=int, default=16,
                   help="filters the naive reference runs (its time scaled to the whole layer)")
    p.add_argument("--full-naive", action="store_true", help="run the naive reference on every filter")
    p.add_argument("--efficientnet", action="store_true",
                   help="also EfficientNet-Lite0's last stage (block15_project, 100 images at 224 px)")
    p.add_argument("--efficientnet-layer", default="block15_project", help="a layer or a comma-separated list")
    p.add_argument("--efficientnet-images", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--skip-car", action="store_true")
    p.add_argument("--skip-rar", action="store_true")
    p.add_argument("--rar-n", type=int, default=300, help="fit (and selection) stimuli of (b)")
    p.add_argument("--rar-c", type=int, default=128, help="filters of (b)")
    p.add_argument("--rar-hw", type=int, default=16, help="features per filter of (b)")
    p.add_argument("--rar-repeats", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    out = {"command": " ".join(["python", "bench/pruning.py", *(argv if argv is not None else sys.argv[1:])]),
           "threads": args.threads, "torch": torch.__version__, "numpy": np.__version__,
           "python": platform.python_version(), "machine": platform.machine(), "processor": platform.processor(),
           "cpu_count": os.cpu_count(), "device": "cpu", "load_average_at_start": list(os.getloadavg()),
           "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "car": [], "rar": None}
    try:
        import sklearn

        out["sklearn"] = sklearn.__version__
    except ImportError:  # pragma: no cover
        pass
    if not args.skip_car:
        for layer in _layers(args.layer, args.model, args.weights):
            out["car"].append(bench_car(args.model, args.weights, layer, args.data, args.n_images, args))
        if args.efficientnet:
            from netphys.models.efficientnet import IMAGENETTE_IMAGENET_INDEX

            for layer in _layers(args.efficientnet_layer, "efficientnet_lite0", "imagenet"):
                out["car"].append(bench_car("efficientnet_lite0", "imagenet", layer, "imagenette-224-val/val",
                                            args.efficientnet_images, args,
                                            class_index=dict(IMAGENETTE_IMAGENET_INDEX)))
        if len(out["car"]) > 1:
            out["car_summary"] = [{k: c[k] for k in ("model", "layer", "n_filters", "fast_path", "seconds_fast_iteration",
                                                     "seconds_naive_iteration", "ratio", "identical_car")}
                                  for c in out["car"]]
            print("\n[CAR] one full iteration per layer (fast vs naive):")
            for c in out["car_summary"]:
                print(f"  {c['model']:>18} {c['layer']:<16} {c['n_filters']:>5} filters  fast "
                      f"{c['seconds_fast_iteration']:7.1f} s  naive {c['seconds_naive_iteration']:8.1f} s  "
                      f"{c['ratio']:6.1f}x  identical {c['identical_car']}", flush=True)
    if not args.skip_rar:
        out["rar"] = bench_rar_refits(args)
    out["load_average_at_end"] = list(os.getloadavg())
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return out


if __name__ == "__main__":
    main()
