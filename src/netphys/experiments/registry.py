"""Named experiments for ``netphys run NAME --config FILE``."""
from __future__ import annotations

import importlib

from .._validation import param_error

EXPERIMENTS = {
    "prune_distill.fig3": ("netphys.experiments.prune_distill", "run"),
    "prune_distill.fig4": ("netphys.experiments.prune_distill", "run_fig4_cli"),
    "prune_distill.figC": ("netphys.experiments.prune_distill", "run_figC"),
    "prune_distill.figD": ("netphys.experiments.prune_distill", "run_figD"),
}


def run_experiment(name: str, config=None, out=None, *, progress: bool = True):
    """Run a named experiment; returns the path of its HTML report."""
    if name not in EXPERIMENTS:
        raise param_error("experiment", "netphys run", "one of " + ", ".join(sorted(EXPERIMENTS)), name)
    mod, fn = EXPERIMENTS[name]
    return getattr(importlib.import_module(mod), fn)(config, out, progress=progress)
