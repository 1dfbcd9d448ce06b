"""Statistics on recorded activations and images: information, dimension, similarity and objectness."""
from .corner import corner_bins, corner_coordinates
from .dimension import DuplicatePointsWarning, PowerLawFit, TwoNN, fit_power_law, id_vs_population
from .information import InformationResult, equal_width_bins, layer_information, mutual_information
from .similarity import (DEFAULT_ENSEMBLE, ClassifierObjectness, ConfidenceInterval, Detector, EnsembleMember,
                         bootstrap_ci, default_ensemble, ensemble_embeddings, ensemble_similarity, lpips_distance, lpips_weights_path,
                         objectness, robustness_correlation)

__all__ = [
    "DEFAULT_ENSEMBLE",
    "ClassifierObjectness",
    "ConfidenceInterval",
    "Detector",
    "DuplicatePointsWarning",
    "EnsembleMember",
    "InformationResult",
    "PowerLawFit",
    "TwoNN",
    "bootstrap_ci",
    "corner_bins",
    "corner_coordinates",
    "default_ensemble",
    "ensemble_similarity", "ensemble_embeddings",
    "equal_width_bins",
    "fit_power_law",
    "id_vs_population",
    "layer_information",
    "lpips_distance",
    "lpips_weights_path",
    "mutual_information",
    "objectness",
    "robustness_correlation",
]
from .correlation import (
    explainable_variance,
    noise_ceiling_r,
    noise_corrected_r,
    pearson_r,
    variance_components,
)

__all__ += ["explainable_variance", "noise_ceiling_r", "noise_corrected_r", "pearson_r", "variance_components"]
