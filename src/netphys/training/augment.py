"""Data augmentation of in-memory uint8 image batches, and label corruption.

Every augmentation is a small frozen object called as ``augment(images, generator)`` on a batch of
uint8 images ``(n, C, H, W)``; all randomness comes from the ``torch.Generator`` passed in, so a
training run is reproduced by its seed. :func:`netphys.training.fit` takes any callable of that
shape, a user's own included.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .._random import check_random_state
from .._validation import check_int, param_error

__all__ = ["PadCropFlip", "ShiftFlip", "corrupt_labels"]


def _check_batch(images, func: str) -> torch.Tensor:
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        got = f"shape {tuple(images.shape)}" if hasattr(images, "shape") else type(images).__name__
        raise param_error("images", func, "a torch.Tensor batch of shape (n, C, H, W)", got)
    return images


@dataclass(frozen=True)
class PadCropFlip:
    """Random crop from a reflect-padded image and a random horizontal flip (the default model's).

    Parameters
    ----------
    pad : int, default 6
        Each image is reflect-padded by ``pad`` pixels on every side and an ``H x W`` window is cut
        at a uniformly random offset in ``[0, 2 pad]`` along each axis; then, with probability
        1/2, it is mirrored left-right.

    Notes
    -----
    Called as ``PadCropFlip(pad)(images, generator)`` on uint8 ``(n, C, H, W)``; returns float32
    in the same 0-255 range (the padding runs in floating point). Draws, from ``generator``, the
    ``n`` row offsets, the ``n`` column offsets, then the ``n`` flips.
    """

    pad: int = 6

    def __post_init__(self):
        check_int(self.pad, "pad", "PadCropFlip", min_value=0)

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        x = _check_batch(images, "PadCropFlip")
        n, _, h, w = x.shape
        pad = self.pad
        if pad >= min(h, w):
            raise param_error("pad", "PadCropFlip", f"an int < the image side ({min(h, w)}) for reflect padding",
                              pad)
        xp = F.pad(x.float(), (pad, pad, pad, pad), mode="reflect")
        oy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
        ox = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
        rows = oy[:, None] + torch.arange(h)[None, :]  # n, h
        cols = ox[:, None] + torch.arange(w)[None, :]  # n, w
        flip = torch.rand(n, generator=generator) < 0.5
        cols = torch.where(flip[:, None], cols.flip(1), cols)
        b = torch.arange(n)[:, None, None]
        out = xp.permute(0, 2, 3, 1)[b, rows[:, :, None], cols[:, None, :]]  # n, h, w, c
        return out.permute(0, 3, 1, 2)


@dataclass(frozen=True)
class ShiftFlip:
    """Keras-style augmentation: random integer shifts with edge pixels repeated, and flips.

    Parameters
    ----------
    shift : float, default 0.1
        Largest shift as a fraction of the image height: each image moves by independent integer
        ``dx, dy`` uniform in ``[-s, s]`` with ``s = round(shift * H)`` (Keras'
        ``width_shift_range``/``height_shift_range`` with ``fill_mode="nearest"``). 0: no shift.
    flip : bool, default True
        Mirror each image left-right with probability 1/2 (Keras' ``horizontal_flip``).

    Notes
    -----
    Called as ``ShiftFlip(...)(images, generator)`` on uint8 ``(n, C, H, W)``; returns uint8.
    Draws ``dx`` then ``dy`` (only when ``s > 0``), then the flips (only when ``flip``).

    References
    ----------
    J. Ukita, ICLR 2019 submission, appendix A.1 (the augmentation of the orientation experiments).
    """

    shift: float = 0.1
    flip: bool = True

    def __post_init__(self):
        ok = isinstance(self.shift, numbers.Real) and not isinstance(self.shift, bool) and 0 <= self.shift < 0.5
        if not ok:
            raise param_error("shift", "ShiftFlip", "a fraction in [0, 0.5)", self.shift)
        if not isinstance(self.flip, (bool, np.bool_)):
            raise param_error("flip", "ShiftFlip", "a bool", self.flip)

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        from ..interventions.invariance import shift_images

        x = _check_batch(images, "ShiftFlip")
        n, _, h, _ = x.shape
        s = int(round(self.shift * h))
        if s > 0:
            dx = torch.randint(-s, s + 1, (n,), generator=generator)
            dy = torch.randint(-s, s + 1, (n,), generator=generator)
            x = shift_images(x, dx, dy, fill="nearest")
        if self.flip:
            flip = torch.rand(n, generator=generator) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        return x


def corrupt_labels(labels, rate: float, n_classes: int, random_state=0) -> np.ndarray:
    """Zhang et al. (2017) label corruption.

    Parameters
    ----------
    labels : array-like of int, shape (n,)
    rate : float in [0, 1]
        Probability that a label is replaced by a class drawn uniformly from all ``n_classes`` (it
        may stay the same by chance, so the expected fraction changed is ``rate (1 - 1/n_classes)``).
    n_classes : int >= 1
    random_state : None, int, SeedSequence or numpy Generator, default 0

    Returns
    -------
    numpy.ndarray of int64, shape (n,)
        A new array; ``labels`` is not modified.

    References
    ----------
    C. Zhang, S. Bengio, M. Hardt, B. Recht and O. Vinyals, "Understanding deep learning requires
    rethinking generalization", ICLR 2017.
    """
    func = "corrupt_labels"
    if not isinstance(rate, numbers.Real) or isinstance(rate, bool) or not 0 <= rate <= 1:
        raise param_error("rate", func, "a number in [0, 1]", rate)
    n_classes = check_int(n_classes, "n_classes", func, min_value=1)
    rng = check_random_state(random_state, func)
    y = np.array(labels, dtype=np.int64, copy=True)
    hit = rng.random(y.size) < rate
    y[hit] = rng.integers(0, n_classes, int(hit.sum()))
    return y
