"""The Prune-and-distill selection rule: the strongest units, and for each the strongest images."""
from __future__ import annotations

import numpy as np

from .._validation import check_int, param_error

__all__ = ["select_top", "take_selected"]


def select_top(strength, n_units: int, n_images: int):
    """Keep the ``n_units`` units with the largest mean strength, and per unit its ``n_images`` images.

    Parameters
    ----------
    strength : array_like, shape (n_stimuli, n_total_units)
        E.g. the orientation strength xi or the corner strength zeta of each unit's RF patch.
    n_units, n_images : int
        200/500 (orientation) and 200/400 (corner) in the paper; capped at what is available.

    Returns
    -------
    units : ndarray, shape (n_units,)
        Column positions of the kept units, sorted.
    images : ndarray, shape (n_images, n_units)
        Row positions of the images kept for each kept unit (strongest first).

    Notes
    -----
    Ties are broken by position (stable sort), so the rule is deterministic.

    References
    ----------
    Prune and distill, section 2.3 (``shared/seeds/prune-and-distill.txt``).
    """
    s = np.asarray(strength, dtype=np.float64)
    if s.ndim != 2 or s.size == 0:
        raise param_error("strength", "select_top", "a non-empty (n_stimuli, n_units) array", s.shape)
    check_int(n_units, "n_units", "select_top", min_value=1)
    check_int(n_images, "n_images", "select_top", min_value=1)
    n, u = s.shape
    n_units, n_images = min(n_units, u), min(n_images, n)
    units = np.sort(np.argsort(-s.mean(axis=0), kind="stable")[:n_units])
    images = np.argsort(-s[:, units], axis=0, kind="stable")[:n_images]
    return units, images


def take_selected(values, units, images):
    """``values[images[:, j], units[j]]`` for every kept unit j: shape (n_images, n_units[, ...])."""
    v = np.asarray(values)
    sub = v[:, units]
    idx = images if sub.ndim == 2 else images.reshape(images.shape + (1,) * (sub.ndim - 2))
    return np.take_along_axis(sub, idx, axis=0)
