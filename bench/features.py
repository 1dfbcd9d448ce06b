"""Benchmark: batched ``netphys.features.rf_features`` vs the literal per-patch reference.

Receptive-field boxes are those of units sampled at random (channel, row, col) in VGG-16-like layers at
224 px (3x3 convs with padding 1, 2x2 pools), clipped to the image, so units of one position in different
channels share a box, as in a real recording. Images are random (the cost does not depend on content).

The reference loops over (image, unit) in Python with NumPy/SciPy; it is timed on ``--ref-images`` images
and scaled linearly to ``--n-images`` (its cost is exactly proportional to the number of patches), both
literally (every unit) and with duplicate boxes computed once. Both runs share the process, so the speed
ratio is measured under the same load. Agreement on the reference images is checked and printed.

Example::

    python bench/features.py                       # ~1-2 min on 2 CPU cores
    python bench/features.py --n-images 50 --layers conv3_3
    python bench/features.py --device cuda --n-images 1500
    python bench/features.py --workload fig3       # all VGG-16 conv layers, as in one fig3 realisation
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from netphys.features import rf_features
from netphys.features import reference as ref

# name: (receptive field, jump (stride product), feature-map size, channels) of VGG-16 at 224 px
LAYERS = {
    "conv2_2": (14, 2, 112, 128),
    "conv3_3": (40, 4, 56, 256),
    "conv4_3": (92, 8, 28, 512),
    "conv5_1": (132, 16, 14, 512),
    "conv5_3": (196, 16, 14, 512),
}


def unit_boxes(layer: str, n_units: int, rng: np.random.Generator, size: int = 224) -> np.ndarray:
    """(row_start, row_stop, col_start, col_stop) of ``n_units`` random units of ``layer``, clipped."""
    rf, jump, fmap, channels = LAYERS[layer]
    flat = rng.choice(channels * fmap * fmap, size=n_units, replace=False)
    i, j = (flat % (fmap * fmap)) // fmap, flat % fmap
    start_r = jump * i + jump // 2 - rf // 2
    start_c = jump * j + jump // 2 - rf // 2
    boxes = np.stack([start_r, start_r + rf, start_c, start_c + rf], axis=1)
    return np.clip(boxes, 0, size)


def fig3_workload(args, images: np.ndarray, dev_images, feats, dtype) -> None:
    """The feature work of one Figure-3 realisation on VGG-16 at 224 px vs the literal reference.

    Units and RF boxes come from the real VGG-16 geometry (torchvision ``vgg16`` with random weights:
    the boxes do not depend on the weights): ``--n-units`` units per conv layer, luminosity and
    contrast in every layer, orientation and corner from the third layer on, as ``run_fig3`` does. The
    library gets all boxes of all layers in one call per feature set (as ``run_fig3``); the reference
    loops over layers, units and images, literally.
    """
    from netphys.rf.boxes import rf_boxes
    from netphys.models import default_layers, load_model
    from netphys.recording import sample_units

    model = load_model("vgg16", "random", random_state=0)
    layers = default_layers(model, kinds=("conv",))
    table = sample_units(model, layers, args.n_units, input_size=224, random_state=args.seed,
                         allow_fewer=True)
    spectral = tuple(f for f in feats if f in ("orientation", "corner"))
    plain = tuple(f for f in feats if f in ("luminosity", "contrast"))
    per_layer = []
    for pos, layer in enumerate(layers):
        boxes = rf_boxes(model, table[table["layer"] == layer], 224)
        want = plain + (spectral if pos >= 2 else ())
        per_layer.append((layer, boxes, want))
    all_plain = np.unique(np.concatenate([b for _, b, _ in per_layer]), axis=0)
    all_spec = np.unique(np.concatenate([b for i, (_, b, _) in enumerate(per_layer) if i >= 2]), axis=0)
    print(f"Figure-3 feature workload, VGG-16 at 224 px: {len(layers)} conv layers x {args.n_units} units, "
          f"{args.n_images} images; distinct boxes: {len(all_plain)} (luminosity/contrast), "
          f"{len(all_spec)} (orientation/corner); torch threads={torch.get_num_threads()}")
    calls = [(all_plain, plain), (all_spec, spectral)]
    for boxes, want in calls:
        if want:
            rf_features(dev_images[:1], boxes, want, device=args.device, dtype=dtype)     # warm caches
    t0 = time.perf_counter()
    for boxes, want in calls:
        if want:
            rf_features(dev_images, boxes, want, batch_size=args.batch_size, device=args.device, dtype=dtype)
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    t_torch = time.perf_counter() - t0
    k = min(args.ref_images, args.n_images)
    t_ref = 0.0
    print(f"{'layer':8} {'boxes':>5} {'ref s*':>8}")
    for layer, boxes, want in per_layer:
        t0 = time.perf_counter()
        ref.rf_features(images[:k], boxes, want)
        dt = (time.perf_counter() - t0) * args.n_images / k
        t_ref += dt
        print(f"{layer:8} {len(np.unique(boxes, axis=0)):5d} {dt:8.1f}")
    print(f"total: netphys {t_torch:.2f} s, reference* {t_ref:.1f} s, speed-up {t_ref / t_torch:.1f}x")
    print(f"* reference timed on {k} image(s) and scaled to {args.n_images}.")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-images", type=int, default=200)
    ap.add_argument("--n-units", type=int, default=250)
    ap.add_argument("--ref-images", type=int, default=3, help="images the reference is timed on")
    ap.add_argument("--layers", default="conv3_3,conv5_3", help="comma-separated, from " + ",".join(LAYERS))
    ap.add_argument("--features", default="luminosity,contrast,orientation,corner")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch.set_num_threads; 1 (default) compares one core with the single-threaded "
                         "reference; 0 keeps torch's default")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workload", choices=["layers", "fig3"], default="layers",
                    help="layers: the --layers one at a time (synthetic VGG-16-like boxes); fig3: every conv "
                         "layer of VGG-16 with the features run_fig3 computes, all boxes in one call")
    args = ap.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    feats = tuple(args.features.split(","))
    dtype = getattr(torch, args.dtype)
    rng = np.random.default_rng(args.seed)
    images = rng.random((args.n_images, 224, 224), dtype=np.float32)
    dev_images = torch.from_numpy(images).to(args.device)

    if args.workload == "fig3":
        fig3_workload(args, images, dev_images, feats, dtype)
        return
    print(f"rf_features vs per-patch reference: {args.n_images} images x {args.n_units} units, 224 px, "
          f"features={','.join(feats)}, device={args.device}, dtype={args.dtype}, "
          f"torch threads={torch.get_num_threads()}")
    header = (f"{'layer':8} {'RF':>4} {'boxes':>5} {'shapes':>6} {'torch s':>8} {'ref s*':>8} "
              f"{'ref-dedup s*':>12} {'speed-up':>8} {'vs dedup':>8} {'max|diff|':>9} {'same angle':>10}")
    print(header)
    print("-" * len(header))
    for layer in args.layers.split(","):
        boxes = unit_boxes(layer, args.n_units, rng)
        n_uniq = np.unique(boxes, axis=0).shape[0]
        shapes = np.stack([boxes[:, 1] - boxes[:, 0], boxes[:, 3] - boxes[:, 2]], axis=1)
        n_shapes = np.unique(shapes, axis=0).shape[0]
        rf_features(dev_images[:1], boxes, feats, device=args.device, dtype=dtype)   # warm caches
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = rf_features(dev_images, boxes, feats, batch_size=args.batch_size, device=args.device,
                          dtype=dtype)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        t_torch = time.perf_counter() - t0

        k = min(args.ref_images, args.n_images)
        t0 = time.perf_counter()
        expected = ref.rf_features(images[:k], boxes, feats)
        t_ref = (time.perf_counter() - t0) * args.n_images / k
        t0 = time.perf_counter()
        ref.rf_features(images[:k], boxes, feats, deduplicate=True)
        t_dedup = (time.perf_counter() - t0) * args.n_images / k
        cont = [key for key in ("luminosity", "contrast", "xi") if key in expected]
        diff = max((float(np.max(np.abs(out[key][:k] - expected[key]))) for key in cont), default=np.nan)
        angles = [key for key in ("theta", "theta1", "theta2") if key in expected]
        same = np.mean([np.mean(out[key][:k] == expected[key]) for key in angles]) if angles else np.nan
        print(f"{layer:8} {LAYERS[layer][0]:4d} {n_uniq:5d} {n_shapes:6d} {t_torch:8.2f} {t_ref:8.1f} "
              f"{t_dedup:12.1f} {t_ref / t_torch:7.1f}x {t_dedup / t_torch:7.1f}x {diff:9.1e} "
              f"{100 * same:9.2f}%")
    print(f"* reference timed on {args.ref_images} image(s) and scaled to {args.n_images}. boxes: distinct "
          f"boxes among the units; shapes: distinct patch shapes. Agreement on those images ({args.dtype} "
          f"vs the float64 reference): max|diff| of luminosity, contrast, xi; same angle: % of theta, "
          f"theta1, theta2 identical (float32 near-ties may flip).")


if __name__ == "__main__":
    main()
