"""Benchmark: the functional-segregation experiment's scoring shortcut and the CPU preset's stages.

(a) Scoring one output unit under all 21 conditions (the intact control + 2 signs x alphas 0.1 .. 1 of
    sign ablation) on a batch of images:

    * shortcut: ``SignAblated(model, layer, [unit])`` called once: one forward pass that stops at the
      output layer's input, then one matrix product with the 21 ablated weight rows (the objective's
      construction, i.e. the 20 ablation masks, is inside the timing);
    * naive: 21 full forward passes, each inside ``sign_ablation(model, layer, unit, sign, alpha)``
      (the control without an ablation), reading ``model(x)[:, unit]``; ``x`` is preprocessed once
      with ``model_input`` exactly as the objective does.

    Both under ``torch.no_grad``, timed interleaved in the same run: each repeat times the shortcut
    right before and right after the naive loop (keeping the better of the two, as the machine's load
    drifts during the naive loop); the ratio naive / shortcut is reported from the medians and from the
    best of ``--repeats``. One torch thread by default: on a shared, oversubscribed CPU two threads
    make single forward passes up to 4x slower at random (``--threads``). Goal >= 10x with identical
    scores (max |difference| <= 1e-5). Each repeat scores the next unit of the network's units, so with
    ``--repeats`` >= the number of units every unit is compared directly.

    All units x 21 conditions at once: ``SignAblated(model, layer, units)`` (one forward, one product
    with U x 21 rows) vs the naive loop over units, U x 21 forwards. The naive time is extrapolated as
    U x the median single-unit naive time (the same work, unit by unit; ``--full-naive`` runs it); the
    scores of every unit are checked against a "stacked" naive pass: 21 forwards with the same sign
    ablation applied to all U units' rows at once (row u only changes output u, so this equals the
    per-unit passes), which is also timed.

(b) ``--stages``: the CPU preset (``segregation.quick``) run once through ``run_experiment`` in a temporary
    folder, its wall time split by the run's stage timers (``ctx.timer``: load_networks, evolve,
    measures, neuron_fit, diverse_record, diverse_select) plus the untimed rest. Missing shipped variants
    (``netphys_vgg16:tanh`` etc., see ``shipped_variants()``) are replaced by the default weights under the
    variant's name (a link to the default model's folder: same cost, distinct cache keys), with a note.

Networks: ``netphys_vgg16`` (shipped weights, 64 px, output layer ``fc8``, all 10 units) and
``efficientnet_lite0`` (``imagenet`` weights, 224 px, output layer ``fc``, the paper's 11 ImageNet
units). Images: random in [0, 1] at the model's input size (seeded), or ``--images DIR`` (ImageFolder).

    python bench/segregation.py --json bench/results/segregation.json   # 128 (64 px) / 32 (224 px) images
    python bench/segregation.py --n-images-large 8                      # ~2 min on 2 shared cores
    python bench/segregation.py --networks netphys_vgg16 --n-images 256 --repeats 5
    python bench/segregation.py --skip-ratio --stages --json bench/results/segregation_stages.json
    python bench/segregation.py --skip-ratio --stages --quick-config '{"iterations": 5}'
    (the quick preset takes minutes; --quick-config: a YAML/JSON file or an inline JSON dict of overrides)
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
NETWORKS = {"netphys_vgg16": "default", "efficientnet_lite0": "imagenet"}


def _spec(s: str) -> tuple[str, str]:
    name, _, weights = s.partition(":")
    return name, weights or NETWORKS.get(name, "default")


def _images(model, n: int, root, seed: int) -> torch.Tensor:
    """(n, 3, S, S) float images in [0, 1] at the model's input size."""
    size = model.netphys.input_size
    if root is None:
        return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))
    from netphys.stimuli import Preprocess, StimulusSet

    st = StimulusSet.from_folder(root, preprocess=Preprocess(resize=size, crop=size), n=n, random_state=seed)
    return torch.from_numpy(st.load_images()).permute(0, 3, 1, 2).float() / 255


def _conditions(obj) -> list[tuple[str, float]]:
    ro = obj.readouts
    return [(str(s), float(a)) for s, a in zip(ro["sign"].values, ro["alpha"].values)]


def naive_scores(model, layer, unit, x, conditions) -> torch.Tensor:
    """(n, C): one full forward pass per condition, the unit's weights ablated in place."""
    from netphys.interventions import sign_ablation

    cols = []
    with torch.no_grad():
        for sign, alpha in conditions:
            if sign == "control":
                cols.append(model(x)[:, unit])
            else:
                with sign_ablation(model, layer, unit, sign, alpha):
                    cols.append(model(x)[:, unit])
    return torch.stack(cols, 1)


def stacked_scores(model, layer, units, x, conditions) -> torch.Tensor:
    """(n, U, C): per condition one forward pass with that ablation applied to every unit's row."""
    from netphys.interventions import sign_ablation

    idx = torch.as_tensor(np.asarray(units))
    cols = []
    with torch.no_grad():
        for sign, alpha in conditions:
            with contextlib.ExitStack() as stack:
                if sign != "control":
                    for u in units:
                        stack.enter_context(sign_ablation(model, layer, int(u), sign, alpha))
                cols.append(model(x).index_select(1, idx))
    return torch.stack(cols, 2)


def _diff(a: torch.Tensor, b: torch.Tensor) -> dict:
    a, b = a.double(), b.double()
    d = (a - b).abs()
    big = b.abs() >= 1e-3
    rel = float((d[big] / b.abs()[big]).max()) if bool(big.any()) else 0.0
    return {"max_abs_diff": float(d.max()), "max_rel_diff": rel, "max_abs_score": float(b.abs().max())}


def _merge_diff(acc: dict | None, d: dict) -> dict:
    if acc is None:
        return dict(d)
    return {k: max(acc[k], d[k]) for k in d}


def _timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def bench_network(spec: str, args) -> dict:
    from netphys.experiments.segregation import IMAGENET_UNITS, output_layer
    from netphys.interventions.weights import layer_weight
    from netphys.models import load_model
    from netphys.synthesis import SignAblated
    from netphys.synthesis.objectives import model_input

    name, weights = _spec(spec)
    model = load_model(name, weights).eval()
    layer = output_layer(model, args.layer)
    n_out = layer_weight(model, layer, "bench")[1].out_features
    units = np.arange(n_out) if n_out < 1000 else np.asarray(list(IMAGENET_UNITS), dtype=np.int64)
    size = model.netphys.input_size
    n = args.n_images if size <= 64 else args.n_images_large
    images = _images(model, n, args.images, args.seed)
    print(f"[{spec}] output layer {layer!r} ({n_out} units), {len(units)} units scored, {n} images at {size} px, "
          f"{args.repeats} repeats", flush=True)

    # warm-up (lazy allocations, MKL/oneDNN kernel selection)
    with torch.no_grad():
        SignAblated(model, layer, [int(units[0])])(images[:2])
        model(model_input(model, images[:2]))

    t_short, t_short_call, t_naive, t_all, unit_of_repeat = [], [], [], [], []
    diff_one = None
    for r in range(args.repeats):
        u = int(units[r % len(units)])

        def shortcut(u=u):
            with torch.no_grad():
                dt_build, obj = _timed(lambda: SignAblated(model, layer, [u]))
                dt_call, scores = _timed(lambda: obj(images))
            return dt_build, dt_call, obj, scores

        def shortcut_all():
            with torch.no_grad():
                return _timed(lambda: SignAblated(model, layer, units.tolist())(images))

        # shortcut before and after the naive loop (the better of the two: the load drifts)
        dt_build, dt_call, obj, s_short = shortcut()
        dt_all, s_all = shortcut_all()
        conds = _conditions(obj)

        def naive(u=u, conds=conds):
            x = model_input(model, images)
            return naive_scores(model, layer, u, x, conds)
        dt_naive, s_naive = _timed(naive)
        b2, c2, _, s2 = shortcut()
        a2, _ = shortcut_all()
        if b2 + c2 < dt_build + dt_call:
            dt_build, dt_call = b2, c2
        dt_all = min(dt_all, a2)
        diff_one = _merge_diff(diff_one, _diff(s2, s_naive))
        t_short.append(dt_build + dt_call)
        t_short_call.append(dt_call)
        t_naive.append(dt_naive)
        t_all.append(dt_all)
        unit_of_repeat.append(u)
        diff_one = _merge_diff(diff_one, _diff(s_short, s_naive))
        k = int(np.flatnonzero(units == u)[0])
        diff_one = _merge_diff(diff_one, _diff(s_all.reshape(n, len(units), -1)[:, k], s_naive))
        print(f"  repeat {r}: unit {u}: shortcut {dt_build + dt_call:.3f} s (call {dt_call:.3f} s), "
              f"naive {dt_naive:.3f} s -> {dt_naive / (dt_build + dt_call):.1f}x; all {len(units)} units "
              f"shortcut {dt_all:.3f} s; max |diff| {diff_one['max_abs_diff']:.2e}", flush=True)

    # every unit x condition against the stacked naive pass (21 forwards, all rows ablated together)
    conds = _conditions(SignAblated(model, layer, [int(units[0])]))
    x = model_input(model, images)
    dt_stacked, s_stacked = _timed(lambda: stacked_scores(model, layer, units, x, conds))
    with torch.no_grad():
        s_all = SignAblated(model, layer, units.tolist())(images).reshape(n, len(units), -1)
    diff_all = _diff(s_all, s_stacked)
    res_full = {}
    if args.full_naive:
        dt_full, s_full = _timed(lambda: torch.stack([naive_scores(model, layer, int(u), x, conds) for u in units], 1))
        diff_all = _merge_diff(diff_all, _diff(s_all, s_full))
        res_full = {"seconds_naive_all_units_measured": dt_full}

    med = statistics.median
    naive_all = len(units) * med(t_naive)
    res = {
        "network": f"{name}:{weights}", "layer": layer, "units": units.tolist(), "n_units": len(units),
        "conditions": len(conds), "n_images": n, "input_size": size,
        "images": "random uniform [0, 1]" if args.images is None else str(args.images),
        "repeats": args.repeats, "units_of_repeats": unit_of_repeat,
        "one_unit": {
            "seconds_shortcut": t_short, "seconds_shortcut_call_only": t_short_call, "seconds_naive": t_naive,
            "speedup_median": med(t_naive) / med(t_short), "speedup_best": min(t_naive) / min(t_short),
            "speedup_call_only_median": med(t_naive) / med(t_short_call),
            "forward_passes_naive": len(conds), **diff_one,
            "identical_1e-5": diff_one["max_abs_diff"] <= 1e-5,
        },
        "all_units": {
            "seconds_shortcut": t_all, "seconds_naive_extrapolated": naive_all,
            "naive_extrapolation": f"{len(units)} x median single-unit naive time",
            "forward_passes_naive": len(units) * len(conds),
            "speedup_median": naive_all / med(t_all), "speedup_best": len(units) * min(t_naive) / min(t_all),
            "seconds_naive_stacked": dt_stacked, "speedup_vs_stacked": dt_stacked / med(t_all),
            **res_full, **diff_all, "identical_1e-5": diff_all["max_abs_diff"] <= 1e-5,
        },
    }
    o, a = res["one_unit"], res["all_units"]
    print(f"[{spec}] one unit x {len(conds)} conditions, {n} images: shortcut {med(t_short):.3f} s vs naive "
          f"{med(t_naive):.3f} s (medians) -> {o['speedup_median']:.1f}x (best-of-{args.repeats} "
          f"{o['speedup_best']:.1f}x; call only {o['speedup_call_only_median']:.1f}x); max |diff| "
          f"{o['max_abs_diff']:.2e}, max rel {o['max_rel_diff']:.2e} (scores up to {o['max_abs_score']:.1f})")
    print(f"[{spec}] all {len(units)} units x {len(conds)} conditions: shortcut {med(t_all):.3f} s vs naive "
          f"{naive_all:.1f} s ({len(units) * len(conds)} forwards, extrapolated) -> {a['speedup_median']:.1f}x "
          f"(best {a['speedup_best']:.1f}x); vs stacked naive ({len(conds)} forwards, {dt_stacked:.1f} s) "
          f"{a['speedup_vs_stacked']:.1f}x; max |diff| {a['max_abs_diff']:.2e}, max rel {a['max_rel_diff']:.2e}",
          flush=True)
    return res


# ---------------------------------------------------------------------------------------------------------
# (b) the CPU preset's stages

def _quick_overrides(text) -> dict:
    if text is None:
        return {}
    if text.lstrip().startswith("{"):
        return dict(json.loads(text))
    p = Path(text)
    if p.is_file():
        import yaml

        return dict(yaml.safe_load(p.read_text()) or {})
    raise SystemExit(f"--quick-config: {text!r} is neither a file nor a JSON dict")


def _substitute_variants(networks, tmp: Path) -> tuple[list, dict]:
    from netphys.models.loading import default_model_dir, shipped_variants

    have = set(shipped_variants())
    out, subs = [], {}
    for spec in networks:
        name, _, weights = spec.partition(":")
        if name == "netphys_vgg16" and weights not in ("", "default") and weights not in have \
                and not os.path.exists(weights):
            link = tmp / "variants" / weights
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.exists():
                os.symlink(default_model_dir(), link)
            subs[spec] = "netphys_vgg16:default"
            out.append(f"netphys_vgg16:{link}")
        else:
            out.append(spec)
    return out, subs


def bench_stages(args) -> dict:
    from netphys.experiments.runner import run_experiment
    from netphys.experiments.segregation import QuickSegregationConfig

    over = _quick_overrides(args.quick_config)
    with tempfile.TemporaryDirectory(prefix="bench_segregation_") as tmp:
        tmp = Path(tmp)
        nets = over.get("networks", QuickSegregationConfig.networks)
        requested = list(nets)
        parts = over.get("parts", QuickSegregationConfig.parts)
        subs = {}
        if "ablation" in parts:
            nets, subs = _substitute_variants(list(nets), tmp)
            if subs:
                over["networks"] = nets
                print(f"[stages] NOTE: shipped variants missing, timed with the default weights instead: "
                      f"{', '.join(subs)} -> netphys_vgg16:default (same cost per network)", flush=True)
        cwd = os.getcwd()
        os.chdir(ROOT)  # shared data is found from the repository root
        try:
            t0 = time.perf_counter()
            run = run_experiment("segregation.quick", None, out=tmp / "run", progress=False, **over)
            wall = time.perf_counter() - t0
        finally:
            os.chdir(cwd)
        attrs = run.result.attrs
    timings = json.loads(attrs["timings"]) if isinstance(attrs["timings"], str) else dict(attrs["timings"])
    seconds = float(attrs["seconds"])
    untimed = seconds - sum(timings.values())
    res = {"overrides": {k: v for k, v in over.items() if k != "networks"} if subs else over,
           "networks": requested, "substituted_variants": subs, "seconds_run": seconds, "seconds_wall_with_outputs_and_report": wall,
           "stages": timings, "untimed_in_run": untimed,
           "outputs_and_report": wall - seconds,
           "cache": json.loads(attrs["cache"]) if isinstance(attrs.get("cache"), str) else attrs.get("cache")}
    print(f"[stages] segregation.quick: {seconds:.1f} s in the run ({wall:.1f} s with outputs and report)")
    for k, v in sorted(timings.items(), key=lambda kv: -kv[1]):
        print(f"  {k:<16} {v:8.1f} s  {100 * v / seconds:5.1f}%")
    print(f"  {'(untimed)':<16} {untimed:8.1f} s  {100 * untimed / seconds:5.1f}%")
    print(f"  {'(outputs+report)':<16} {wall - seconds:8.1f} s", flush=True)
    return res


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--networks", nargs="+", default=list(NETWORKS),
                   help="model or model:weights (default: netphys_vgg16 efficientnet_lite0)")
    p.add_argument("--layer", default=None, help="output layer (default: the last nn.Linear)")
    p.add_argument("--n-images", type=int, default=128, help="images for networks of <= 64 px")
    p.add_argument("--n-images-large", type=int, default=32,
                   help="images for larger inputs (224 px: one full forward is ~20x a 64-px one)")
    p.add_argument("--images", default=None, help="an ImageFolder of real images (default: random images)")
    p.add_argument("--repeats", type=int, default=3, help="interleaved repeats (median and best reported)")
    p.add_argument("--full-naive", action="store_true",
                   help="also run the naive loop over all units (U x 21 forwards) instead of extrapolating")
    p.add_argument("--skip-ratio", action="store_true", help="skip (a)")
    p.add_argument("--stages", action="store_true", help="(b): run the CPU preset and split its wall time")
    p.add_argument("--quick-config", default=None,
                   help="overrides of the quick preset: a YAML/JSON file or an inline JSON dict (default: none)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads of (a) (1: stable under a shared CPU)")
    p.add_argument("--stage-threads", type=int, default=2, help="torch threads of (b) (the preset's 2 cores)")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    out = {"command": " ".join(["python", "bench/segregation.py", *(argv if argv is not None else sys.argv[1:])]),
           "threads": args.threads, "torch": torch.__version__, "machine": platform.machine(),
           "processor": platform.processor(), "cpu_count": os.cpu_count(),
           "load_average_at_start": list(os.getloadavg()), "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "tolerance": 1e-5, "ratio": [], "stages": None}
    if not args.skip_ratio:
        for spec in args.networks:
            out["ratio"].append(bench_network(spec, args))
    if args.stages:
        torch.set_num_threads(args.stage_threads)
        out["stages"] = {"threads": args.stage_threads, **bench_stages(args)}
    out["load_average_at_end"] = list(os.getloadavg())
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return out


if __name__ == "__main__":
    main()
