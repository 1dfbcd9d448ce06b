"""Shift invariance of single units: coefficient of variation of a unit's response under small
translations of the images that drive it best (Ukita 2019, section 3.5, after Goodfellow et al. 2009).
"""
from __future__ import annotations

import logging
import numbers

import numpy as np
import pandas as pd
import torch
import xarray as xr
from torch import nn

from .._validation import check_choice, check_int, param_error
from ..recording import provenance, record, sample_units
from ..stimuli import StimulusSet

log = logging.getLogger(__name__)

__all__ = ["shift_images", "shifted", "shift_invariance", "cv_by_layer", "DIRECTIONS"]

#: The three shifts of the paper: (dx, dy) as multiples of the shift in pixels.
DIRECTIONS = {"horizontal": (1, 0), "vertical": (0, 1), "both": (1, 1)}


def shift_images(images, dx, dy, *, fill: str = "nearest"):
    """Translate images by whole pixels, filling the uncovered border.

    Parameters
    ----------
    images : ndarray (n, H, W[, C]) or torch.Tensor (n, C, H, W)
        A numpy array is indexed as (image, row, col, ...) (the layout of
        :meth:`StimulusSet.load_images`); a tensor as (image, channel, row, col).
    dx, dy : int or array-like of int, shape (n,)
        Shift to the right (``dx > 0``) and down (``dy > 0``) in pixels, per image or for all.
    fill : {"nearest", "constant"}, default "nearest"
        ``"nearest"`` repeats the edge pixels (Keras' default ``fill_mode``, used by the paper's
        augmentation); ``"constant"`` fills with 0.

    Returns
    -------
    Same type, shape and dtype as ``images``.

    Raises
    ------
    NetphysError
        For an unknown ``fill`` or shifts of the wrong shape.
    """
    func = "shift_images"
    check_choice(fill, "fill", func, ("nearest", "constant"))
    is_torch = isinstance(images, torch.Tensor)
    x = images if is_torch else torch.from_numpy(np.ascontiguousarray(images))
    if x.ndim not in (3, 4):
        raise param_error("images", func, "a batch of images (3-D or 4-D)", f"shape {tuple(x.shape)}")
    n = x.shape[0]
    if is_torch:
        h, w = x.shape[-2], x.shape[-1]
    else:
        h, w = x.shape[1], x.shape[2]

    def per_image(v, name):
        t = torch.as_tensor(np.broadcast_to(np.asarray(v, dtype=np.int64), (n,)).copy()) \
            if not isinstance(v, torch.Tensor) else v.to(torch.int64).expand(n)
        if t.shape != (n,):
            raise param_error(name, func, f"an int or {n} ints (one per image)", f"shape {tuple(t.shape)}")
        return t.to(x.device)

    try:
        sx, sy = per_image(dx, "dx"), per_image(dy, "dy")
    except ValueError:
        raise param_error("dx", func, f"an int or {n} ints (one per image)", (dx, dy)) from None
    rows = torch.arange(h, device=x.device)[None, :] - sy[:, None]  # (n, h) source row
    cols = torch.arange(w, device=x.device)[None, :] - sx[:, None]  # (n, w)
    valid = ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :]
    rows_c, cols_c = rows.clamp(0, h - 1), cols.clamp(0, w - 1)
    b = torch.arange(n, device=x.device)[:, None, None]
    if is_torch:  # (n, c, h, w)
        out = x.permute(0, 2, 3, 1)[b, rows_c[:, :, None], cols_c[:, None, :]].permute(0, 3, 1, 2)
        if fill == "constant":
            out = out * valid[:, None].to(out.dtype)
        return out.contiguous()
    out = x[b, rows_c[:, :, None], cols_c[:, None, :]]  # (n, h, w, ...)
    if fill == "constant":
        mask = valid.reshape(valid.shape + (1,) * (out.ndim - 3))
        out = out * mask.to(out.dtype)
    return out.numpy()


def shifted(stimuli: StimulusSet, dx: int, dy: int, *, fill: str = "nearest") -> StimulusSet:
    """A copy of ``stimuli`` (in memory) translated by ``(dx, dy)`` pixels; coordinates are kept."""
    imgs = shift_images(stimuli.load_images(), dx, dy, fill=fill)
    out = StimulusSet(stimuli.coords.copy(), stimuli.preprocess, images=np.ascontiguousarray(imgs),
                      class_names=stimuli.class_names, name=f"{stimuli.name}+shift({dx},{dy})",
                      attrs=dict(stimuli.attrs))
    out.attrs.update(shift_dx=int(dx), shift_dy=int(dy))
    return out


def _unit_cv(base: np.ndarray, moved: np.ndarray, threshold: float):
    """Per unit: mean over its best images of the CV of (base, moved); and the number of images.

    base, moved: (n_image, n_unit). A unit's best images are those with ``base > threshold * max``
    (max over images, > 0); the CV of the pair is ``std / mean`` (population std), i.e.
    ``|a - b| / (a + b)``, and is 0 when both are 0.
    """
    peak = base.max(axis=0)
    active = peak > 0
    sel = (base > threshold * peak[None, :]) & active[None, :]
    pair = np.stack([base, moved], axis=0)
    mean = pair.mean(axis=0)
    std = pair.std(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        cv = np.where(mean != 0, std / np.abs(mean), 0.0)
    n_img = sel.sum(axis=0)
    with np.errstate(invalid="ignore"):
        out = np.where(n_img > 0, (cv * sel).sum(axis=0) / np.maximum(n_img, 1), np.nan)
    return out, n_img


def shift_invariance(model: nn.Module, stimuli: StimulusSet, layers=None, units=250, *,
                     shift: float = 0.1, directions=("horizontal", "vertical", "both"),
                     threshold: float = 0.9, site: str = "post", fill: str = "nearest",
                     random_state=0, batch_size: int = 256, device=None,
                     progress: bool = False) -> xr.Dataset:
    """Coefficient of variation of single units under 10% shifts of their best images.

    Parameters
    ----------
    model : nn.Module
        Any network; run in eval mode (mode and device are restored). Interventions active around
        the call (e.g. :func:`~netphys.interventions.ablate_units`) apply.
    stimuli : StimulusSet
        Test images (all held in memory for the shifts).
    layers : list of str, optional
        Default all conv and FC layers.
    units : int, "all" or DataFrame
        Units per layer (a conv unit is one (channel, row, col) of the map, as in the paper) or a
        unit table, as in :func:`netphys.recording.record`. Re-use ``unit_table`` of a result to
        compare networks on the same units.
    shift : float, default 0.1
        Shift as a fraction of the image side (rounded to whole pixels, at least 1).
    directions : sequence of {"horizontal", "vertical", "both"}
        Right, down, and right-and-down shifts.
    threshold : float, default 0.9
        A unit's images are those driving it above ``threshold`` times its maximum over
        ``stimuli``.
    site : {"post", "pre"}, default "post"
    fill : {"nearest", "constant"}, default "nearest"
    random_state : int, Generator or SeedSequence
        Seed of the unit sampling.
    batch_size : int
    device : str or torch.device, optional
    progress : bool

    Returns
    -------
    xarray.Dataset, dims (unit, direction)
        ``cv``: mean CV over the unit's best images (NaN for units silent on every image);
        ``n_images``: how many images entered; unit coordinates as in
        :func:`~netphys.recording.record`; provenance, ``shift_px`` and ``threshold`` in attrs.

    Raises
    ------
    NetphysError
        For invalid arguments (messages of :func:`~netphys.recording.record` for layers/units).

    Notes
    -----
    For unit ``i`` with responses ``a_n`` to image ``n`` and ``b_n`` to its shifted copy, and
    ``S_i = {n : a_n > threshold * max_m a_m}``,

    .. math:: \\mathrm{CV}_i = \\frac{1}{|S_i|}\\sum_{n \\in S_i}
              \\frac{\\mathrm{std}(a_n, b_n)}{\\mathrm{mean}(a_n, b_n)}
              = \\frac{1}{|S_i|}\\sum_{n \\in S_i} \\frac{|a_n - b_n|}{a_n + b_n}

    for non-negative responses. Lower is more shift-invariant. The best images are chosen in the
    network being measured (an ablated network has its own).

    References
    ----------
    J. Ukita, ICLR 2019 submission, section 3.5 and Fig. 6; I. Goodfellow, H. Lee, Q. Le, A. Saxe
    and A. Ng, "Measuring invariances in deep networks", NeurIPS 2009.
    """
    func = "shift_invariance"
    if not isinstance(stimuli, StimulusSet):
        raise param_error("stimuli", func, "a netphys StimulusSet", type(stimuli).__name__)
    ok = isinstance(shift, numbers.Real) and not isinstance(shift, bool) and 0 < shift < 1
    if not ok:
        raise param_error("shift", func, "a fraction in (0, 1) of the image side", shift)
    ok = isinstance(threshold, numbers.Real) and not isinstance(threshold, bool) and 0 <= threshold < 1
    if not ok:
        raise param_error("threshold", func, "a number in [0, 1)", threshold)
    if isinstance(directions, str):
        directions = (directions,)
    directions = tuple(directions)
    if not directions:
        raise param_error("directions", func, "a non-empty sequence of 'horizontal', 'vertical', 'both'",
                          directions)
    for d in directions:
        check_choice(d, "directions", func, tuple(DIRECTIONS))
    batch_size = check_int(batch_size, "batch_size", func, min_value=1)
    px = max(1, int(round(shift * stimuli.size)))
    if isinstance(units, pd.DataFrame):
        table = units
    else:
        table = sample_units(model, layers, units, input_size=stimuli.size, random_state=random_state,
                             allow_fewer=True)
    base = record(model, stimuli, units=table, site=site, batch_size=batch_size, device=device,
                  progress=progress)
    cv = np.full((base.sizes["unit"], len(directions)), np.nan)
    n_img = np.zeros(cv.shape, dtype=np.int64)
    a = base.values.astype(np.float64)
    for j, d in enumerate(directions):
        ux, uy = DIRECTIONS[d]
        moved = record(model, shifted(stimuli, ux * px, uy * px, fill=fill), units=table, site=site,
                       batch_size=batch_size, device=device, progress=progress)
        cv[:, j], n_img[:, j] = _unit_cv(a, moved.values.astype(np.float64), threshold)
    unit_coords = {k: v for k, v in base.coords.items() if v.dims == ("unit",)}
    ds = xr.Dataset({"cv": (("unit", "direction"), cv), "n_images": (("unit", "direction"), n_img)},
                    coords={**unit_coords, "direction": list(directions)},
                    attrs=provenance(model, site=site, shift=float(shift), shift_px=px,
                                     threshold=float(threshold), fill=fill, stimuli=stimuli.to_dict()))
    ds["cv"].attrs.update(long_name="coefficient of variation under shift", units="1")
    return ds


def cv_by_layer(result: xr.Dataset) -> pd.DataFrame:
    """Mean, SEM and count of the finite unit CVs per layer and direction (and over directions).

    Returns
    -------
    pandas.DataFrame
        Columns ``layer``, ``direction`` (``"all"``: mean of a unit's directions), ``mean``, ``sem``,
        ``n_units``; layers in their recorded order.
    """
    if not isinstance(result, xr.Dataset) or "cv" not in result:
        raise param_error("result", "cv_by_layer", "the Dataset of shift_invariance", type(result).__name__)
    layers = list(dict.fromkeys(result["layer"].values.tolist()))
    rows = []
    dirs = list(result["direction"].values) + ["all"]
    for l in layers:
        sel = result["layer"].values == l
        for d in dirs:
            v = (result["cv"].values[sel].mean(axis=1) if d == "all"
                 else result["cv"].sel(direction=d).values[sel])
            v = v[np.isfinite(v)]
            n = v.size
            rows.append({"layer": l, "direction": d, "mean": float(v.mean()) if n else np.nan,
                         "sem": float(v.std(ddof=1) / np.sqrt(n)) if n > 1 else np.nan, "n_units": n})
    return pd.DataFrame(rows)
