"""Train the shipped natural-image prior (``netphys/data/prior``) and make its sample figures.

The defaults are the recorded settings of the shipped weights (see ``docs/prior.md`` and
``src/netphys/data/prior/manifest.json``), so

    nice -n 15 python bench/train_prior.py --out /work/runs/prior/train

reproduces the shipped ``weights.pt`` (same seed, steps, batch size and loss weights; the sha256 is the
same on the same torch build and thread count, see ``--check``). It checkpoints every
``--checkpoint-every`` steps and resumes from ``OUT/checkpoint.pt`` when run again.

    python bench/train_prior.py --out OUT --figures /work/runs/prior   # + figures and numbers
    python bench/train_prior.py --figures-only --figures /work/runs/prior   # figures of the shipped prior
    python bench/train_prior.py --out OUT --install                     # copy into the package data

``main(argv)`` is what a ``netphys train-prior`` subcommand calls.
"""
from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
from pathlib import Path

DATA = Path("/work/shared/data/imagenette-64")


def build_parser() -> argparse.ArgumentParser:
    from netphys.synthesis.prior import DEFAULT_COMPARATOR, DEFAULT_LOSS_WEIGHTS

    p = argparse.ArgumentParser(prog="train_prior", description=__doc__.split("\n\n")[0])
    p.add_argument("--images", default=str(DATA / "train"), help="training image folder")
    p.add_argument("--val", default=str(DATA / "val"), help="held-out image folder (scores in the manifest)")
    p.add_argument("--n-val", type=int, default=500, help="held-out images scored")
    p.add_argument("--out", default="/work/runs/prior/train", help="output / checkpoint folder")
    p.add_argument("--code-layer", default="fc6:pre")
    p.add_argument("--comparator", default=",".join(DEFAULT_COMPARATOR), help="comma-separated layers")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--lr-disc", type=float, default=2e-4)
    for k, v in DEFAULT_LOSS_WEIGHTS.items():
        p.add_argument(f"--w-{k}", type=float, default=v, help=f"weight of the {k} loss")
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--disc-width", type=int, default=32)
    p.add_argument("--pad", type=int, default=4)
    p.add_argument("--max-images", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="torch threads (the shipped run used 2)")
    p.add_argument("--device", default=None)
    p.add_argument("--checkpoint-every", type=int, default=100)
    p.add_argument("--no-resume", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--figures", default=None, help="folder for the sample figures and scores.json")
    p.add_argument("--figures-only", action="store_true", help="skip training; figures of --prior")
    p.add_argument("--prior", default=None, help="prior folder for --figures-only (default: shipped)")
    p.add_argument("--install", action="store_true", help="copy weights + manifest into netphys/data/prior")
    p.add_argument("--check", action="store_true", help="compare the weights sha256 with the shipped one")
    return p


def _grid(images, nrow):
    import numpy as np

    a = images.permute(0, 2, 3, 1).clamp(0, 1).cpu().numpy()
    n, h, w, c = a.shape
    ncol = int(np.ceil(n / nrow))
    out = np.ones((nrow * (h + 2), ncol * (w + 2), c))
    for i in range(n):
        r, q = divmod(i, ncol)
        out[r * (h + 2):r * (h + 2) + h, q * (w + 2):q * (w + 2) + w] = a[i]
    return out


def make_figures(prior, val_root, folder, *, n_val=500, seed=0) -> dict:
    """Originals vs reconstructions (held-out), samples from initial_codes; scores.json. Returns scores."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    import torch

    from netphys.stimuli import StimulusSet
    from netphys.synthesis.prior import reconstruction_scores

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    val = StimulusSet.from_folder(val_root, preprocess=None)
    val = val.subsample(n=min(n_val, len(val)), random_state=0)
    x = torch.from_numpy(np.ascontiguousarray(val.load_images())).permute(0, 3, 1, 2)
    enc = prior.encoder()
    sc = reconstruction_scores(prior, x, enc)
    pick = np.random.default_rng(seed).choice(len(x), 24, replace=False)
    rows = []
    for k in range(0, 24, 8):
        rows += [x[pick[k:k + 8]].float() / 255, sc["reconstructions"][pick[k:k + 8]]]
    fig, ax = plt.subplots(figsize=(10, 8))
    ax.imshow(_grid(torch.cat(rows), 6), interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(f"held-out images (rows 1, 3, 5) and G(E(x)) (rows 2, 4, 6); median pixel r = "
                 f"{sc['pixel_corr']:.2f} (mean image {sc['baseline_pixel_corr']:.2f})", fontsize=9)
    fig.savefig(folder / "reconstructions.png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    with torch.no_grad():
        full = prior(prior.initial_codes(32, random_state=seed))
        diag = prior(prior.initial_codes(16, random_state=seed + 1, covariance="diagonal"))
        # codes of real (held-out) images, interpolated half-way to each other
        c = enc.codes(x[pick[:16]].float() / 255)
        mix = prior(0.5 * (c[:8] + c[8:16]))
    for name, imgs, nrow, title in [
            ("samples_full.png", full, 4, "G(z), z ~ N(mean, full covariance of real fc6 codes)"),
            ("samples_diagonal.png", diag, 2, "G(z), z ~ N(mean, per-dimension std of real codes)"),
            ("interpolations.png", mix, 1, "G((E(x1) + E(x2)) / 2) for pairs of held-out images")]:
        fig, ax = plt.subplots(figsize=(10, 1.5 + 1.25 * nrow))
        ax.imshow(_grid(imgs, nrow), interpolation="nearest")
        ax.set_axis_off()
        ax.set_title(title, fontsize=9)
        fig.savefig(folder / name, dpi=110, bbox_inches="tight")
        plt.close(fig)
    # how the samples look to the encoder: their code-space distance to real codes vs. real-real
    with torch.no_grad():
        real = enc.codes(x.float() / 255)
        samp = enc.codes(prior(prior.initial_codes(200, random_state=seed + 2)))
        probs_real = torch.softmax(_logits(enc, x.float() / 255), 1).max(1).values
        probs_samp = torch.softmax(_logits(enc, prior(prior.initial_codes(200, random_state=seed + 2))),
                                   1).max(1).values
    scores = {k: v for k, v in sc.items() if k not in ("reconstructions", "pixel_corr_each",
                                                       "baseline_pixel_corr_each")}
    scores["fraction_beating_baseline"] = float(np.mean(sc["pixel_corr_each"] > sc["baseline_pixel_corr_each"]))
    scores["sample_code_norm_ratio"] = float(samp.norm(dim=1).median() / real.norm(dim=1).median())
    scores["classifier_confidence_real_median"] = float(probs_real.median())
    scores["classifier_confidence_samples_median"] = float(probs_samp.median())
    (folder / "scores.json").write_text(json.dumps(scores, indent=2))
    return scores


def _logits(enc, images):
    """The encoder network's class logits (fc8) of raw images (for the sample diagnostics)."""
    import torch

    with torch.no_grad():
        h = (images * enc._scale - enc.mean) / enc.std
        for stage in enc.stages:
            h = stage(h)
    return h


def main(argv=None) -> int:
    a = build_parser().parse_args(argv)
    import torch

    from netphys.synthesis.prior import load_prior, prior_dir, train_prior

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(a.threads)
    if a.figures_only:
        prior = load_prior(a.prior)
    else:
        weights = {k: getattr(a, f"w_{k}") for k in ("pixel", "feature", "code", "adversarial")}
        prior = train_prior(a.images, code_layer=a.code_layer, comparator=tuple(a.comparator.split(",")),
                            steps=a.steps, batch_size=a.batch_size, lr=a.lr, lr_disc=a.lr_disc, loss_weights=weights,
                            width=a.width, disc_width=a.disc_width, pad=a.pad, max_images=a.max_images,
                            val_root=a.val or None, n_val=a.n_val, random_state=a.seed, out=a.out,
                            device=a.device, progress=not a.no_progress, resume=not a.no_resume,
                            checkpoint_every=a.checkpoint_every)
        m = prior.manifest
        logging.info("weights %s (%d bytes), sha256 %s; %.0f s wall, %.0f s CPU", Path(a.out) / m["weights_file"],
                     m["weights_bytes"], m["weights_sha256"], m["training"]["wall_s"], m["training"]["cpu_s"])
        if "validation" in m:
            logging.info("held-out: %s", json.dumps({k: m["validation"][k] for k in
                                                     ("pixel_corr", "baseline_pixel_corr", "feature_corr",
                                                      "baseline_feature_corr")}))
        if a.check:
            shipped = json.loads((prior_dir() / "manifest.json").read_text())["weights_sha256"]
            same = shipped == m["weights_sha256"]
            logging.info("sha256 %s the shipped weights' (%s)", "equals" if same else "DIFFERS from", shipped)
            if not same:
                return 1
        if a.install:
            dest = prior_dir()
            dest.mkdir(parents=True, exist_ok=True)
            for f in (m["weights_file"], "manifest.json"):
                shutil.copyfile(Path(a.out) / f, dest / f)
            logging.info("installed into %s", dest)
    if a.figures:
        scores = make_figures(prior, a.val, a.figures, n_val=a.n_val, seed=a.seed)
        logging.info("figures in %s: %s", a.figures, json.dumps(scores))
    return 0


if __name__ == "__main__":
    sys.exit(main())
