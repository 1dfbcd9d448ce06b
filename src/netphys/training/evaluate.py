"""Loss and top-1 accuracy of a classifier on labelled images."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .._validation import check_int, param_error
from ..stimuli import Preprocess, StimulusSet

__all__ = ["evaluate"]


def evaluate(model, stimuli, labels=None, *, preprocess: Preprocess | None = None, batch_size: int = 256,
             device=None) -> dict:
    """Mean cross-entropy and top-1 accuracy of ``model`` on labelled images.

    Parameters
    ----------
    model : nn.Module
        A classifier whose output is ``(n, n_classes)`` logits; run in eval mode, its mode is
        restored afterwards.
    stimuli : StimulusSet or numpy.ndarray
        A labelled stimulus set, or uint8 images ``(n, H, W, 3)`` at the model's input size
        (then ``labels`` and ``preprocess`` are required).
    labels : array-like of int, optional
        Labels of array images; for a StimulusSet, overrides its own labels.
    preprocess : Preprocess, optional
        Normalisation of array images.
    batch_size : int, default 256
    device : str or torch.device, optional
        Default: the model's device.

    Returns
    -------
    dict
        ``loss`` (mean cross-entropy, nats), ``top1`` (fraction correct) and ``n``.

    Raises
    ------
    NetphysError
        For unlabelled or empty stimuli, labels out of the model's range, or array images
        without ``labels``/``preprocess``.
    """
    func = "evaluate"
    batch_size = check_int(batch_size, "batch_size", func, min_value=1)
    if not isinstance(stimuli, StimulusSet):
        if labels is None or not isinstance(preprocess, Preprocess):
            raise param_error("stimuli", func, "a labelled StimulusSet, or uint8 images with labels= and "
                              "preprocess=", type(stimuli).__name__)
        stimuli = StimulusSet.from_arrays(np.asarray(stimuli), np.asarray(labels), preprocess=preprocess,
                                          name="eval")
        labels = None
    y_all = np.asarray(stimuli.labels if labels is None else labels)
    if len(stimuli) == 0 or y_all.shape != (len(stimuli),):
        raise param_error("labels", func, f"{len(stimuli)} labels (one per stimulus, at least one)",
                          f"shape {y_all.shape}")
    if y_all.dtype.kind not in "iu" or y_all.min() < 0:
        raise param_error("labels", func, "non-negative integer class labels",
                          f"{y_all.dtype} in [{y_all.min()}, {y_all.max()}]",
                          "unlabelled stimuli (label -1) cannot be scored")
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    correct, loss, n = 0, 0.0, 0
    labels_t = torch.as_tensor(y_all.astype(np.int64, copy=True))
    try:
        with torch.no_grad():
            for idx, x in stimuli.batches(batch_size, device=device):
                y = labels_t[idx].to(device)
                out = model(x)
                if out.ndim != 2 or int(y.max()) >= out.shape[1]:
                    raise param_error("labels", func, f"class labels in [0, {out.shape[-1]}) for a model with "
                                      f"output of shape {tuple(out.shape[1:])}", int(y.max()))
                loss += F.cross_entropy(out, y, reduction="sum").item()
                correct += (out.argmax(1) == y).sum().item()
                n += len(idx)
    finally:
        model.train(was_training)
    return {"top1": correct / n, "loss": loss / n, "n": n}
