"""`netphys demo`: the main job, on the shipped default model and demo stimuli (no ../shared needed)."""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from ..io import atomic_write_text
from ..models import load_model
from ..recording import provenance, record, save_recording, unit_table
from ..reports import Report
from ..stimuli import demo_stimuli
from .activation_stats import activation_statistics, plot_activation_statistics

log = logging.getLogger(__name__)


def run_demo(out="netphys-demo", *, units: int = 250, random_state: int = 0, progress: bool = True,
             quick: bool = False) -> Path:
    """Record the default model (trained and random) on the demo set; write figures and a report.

    Returns the path of the HTML report.
    """
    import matplotlib.pyplot as plt

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    stim = demo_stimuli()
    if quick:
        stim = stim.subsample(n_per_class=20, random_state=random_state)
        units = min(units, 50)
    trained = load_model("netphys_vgg16", "default")
    rand = load_model("netphys_vgg16", "random", random_state=random_state)
    rec_t = record(trained, stim, units=units, random_state=random_state, progress=progress, allow_fewer=True)
    rec_r = record(rand, stim, units=unit_table(rec_t), progress=progress)
    save_recording(rec_t, out / "recording_trained.nc")
    save_recording(rec_r, out / "recording_random.nc")
    stats = {"trained": activation_statistics(rec_t), "random": activation_statistics(rec_r)}
    for k, df in stats.items():
        atomic_write_text(out / f"activation_stats_{k}.csv", df.to_csv())
    rep = Report("netphys demo: the default model on the demo stimuli",
                 f"{len(stim)} Imagenette validation images (64 px); {units} units per layer; "
                 f"trained vs random (seed {random_state}) netphys_vgg16")
    rep.heading("Activation statistics per layer")
    fig = plot_activation_statistics(stats)
    rep.figure(fig, "Per-layer response SD, fraction of positive pre-activations and lifetime sparseness "
               "of the rectified responses, trained (blue) vs random (red). Circles: conv, squares: FC.",
               stem=out / "activation_statistics")
    plt.close(fig)
    rep.table(stats["trained"], "trained network")
    rep.heading("Provenance")
    prov = provenance(trained, seed=random_state, units=units, stimuli=stim.to_dict(),
                      seconds=round(time.time() - t0, 1))
    rep.json(prov)
    atomic_write_text(out / "provenance.json", json.dumps(prov, indent=2))
    return rep.write(out / "report.html")
