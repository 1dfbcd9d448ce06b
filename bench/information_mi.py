"""Benchmark: vectorised single-unit MI (Panzeri-Treves) vs a per-unit numpy.histogram2d loop.

One layer of the prune-and-distill experiments: 250 units x 1500 images, 20 x 20 bins, a
per-unit feature (e.g. luminosity in each unit's receptive field). Both estimators run in the
same process on the same data; each timing is repeated and the median is reported. The
comparison with the loop uses ``n_shuffles=0`` (the PT estimate alone, no null); the other rows
give the cost of the shuffle null (K passes) and of the quadratic extrapolation.

Usage::

    python bench/information_mi.py [--units 250] [--images 1500] [--bins 20] [--repeats 7] [--shuffles 20]
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import time
import warnings

import numpy as np

from netphys._validation import NetphysWarning
from netphys.stats import mutual_information


def loop_reference(x: np.ndarray, y: np.ndarray, bins: int) -> np.ndarray:
    """Per-unit loop: numpy.histogram2d + plug-in MI + naive Panzeri-Treves, normalised by the
    Miller-Madow H(X) (the PT correction of I(X;X), as in ``mutual_information``)."""
    n, u = y.shape
    out = np.empty(u)
    for i in range(u):
        h = np.histogram2d(x[:, i], y[:, i], bins=bins)[0]
        p = h / n
        px, py = p.sum(axis=1), p.sum(axis=0)
        nz = p > 0
        mi = np.sum(p[nz] * np.log2(p[nz] / np.outer(px, py)[nz]))
        hx = -np.sum(px[px > 0] * np.log2(px[px > 0]))
        bias = (nz.sum() - (px > 0).sum() - (py > 0).sum() + 1) / (2 * n * math.log(2))
        hx_mm = hx + ((px > 0).sum() - 1) / (2 * n * math.log(2))
        out[i] = min((mi - bias) / hx_mm, 1.0) if hx > 0 else 0.0
    return out


def timed_pair(fns: dict, repeats: int) -> dict:
    """Run the functions in turn, ``repeats`` rounds, so that all see the same machine load.

    Returns ``{name: (median wall s, median CPU s of this process, last result)}``.
    """
    wall = {k: [] for k in fns}
    cpu = {k: [] for k in fns}
    last = {}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0, c0 = time.perf_counter(), time.process_time()
            last[name] = fn()
            cpu[name].append(time.process_time() - c0)
            wall[name].append(time.perf_counter() - t0)
    return {k: (statistics.median(wall[k]), statistics.median(cpu[k]), last[k]) for k in fns}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--units", type=int, default=250)
    ap.add_argument("--images", type=int, default=1500)
    ap.add_argument("--bins", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--shuffles", type=int, default=20)
    args = ap.parse_args()
    warnings.simplefilter("ignore", NetphysWarning)  # 1500 images for 400 cells: expected

    rng = np.random.default_rng(0)
    n, u, b = args.images, args.units, args.bins
    x = rng.normal(size=(n, u))
    y = (np.tanh(x * rng.uniform(0, 2, size=u)) + rng.normal(size=(n, u))).astype(np.float32)

    y64 = y.astype(np.float64)
    k = args.shuffles
    fns = {
        "vectorised MI + PT, per-unit x": lambda: mutual_information(x, y, bins=b, n_shuffles=0),
        "vectorised MI + PT, shared x": lambda: mutual_information(x[:, 0], y, bins=b,
                                                                   n_shuffles=0),
        "vectorised MI + PT, bayesian count": lambda: mutual_information(
            x, y, bins=b, bias_counting="bayesian", n_shuffles=0),
        f"PT + null, K = {k}": lambda: mutual_information(x, y, bins=b, n_shuffles=k),
        f"pt+shuffle, K = {k}": lambda: mutual_information(x, y, bins=b, n_shuffles=k,
                                                            correction="pt+shuffle"),
        "qe, no null": lambda: mutual_information(x, y, bins=b, correction="qe", n_shuffles=0),
        f"qe+shuffle, K = {k}": lambda: mutual_information(x, y, bins=b, n_shuffles=k,
                                                            correction="qe+shuffle"),
        "per-unit loop over histogram2d": lambda: loop_reference(x, y64, b),
    }
    for fn in fns.values():  # warm-up (imports, first allocations)
        fn()
    out = timed_pair(fns, args.repeats)
    vec, loop = out["vectorised MI + PT, per-unit x"], out["per-unit loop over histogram2d"]
    err = float(np.max(np.abs(vec[2].normalized - loop[2])))

    print(f"netphys information benchmark: {u} units x {n} images, {b} x {b} bins, "
          f"median of {args.repeats} interleaved runs")
    print(f"  machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"numpy {np.__version__}, load average {os.getloadavg()[0]:.2f}")
    print(f"  {'':36s} {'wall ms/layer':>14s} {'CPU ms/layer':>13s}")
    for name, (w, c, _) in out.items():
        print(f"  {name:36s} {w * 1e3:14.2f} {c * 1e3:13.2f}")
    print(f"  speed-up, loop / vectorised (per-unit x): wall {loop[0] / vec[0]:.1f}x, "
          f"CPU {loop[1] / vec[1]:.1f}x")
    print(f"  max |normalised MI difference|: {err:.2e}")
    per_shuffle = (out[f"PT + null, K = {k}"][0] - vec[0]) / max(k, 1)
    print(f"  shuffle null: {per_shuffle * 1e3:.2f} ms wall per shuffle ({k} shuffles add "
          f"{per_shuffle * k * 1e3:.0f} ms per layer)")

if __name__ == "__main__":
    main()
