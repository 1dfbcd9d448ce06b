"""Literal per-patch NumPy/SciPy implementation of the RF-patch features (Algorithms 1 and 2).

This module is deliberately slow and simple: one patch at a time, with ``numpy.fft``,
``scipy.ndimage.sobel``, ``scipy.ndimage.map_coordinates`` and ``scipy.signal.find_peaks``. It exists
to check :mod:`netphys.features.patch` (which must agree with it to floating-point precision) and as
the baseline of ``bench/features.py``. The conventions (angles, border handling, circular peaks) are
those documented in :mod:`netphys.features.patch`; they are re-derived here from the formulas rather
than shared, so that the tests compare two independent implementations.

References
----------
.. [1] Muratore P., Tafazoli S., Piasini E., Laio A., Zoccolan D. (2022). "Prune and distill: similar
   reformatting of image information along rat visual cortex and deep neural networks". NeurIPS 35,
   section 2.3 and Appendix A.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy import ndimage, signal

from .._validation import check_choice, param_error

__all__ = ["luminosity", "contrast", "keys_kernel", "angular_power", "circular_peaks", "orientation", "corner",
           "rf_features"]

_FEATURES = ("luminosity", "contrast", "orientation", "corner")


def _patch(patch, func: str) -> np.ndarray:
    p = np.asarray(patch, dtype=np.float64)
    if p.ndim != 2 or p.size == 0:
        raise param_error("patch", func, "a non-empty 2-D array", f"an array of shape {p.shape}")
    return p


def luminosity(patch) -> float:
    """Mean intensity of one 2-D patch."""
    return float(_patch(patch, "luminosity").mean())


def contrast(patch) -> float:
    """Mean Sobel gradient magnitude of one patch (borders replicated: ``mode='nearest'``)."""
    p = _patch(patch, "contrast")
    gy = ndimage.sobel(p, axis=0, mode="nearest")
    gx = ndimage.sobel(p, axis=1, mode="nearest")
    return float(np.hypot(gx, gy).mean())


def keys_kernel(t) -> np.ndarray:
    """Keys (1981) cubic convolution kernel with ``a = -1/2`` (Catmull-Rom spline), support ``|t| < 2``."""
    t = np.abs(np.asarray(t, dtype=np.float64))
    return np.where(t <= 1, 1.5 * t ** 3 - 2.5 * t ** 2 + 1,
                    np.where(t < 2, -0.5 * t ** 3 + 2.5 * t ** 2 - 4 * t + 2, 0.0))


def angular_power(patch, n_angles: int = 180, n_radii: int | None = None,
                  window: str | None = "hann") -> np.ndarray:
    """Angular power of one patch: |FFT2| -> log-polar (Keys cubic, periodic) -> area-weighted radial sum.

    Returns P of shape (n_angles,) on the angles ``180 k / n_angles`` degrees (gradient direction,
    counter-clockwise on screen, as in :mod:`netphys.stimuli.gratings`).
    ``window`` is "hann" (strictly positive Hann taper, window-weighted mean removed) or None.

    Where Algorithm 1 of [1]_ leaves the choice open ("FFT2D -> to_logpolar -> sum along the radius"),
    this implementation decides as follows (measured reasons in :func:`netphys.features.angular_power`):

    * log-polar resampling of the amplitude: the FFT of the patch zero-padded to ``n s`` along each
      side ``n``, ``s = min(8, max(2, ceil(64 / n)))`` (the exact DTFT at half frequency steps or
      finer), interpolated with the Keys cubic kernel, periodic; the
      paper names no grid or interpolation (bilinear interpolation of the plain FFT made theta* of
      white noise land on 0 or 90 degrees 7-15x more often than chance);
    * radii: ``n_radii`` log-spaced radii across the annulus ``[m, 0.5 - m]`` cycles/pixel,
      ``m = min(2 / min(h, w), 1/8)`` (the paper gives no limits; this leaves out the window's main
      lobe around DC and the real-valued Nyquist points);
    * "sum along the radius": the paper calls the result "the total amount of power present in a
      given angular direction", which is the integral over the angular sector, so each log-polar
      sample is weighted by its polar area element ``r^2 d(log r)`` (``r^2``; the constant step
      ``d(log r)`` is dropped). The unweighted sum is dominated by the lowest frequencies, where the
      two edges of a wide corner are not resolved;
    * cubic interpolation can undershoot: P is clipped at 0 (so ``xi`` stays in [0, 1]).
    """
    p = _patch(patch, "angular_power")
    h, w = p.shape
    if n_radii is None:
        n_radii = max(1, math.ceil(max(h, w) / 2))
    if p.max() == p.min():                      # flat patch: no structure, no power
        return np.zeros(n_angles)
    if window is None:
        q = p - p.mean()
    elif window == "hann":
        win = np.outer(np.hanning(h + 2)[1:-1], np.hanning(w + 2)[1:-1])
        q = (p - np.sum(win * p) / np.sum(win)) * win
    else:
        raise param_error("window", "angular_power", "one of 'hann', None", window)
    big_h, big_w = (n * min(8, max(2, math.ceil(64 / n))) for n in (h, w))   # at least 2x and 64
    amp = np.abs(np.fft.fft2(q, s=(big_h, big_w)))    # zero-padded, unshifted (DC at [0, 0])
    amp[0, 0] = 0.0
    margin = min(2.0 / min(h, w), 0.125)
    radii = np.geomspace(margin, 0.5 - margin, n_radii)              # cycles / pixel, log-spaced
    theta = np.deg2rad(np.arange(n_angles) * 180.0 / n_angles)
    # angle theta <-> wave vector r (-sin theta, cos theta) in (row, col) frequency coordinates
    u = -np.outer(np.sin(theta), radii) * big_h                       # fractional indices, (n_angles, n_radii)
    v = np.outer(np.cos(theta), radii) * big_w
    value = np.zeros_like(u)
    for du in range(-1, 3):                                          # the 4 x 4 Keys taps
        iu = np.floor(u) + du
        for dv in range(-1, 3):
            iv = np.floor(v) + dv
            value += (keys_kernel(u - iu) * keys_kernel(v - iv)
                      * amp[iu.astype(int) % big_h, iv.astype(int) % big_w])
    power = value @ (radii * radii)                                  # polar area element r^2 d(log r)
    return np.maximum(power, 0.0)


def circular_peaks(x) -> np.ndarray:
    """Peak indices of a periodic signal with :func:`scipy.signal.find_peaks` semantics.

    ``find_peaks`` on the signal tiled three times, keeping the peaks that fall in the middle copy
    (sorted by index, in ``[0, n)``).
    """
    x = np.asarray(x, dtype=np.float64)
    n = x.size
    peaks, _ = signal.find_peaks(np.concatenate([x, x, x]))
    return np.sort(peaks[(peaks >= n) & (peaks < 2 * n)] - n)


def orientation(patch, n_angles: int = 180, n_radii: int | None = None,
                window: str | None = "hann") -> tuple[float, float]:
    """Algorithm 1: ``(theta*, xi)`` of one patch (degrees; xi = 0 for flat patches)."""
    return _orientation(angular_power(patch, n_angles, n_radii, window))


#: P is compared at this resolution relative to its maximum (float64; see netphys.features.patch).
TIE_RESOLUTION = 2.0 ** -32


def _levels(power: np.ndarray) -> np.ndarray:
    """P rounded to TIE_RESOLUTION of its maximum, so that rounding-level differences are ties."""
    quantum = np.abs(power).max() * TIE_RESOLUTION
    return np.round(power / quantum) if quantum > 0 else np.zeros_like(power)


def _orientation(power: np.ndarray) -> tuple[float, float]:
    n_angles = power.size
    theta = float(np.argmax(_levels(power)) * 180.0 / n_angles)
    hi, lo = power.max(), power.min()
    xi = float((hi - lo) / (hi + lo)) if hi + lo > 0 else 0.0
    return theta, xi


def corner(patch, n_angles: int = 180, n_radii: int | None = None,
           window: str | None = "hann") -> tuple[float, float, float]:
    """Algorithm 2: ``(theta1, theta2, zeta)`` of one patch, peaks of the periodic P on the circle."""
    return _corner(angular_power(patch, n_angles, n_radii, window))


def _corner(power: np.ndarray) -> tuple[float, float, float]:
    n_angles = power.size
    step = 180.0 / n_angles
    levels = _levels(power)
    peaks = circular_peaks(levels)
    pits = circular_peaks(-levels)
    if peaks.size == 0:
        t = float(np.argmax(levels) * step)
        return t, t, 0.0
    mu = power[peaks]
    order = np.argsort(-levels[peaks], kind="stable")   # highest first, ties by angle
    theta1 = float(peaks[order[0]] * step)
    if peaks.size < 2:
        return theta1, theta1, 0.0
    theta2 = float(peaks[order[1]] * step)
    mu1, mu2 = mu[order[0]], mu[order[1]]
    nu = np.sort(power[pits])                       # deepest first
    nu1, nu2 = nu[0], nu[1]
    return theta1, theta2, float((mu2 - nu2) / (mu1 - nu1))


def rf_features(gray_images, boxes, features: Sequence[str] = _FEATURES, *, n_angles: int = 180,
                n_radii: int | None = None, window: str | None = "hann",
                deduplicate: bool = False) -> dict[str, np.ndarray]:
    """Per-patch loop over images and units; same output as :func:`netphys.features.rf_features`.

    With ``deduplicate=True`` units with identical boxes are computed once (the literal baseline is
    ``False``).
    """
    func = "reference.rf_features"
    imgs = np.asarray(gray_images, dtype=np.float64)
    if imgs.ndim != 3:
        raise param_error("gray_images", func, "an array of shape (N, H, W)", f"shape {imgs.shape}")
    bx = np.asarray(boxes, dtype=np.int64)
    if bx.ndim != 2 or bx.shape[1] != 4:
        raise param_error("boxes", func, "an integer array of shape (n_units, 4)", f"shape {bx.shape}")
    if isinstance(features, str):
        features = (features,)
    for f in features:
        check_choice(f, "features", func, _FEATURES)
    if deduplicate:
        todo, inverse = np.unique(bx, axis=0, return_inverse=True)
        inverse = inverse.reshape(-1)
    else:
        todo, inverse = bx, np.arange(bx.shape[0])
    keys = {"luminosity": ["luminosity"], "contrast": ["contrast"], "orientation": ["theta", "xi"],
            "corner": ["theta1", "theta2", "zeta"]}
    out = {k: np.empty((imgs.shape[0], todo.shape[0])) for f in _FEATURES if f in features for k in keys[f]}
    for n, img in enumerate(imgs):
        for u, (r0, r1, c0, c1) in enumerate(todo):
            patch = img[r0:r1, c0:c1]
            if "luminosity" in features:
                out["luminosity"][n, u] = luminosity(patch)
            if "contrast" in features:
                out["contrast"][n, u] = contrast(patch)
            if "orientation" in features or "corner" in features:
                power = angular_power(patch, n_angles, n_radii, window)     # shared by both features
            if "orientation" in features:
                out["theta"][n, u], out["xi"][n, u] = _orientation(power)
            if "corner" in features:
                out["theta1"][n, u], out["theta2"][n, u], out["zeta"][n, u] = _corner(power)
    return {k: v[:, inverse] for k, v in out.items()}
