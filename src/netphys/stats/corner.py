"""Coordinates and bin counts for the information carried about the corner feature.

The corner feature of a receptive-field patch (:func:`netphys.features.corner`) is the pair of
orientations ``(theta1, theta2)`` of the two highest peaks of its angular power, in degrees in
``[0, 180)`` (orientation is an axis: 0 and 180 are the same). The paper bins the pair jointly
in 20 x 20 cells against 20 activation bins; with 400 images per unit that is 8000 joint cells
for 400 samples, and the Panzeri-Treves estimate of a unit that carries *no* information is
+0.34 (normalised). :func:`corner_coordinates` maps the pair onto coordinates for
:func:`netphys.stats.mutual_information`, and :func:`corner_bins` gives a number of bins per
dimension that such a sample can support. ``docs/information.md`` has the ground-truth table
behind the defaults.
"""
from __future__ import annotations

import numpy as np

from .._validation import check_choice, check_int, param_error

__all__ = ["CORNER_SCHEMES", "corner_bins", "corner_coordinates"]

#: Accepted values of ``scheme`` in :func:`corner_coordinates`.
CORNER_SCHEMES = ("canonical", "literal", "difference")


def corner_coordinates(theta1, theta2, *, scheme: str = "canonical") -> np.ndarray:
    """Two coordinates of the corner feature, stacked on a last axis of length 2.

    Parameters
    ----------
    theta1, theta2 : array_like of float, same shape (...)
        Angles in degrees of the highest and the second-highest peak of the angular power
        (:func:`netphys.features.corner`); any real values, read modulo 180.
    scheme : {"canonical", "literal", "difference"}, default "canonical"
        - ``"canonical"``: the unordered pair in a canonical order,
          ``(min(a, b), max(a, b))`` with ``a, b = theta1 % 180, theta2 % 180``. Invariant to
          which of the two edges has the higher peak, so two images with the same two edges
          get the same symbol.
        - ``"literal"``: ``(theta1 % 180, theta2 % 180)`` as given, ordered by peak height
          (the paper's setting).
        - ``"difference"``: ``(separation, bisector)``: the acute angle between the two
          orientations, ``d = min(|a - b|, 180 - |a - b|)`` in ``[0, 90]``, and the orientation
          of the bisector of that acute angle in ``[0, 180)``. Also invariant to the order.

    Returns
    -------
    ndarray of float64, shape (..., 2)
        The coordinates, ready for ``mutual_information(coords, y, x_bins=...)`` (a shared
        feature ``(n_samples, 2)`` or a per-unit one ``(n_samples, n_units, 2)``).

    Raises
    ------
    NetphysError
        If ``scheme`` is unknown, the angles are not real, not finite or of different shapes.

    Notes
    -----
    Orientations are axial: ``theta`` and ``theta + 180`` are the same edge (the convention of
    :mod:`netphys.features.patch`, angles in ``[0, 180)``). With fewer than two peaks
    ``theta2 == theta1`` (a single edge): ``"canonical"`` gives ``(a, a)``, ``"difference"``
    gives ``(0, a)``.

    The canonical and difference coordinates are both one-to-one maps of the *unordered*
    pair (at ``d = 90`` both bisectors are equally acute and ``(a + b) / 2 mod 180`` is
    returned). The canonical pair fills only the
    triangle ``a <= b``: of ``B x B`` joint bins about ``B (B + 1) / 2`` can be occupied,
    which halves the number of feature symbols, and with it the sampling bias, compared with
    the literal pair. For the bisector, equal-width bins over ``[0, 180)`` are arcs of the
    circle, so cutting it at 0 loses nothing.

    Examples
    --------
    >>> corner_coordinates([170.0, 10.0], [10.0, 170.0]).tolist()
    [[10.0, 170.0], [10.0, 170.0]]
    >>> corner_coordinates(170.0, 10.0, scheme="difference").tolist()
    [20.0, 0.0]
    """
    func = "corner_coordinates"
    check_choice(scheme, "scheme", func, CORNER_SCHEMES)
    a = _angles(theta1, "theta1", func)
    b = _angles(theta2, "theta2", func)
    if a.shape != b.shape:
        raise param_error("theta2", func, f"an array of the shape of 'theta1' {a.shape}",
                          f"an array of shape {b.shape}")
    a = np.mod(a, 180.0)
    b = np.mod(b, 180.0)
    if scheme == "literal":
        return np.stack([a, b], axis=-1)
    if scheme == "canonical":
        return np.stack([np.minimum(a, b), np.maximum(a, b)], axis=-1)
    diff = np.abs(a - b)
    sep = np.minimum(diff, 180.0 - diff)
    mid = 0.5 * (a + b)
    # the bisector of the acute angle: rotate the mean by 90 when the pair straddles 0/180
    bis = np.mod(np.where(diff > 90.0, mid + 90.0, mid), 180.0)
    return np.stack([sep, bis], axis=-1)


def _angles(theta, param: str, func: str) -> np.ndarray:
    t = np.asarray(theta)
    if t.dtype.kind not in "biuf":
        raise param_error(param, func, "real angles in degrees", f"dtype {t.dtype}")
    t = t.astype(np.float64)
    if not np.all(np.isfinite(t)):
        raise param_error(param, func, "finite", f"{int(np.sum(~np.isfinite(t)))} non-finite "
                          f"angle(s) in an array of shape {t.shape}")
    return t


def corner_bins(n_samples: int, *, bins: int = 20, scheme: str = "canonical",
                max_bins: int = 20) -> int:
    """Bins per dimension of the corner coordinates that ``n_samples`` images can support.

    Parameters
    ----------
    n_samples : int
        Number of images per unit (the paper: 400).
    bins : int, default 20
        Number of activation bins.
    scheme : {"canonical", "literal", "difference"}, default "canonical"
        The coordinates (:func:`corner_coordinates`); sets how many joint feature bins can be
        occupied.
    max_bins : int, default 20
        Upper limit (the paper's 20 bins per dimension).

    Returns
    -------
    int
        The largest ``B`` in ``[2, max_bins]`` with ``n_samples >= bins * S(B)``, where ``S(B)``
        is the number of feature symbols that can occur: ``B (B + 1) / 2`` for the canonical
        pair (the triangle ``a <= b``), ``B ** 2`` otherwise. 2 if even that does not hold.
        For 400 images and 20 activation bins: 5 (canonical), 4 (literal, difference).

    Raises
    ------
    NetphysError
        If ``n_samples``, ``bins`` or ``max_bins`` is not a positive int (>= 2 for the bins) or
        ``scheme`` is unknown.

    Notes
    -----
    The rule asks for at least as many samples per feature symbol as there are activation bins
    (one sample per occupiable joint cell on average): the regime where the Panzeri-Treves
    correction is accurate (Panzeri et al. 2007, "N_s >= number of response bins"). On pure
    noise at N = 400 it takes the PT residual bias of the normalised information from +0.34
    (20 x 20 literal) to +0.058 (canonical, B = 5). The shuffle-corrected estimates are unbiased
    on noise at any B, but at 20 x 20 they also lose nearly all of a real signal: for a
    corner-tuned unit whose binned information is 0.056, ``"pt+shuffle"`` reports 0.005 and
    ``"qe+shuffle"`` 0.006, while at canonical B = 5 (truth 0.089) they report 0.075 and
    0.087 (table in ``docs/information.md``). It is looser
    than the 5 samples per cell of the warning in
    :func:`netphys.stats.mutual_information`, which the 2-D feature cannot meet at 400 images
    without leaving almost no feature resolution (B = 2); pair the coarse bins with a
    ``"+shuffle"`` correction for an estimate that is unbiased on noise.

    References
    ----------
    .. [1] Panzeri S, Senatore R, Montemurro MA, Petersen RS (2007). Correcting for the
       sampling bias problem in spike train information measures. J Neurophysiol 98:1064-1072.
    """
    func = "corner_bins"
    n_samples = check_int(n_samples, "n_samples", func, min_value=1)
    bins = check_int(bins, "bins", func, min_value=2)
    max_bins = check_int(max_bins, "max_bins", func, min_value=2)
    check_choice(scheme, "scheme", func, CORNER_SCHEMES)
    best = 2
    for b in range(2, max_bins + 1):
        symbols = b * (b + 1) // 2 if scheme == "canonical" else b * b
        if n_samples >= bins * symbols:
            best = b
    return best

