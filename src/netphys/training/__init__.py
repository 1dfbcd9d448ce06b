"""Training: one loop (:func:`fit`), augmentations, in-memory labelled splits and evaluation.

.. code-block:: python

    from netphys.training import fit, load_imagenette, ShiftFlip, evaluate, split_stimuli

    data = load_imagenette("imagenette-64", 32, max_train=2000)
    result = fit(model, data, epochs=10, augment=ShiftFlip(0.1), checkpoint="val_top1")
    evaluate(model, split_stimuli(data, "test"))      # {"loss": ..., "top1": ..., "n": ...}
"""
from .augment import PadCropFlip, ShiftFlip, corrupt_labels
from .data import check_splits, load_imagenette, load_splits, save_splits, split_stimuli
from .evaluate import evaluate
from .loop import CHECKPOINTS, FitResult, OneCycle, fit

__all__ = ["fit", "FitResult", "OneCycle", "CHECKPOINTS", "PadCropFlip", "ShiftFlip", "corrupt_labels",
           "load_imagenette", "check_splits", "split_stimuli", "save_splits", "load_splits", "evaluate"]
