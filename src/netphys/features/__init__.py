"""Image features of receptive-field patches: luminosity, contrast, orientation, corner.

Batched torch implementations (device follows the input) live in :mod:`netphys.features.patch`;
:mod:`netphys.features.reference` is a literal per-patch NumPy/SciPy version used by the tests and the
benchmark. See :mod:`netphys.features.patch` for the conventions (angles in degrees of the image
structure, patch-local Sobel borders, the sampling of the angular power, circular peaks).
"""
#: version of the feature estimators, part of every experiment cache key that uses them; bump it when
#: a change alters their values (2: zero-padded spectrum, Keys-cubic log-polar map, area weights)
ESTIMATOR_VERSION = "2"

from .patch import (
    ANNULUS_MARGIN_BINS,
    DEFAULT_N_ANGLES,
    FEATURE_KEYS,
    FEATURES,
    MIN_FFT_LENGTH,
    OVERSAMPLING,
    TIE_RESOLUTION,
    WINDOWS,
    angle_grid,
    angular_power,
    annulus,
    contrast,
    corner,
    corner_from_power,
    default_n_radii,
    fft_length,
    find_peaks_mask,
    luminosity,
    orientation,
    orientation_from_power,
    rf_features,
)

__all__ = [
    "ANNULUS_MARGIN_BINS",
    "DEFAULT_N_ANGLES",
    "FEATURE_KEYS",
    "FEATURES",
    "MIN_FFT_LENGTH",
    "OVERSAMPLING",
    "TIE_RESOLUTION",
    "WINDOWS",
    "angle_grid",
    "angular_power",
    "annulus",
    "contrast",
    "corner",
    "corner_from_power",
    "default_n_radii",
    "fft_length",
    "find_peaks_mask",
    "luminosity",
    "orientation",
    "orientation_from_power",
    "rf_features",
]
