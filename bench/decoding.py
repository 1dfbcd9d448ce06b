"""Benchmark: linear-SVM decoding of 200 sub-populations x all layers of the default model (issue #4).

Records the shipped default model on the demo set (1000 images, 250-unit pool per layer), then times
``decode_layers`` per layer (100 units x ``--subsamples`` draws, 83/17 train/val images per class),
and the same work with a per-subsample ``sklearn.svm.LinearSVC`` loop written out by hand as the
reference, on one layer.

    python bench/decoding.py [--subsamples 200] [--layers conv3_1,fc6]
"""
from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subsamples", type=int, default=200)
    ap.add_argument("--layers", default=None, help="comma-separated; default all 16 layers")
    args = ap.parse_args()

    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    from netphys.decoding import balanced_split, decode_layers
    from netphys.models import load_model
    from netphys.recording import record
    from netphys.stimuli import demo_stimuli

    model = load_model("netphys_vgg16", "default")
    layers = args.layers.split(",") if args.layers else None
    rec = record(model, demo_stimuli(), layers, units=250, allow_fewer=True, random_state=0)
    names = list(dict.fromkeys(rec.coords["layer"].values))
    print(f"decoding: {args.subsamples} subsamples of 100 units per layer, 1000 images, 10 classes")
    print(f"{'layer':<8} {'seconds':>8} {'val acc':>8}")
    total = 0.0
    for l in names:
        sub = rec.isel(unit=np.flatnonzero(rec.coords["layer"].values == l))
        t0 = time.perf_counter()
        res = decode_layers(sub, n_subsamples=args.subsamples, random_state=0)
        dt = time.perf_counter() - t0
        total += dt
        print(f"{l:<8} {dt:8.2f} {float(res['val_accuracy'].mean()):8.3f}")
    print(f"{'total':<8} {total:8.2f}  ({total / len(names):.2f} s per layer)")
    # reference: the same fits written out with sklearn on the last layer
    l = names[-1]
    A = rec.values[:, rec.coords["layer"].values == l].astype(np.float64)
    y = rec.coords["label"].values
    sp = balanced_split(y, 250, 50, random_state=0)
    rng = np.random.default_rng(0)
    n = min(20, args.subsamples)
    t0 = time.perf_counter()
    for _ in range(n):
        cols = rng.choice(A.shape[1], size=min(100, A.shape[1]), replace=False)
        sc = StandardScaler().fit(A[sp["train"]][:, cols])
        LinearSVC(dual=False).fit(sc.transform(A[sp["train"]][:, cols]), y[sp["train"]])
    ref = (time.perf_counter() - t0) / n * args.subsamples
    sub = rec.isel(unit=np.flatnonzero(rec.coords["layer"].values == l))
    t0 = time.perf_counter()
    decode_layers(sub, n_subsamples=args.subsamples, random_state=0)
    ours = time.perf_counter() - t0
    print(f"\nlayer {l}: netphys {ours:.2f} s vs hand-written sklearn loop {ref:.2f} s "
          f"(ratio {ref / ours:.2f}x; both fit LinearSVC(dual=False), the library adds splitting, "
          "z-scoring and bookkeeping)")


if __name__ == "__main__":
    main()
