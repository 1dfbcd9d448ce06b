"""Static sinusoidal gratings for orientation-tuning experiments.

Conventions
-----------
Pixel axes
    ``x`` is the first array axis (the row index ``i``, pointing down the displayed image) and ``y``
    the second (the column index ``j``, pointing right), as in the reference implementation of
    Ukita (2019). The centre ``(x0, y0) = ((size - 1) / 2, (size - 1) / 2)`` is the geometric centre
    of the image, so rotations are about the image centre and every orientation shares the same
    phase at the centre.
Orientation ``theta`` (degrees)
    The direction of the grating's wave vector (the direction along which luminance changes),
    measured counter-clockwise from the rightward horizontal of the *displayed* image. The stripes
    run at ``theta + 90`` degrees: ``theta = 0`` gives vertical stripes, ``theta = 90`` horizontal
    stripes, ``theta = 45`` stripes along the main diagonal (top-left to bottom-right). Orientation
    lives on a 180-degree circle (``theta`` and ``theta + 180`` give the same grating up to phase).
Phase ``tau`` (degrees)
    The phase of the cosine at the image centre; ``tau = 0`` puts a bright stripe through the centre,
    ``tau = 180`` a dark one.
Spatial frequency ``sf`` (cycles per image)
    The number of cycles across the image width (``size`` pixels). The paper's
    ``k0 = 2 * pi * sf / size`` is in radians per pixel; :func:`sf_to_k0` and :func:`k0_to_sf`
    convert. The Nyquist limit is ``sf = size / 2`` (``k0 = pi``).
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from .._validation import check_choice, check_int, param_error
from .preprocess import Preprocess
from .stimulus_set import StimulusSet

__all__ = ["GratingGrid", "grating_images", "gratings", "paper_grid", "sf_to_k0", "k0_to_sf",
           "PAPER_SIZES"]

#: Input sizes (pixels) of the networks for which the paper used each grid.
PAPER_SIZES = {"small": 32, "imagenet": 224}
#: Number of spatial frequencies in the paper's grids (Ukita 2019, section 2.1).
_PAPER_N_SF = {"small": 9, "imagenet": 57}


def sf_to_k0(sf, size: int):
    """Convert spatial frequency in cycles per image to the paper's ``k0`` in radians per pixel.

    ``k0 = 2 * pi * sf / size``.
    """
    return 2.0 * np.pi * np.asarray(sf, dtype=float) / size


def k0_to_sf(k0, size: int):
    """Convert the paper's ``k0`` (radians per pixel) to cycles per image: ``sf = k0 * size / (2 pi)``."""
    return np.asarray(k0, dtype=float) * size / (2.0 * np.pi)


def _as_1d(values, param: str, func: str, *, min_value: float | None = None,
           max_value: float | None = None, what: str = "numbers") -> np.ndarray:
    """Validate a non-empty 1-D sequence of finite numbers without duplicates."""
    try:
        a = np.atleast_1d(np.asarray(values, dtype=float))
    except (TypeError, ValueError):
        raise param_error(param, func, f"a 1-D sequence of {what}", values) from None
    if a.ndim != 1 or a.size == 0:
        raise param_error(param, func, f"a non-empty 1-D sequence of {what}", values)
    if not np.all(np.isfinite(a)):
        raise param_error(param, func, f"finite {what} (no NaN or inf)", values)
    if min_value is not None and np.any(a < min_value):
        raise param_error(param, func, f"{what} >= {min_value:g}", values)
    if max_value is not None and np.any(a > max_value):
        raise param_error(param, func, f"{what} <= {max_value:g}", values)
    if np.unique(a).size != a.size:
        raise param_error(param, func, f"distinct {what} (no duplicates)", values)
    return a


def _check_contrast(contrast, func: str) -> float:
    ok = isinstance(contrast, numbers.Real) and not isinstance(contrast, bool) and 0 <= contrast <= 1
    if not ok:
        raise param_error("contrast", func, "a number in [0, 1]", contrast)
    return float(contrast)


def grating_images(orientations, phases, sfs, size: int, contrast: float = 1.0, *,
                   dtype=np.float64) -> np.ndarray:
    """Full-field static sinusoidal gratings on the (orientation, phase, sf) grid.

    Parameters
    ----------
    orientations : float or sequence of float
        Orientations ``theta`` in degrees (direction of the wave vector, counter-clockwise from the
        displayed horizontal; see the module notes).
    phases : float or sequence of float
        Phases ``tau`` in degrees at the image centre.
    sfs : float or sequence of float
        Spatial frequencies in cycles per image, in ``[0, size / 2]`` (0 gives a uniform image,
        ``size / 2`` is the Nyquist limit).
    size : int
        Image height and width in pixels.
    contrast : float, default 1.0
        Michelson contrast in ``[0, 1]``.
    dtype : numpy dtype, default float64

    Returns
    -------
    ndarray, shape (n_orientation, n_phase, n_sf, size, size)
        Luminance in ``[0, 1]`` with mean luminance 0.5.

    Raises
    ------
    NetphysError
        If ``size`` is not an int >= 2, a frequency is negative or above Nyquist, ``contrast`` is
        outside ``[0, 1]``, or a grid axis is empty, non-finite or has duplicates.

    Notes
    -----
    Each image is ``I(x, y) = 0.5 + 0.5 * contrast * G(x, y)`` with (Ukita 2019, eq. 1)

    .. math::

        G(x, y) = \\cos(k_0 y' + \\tau), \\qquad
        y' = -(x - x_0)\\sin\\theta + (y - y_0)\\cos\\theta,

    ``x`` the row index, ``y`` the column index, ``(x0, y0)`` the image centre and
    ``k0 = 2 pi sf / size`` radians per pixel. Every image therefore has luminance ``0.5`` on
    average over phases (pixel by pixel, for 4 phases 90 degrees apart) and exactly ``[0.5 - c/2,
    0.5 + c/2]`` as its range whenever at least one full cycle fits in the image. The reference
    code instead min-max normalises each grating to ``[0, 1]``, which differs only for gratings with
    less than one cycle; the form used here keeps contrast and mean luminance fixed.

    References
    ----------
    J. Ukita, "Causal importance of orientation selectivity for generalization in image
    recognition", ICLR 2019 submission (OpenReview); Neural Networks 127 (2020). Reference code:
    github.com/ukky17/ori_selectivity_CNN, ``grating.py``.
    """
    func = "grating_images"
    size = check_int(size, "size", func, min_value=2)
    thetas = np.deg2rad(_as_1d(orientations, "orientations", func, what="angles in degrees"))
    taus = np.deg2rad(_as_1d(phases, "phases", func, what="angles in degrees"))
    sf = _as_1d(sfs, "sfs", func, min_value=0.0, max_value=size / 2,
                what="spatial frequencies in cycles per image")
    contrast = _check_contrast(contrast, func)
    k0 = sf_to_k0(sf, size)
    c = (size - 1) / 2.0
    x = (np.arange(size, dtype=float) - c)[:, None]  # rows
    y = (np.arange(size, dtype=float) - c)[None, :]  # columns
    out = np.empty((thetas.size, taus.size, sf.size, size, size), dtype=dtype)
    for o, th in enumerate(thetas):
        yp = -x * np.sin(th) + y * np.cos(th)  # (size, size)
        arg = k0[:, None, None] * yp[None]  # (n_sf, size, size)
        for p, tau in enumerate(taus):
            out[o, p] = 0.5 + 0.5 * contrast * np.cos(arg + tau)
    # guard the [0, 1] range against rounding (cos can return 1 + 1 ulp on some platforms)
    np.clip(out, 0.0, 1.0, out=out)
    return out


@dataclass(frozen=True)
class GratingGrid:
    """A grid of grating parameters.

    Attributes
    ----------
    orientations : tuple of float
        Degrees.
    phases : tuple of float
        Degrees.
    sfs : tuple of float
        Cycles per image.
    name : str
        A label recorded with the stimuli (e.g. ``"small"``).
    """

    orientations: tuple
    phases: tuple
    sfs: tuple
    name: str = "custom"

    def __post_init__(self):
        func = "GratingGrid"
        for field_name in ("orientations", "phases", "sfs"):
            a = _as_1d(getattr(self, field_name), field_name, func,
                       min_value=0.0 if field_name == "sfs" else None)
            object.__setattr__(self, field_name, tuple(float(v) for v in a))

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(n_orientation, n_phase, n_sf)``."""
        return len(self.orientations), len(self.phases), len(self.sfs)

    @property
    def n_stimuli(self) -> int:
        """Number of gratings per contrast."""
        o, p, s = self.shape
        return o * p * s

    def k0(self, size: int) -> np.ndarray:
        """Spatial frequencies in radians per pixel for images of ``size`` pixels."""
        return sf_to_k0(self.sfs, size)

    def to_dict(self) -> dict:
        return {"name": self.name, "orientations": list(self.orientations),
                "phases": list(self.phases), "sfs": list(self.sfs), "sf_units": "cycles/image"}


def paper_grid(kind: str = "small", size: int | None = None) -> GratingGrid:
    """The grating grid of Ukita (2019).

    Parameters
    ----------
    kind : {"small", "imagenet"}
        ``"small"``: the 9 spatial frequencies used for the 7-layer CIFAR-10 CNNs (432 gratings);
        ``"imagenet"``: the 57 used for VGG-16 (2,736 gratings).
    size : int, optional
        Image size in pixels that the frequencies refer to; defaults to the paper's input size for
        ``kind`` (32 and 224).

    Returns
    -------
    GratingGrid
        12 orientations (0, 15, ..., 165 deg), 4 phases (0, 90, 180, 270 deg) and 9 or 57 spatial
        frequencies in cycles per image.

    Raises
    ------
    NetphysError
        If ``kind`` is unknown or ``size`` is not an int >= 8.

    Notes
    -----
    The paper (section 2.1) gives only the counts: 12 orientations 15 deg apart, 4 phases 90 deg
    apart, 9 SPFs for the 7-layer CNN and 57 for VGG-16. The frequency values come from the
    authors' public code (``create_gratings`` in ``grating.py`` of ukky17/ori_selectivity_CNN),
    which uses, for ``s = 1, ..., n_sf``,

    .. math:: k_0^{(s)} = \\frac{s\\,\\pi}{\\mathrm{size}/2 + 4}\\ \\text{rad/px},
              \\qquad \\mathrm{sf}^{(s)} = \\frac{s\\,\\mathrm{size}}{\\mathrm{size} + 8}
              \\ \\text{cycles/image}.

    This is a linear grid starting near one cycle per image; for the paper's pairs
    (``size``, ``n_sf``) = (32, 9) and (224, 57) it stops just below a quarter cycle per pixel
    (``k0`` = 0.45 pi and 0.49 pi rad/px, half the Nyquist frequency): 0.8, 1.6, ..., 7.2 cycles
    per image at 32 px and 0.97, 1.93, ..., 55.0 cycles per image at 224 px. For another ``size``
    the same rule is applied with the kind's number of frequencies.

    References
    ----------
    J. Ukita, "Causal importance of orientation selectivity for generalization in image
    recognition", ICLR 2019 submission, section 2.1 and Fig. A1; code at
    github.com/ukky17/ori_selectivity_CNN.
    """
    func = "paper_grid"
    kind = check_choice(kind, "kind", func, list(_PAPER_N_SF))
    size = PAPER_SIZES[kind] if size is None else check_int(size, "size", func, min_value=8)
    n_sf = _PAPER_N_SF[kind]
    s = np.arange(1, n_sf + 1, dtype=float)
    sfs = k0_to_sf(s * np.pi / (size / 2 + 4), size)
    return GratingGrid(orientations=tuple(15.0 * np.arange(12)), phases=(0.0, 90.0, 180.0, 270.0),
                       sfs=tuple(sfs), name=kind)


def _resolve_size(input_size, func: str) -> tuple[int, str | None]:
    if isinstance(input_size, str):
        kind = check_choice(input_size, "input_size", func, list(PAPER_SIZES))
        return PAPER_SIZES[kind], kind
    return check_int(input_size, "input_size", func, min_value=2), None


def _resolve_grid(grid, size: int, kind: str | None, func: str) -> GratingGrid:
    if grid is None:
        grid = kind if kind is not None else ("imagenet" if size >= PAPER_SIZES["imagenet"] else "small")
    if isinstance(grid, str):
        check_choice(grid, "grid", func, list(_PAPER_N_SF))
        return paper_grid(grid, size=size)
    if isinstance(grid, GratingGrid):
        return grid
    if isinstance(grid, Mapping):
        missing = [k for k in ("orientations", "phases", "sfs") if k not in grid]
        if missing:
            raise param_error("grid", func, "a mapping with keys 'orientations', 'phases' and 'sfs'",
                              sorted(grid), f"add {missing}")
        return GratingGrid(grid["orientations"], grid["phases"], grid["sfs"],
                           name=str(grid.get("name", "custom")))
    raise param_error("grid", func, "None, 'small', 'imagenet', a GratingGrid or a mapping with "
                      "'orientations', 'phases' and 'sfs'", grid)


def gratings(input_size=32, grid=None, preprocess: Preprocess | None = None, *,
             contrast: float | Sequence[float] = 1.0, name: str | None = None, model_size=None) -> StimulusSet:
    """Gratings as a :class:`~netphys.stimuli.StimulusSet` ready to be recorded.

    Parameters
    ----------
    input_size : int or {"small", "imagenet"}, default 32
        Input size of the network in pixels (``"small"`` = 32, ``"imagenet"`` = 224). ``model_size=`` is a
        deprecated alias.
    grid : None, {"small", "imagenet"}, GratingGrid or mapping, optional
        The parameter grid. A string gives :func:`paper_grid` at ``input_size``; a mapping needs
        ``orientations`` (deg), ``phases`` (deg) and ``sfs`` (cycles per image). ``None`` uses the
        paper's grid for the network: ``input_size``'s kind when it is a string, otherwise
        ``"imagenet"`` for inputs of 224 px or more and ``"small"`` below.
    preprocess : Preprocess, optional
        How the network normalises its input; its ``crop`` must equal ``input_size``. Defaults to
        ImageNet mean/std normalisation at ``input_size``.
    contrast : float or sequence of float, default 1.0
        Michelson contrast(s) in ``[0, 1]``; several contrasts repeat the grid once per contrast.
    name : str, optional

    Returns
    -------
    StimulusSet
        One grayscale grating per (contrast, orientation, phase, sf), in that (C) order, replicated
        to RGB and stored as uint8. Coordinate columns: ``orientation`` (deg), ``phase`` (deg),
        ``sf`` (cycles per image) and ``contrast``; ``label`` is -1. ``attrs`` records the grid,
        ``size`` and ``sf_units``.

    Raises
    ------
    NetphysError
        For an unknown ``input_size`` or ``grid``, a frequency above Nyquist (``input_size / 2``), a
        contrast outside ``[0, 1]``, or a ``preprocess`` whose crop differs from ``model_size``.

    Notes
    -----
    Luminance is quantised to 8 bits (steps of 1/255) by the stimulus set. With the paper's grid at
    224 px the set holds 2,736 RGB images (about 410 MB).

    References
    ----------
    J. Ukita, "Causal importance of orientation selectivity for generalization in image
    recognition", ICLR 2019 submission, section 2.1.
    """
    func = "gratings"
    if model_size is not None:
        import warnings

        warnings.warn("gratings(model_size=...) is deprecated; use input_size=", DeprecationWarning, stacklevel=2)
        input_size = model_size
    size, kind = _resolve_size(input_size, func)
    g = _resolve_grid(grid, size, kind, func)
    if max(g.sfs) > size / 2:
        raise param_error("grid", func, f"spatial frequencies <= {size / 2:g} cycles per image (the "
                          f"Nyquist limit at {size} px)", max(g.sfs), "lower the frequencies")
    contrasts = _as_1d(contrast, "contrast", func, min_value=0.0, max_value=1.0, what="contrasts")
    if preprocess is not None and not isinstance(preprocess, Preprocess):
        raise param_error("preprocess", func, "a Preprocess or None", preprocess)
    if preprocess is not None and preprocess.crop != size:
        raise param_error("preprocess", func, f"a Preprocess with crop == input_size ({size})",
                          preprocess.crop, "build the gratings at the network's input size")
    n_o, n_p, n_s = g.shape
    n = contrasts.size * g.n_stimuli
    images = np.empty((n, size, size), dtype=np.uint8)
    rows = {"orientation": [], "phase": [], "sf": [], "contrast": []}
    i = 0
    for c in contrasts:
        for o, theta in enumerate(g.orientations):
            # one orientation at a time keeps the float temporaries small at 224 px
            block = grating_images([theta], g.phases, g.sfs, size, float(c), dtype=np.float32)[0]
            images[i:i + n_p * n_s] = np.round(block.reshape(n_p * n_s, size, size) * 255.0)
            for tau in g.phases:
                for sf in g.sfs:
                    rows["orientation"].append(theta)
                    rows["phase"].append(tau)
                    rows["sf"].append(sf)
                    rows["contrast"].append(float(c))
            i += n_p * n_s
    stim = StimulusSet.from_arrays(images, coords=rows, preprocess=preprocess,
                                   name=name or f"gratings-{g.name}-{size}px")
    stim.attrs.update({"stimulus": "grating", "grid": g.name, "size": size,
                       "sf_units": "cycles/image", "orientation_units": "deg", "phase_units": "deg",
                       "grid_params": g.to_dict()})
    return stim
