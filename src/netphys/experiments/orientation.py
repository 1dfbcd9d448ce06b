"""Orientation selectivity rig (Ukita 2019; METHODS.md section B): gOSI of network units and V1
neurons, its training dynamics and relation to generalisation, and the causal tests (ablation of
the most vs least selective units, shift invariance).

Pipeline (one config, :class:`OrientationConfig`; ``parts`` picks the sections):

``selectivity``
    Train the paper's 7-layer CNN (:func:`netphys.models.cifar.reference_cnn`) on Imagenette,
    keep the epoch with the best validation accuracy, present the 432 gratings (12 orientations x
    4 phases x 9 SPFs) and compute every channel's gOSI (B1-B2), with the shuffle control.
``dynamics``
    Mean gOSI per layer after every epoch against the validation loss (Spearman, B3).
``sweep``
    Many networks (augmentation settings x seeds, label-corruption rates) trained in parallel
    processes (:func:`netphys.experiments.parallel.get_executor`): mean gOSI per layer vs test loss.
``ablation``
    Clamp the top-50% vs bottom-50% gOSI channels of each layer to zero and measure the change of
    the test loss (B4), with random halves as an extra control.
``invariance``
    Coefficient of variation of single units under 10% shifts, intact network vs networks with the
    top-gOSI half of a low layer ablated (B5).
``v1``
    The same gOSI estimator on macaque V1 single units (Ecker et al. 2010 static and drifting
    gratings), next to the network layers.

Units and sites
---------------
A network "unit" for gOSI is one channel. ``response="centre"`` (default) takes the response of
the unit at the centre ``(H // 2, W // 2)`` of the channel's map (the paper's text: "the map's
centre unit"); ``response="mean"`` averages the map over space (what the authors' code does). FC
units are single features. Responses are recorded at ``site="post"``, the ReLU output that the
next layer receives, so they are non-negative (gOSI's domain) and ablation clamps the same
quantity.

Runner
------
Every variant is a registered experiment (``netphys run orientation.all|fast|selectivity|dynamics|
sweep|ablation|default``) run by :func:`netphys.experiments.runner.run_experiment`: one labelled
Dataset per run (``orientation.nc``; :func:`frames` gives its tables, also written as CSV), and
the expensive work as cached pieces under ``out/cache``: the data split, the main network's weights
and history, the dynamics network's history and every sweep network. Each key holds only the
config fields its piece reads, so analysis-only changes (shuffles, ablation, invariance, V1) reuse
the trained networks and a new sweep member trains only itself.

Scaling
-------
The defaults are the paper's (200 epochs, batch 32, Adam, 4 augmentation settings x 50 networks,
6 label-corruption rates) on Imagenette at its native 64 px. :meth:`OrientationConfig.fast` is a
CPU-sized version (32-px images, 7,500 training images, 15 epochs, 6 sweep networks of 8 epochs)
that runs in about 10-15 minutes on two cores. See the report for the scale actually used.

References
----------
J. Ukita, "Causal importance of orientation selectivity for generalization in image recognition",
ICLR 2019 submission (``shared/seeds/orientation-selectivity.txt``); code
github.com/ukky17/ori_selectivity_CNN. A. S. Ecker et al., Science 327 (2010) 584-587 (V1 data).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import xarray as xr

from .._random import spawn_seeds
from .._validation import NetphysError, check_choice, check_int, param_error
from ..interventions.effects import ablation_effects, invariance_effects
from ..models.cifar import reference_cnn
from ..neural.v1 import load_v1_gosi
from ..plotting.selectivity import plot_ablation, plot_dynamics, plot_invariance, plot_sweep, plot_v1_comparison
from ..recording.gratings import grating_responses
from ..stats.selectivity import (channel_gosi, gosi_by_layer, gosi_by_layer_with_control, selective_fraction,
                                 shuffled_gosi, spearman, tuning_array)
from ..stimuli import Preprocess, StimulusSet
from ..stimuli.gratings import gratings
from ..training import ShiftFlip, corrupt_labels, evaluate, fit, load_imagenette
from ..training.data import split_stimuli
from .base import Experiment, torch_threads
from .registry import register

log = logging.getLogger(__name__)

__all__ = ["OrientationConfig", "FastOrientationConfig", "DefaultModelConfig", "PARTS", "AUGMENTATIONS",
           "STREAMS", "run_orientation", "orientation_result", "frames", "summary", "train_network",
           "training_labels", "run", "run_fast", "run_default_model", "run_default_model_cli"]

PARTS = ("selectivity", "dynamics", "sweep", "ablation", "invariance", "v1")
AUGMENTATIONS = ("none", "shift", "flip", "shift+flip")
LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5", "conv6", "fc7")
THRESHOLD = 0.33


# =============================================================================== config
@dataclass(frozen=True)
class OrientationConfig:
    """The orientation-selectivity experiment; defaults are the paper's (Ukita 2019, A.1).

    Attributes
    ----------
    data : str or None
        Image folder with ``train/`` and ``val/`` class folders (Imagenette); ``None`` looks for
        ``../shared/data/imagenette-64`` next to the working directory or the repository.
    in_size : int
        Network input size; images are resized to it (64: Imagenette-64 at full resolution; the
        paper's CIFAR-10 is 32).
    max_train : int or None
        Images drawn (stratified) from ``train/`` before the train/validation split; ``None``: all.
    val_fraction : float
        Share of those held out for validation (0.2, as the authors' code).
    max_test : int or None
        Test images drawn from ``val/``; ``None``: all.
    epochs, lr, batch_size : int, float, int
        Training of the main network: 200 epochs, Adam at Keras' default 1e-3, batch 32.
    augmentation : {"none", "shift", "flip", "shift+flip"}
        Of the main network: horizontal/vertical shifts up to ``shift`` and horizontal flips.
    shift : float
        Maximal augmentation shift as a fraction of the image side (0.1).
    checkpoint : {"val_accuracy", "val_loss", "last"}
        Which epoch's weights are analysed (the paper: highest validation accuracy).
    dynamics_lr : float or None
        Learning rate of the training-dynamics network (1e-4 in the paper, "so that epochwise
        evolutions could be visualized clearly"); ``None`` or equal to ``lr``: the main network's
        own history is used (one network instead of two).
    dynamics_epochs : int or None
        Epochs of that network (``None``: ``epochs``).
    spearman_epochs : int
        Epochs entering the Spearman correlation of validation loss and mean gOSI (first 50).
    grid : {"small", "imagenet"}
        Grating grid: 12 orientations x 4 phases x 9 (small) or 57 SPFs.
    response : {"centre", "mean"}
        A conv channel's response: its centre unit, or the spatial mean of its map.
    site : {"post", "pre"}
        Recording and ablation site ("post": the ReLU output).
    layers : tuple of str
        Layers analysed (``conv1`` ... ``conv6``, ``fc7`` = the paper's Conv 1-6 and FC 1).
    n_shuffles : int
        Shuffles of the sparsity control.
    sweep_augmentations : tuple of str
        Augmentation settings of the generalisation sweep (the paper's four).
    sweep_seeds : int
        Networks per augmentation setting (50).
    corruption_rates : tuple of float
        Label-corruption rates, trained without augmentation (0, 0.2, ..., 1).
    sweep_epochs : int or None
        Epochs per sweep network (``None``: ``epochs``).
    sweep_checkpoint : {"last", "val_accuracy", "val_loss"}
        Weights analysed for every sweep network ("last": label-corrupted networks must be allowed
        to memorise; early stopping on clean validation labels would undo it).
    backend : {"process", "serial", "ray"}
        How the sweep's networks run when the run has no executor of its own (``netphys run
        --backend`` / ``run_experiment(backend=...)`` takes precedence); see
        :func:`netphys.experiments.parallel.get_executor`.
    max_workers : int or None
        Parallel sweep jobs of that executor (``None``: the number of CPUs).
    threads_per_worker : int
        PyTorch threads per sweep job.
    ablation_fraction : float
        Share of a layer's channels ablated in each group (0.5).
    ablation_random : int
        Random halves ablated per layer as an extra control (not in the paper).
    invariance_units : int
        Units sampled per layer for the shift-invariance measure (each a (channel, row, col) of a
        conv map).
    invariance_ablate : tuple of str
        Layers whose top-gOSI half is ablated for the shift-invariance comparison (Conv 2, Conv 3).
    invariance_control : bool
        Also measure the networks with the bottom-gOSI half ablated (a control not in the paper).
    invariance_shift, invariance_threshold : float
        10% shifts; images driving a unit above 90% of its maximum.
    v1_root : str or None
        Folder of the Ecker et al. ``.mat`` files; ``None`` looks for
        ``../shared/data/ecker-v1-gratings``; missing data skips the V1 section.
    v1_window_ms : tuple of 2 floats
        Response window after stimulus onset (bin centres), ms.
    v1_max_contamination : float
        Single units with contamination below this are used (0.05, as Ecker et al.).
    v1_min_rate_hz : float
        Units whose best condition evokes less than this rate are excluded.
    v1_baseline : {"none", "subtract"}
        Subtract each unit's spontaneous rate (-195..0 ms) before the estimator (then rectified).
    parts : tuple of str
        Sections to run (see :data:`PARTS`).
    eval_batch_size : int
    random_state : int
        Root seed; every network, split and sampling gets a named seed stream from it (:data:`STREAMS`).
    device : str or None
        Where the networks run (default CPU); sweep workers use the same device.
    threads : int or None
        PyTorch intra-op threads in this process while the experiment runs (restored afterwards);
        ``None`` leaves PyTorch's setting. One thread is much faster on a busy machine.
    """

    data: str | None = None
    in_size: int = 64
    max_train: int | None = None
    val_fraction: float = 0.2
    max_test: int | None = None
    epochs: int = 200
    lr: float = 1e-3
    batch_size: int = 32
    augmentation: str = "shift+flip"
    shift: float = 0.1
    checkpoint: str = "val_accuracy"
    dynamics_lr: float | None = 1e-4
    dynamics_epochs: int | None = None
    spearman_epochs: int = 50
    grid: str = "small"
    response: str = "centre"
    site: str = "post"
    layers: tuple = LAYERS
    n_shuffles: int = 1
    sweep_augmentations: tuple = AUGMENTATIONS
    sweep_seeds: int = 50
    corruption_rates: tuple = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    sweep_epochs: int | None = None
    sweep_checkpoint: str = "last"
    backend: str = "process"
    max_workers: int | None = None
    threads_per_worker: int = 1
    ablation_fraction: float = 0.5
    ablation_random: int = 3
    invariance_units: int = 250
    invariance_ablate: tuple = ("conv2", "conv3")
    invariance_control: bool = True
    invariance_shift: float = 0.1
    invariance_threshold: float = 0.9
    v1_root: str | None = None
    v1_window_ms: tuple = (50.0, 550.0)
    v1_max_contamination: float = 0.05
    v1_min_rate_hz: float = 1.0
    v1_baseline: str = "none"
    parts: tuple = PARTS
    eval_batch_size: int = 256
    random_state: int = 0
    device: str | None = None
    threads: int | None = None

    @classmethod
    def fast(cls, **overrides) -> "OrientationConfig":
        """A CPU-sized configuration (about 10-15 min on 2 cores); see the module notes.

        32-px images (Imagenette-64 downsampled), 7,500 training images (6,000 train / 1,500
        validation), 2,000 test images, 15 epochs at Adam 1e-3 for the main network (whose own
        history gives the training dynamics), 6 sweep networks of 8 epochs (the 4 augmentation
        settings x 1 seed, label corruption 0.5 and 1.0), 100 units per layer for shift invariance,
        one PyTorch thread in the main process (a batch of 32 small images gains little from more,
        and oversubscribed cores slow it down many times on a shared machine).
        """
        base = dict(in_size=32, max_train=7500, max_test=2000, epochs=15, dynamics_lr=None,
                    spearman_epochs=15, sweep_seeds=1, corruption_rates=(0.0, 0.5, 1.0),
                    sweep_epochs=8, invariance_units=100, ablation_random=3, threads=1)
        base.update(overrides)
        return cls(**base)

    def validate(self) -> "OrientationConfig":
        func = "OrientationConfig"
        check_int(self.in_size, "in_size", func, min_value=29)
        for name in ("max_train", "max_test"):
            v = getattr(self, name)
            if v is not None:
                check_int(v, name, func, min_value=10)
        if not 0 < float(self.val_fraction) < 1:
            raise param_error("val_fraction", func, "a number in (0, 1)", self.val_fraction)
        check_int(self.epochs, "epochs", func, min_value=1)
        check_int(self.batch_size, "batch_size", func, min_value=1)
        for name in ("dynamics_epochs", "sweep_epochs"):
            if getattr(self, name) is not None:
                check_int(getattr(self, name), name, func, min_value=1)
        check_int(self.spearman_epochs, "spearman_epochs", func, min_value=3)
        for name in ("lr",) + (("dynamics_lr",) if self.dynamics_lr is not None else ()):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not v > 0:
                raise param_error(name, func, "a positive number", v)
        check_choice(self.augmentation, "augmentation", func, AUGMENTATIONS)
        for a in self.sweep_augmentations:
            check_choice(a, "sweep_augmentations", func, AUGMENTATIONS)
        if not 0 <= float(self.shift) < 0.5:
            raise param_error("shift", func, "a fraction in [0, 0.5)", self.shift)
        check_choice(self.checkpoint, "checkpoint", func, ("val_accuracy", "val_loss", "last"))
        check_choice(self.sweep_checkpoint, "sweep_checkpoint", func, ("val_accuracy", "val_loss", "last"))
        check_choice(self.grid, "grid", func, ("small", "imagenet"))
        check_choice(self.response, "response", func, ("centre", "mean"))
        check_choice(self.site, "site", func, ("post", "pre"))
        if not self.layers:
            raise param_error("layers", func, "a non-empty tuple of layer names", self.layers)
        check_int(self.n_shuffles, "n_shuffles", func, min_value=1)
        check_int(self.sweep_seeds, "sweep_seeds", func, min_value=0)
        for p in self.corruption_rates:
            if not isinstance(p, (int, float)) or not 0 <= p <= 1:
                raise param_error("corruption_rates", func, "rates in [0, 1]", self.corruption_rates)
        check_choice(self.backend, "backend", func, ("process", "serial", "ray"))
        if self.max_workers is not None:
            check_int(self.max_workers, "max_workers", func, min_value=1)
        check_int(self.threads_per_worker, "threads_per_worker", func, min_value=1)
        if not 0 < float(self.ablation_fraction) <= 0.5:
            raise param_error("ablation_fraction", func, "a number in (0, 0.5]", self.ablation_fraction)
        check_int(self.ablation_random, "ablation_random", func, min_value=0)
        check_int(self.invariance_units, "invariance_units", func, min_value=1)
        for l in self.invariance_ablate:
            if l not in self.layers:
                raise param_error("invariance_ablate", func, f"layers among {list(self.layers)}", l)
        if len(self.v1_window_ms) != 2 or not self.v1_window_ms[0] < self.v1_window_ms[1]:
            raise param_error("v1_window_ms", func, "(start, stop) with start < stop", self.v1_window_ms)
        check_choice(self.v1_baseline, "v1_baseline", func, ("none", "subtract"))
        for p in self.parts:
            check_choice(p, "parts", func, PARTS)
        check_int(self.eval_batch_size, "eval_batch_size", func, min_value=1)
        check_int(self.random_state, "random_state", func, min_value=0)
        if self.threads is not None:
            check_int(self.threads, "threads", func, min_value=1)
        return self


# =============================================================================== methods
# Each step below is one library call; the experiment only chooses the paper's settings and seeds.
def _find_shared(name: str) -> Path | None:
    """``shared/data/<name>`` beside the working directory or beside the repository, if present."""
    repo = Path(__file__).resolve().parents[3]
    for base in (Path.cwd().parent, Path.cwd(), repo.parent):
        p = base / "shared" / "data" / name
        if p.is_dir():
            return p
    return None


def _data_root(cfg: OrientationConfig) -> Path:
    if cfg.data is not None:
        root = Path(cfg.data)
        if not (root / "train").is_dir():
            raise param_error("data", "OrientationConfig", "a folder with train/ and val/ class folders",
                              str(root))
        return root
    root = _find_shared("imagenette-64")
    if root is None:
        raise NetphysError("the Imagenette-64 folder was not found (looked for ../shared/data/imagenette-64); "
                           "set 'data' in the config to a folder with train/ and val/ class folders")
    return root


def _load_v1(cfg: OrientationConfig) -> dict:
    """V1 populations with the config's selection (``{}`` when the data are absent)."""
    root = cfg.v1_root if cfg.v1_root is not None else _find_shared("ecker-v1-gratings")
    return load_v1_gosi(root, window_ms=tuple(cfg.v1_window_ms), max_contamination=cfg.v1_max_contamination,
                        min_rate_hz=cfg.v1_min_rate_hz, baseline=cfg.v1_baseline)


#: OrientationConfig's checkpoint names -> :func:`netphys.training.fit`'s
_CHECKPOINT = {"val_accuracy": "val_top1", "val_loss": "val_loss", "last": "last"}


def _augmentation(name: str, shift: float):
    """The paper's Keras augmentation settings as a :class:`~netphys.training.ShiftFlip` (None: none)."""
    if name == "none":
        return None
    return ShiftFlip(shift=shift if "shift" in name else 0.0, flip="flip" in name)


def training_labels(data: dict, label_corruption: float, random_state) -> np.ndarray:
    """The training labels :func:`train_network` uses for ``random_state`` (corrupted at the given rate)."""
    y = np.asarray(data["y_train"], dtype=np.int64)
    if label_corruption <= 0:
        return y
    return corrupt_labels(y, label_corruption, len(data["class_names"]), spawn_seeds(random_state, 2)[1])


def train_network(model, data: dict, *, epochs: int, lr: float = 1e-3, batch_size: int = 32,
                  augmentation: str = "shift+flip", shift: float = 0.1, label_corruption: float = 0.0,
                  checkpoint: str = "val_accuracy", random_state=0, callbacks=(), record_initial: bool = True,
                  progress: bool = False, desc: str = "train") -> tuple[list, dict]:
    """The paper's training (Ukita 2019, A.1): Adam, cross-entropy, Keras-style shift/flip augmentation,
    optional label corruption, the checkpoint epoch kept. One call of :func:`netphys.training.fit`.

    ``random_state`` is split into the stream of shuffles and augmentation and the corruption seed
    (:func:`training_labels`). Returns ``(history, info)``: the fit history (epoch 0 = initial when
    ``record_initial``) and ``best_epoch``, ``train_labels_changed``, ``train_seconds``.
    """
    check_choice(augmentation, "augmentation", "train_network", AUGMENTATIONS)
    check_choice(checkpoint, "checkpoint", "train_network", tuple(_CHECKPOINT))
    s_torch = spawn_seeds(random_state, 2)[0]
    labels = training_labels(data, label_corruption, random_state)
    result = fit(model, {**data, "y_train": labels}, epochs=epochs, batch_size=batch_size, optimizer="adam",
                 lr=lr, augment=_augmentation(augmentation, shift), checkpoint=_CHECKPOINT[checkpoint],
                 record_initial=record_initial, callbacks=callbacks,
                 random_state=torch.Generator().manual_seed(s_torch), progress=progress, desc=desc)
    changed = float(np.mean(labels != np.asarray(data["y_train"])))
    return result.history, {"best_epoch": result.best_epoch, "train_labels_changed": changed,
                            "train_seconds": result.seconds}


def _gratings(cfg: OrientationConfig, pre: Preprocess) -> StimulusSet:
    return gratings(cfg.in_size, grid=cfg.grid, preprocess=pre)


def _measure(model, grats: StimulusSet, cfg: OrientationConfig) -> tuple[xr.DataArray, xr.Dataset]:
    """Grating responses of one unit per channel and their gOSI (B1-B2)."""
    resp = grating_responses(model, grats, cfg.layers, response=cfg.response, site=cfg.site,
                             batch_size=cfg.eval_batch_size)
    return resp, channel_gosi(resp)


def _with_grating_units(tun: xr.DataArray, grats: StimulusSet) -> xr.DataArray:
    """The tuning array with the gratings' units (``sf_units`` ...), which the figures print."""
    for key in ("sf_units", "orientation_units", "phase_units"):
        if key in grats.attrs:
            tun.attrs.setdefault(key, grats.attrs[key])
    return tun


def _layer_means(g: xr.Dataset, layers) -> dict:
    df = gosi_by_layer(g, layers)
    out = {f"gosi_{l}": float(df.loc[l, "mean_gosi"]) for l in layers}
    out.update({f"selective_{l}": float(df.loc[l, "frac_selective"]) for l in layers})
    return out


def _gosi_callback(grats: StimulusSet, cfg: OrientationConfig):
    """fit callback: mean gOSI and selective fraction per layer after every epoch (B3)."""
    def cb(model, epoch):
        return _layer_means(_measure(model, grats, cfg)[1], cfg.layers)
    return cb


def _new_network(data: dict, cfg: OrientationConfig, seed: int):
    return reference_cnn(len(data["class_names"]), cfg.in_size, random_state=seed, preprocess=data["preprocess"],
                         device=cfg.device or "cpu")




# =============================================================================== seeds and keys
#: Named seed streams of the rig: stream ``i`` is child ``i`` of the config's root SeedSequence
#: (``ctx.seed(i)``), the same seeds the rig spawned before the runner owned them, so a network, split
#: or shuffle of a given ``random_state`` is unchanged. Sweep networks are named sub-streams of
#: ``sweep`` (augmentation, corruption rate, seed index): adding a network leaves the others alone.
STREAMS = {"data": 0, "main": 1, "dynamics": 2, "sweep": 3, "ablation": 4, "invariance": 5, "shuffle": 6}

#: config fields the prepared data split reads
_DATA_READS = ("in_size", "max_train", "val_fraction", "max_test")
#: ... the per-epoch gOSI of a training history (the fit callback) reads
_GOSI_READS = ("grid", "response", "site", "layers")
#: ... the main network's training reads (besides the data and its seed)
_MAIN_READS = ("in_size", "epochs", "lr", "batch_size", "augmentation", "shift", "checkpoint") + _GOSI_READS
#: ... the dynamics network's training reads (its lr and epochs enter the key as values)
_DYNAMICS_READS = ("in_size", "batch_size", "augmentation", "shift") + _GOSI_READS
#: ... one sweep network reads (its augmentation, corruption, epochs and seeds enter the key as values)
_SWEEP_READS = ("in_size", "lr", "batch_size", "shift", "sweep_checkpoint") + _GOSI_READS


def _estimators() -> tuple:
    """Library modules whose versions enter the keys of trained pieces."""
    from .. import training
    from ..models import cifar
    from ..recording import gratings as gratings_module
    from ..stats import selectivity

    return training, cifar, gratings_module, selectivity


def _folder_identity(root: Path) -> str:
    """SHA-256 of the relative paths, sizes and modification times of the files under ``root``."""
    import hashlib

    h = hashlib.sha256()
    for sub in ("train", "val"):
        for dirpath, dirnames, filenames in os.walk(root / sub):
            dirnames.sort()
            for f in sorted(filenames):
                p = Path(dirpath) / f
                st = p.stat()
                h.update(f"{p.relative_to(root)}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


# =============================================================================== data split piece
def _splits_dataset(data: dict) -> xr.Dataset:
    dvars = {}
    for split in ("train", "val", "test"):
        dim = f"{split}_image"
        dvars[f"x_{split}"] = ((dim, "image_row", "image_col", "rgb"), np.asarray(data[f"x_{split}"]))
        dvars[f"y_{split}"] = (dim, np.asarray(data[f"y_{split}"], dtype=np.int64))
    return xr.Dataset(dvars, attrs={"class_names": list(data["class_names"]),
                                    "preprocess": data["preprocess"].to_dict(), "source": str(data.get("source", ""))})


def _splits_from_dataset(ds: xr.Dataset) -> dict:
    d = {k: np.asarray(ds[k].values) for k in ds.data_vars}
    d["class_names"] = list(ds.attrs["class_names"])
    d["preprocess"] = Preprocess(**{k: tuple(v) if isinstance(v, list) else v
                                    for k, v in ds.attrs["preprocess"].items()})
    d["source"] = ds.attrs.get("source", "")
    return d


def _data(cfg: OrientationConfig, ctx) -> tuple[dict, tuple]:
    """The train/validation/test split (a piece keyed by the folder's identity and the data fields)."""
    root = _data_root(cfg)
    seed = ctx.seed(STREAMS["data"])
    key = ctx.key("splits", reads=_DATA_READS, root=str(root), files=_folder_identity(root), seed=seed)
    ds = ctx.lookup("splits", key)
    if ds is None:
        data = load_imagenette(root, cfg.in_size, max_train=cfg.max_train, val_fraction=cfg.val_fraction,
                               max_test=cfg.max_test, random_state=seed, progress=ctx.progress_enabled)
        ds = ctx.store("splits", key, _splits_dataset(data))
    ctx.stimuli["splits"] = {"root": str(root), "sha256": key[0],
                             **{f"n_{s}": int(ds.sizes[f"{s}_image"]) for s in ("train", "val", "test")}}
    return _splits_from_dataset(ds), key


# =============================================================================== training histories
def _history_dataset(history: list, layers, info: dict | None = None) -> xr.Dataset:
    """A fit history (list of per-epoch dicts) as a Dataset: one variable per column, per-layer gOSI
    and selective fraction as (epoch, layer)."""
    df = pd.DataFrame(history).set_index("epoch")
    layers = list(layers)
    dvars = {}
    for name in ("gosi", "selective"):
        cols = [f"{name}_{l}" for l in layers]
        if all(c in df for c in cols):
            dvars[name] = (("epoch", "layer"), df[cols].to_numpy(np.float64))
    per_layer = {f"{n}_{l}" for n in ("gosi", "selective") for l in layers}
    for c in df.columns:
        if c not in per_layer:
            dvars[c] = ("epoch", df[c].to_numpy(np.float64))
    return xr.Dataset(dvars, coords={"epoch": df.index.to_numpy(np.int64), "layer": layers},
                      attrs=dict(info or {}))


def _history_frame(ds: xr.Dataset, prefix: str = "", dim: str = "epoch") -> pd.DataFrame:
    """The history DataFrame (index epoch; losses, ``gosi_<layer>``, ``selective_<layer>``) back."""
    cols = {}
    layers = [str(l) for l in ds["layer"].values]
    for v in ds.data_vars:
        name = str(v)
        if not name.startswith(prefix) or ds[v].dims[:1] != (dim,):
            continue
        short = name[len(prefix):]
        if ds[v].dims == (dim, "layer"):
            for i, l in enumerate(layers):
                cols[f"{short}_{l}"] = ds[v].values[:, i]
        elif ds[v].dims == (dim,):
            cols[short] = ds[v].values
    first = [c for c in cols if not c.startswith(("gosi_", "selective_"))]
    df = pd.DataFrame({c: cols[c] for c in first + [c for c in cols if c not in first]},
                      index=pd.Index(ds[dim].values.astype(np.int64), name="epoch"))
    return df


def _main_network(cfg, ctx, data, data_key, grats):
    """B1-B2: the main network (trained with gOSI per epoch) from its piece: weights and history."""
    seed = ctx.seed(STREAMS["main"])

    def train():
        model = _new_network(data, cfg, seed)
        history, info = train_network(model, data, epochs=cfg.epochs, lr=cfg.lr, batch_size=cfg.batch_size,
                                      augmentation=cfg.augmentation, shift=cfg.shift, checkpoint=cfg.checkpoint,
                                      random_state=seed, callbacks=[_gosi_callback(grats, cfg)],
                                      progress=ctx.progress_enabled, desc="main network")
        return model.state_dict(), _history_dataset(history, cfg.layers, info)

    before = ctx.cache.computed["main_network"]
    with ctx.timer("train_main"):
        state, hist = ctx.state_piece("main_network", train, reads=_MAIN_READS, estimators=_estimators(),
                                      data=data_key[0], seed=seed)
    if ctx.cache.computed["main_network"] == before:
        ctx.timings["train_main_cached_seconds"] = float(hist.attrs.get("train_seconds", float("nan")))
    model = _new_network(data, cfg, seed)
    model.load_state_dict(state)
    model.eval()
    model.netphys.weights = f"trained(imagenette-{cfg.in_size}px, epoch {hist.attrs['best_epoch']})"
    ctx.model_identity(model, "main_network")
    return model, hist


def _dynamics(cfg, ctx, data, data_key, grats, main_hist: xr.Dataset):
    """B3: the history whose epochs enter the Spearman correlation (the main network's own, or a
    network at ``dynamics_lr`` from its own piece) and the correlation per layer."""
    same = cfg.dynamics_lr is None or (cfg.dynamics_lr == cfg.lr and (cfg.dynamics_epochs or cfg.epochs)
                                       == cfg.epochs)
    if same:
        hist_ds, note = main_hist, "the main network's own training history"
    else:
        seed = ctx.seed(STREAMS["dynamics"])
        epochs = cfg.dynamics_epochs or cfg.epochs

        def train():
            h, info = train_network(_new_network(data, cfg, seed), data, epochs=epochs, lr=cfg.dynamics_lr,
                                    batch_size=cfg.batch_size, augmentation=cfg.augmentation, shift=cfg.shift,
                                    checkpoint="last", random_state=seed, callbacks=[_gosi_callback(grats, cfg)],
                                    progress=ctx.progress_enabled, desc="dynamics network")
            return _history_dataset(h, cfg.layers, info)

        with ctx.timer("dynamics"):
            hist_ds = ctx.piece("dynamics_network", train, reads=_DYNAMICS_READS, estimators=_estimators(),
                                data=data_key[0], seed=seed, lr=float(cfg.dynamics_lr), epochs=int(epochs))
        note = f"a separate network trained at lr {cfg.dynamics_lr:g}"
    hist = _history_frame(hist_ds)
    window = hist.loc[1:cfg.spearman_epochs]
    rho = pd.DataFrame(_spearman_table(window, "val_loss", cfg.layers)).set_index("layer")
    best = hist.loc[1:, "val_loss"].idxmin()
    for l in cfg.layers:
        rho.loc[l, "gosi_epoch0"] = float(hist.loc[0, f"gosi_{l}"])
        rho.loc[l, "gosi_last"] = float(hist[f"gosi_{l}"].iloc[-1])
        rho.loc[l, "gosi_best_val"] = float(hist.loc[best, f"gosi_{l}"])
    return (None if same else hist_ds), rho, note, int(len(window))


# =============================================================================== sweep
def _sweep_specs(cfg: OrientationConfig, ctx) -> list[dict]:
    """One spec per sweep network, each with seeds from its own named stream."""
    combos = [(a, 0.0, k) for a in cfg.sweep_augmentations for k in range(cfg.sweep_seeds)]
    combos += [("none", float(p), 0) for p in cfg.corruption_rates]
    specs = []
    for aug, p, k in dict.fromkeys(combos):
        init_seed, train_seed = spawn_seeds(ctx.seed(STREAMS["sweep"], aug, f"{p:g}", k), 2)
        specs.append({"name": f"{aug.replace('+', '-')}_p{p:g}_s{k}", "augmentation": aug, "corruption": p,
                      "seed": k, "init_seed": init_seed, "train_seed": train_seed,
                      "epochs": int(cfg.sweep_epochs or cfg.epochs)})
    return specs


def _sweep_job(item: dict) -> xr.Dataset:
    """One sweep network: train, then test loss and gOSI (a picklable top-level job).

    ``item``: ``config``, ``spec`` (from :func:`_sweep_specs`) and ``data``, the splits or the path of
    their stored piece (so that worker processes read them instead of receiving a copy each).
    """
    from .cache import read_piece_file

    cfg, spec = item["config"], item["spec"]
    data = item["data"]
    if isinstance(data, (str, os.PathLike)):
        data = _splits_from_dataset(read_piece_file(data))
    model = _new_network(data, cfg, spec["init_seed"])
    history, info = train_network(model, data, epochs=spec["epochs"], lr=cfg.lr, batch_size=cfg.batch_size,
                                  augmentation=spec["augmentation"], shift=cfg.shift,
                                  label_corruption=spec["corruption"], checkpoint=cfg.sweep_checkpoint,
                                  random_state=spec["train_seed"], record_initial=False)
    test = evaluate(model, split_stimuli(data, "test"), batch_size=cfg.eval_batch_size)
    n_tr = min(2000, len(data["y_train"]))
    y_tr = training_labels(data, spec["corruption"], spec["train_seed"])  # the labels it was trained on
    train = evaluate(model, data["x_train"][:n_tr], y_tr[:n_tr], preprocess=data["preprocess"],
                     batch_size=cfg.eval_batch_size)
    _, g = _measure(model, _gratings(cfg, data["preprocess"]), cfg)
    best = next(h for h in history if h["epoch"] == info["best_epoch"])
    means = _layer_means(g, cfg.layers)
    layers = list(cfg.layers)
    scalars = dict(test_loss=test["loss"], test_accuracy=test["top1"], train_loss=train["loss"],
                   train_accuracy=train["top1"], val_loss=best["val_loss"], epoch=info["best_epoch"],
                   seconds=info["train_seconds"])
    dvars = {k: ((), np.float64(v)) for k, v in scalars.items()}
    dvars["gosi"] = ("layer", np.array([means[f"gosi_{l}"] for l in layers]))
    dvars["selective"] = ("layer", np.array([means[f"selective_{l}"] for l in layers]))
    return xr.Dataset(dvars, coords={"layer": layers},
                      attrs={k: spec[k] for k in ("name", "augmentation", "corruption", "seed")})


_BACKEND_OF = {"SerialExecutor": "serial", "ProcessExecutor": "process", "RayExecutor": "ray"}


def _sweep(cfg, ctx, data, data_key) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """B3: many networks (augmentation x seeds, label corruption): mean gOSI per layer vs test loss.

    Every network is a piece. The missing ones go through the runner's executor when the run has one
    (``backend=`` of :func:`~netphys.experiments.runner.run_experiment`, ``--backend``), otherwise
    through an executor of the config's own ``backend``/``max_workers``/``threads_per_worker``.
    """
    specs = _sweep_specs(cfg, ctx)
    keys = [ctx.key("sweep_network", reads=_SWEEP_READS, estimators=_estimators(), data=data_key[0],
                    **{k: sp[k] for k in ("augmentation", "corruption", "epochs", "init_seed", "train_seed")})
            for sp in specs]
    got = {sp["name"]: ctx.lookup("sweep_network", k) for sp, k in zip(specs, keys)}
    todo = [(sp, k) for sp, k in zip(specs, keys) if got[sp["name"]] is None]
    backend = "cache"
    if todo:
        path = ctx.cache.path(data_key[0])
        ref = str(path) if path is not None and path.is_file() else data
        items = [{"config": cfg, "spec": sp, "data": ref} for sp, _ in todo]
        with ctx.timer("sweep"):
            if ctx.executor is not None:
                backend = _BACKEND_OF.get(type(ctx.executor).__name__, type(ctx.executor).__name__) \
                    if len(items) > 1 else "serial"  # ctx.map runs a lone job here
                results = ctx.map(_sweep_job, items)
            elif cfg.backend != "serial" and len(todo) > 1:
                from .parallel import get_executor

                workers = cfg.max_workers or min(len(todo), os.cpu_count() or 1)
                log.info("training %d sweep networks with backend=%s, %d workers", len(todo), cfg.backend, workers)
                backend = cfg.backend
                with get_executor(cfg.backend, workers, threads_per_worker=cfg.threads_per_worker) as ex:
                    results = ex.map(_sweep_job, items, progress=ctx.progress_enabled, desc="sweep")
            else:
                backend = "serial"
                results = [_sweep_job({**it, "data": data}) for it in ctx.progress(items, desc="sweep")]
        for (sp, k), r in zip(todo, results):
            got[sp["name"]] = ctx.store("sweep_network", k, r)
    if len(todo) < len(specs):
        ctx.timings["sweep_cached_network_seconds"] = float(sum(float(got[sp["name"]]["seconds"]) for sp in specs
                                                                if all(sp is not t for t, _ in todo)))
    rows = []
    for sp in specs:
        ds = got[sp["name"]]
        row = {"name": sp["name"], "augmentation": sp["augmentation"], "corruption": float(sp["corruption"]),
               "seed": int(sp["seed"])}
        for k in ("test_loss", "test_accuracy", "train_loss", "train_accuracy", "val_loss", "epoch", "seconds"):
            row[k] = float(ds[k].values)
        row["epoch"] = int(row["epoch"])
        for l in cfg.layers:
            row[f"gosi_{l}"] = float(ds["gosi"].sel(layer=l).values)
        for l in cfg.layers:
            row[f"selective_{l}"] = float(ds["selective"].sel(layer=l).values)
        rows.append(row)
    sweep = pd.DataFrame(rows).set_index("name")
    rho = pd.DataFrame(_spearman_table(sweep, "test_loss", cfg.layers, "rho_all")).set_index("layer")
    rho = rho.rename(columns={"p": "p_all"})
    clean, cor = sweep[sweep["corruption"] == 0], sweep[sweep["augmentation"] == "none"]
    for l in cfg.layers:
        rho.loc[l, "rho_augmentation"], rho.loc[l, "p_augmentation"] = spearman(clean["test_loss"], clean[f"gosi_{l}"])
        rho.loc[l, "rho_corruption"], rho.loc[l, "p_corruption"] = spearman(cor["corruption"], cor[f"gosi_{l}"])
    return sweep, rho, backend


def _spearman_table(df: pd.DataFrame, x: str, layers, name: str = "rho") -> list[dict]:
    return [dict(zip(("layer", name, "p"), (l, *spearman(df[x], df[f"gosi_{l}"])))) for l in layers]


# =============================================================================== the labelled result
def _str_or_values(a) -> np.ndarray:
    a = np.asarray(a)
    return a.astype(str) if a.dtype == object or pd.api.types.is_string_dtype(a.dtype) else a


def _frame_vars(df: pd.DataFrame, dim: str, prefix: str) -> dict:
    """Every column of ``df`` as a variable ``<prefix><column>`` on ``dim``."""
    return {f"{prefix}{c}": (dim, _str_or_values(df[c].to_numpy())) for c in df.columns}


def _prefixed_frame(result: xr.Dataset, dim: str, prefix: str, index: str | None = None) -> pd.DataFrame:
    cols = {str(v)[len(prefix):]: result[v].values for v in result.data_vars
            if str(v).startswith(prefix) and result[v].dims == (dim,)}
    df = pd.DataFrame(cols)
    if index is not None:
        df.index = pd.Index([str(x) for x in result[dim].values], name=index)
    return df


def _unit_vars(g: xr.Dataset, shuf: xr.Dataset, tun: xr.DataArray | None) -> tuple[dict, dict]:
    """gOSI per channel, its shuffle control and the tuning array on the ``unit`` dim, the unit
    coordinates renamed ``unit_<name>`` (``layer`` is the result's own dimension)."""
    coords = {"unit": g["unit"].values}
    for c in g.coords:
        if c != "unit" and g[c].dims == ("unit",):
            coords[f"unit_{c}"] = ("unit", _str_or_values(g[c].values))
    dvars = {str(v): ("unit", g[v].values) for v in g.data_vars}
    coords["shuffle"] = shuf["shuffle"].values
    dvars.update({f"{v}_shuffled": (("shuffle", "unit"), shuf[v].transpose("shuffle", "unit").values)
                  for v in shuf.data_vars})
    if tun is not None:
        t = tun.transpose("unit", "orientation", "phase", "sf")
        coords.update(orientation=t["orientation"].values, phase=t["phase"].values, sf=t["sf"].values)
        dvars["tuning"] = (("unit", "orientation", "phase", "sf"), t.values,
                           {k: v for k, v in t.attrs.items() if k in ("units", "sf_units")})
    return dvars, coords


def _unit_frames(result: xr.Dataset) -> dict:
    """``gosi``, ``shuffled`` (Datasets with the library's unit coordinates) and ``tuning``."""
    ucoords = {str(c)[5:]: ("unit", result[c].values) for c in result.coords
               if str(c).startswith("unit_") and result[c].dims == ("unit",)}
    ucoords["unit"] = result["unit"].values
    base = [str(v) for v in result.data_vars if result[v].dims == ("unit",) and not str(v).startswith("v1_")]
    out = {"gosi": xr.Dataset({v: ("unit", result[v].values) for v in base}, coords=ucoords)}
    shuf = {str(v)[:-9]: (("shuffle", "unit"), result[v].values) for v in result.data_vars
            if str(v).endswith("_shuffled") and result[v].dims == ("shuffle", "unit")}
    out["shuffled"] = xr.Dataset(shuf, coords={**ucoords, "shuffle": result["shuffle"].values})
    if "tuning" in result:
        t = result["tuning"]
        out["tuning"] = xr.DataArray(t.values, dims=t.dims, name="tuning", attrs=dict(t.attrs),
                                     coords={**ucoords, "orientation": result["orientation"].values,
                                             "phase": result["phase"].values, "sf": result["sf"].values})
    return out


def _v1_vars(v1: dict) -> tuple[dict, dict, dict]:
    """V1 populations on one ``v1_unit`` dim (``v1_population`` says which), their selection attrs."""
    if not v1:
        return {}, {}, {}
    pops, parts = [], {}
    for name, d in v1.items():
        pops += [name] * d.sizes["unit"]
        for v in d.data_vars:
            parts.setdefault(str(v), []).append(np.asarray(d[v].values))
    coords = {"v1_population": ("v1_unit", np.asarray(pops, dtype=str)),
              "v1_session": ("v1_unit", np.concatenate([np.asarray(d["session"].values, dtype=str)
                                                        for d in v1.values()]))}
    dvars = {f"v1_{k}": ("v1_unit", np.concatenate(v)) for k, v in parts.items()
             if len(v) == len(v1)}
    attrs = {name: {k: (list(a) if isinstance(a, (tuple, list, np.ndarray)) else a) for k, a in d.attrs.items()}
             for name, d in v1.items()}
    return dvars, coords, attrs


def _v1_frames(result: xr.Dataset) -> dict:
    if "v1_population" not in result.coords:
        return {}
    attrs = json.loads(result.attrs.get("v1_selection", "{}"))
    pop = result["v1_population"].values
    out = {}
    for name in dict.fromkeys(pop.tolist()):
        sel = np.flatnonzero(pop == name)
        dvars = {str(v)[3:]: ("unit", result[v].values[sel]) for v in result.data_vars
                 if result[v].dims == ("v1_unit",)}
        out[name] = xr.Dataset(dvars, coords={"unit": np.arange(sel.size),
                                              "session": ("unit", result["v1_session"].values[sel])},
                               attrs=attrs.get(name, {}))
    return out


def _layer_result(layers, *, g=None, shuf=None, tun=None, layer_summary=None, ablation=None,
                  invariance=None, invariance_tests=None, v1=None) -> xr.Dataset:
    """The parts every orientation result shares (selectivity, ablation, invariance, V1)."""
    layers = list(layers)
    dvars, coords, attrs = {}, {"layer": layers}, {}
    if g is not None:
        dv, co = _unit_vars(g, shuf, tun)
        dvars.update(dv)
        coords.update(co)
    if layer_summary is not None:
        dvars.update(_frame_vars(layer_summary.reindex(layers), "layer", "layer_"))
    if ablation is not None:
        dvars.update(_frame_vars(ablation.reindex(layers), "layer", "ablation_"))
    if invariance is not None:
        dvars.update(_frame_vars(invariance.reset_index(drop=True), "invariance_row", "invariance_"))
        dvars.update(_frame_vars(invariance_tests.reset_index(drop=True), "invariance_test", "invariance_test_"))
    if v1:
        dv, co, at = _v1_vars(v1)
        dvars.update(dv)
        coords.update(co)
        attrs["v1_selection"] = json.dumps(at, default=str)
    return xr.Dataset(dvars, coords=coords, attrs=attrs)


def frames(result: xr.Dataset) -> dict:
    """The parts of an orientation result as the tables and Datasets the report draws.

    Returns
    -------
    dict
        Present when the run computed them: ``history`` (DataFrame per epoch: losses, validation
        accuracy ``val_top1``, ``gosi_<layer>``, ``selective_<layer>``); ``gosi`` and ``shuffled``
        (Datasets per channel with ``layer``/``channel``/``row``/``col`` coordinates), ``tuning``;
        ``layer_summary``; ``test`` (loss, accuracy, n) and ``train_info``; ``n_images``;
        ``dynamics`` (``history``, ``spearman``, ``note``, ``n_epochs``); ``sweep`` (DataFrame per
        network) and ``sweep_rho``; ``ablation``; ``invariance`` and ``invariance_tests`` (tidy);
        ``v1`` (population name -> Dataset).
    """
    a = result.attrs
    fr: dict = {}
    if "history_val_loss" in result:
        fr["history"] = _history_frame(result, "history_", "epoch")
    if "gosi" in result:
        fr.update(_unit_frames(result))
    if "layer_mean_gosi" in result:
        fr["layer_summary"] = _prefixed_frame(result, "layer", "layer_", "layer")
    if "test_loss" in a:
        fr["test"] = {"loss": float(a["test_loss"]), "accuracy": float(a["test_accuracy"]), "n": int(a["test_n"])}
        fr["train_info"] = {"best_epoch": int(a["best_epoch"]), "train_labels_changed": float(a["train_labels_changed"]),
                            "train_seconds": float(a["train_seconds"])}
    if "n_train" in a:
        fr["n_images"] = {k: int(a[f"n_{k}"]) for k in ("train", "val", "test")}
    if "dynamics_spearman_rho" in result:
        hist = (_history_frame(result, "dynamics_history_", "dynamics_epoch")
                if "dynamics_epoch" in result.dims else fr["history"])
        sp = _prefixed_frame(result, "layer", "dynamics_spearman_", "layer")
        fr["dynamics"] = {"history": hist, "spearman": sp, "note": a["dynamics_note"],
                          "n_epochs": int(a["dynamics_n_epochs"])}
    if "network" in result.dims:
        sw = _prefixed_frame(result, "network", "sweep_", "name")
        sw["seed"] = sw["seed"].astype(np.int64)
        sw["epoch"] = sw["epoch"].astype(np.int64)
        layers = [str(l) for l in result["layer"].values]
        for name in ("gosi", "selective"):
            for i, l in enumerate(layers):
                sw[f"{name}_{l}"] = result[f"sweep_{name}"].values[:, i]
        fr["sweep"] = sw
        fr["sweep_rho"] = _prefixed_frame(result, "layer", "sweep_spearman_", "layer")
        fr["sweep_backend"] = a.get("sweep_backend", "")
    if "ablation_d_top" in result:
        ab = _prefixed_frame(result, "layer", "ablation_", "layer")
        ab["marked"] = ab["marked"].astype(bool)
        fr["ablation"] = ab
    if "invariance_row" in result.dims:
        fr["invariance"] = _prefixed_frame(result, "invariance_row", "invariance_")
        fr["invariance_tests"] = _prefixed_frame(result, "invariance_test", "invariance_test_")
    fr["v1"] = _v1_frames(result)
    return fr


# =============================================================================== the experiment
def orientation_result(cfg: OrientationConfig, ctx) -> xr.Dataset:
    """Run the sections of ``cfg.parts`` with the runner's context; one labelled Dataset.

    Dimensions: ``layer`` (the analysed layers); ``epoch`` (history of the main network: ``history_*``,
    ``history_gosi``/``history_selective`` per layer); ``unit`` (one per channel: ``gosi`` and the other
    :func:`~netphys.stats.selectivity.channel_gosi` variables, ``unit_layer``/``unit_channel``/... coords),
    ``shuffle`` (``*_shuffled``), ``orientation``/``phase``/``sf`` (``tuning``); ``layer_*`` (per-layer
    summary); ``dynamics_spearman_*`` (and ``dynamics_history_*`` on ``dynamics_epoch`` for a separate
    dynamics network); ``network`` (the sweep: ``sweep_*``) and ``sweep_spearman_*``; ``ablation_*``;
    ``invariance_row``/``invariance_test`` (tidy tables); ``v1_unit`` (``v1_*``, ``v1_population``).
    Scalars (test loss, best epoch, image counts, notes) are attributes. :func:`frames` gives the tables.
    """
    needs_net = {"selectivity", "dynamics", "ablation", "invariance"} & set(cfg.parts)
    data = data_key = model = None
    attrs: dict = {"parts": list(cfg.parts), "in_size": cfg.in_size, "epochs": cfg.epochs,
                   "response": cfg.response, "site": cfg.site}
    if needs_net or "sweep" in cfg.parts:
        with ctx.timer("data"):
            data, data_key = _data(cfg, ctx)
        attrs.update({f"n_{k}": int(len(data[f"y_{k}"])) for k in ("train", "val", "test")})
    pre = data["preprocess"] if data is not None else Preprocess(resize=cfg.in_size, crop=cfg.in_size)
    grats = _gratings(cfg, pre)
    parts: dict = {}
    extra: list = []
    if needs_net:
        model, hist = _main_network(cfg, ctx, data, data_key, grats)
        attrs.update({k: hist.attrs[k] for k in ("best_epoch", "train_labels_changed", "train_seconds")})
        hist_vars = hist.rename({v: f"history_{v}" for v in hist.data_vars})
        hist_vars.attrs = {}
        extra.append(hist_vars)
        resp, g = _measure(model, grats, cfg)
        tun = _with_grating_units(tuning_array(resp), grats)
        shuf = shuffled_gosi(tun, random_state=ctx.seed(STREAMS["shuffle"]), n_shuffles=cfg.n_shuffles)
        parts.update(g=g, shuf=shuf, tun=tun, layer_summary=gosi_by_layer_with_control(g, shuf, cfg.layers))
        ev = evaluate(model, split_stimuli(data, "test"), batch_size=cfg.eval_batch_size)
        attrs.update(test_loss=float(ev["loss"]), test_accuracy=float(ev["top1"]), test_n=int(ev["n"]))
    if "dynamics" in cfg.parts:
        sep, rho, note, n_ep = _dynamics(cfg, ctx, data, data_key, grats, hist)
        dv = _frame_vars(rho.reindex(list(cfg.layers)), "layer", "dynamics_spearman_")
        extra.append(xr.Dataset(dv, coords={"layer": list(cfg.layers)}))
        if sep is not None:
            extra.append(sep.rename({"epoch": "dynamics_epoch"}).rename(
                {v: f"dynamics_history_{v}" for v in sep.data_vars}))
        attrs.update(dynamics_note=note, dynamics_n_epochs=n_ep)
    if "sweep" in cfg.parts:
        sweep, srho, backend = _sweep(cfg, ctx, data, data_key)
        layers = list(cfg.layers)
        scal = sweep.drop(columns=[f"{n}_{l}" for n in ("gosi", "selective") for l in layers])
        dv = _frame_vars(scal, "network", "sweep_")
        for n in ("gosi", "selective"):
            dv[f"sweep_{n}"] = (("network", "layer"), sweep[[f"{n}_{l}" for l in layers]].to_numpy(np.float64))
        dv.update(_frame_vars(srho.reindex(layers), "layer", "sweep_spearman_"))
        extra.append(xr.Dataset(dv, coords={"network": list(sweep.index), "layer": layers}))
        attrs["sweep_backend"] = backend
    if "ablation" in cfg.parts:  # B4
        with ctx.timer("ablation"), ctx.collect_warnings("ablation"):
            parts["ablation"] = ablation_effects(
                model, split_stimuli(data, "test"), parts["g"], cfg.layers, fraction=cfg.ablation_fraction,
                n_random=cfg.ablation_random, site=cfg.site, random_state=ctx.seed(STREAMS["ablation"]),
                batch_size=cfg.eval_batch_size, progress=ctx.progress_enabled)
    if "invariance" in cfg.parts:  # B5
        with ctx.timer("invariance"), ctx.collect_warnings("invariance"):
            parts["invariance"], parts["invariance_tests"], _ = invariance_effects(
                model, split_stimuli(data, "test"), parts["g"], cfg.layers, cfg.invariance_ablate,
                units=cfg.invariance_units, fraction=cfg.ablation_fraction, control=cfg.invariance_control,
                shift=cfg.invariance_shift, threshold=cfg.invariance_threshold, site=cfg.site,
                random_state=ctx.seed(STREAMS["invariance"]), batch_size=cfg.eval_batch_size)
    if "v1" in cfg.parts:
        with ctx.timer("v1"):
            parts["v1"] = _load_v1(cfg)
        if not parts["v1"]:
            ctx.warn("the V1 data were not found (v1_root or ../shared/data/ecker-v1-gratings); "
                     "the V1 section is left out")
    result = _layer_result(cfg.layers, **parts)
    for ds in extra:
        result = result.merge(ds, compat="override", combine_attrs="drop_conflicts")
    result.attrs = {**result.attrs, **attrs}
    ctx.extra["summary"] = summary(result)
    return result


def summary(result: xr.Dataset) -> dict:
    """The headline numbers of an orientation result (JSON-serialisable; also in ``provenance.json``)."""
    fr = frames(result)
    s: dict = {}
    if "n_images" in fr:
        s["n_images"] = fr["n_images"]
    if "test" in fr:
        s["test"] = fr["test"]
        s["best_epoch"] = fr["train_info"]["best_epoch"]
    if "layer_summary" in fr:
        s["gosi_by_layer"] = fr["layer_summary"].round(4).to_dict(orient="index")
    if "dynamics" in fr:
        s["dynamics_spearman"] = fr["dynamics"]["spearman"].round(4).to_dict(orient="index")
    if "sweep" in fr:
        s["sweep"] = fr["sweep"].round(4).reset_index().to_dict(orient="records")
        s["sweep_spearman"] = fr["sweep_rho"].round(4).to_dict(orient="index")
    if "ablation" in fr:
        s["ablation"] = fr["ablation"].round(4).to_dict(orient="index")
    if "invariance_tests" in fr:
        s["invariance"] = fr["invariance_tests"].round(4).to_dict(orient="records")
    if fr.get("v1"):
        s["v1"] = {k: {"n_units": int(d.sizes["unit"]), "mean_gosi": round(float(d["gosi"].mean()), 4),
                       "median_gosi": round(float(d["gosi"].median()), 4),
                       "frac_selective": round(float(selective_fraction(d)), 4)} for k, d in fr["v1"].items()}
    return s


def orientation_tables(result: xr.Dataset) -> dict:
    """Name -> DataFrame of every table of a result (written as ``<name>.csv`` by the runner)."""
    fr = frames(result)
    out = {}
    if "gosi" in fr:
        out["gosi_units"] = fr["gosi"].to_dataframe().reset_index()
    if "layer_summary" in fr:
        out["gosi_by_layer"] = fr["layer_summary"].reset_index()
    if "history" in fr:
        out["history"] = fr["history"].reset_index()
    if "dynamics" in fr:
        if "dynamics_epoch" in result.dims:
            out["dynamics_history"] = fr["dynamics"]["history"].reset_index()
        out["dynamics_spearman"] = fr["dynamics"]["spearman"].reset_index()
    if "sweep" in fr:
        out["sweep"] = fr["sweep"].reset_index()
        out["sweep_spearman"] = fr["sweep_rho"].reset_index()
    if "ablation" in fr:
        out["ablation"] = fr["ablation"].reset_index()
    if "invariance" in fr:
        out["invariance"] = fr["invariance"]
        out["invariance_tests"] = fr["invariance_tests"]
    if fr.get("v1"):
        out["v1_gosi"] = pd.concat([pd.DataFrame({"population": k, "session": d["session"].values,
                                                  "gosi": d["gosi"].values, "peak_rate_hz": d["peak_rate_hz"].values})
                                    for k, d in fr["v1"].items()], ignore_index=True)
    return out


# =============================================================================== report
def _findings(fr: dict, cfg) -> list[str]:
    f = []
    if "layer_summary" in fr:
        ls = fr["layer_summary"]
        f.append("Selectivity: mean gOSI per layer " + ", ".join(
            f"{l} {ls.loc[l, 'mean_gosi']:.2f} ({100 * ls.loc[l, 'frac_selective']:.0f}% > 0.33; shuffled "
            f"{ls.loc[l, 'mean_gosi_shuffled']:.2f})" for l in ls.index) + ".")
    if "test" in fr:
        f.append(f"Test loss {fr['test']['loss']:.3f}, accuracy {100 * fr['test']['accuracy']:.1f}% "
                 f"(epoch {fr['train_info']['best_epoch']} of {cfg.epochs}, chosen by {cfg.checkpoint}).")
    if "dynamics" in fr:
        sp = fr["dynamics"]["spearman"]
        f.append(f"Dynamics ({fr['dynamics']['note']}, {fr['dynamics']['n_epochs']} epochs): mean gOSI at "
                 "initialisation -> at the best-validation epoch: " + ", ".join(
                     f"{l} {sp.loc[l, 'gosi_epoch0']:.2f}->{sp.loc[l, 'gosi_best_val']:.2f}" for l in sp.index)
                 + ". Spearman rho(validation loss, mean gOSI): " + ", ".join(
                     f"{l} {sp.loc[l, 'rho']:+.2f} (p={sp.loc[l, 'p']:.2g})" for l in sp.index)
                 + " (negative: higher gOSI with lower validation loss).")
    if "sweep" in fr:
        r, sw = fr["sweep_rho"], fr["sweep"]
        f.append(f"Sweep ({len(sw)} networks, test loss {sw['test_loss'].min():.2f}-{sw['test_loss'].max():.2f}): "
                 "Spearman rho(test loss, mean gOSI) " + ", ".join(
                     f"{l} {r.loc[l, 'rho_all']:+.2f}" for l in r.index) + "; rho(corruption rate, gOSI) " +
                 ", ".join(f"{l} {r.loc[l, 'rho_corruption']:+.2f}" for l in r.index) + ".")
    if "ablation" in fr:
        a = fr["ablation"]
        f.append("Ablation (change of test loss, top vs bottom 50% gOSI): " + ", ".join(
            f"{l} {a.loc[l, 'd_top']:+.3f} vs {a.loc[l, 'd_bottom']:+.3f}{'*' if a.loc[l, 'marked'] else ''}"
            for l in a.index) + " (* top > 2x bottom). Random halves: " + ", ".join(
            f"{l} {a.loc[l, 'd_random']:+.3f}" for l in a.index) + ".")
    if "invariance_tests" in fr:
        t = fr["invariance_tests"]
        last = list(cfg.layers)[-1] if cfg.layers else t["layer"].iloc[-1]
        tt = t[t["layer"] == last]
        base = fr["invariance"]
        base = base[(base["network"] == "intact") & (base["direction"] == "all")]
        f.append("Shift invariance, CV per layer of the intact network: " + ", ".join(
            f"{r.layer} {r.mean:.2f}" for r in base.itertuples()) + f". CV of {last} (mean over directions): " +
            "; ".join(f"{row.network}: {row.cv_ablated:.3f} vs intact {row.cv_intact:.3f} (paired t-test p={row.p:.2g})"
                      for row in tt.itertuples()) + ".")
    if fr.get("v1"):
        parts = []
        for k, d in fr["v1"].items():
            parts.append(f"{k}: median gOSI {float(d['gosi'].median()):.2f}, "
                         f"{100 * float(selective_fraction(d)):.0f}% > 0.33 (n={d.sizes['unit']})")
        f.append("V1 (Ecker et al.): " + "; ".join(parts) + ".")
    return f


#: what the marks of the V1 comparison figure mean (its caption)
_V1_MARKS = ("Top: percentage of units with gOSI > 0.33 (the dashed line below). Bottom: boxes, median and "
             "quartiles; whiskers, the furthest unit within 1.5 interquartile ranges; dots, single units; in "
             "brackets, the number of units.")


def _figure(report, ctx, make, caption: str, stem: str) -> None:
    """Embed ``make("double")`` and save both journal layouts (``stem``, ``stem_single``)."""
    report.paper_figure(make, caption, stem=None if ctx.out is None else ctx.out / stem)


def orientation_sections(result: xr.Dataset, report, ctx) -> None:
    """The report of an orientation run: findings, then one section per part with its figure and tables."""
    from ..plotting.selectivity import plot_gosi_histograms, plot_tuning_curves

    cfg = ctx.config
    fr = frames(result)
    layers = list(cfg.layers)
    report.heading("Findings")
    for line in _findings(fr, cfg):
        report.text(line)
    if "gosi" in fr:
        g, shuf = fr["gosi"], fr["shuffled"]
        report.heading("Selectivity (B1-B2)")
        fig = (lambda layout: plot_gosi_histograms(
            {l: g["gosi"].values[g["layer"].values == l] for l in layers},
            {l: shuf["gosi"].values[:, shuf["layer"].values == l] for l in layers}, layout=layout))
        _figure(report, ctx, fig, "Fig. 2: gOSI of every channel per layer (red bars) and after shuffling each "
                "unit's activation matrix (blue outline, units per shuffle); dashed: the 0.33 selectivity "
                "threshold; top right: the percentage of channels above it (red: gratings, blue: shuffled).",
                "gosi_histograms")
        l2 = layers[1] if len(layers) > 1 else layers[0]
        t = fr["tuning"]
        sel = np.flatnonzero(t["layer"].values == l2)
        gs = g["gosi"].values[sel]
        pick = sel[np.argsort(-gs)[np.linspace(0, sel.size - 1, min(10, sel.size)).astype(int)]]
        _figure(report, ctx, lambda layout: plot_tuning_curves(t, units=list(pick), layout=layout),
                f"Fig. 1: tuning curves of 10 {l2} channels spanning the gOSI range: the activation at each "
                "orientation, max over phase at the channel's preferred spatial frequency (SF, cycles per image, "
                "in each title with the gOSI); the curve is 180-deg periodic (the 0-deg point is repeated at "
                "180 deg).", "tuning_curves")
        report.table(fr["layer_summary"], "gOSI per layer (mean, median, fraction > 0.33, silent channels; "
                     "shuffled control)")
    if "dynamics" in fr:
        d = fr["dynamics"]
        report.heading("Training dynamics (B3)")
        _figure(report, ctx, lambda layout: plot_dynamics(d["history"], d["spearman"], layers,
                                                          epochs=cfg.spearman_epochs, layout=layout),
                f"Fig. 3 ({d['note']}): (a) training (dashed) and validation loss per epoch; (b) mean gOSI per "
                f"layer per epoch; (c) validation loss vs mean gOSI, one point per epoch (first {d['n_epochs']} "
                "epochs; fill: white = first, black = last; outline: the layer's colour in b); (d) Spearman rho of "
                "the two over those epochs (*: p < 0.05).", "dynamics")
        report.table(d["spearman"], "Spearman correlation of validation loss and mean gOSI")
    if "sweep" in fr:
        report.heading("Generalisation sweep (B3)")
        _figure(report, ctx, lambda layout: plot_sweep(fr["sweep"], fr["sweep_rho"], layers, layout=layout),
                "Fig. 4: (a) test loss vs mean gOSI per layer, one point per network (colour: augmentation; x: "
                "label corruption); (b) mean gOSI vs label-corruption rate (networks without augmentation); "
                "(c) Spearman rho per layer over all networks and over those with clean labels. "
                f"Backend: {fr['sweep_backend']}.", "sweep")
        cols = ["augmentation", "corruption", "seed", "epoch", "train_loss", "train_accuracy", "test_loss",
                "test_accuracy"] + [f"gosi_{l}" for l in layers]
        report.table(fr["sweep"][cols], "networks of the sweep (train loss/accuracy on the labels it was "
                     "trained with)")
        report.table(fr["sweep_rho"], "Spearman correlations")
    _causal_sections(fr, report, ctx, cfg.invariance_shift)
    if fr.get("v1") and "gosi" in fr:
        report.heading("V1 neurons with the same estimator")
        _figure(report, ctx, lambda layout: plot_v1_comparison(fr["gosi"], fr["v1"], layers, layout=layout),
                "gOSI of the network's channels (blue) and of macaque V1 single units (orange; Ecker et al. "
                "2010; static "
                "gratings: 8 orientations at the highest contrast; drifting: 16 directions, the two directions "
                f"of an orientation taken as its 'phases'); rates in {list(cfg.v1_window_ms)} ms; baseline "
                f"'{cfg.v1_baseline}'. " + _V1_MARKS, "v1_comparison")
        report.json({k: dict(d.attrs) for k, d in fr["v1"].items()}, "V1 selection")
    report.json(summary(result), "summary")


def _causal_sections(fr: dict, report, ctx, shift: float = 0.1) -> None:
    if "ablation" in fr:
        report.heading("Ablation (B4)")
        _figure(report, ctx, lambda layout: plot_ablation(fr["ablation"], layout=layout),
                "Fig. 5: change of test loss after clamping to zero the top-50% (red) or bottom-50% (blue) gOSI "
                "channels of one layer; grey: random halves (mean \u00b1 SD); *: top > 2x bottom.", "ablation")
        report.table(fr["ablation"], "ablation effects; gosi_/peak_: mean gOSI and mean peak grating response "
                     "of each group; silent_: channels silent to every grating")
    if "invariance" in fr:
        report.heading("Shift invariance (B5)")
        _figure(report, ctx, lambda layout: plot_invariance(fr["invariance"], layout=layout),
                "Fig. 6: coefficient of variation of single "
                f"units under {100 * shift:.0f}% shifts (mean over horizontal, vertical and diagonal shifts; mean "
                "\u00b1 SEM over units), intact (black) vs the top-gOSI half (red) or, as a control, the bottom-gOSI "
                "half (blue) of a layer ablated.", "invariance")
        report.table(fr["invariance_tests"], "intact vs ablated (paired t-test over the same units, per layer)")
        wide = fr["invariance"].pivot_table(index="layer", columns=["network", "direction"], values="mean",
                                            sort=False)
        report.table(wide, "mean CV per layer, network and shift direction")


class _OrientationExperiment(Experiment):
    """The orientation rig (``parts`` of the config pick the sections)."""

    Config = OrientationConfig
    result_name = "orientation"
    intro = ("Orientation selectivity (gOSI, 0 = untuned, 1 = one orientation) of every channel of a CNN "
             "trained on natural images, measured with gratings, next to a shuffle control and macaque V1; then "
             "how it evolves in training, relates to generalisation, and matters causally (ablation, shift "
             "invariance). Ukita (2019) found many selective units in every layer, mean gOSI rising as the "
             "validation loss falls, lower selectivity in networks that generalise worse (label corruption), and "
             "a larger loss increase when the most selective half of a layer is ablated.")

    def run(self, cfg, ctx):
        with torch_threads(cfg.threads):
            return orientation_result(cfg, ctx)

    def subtitle(self, result):
        a = result.attrs
        n = (f" ({a['n_train']} train / {a['n_val']} validation / {a['n_test']} test images)"
             if "n_train" in a else "")
        try:
            reused = json.loads(a.get("cache", "{}")).get("main_network", {}).get("reused", 0) > 0
        except (TypeError, ValueError):
            reused = False
        return (f"7-layer reference CNN on Imagenette at {a['in_size']} px{n}; {a['epochs']} epochs; response "
                f"'{a['response']}', site '{a['site']}'; parts {', '.join(a['parts'])}; run time "
                f"{float(a.get('seconds', 0)) / 60:.1f} min"
                + (" (the trained network re-used from the cache; see timings)" if reused else ""))

    def tables(self, result):
        return orientation_tables(result)

    def sections(self, result, report, ctx):
        orientation_sections(result, report, ctx)


def _fixed_parts(cls_name: str, parts: tuple):
    """A config class of a parts variant: the paper defaults with ``parts`` fixed."""
    def validate(self):
        if tuple(self.parts) != parts:
            raise param_error("parts", cls_name, f"{list(parts)} (this experiment runs these sections)",
                              list(self.parts), "run orientation.all to choose the sections")
        return OrientationConfig.validate(self)

    cls = dataclasses.make_dataclass(cls_name, [("parts", tuple, dataclasses.field(default=parts))],
                                     bases=(OrientationConfig,), frozen=True, namespace={"validate": validate})
    cls.__module__ = __name__
    cls.__doc__ = f"{OrientationConfig.__doc__.splitlines()[0]} Sections fixed to {list(parts)}."
    return cls


@dataclass(frozen=True)
class FastOrientationConfig(OrientationConfig):
    """:meth:`OrientationConfig.fast` as a config class (``netphys run orientation.fast``)."""

    in_size: int = 32
    max_train: int | None = 7500
    max_test: int | None = 2000
    epochs: int = 15
    dynamics_lr: float | None = None
    spearman_epochs: int = 15
    sweep_seeds: int = 1
    corruption_rates: tuple = (0.0, 0.5, 1.0)
    sweep_epochs: int | None = 8
    invariance_units: int = 100
    ablation_random: int = 3
    threads: int | None = 1


SelectivityConfig = _fixed_parts("SelectivityConfig", ("selectivity", "v1"))
DynamicsConfig = _fixed_parts("DynamicsConfig", ("selectivity", "dynamics"))
SweepConfig = _fixed_parts("SweepConfig", ("sweep",))
AblationConfig = _fixed_parts("AblationConfig", ("selectivity", "ablation", "invariance"))


@register("orientation.all")
class OrientationAll(_OrientationExperiment):
    """Every section at the config's scale (paper defaults)."""

    title = "Orientation selectivity (Ukita 2019)"


@register("orientation.fast")
class OrientationFast(_OrientationExperiment):
    """Every section at a CPU size (:class:`FastOrientationConfig`)."""

    Config = FastOrientationConfig
    title = "Orientation selectivity (Ukita 2019), CPU-sized run"


@register("orientation.selectivity")
class OrientationSelectivity(_OrientationExperiment):
    Config = SelectivityConfig
    title = "Orientation selectivity (Ukita 2019): gOSI of the trained network and of V1"


@register("orientation.dynamics")
class OrientationDynamics(_OrientationExperiment):
    Config = DynamicsConfig
    title = "Orientation selectivity (Ukita 2019): training dynamics"


@register("orientation.sweep")
class OrientationSweep(_OrientationExperiment):
    Config = SweepConfig
    title = "Orientation selectivity (Ukita 2019): generalisation sweep"


@register("orientation.ablation")
class OrientationAblation(_OrientationExperiment):
    Config = AblationConfig
    title = "Orientation selectivity (Ukita 2019): ablation and shift invariance"


# =============================================================================== Python entry points
def run_orientation(cfg: OrientationConfig | None = None, out=None, *, progress: bool = True,
                    report: bool = False, backend: str = "serial", max_workers: int | None = None) -> xr.Dataset:
    """Run the orientation-selectivity experiment (``orientation.all`` with ``cfg``) and return its result.

    Parameters
    ----------
    cfg : OrientationConfig
        ``OrientationConfig()`` (paper scale) or ``OrientationConfig.fast()``.
    out : path, optional
        Folder of the piece cache (data split, trained weights, per-network sweep results), the netCDF
        result and its CSV tables; a rerun re-uses what the same settings already computed.
        ``None``: in memory.
    progress, report : bool
        ``report=True`` also writes the figures and ``report.html`` (needs ``out``).
    backend, max_workers
        Executor of the sweep's networks (see :func:`~netphys.experiments.runner.run_experiment`);
        ``"serial"`` leaves the choice to the config's ``backend``.

    Returns
    -------
    xarray.Dataset
        See :func:`orientation_result`; :func:`frames` gives its tables.
    """
    from .runner import run_experiment

    return run_experiment(OrientationAll, cfg or OrientationConfig(), out, progress=progress,
                          report=report and out is not None, backend=backend, max_workers=max_workers).result


def _entry(cls):
    def fn(config=None, out=None, *, progress: bool = True) -> Path:
        from .runner import run_experiment

        return run_experiment(cls, config, out, progress=progress).report
    fn.__name__ = cls.name.replace(".", "_")
    fn.__doc__ = f"``netphys run {cls.name} [--config FILE]`` from Python; returns the report path."
    return fn


run = _entry(OrientationAll)
run_fast = _entry(OrientationFast)
run_selectivity = _entry(OrientationSelectivity)
run_dynamics = _entry(OrientationDynamics)
run_sweep = _entry(OrientationSweep)
run_ablation = _entry(OrientationAblation)


# =============================================================================== shipped default model
@dataclass(frozen=True)
class DefaultModelConfig:
    """gOSI, ablation and shift invariance on the shipped default model (no training; fast).

    Attributes
    ----------
    model, weights : str
        ``load_model`` name and weights (the shipped trained ``netphys_vgg16``).
    layers : tuple of str or None
        ``None``: every conv layer and the hidden FC layers (fc6, fc7).
    grid, response, site : str
        As in :class:`OrientationConfig`.
    n_images : int
        Demo images for the ablation and invariance test losses (of the 1,000 shipped).
    ablation_fraction, ablation_random : float, int
    invariance_units : int
    invariance_ablate : tuple of str
        Layers whose top-gOSI half is ablated for the invariance comparison.
    v1 : bool
        Add the V1 comparison when the data are present.
    random_state : int
    """

    model: str = "netphys_vgg16"
    weights: str = "default"
    layers: tuple | None = None
    grid: str = "small"
    response: str = "centre"
    site: str = "post"
    n_images: int = 500
    ablation_fraction: float = 0.5
    ablation_random: int = 1
    invariance_units: int = 100
    invariance_ablate: tuple = ("conv1_2", "conv2_1")
    v1: bool = True
    random_state: int = 0



def default_model_result(cfg: DefaultModelConfig, ctx) -> xr.Dataset:
    """gOSI (with the shuffle control), ablation, shift invariance and V1 for a trained model."""
    from ..models import load_model
    from ..models.layers import layer_infos
    from ..models.loading import model_info
    from ..stimuli import demo_stimuli

    model = load_model(cfg.model, cfg.weights, random_state=cfg.random_state)
    ctx.model_identity(model, "model")
    info = model_info(model)
    hidden = [li for li in layer_infos(model) if li.kind in ("conv", "fc") and li.activation is not None]
    layers = list(cfg.layers) if cfg.layers else [li.alias for li in hidden]
    ocfg = OrientationConfig(in_size=info.input_size, grid=cfg.grid, response=cfg.response, site=cfg.site,
                             layers=tuple(layers))
    grats = gratings(info.input_size, grid=cfg.grid, preprocess=info.preprocess)
    with ctx.timer("gosi"):
        resp, g = _measure(model, grats, ocfg)
        tun = _with_grating_units(tuning_array(resp), grats)
        shuf = shuffled_gosi(tun, random_state=ctx.seed(0))
    stim = demo_stimuli(info.preprocess)
    if cfg.n_images < len(stim):
        stim = stim.subsample(n=cfg.n_images, random_state=ctx.seed(3))
    ctx.stimuli_identity(stim, "images")
    with ctx.timer("ablation"), ctx.collect_warnings("ablation"):
        abl = ablation_effects(model, stim, g, layers, fraction=cfg.ablation_fraction, n_random=cfg.ablation_random,
                               site=cfg.site, random_state=ctx.seed(1), progress=ctx.progress_enabled)
    with ctx.timer("invariance"), ctx.collect_warnings("invariance"):
        inv, tests, _ = invariance_effects(model, stim, g, layers, [l for l in cfg.invariance_ablate if l in layers],
                                           units=cfg.invariance_units, fraction=cfg.ablation_fraction,
                                           site=cfg.site, random_state=ctx.seed(2))
    v1 = _load_v1(OrientationConfig()) if cfg.v1 else {}
    result = _layer_result(layers, g=g, shuf=shuf, tun=tun, layer_summary=gosi_by_layer_with_control(g, shuf, layers),
                           ablation=abl, invariance=inv, invariance_tests=tests, v1=v1)
    result.attrs.update(model=info.name, weights=str(info.weights), input_size=int(info.input_size),
                        n_images=int(len(stim)))
    return result


@register("orientation.default")
class OrientationDefaultModel(Experiment):
    """gOSI, ablation and shift invariance of the shipped default model (no training)."""

    Config = DefaultModelConfig
    title = "Orientation selectivity of the default model"
    result_name = "orientation"

    def run(self, cfg, ctx):
        return default_model_result(cfg, ctx)

    def subtitle(self, result):
        a = result.attrs
        return (f"{a['model']}, weights {a['weights']}; gratings at {a['input_size']} px; ablation and invariance "
                f"on {a['n_images']} demo images; {float(a.get('seconds', 0)):.0f} s")

    def tables(self, result):
        t = orientation_tables(result)
        return {k: t[k] for k in ("gosi_units", "gosi_by_layer", "ablation", "invariance", "invariance_tests",
                                  "v1_gosi") if k in t}

    def sections(self, result, report, ctx):
        from ..plotting.selectivity import plot_gosi_histograms

        fr = frames(result)
        layers = [str(l) for l in result["layer"].values]
        summ = fr["layer_summary"]
        lines = _findings({k: fr[k] for k in ("ablation", "v1") if k in fr}, _LayersOnly(tuple(layers)))
        lines.insert(0, "Mean gOSI per layer: " + ", ".join(
            f"{l} {summ.loc[l, 'mean_gosi']:.2f} ({100 * summ.loc[l, 'frac_selective']:.0f}% > 0.33)"
            for l in layers))
        report.heading("Findings")
        for line in lines:
            report.text(line)
        g, shuf = fr["gosi"], fr["shuffled"]
        fig = (lambda layout: plot_gosi_histograms(
            {l: g["gosi"].values[g["layer"].values == l] for l in layers},
            {l: shuf["gosi"].values[:, shuf["layer"].values == l] for l in layers},
            ncols=5 if layout == "double" else 3, layout=layout))
        _figure(report, ctx, fig, "gOSI per layer (red bars) and shuffled control (blue outline); dashed: the 0.33 "
                "threshold; top right: the percentage of channels above it (red: gratings, blue: shuffled).",
                "gosi_histograms")
        report.table(summ, "gOSI per layer")
        _causal_sections(fr, report, ctx)
        if fr.get("v1"):
            _figure(report, ctx, lambda layout: plot_v1_comparison(g, fr["v1"], layers, layout=layout),
                    "Network channels (blue) vs V1 single units (orange), same gOSI estimator. " + _V1_MARKS,
                    "v1_comparison")


@dataclass(frozen=True)
class _LayersOnly:
    layers: tuple


def run_default_model(cfg: DefaultModelConfig | None = None, out=None, *, progress: bool = True) -> Path:
    """Orientation selectivity of the shipped default model on the demo stimuli; writes a report.

    Gratings at the model's input size, gOSI per channel with the shuffle control, ablation of the
    top vs bottom 50% gOSI channels of every layer (test loss on ``n_images`` demo images), shift
    invariance intact vs ablated, and the V1 comparison (``netphys run orientation.default``).
    Returns the report path.
    """
    from .runner import run_experiment

    return run_experiment(OrientationDefaultModel, cfg or DefaultModelConfig(), out or "runs/orientation.default",
                          progress=progress).report


def run_default_model_cli(config=None, out=None, *, progress: bool = True) -> Path:
    """``netphys run orientation.default [--config FILE]`` from Python; returns the report path."""
    from .runner import run_experiment

    return run_experiment(OrientationDefaultModel, config, out, progress=progress).report
