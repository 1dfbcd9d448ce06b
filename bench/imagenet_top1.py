"""Benchmark: ImageNet top-1 of EfficientNet-Lite0/1/2 (netphys[imagenet]) on Imagenette-224 validation.

Loads each model with ``load_model(name, "imagenet")``, reads ``imagenette-224-val/val`` with the
model's own preprocessing (:func:`netphys.models.efficientnet.efficientnet_preprocess`) through
:meth:`netphys.stimuli.StimulusSet.from_folder`, and scores the 1000-way argmax against the ImageNet
index of each image's WordNet id (tench 0, English springer 217, cassette player 482, chain saw 491,
church 497, French horn 566, garbage truck 569, gas pump 571, golf ball 574, parachute 701). Also
reports the 10-way accuracy (argmax over the ten Imagenette logits) and the mean cross-entropy of
the true class. Prints a table and writes a JSON.

Other preprocessings, to reproduce the choice of the model's one (``--variants``):

* ``model``: resize ``size + 32``, centre crop ``size``, ``(x - 127) / 128`` (the default);
* ``full-frame``: the same scaling, resized to ``size`` without a crop;
* ``imagenet-stats``: the model's geometry with torchvision's ImageNet mean / std instead.

    nice -n 10 python bench/imagenet_top1.py                         # all 3,925 images, 3 models
    python bench/imagenet_top1.py --n-per-class 10 --models efficientnet_lite0 --variants model,imagenet-stats
    python bench/imagenet_top1.py --out bench/results/imagenet_top1.json --threads 1
"""
from __future__ import annotations

import argparse
import json
import logging
import platform
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger("imagenet_top1")

DEFAULT_ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "imagenette-224-val" / "val"
VARIANTS = ("model", "full-frame", "imagenet-stats")


def variant_preprocess(pre, variant: str):
    """The model's :class:`~netphys.stimuli.Preprocess` changed as ``variant`` says."""
    from netphys.stimuli.preprocess import IMAGENET_MEAN, IMAGENET_STD

    if variant == "model":
        return pre
    if variant == "full-frame":
        return replace(pre, resize=pre.crop, name=f"{pre.name}:full-frame")
    if variant == "imagenet-stats":
        return replace(pre, scale=1.0, mean=IMAGENET_MEAN, std=IMAGENET_STD, name=f"{pre.name}:imagenet-stats")
    raise ValueError(f"unknown variant {variant!r}; choose from {VARIANTS}")


def evaluate(model, stimuli, targets: np.ndarray, batch_size: int) -> dict:
    """Top-1 (1000-way), 10-way accuracy and mean cross-entropy of ``model`` on ``stimuli``."""
    from netphys.models.efficientnet import IMAGENETTE_IMAGENET_INDEX

    ten = torch.tensor(sorted(IMAGENETTE_IMAGENET_INDEX.values()))
    pred, pred10, nll = [], [], []
    t0 = time.perf_counter()
    with torch.no_grad():
        for idx, x in stimuli.batches(batch_size):
            logits = model(x)
            y = torch.from_numpy(targets[idx])
            pred.append(logits.argmax(1))
            pred10.append(ten[logits[:, ten].argmax(1)])
            nll.append(torch.nn.functional.cross_entropy(logits, y, reduction="none"))
    secs = time.perf_counter() - t0
    pred, pred10, nll = torch.cat(pred).numpy(), torch.cat(pred10).numpy(), torch.cat(nll).numpy()
    per_class = {int(c): float(np.mean(pred[targets == c] == c)) for c in np.unique(targets)}
    return {"n": int(len(targets)), "top1": float(np.mean(pred == targets)),
            "correct": int(np.sum(pred == targets)), "top1_10way": float(np.mean(pred10 == targets)),
            "mean_nll": float(np.mean(nll)), "per_class_top1": per_class, "seconds": round(secs, 1),
            "images_per_s": round(len(targets) / secs, 2)}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="imagenette-224-val/val")
    ap.add_argument("--models", default="efficientnet_lite0,efficientnet_lite1,efficientnet_lite2")
    ap.add_argument("--variants", default="model", help=f"comma-separated, from {', '.join(VARIANTS)}")
    ap.add_argument("--n-per-class", type=int, default=None, help="a stratified subset (default: all)")
    ap.add_argument("--batch-size", type=int, default=25)
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (1: spare the CPU)")
    ap.add_argument("--out", type=Path, default=Path("bench/results/imagenet_top1.json"))
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    from netphys.models import load_model
    from netphys.models.efficientnet import IMAGENETTE_IMAGENET_INDEX, WEIGHTS
    from netphys.stimuli import StimulusSet

    torch.set_num_threads(args.threads)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    for v in variants:
        if v not in VARIANTS:
            ap.error(f"unknown variant {v!r}; choose from {', '.join(VARIANTS)}")
    results = {"root": str(args.root), "n_per_class": args.n_per_class, "threads": args.threads,
               "torch": torch.__version__, "machine": platform.machine(), "models": {}}
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        model = load_model(name, "imagenet")
        info = model.netphys
        base = StimulusSet.from_folder(args.root, preprocess=info.preprocess, n_per_class=args.n_per_class)
        folders = list(base.coords["folder"])
        unknown = sorted(set(folders) - set(IMAGENETTE_IMAGENET_INDEX))
        if unknown:
            raise SystemExit(f"class folders without an ImageNet index: {unknown}")
        targets = np.array([IMAGENETTE_IMAGENET_INDEX[f] for f in folders], dtype=np.int64)
        entry = {"weights": info.weights, "sha256": info.sha256, "licence": WEIGHTS[name]["licence"],
                 "input_size": info.input_size, "variants": {}}
        for v in variants:
            pre = variant_preprocess(info.preprocess, v)
            res = evaluate(model, base.with_preprocess(pre), targets, args.batch_size)
            res["preprocess"] = pre.to_dict()
            entry["variants"][v] = res
            log.info("%-20s %-15s n=%4d  top-1 %.4f  (10-way %.4f, NLL %.3f)  %.1f img/s", name, v, res["n"],
                     res["top1"], res["top1_10way"], res["mean_nll"], res["images_per_s"])
        results["models"][name] = entry
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    print(f"{'model':20s} {'variant':15s} {'n':>5s} {'top-1':>7s} {'10-way':>7s}")
    for name, entry in results["models"].items():
        for v, res in entry["variants"].items():
            print(f"{name:20s} {v:15s} {res['n']:5d} {res['top1']:7.4f} {res['top1_10way']:7.4f}")
    print(f"wrote {args.out}")
    return results


if __name__ == "__main__":
    main()
