"""`netphys demo`: the main job, on the shipped default model and demo stimuli (no ../shared needed).

Runs, on the 1000 shipped Imagenette images and the shipped default model (trained) against randomly
initialised copies:

1. Prune and distill, Figure 3 (+ the Fig. 3A inset): single-unit information about luminosity,
   contrast, orientation, corner and category across all 16 layers, 5 realisations;
2. Figure 5: category information and linear-SVM decoding per layer (fewer sub-populations than the
   paper's 200, stated in the report, to keep the demo short);
3. the intrinsic-dimension profile across layers (TwoNN);
4. the orientation-selectivity rig on the same model: gratings, gOSI per channel with the shuffle
   control, ablation of top vs bottom gOSI halves and shift invariance (its own report, linked);
5. preferred images of 3 units in each of conv2_1, conv4_1 and fc7: CMA-ES over the shipped image prior
   (the Fourier space when the prior was not trained on the installed default model) and DeepTune
   (``synthesis.preferred_images``, its own report, linked);

and writes one HTML report with every figure (also saved as PNG and SVG), the numbers, the configs and
the provenance. Every stage caches its results under ``out``: a rerun resumes.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import replace
from pathlib import Path

from ..io import atomic_write_text
from ..models import load_model
from ..recording import provenance
from ..reports import Report
from .config import config_to_dict

log = logging.getLogger(__name__)


def demo_configs(random_state: int = 0, quick: bool = False) -> dict:
    from .population import Fig5Config, IDLayersConfig
    from .prune_distill import Fig3Config

    # fewer shuffles (5, not 20) and SVM sub-populations (10, not 200) than the paper defaults, to keep the demo
    # under 3 minutes on 2 cores; the layer-mean null over 250 units is stable with 5 shuffles
    fig3 = Fig3Config(random_state=random_state, n_images=1000, realisations=5, n_shuffles=5)
    fig5 = Fig5Config(random_state=random_state, n_subsamples=10, n_shuffles=5)
    idl = IDLayersConfig(random_state=random_state, n_images=1000, units=1000, realisations=2)
    if quick:
        fig3 = replace(fig3, n_images=200, realisations=2, units=40, orientation_units=30,
                       orientation_images=100, corner_units=30, corner_images=80)
        fig5 = replace(fig5, n_images=400, n_subsamples=3, pool=40, n_units=20)
        idl = replace(idl, n_images=200, units=100, realisations=1)
    return {"fig3": fig3, "fig5": fig5, "id_layers": idl}


def synthesis_config(random_state: int = 0, quick: bool = False):
    """The demo's preferred-images run: 3 units in each of 3 layers, CMA-ES over the shipped prior and DeepTune."""
    from .synthesis import PreferredImagesConfig

    # fewer generations (30), restarts (3) and a smaller population (12) than the paper's 100 / 10 / 20, to keep
    # this section near a minute on 2 cores (the network's forward passes are the cost)
    cfg = PreferredImagesConfig(layers=("conv2_1", "conv4_1", "fc7"), units=3, space="prior", iterations=30,
                                restarts=3, popsize=12, deeptune_steps=100, deeptune_restarts=2,
                                random_state=random_state)
    if quick:
        cfg = replace(cfg, iterations=10, restarts=2, deeptune_steps=20)
    if not _prior_fits_default_model():
        cfg = replace(cfg, space="fourier", popsize=None)
    return cfg


def _prior_fits_default_model() -> bool:
    """Whether the shipped prior was trained on the installed default model (its codes are that model's fc6)."""
    from .._validation import NetphysError
    from ..synthesis.prior import load_prior

    try:
        load_prior().encoder(check=True)
    except NetphysError as exc:
        log.warning("demo: %s; the preferred images are evolved in the Fourier space instead", exc)
        return False
    return True


def run_synthesis_demo(out, *, random_state: int = 0, progress: bool = True, quick: bool = False):
    """Run ``synthesis.preferred_images`` with :func:`synthesis_config` into ``out``; the ExperimentRun."""
    from .runner import run_experiment

    return run_experiment("synthesis.preferred_images", synthesis_config(random_state, quick), out, progress=progress)


def run_demo(out="netphys-demo", *, random_state: int = 0, progress: bool = True, quick: bool = False) -> Path:
    """Run the demo pipeline; returns the path of ``report.html``."""
    import matplotlib.pyplot as plt

    from .population import fig5_summary, plot_fig5, plot_id_layers, run_fig5, run_id_layers
    from .prune_distill import _caption, first_layer_kernel_means, plot_fig3, run_fig3, summary

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    cfgs = demo_configs(random_state, quick)
    timings = {}

    t = time.time()
    r3 = run_fig3(cfgs["fig3"], out / "fig3", progress=progress)
    timings["fig3"] = round(time.time() - t, 1)
    trained = load_model("netphys_vgg16", "default")
    rand = load_model("netphys_vgg16", "random", random_state=random_state)
    inset = {"trained": first_layer_kernel_means(trained), "random": first_layer_kernel_means(rand)}

    t = time.time()
    r5 = run_fig5(cfgs["fig5"], out / "fig5", progress=progress)
    timings["fig5"] = round(time.time() - t, 1)

    t = time.time()
    rid = run_id_layers(cfgs["id_layers"], out / "id_layers", progress=progress)
    timings["id_layers"] = round(time.time() - t, 1)

    t = time.time()
    orient_report = None
    if not quick:
        from .orientation import DefaultModelConfig, run_default_model

        orient_report = run_default_model(DefaultModelConfig(random_state=random_state, n_images=300), out / "orientation",
                                          progress=progress)
    timings["orientation"] = round(time.time() - t, 1)

    t = time.time()
    syn = run_synthesis_demo(out / "synthesis", random_state=random_state, progress=progress, quick=quick)
    timings["synthesis"] = round(time.time() - t, 1)

    man = trained.netphys.extra
    rep = Report("netphys demo: in-silico neurophysiology of the default VGG-16",
                 f"netphys_vgg16 trained on Imagenette (validation top-1 {man.get('val_top1', float('nan')):.3f}) "
                 "vs randomly initialised copies; 1000 shipped Imagenette validation images (64 px)")
    rep.heading("Figure 3: single-unit information across layers")
    fig = plot_fig3(r3, inset=inset)
    rep.figure(fig, "Information between each unit's activation (pre-ReLU) and a feature of its "
               "receptive-field patch, trained (blue) vs random (red). " + _caption(r3), stem=out / "fig3")
    plt.close(fig)
    wide = summary(r3).pivot_table(index=["depth", "layer"], columns=["feature", "network"], values="mean")
    rep.table(wide, "layer value U (mean over realisations)")
    rep.table(summary(r3).pivot_table(index=["depth", "layer"], columns=["feature", "network"], values="null"),
              "the same estimator after shuffling feature and activation (null)")
    for w in json.loads(r3.attrs.get("warnings", "[]")):
        rep.text(w, cls="note")

    rep.heading("Figure 5: category information and decoding")
    fig = plot_fig5(r5)
    rep.figure(fig, f"Linear SVM on {int(r5['n_units'].max())} units drawn "
               f"{r5.sizes['subsample']} times from a pool of {r5.attrs['pool']} per layer (the paper draws 200 "
               f"times); {r5.attrs['n_train_per_class']} training / {r5.attrs['n_val_per_class']} validation "
               "images per class.", stem=out / "fig5")
    plt.close(fig)
    rep.table(fig5_summary(r5), "decoding accuracy and category information per layer")

    rep.heading("Intrinsic dimension across layers")
    fig = plot_id_layers(rid)
    rep.figure(fig, f"TwoNN ID of {cfgs['id_layers'].units} post-activation units per layer "
               f"(mean \u00b1 SD over {rid.sizes['realisation']} draws of units).", stem=out / "id_layers")
    plt.close(fig)

    if orient_report is not None:
        rep.heading("Orientation selectivity (gratings, gOSI)")
        hist = out / "orientation" / "gosi_histograms.png"
        if hist.is_file():
            rep.image(hist, "gOSI per channel of each layer for gratings (red) and after shuffling each "
                      "unit's responses (blue); dashed: the 0.33 selectivity threshold.")
        rep.link("orientation/report.html", "Full orientation report: tuning curves, ablation, shift invariance, V1")

    rep.heading("Preferred images (synthesis)")
    space = ("the codes of the shipped 64-px image prior (a DeePSiM-style generator trained to invert the "
             "network's fc6; it draws blurred colour layouts, not sharp objects)" if syn.config.space == "prior"
             else "the Fourier space (the shipped prior was not trained on this default model)")
    rep.text(f"Preferred images of {syn.result.sizes['unit']} sampled units of the trained network, evolved by "
             f"CMA-ES ({syn.result.attrs['optimizer']}, {syn.result.attrs['iterations']} generations, "
             f"{syn.result.attrs['restarts']} restarts) over {space}, and by DeepTune gradient ascent on the pixels.")
    captions = {"prior_check": "The image space: held-out images (a), their reconstructions through the prior "
                               "(b) and samples from it (c).",
                **{f"{m}_{l}_max_best": f"{l}: the best of the restarts by {how}; unit (channel) and score above "
                                        "each image."
                   for l in syn.config.layers
                   for m, how in (("evolve", f"CMA-ES over the {syn.config.space} space"),
                                  ("deeptune", "DeepTune on the pixels"))}}
    for stem, caption in captions.items():
        png = out / "synthesis" / f"{stem}.png"
        if png.is_file():
            rep.image(png, caption)
    rep.link("synthesis/report.html", "Full synthesis report: every restart, score traces, stability")

    rep.heading("Configs and provenance")
    rep.json({**{k: config_to_dict(v) for k, v in cfgs.items()}, "synthesis": config_to_dict(syn.config)},
             "configs")
    prov = provenance(trained, seed=random_state, timings=timings, seconds=round(time.time() - t0, 1),
                      quick=quick)
    rep.json(prov, "provenance")
    atomic_write_text(out / "provenance.json", json.dumps(prov, indent=2))
    return rep.write(out / "report.html")
