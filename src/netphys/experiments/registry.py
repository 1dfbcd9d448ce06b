"""Named experiments for ``netphys run NAME --config FILE``."""
from __future__ import annotations

import importlib

from .._validation import param_error

EXPERIMENTS = {
    "prune_distill.fig3": ("netphys.experiments.prune_distill", "run"),
    "prune_distill.fig4": ("netphys.experiments.prune_distill", "run_fig4_cli"),
    "prune_distill.figC": ("netphys.experiments.prune_distill", "run_figC"),
    "prune_distill.figD": ("netphys.experiments.prune_distill", "run_figD"),
    "orientation.all": ("netphys.experiments.orientation", "run"),
    "orientation.fast": ("netphys.experiments.orientation", "run_fast"),
    "orientation.selectivity": ("netphys.experiments.orientation", "run_selectivity"),
    "orientation.dynamics": ("netphys.experiments.orientation", "run_dynamics"),
    "orientation.sweep": ("netphys.experiments.orientation", "run_sweep"),
    "orientation.ablation": ("netphys.experiments.orientation", "run_ablation"),
    "orientation.default": ("netphys.experiments.orientation", "run_default_model_cli"),
}


def run_experiment(name: str, config=None, out=None, *, progress: bool = True):
    """Run a named experiment; returns the path of its HTML report."""
    if name not in EXPERIMENTS:
        raise param_error("experiment", "netphys run", "one of " + ", ".join(sorted(EXPERIMENTS)), name)
    mod, fn = EXPERIMENTS[name]
    return getattr(importlib.import_module(mod), fn)(config, out, progress=progress)

EXPERIMENTS.update({
    "prune_distill.fig5": ("netphys.experiments.population", "run_fig5_cli"),
})
EXPERIMENTS.update({
    "prune_distill.id_layers": ("netphys.experiments.population", "run_id_layers_cli"),
    "prune_distill.fig2": ("netphys.experiments.population", "run_fig2_cli"),
})
