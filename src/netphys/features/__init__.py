"""Image features of receptive-field patches: luminosity, contrast, orientation, corner.

Batched torch implementations (device follows the input) live in :mod:`netphys.features.patch`;
:mod:`netphys.features.reference` is a literal per-patch NumPy/SciPy version used by the tests and the
benchmark. See :mod:`netphys.features.patch` for the conventions (angles in degrees of the image
structure, patch-local Sobel borders, circular peaks).
"""
from .patch import (
    DEFAULT_N_ANGLES,
    FEATURE_KEYS,
    FEATURES,
    TIE_RESOLUTION,
    WINDOWS,
    angle_grid,
    angular_power,
    contrast,
    corner,
    corner_from_power,
    default_n_radii,
    find_peaks_mask,
    luminosity,
    orientation,
    orientation_from_power,
    rf_features,
)

__all__ = [
    "DEFAULT_N_ANGLES",
    "FEATURE_KEYS",
    "FEATURES",
    "TIE_RESOLUTION",
    "WINDOWS",
    "angle_grid",
    "angular_power",
    "contrast",
    "corner",
    "corner_from_power",
    "default_n_radii",
    "find_peaks_mask",
    "luminosity",
    "orientation",
    "orientation_from_power",
    "rf_features",
]
