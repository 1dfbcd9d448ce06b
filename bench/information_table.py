"""Ground-truth error of each information correction vs N (prints the markdown tables of docs/information.md).

For every condition, sample size N and repeat, a "layer" of U units is drawn, the layer value
U = mean over units of ``mutual_information(...).normalized`` is computed with each correction,
and its error against the truth is recorded; the tables give the mean +- SD over repeats of that
error (and, in brackets, the mean per-unit SD, i.e. the noise of a single unit).

Conditions (20 activation bins):

* independent 1-D: X, Y independent standard normal, 20 x 20 bins; truth 0;
* independent 2-D: X a pair of independent normals binned jointly 20 x 20, Y independent; truth 0;
* Gaussian rho: X, Y standard bivariate normal with correlation rho, 20 x 20 bins; truth = the
  exact normalised information of the *binned* variables, I_B / H_B(X), with the bin edges of
  each sample (interior edges of the sample's equal-width bins, outer bins open) and the exact
  cell probabilities (Gauss-Legendre quadrature of the bivariate normal); the continuous value
  -0.5 log2(1 - rho^2) is printed for reference;
* corner (N = 400, the paper's setting): theta1, theta2 independent uniform on the 1-degree grid
  of the corner feature; Y independent (truth 0) or a corner-tuned unit
  Y = [c(a, 30) c(b, 120) + c(b, 30) c(a, 120)] / 2 + 0.5 eps, c(t, phi) = cos 2(t - phi),
  whose truth is the estimate on 400 000 samples (PT; its own residual bias < 1e-3) with the
  same scheme and bins.

The "+shuffle" values are derived from the base result's null (``(mi - null_mi) / h_x_corrected``,
clipped at 1): exactly what ``correction="pt+shuffle"`` etc. return for the same seed (a test pins
that), at a third of the cost.

Usage::

    python bench/information_table.py [--repeats 10] [--units 100] [--shuffles 20]
"""
from __future__ import annotations

import argparse
import math
import time
import warnings

import numpy as np
from scipy.special import ndtr

from netphys._validation import NetphysWarning
from netphys.stats import corner_bins, corner_coordinates, mutual_information

CORR = ("none", "pt", "qe", "shuffle", "pt+shuffle", "qe+shuffle")
NS = (100, 400, 1000, 5000)


def all_corrections(x, y, *, seed, shuffles, **kw) -> dict:
    """Per-unit normalised information of the six corrections (three estimator calls)."""
    out = {}
    for base, comb in (("none", "shuffle"), ("pt", "pt+shuffle"), ("qe", "qe+shuffle")):
        r = mutual_information(x, y, correction=base, n_shuffles=shuffles, random_state=seed, **kw)
        out[base] = r.normalized
        h = np.where(r.x_constant, 1.0, r.h_x_corrected)
        out[comb] = np.where(r.x_constant, 0.0, np.minimum((r.mi - r.null_mi) / h, 1.0))
    return out


def gauss_binned_truth(x, y, rho, bins=20, nodes=24) -> np.ndarray:
    """Exact I_B / H_B(X) of each unit's binned bivariate normal (edges from its sample)."""
    gx, gw = np.polynomial.legendre.leggauss(nodes)
    s = math.sqrt(1 - rho ** 2)
    out = np.empty(x.shape[1])
    for i in range(x.shape[1]):
        ex = np.linspace(x[:, i].min(), x[:, i].max(), bins + 1)
        ey = np.linspace(y[:, i].min(), y[:, i].max(), bins + 1)
        ex[0], ex[-1], ey[0], ey[-1] = -9.0, 9.0, -np.inf, np.inf
        lo, hi = ex[:-1], ex[1:]
        xs = 0.5 * (hi - lo)[:, None] * gx + 0.5 * (hi + lo)[:, None]     # (bins, nodes)
        wx = 0.5 * (hi - lo)[:, None] * gw * np.exp(-0.5 * xs ** 2) / math.sqrt(2 * math.pi)
        cdf = ndtr((ey[None, None, :] - rho * xs[..., None]) / s)         # (bins, nodes, edges)
        p = np.einsum("in,inj->ij", wx, np.diff(cdf, axis=2))
        p = np.clip(p, 0, None)
        p /= p.sum()
        px, py = p.sum(1), p.sum(0)
        nz = p > 0
        mi = np.sum(p[nz] * np.log2(p[nz] / np.outer(px, py)[nz]))
        hx = -np.sum(px[px > 0] * np.log2(px[px > 0]))
        out[i] = mi / hx
    return out


def row(label, errs: dict, unit_sd: dict | None = None) -> str:
    cells = []
    for c in CORR:
        e = np.asarray(errs[c])
        cell = f"{e.mean():+.4f} ± {e.std(ddof=1):.4f}"
        if unit_sd is not None:
            cell += f" ({np.mean(unit_sd[c]):.3f})"
        cells.append(cell)
    return f"| {label} | " + " | ".join(cells) + " |"


def header(first: str, extra: tuple = ()) -> str:
    cols = (first,) + CORR + tuple(extra)
    return "| " + " | ".join(cols) + " |\n|" + "---|" * len(cols)


def run_condition(name, n, args, rng, draw):
    errs = {c: [] for c in CORR}
    sds = {c: [] for c in CORR}
    for r in range(args.repeats):
        x, y, truth, kw = draw(n, args.units, rng)
        est = all_corrections(x, y, seed=r, shuffles=args.shuffles, **kw)
        for c in CORR:
            errs[c].append(float(np.mean(est[c] - truth)))
            sds[c].append(float(np.std(est[c] - truth, ddof=1)))
    return errs, sds


def draw_indep_1d(n, u, rng):
    return rng.normal(size=(n, u)), rng.normal(size=(n, u)), 0.0, {}


def draw_indep_2d(n, u, rng):
    return rng.normal(size=(n, u, 2)), rng.normal(size=(n, u)), 0.0, {}


def draw_gauss(rho):
    def draw(n, u, rng):
        x = rng.normal(size=(n, u))
        y = rho * x + math.sqrt(1 - rho ** 2) * rng.normal(size=(n, u))
        return x, y, gauss_binned_truth(x, y, rho), {}
    return draw


def corner_angles(n, u, rng):
    return rng.integers(0, 180, size=(n, u)).astype(float), rng.integers(0, 180, size=(n, u)).astype(float)


def tuned(a, b, rng):
    c = lambda t, phi: np.cos(np.deg2rad(2 * (t - phi)))  # noqa: E731
    return 0.5 * (c(a, 30) * c(b, 120) + c(b, 30) * c(a, 120)) + 0.5 * rng.normal(size=a.shape)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--units", type=int, default=100)
    ap.add_argument("--shuffles", type=int, default=20)
    ap.add_argument("--part", choices=("all", "n", "corner"), default="all")
    args = ap.parse_args()
    warnings.simplefilter("ignore", NetphysWarning)  # small N on purpose
    rng = np.random.default_rng(2024)
    t0 = time.perf_counter()
    print(f"Error of the layer value U (mean over {args.units} units of the normalised "
          f"information) vs truth: mean ± SD over {args.repeats} repeats (mean per-unit SD); "
          f"K = {args.shuffles} shuffles; 20 activation bins.\n")
    if args.part in ("all", "n"):
        conds = [("independent 1-D, 20 x 20", draw_indep_1d),
                 ("independent 2-D, 20 x 20 x 20", draw_indep_2d),
                 ("Gaussian rho = 0.3", draw_gauss(0.3)),
                 ("Gaussian rho = 0.6", draw_gauss(0.6))]
        for name, draw in conds:
            extra = ""
            if name.startswith("Gaussian"):
                rho = float(name.split("=")[1])
                extra = f" (continuous I = {-0.5 * math.log2(1 - rho ** 2):.4f} bits)"
            print(f"**{name}**{extra}\n")
            print(header("N"))
            for n in NS:
                errs, sds = run_condition(name, n, args, rng, draw)
                print(row(str(n), errs, sds))
            print()
    if args.part in ("all", "corner"):
        n = 400
        b = corner_bins(n)
        bd = corner_bins(n, scheme="difference")
        settings = [("literal", 20), ("canonical", 20), ("canonical", b), ("difference", bd),
                    ("literal", corner_bins(n, scheme="literal"))]
        for dep in (False, True):
            title = "corner-tuned unit" if dep else "independent"
            print(f"**corner feature, N = {n}, {title}** (x_bins per dimension)\n")
            print(header("scheme, x_bins", ("truth",) if dep else ()))
            for scheme, xb in settings:
                truth = 0.0
                if dep:
                    ta, tb = corner_angles(400_000, 1, rng)
                    big = mutual_information(corner_coordinates(ta, tb, scheme=scheme)[:, 0, :],
                                             tuned(ta, tb, rng), x_bins=xb, n_shuffles=0)
                    truth = float(big.normalized[0])

                def draw(nn, u, rr, scheme=scheme, xb=xb, truth=truth):
                    a, bb = corner_angles(nn, u, rr)
                    y = tuned(a, bb, rr) if dep else rr.normal(size=(nn, u))
                    return corner_coordinates(a, bb, scheme=scheme), y, truth, {"x_bins": xb}

                errs, sds = run_condition(scheme, n, args, rng, draw)
                line = row(f"{scheme}, {xb}", errs, sds)
                print(line + (f" {truth:.4f} |" if dep else ""))
            print()
    print(f"_generated by `python bench/information_table.py --repeats {args.repeats} --units "
          f"{args.units} --shuffles {args.shuffles}` in {time.perf_counter() - t0:.0f} s_")


if __name__ == "__main__":
    main()
