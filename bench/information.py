"""Benchmark of the Prune-and-distill information pipeline (issue #3, item 7), ratios measured in one run.

(a) RF-patch feature extraction vs a per-patch NumPy/SciPy reference written from Algorithms 1-2
    (delegates to ``bench/features.py``, once with one torch thread and once with torch's default
    threads; goal >= 20x);
(b) MI with Panzeri-Treves correction, 250 units x 1500 images, vs a per-unit ``numpy.histogram2d``
    loop (delegates to ``bench/information_mi.py``; goal >= 8x and < 20 ms per layer);
(c) one Figure-3 realisation (trained and random networks, all layers, all features; a realisation
    draws new units, images and random weights) vs the bare forward passes it needs (one per network),
    with the time split into record / features / information (goal <= 1.5x).

    python bench/information.py                       # (a) (b) and (c) on the default model, demo set
    python bench/information.py --part c --model hed_vgg16 --images ../shared/data/imagenette-224-val \
        --n-images 1500                               # (c) at paper scale (slow on a CPU)
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def part_c(args) -> None:
    import torch

    from netphys.experiments.prune_distill import Fig3Config, run_fig3
    from netphys.models import default_layers, load_model
    from netphys.stimuli import StimulusSet, demo_stimuli

    torch.set_num_threads(args.threads)
    weights = "default"
    model = load_model(args.model, weights)
    pre = model.netphys.preprocess
    stim = demo_stimuli(pre) if args.images is None else StimulusSet.from_folder(args.images, preprocess=pre)
    n = min(args.n_images, len(stim))
    stim = stim.subsample(n=n, random_state=0) if n < len(stim) else stim
    layers = default_layers(model)
    networks = tuple(args.networks.split(","))
    # bare forward passes over the same images, one per network of the realisation (the work any
    # recording needs); the random network's weights are drawn as run_fig3 draws them
    bare = {}
    for net in networks:
        m = model if net == "trained" else load_model(args.model, "random", random_state=0)
        t0 = time.perf_counter()
        with torch.no_grad():
            for _, x in stim.batches(args.batch_size):
                m(x)
        bare[net] = time.perf_counter() - t0
    bare_total = sum(bare.values())
    cfg = Fig3Config(model=args.model, weights=weights, images=args.images, n_images=n, realisations=1,
                     networks=networks, batch_size=args.batch_size)
    t0 = time.perf_counter()
    res = run_fig3(cfg, None, progress=False)
    full = time.perf_counter() - t0
    tm = res.attrs["timings"]
    if isinstance(tm, str):
        import json

        tm = json.loads(tm)
    print(f"\n(c) one fig3 realisation: {args.model}, {n} images at {stim.size} px, {len(layers)} layers, "
          f"networks {', '.join(networks)}, {torch.get_num_threads()} thread(s)")
    for net, v in bare.items():
        print(f"    bare forward, {net:<8s} {v:8.2f} s")
    print(f"    bare forward, total    {bare_total:8.2f} s")
    print(f"    fig3 realisation        {full:8.2f} s   ratio {full / bare_total:6.2f}x  (goal <= 1.5x)")
    for k, v in tm.items():
        print(f"      {k:<20s} {v:8.2f} s  ({100 * v / full:4.1f}%)")
    print("    (the realisation also decodes and converts the images to grayscale once; the remaining"
          " time is loading and bookkeeping)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=["a", "b", "c", "all"], default="all")
    ap.add_argument("--model", default="netphys_vgg16")
    ap.add_argument("--images", default=None, help="image folder (default: the shipped demo set)")
    ap.add_argument("--n-images", type=int, default=1000)
    ap.add_argument("--batch-size", type=int, default=50)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--networks", default="trained,random",
                    help="networks of the realisation (Fig. 3 compares trained and random)")
    args = ap.parse_args()
    if args.part in ("a", "all"):
        print("(a) feature extraction vs the per-patch reference: one core against the (single-threaded)"
              " reference, then the library's default of all cores")
        # the whole feature workload of one Figure-3 realisation on VGG-16 (all conv layers, all boxes)
        subprocess.run([sys.executable, str(HERE / "features.py"), "--workload", "fig3", "--threads", "1"],
                       check=True)
        # single layers: mid-size (conv3_3, 40 px) and large (conv5_3, 196 px) patches
        for threads in ("1", "0"):
            subprocess.run([sys.executable, str(HERE / "features.py"), "--threads", threads], check=True)
    if args.part in ("b", "all"):
        print("\n(b) MI with Panzeri-Treves correction vs a per-unit histogram2d loop")
        subprocess.run([sys.executable, str(HERE / "information_mi.py")], check=True)
    if args.part in ("c", "all"):
        part_c(args)


if __name__ == "__main__":
    main()
