"""Experiments: typed configs (paper defaults) run by one runner that seeds, caches and records provenance.

``register`` adds an :class:`Experiment` to ``netphys run``; :func:`run_experiment` runs one by name.
"""
from .base import Experiment, RunContext
from .registry import experiment_names, get_experiment, register
from .runner import ExperimentRun, run_experiment

__all__ = ["Experiment", "RunContext", "register", "run_experiment", "ExperimentRun", "experiment_names",
           "get_experiment"]
