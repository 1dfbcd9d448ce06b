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
from ..io import atomic_write_text, save_dataset
from ..models.cifar import reference_cnn
from ..neural.v1 import load_v1_gosi
from ..plotting.selectivity import plot_ablation, plot_dynamics, plot_invariance, plot_sweep, plot_v1_comparison
from ..recording.gratings import grating_responses
from ..stats.selectivity import (channel_gosi, gosi_by_layer, gosi_by_layer_with_control, selective_fraction,
                                 shuffled_gosi, spearman, tuning_array)
from ..stimuli import Preprocess, StimulusSet
from ..stimuli.gratings import gratings
from ..training import ShiftFlip, corrupt_labels, evaluate, fit, load_imagenette, load_splits, save_splits
from ..training.data import split_stimuli
from .config import config_to_dict, load_config, read_config_dict, save_config

log = logging.getLogger(__name__)

__all__ = ["OrientationConfig", "DefaultModelConfig", "PARTS", "AUGMENTATIONS", "run_orientation",
           "train_network", "training_labels", "report_orientation", "summary", "run", "run_fast",
           "run_default_model", "run_default_model_cli"]

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
        How the sweep's networks run (see :func:`netphys.experiments.parallel.get_executor`).
    max_workers : int or None
        Parallel sweep jobs (``None``: the number of CPUs).
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
        Root seed; every network, split and sampling gets a seed spawned from it.
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


def _sweep_job(spec: dict) -> dict:
    """One sweep network: train, then test loss and gOSI (a picklable top-level job)."""
    cfg = OrientationConfig(**spec["config"])
    data = load_splits(spec["data"]) if isinstance(spec["data"], (str, os.PathLike)) else spec["data"]
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
    out = {k: spec[k] for k in ("name", "augmentation", "corruption", "seed")}
    out.update(test_loss=test["loss"], test_accuracy=test["top1"], train_loss=train["loss"],
               train_accuracy=train["top1"], val_loss=best["val_loss"], epoch=info["best_epoch"],
               seconds=info["train_seconds"])
    out.update(_layer_means(g, cfg.layers))
    return out


def _sweep_specs(cfg: OrientationConfig, data_ref, seed) -> list[dict]:
    specs, seen = [], set()
    combos = [(a, 0.0, k) for a in cfg.sweep_augmentations for k in range(cfg.sweep_seeds)]
    combos += [("none", float(p), 0) for p in cfg.corruption_rates]
    seeds = spawn_seeds(seed, len(combos))
    for (aug, p, k), s in zip(combos, seeds):
        if (aug, p, k) in seen:
            continue
        seen.add((aug, p, k))
        init_seed, train_seed = spawn_seeds(s, 2)
        specs.append({"name": f"{aug.replace('+', '-')}_p{p:g}_s{k}", "augmentation": aug, "corruption": p,
                      "seed": k, "init_seed": init_seed, "train_seed": train_seed,
                      "epochs": cfg.sweep_epochs or cfg.epochs, "data": data_ref, "config": config_to_dict(cfg)})
    return specs


def _spearman_table(df: pd.DataFrame, x: str, layers, name: str = "rho") -> list[dict]:
    return [dict(zip(("layer", name, "p"), (l, *spearman(df[x], df[f"gosi_{l}"])))) for l in layers]


# =============================================================================== cache (until the runner owns it)
def _cfg_key(cfg: OrientationConfig, *keys) -> dict:
    d = config_to_dict(cfg)
    return {k: d[k] for k in keys}


_TRAIN_KEYS = ("data", "in_size", "max_train", "val_fraction", "max_test", "epochs", "lr", "batch_size",
               "augmentation", "shift", "checkpoint", "grid", "response", "site", "layers", "random_state")


def _cached_json(path: Path | None, key: dict):
    """The ``payload`` stored at ``path`` under ``key``, or None."""
    if path is not None and path.is_file():
        saved = json.loads(path.read_text())
        if saved.get("key") == key:
            return saved
    return None


def _data(cfg: OrientationConfig, cache: Path | None, seed, progress: bool) -> dict:
    root = _data_root(cfg)
    key = {**_cfg_key(cfg, "in_size", "max_train", "val_fraction", "max_test", "random_state"), "root": str(root)}
    data_file = cache / f"data_{cfg.in_size}px.npz" if cache is not None else None
    meta_file = cache / f"data_{cfg.in_size}px.json" if cache is not None else None
    if data_file is not None and data_file.is_file() and meta_file.is_file() \
            and json.loads(meta_file.read_text()) == key:
        return load_splits(data_file)
    data = load_imagenette(root, cfg.in_size, max_train=cfg.max_train, val_fraction=cfg.val_fraction,
                           max_test=cfg.max_test, random_state=seed, progress=progress)
    if data_file is not None:
        save_splits(data, data_file)
        atomic_write_text(meta_file, json.dumps(key))
    return data


# =============================================================================== sections
def _main_network(cfg, data, grats, cache, seed, progress, res, timings):
    """B1-B2: train the main network (gOSI per epoch), then gOSI of every channel, shuffle control, test loss."""
    model = _new_network(data, cfg, seed)
    key = _cfg_key(cfg, *_TRAIN_KEYS)
    wfile = cache / "main_model.pt" if cache is not None else None
    saved = _cached_json(cache / "main_history.json" if cache is not None else None, key)
    if saved is not None and wfile.is_file():
        model.load_state_dict(torch.load(wfile, map_location="cpu", weights_only=True))
        history, info = saved["history"], saved["info"]
        timings["train_main_cached_seconds"] = info.get("train_seconds", float("nan"))
        log.info("re-using the cached main network (%s)", wfile)
    else:
        history, info = train_network(model, data, epochs=cfg.epochs, lr=cfg.lr, batch_size=cfg.batch_size,
                                      augmentation=cfg.augmentation, shift=cfg.shift, checkpoint=cfg.checkpoint,
                                      random_state=seed, callbacks=[_gosi_callback(grats, cfg)],
                                      progress=progress, desc="main network")
        if wfile is not None:
            wfile.parent.mkdir(parents=True, exist_ok=True)
            torch.save(model.state_dict(), wfile.with_suffix(".tmp"))
            os.replace(wfile.with_suffix(".tmp"), wfile)
            atomic_write_text(cache / "main_history.json", json.dumps({"key": key, "history": history,
                                                                        "info": info}))
    model.netphys.weights = f"trained(imagenette-{cfg.in_size}px, epoch {info['best_epoch']})"
    res["history"] = pd.DataFrame(history).set_index("epoch")
    res["train_info"] = info
    return model


def _selectivity(cfg, model, grats, data, seed, res):
    resp, g = _measure(model, grats, cfg)
    res["tuning"] = tuning_array(resp)
    res["gosi"] = g
    res["shuffled"] = shuffled_gosi(res["tuning"], random_state=seed, n_shuffles=cfg.n_shuffles)
    res["layer_summary"] = gosi_by_layer_with_control(g, res["shuffled"], cfg.layers)
    ev = evaluate(model, split_stimuli(data, "test"), batch_size=cfg.eval_batch_size)
    res["test"] = {"loss": ev["loss"], "accuracy": ev["top1"], "n": ev["n"]}


def _dynamics(cfg, data, grats, cache, seed, progress, res) -> dict:
    """B3: Spearman correlation of validation loss and mean gOSI over the epochs of training."""
    same = cfg.dynamics_lr is None or (cfg.dynamics_lr == cfg.lr and (cfg.dynamics_epochs or cfg.epochs)
                                       == cfg.epochs)
    if same:
        hist, note = res["history"], "the main network's own training history"
    else:
        key = {**_cfg_key(cfg, *_TRAIN_KEYS), "dynamics_lr": cfg.dynamics_lr, "dynamics_epochs": cfg.dynamics_epochs}
        hfile = cache / "dynamics_history.json" if cache is not None else None
        saved = _cached_json(hfile, key)
        if saved is not None:
            h = saved["history"]
        else:
            h, _ = train_network(_new_network(data, cfg, seed), data, epochs=cfg.dynamics_epochs or cfg.epochs,
                                 lr=cfg.dynamics_lr, batch_size=cfg.batch_size, augmentation=cfg.augmentation,
                                 shift=cfg.shift, checkpoint="last", random_state=seed,
                                 callbacks=[_gosi_callback(grats, cfg)], progress=progress, desc="dynamics network")
            if hfile is not None:
                atomic_write_text(hfile, json.dumps({"key": key, "history": h}))
        hist, note = pd.DataFrame(h).set_index("epoch"), f"a separate network trained at lr {cfg.dynamics_lr:g}"
    window = hist.loc[1:cfg.spearman_epochs]
    rho = pd.DataFrame(_spearman_table(window, "val_loss", cfg.layers)).set_index("layer")
    best = hist.loc[1:, "val_loss"].idxmin()
    for l in cfg.layers:
        rho.loc[l, "gosi_epoch0"] = float(hist.loc[0, f"gosi_{l}"])
        rho.loc[l, "gosi_last"] = float(hist[f"gosi_{l}"].iloc[-1])
        rho.loc[l, "gosi_best_val"] = float(hist.loc[best, f"gosi_{l}"])
    return {"history": hist, "spearman": rho, "note": note, "n_epochs": int(len(window))}


def _sweep(cfg, data, cache, seed, progress, res, timings):
    """B3: many networks (augmentation x seeds, label corruption): mean gOSI per layer vs test loss."""
    from .parallel import get_executor

    data_ref = str(cache / f"data_{cfg.in_size}px.npz") if cache is not None else data
    specs = _sweep_specs(cfg, data_ref, seed)
    done, todo = {}, []
    sdir = cache / "sweep" if cache is not None else None
    for sp in specs:
        sp["key"] = {**{k: sp[k] for k in ("init_seed", "train_seed", "epochs")},
                     **_cfg_key(cfg, *_TRAIN_KEYS, "sweep_checkpoint")}
        saved = _cached_json(sdir / f"{sp['name']}.json" if sdir is not None else None, sp["key"])
        if saved is not None:
            done[sp["name"]] = saved["result"]
        else:
            todo.append(sp)
    if todo:
        workers = cfg.max_workers or min(len(todo), os.cpu_count() or 1)
        log.info("training %d sweep networks with backend=%s, %d workers", len(todo), cfg.backend, workers)
        with get_executor(cfg.backend, workers, threads_per_worker=cfg.threads_per_worker) as ex:
            results = ex.map(_sweep_job, [{k: v for k, v in sp.items() if k != "key"} for sp in todo],
                             progress=progress, desc="sweep")
        for sp, r in zip(todo, results):
            done[sp["name"]] = r
            if sdir is not None:
                atomic_write_text(sdir / f"{sp['name']}.json", json.dumps({"key": sp["key"], "result": r}))
    sweep = pd.DataFrame([done[sp["name"]] for sp in specs]).set_index("name")
    if len(todo) < len(specs):
        timings["sweep_cached_network_seconds"] = float(sum(done[sp["name"]]["seconds"] for sp in specs
                                                            if sp not in todo))
    rho = pd.DataFrame(_spearman_table(sweep, "test_loss", cfg.layers, "rho_all")).set_index("layer")
    rho = rho.rename(columns={"p": "p_all"})
    clean, cor = sweep[sweep["corruption"] == 0], sweep[sweep["augmentation"] == "none"]
    for l in cfg.layers:
        rho.loc[l, "rho_augmentation"], rho.loc[l, "p_augmentation"] = spearman(clean["test_loss"], clean[f"gosi_{l}"])
        rho.loc[l, "rho_corruption"], rho.loc[l, "p_corruption"] = spearman(cor["corruption"], cor[f"gosi_{l}"])
    res["sweep"], res["sweep_rho"], res["sweep_backend"] = sweep, rho, cfg.backend


def run_orientation(cfg: OrientationConfig | None = None, out=None, *, progress: bool = True) -> dict:
    """Run the orientation-selectivity experiment.

    Parameters
    ----------
    cfg : OrientationConfig
        ``OrientationConfig()`` (paper scale) or ``OrientationConfig.fast()``.
    out : path, optional
        Folder for the cache (trained weights, per-network sweep results), tables and netCDF
        results; a rerun re-uses what the same settings already computed.
    progress : bool

    Returns
    -------
    dict
        ``config``; ``history`` (DataFrame per epoch: losses, val accuracy ``val_top1``, mean gOSI
        and selective fraction per layer); ``gosi`` (Dataset per channel of the analysed network) and
        ``shuffled``; ``tuning`` (the tuning array, for example curves); ``layer_summary``;
        ``test`` (loss, accuracy); ``dynamics`` (DataFrame and Spearman per layer); ``sweep``
        (DataFrame per network) and ``sweep_rho``; ``ablation`` (DataFrame); ``invariance``
        (tidy DataFrame: network, layer, direction, mean, sem); ``v1`` (dict of Datasets);
        ``timings`` and ``seconds``.
    """
    cfg = (cfg or OrientationConfig()).validate()
    threads = torch.get_num_threads()
    try:
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        return _run_orientation(cfg, out, progress)
    finally:
        torch.set_num_threads(threads)


def _run_orientation(cfg: OrientationConfig, out, progress: bool) -> dict:
    t_start = time.time()
    out = Path(out) if out is not None else None
    cache = out / "cache" if out is not None else None
    if out is not None:
        save_config(cfg, out / "config.yaml")
    s_data, s_main, s_dyn, s_sweep, s_abl, s_inv, s_shuf = spawn_seeds(cfg.random_state, 7)
    timings: dict = {}
    res: dict = {"config": cfg, "timings": timings}

    def timed(name, fn, *args):
        t0 = time.time()
        value = fn(*args)
        timings[name] = time.time() - t0
        return value

    needs_net = {"selectivity", "dynamics", "ablation", "invariance"} & set(cfg.parts)
    data = model = None
    if needs_net or "sweep" in cfg.parts:
        data = timed("data", _data, cfg, cache, s_data, progress)
        res["n_images"] = {k: int(len(data[f"y_{k}"])) for k in ("train", "val", "test")}
    pre = data["preprocess"] if data is not None else Preprocess(resize=cfg.in_size, crop=cfg.in_size)
    grats = _gratings(cfg, pre)
    if needs_net:
        model = timed("train_main", _main_network, cfg, data, grats, cache, s_main, progress, res, timings)
        _selectivity(cfg, model, grats, data, s_shuf, res)
    if "dynamics" in cfg.parts:
        res["dynamics"] = timed("dynamics", _dynamics, cfg, data, grats, cache, s_dyn, progress, res)
    if "sweep" in cfg.parts:
        timed("sweep", _sweep, cfg, data, cache, s_sweep, progress, res, timings)
    if "ablation" in cfg.parts:  # B4
        res["ablation"] = timed("ablation", lambda: ablation_effects(
            model, split_stimuli(data, "test"), res["gosi"], cfg.layers, fraction=cfg.ablation_fraction,
            n_random=cfg.ablation_random, site=cfg.site, random_state=s_abl, batch_size=cfg.eval_batch_size,
            progress=progress))
    if "invariance" in cfg.parts:  # B5
        res["invariance"], res["invariance_tests"], res["invariance_units"] = timed("invariance", lambda: (
            invariance_effects(model, split_stimuli(data, "test"), res["gosi"], cfg.layers, cfg.invariance_ablate,
                               units=cfg.invariance_units, fraction=cfg.ablation_fraction,
                               control=cfg.invariance_control, shift=cfg.invariance_shift,
                               threshold=cfg.invariance_threshold, site=cfg.site, random_state=s_inv,
                               batch_size=cfg.eval_batch_size)))
    if "v1" in cfg.parts:
        res["v1"] = timed("v1", _load_v1, cfg)
    res["seconds"] = time.time() - t_start
    if out is not None:
        _write_results(res, out)
    return res


def _write_results(res: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    if "gosi" in res:
        save_dataset(res["gosi"], out / "gosi.nc")
        save_dataset(res["tuning"], out / "tuning.nc")
        res["layer_summary"].to_csv(out / "gosi_by_layer.csv")
    if "history" in res:
        res["history"].to_csv(out / "history.csv")
    if "dynamics" in res:
        res["dynamics"]["history"].to_csv(out / "dynamics_history.csv")
        res["dynamics"]["spearman"].to_csv(out / "dynamics_spearman.csv")
    if "sweep" in res:
        res["sweep"].to_csv(out / "sweep.csv")
        res["sweep_rho"].to_csv(out / "sweep_spearman.csv")
    if "ablation" in res:
        res["ablation"].to_csv(out / "ablation.csv")
    if "invariance" in res:
        res["invariance"].to_csv(out / "invariance.csv", index=False)
        res["invariance_tests"].to_csv(out / "invariance_tests.csv", index=False)
    if res.get("v1"):
        rows = []
        for k, d in res["v1"].items():
            rows.append(pd.DataFrame({"population": k, "session": d["session"].values,
                                      "gosi": d["gosi"].values, "peak_rate_hz": d["peak_rate_hz"].values}))
        pd.concat(rows).to_csv(out / "v1_gosi.csv", index=False)
    atomic_write_text(out / "summary.json", json.dumps(summary(res), indent=2, default=str))


def summary(res: dict) -> dict:
    """The headline numbers of a run (JSON-serialisable)."""
    s: dict = {"seconds": round(res.get("seconds", 0.0), 1), "timings": {k: round(v, 1) for k, v in
                                                                          res.get("timings", {}).items()}}
    if "n_images" in res:
        s["n_images"] = res["n_images"]
    if "test" in res:
        s["test"] = res["test"]
        s["best_epoch"] = res["train_info"]["best_epoch"]
        s["gosi_by_layer"] = res["layer_summary"].round(4).to_dict(orient="index")
    if "dynamics" in res:
        s["dynamics_spearman"] = res["dynamics"]["spearman"].round(4).to_dict(orient="index")
    if "sweep" in res:
        s["sweep"] = res["sweep"].round(4).reset_index().to_dict(orient="records")
        s["sweep_spearman"] = res["sweep_rho"].round(4).to_dict(orient="index")
    if "ablation" in res:
        s["ablation"] = res["ablation"].round(4).to_dict(orient="index")
    if "invariance_tests" in res:
        s["invariance"] = res["invariance_tests"].round(4).to_dict(orient="records")
    if res.get("v1"):
        s["v1"] = {k: {"n_units": int(d.sizes["unit"]), "mean_gosi": round(float(d["gosi"].mean()), 4),
                       "median_gosi": round(float(d["gosi"].median()), 4),
                       "frac_selective": round(float(selective_fraction(d)), 4)} for k, d in res["v1"].items()}
    return s


# =============================================================================== report
def _findings(res: dict) -> list[str]:
    f = []
    cfg: OrientationConfig = res["config"]
    if "layer_summary" in res:
        ls = res["layer_summary"]
        f.append("Selectivity: mean gOSI per layer " + ", ".join(
            f"{l} {ls.loc[l, 'mean_gosi']:.2f} ({100 * ls.loc[l, 'frac_selective']:.0f}% > 0.33; shuffled "
            f"{ls.loc[l, 'mean_gosi_shuffled']:.2f})" for l in ls.index) + ".")
        f.append(f"Test loss {res['test']['loss']:.3f}, accuracy {100 * res['test']['accuracy']:.1f}% "
                 f"(epoch {res['train_info']['best_epoch']} of {cfg.epochs}, chosen by {cfg.checkpoint}).")
    if "dynamics" in res:
        sp = res["dynamics"]["spearman"]
        f.append(f"Dynamics ({res['dynamics']['note']}, {res['dynamics']['n_epochs']} epochs): mean gOSI at "
                 "initialisation -> at the best-validation epoch: " + ", ".join(
                     f"{l} {sp.loc[l, 'gosi_epoch0']:.2f}->{sp.loc[l, 'gosi_best_val']:.2f}" for l in sp.index)
                 + ". Spearman rho(validation loss, mean gOSI): " + ", ".join(
                     f"{l} {sp.loc[l, 'rho']:+.2f} (p={sp.loc[l, 'p']:.2g})" for l in sp.index)
                 + " (negative: higher gOSI with lower validation loss).")
    if "sweep" in res:
        r = res["sweep_rho"]
        sw = res["sweep"]
        f.append(f"Sweep ({len(sw)} networks, test loss {sw['test_loss'].min():.2f}-{sw['test_loss'].max():.2f}): "
                 "Spearman rho(test loss, mean gOSI) " + ", ".join(
                     f"{l} {r.loc[l, 'rho_all']:+.2f}" for l in r.index) + "; rho(corruption rate, gOSI) " +
                 ", ".join(f"{l} {r.loc[l, 'rho_corruption']:+.2f}" for l in r.index) + ".")
    if "ablation" in res:
        a = res["ablation"]
        f.append("Ablation (change of test loss, top vs bottom 50% gOSI): " + ", ".join(
            f"{l} {a.loc[l, 'd_top']:+.3f} vs {a.loc[l, 'd_bottom']:+.3f}{'*' if a.loc[l, 'marked'] else ''}"
            for l in a.index) + " (* top > 2x bottom). Random halves: " + ", ".join(
            f"{l} {a.loc[l, 'd_random']:+.3f}" for l in a.index) + ".")
    if "invariance_tests" in res:
        t = res["invariance_tests"]
        last = cfg.layers[-1]
        tt = t[t["layer"] == last]
        base = res["invariance"]
        base = base[(base["network"] == "intact") & (base["direction"] == "all")]
        f.append("Shift invariance, CV per layer of the intact network: " + ", ".join(
            f"{r.layer} {r.mean:.2f}" for r in base.itertuples()) + f". CV of {last} (mean over directions): " +
            "; ".join(f"{row.network}: {row.cv_ablated:.3f} vs intact {row.cv_intact:.3f} (paired t-test p={row.p:.2g})"
                      for row in tt.itertuples()) + ".")
    if res.get("v1"):
        parts = []
        for k, d in res["v1"].items():
            parts.append(f"{k}: median gOSI {float(d['gosi'].median()):.2f}, "
                         f"{100 * float(selective_fraction(d)):.0f}% > 0.33 (n={d.sizes['unit']})")
        f.append("V1 (Ecker et al.): " + "; ".join(parts) + ".")
    return f


def report_orientation(res: dict, out, *, title: str = "Orientation selectivity (Ukita 2019)") -> Path:
    """Write figures (PNG/SVG) and a self-contained HTML report for a :func:`run_orientation` result."""
    import matplotlib.pyplot as plt

    from ..plotting.selectivity import plot_gosi_histograms, plot_tuning_curves
    from ..reports import Report

    out = Path(out)
    cfg: OrientationConfig = res["config"]
    n = res.get("n_images", {})
    rep = Report(title, f"7-layer reference CNN on Imagenette at {cfg.in_size} px "
                        f"({n.get('train', '?')} train / {n.get('val', '?')} validation / {n.get('test', '?')} "
                        f"test images); {cfg.epochs} epochs; response '{cfg.response}', site '{cfg.site}'; "
                        f"run time {res.get('seconds', 0) / 60:.1f} min"
                        + (" (training re-used from the cache; see timings)"
                           if any(k.endswith("cached_seconds") or "cached" in k for k in res.get("timings", {}))
                           else ""))
    rep.heading("Findings")
    for line in _findings(res):
        rep.text(line)
    if "gosi" in res:
        rep.heading("Selectivity (B1-B2)")
        fig = plot_gosi_histograms({l: res["gosi"]["gosi"].values[res["gosi"]["layer"].values == l]
                                    for l in cfg.layers},
                                   {l: res["shuffled"]["gosi"].values[:, res["shuffled"]["layer"].values == l]
                                    for l in cfg.layers})
        rep.figure(fig, "Fig. 2: gOSI of every channel per layer (red) and after shuffling each unit's "
                   "activation matrix (blue); dashed: the 0.33 selectivity threshold.",
                   stem=out / "gosi_histograms")
        plt.close(fig)
        l2 = cfg.layers[1] if len(cfg.layers) > 1 else cfg.layers[0]
        t = res["tuning"]
        sel = np.flatnonzero(t["layer"].values == l2)
        g = res["gosi"]["gosi"].values[sel]
        pick = sel[np.argsort(-g)[np.linspace(0, sel.size - 1, min(10, sel.size)).astype(int)]]
        fig = plot_tuning_curves(t, units=list(pick))
        rep.figure(fig, f"Fig. 1: tuning curves of 10 {l2} channels spanning the gOSI range (max over "
                   "phase at the preferred SPF).", stem=out / "tuning_curves")
        plt.close(fig)
        rep.table(res["layer_summary"], "gOSI per layer (mean, median, fraction > 0.33, silent channels; "
                  "shuffled control)")
    if "dynamics" in res:
        rep.heading("Training dynamics (B3)")
        fig = plot_dynamics(res["dynamics"]["history"], res["dynamics"]["spearman"], cfg.layers,
                            epochs=cfg.spearman_epochs)
        rep.figure(fig, f"Fig. 3 ({res['dynamics']['note']}): loss and mean gOSI per epoch; validation loss "
                   f"vs mean gOSI (first {res['dynamics']['n_epochs']} epochs, darker = later); Spearman rho.",
                   stem=out / "dynamics")
        plt.close(fig)
        rep.table(res["dynamics"]["spearman"], "Spearman correlation of validation loss and mean gOSI")
    if "sweep" in res:
        rep.heading("Generalisation sweep (B3)")
        fig = plot_sweep(res["sweep"], res["sweep_rho"], cfg.layers)
        rep.figure(fig, "Fig. 4: (a) test loss vs mean gOSI per layer, one point per network (colour: "
                   "augmentation; x: label corruption); (b) Spearman rho per layer; (c) mean gOSI vs "
                   f"label-corruption rate. Backend: {res.get('sweep_backend')}.", stem=out / "sweep")
        plt.close(fig)
        cols = ["augmentation", "corruption", "seed", "epoch", "train_loss", "train_accuracy", "test_loss",
                "test_accuracy"] + [f"gosi_{l}" for l in cfg.layers]
        rep.table(res["sweep"][cols], "networks of the sweep (train loss/accuracy on the labels it was "
                  "trained with)")
        rep.table(res["sweep_rho"], "Spearman correlations")
    if "ablation" in res:
        rep.heading("Ablation (B4)")
        fig = plot_ablation(res["ablation"])
        rep.figure(fig, "Fig. 5: change of test loss after clamping to zero the top-50% (red) or bottom-50% "
                   "(blue) gOSI channels of one layer; grey: random halves; *: top > 2x bottom.",
                   stem=out / "ablation")
        plt.close(fig)
        rep.table(res["ablation"], "ablation effects; gosi_/peak_: mean gOSI and mean peak grating "
                  "response of each group; silent_: channels silent to every grating")
    if "invariance" in res:
        rep.heading("Shift invariance (B5)")
        fig = plot_invariance(res["invariance"])
        rep.figure(fig, "Fig. 6: coefficient of variation of single units under 10% shifts (mean over "
                   "horizontal, vertical and diagonal shifts; mean +- SEM over units), intact (black) vs the "
                   "top-gOSI half (red) or, as a control, the bottom-gOSI half (blue) of a layer ablated.",
                   stem=out / "invariance")
        plt.close(fig)
        rep.table(res["invariance_tests"], "intact vs ablated (paired t-test over the same units, per layer)")
        wide = res["invariance"].pivot_table(index="layer", columns=["network", "direction"], values="mean",
                                             sort=False)
        rep.table(wide, "mean CV per layer, network and shift direction")
    if res.get("v1") and "gosi" in res:
        rep.heading("V1 neurons with the same estimator")
        fig = plot_v1_comparison(res["gosi"], res["v1"], cfg.layers)
        rep.figure(fig, "gOSI of the network's channels and of macaque V1 single units (Ecker et al. 2010; "
                   "static gratings: 8 orientations at the highest contrast; drifting: 16 directions, the "
                   f"two directions of an orientation taken as its 'phases'); rates in {list(cfg.v1_window_ms)} "
                   f"ms; baseline '{cfg.v1_baseline}'.", stem=out / "v1_comparison")
        plt.close(fig)
        rep.json({k: {kk: vv for kk, vv in d.attrs.items()} for k, d in res["v1"].items()}, "V1 selection")
    rep.heading("Config and provenance")
    rep.json(config_to_dict(cfg), "config")
    rep.json(summary(res), "summary (also summary.json)")
    return rep.write(out / "report.html")


def _cfg(config, fast: bool = False) -> OrientationConfig:
    """The config of a CLI run: a file/dict over the paper defaults, or over :meth:`OrientationConfig.fast`."""
    if isinstance(config, OrientationConfig):
        return config
    if not fast:
        return load_config(OrientationConfig, config)
    data = read_config_dict(config, "OrientationConfig")
    fields = [f.name for f in dataclasses.fields(OrientationConfig)]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise NetphysError(f"unknown key(s) {unknown} in the config of OrientationConfig; valid keys are: "
                           + ", ".join(fields))
    return OrientationConfig.fast(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


def _runner(parts, fast: bool, name: str):
    def fn(config=None, out=None, *, progress: bool = True) -> Path:
        cfg = _cfg(config, fast)
        if parts is not None:
            cfg = replace(cfg, parts=parts)
        out = Path(out or f"runs/{name}")
        res = run_orientation(cfg, out, progress=progress)
        return report_orientation(res, out)
    fn.__name__ = name.replace(".", "_")
    fn.__doc__ = f"CLI entry: ``netphys run {name} [--config FILE]``; returns the report path."
    return fn


#: ``netphys run orientation.all``: every section at the config's scale (paper defaults).
run = _runner(None, False, "orientation.all")
#: ``netphys run orientation.fast``: every section with :meth:`OrientationConfig.fast` (+ file overrides).
run_fast = _runner(None, True, "orientation.fast")
run_selectivity = _runner(("selectivity", "v1"), False, "orientation.selectivity")
run_dynamics = _runner(("selectivity", "dynamics"), False, "orientation.dynamics")
run_sweep = _runner(("sweep",), False, "orientation.sweep")
run_ablation = _runner(("selectivity", "ablation", "invariance"), False, "orientation.ablation")


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


def run_default_model(cfg: DefaultModelConfig | None = None, out=None, *, progress: bool = True) -> Path:
    """Orientation selectivity of the shipped default model on the demo stimuli; writes a report.

    Gratings at the model's input size, gOSI per channel with the shuffle control, ablation of the
    top vs bottom 50% gOSI channels of every layer (test loss on ``n_images`` demo images), shift
    invariance intact vs ablated, and the V1 comparison. Returns the report path.
    """
    import matplotlib.pyplot as plt

    from ..models import load_model
    from ..models.layers import layer_infos
    from ..models.loading import model_info
    from ..plotting.selectivity import plot_gosi_histograms
    from ..reports import Report
    from ..stimuli import demo_stimuli

    cfg = cfg or DefaultModelConfig()
    t0 = time.time()
    out = Path(out or "runs/orientation.default")
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")
    s_shuf, s_abl, s_inv, s_img = spawn_seeds(cfg.random_state, 4)
    model = load_model(cfg.model, cfg.weights, random_state=cfg.random_state)
    info = model_info(model)
    hidden = [li for li in layer_infos(model) if li.kind in ("conv", "fc") and li.activation is not None]
    layers = list(cfg.layers) if cfg.layers else [li.alias for li in hidden]
    ocfg = OrientationConfig(in_size=info.input_size, grid=cfg.grid, response=cfg.response, site=cfg.site,
                             layers=tuple(layers))
    grats = gratings(info.input_size, grid=cfg.grid, preprocess=info.preprocess)
    resp, g = _measure(model, grats, ocfg)
    tun = tuning_array(resp)
    shuf = shuffled_gosi(tun, random_state=s_shuf)
    summ = gosi_by_layer_with_control(g, shuf, layers)
    stim = demo_stimuli(info.preprocess)
    if cfg.n_images < len(stim):
        stim = stim.subsample(n=cfg.n_images, random_state=s_img)
    abl = ablation_effects(model, stim, g, layers, fraction=cfg.ablation_fraction, n_random=cfg.ablation_random,
                           site=cfg.site, random_state=s_abl, progress=progress)
    inv, _, _ = invariance_effects(model, stim, g, layers, [l for l in cfg.invariance_ablate if l in layers],
                                   units=cfg.invariance_units, fraction=cfg.ablation_fraction, site=cfg.site,
                                   random_state=s_inv)
    v1 = _load_v1(OrientationConfig()) if cfg.v1 else {}
    seconds = time.time() - t0
    summ.to_csv(out / "gosi_by_layer.csv")
    abl.to_csv(out / "ablation.csv")
    inv.to_csv(out / "invariance.csv", index=False)
    save_dataset(g, out / "gosi.nc")
    rep = Report(f"Orientation selectivity of the default model ({info.name})",
                 f"weights {info.weights}; gratings at {info.input_size} px; ablation and invariance on "
                 f"{len(stim)} demo images; {seconds:.0f} s")
    lines = _findings({"config": ocfg, "ablation": abl, "v1": v1})
    lines.insert(0, "Mean gOSI per layer: " + ", ".join(
        f"{l} {summ.loc[l, 'mean_gosi']:.2f} ({100 * summ.loc[l, 'frac_selective']:.0f}% > 0.33)" for l in layers))
    rep.heading("Findings")
    for line in lines:
        rep.text(line)
    fig = plot_gosi_histograms({l: g["gosi"].values[g["layer"].values == l] for l in layers},
                               {l: shuf["gosi"].values[:, shuf["layer"].values == l] for l in layers}, ncols=5)
    rep.figure(fig, "gOSI per layer (red) and shuffled control (blue).", stem=out / "gosi_histograms")
    plt.close(fig)
    rep.table(summ, "gOSI per layer")
    fig = plot_ablation(abl)
    rep.figure(fig, "Change of demo-set loss after ablating the top (red) vs bottom (blue) 50% gOSI channels.",
               stem=out / "ablation")
    plt.close(fig)
    rep.table(abl, "ablation effects")
    fig = plot_invariance(inv)
    rep.figure(fig, "CV under 10% shifts, intact vs ablated.", stem=out / "invariance")
    plt.close(fig)
    if v1:
        fig = plot_v1_comparison(g, v1, layers)
        rep.figure(fig, "Network channels vs V1 single units, same gOSI estimator.", stem=out / "v1_comparison")
        plt.close(fig)
    rep.json({**config_to_dict(cfg), "seconds": round(seconds, 1)}, "config")
    return rep.write(out / "report.html")


def run_default_model_cli(config=None, out=None, *, progress: bool = True) -> Path:
    """CLI entry: ``netphys run orientation.default [--config FILE]``."""
    cfg = config if isinstance(config, DefaultModelConfig) else load_config(DefaultModelConfig, config)
    return run_default_model(cfg, out, progress=progress)
