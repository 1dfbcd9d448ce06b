"""Coerce what users record from (tensors, image arrays, DataLoaders) into a :class:`StimulusSet`."""
from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import pandas as pd
import torch

from .._validation import param_error
from .preprocess import Preprocess
from .stimulus_set import StimulusSet, _check_labels

_WHAT = "a netphys StimulusSet"
_FIX = ("build one with StimulusSet.from_folder or StimulusSet.from_arrays (float pixels in [0, 1]), or pass "
        "float (N, 3, H, W) network input, uint8 images (N, H, W, 3) or (N, 3, H, W), or a torch "
        "DataLoader / Dataset of (images, labels)")


def _refuse(obj, func: str, detail: str = ""):
    return param_error("stimuli", func, _WHAT, type(obj).__name__, _FIX + (f" ({detail})" if detail else ""))


class TensorStimulusSet(StimulusSet):
    """A :class:`StimulusSet` whose network input is a given float tensor, used exactly as it is.

    ``tensor()`` and ``batches()`` return the stored input (no re-normalisation). ``load_images()``
    returns pixels recovered by inverting ``preprocess`` (exact when the input was made with it;
    used by pixel-based features such as :meth:`grayscale`). :meth:`with_preprocess` gives an
    ordinary set of those pixels.
    """

    def __init__(self, inputs: torch.Tensor, coords: pd.DataFrame, preprocess: Preprocess, *,
                 class_names=None, name: str = "tensor", attrs: dict | None = None):
        super().__init__(coords, preprocess, images=_to_pixels(inputs, preprocess), class_names=class_names,
                         name=name, attrs=attrs)
        self._inputs = inputs

    def tensor(self, index=None, device=None) -> torch.Tensor:
        from .._validation import check_device

        device = check_device(device, "StimulusSet.tensor")
        if index is None:
            index = np.arange(len(self))
        x = self._inputs[torch.as_tensor(np.asarray(index, dtype=np.int64))]
        return x if device is None else x.to(device)

    def take(self, index) -> "TensorStimulusSet":
        index = np.asarray(index, dtype=int)
        return TensorStimulusSet(self._inputs[torch.as_tensor(index, dtype=torch.long)],
                                 self.coords.iloc[index].reset_index(drop=True), self.preprocess,
                                 class_names=self.class_names, name=self.name, attrs=self.attrs)

    def _arrays_sha256(self) -> str:
        """sha256 of the stored input (for cache keys: coordinates alone do not identify tensors)."""
        return hashlib.sha256(self._inputs.numpy().tobytes()).hexdigest()


def _to_pixels(x: torch.Tensor, pre: Preprocess) -> np.ndarray:
    """Invert ``pre.normalise``: (N, 3, H, W) float input -> (N, H, W, 3) uint8 RGB (rounded, clipped)."""
    mean = torch.tensor(pre.mean, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(pre.std, dtype=torch.float32).view(1, 3, 1, 1)
    p = (x.to(torch.float32) * std + mean) * (255.0 / pre.scale)
    if pre.bgr:
        p = p.flip(1)
    return np.ascontiguousarray(p.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy())


def _default_preprocess(preprocess, model, func: str):
    """Explicit ``preprocess`` (name or Preprocess), else the one :func:`load_model` gave ``model``."""
    if preprocess is not None:
        from ..models.loading import as_preprocess

        return as_preprocess(preprocess, None, func)
    if model is not None:
        from ..models.loading import ModelInfo

        info = getattr(model, "netphys", None)
        if isinstance(info, ModelInfo):
            return info.preprocess
    return None


def _coords(n: int, labels, class_names, name: str, func: str):
    labels, class_names = _check_labels(labels, class_names, n, func)
    coords = pd.DataFrame({"label": labels,
                           "class_name": [class_names[l] if l >= 0 else "" for l in labels],
                           "source": [f"{name}[{i}]" for i in range(n)]})
    return coords, class_names


def _from_pixels(a: np.ndarray, pre: Preprocess | None, labels, class_names, name: str, func: str):
    """uint8 (N, H, W, 3) pixels: resized/cropped by ``pre`` where they are not at its size."""
    n, h, w, _ = a.shape
    if pre is None:
        side = min(h, w)
        pre = Preprocess(resize=side, crop=side)
    if (h, w) != (pre.crop, pre.crop) or pre.resize != pre.crop:
        from PIL import Image

        a = np.stack([pre.geometry(Image.fromarray(im)) for im in a])
    coords, class_names = _coords(n, labels, class_names, name, func)
    return StimulusSet(coords, pre, images=np.ascontiguousarray(a), class_names=class_names, name=name,
                       attrs={"from": "uint8 images"})


def _from_input(x: torch.Tensor, pre: Preprocess | None, labels, class_names, name: str, func: str):
    """Float (N, 3, H, W) network input, kept as it is."""
    n, _, h, w = x.shape
    if h != w:
        raise param_error("stimuli", func, "square network input (H == W)", f"a tensor of shape "
                          f"{tuple(x.shape)}", "crop the images first")
    if not torch.isfinite(x).all():
        raise param_error("stimuli", func, "finite network input", "a tensor containing NaN or inf")
    if pre is None:
        pre = Preprocess(resize=h, crop=h)
    elif pre.crop != h:
        pre = dataclasses.replace(pre, resize=h, crop=h)
    coords, class_names = _coords(n, labels, class_names, name, func)
    return TensorStimulusSet(x.detach().to("cpu", torch.float32).contiguous(), coords, pre,
                             class_names=class_names, name=name, attrs={"from": "float network input"})


def _from_batches(obj, func: str):
    """``(images, labels or None, class_names)`` from a DataLoader (or Dataset) of (images, labels)."""
    from torch.utils.data import DataLoader

    dataset = obj.dataset if isinstance(obj, DataLoader) else obj
    loader = obj if isinstance(obj, DataLoader) else DataLoader(obj, batch_size=64, shuffle=False)
    xs, ys = [], []
    for b, batch in enumerate(loader):
        if isinstance(batch, (tuple, list)) and batch:
            x, y = batch[0], (batch[1] if len(batch) > 1 else None)
        elif isinstance(batch, dict):
            x = batch.get("image", batch.get("images"))
            y = batch.get("label", batch.get("labels"))
        else:
            x, y = batch, None
        if not isinstance(x, (torch.Tensor, np.ndarray)):
            raise param_error("stimuli", func, "a DataLoader whose batches are tensors or (images, labels)",
                              f"batch {b} holding {type(x).__name__}",
                              "add transforms.ToTensor() (and Normalize) to the dataset")
        xs.append(torch.as_tensor(x))
        if y is not None:
            ys.append((y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)).reshape(-1))
    if not xs:
        raise param_error("stimuli", func, "a DataLoader yielding at least one batch", "an empty DataLoader")
    if ys and len(ys) != len(xs):
        raise param_error("stimuli", func, "batches that all carry labels, or none", "a DataLoader mixing both")
    classes = getattr(dataset, "classes", None)
    classes = [str(c) for c in classes] if isinstance(classes, (list, tuple)) else None
    return torch.cat(xs), (np.concatenate(ys) if ys else None), classes


def as_stimulus_set(stimuli, preprocess=None, *, model=None, labels=None, class_names=None,
                    name: str | None = None, func: str = "as_stimulus_set") -> StimulusSet:
    """A :class:`StimulusSet` from a StimulusSet (returned as is), a tensor, an array or a DataLoader.

    Parameters
    ----------
    stimuli : StimulusSet, torch.Tensor, ndarray, DataLoader or Dataset
        * float ``(N, 3, H, W)`` (tensor or array): the network input, used exactly as given (already
          resized and normalised, as ``model(x)`` would take it); pixels for pixel features are
          recovered by inverting the preprocessing;
        * uint8 ``(N, H, W, 3)`` or ``(N, 3, H, W)``: RGB pixels, resized / centre-cropped and
          normalised by the preprocessing (like images read from a folder);
        * a ``torch.utils.data.DataLoader`` (or a ``Dataset``, read in order) yielding ``(images,
          labels)`` batches (or images alone) of either kind above; the batches are read once and
          held in memory; ``dataset.classes`` gives the class names. Use ``shuffle=False``.
    preprocess : Preprocess, "imagenet", "caffe" or dict, optional
        How pixels become input (see :func:`netphys.models.as_preprocess`). Default: the one
        :func:`~netphys.models.load_model` recorded for ``model``, else ImageNet normalisation at the
        images' own size.
    model : nn.Module, optional
        Source of the default preprocessing.
    labels : sequence of int or str, optional
        One per image (overrides labels from a DataLoader); default -1 (unlabelled).
    class_names : sequence of str, optional
    name : str, optional
        Name of the set (``"tensor"``, ``"images"`` or ``"dataloader"`` by default).
    func : str
        Function named in errors (``record`` when called from it).

    Returns
    -------
    StimulusSet
        A :class:`TensorStimulusSet` for float input.

    Raises
    ------
    NetphysError
        Any other type, shape or dtype (float images must be ``(N, 3, H, W)``), non-square or
        non-finite input, an empty loader, or labels of the wrong length.
    """
    if isinstance(stimuli, StimulusSet):
        return stimuli
    pre = _default_preprocess(preprocess, model, func)
    kind = "tensor"
    if not isinstance(stimuli, (torch.Tensor, np.ndarray)):
        from torch.utils.data import DataLoader, Dataset

        if not isinstance(stimuli, (DataLoader, Dataset)):
            raise _refuse(stimuli, func)
        stimuli, loader_labels, loader_classes = _from_batches(stimuli, func)
        kind = "dataloader"
        if labels is None:
            labels = loader_labels
        if class_names is None and loader_classes is not None and labels is not None:
            class_names = loader_classes
    x = stimuli.detach().cpu() if isinstance(stimuli, torch.Tensor) else torch.from_numpy(np.asarray(stimuli))
    if x.ndim != 4 or 3 not in (x.shape[1], x.shape[-1]) or x.shape[0] == 0:
        raise _refuse(stimuli, func, f"got shape {tuple(x.shape)}")
    if x.dtype == torch.uint8:
        a = x.numpy()
        if a.shape[-1] != 3:
            a = np.transpose(a, (0, 2, 3, 1))
        return _from_pixels(a, pre, labels, class_names, name or ("images" if kind == "tensor" else kind), func)
    if x.dtype.is_floating_point and x.shape[1] == 3:
        return _from_input(x, pre, labels, class_names, name or kind, func)
    raise _refuse(stimuli, func, f"got dtype {x.dtype} and shape {tuple(x.shape)}; float images must be "
                  "(N, 3, H, W) network input")


__all__ = ["as_stimulus_set", "TensorStimulusSet"]
