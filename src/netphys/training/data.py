"""In-memory labelled splits: decoded uint8 images and integer labels, for :func:`~netphys.training.fit`.

A *splits* mapping holds ``x_<split>`` (uint8, ``(n, H, W, 3)``, already at the network's input
size) and ``y_<split>`` (int64, ``(n,)``) for ``split`` in ``train`` and, optionally, ``val`` and
``test``, plus ``preprocess`` (the :class:`~netphys.stimuli.Preprocess` that normalises them),
``class_names`` and ``source``. Small image data sets (Imagenette at 32-64 px, CIFAR) fit in memory
many times over, so the CPU spends a training run in the network rather than in JPEG decoding.
"""
from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Mapping

import numpy as np

from .._random import spawn_seeds
from .._validation import NetphysError, check_int, param_error
from ..stimuli import Preprocess, StimulusSet

log = logging.getLogger(__name__)

__all__ = ["load_imagenette", "check_splits", "split_stimuli", "save_splits", "load_splits"]

SPLITS = ("train", "val", "test")


def load_imagenette(root, in_size: int, *, max_train: int | None = None, val_fraction: float = 0.2,
                    max_test: int | None = None, random_state=0, progress: bool = False) -> dict:
    """Decode an ImageFolder pair ``root/train``, ``root/val`` into in-memory labelled splits.

    ``train/`` (optionally sub-sampled to ``max_train``, stratified) is split, stratified, into a
    training and a validation part; ``val/`` (optionally ``max_test`` images) is the test set. Any
    folder pair in that layout works (Imagenette is the one the orientation experiments use).

    Parameters
    ----------
    root : path
        Folder with ``train/`` and ``val/`` class folders of the same classes.
    in_size : int
        Images are resized (shorter side) and centre-cropped to ``in_size``.
    max_train, max_test : int, optional
        Stratified sub-samples of ``train/`` (before the split) and ``val/``.
    val_fraction : float, default 0.2
        Share of every class of ``train/`` held out for validation.
    random_state : int or SeedSequence, default 0
        Seeds the two sub-samples and the split.
    progress : bool
        Unused (decoding logs its time); kept for call compatibility.

    Returns
    -------
    dict
        ``x_train``, ``y_train``, ``x_val``, ``y_val``, ``x_test``, ``y_test`` (uint8 (n, H, W, 3)
        and int64), ``class_names``, ``preprocess`` (ImageNet mean/std at ``in_size``), ``source``.

    Raises
    ------
    NetphysError
        If the folders are missing, hold other classes, or the options are out of range.
    """
    func = "load_imagenette"
    root = Path(root)
    in_size = check_int(in_size, "in_size", func, min_value=1)
    if not 0 < float(val_fraction) < 1:
        raise param_error("val_fraction", func, "a number in (0, 1)", val_fraction)
    for name in ("train", "val"):
        if not (root / name).is_dir():
            raise param_error("root", func, "a folder with train/ and val/ class folders", str(root))
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


def check_splits(data, func: str, required=("train",)) -> Mapping:
    """Validate a splits mapping (see the module notes); returns it unchanged.

    Raises
    ------
    NetphysError
        When a required split is missing, images are not uint8 ``(n, H, W, 3)``, labels do not
        match the images in number or are not integers in ``[0, n_classes)``, or ``preprocess``
        is missing.
    """
    if not isinstance(data, Mapping):
        raise param_error("data", func, "a mapping of splits (x_train, y_train, ..., preprocess)",
                          type(data).__name__, "build one with netphys.training.load_imagenette")
    if not isinstance(data.get("preprocess"), Preprocess):
        raise param_error("data", func, "a mapping with a 'preprocess' entry (a netphys Preprocess)",
                          f"keys {sorted(data)}")
    n_classes = len(data["class_names"]) if data.get("class_names") is not None else None
    for split in SPLITS:
        if f"x_{split}" not in data:
            if split in required:
                raise param_error("data", func, f"a mapping with 'x_{split}' and 'y_{split}'", f"keys {sorted(data)}")
            continue
        x, y = np.asarray(data[f"x_{split}"]), np.asarray(data[f"y_{split}"])
        if x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] != 3 or len(x) == 0:
            raise param_error("data", func, f"'x_{split}' as non-empty uint8 images (n, H, W, 3)",
                              f"{x.dtype} of shape {x.shape}")
        if y.shape != (len(x),) or y.dtype.kind not in "iu":
            raise param_error("data", func, f"'y_{split}' as {len(x)} integer labels",
                              f"{y.dtype} of shape {y.shape}")
        if y.min() < 0 or (n_classes is not None and y.max() >= n_classes):
            raise param_error("data", func, f"'y_{split}' labels in [0, {n_classes or 'n_classes'})",
                              f"labels in [{int(y.min())}, {int(y.max())}]")
    return data


def split_stimuli(data: Mapping, split: str = "test", labels=None) -> StimulusSet:
    """One split of ``data`` as a labelled in-memory :class:`~netphys.stimuli.StimulusSet`.

    ``labels`` replaces the split's labels (e.g. the corrupted training labels a network saw).
    """
    func = "split_stimuli"
    check_splits(data, func, required=())
    if f"x_{split}" not in data:
        raise param_error("split", func, "a split present in data (" + ", ".join(
            s for s in SPLITS if f"x_{s}" in data) + ")", split)
    y = data[f"y_{split}"] if labels is None else labels
    return StimulusSet.from_arrays(data[f"x_{split}"], y, class_names=data.get("class_names"),
                                   preprocess=data["preprocess"], name=split)


def save_splits(data: Mapping, path) -> Path:
    """Write a splits mapping to one ``.npz`` file (atomically); read it back with :func:`load_splits`."""
    path = Path(path)
    meta = {"class_names": list(data["class_names"]), "preprocess": data["preprocess"].to_dict(),
            "source": data.get("source", "")}
    arrays = {k: v for k, v in data.items() if isinstance(v, np.ndarray)}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez(tmp, meta=np.array(json.dumps(meta)), **arrays)
    os.replace(tmp, path)
    return path


def load_splits(path) -> dict:
    """The splits mapping written by :func:`save_splits`."""
    with np.load(path, allow_pickle=False) as z:
        d = {k: z[k] for k in z.files}
    meta = json.loads(str(d.pop("meta")))
    d["class_names"] = meta["class_names"]
    d["preprocess"] = Preprocess(**{k: tuple(v) if isinstance(v, list) else v
                                    for k, v in meta["preprocess"].items()})
    d["source"] = meta["source"]
    return d
