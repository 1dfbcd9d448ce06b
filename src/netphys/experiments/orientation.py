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
import torch.nn.functional as F
import xarray as xr

from .._random import spawn_seeds
from .._validation import NetphysError, check_choice, check_int, param_error
from ..interventions import ablate_units, cv_by_layer, shift_images, shift_invariance, split_by_score
from ..io import atomic_write_text, save_dataset
from ..models.cifar import reference_cnn
from ..models.layers import resolve_layer
from ..recording import layer_shapes, record, sample_units
from ..recording.hooks import hooks, restored
from ..stats.selectivity import gosi, selective_fraction, shuffled_gosi, tuning_array
from ..stimuli import Preprocess, StimulusSet
from ..stimuli.gratings import gratings
from .config import config_to_dict, load_config, save_config

log = logging.getLogger(__name__)

__all__ = ["OrientationConfig", "DefaultModelConfig", "PARTS", "AUGMENTATIONS", "run_orientation",
           "grating_responses", "channel_gosi", "gosi_by_layer", "fit_network", "load_imagenette",
           "corrupt_labels", "training_labels", "augment_batch", "ablation_effects", "invariance_effects",
           "load_v1_gosi", "v1_gosi",
           "plot_dynamics", "plot_sweep", "plot_ablation", "plot_invariance", "plot_v1_comparison",
           "report_orientation", "run", "run_fast", "run_default_model", "run_default_model_cli"]

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


# =============================================================================== data
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


def load_imagenette(root, in_size: int, *, max_train: int | None = None, val_fraction: float = 0.2,
                    max_test: int | None = None, random_state=0, progress: bool = False) -> dict:
    """Decode an ImageFolder pair ``train/``, ``val/`` into in-memory uint8 arrays.

    ``train/`` (optionally sub-sampled to ``max_train``, stratified) is split, stratified, into a
    training and a validation part; ``val/`` (optionally ``max_test`` images) is the test set.

    Returns
    -------
    dict
        ``x_train``, ``y_train``, ``x_val``, ``y_val``, ``x_test``, ``y_test`` (uint8 (n, H, W, 3)
        and int64), ``class_names``, ``preprocess`` (ImageNet mean/std at ``in_size``), ``source``.
    """
    root = Path(root)
    s_train, s_split, s_test = spawn_seeds(random_state, 3)
    pre = Preprocess(resize=in_size, crop=in_size)
    tr = StimulusSet.from_folder(root / "train", preprocess=pre)
    if max_train is not None and max_train < len(tr):
        tr = tr.subsample(n=max_train, random_state=s_train)
    te = StimulusSet.from_folder(root / "val", preprocess=pre)
    if te.class_names != tr.class_names:
        raise NetphysError(f"{root}/val has other classes than {root}/train")
    if max_test is not None and max_test < len(te):
        te = te.subsample(n=max_test, random_state=s_test)
    t0 = time.time()
    x_all, y_all = tr.load_images(), tr.labels.astype(np.int64)
    x_test, y_test = te.load_images(), te.labels.astype(np.int64)
    log.info("decoded %d + %d images at %d px in %.1f s", len(x_all), len(x_test), in_size, time.time() - t0)
    rng = np.random.default_rng(s_split)
    val_idx = []
    for c in np.unique(y_all):
        idx = np.flatnonzero(y_all == c)
        k = int(round(val_fraction * idx.size))
        val_idx.append(rng.choice(idx, size=k, replace=False))
    val_idx = np.sort(np.concatenate(val_idx))
    is_val = np.zeros(len(y_all), dtype=bool)
    is_val[val_idx] = True
    return {"x_train": x_all[~is_val], "y_train": y_all[~is_val], "x_val": x_all[is_val],
            "y_val": y_all[is_val], "x_test": x_test, "y_test": y_test,
            "class_names": list(tr.class_names), "preprocess": pre, "source": str(root)}


def corrupt_labels(labels, rate: float, n_classes: int, random_state=0) -> np.ndarray:
    """Zhang et al. (2017) label corruption: each label is, with probability ``rate``, replaced by a
    class drawn uniformly from all ``n_classes`` (it may stay the same by chance)."""
    if not isinstance(rate, (int, float)) or isinstance(rate, bool) or not 0 <= rate <= 1:
        raise param_error("rate", "corrupt_labels", "a number in [0, 1]", rate)
    rng = np.random.default_rng(random_state)
    y = np.array(labels, dtype=np.int64, copy=True)
    hit = rng.random(y.size) < rate
    y[hit] = rng.integers(0, n_classes, int(hit.sum()))
    return y


def augment_batch(x: torch.Tensor, augmentation: str, shift: float, gen: torch.Generator) -> torch.Tensor:
    """Random augmentation of a uint8 batch (n, C, H, W): integer shifts up to ``shift`` x side in
    each direction (edge pixels repeated, as Keras' ``fill_mode="nearest"``) and/or horizontal flips."""
    check_choice(augmentation, "augmentation", "augment_batch", AUGMENTATIONS)
    n, _, h, _ = x.shape
    if "shift" in augmentation:
        s = int(round(shift * h))
        if s > 0:
            dx = torch.randint(-s, s + 1, (n,), generator=gen)
            dy = torch.randint(-s, s + 1, (n,), generator=gen)
            x = shift_images(x, dx, dy, fill="nearest")
    if "flip" in augmentation:
        flip = torch.rand(n, generator=gen) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    return x


def _stimuli(x: np.ndarray, y: np.ndarray, pre: Preprocess, class_names, name: str) -> StimulusSet:
    return StimulusSet.from_arrays(x, y, class_names=class_names, preprocess=pre, name=name)


def _evaluate(model, x: np.ndarray, y: np.ndarray, pre: Preprocess, batch_size: int = 256) -> dict:
    from ..train import evaluate

    st = StimulusSet.from_arrays(x, y, preprocess=pre, name="eval")
    ev = evaluate(model, st, batch_size=batch_size)
    return {"loss": ev["loss"], "accuracy": ev["top1"]}


# =============================================================================== gratings and gOSI
def _centre_table(model, layers, in_size: int) -> pd.DataFrame:
    shapes = layer_shapes(model, layers, in_size)
    frames = []
    for l in layers:
        shp = shapes[resolve_layer(model, l, "grating_responses").alias]
        if len(shp) == 3:
            c, h, w = shp
            frames.append(pd.DataFrame({"layer": l, "channel": np.arange(c), "row": h // 2, "col": w // 2}))
        else:
            frames.append(pd.DataFrame({"layer": l, "channel": np.arange(shp[0]), "row": -1, "col": -1}))
    return pd.concat(frames, ignore_index=True)


def _channel_means(model, stimuli: StimulusSet, layers, site: str, batch_size: int) -> xr.DataArray:
    """(stimulus, unit) spatial mean of every channel's map (FC: the feature itself)."""
    infos = [resolve_layer(model, l, "grating_responses") for l in layers]
    targets = {li.alias: (li.activation if site == "post" and li.activation else li.module) for li in infos}
    store: dict = {}

    def make(alias):
        def fn(_m, _i, out):
            v = out.detach()
            v = v.mean(dim=(2, 3)) if v.ndim == 4 else v
            store.setdefault(alias, []).append(v.to("cpu", torch.float32).numpy())
        return fn

    device = next(model.parameters()).device
    with restored(model), torch.no_grad(), hooks(model, {t: make(a) for a, t in targets.items()}):
        for _, x in stimuli.batches(batch_size, device=device):
            model(x)
    cols, layer_c, chan, kind, depth = [], [], [], [], []
    for li in infos:
        a = np.concatenate(store[li.alias], axis=0)
        cols.append(a)
        layer_c += [li.alias] * a.shape[1]
        chan += list(range(a.shape[1]))
        kind += [li.kind] * a.shape[1]
        depth += [li.depth] * a.shape[1]
    vals = np.concatenate(cols, axis=1)
    n_u = vals.shape[1]
    coords = {"layer": ("unit", np.array(layer_c)), "channel": ("unit", np.array(chan)),
              "row": ("unit", np.full(n_u, -1)), "col": ("unit", np.full(n_u, -1)),
              "kind": ("unit", np.array(kind)), "depth": ("unit", np.array(depth)),
              "site": ("unit", np.full(n_u, site)), "stimulus": np.arange(len(stimuli)),
              "unit": np.arange(n_u)}
    for c in ("orientation", "phase", "sf", "contrast"):
        if c in stimuli.coords.columns:
            coords[c] = ("stimulus", stimuli.coords[c].to_numpy())
    return xr.DataArray(vals, dims=("stimulus", "unit"), coords=coords, name="activation",
                        attrs={"response": "mean", "site": site})


def grating_responses(model, stimuli: StimulusSet, layers=LAYERS, *, response: str = "centre",
                      site: str = "post", batch_size: int = 256) -> xr.DataArray:
    """Responses of one unit per channel to a grating set.

    Parameters
    ----------
    model : nn.Module
    stimuli : StimulusSet
        From :func:`netphys.stimuli.gratings.gratings` at the model's input size.
    layers : sequence of str
    response : {"centre", "mean"}, default "centre"
        A conv channel's unit: the centre ``(H // 2, W // 2)`` of its map, or the map's spatial
        mean. FC layers: every feature.
    site : {"post", "pre"}, default "post"
    batch_size : int

    Returns
    -------
    xarray.DataArray, dims (stimulus, unit)
        Unit coordinates ``layer``, ``channel``, ``row``, ``col`` (-1 for means and FC units),
        ``site``; stimulus coordinates ``orientation``, ``phase``, ``sf``.
    """
    func = "grating_responses"
    check_choice(response, "response", func, ("centre", "mean"))
    check_choice(site, "site", func, ("post", "pre"))
    layers = list(layers)
    if response == "mean":
        return _channel_means(model, stimuli, layers, site, batch_size)
    table = _centre_table(model, layers, stimuli.size)
    rec = record(model, stimuli, units=table, site=site, batch_size=batch_size)
    rec.attrs["response"] = "centre"
    return rec


def channel_gosi(responses: xr.DataArray) -> xr.Dataset:
    """gOSI (and the other outputs of :func:`netphys.stats.selectivity.gosi`) of every unit of a
    grating recording; unit coordinates (``layer``, ``channel`` ...) are kept."""
    return gosi(tuning_array(responses))


def gosi_by_layer(result: xr.Dataset, layers=None) -> pd.DataFrame:
    """Mean gOSI, fraction selective (> 0.33) and number of silent units per layer."""
    lay = result["layer"].values
    layers = list(dict.fromkeys(lay.tolist())) if layers is None else list(layers)
    rows = []
    for l in layers:
        g = result["gosi"].values[lay == l]
        z = result["zero_response"].values[lay == l]
        rows.append({"layer": l, "mean_gosi": float(g.mean()), "median_gosi": float(np.median(g)),
                     "frac_selective": float(np.mean(g > THRESHOLD)), "n_units": int(g.size),
                     "n_silent": int(z.sum())})
    return pd.DataFrame(rows).set_index("layer")


def _with_shuffled(g: xr.Dataset, shuffled: xr.Dataset, layers) -> pd.DataFrame:
    """:func:`gosi_by_layer` with the shuffle control's mean gOSI and selective fraction (first shuffle)."""
    shuf = gosi_by_layer(shuffled.isel(shuffle=0), layers)[["mean_gosi", "frac_selective"]]
    return gosi_by_layer(g, layers).join(shuf.add_suffix("_shuffled"))


def _measure(model, grats: StimulusSet, cfg: OrientationConfig) -> tuple[xr.DataArray, xr.Dataset]:
    resp = grating_responses(model, grats, cfg.layers, response=cfg.response, site=cfg.site,
                             batch_size=cfg.eval_batch_size)
    return resp, channel_gosi(resp)


# =============================================================================== training
def training_labels(data: dict, label_corruption: float, random_state) -> np.ndarray:
    """The training labels :func:`fit_network` uses for ``random_state`` (corrupted at the given rate)."""
    y = np.asarray(data["y_train"], dtype=np.int64)
    if label_corruption <= 0:
        return y
    return corrupt_labels(y, label_corruption, len(data["class_names"]), spawn_seeds(random_state, 2)[1])


def fit_network(model, data: dict, *, epochs: int, lr: float = 1e-3, batch_size: int = 32,
                augmentation: str = "shift+flip", shift: float = 0.1, label_corruption: float = 0.0,
                checkpoint: str = "val_accuracy", random_state=0, on_epoch=None,
                progress: bool = False, desc: str = "train") -> tuple[list, dict]:
    """Train ``model`` with Adam and cross-entropy on in-memory uint8 images.

    Parameters
    ----------
    model : nn.Module
        Trained in place; left in eval mode holding the ``checkpoint`` weights.
    data : dict
        From :func:`load_imagenette` (``x_train``, ``y_train``, ``x_val``, ``y_val``,
        ``preprocess``, ``class_names``).
    epochs, lr, batch_size : int, float, int
    augmentation : {"none", "shift", "flip", "shift+flip"}
    shift : float
    label_corruption : float
        Rate of :func:`corrupt_labels` applied once to the training labels (validation labels
        stay clean).
    checkpoint : {"val_accuracy", "val_loss", "last"}
    random_state : int or SeedSequence
        Seeds the shuffling, augmentation and corruption.
    on_epoch : callable, optional
        ``on_epoch(model, epoch) -> dict`` called in eval mode before training (epoch 0) and after
        every epoch; its entries are added to the epoch's record (e.g. mean gOSI per layer).
    progress : bool

    Returns
    -------
    history : list of dict
        Per epoch (0 = initial): ``train_loss`` (mean minibatch loss; NaN at 0), ``val_loss``,
        ``val_accuracy``, ``seconds`` and the ``on_epoch`` entries.
    info : dict
        ``best_epoch``, ``train_labels_changed`` (fraction of corrupted labels that changed).
    """
    from tqdm.auto import tqdm

    func = "fit_network"
    epochs = check_int(epochs, "epochs", func, min_value=1)
    batch_size = check_int(batch_size, "batch_size", func, min_value=1)
    check_choice(checkpoint, "checkpoint", func, ("val_accuracy", "val_loss", "last"))
    s_torch = spawn_seeds(random_state, 2)[0]
    gen = torch.Generator().manual_seed(s_torch)
    pre: Preprocess = data["preprocess"]
    x_tr = torch.from_numpy(np.ascontiguousarray(data["x_train"])).permute(0, 3, 1, 2).contiguous()
    y_clean = np.asarray(data["y_train"], dtype=np.int64)
    y_np = training_labels(data, label_corruption, random_state)
    y_tr = torch.from_numpy(y_np)
    device = next(model.parameters()).device
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    history = []
    best, best_state, best_epoch = None, None, 0

    def end_of_epoch(epoch, train_loss, t0):
        ev = _evaluate(model, data["x_val"], data["y_val"], pre)
        rec = {"epoch": epoch, "train_loss": train_loss, "val_loss": ev["loss"],
               "val_accuracy": ev["accuracy"], "seconds": time.time() - t0}
        if on_epoch is not None:
            with restored(model):
                rec.update(on_epoch(model, epoch))
        history.append(rec)
        return rec

    t0 = time.time()
    end_of_epoch(0, float("nan"), t0)
    n = len(y_tr)
    steps = max(1, n // batch_size)
    bar = tqdm(total=epochs * steps, desc=desc, disable=not progress)
    for epoch in range(1, epochs + 1):
        model.train()
        perm = torch.randperm(n, generator=gen)
        tot = 0.0
        for s in range(steps):
            idx = perm[s * batch_size:(s + 1) * batch_size]
            xb = augment_batch(x_tr[idx], augmentation, shift, gen) if augmentation != "none" else x_tr[idx]
            xb = pre.normalise(xb.to(device))
            loss = F.cross_entropy(model(xb), y_tr[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            tot += loss.item()
            bar.update(1)
        model.eval()
        rec = end_of_epoch(epoch, tot / steps, t0)
        bar.set_postfix(val_loss=round(rec["val_loss"], 3), val_acc=round(rec["val_accuracy"], 3))
        score = {"val_accuracy": rec["val_accuracy"], "val_loss": -rec["val_loss"], "last": epoch}[checkpoint]
        if best is None or score > best:
            best, best_epoch = score, epoch
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return history, {"best_epoch": best_epoch,
                     "train_labels_changed": float(np.mean(y_np != y_clean)),
                     "train_seconds": time.time() - t0}


def _layer_means(g: xr.Dataset, layers) -> dict:
    df = gosi_by_layer(g, layers)
    out = {f"gosi_{l}": float(df.loc[l, "mean_gosi"]) for l in layers}
    out.update({f"selective_{l}": float(df.loc[l, "frac_selective"]) for l in layers})
    return out


def _gosi_callback(grats: StimulusSet, cfg: OrientationConfig):
    def cb(model, epoch):
        _, g = _measure(model, grats, cfg)
        return _layer_means(g, cfg.layers)
    return cb


def _make_gratings(cfg: OrientationConfig, pre: Preprocess) -> StimulusSet:
    return gratings(cfg.in_size, grid=cfg.grid, preprocess=pre)


def _data_from(spec_data):
    if isinstance(spec_data, (str, os.PathLike)):
        with np.load(spec_data, allow_pickle=False) as z:
            d = {k: z[k] for k in z.files}
        meta = json.loads(str(d.pop("meta")))
        d["class_names"] = meta["class_names"]
        d["preprocess"] = Preprocess(**{k: tuple(v) if isinstance(v, list) else v
                                        for k, v in meta["preprocess"].items()})
        d["source"] = meta["source"]
        return d
    return spec_data


def _save_data(data: dict, path: Path) -> Path:
    meta = {"class_names": data["class_names"], "preprocess": data["preprocess"].to_dict(),
            "source": data["source"]}
    arrays = {k: v for k, v in data.items() if isinstance(v, np.ndarray)}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez(tmp, meta=np.array(json.dumps(meta)), **arrays)
    os.replace(tmp, path)
    return path


def _sweep_job(spec: dict) -> dict:
    """One sweep network: train, then measure test loss and gOSI (a picklable top-level job)."""
    cfg = OrientationConfig(**spec["config"])
    data = _data_from(spec["data"])
    pre = data["preprocess"]
    model = reference_cnn(len(data["class_names"]), cfg.in_size, random_state=spec["init_seed"],
                          preprocess=pre, device=cfg.device or "cpu")
    history, info = fit_network(model, data, epochs=spec["epochs"], lr=cfg.lr, batch_size=cfg.batch_size,
                                augmentation=spec["augmentation"], shift=cfg.shift,
                                label_corruption=spec["corruption"], checkpoint=cfg.sweep_checkpoint,
                                random_state=spec["train_seed"])
    test = _evaluate(model, data["x_test"], data["y_test"], pre, cfg.eval_batch_size)
    n_tr = min(2000, len(data["y_train"]))
    y_tr = training_labels(data, spec["corruption"], spec["train_seed"])
    train = _evaluate(model, data["x_train"][:n_tr], y_tr[:n_tr], pre, cfg.eval_batch_size)
    _, g = _measure(model, _make_gratings(cfg, pre), cfg)
    out = {k: spec[k] for k in ("name", "augmentation", "corruption", "seed")}
    out.update(test_loss=test["loss"], test_accuracy=test["accuracy"], train_loss=train["loss"],
               train_accuracy=train["accuracy"], val_loss=history[info["best_epoch"]]["val_loss"],
               epoch=info["best_epoch"], seconds=info["train_seconds"])
    out.update(_layer_means(g, cfg.layers))
    return out


# =============================================================================== ablation
def ablation_effects(model, test: StimulusSet, scores: xr.Dataset, layers, *, fraction: float = 0.5,
                     n_random: int = 0, site: str = "post", random_state=0, batch_size: int = 256,
                     progress: bool = False) -> pd.DataFrame:
    """Change of test loss when the top vs bottom ``fraction`` gOSI channels of a layer are ablated.

    Parameters
    ----------
    model : nn.Module
    test : StimulusSet
        Labelled test images.
    scores : xarray.Dataset
        :func:`channel_gosi` output with ``layer``, ``channel``, ``gosi`` and ``peak_response``.
    layers : sequence of str
    fraction : float, default 0.5
    n_random : int, default 0
        Random sets of the same size ablated per layer (control; not in the paper).
    site : {"post", "pre"}
    random_state : int
    batch_size : int

    Returns
    -------
    pandas.DataFrame, indexed by layer
        ``base_loss``; ``d_top``, ``d_bottom`` (ablated minus intact mean cross-entropy),
        ``d_random`` and ``d_random_sd``; ``ratio`` = d_top / d_bottom; ``marked`` (the paper's
        asterisk: d_top > 2 d_bottom with d_top > 0); the accuracy changes; the groups' mean gOSI
        and mean peak grating response (the paper's control for silent units) and number of silent
        channels.
    """
    from tqdm.auto import tqdm

    from ..train import evaluate

    base = evaluate(model, test, batch_size=batch_size)
    rng = np.random.default_rng(random_state)
    lay = scores["layer"].values
    rows = []
    for l in tqdm(list(layers), desc="ablation", disable=not progress):
        sel = lay == l
        ch = scores["channel"].values[sel]
        g = scores["gosi"].values[sel]
        peak = scores["peak_response"].values[sel]
        silent = scores["zero_response"].values[sel]
        order = np.argsort(ch)
        ch, g, peak, silent = ch[order], g[order], peak[order], silent[order]
        top, bottom = split_by_score(g, fraction)
        res = {}
        for name, idx in (("top", top), ("bottom", bottom)):
            with ablate_units(model, l, ch[idx], site=site):
                ev = evaluate(model, test, batch_size=batch_size)
            res[name] = ev
        rand = []
        for _ in range(n_random):
            idx = np.sort(rng.choice(ch.size, size=top.size, replace=False))
            with ablate_units(model, l, ch[idx], site=site):
                rand.append(evaluate(model, test, batch_size=batch_size)["loss"] - base["loss"])
        d_top = res["top"]["loss"] - base["loss"]
        d_bot = res["bottom"]["loss"] - base["loss"]
        rows.append({"layer": l, "n_channels": int(ch.size), "n_ablated": int(top.size),
                     "base_loss": base["loss"], "d_top": d_top, "d_bottom": d_bot,
                     "d_random": float(np.mean(rand)) if rand else np.nan,
                     "d_random_sd": float(np.std(rand, ddof=1)) if len(rand) > 1 else np.nan,
                     "ratio": d_top / d_bot if d_bot != 0 else np.inf,
                     "marked": bool(d_top > 0 and d_top > 2 * d_bot),
                     "d_acc_top": res["top"]["top1"] - base["top1"],
                     "d_acc_bottom": res["bottom"]["top1"] - base["top1"],
                     "gosi_top": float(g[top].mean()), "gosi_bottom": float(g[bottom].mean()),
                     "peak_top": float(peak[top].mean()), "peak_bottom": float(peak[bottom].mean()),
                     "silent_top": int(silent[top].sum()), "silent_bottom": int(silent[bottom].sum())})
    return pd.DataFrame(rows).set_index("layer")


def invariance_effects(model, test: StimulusSet, scores: xr.Dataset, layers, ablate, *, units=250,
                       fraction: float = 0.5, control: bool = True, shift: float = 0.1,
                       threshold: float = 0.9, site: str = "post", random_state=0, batch_size: int = 256):
    """Shift invariance of the intact network and of networks with the top (and bottom) ``fraction``
    gOSI channels of each layer in ``ablate`` clamped to zero.

    Parameters
    ----------
    model : nn.Module
    test : StimulusSet
    scores : xarray.Dataset
        :func:`channel_gosi` output.
    layers : sequence of str
        Layers whose units are measured.
    ablate : sequence of str
        Layers ablated one at a time.
    units : int or DataFrame
        Units per layer (sampled once and shared by every network) or a unit table.
    fraction : float
    control : bool, default True
        Also ablate the bottom ``fraction`` (a control not in the paper: does removing *any* half of
        the layer disrupt invariance as much?).
    shift, threshold, site, random_state, batch_size
        As in :func:`netphys.interventions.shift_invariance`.

    Returns
    -------
    summary : pandas.DataFrame
        :func:`~netphys.interventions.cv_by_layer` rows with ``network`` (``"intact"``, ``"<layer>
        top-gOSI ablated"``, ``"<layer> bottom-gOSI ablated"``), ``ablated_layer`` and ``group``.
    tests : pandas.DataFrame
        Per ablated network and layer: mean CV (over directions) of the units finite in both,
        intact vs ablated, and the paired t-test over those units (t, p).
    per_unit : dict
        Network name -> :func:`~netphys.interventions.shift_invariance` Dataset.
    """
    from scipy.stats import ttest_rel

    layers = list(layers)
    table = units if isinstance(units, pd.DataFrame) else sample_units(
        model, layers, units, input_size=test.size, random_state=random_state, allow_fewer=True)
    kw = dict(units=table, shift=shift, threshold=threshold, site=site, batch_size=batch_size)
    per_unit = {"intact": shift_invariance(model, test, **kw)}
    meta = {"intact": ("none", "none")}
    lay = scores["layer"].values
    for l in ablate:
        sel = lay == l
        top, bottom = split_by_score(scores["gosi"].values[sel], fraction)
        groups = (("top", top), ("bottom", bottom)) if control else (("top", top),)
        for group, idx in groups:
            name = f"{l} {group}-gOSI ablated"
            with ablate_units(model, l, scores["channel"].values[sel][idx], site=site):
                per_unit[name] = shift_invariance(model, test, **kw)
            meta[name] = (l, group)
    summary = pd.concat([cv_by_layer(d).assign(network=k, ablated_layer=meta[k][0], group=meta[k][1])
                         for k, d in per_unit.items()], ignore_index=True)
    tests = []
    base = per_unit["intact"]
    for name, d in per_unit.items():
        if name == "intact":
            continue
        for l in layers:
            a = base["cv"].values[base["layer"].values == l].mean(axis=1)
            b = d["cv"].values[d["layer"].values == l].mean(axis=1)
            ok = np.isfinite(a) & np.isfinite(b)
            t = ttest_rel(b[ok], a[ok]) if ok.sum() > 2 and np.ptp(b[ok] - a[ok]) > 0 else None
            tests.append({"network": name, "ablated_layer": meta[name][0], "group": meta[name][1], "layer": l,
                          "n_units": int(ok.sum()),
                          "cv_intact": float(np.mean(a[ok])) if ok.any() else np.nan,
                          "cv_ablated": float(np.mean(b[ok])) if ok.any() else np.nan,
                          "t": float(t.statistic) if t is not None else np.nan,
                          "p": float(t.pvalue) if t is not None else np.nan})
    return summary, pd.DataFrame(tests), per_unit


# =============================================================================== V1
def _v1_root(cfg: OrientationConfig) -> Path | None:
    if cfg.v1_root is not None:
        p = Path(cfg.v1_root)
        return p if p.is_dir() else None
    return _find_shared("ecker-v1-gratings")


#: The V1 data's orientation grid: 8 orientations 22.5 deg apart (stored rounded, e.g. 22 or 158).
_V1_STEP = 22.5
_V1_N_ORI = 8


def _snap(angles, session) -> np.ndarray:
    a = np.asarray(angles, dtype=float)
    snapped = np.round(a / _V1_STEP) * _V1_STEP
    if np.any(np.abs(snapped - a) > 2.0):
        raise NetphysError(f"Ecker V1 session {session} has angles {sorted(set(a))} off the 22.5-deg grid")
    return snapped


def v1_gosi(root=None, kind: str = "static", *, window_ms=(50.0, 550.0), max_contamination: float = 0.05,
            min_rate_hz: float = 1.0, baseline: str = "none") -> xr.Dataset:
    """gOSI of the Ecker et al. (2010) macaque V1 single units, with the network's estimator.

    The sessions are read by :func:`netphys.neural.load_ecker_v1` (the unmodified ``.mat``, converted
    in memory; CC BY-NC-ND), which marks the zero-padded trials of conditions shown fewer times as
    missing. Per unit, the spike count in ``window_ms`` (ms after onset, on the 10-ms bin grid) is
    averaged over the valid repetitions of each condition, turned into a rate (Hz) and arranged as
    a tuning array for :func:`netphys.stats.selectivity.gosi`. Angles stored rounded (22, 158, ...)
    are snapped to the 22.5-deg grid.

    ``kind="static"``
        8 orientations x 2 contrasts; each session's highest contrast is used; one phase and one
        SPF. Four sessions were recorded at 7 orientations (0-135 deg) only; on an incomplete circle
        the index is biased (a flat response gets gOSI 1/7), so they are skipped
        (``attrs["sessions_skipped"]``).
    ``kind="drifting"``
        16 directions = 8 orientations x 2 opposite directions; the two directions play the role
        of the phase axis (the estimator takes their maximum, as it takes the maximum over phase).

    Parameters
    ----------
    root : path, optional
        The ``ecker-v1-gratings`` folder (or the shared data folder holding it); default: found by
        :func:`netphys.neural.default_shared_root`.
    kind : {"static", "drifting"}
    window_ms : (float, float)
        Response window ``[start, stop)`` in ms after onset (the 500-ms stimulus shifted by the
        ~50-ms latency).
    max_contamination : float
        Units with contamination below this are kept (0.05, the original studies' criterion).
    min_rate_hz : float
        Units whose best condition is below this rate are dropped.
    baseline : {"none", "subtract"}
        Subtract the unit's spontaneous rate (-200..0 ms, same trials) first; negative values are
        then rectified by the estimator.

    Returns
    -------
    xarray.Dataset, dims (unit)
        The :func:`~netphys.stats.selectivity.gosi` variables plus ``session``, ``subject``,
        ``peak_rate_hz`` and ``spontaneous_hz``; attrs with the selection counts.

    Raises
    ------
    NetphysError
        For invalid options or when no unit passes the selection; ``FileNotFoundError`` when the
        file is missing.

    References
    ----------
    A. S. Ecker, P. Berens, G. A. Keliris, M. Bethge, N. K. Logothetis and A. S. Tolias, "Decorrelated
    neuronal firing in cortical microcircuits", Science 327 (2010); P. Berens et al., "A fast and
    simple population code for orientation in primate V1", J. Neurosci. 32 (2012). Data: CC BY-NC-ND
    3.0, bethgelab.org/datasets/v1gratings.
    """
    from ..neural import load_ecker_v1

    func = "v1_gosi"
    check_choice(kind, "kind", func, ("static", "drifting"))
    check_choice(baseline, "baseline", func, ("none", "subtract"))
    src = {"static": "static", "drifting": "moving"}[kind]
    window_ms = tuple(float(w) for w in window_ms)
    duration = (window_ms[1] - window_ms[0]) / 1000.0
    evoked = load_ecker_v1(root, src, window=window_ms)
    spont_ds = load_ecker_v1(root, src, window=(-200, 0))
    tunings, sess_id, subj, peaks, spont, skipped = [], [], [], [], [], []
    n_total = n_clean = 0
    axes = None
    for date, ds in evoked.items():
        da = ds.responses("V1")  # (stimulus, neuron) mean count over valid repeats
        rate = da.values.T / duration  # neurons x conditions
        sp = np.nanmean(spont_ds[date].responses("V1").values, axis=0) / 0.2  # neurons
        contam = da["contamination"].values
        n_total += rate.shape[0]
        if kind == "static":
            ori = _snap(da["orientation"].values, date)
            con = da["contrast"].values.astype(float)
            keep_c = con == con.max()
            ori_axis, phase_axis = np.mod(ori[keep_c], 180.0), np.zeros(int(keep_c.sum()))
            r = rate[:, keep_c]
        else:
            dirs = np.mod(_snap(da["direction"].values, date), 360.0)
            ori_axis, phase_axis = np.mod(dirs, 180.0), np.where(dirs >= 180.0, 180.0, 0.0)
            r = rate
        clean = contam < max_contamination
        n_clean += int(clean.sum())
        if np.unique(ori_axis).size != _V1_N_ORI:
            # an incomplete orientation circle biases gOSI (sum_k exp(2 i theta_k) != 0): skip
            skipped.append(str(date))
            log.info("Ecker V1 %s session %s: %d orientations, not %d; skipped", src, date,
                     np.unique(ori_axis).size, _V1_N_ORI)
            continue
        if not np.all(np.isfinite(r)):
            bad = ~np.all(np.isfinite(r), axis=1)
            log.info("Ecker V1 session %s: %d unit(s) without a valid trial in some condition; dropped", date,
                     int(bad.sum()))
            clean &= ~bad
        if baseline == "subtract":
            r = r - sp[:, None]
        ok = clean & (np.nan_to_num(rate).max(axis=1) >= min_rate_hz)
        if not ok.any():
            continue
        coords = pd.DataFrame({"orientation": ori_axis, "phase": phase_axis, "sf": np.zeros(ori_axis.size)})
        t = tuning_array(r[ok].T, coords)
        tunings.append(t.values)
        sess_id += [str(date)] * int(ok.sum())
        subj += [str(ds.attrs.get("subject", ""))] * int(ok.sum())
        peaks.append(np.nan_to_num(rate[ok]).max(axis=1))
        spont.append(sp[ok])
        axes = {d: t[d].values for d in ("orientation", "phase", "sf")}
    if not tunings:
        raise NetphysError(f"no Ecker V1 {src} unit passes contamination < {max_contamination} and a peak rate "
                           f">= {min_rate_hz} Hz")
    vals = np.concatenate(tunings, axis=0)
    tun = xr.DataArray(vals, dims=("unit", "orientation", "phase", "sf"),
                       coords={**axes, "unit": np.arange(vals.shape[0])}, attrs={"units": "Hz"})
    out = gosi(tun)
    out = out.assign_coords(session=("unit", np.array(sess_id)), subject=("unit", np.array(subj)))
    out["peak_rate_hz"] = ("unit", np.concatenate(peaks))
    out["spontaneous_hz"] = ("unit", np.concatenate(spont))
    first = next(iter(evoked.values()))
    out.attrs.update(kind=kind, n_sessions=len(evoked), sessions_skipped=skipped, n_units_total=int(n_total),
                     n_units_clean=int(n_clean), n_units_used=int(vals.shape[0]), window_ms=list(window_ms),
                     max_contamination=float(max_contamination), min_rate_hz=float(min_rate_hz),
                     baseline=baseline, source=str(first.attrs.get("path", "")),
                     loader="netphys.neural.load_ecker_v1", citation=str(first.attrs.get("citation", "")))
    return out


def load_v1_gosi(cfg: OrientationConfig) -> dict:
    """``{"V1 static": Dataset, "V1 drifting": Dataset}`` from :func:`v1_gosi` with the config's
    selection, or ``{}`` when the data are absent."""
    root = _v1_root(cfg)
    if root is None:
        log.warning("V1 data not found (../shared/data/ecker-v1-gratings); skipping the V1 comparison")
        return {}
    out = {}
    for kind, label in (("static", "V1 static"), ("drifting", "V1 drifting")):
        out[label] = v1_gosi(root, kind, window_ms=tuple(cfg.v1_window_ms),
                             max_contamination=cfg.v1_max_contamination, min_rate_hz=cfg.v1_min_rate_hz,
                             baseline=cfg.v1_baseline)
    return out


# =============================================================================== runner
def _spearman(x, y) -> tuple[float, float]:
    from scipy.stats import spearmanr

    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3 or np.ptp(x[ok]) == 0 or np.ptp(y[ok]) == 0:
        return float("nan"), float("nan")
    r = spearmanr(x[ok], y[ok])
    return float(r.statistic), float(r.pvalue)


def _sweep_specs(cfg: OrientationConfig, data_ref, seed) -> list[dict]:
    specs, seen = [], set()
    combos = [(a, 0.0, k) for a in cfg.sweep_augmentations for k in range(cfg.sweep_seeds)]
    combos += [("none", float(p), 0) for p in cfg.corruption_rates]
    seeds = spawn_seeds(seed, len(combos))
    for (aug, p, k), s in zip(combos, seeds):
        key = (aug, p, k)
        if key in seen:
            continue
        seen.add(key)
        init_seed, train_seed = spawn_seeds(s, 2)
        specs.append({"name": f"{aug.replace('+', '-')}_p{p:g}_s{k}", "augmentation": aug, "corruption": p,
                      "seed": k,
                      "init_seed": init_seed, "train_seed": train_seed,
                      "epochs": cfg.sweep_epochs or cfg.epochs, "data": data_ref,
                      "config": config_to_dict(cfg)})
    return specs


def _cfg_key(cfg: OrientationConfig, *keys) -> dict:
    d = config_to_dict(cfg)
    return {k: d[k] for k in keys}


_TRAIN_KEYS = ("data", "in_size", "max_train", "val_fraction", "max_test", "epochs", "lr", "batch_size",
               "augmentation", "shift", "checkpoint", "grid", "response", "site", "layers", "random_state")


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
        ``config``; ``history`` (DataFrame per epoch: losses, val accuracy, mean gOSI and selective
        fraction per layer); ``gosi`` (Dataset per channel of the analysed network) and
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
    needs_net = {"selectivity", "dynamics", "ablation", "invariance"} & set(cfg.parts)
    needs_data = needs_net or "sweep" in cfg.parts
    data = None
    if needs_data:
        t0 = time.time()
        root = _data_root(cfg)
        data_file = cache / f"data_{cfg.in_size}px.npz" if cache is not None else None
        key = {**_cfg_key(cfg, "in_size", "max_train", "val_fraction", "max_test", "random_state"),
               "root": str(root)}
        meta_file = cache / f"data_{cfg.in_size}px.json" if cache is not None else None
        if data_file is not None and data_file.is_file() and meta_file.is_file() \
                and json.loads(meta_file.read_text()) == key:
            data = _data_from(data_file)
        else:
            data = load_imagenette(root, cfg.in_size, max_train=cfg.max_train, val_fraction=cfg.val_fraction,
                                   max_test=cfg.max_test, random_state=s_data, progress=progress)
            if data_file is not None:
                _save_data(data, data_file)
                atomic_write_text(meta_file, json.dumps(key))
        timings["data"] = time.time() - t0
        res["n_images"] = {k: int(len(data[f"y_{k}"])) for k in ("train", "val", "test")}
    pre = data["preprocess"] if data is not None else Preprocess(resize=cfg.in_size, crop=cfg.in_size)
    grats = _make_gratings(cfg, pre)
    model = None
    if needs_net:
        t0 = time.time()
        model = reference_cnn(len(data["class_names"]), cfg.in_size, random_state=s_main, preprocess=pre,
                              device=cfg.device or "cpu")
        key = _cfg_key(cfg, *_TRAIN_KEYS)
        wfile = cache / "main_model.pt" if cache is not None else None
        hfile = cache / "main_history.json" if cache is not None else None
        if wfile is not None and wfile.is_file() and hfile.is_file() \
                and json.loads(hfile.read_text()).get("key") == key:
            model.load_state_dict(torch.load(wfile, map_location="cpu", weights_only=True))
            saved = json.loads(hfile.read_text())
            history, info = saved["history"], saved["info"]
            timings["train_main_cached_seconds"] = info.get("train_seconds", float("nan"))
            log.info("re-using the cached main network (%s)", wfile)
        else:
            history, info = fit_network(model, data, epochs=cfg.epochs, lr=cfg.lr, batch_size=cfg.batch_size,
                                        augmentation=cfg.augmentation, shift=cfg.shift,
                                        checkpoint=cfg.checkpoint, random_state=s_main,
                                        on_epoch=_gosi_callback(grats, cfg), progress=progress,
                                        desc="main network")
            if wfile is not None:
                wfile.parent.mkdir(parents=True, exist_ok=True)
                torch.save(model.state_dict(), wfile.with_suffix(".tmp"))
                os.replace(wfile.with_suffix(".tmp"), wfile)
                atomic_write_text(hfile, json.dumps({"key": key, "history": history, "info": info}))
        model.netphys.weights = f"trained(imagenette-{cfg.in_size}px, epoch {info['best_epoch']})"
        res["history"] = pd.DataFrame(history).set_index("epoch")
        res["train_info"] = info
        timings["train_main"] = time.time() - t0
        resp, g = _measure(model, grats, cfg)
        res["tuning"] = tuning_array(resp)
        res["gosi"] = g
        res["shuffled"] = shuffled_gosi(res["tuning"], random_state=s_shuf, n_shuffles=cfg.n_shuffles)
        res["layer_summary"] = _with_shuffled(g, res["shuffled"], cfg.layers)
        test = _stimuli(data["x_test"], data["y_test"], pre, data["class_names"], "test")
        from ..train import evaluate

        ev = evaluate(model, test, batch_size=cfg.eval_batch_size)
        res["test"] = {"loss": ev["loss"], "accuracy": ev["top1"], "n": ev["n"]}
    # ------------------------------------------------------------------ dynamics
    if "dynamics" in cfg.parts:
        t0 = time.time()
        same = cfg.dynamics_lr is None or (cfg.dynamics_lr == cfg.lr and (cfg.dynamics_epochs or cfg.epochs)
                                           == cfg.epochs)
        if same:
            hist = res["history"]
            dyn_note = "the main network's own training history"
        else:
            key = {**_cfg_key(cfg, *_TRAIN_KEYS), "dynamics_lr": cfg.dynamics_lr,
                   "dynamics_epochs": cfg.dynamics_epochs}
            hfile = cache / "dynamics_history.json" if cache is not None else None
            if hfile is not None and hfile.is_file() and json.loads(hfile.read_text()).get("key") == key:
                h = json.loads(hfile.read_text())["history"]
            else:
                dyn = reference_cnn(len(data["class_names"]), cfg.in_size, random_state=s_dyn, preprocess=pre,
                                    device=cfg.device or "cpu")
                h, _ = fit_network(dyn, data, epochs=cfg.dynamics_epochs or cfg.epochs, lr=cfg.dynamics_lr,
                                   batch_size=cfg.batch_size, augmentation=cfg.augmentation, shift=cfg.shift,
                                   checkpoint="last", random_state=s_dyn, on_epoch=_gosi_callback(grats, cfg),
                                   progress=progress, desc="dynamics network")
                if hfile is not None:
                    atomic_write_text(hfile, json.dumps({"key": key, "history": h}))
            hist = pd.DataFrame(h).set_index("epoch")
            dyn_note = f"a separate network trained at lr {cfg.dynamics_lr:g}"
        window = hist.loc[1:cfg.spearman_epochs]
        rho = []
        for l in cfg.layers:
            r, p = _spearman(window["val_loss"], window[f"gosi_{l}"])
            rho.append({"layer": l, "rho": r, "p": p, "gosi_epoch0": float(hist.loc[0, f"gosi_{l}"]),
                        "gosi_last": float(hist[f"gosi_{l}"].iloc[-1]),
                        "gosi_best_val": float(hist.loc[hist.loc[1:, "val_loss"].idxmin(), f"gosi_{l}"])})
        res["dynamics"] = {"history": hist, "spearman": pd.DataFrame(rho).set_index("layer"),
                           "note": dyn_note, "n_epochs": int(len(window))}
        timings["dynamics"] = time.time() - t0
    # ------------------------------------------------------------------ sweep
    if "sweep" in cfg.parts:
        t0 = time.time()
        from .parallel import get_executor

        if cache is not None:
            data_ref = str(cache / f"data_{cfg.in_size}px.npz")
        else:
            data_ref = data
        specs = _sweep_specs(cfg, data_ref, s_sweep)
        done, todo = {}, []
        sdir = cache / "sweep" if cache is not None else None
        for sp in specs:
            f = sdir / f"{sp['name']}.json" if sdir is not None else None
            key = {k: sp[k] for k in ("init_seed", "train_seed", "epochs")}
            key.update(_cfg_key(cfg, *_TRAIN_KEYS, "sweep_checkpoint"))
            sp["key"] = key
            if f is not None and f.is_file() and json.loads(f.read_text()).get("key") == key:
                done[sp["name"]] = json.loads(f.read_text())["result"]
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
        rho = []
        for l in cfg.layers:
            r, p = _spearman(sweep["test_loss"], sweep[f"gosi_{l}"])
            aug = sweep[sweep["corruption"] == 0]
            r_aug, p_aug = _spearman(aug["test_loss"], aug[f"gosi_{l}"])
            cor = sweep[sweep["augmentation"] == "none"]
            r_cor, p_cor = _spearman(cor["corruption"], cor[f"gosi_{l}"])
            rho.append({"layer": l, "rho_all": r, "p_all": p, "rho_augmentation": r_aug, "p_augmentation": p_aug,
                        "rho_corruption": r_cor, "p_corruption": p_cor})
        res["sweep"] = sweep
        res["sweep_rho"] = pd.DataFrame(rho).set_index("layer")
        res["sweep_backend"] = cfg.backend
        timings["sweep"] = time.time() - t0
    # ------------------------------------------------------------------ ablation
    if "ablation" in cfg.parts:
        t0 = time.time()
        test = _stimuli(data["x_test"], data["y_test"], pre, data["class_names"], "test")
        res["ablation"] = ablation_effects(model, test, res["gosi"], cfg.layers, fraction=cfg.ablation_fraction,
                                           n_random=cfg.ablation_random, site=cfg.site, random_state=s_abl,
                                           batch_size=cfg.eval_batch_size, progress=progress)
        timings["ablation"] = time.time() - t0
    # ------------------------------------------------------------------ invariance
    if "invariance" in cfg.parts:
        t0 = time.time()
        test = _stimuli(data["x_test"], data["y_test"], pre, data["class_names"], "test")
        inv = invariance_effects(model, test, res["gosi"], cfg.layers, cfg.invariance_ablate,
                                 units=cfg.invariance_units, fraction=cfg.ablation_fraction,
                                 control=cfg.invariance_control, shift=cfg.invariance_shift,
                                 threshold=cfg.invariance_threshold, site=cfg.site, random_state=s_inv,
                                 batch_size=cfg.eval_batch_size)
        res["invariance"], res["invariance_tests"], res["invariance_units"] = inv
        timings["invariance"] = time.time() - t0
    # ------------------------------------------------------------------ V1
    if "v1" in cfg.parts:
        t0 = time.time()
        res["v1"] = load_v1_gosi(cfg)
        timings["v1"] = time.time() - t0
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


# =============================================================================== plots
def _layer_colors(layers):
    import matplotlib.pyplot as plt

    cmap = plt.get_cmap("viridis")
    return {l: cmap(i / max(1, len(layers) - 1) * 0.9) for i, l in enumerate(layers)}


def plot_dynamics(history: pd.DataFrame, spearman: pd.DataFrame, layers=None, *, epochs: int | None = None):
    """Fig. 3: losses and mean gOSI per layer over epochs; validation loss vs mean gOSI per layer
    (one point per epoch, first ``epochs``); Spearman rho per layer.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    layers = list(layers or spearman.index)
    cols = _layer_colors(layers)
    n = len(layers)
    fig = plt.figure(figsize=(max(10.0, 1.9 * n), 8.2), layout="constrained")
    gs = fig.add_gridspec(3, n)
    ax_loss = fig.add_subplot(gs[0, : n // 2])
    ax_g = fig.add_subplot(gs[0, n // 2:])
    ep = history.index.values
    ax_loss.plot(ep[1:], history["train_loss"].values[1:], color="0.4", label="training loss")
    ax_loss.plot(ep, history["val_loss"].values, color="k", label="validation loss")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("cross-entropy")
    ax_loss.legend(frameon=False, fontsize=8)
    ax_loss.set_title("a  loss", loc="left", fontsize=10)
    for l in layers:
        ax_g.plot(ep, history[f"gosi_{l}"].values, color=cols[l], label=l)
    ax_g.set_xlabel("epoch (0 = initialisation)")
    ax_g.set_ylabel("mean gOSI")
    ax_g.legend(frameon=False, fontsize=7, ncols=2)
    ax_g.set_title("a  mean gOSI per layer", loc="left", fontsize=10)
    win = history.loc[1:epochs] if epochs else history.loc[1:]
    for j, l in enumerate(layers):
        a = fig.add_subplot(gs[1, j])
        a.scatter(win["val_loss"], win[f"gosi_{l}"], c=win.index.values, cmap="Greys", s=14,
                  edgecolor=cols[l], linewidths=0.8)
        a.set_title(l, fontsize=9)
        a.tick_params(labelsize=7)
        a.set_xlabel("val. loss", fontsize=8)
        if j == 0:
            a.set_ylabel("mean gOSI", fontsize=8)
            a.text(-0.5, 1.15, "b", transform=a.transAxes, fontsize=10)
    ax_r = fig.add_subplot(gs[2, :])
    rho = spearman.loc[layers, "rho"].values
    ax_r.bar(np.arange(n), rho, color=[cols[l] for l in layers])
    for i, (r, p) in enumerate(zip(rho, spearman.loc[layers, "p"].values)):
        if np.isfinite(p) and p < 0.05:
            ax_r.text(i, r + (0.03 if r >= 0 else -0.08), "*", ha="center", fontsize=12)
    ax_r.axhline(0, color="k", lw=0.8)
    ax_r.set_xticks(np.arange(n), layers)
    ax_r.set_ylim(-1.1, 1.1)
    ax_r.set_ylabel("Spearman rho\n(val. loss, mean gOSI)")
    ax_r.set_title("c  correlation over epochs (* p < 0.05)", loc="left", fontsize=10)
    return fig


def plot_sweep(sweep: pd.DataFrame, rho: pd.DataFrame, layers=None):
    """Fig. 4: test loss vs mean gOSI per layer (one point per network), Spearman rho per layer,
    and mean gOSI vs label-corruption rate.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    layers = list(layers or rho.index)
    n = len(layers)
    aug_colors = {"none": "tab:gray", "shift": "tab:blue", "flip": "tab:orange", "shift+flip": "tab:green"}
    fig = plt.figure(figsize=(max(10.0, 1.9 * n), 8.0), layout="constrained")
    gs = fig.add_gridspec(3, n)
    cor = sweep[sweep["augmentation"] == "none"].sort_values("corruption")
    for j, l in enumerate(layers):
        a = fig.add_subplot(gs[0, j])
        for aug, grp in sweep.groupby("augmentation"):
            clean = grp[grp["corruption"] == 0]
            a.scatter(clean["test_loss"], clean[f"gosi_{l}"], s=16, color=aug_colors.get(aug, "k"),
                      label=aug)
        corr = sweep[sweep["corruption"] > 0]
        a.scatter(corr["test_loss"], corr[f"gosi_{l}"], s=18, marker="x", color="tab:red",
                  label="label corruption > 0")
        a.set_title(l, fontsize=9)
        a.tick_params(labelsize=7)
        a.ticklabel_format(useOffset=False)
        a.set_xlabel("test loss", fontsize=8)
        if j == 0:
            a.set_ylabel("mean gOSI", fontsize=8)
            a.text(-0.5, 1.15, "a", transform=a.transAxes, fontsize=10)
        b = fig.add_subplot(gs[1, j])
        b.plot(cor["corruption"], cor[f"gosi_{l}"], "o-", color="tab:red", ms=4)
        b.tick_params(labelsize=7)
        b.set_xlabel("label corruption", fontsize=8)
        if j == 0:
            b.set_ylabel("mean gOSI", fontsize=8)
            b.text(-0.5, 1.15, "c", transform=b.transAxes, fontsize=10)
    handles, labels = fig.axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside upper right", fontsize=7, frameon=False, ncols=5)
    ax_r = fig.add_subplot(gs[2, :])
    x = np.arange(n)
    ax_r.bar(x - 0.2, rho.loc[layers, "rho_all"], width=0.4, color="tab:purple", label="all networks")
    ax_r.bar(x + 0.2, rho.loc[layers, "rho_augmentation"], width=0.4, color="tab:green",
             label="clean labels only")
    ax_r.axhline(0, color="k", lw=0.8)
    ax_r.set_xticks(x, layers)
    ax_r.set_ylim(-1.1, 1.1)
    ax_r.set_ylabel("Spearman rho\n(test loss, mean gOSI)")
    ax_r.legend(frameon=False, fontsize=8)
    ax_r.set_title(f"b  correlation over {len(sweep)} networks", loc="left", fontsize=10)
    return fig


def plot_ablation(ablation: pd.DataFrame, *, ax=None):
    """Fig. 5: change of test loss per layer after ablating the top (red) vs bottom (blue) 50% gOSI
    units (random halves in grey, mean +- SD); asterisks where top > 2x bottom.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from ..plotting.style import new_axes

    fig, ax = new_axes(ax, figsize=(6.2, 3.6))
    layers = list(ablation.index)
    x = np.arange(len(layers))
    ax.plot(x, ablation["d_top"], "o-", color="tab:red", label="top 50% gOSI ablated")
    ax.plot(x, ablation["d_bottom"], "o-", color="tab:blue", label="bottom 50% gOSI ablated")
    if ablation["d_random"].notna().any():
        ax.errorbar(x, ablation["d_random"], yerr=ablation["d_random_sd"].fillna(0), fmt="s--", color="0.55",
                    ms=3, capsize=2, lw=1, label="random 50% (mean +- SD)")
    top = ablation[["d_top", "d_bottom"]].max(axis=1).values
    span = float(np.nanmax(np.abs(ablation[["d_top", "d_bottom"]].values))) or 1.0
    for i, m in enumerate(ablation["marked"].values):
        if m:
            ax.text(i, top[i] + 0.05 * span, "*", ha="center", fontsize=14)
    ax.axhline(0, color="k", lw=0.7)
    ax.set_xticks(x, layers, rotation=60 if len(layers) > 8 else 0, ha="right" if len(layers) > 8 else "center",
                  fontsize=8 if len(layers) > 8 else None)
    ax.set_ylabel("change of test loss")
    ax.set_xlabel("ablated layer")
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(frameon=False, fontsize=8)
    return fig


def plot_invariance(invariance: pd.DataFrame, *, direction: str = "all"):
    """Fig. 6: coefficient of variation under shifts per layer (mean +- SEM over units), intact
    network (black) vs the top-gOSI (red) and bottom-gOSI (blue) halves of a layer ablated; one
    panel per ablated layer.

    Parameters
    ----------
    invariance : pandas.DataFrame
        The summary of :func:`invariance_effects`.
    direction : {"all", "horizontal", "vertical", "both"}

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    d = invariance[invariance["direction"] == direction]
    ablated = [l for l in dict.fromkeys(d["ablated_layer"]) if l != "none"]
    n = max(1, len(ablated))
    fig, axes = plt.subplots(1, n, figsize=(4.4 * n, 3.4), squeeze=False, layout="constrained")
    base = d[d["network"] == "intact"]
    layers = list(dict.fromkeys(base["layer"]))
    x = np.arange(len(layers))
    colors = {"top": "tab:red", "bottom": "tab:blue"}
    for a, l in zip(axes[0], ablated or [None]):
        a.errorbar(x, base["mean"], yerr=base["sem"], fmt="o-", color="k", capsize=2, label="no ablation")
        for k, (group, grp) in enumerate(d[d["ablated_layer"] == l].groupby("group", sort=False)):
            s = grp.set_index("layer").loc[layers]
            a.errorbar(x + 0.08 * (k + 1), s["mean"], yerr=s["sem"], fmt="o-", color=colors.get(group, "0.5"),
                       capsize=2, ms=4, label=f"{group}-gOSI half ablated")
        a.set_xticks(x, layers, fontsize=8, rotation=60 if len(layers) > 8 else 0,
                     ha="right" if len(layers) > 8 else "center")
        a.set_title(f"{l} ablation" if l else "intact", fontsize=9)
        a.set_ylabel(f"CV under shift ({direction})")
        a.spines[["top", "right"]].set_visible(False)
        a.legend(frameon=False, fontsize=7)
    return fig


def plot_v1_comparison(network: xr.Dataset, v1: dict, layers=None, *, threshold: float = THRESHOLD):
    """gOSI distributions of the network's layers next to V1 populations, with the fraction of
    selective units (gOSI > ``threshold``) above each box.

    Parameters
    ----------
    network : xarray.Dataset
        :func:`channel_gosi` output (``layer`` coordinate).
    v1 : dict
        Population name -> Dataset with a ``gosi`` variable (e.g. from :func:`load_v1_gosi`).

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    lay = network["layer"].values
    layers = list(layers or dict.fromkeys(lay.tolist()))
    groups = {l: network["gosi"].values[lay == l] for l in layers}
    groups.update({k: d["gosi"].values for k, d in v1.items()})
    names = list(groups)
    fig, ax = plt.subplots(figsize=(1.0 * len(names) + 2.5, 3.8), layout="constrained")
    rng = np.random.default_rng(0)
    colors = ["tab:blue"] * len(layers) + ["tab:orange"] * len(v1)
    for i, (k, v) in enumerate(groups.items()):
        ax.boxplot([v], positions=[i], widths=0.6, showfliers=False,
                   medianprops={"color": "k"}, boxprops={"color": colors[i]},
                   whiskerprops={"color": colors[i]}, capprops={"color": colors[i]})
        ax.scatter(i + rng.uniform(-0.22, 0.22, v.size), v, s=4, alpha=0.35, color=colors[i], lw=0)
        ax.text(i, 1.03, f"{100 * np.mean(v > threshold):.0f}%\nn={v.size}", ha="center", va="bottom",
                fontsize=7)
    ax.axhline(threshold, color="k", ls="--", lw=0.8)
    ax.set_xticks(np.arange(len(names)), names, rotation=30, ha="right", fontsize=8)
    ax.set_ylim(0, 1.18)
    ax.set_ylabel("gOSI")
    ax.set_title("same estimator: network channels (blue) and V1 single units (orange); "
                 f"% with gOSI > {threshold:g}", fontsize=9)
    ax.spines[["top", "right"]].set_visible(False)
    return fig


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
    if isinstance(config, OrientationConfig):
        return config
    if fast:
        data = {}
        if isinstance(config, dict):
            data = dict(config)
        elif config is not None:
            load_config(OrientationConfig, config)  # validates the file and its keys
            text = Path(config).read_text()
            if Path(config).suffix == ".toml":
                import tomllib

                data = tomllib.loads(text)
            else:
                import yaml

                data = yaml.safe_load(text) or {}
        fields = {f.name: f for f in dataclasses.fields(OrientationConfig)}
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise NetphysError(f"unknown key(s) {unknown} in the config of OrientationConfig; valid keys are: "
                               + ", ".join(fields))
        data = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return OrientationConfig.fast(**data)
    return load_config(OrientationConfig, config)


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
    summ = _with_shuffled(g, shuf, layers)
    stim = demo_stimuli(info.preprocess)
    if cfg.n_images < len(stim):
        stim = stim.subsample(n=cfg.n_images, random_state=s_img)
    abl = ablation_effects(model, stim, g, layers, fraction=cfg.ablation_fraction, n_random=cfg.ablation_random,
                           site=cfg.site, random_state=s_abl, progress=progress)
    inv, _, _ = invariance_effects(model, stim, g, layers, [l for l in cfg.invariance_ablate if l in layers],
                                   units=cfg.invariance_units, fraction=cfg.ablation_fraction, site=cfg.site,
                                   random_state=s_inv)
    v1 = load_v1_gosi(OrientationConfig()) if cfg.v1 else {}
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
