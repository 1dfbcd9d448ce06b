"""Benchmark: the synthesis engine against its naive references, ratios measured in one run.

(a) ``evolve`` of ``restarts x conditions`` searches as one population tensor (one batched forward per
    generation; sep-CMA and pycma backends) vs a Python loop of pycma instances, each search scored
    on its own (``evolve_loop``: the per-neuron script pattern). Same generations and population;
    the final best scores are compared (mean over searches, with the spread; "within noise": the means
    within two standard errors of their difference) so that speed is not bought with worse optima.
    pycma's default step-size rule in high dimension is two-point adaptation (TPA), the torch backends'
    is CSA: the same-algorithm pairs are ``cholesky`` (full covariance, CSA) vs a loop of pycma with CSA,
    and ``sep`` vs a loop of pycma with CSA and a diagonal covariance (``CMA_diagonal``). Goal >= 10x.
(b) images scored per second inside ``evolve`` vs the bare batched forward of the scorer on the
    same number of images (the space, CMA-ES bookkeeping and gathering are the overhead). Goal >= 0.8x.
(c) DeepTune steps per second vs a bare forward + backward of the objective on the same batch of
    images (regularisers, Adam, clamping and bookkeeping are the overhead). Goal >= 0.8x.

Two scorers: the shipped 64-px VGG (``--model``) on ``--layer`` units, and ``--cheap``: linear-filter
units on the image (where per-call Python overhead dominates, as on a GPU).

    python bench/synthesis.py                          # 10 restarts x 21 conditions, 10 generations
    python bench/synthesis.py --iterations 30 --threads 2 --json bench_synthesis.json
    (the network scorer runs --model-iterations generations, default 3: one generation of 10 x 21 searches
    is ~5,000 forward passes)
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch


def _filters(k, size, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(k, 3, size, size, generator=g)

    def obj(images):
        return torch.einsum("nchw,kchw->nk", images - 0.5, w)
    obj.names = [f"filter{i}" for i in range(k)]
    return obj


def _timed(fn, repeat=1):
    t = time.perf_counter()
    for _ in range(repeat):
        out = fn()
    return (time.perf_counter() - t) / repeat, out


def _stats(ds):
    return [float(ds.best_score.mean()), float(ds.best_score.std())]


def _within_noise(a, b, z=2.0) -> bool:
    """Mean final best scores of two sets of searches within ``z`` standard errors of their difference."""
    x, y = a.best_score.values.ravel(), b.best_score.values.ravel()
    se = np.sqrt(x.var(ddof=1) / x.size + y.var(ddof=1) / y.size)
    return bool(abs(x.mean() - y.mean()) <= z * se)


def bench_evolve(obj, space, args, label):
    from netphys.synthesis import evolve, evolve_loop

    res = {}
    kw = dict(iterations=args.iterations, restarts=args.restarts, random_state=0)
    t_sep, ds_sep = _timed(lambda: evolve(obj, space, optimizer="sep", batch_size=args.batch_size, **kw))
    t_pyb, ds_pyb = _timed(lambda: evolve(obj, space, optimizer="pycma", batch_size=args.batch_size, **kw))
    n_loop = max(1, min(args.loop_searches, args.restarts))
    # the loop runs every search one after another: time n_loop restarts (x all conditions), scale up
    t_loop, ds_loop = _timed(lambda: evolve_loop(obj, space, iterations=args.iterations, restarts=n_loop,
                                                 random_state=0))
    t_loop_full = t_loop * args.restarts / n_loop
    # the same algorithms in the loop: pycma's default step size in high dimension is two-point adaptation
    # (TPA), the torch backends use cumulative step-size adaptation (CSA); so the same-algorithm pairs are
    # cholesky (full covariance, CSA) vs pycma with CSA, and sep vs pycma with CSA and a diagonal covariance
    import cma

    csa = {"AdaptSigma": cma.sigma_adaptation.CMAAdaptSigmaCSA}
    t_chol, ds_chol = _timed(lambda: evolve(obj, space, optimizer="cholesky", batch_size=args.batch_size, **kw))
    t_lcsa, ds_lcsa = _timed(lambda: evolve_loop(obj, space, iterations=args.iterations, restarts=n_loop,
                                                 random_state=0, options=csa))
    t_ldiag, ds_ldiag = _timed(lambda: evolve_loop(obj, space, iterations=args.iterations, restarts=n_loop,
                                                   random_state=0, options={**csa, "CMA_diagonal": True}))
    t_lcsa *= args.restarts / n_loop
    t_ldiag *= args.restarts / n_loop
    k = ds_sep.sizes["condition"]
    popsize = ds_sep.attrs["popsize"]
    res.update({
        "scorer": label, "conditions": k, "restarts": args.restarts, "iterations": args.iterations,
        "popsize": popsize, "latent": int(space.latent_size),
        "seconds_sep_vectorised": t_sep, "seconds_pycma_batched": t_pyb,
        "seconds_pycma_loop": t_loop_full, "loop_measured_restarts": n_loop,
        "speedup_sep_vs_loop": t_loop_full / t_sep, "speedup_pycma_batched_vs_loop": t_loop_full / t_pyb,
        "final_best_sep": [float(ds_sep.best_score.mean()), float(ds_sep.best_score.std())],
        "final_best_pycma_batched": [float(ds_pyb.best_score.mean()), float(ds_pyb.best_score.std())],
        "final_best_pycma_loop": [float(ds_loop.best_score.mean()), float(ds_loop.best_score.std())],
        "pycma_loop_step_size": "TPA (pycma's default)",
        # same algorithm on both sides
        "seconds_cholesky_vectorised": t_chol, "seconds_pycma_loop_csa": t_lcsa,
        "seconds_pycma_loop_csa_diagonal": t_ldiag,
        "speedup_cholesky_vs_loop_csa": t_lcsa / t_chol, "speedup_sep_vs_loop_csa_diagonal": t_ldiag / t_sep,
        "final_best_cholesky": _stats(ds_chol), "final_best_pycma_loop_csa": _stats(ds_lcsa),
        "final_best_pycma_loop_csa_diagonal": _stats(ds_ldiag),
        "within_noise_cholesky_vs_loop_csa": _within_noise(ds_chol, ds_lcsa),
        "within_noise_sep_vs_loop_csa_diagonal": _within_noise(ds_sep, ds_ldiag),
        "within_noise_sep_vs_loop_tpa": _within_noise(ds_sep, ds_loop),
    })
    # (b) images per second in evolution vs the bare batched forward on as many images
    from netphys.synthesis import score_images

    n_img = args.restarts * k * popsize
    imgs = space(space.initial_codes(n_img, random_state=1))
    t_bare, _ = _timed(lambda: score_images(obj, imgs, args.batch_size), repeat=2)
    per_gen = t_sep / args.iterations
    res.update({"images_per_generation": n_img, "seconds_per_generation_sep": per_gen,
                "seconds_bare_forward": t_bare, "throughput_ratio": t_bare / per_gen})
    return res


def bench_deeptune(obj, args, label, size):
    from netphys.synthesis import deeptune

    steps = args.deeptune_steps
    k = len(obj.names)
    t_dt, _ = _timed(lambda: deeptune(obj, image_size=size, n_restarts=args.deeptune_restarts, steps=steps,
                                       random_state=0))
    x = torch.rand(args.deeptune_restarts * k, 3, size, size, requires_grad=True)
    cols = torch.arange(args.deeptune_restarts * k) % k

    def bare():
        s = obj(x)
        s.gather(1, cols[:, None]).sum().backward()
        x.grad = None
    t_bare, _ = _timed(bare, repeat=steps)
    return {"scorer": label, "deeptune_steps": steps, "images_per_step": int(x.shape[0]),
            "seconds_per_step": t_dt / steps, "seconds_bare_forward_backward": t_bare,
            "steps_ratio": t_bare / (t_dt / steps)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="netphys_vgg16")
    p.add_argument("--layer", default="fc7")
    p.add_argument("--conditions", type=int, default=21)
    p.add_argument("--restarts", type=int, default=10)
    p.add_argument("--iterations", type=int, default=10)
    p.add_argument("--model-iterations", type=int, default=3,
                   help="generations for the network scorer (each costs restarts x conditions x popsize forwards)")
    p.add_argument("--loop-searches", type=int, default=2, help="restarts the loop reference runs (scaled up)")
    p.add_argument("--freq-cut", type=float, default=0.25)
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--deeptune-steps", type=int, default=20)
    p.add_argument("--deeptune-restarts", type=int, default=4)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--skip-model", action="store_true", help="only the cheap linear-filter scorer")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    from netphys.models import load_model
    from netphys.synthesis import FourierSpace, Unit

    out = {"evolve": [], "deeptune": [], "threads": args.threads, "torch": torch.__version__}
    size = 64
    space = FourierSpace(size, freq_cut=args.freq_cut)
    cheap = _filters(args.conditions, size)
    out["evolve"].append(bench_evolve(cheap, space, args, "linear filters"))
    out["deeptune"].append(bench_deeptune(cheap, args, "linear filters", size))
    if not args.skip_model:
        model = load_model(args.model, "default")
        obj = Unit(model, args.layer, np.arange(args.conditions) % 4096, site="post")
        label = f"{args.model} {args.layer}"
        out["evolve"].append(bench_evolve(obj, space, argparse.Namespace(**{**vars(args),
                                                                           "iterations": args.model_iterations}),
                                          label))
        out["deeptune"].append(bench_deeptune(obj, args, label, size))
    for r in out["evolve"]:
        print(f"[evolve/{r['scorer']}] {r['restarts']} restarts x {r['conditions']} conditions, {r['iterations']} "
              f"generations, popsize {r['popsize']}, latent {r['latent']}: sep vectorised {r['seconds_sep_vectorised']:.1f} s, "
              f"pycma batched {r['seconds_pycma_batched']:.1f} s, pycma loop {r['seconds_pycma_loop']:.1f} s -> "
              f"{r['speedup_sep_vs_loop']:.1f}x (sep), {r['speedup_pycma_batched_vs_loop']:.1f}x (pycma batched); "
              f"final best (mean, sd) sep {r['final_best_sep']}, pycma {r['final_best_pycma_batched']}, "
              f"loop {r['final_best_pycma_loop']}")
        print(f"[evolve/{r['scorer']}, same algorithm] cholesky (full, CSA) vectorised {r['seconds_cholesky_vectorised']:.1f} s "
              f"vs pycma CSA loop {r['seconds_pycma_loop_csa']:.1f} s -> {r['speedup_cholesky_vs_loop_csa']:.1f}x, final best "
              f"{r['final_best_cholesky']} vs {r['final_best_pycma_loop_csa']} (within noise: "
              f"{r['within_noise_cholesky_vs_loop_csa']}); sep vectorised vs pycma CSA diagonal loop "
              f"{r['seconds_pycma_loop_csa_diagonal']:.1f} s -> {r['speedup_sep_vs_loop_csa_diagonal']:.1f}x, final best "
              f"{r['final_best_sep']} vs {r['final_best_pycma_loop_csa_diagonal']} (within noise: "
              f"{r['within_noise_sep_vs_loop_csa_diagonal']}); sep vs the TPA loop within noise: "
              f"{r['within_noise_sep_vs_loop_tpa']}")
        print(f"[throughput/{r['scorer']}] {r['images_per_generation']} images: {r['seconds_per_generation_sep']:.3f} s "
              f"per generation vs {r['seconds_bare_forward']:.3f} s bare forward -> ratio {r['throughput_ratio']:.2f}")
    for r in out["deeptune"]:
        print(f"[deeptune/{r['scorer']}] {r['images_per_step']} images: {r['seconds_per_step']:.4f} s per step vs "
              f"{r['seconds_bare_forward_backward']:.4f} s bare forward+backward -> ratio {r['steps_ratio']:.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return out


if __name__ == "__main__":
    main()
