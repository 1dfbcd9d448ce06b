"""Statistics on recorded activations: single-unit information, and more to come."""
from .corner import corner_bins, corner_coordinates
from .dimension import DuplicatePointsWarning, PowerLawFit, TwoNN, fit_power_law, id_vs_population
from .information import InformationResult, equal_width_bins, layer_information, mutual_information

__all__ = [
    "DuplicatePointsWarning",
    "InformationResult",
    "PowerLawFit",
    "TwoNN",
    "corner_bins",
    "corner_coordinates",
    "equal_width_bins",
    "fit_power_law",
    "id_vs_population",
    "layer_information",
    "mutual_information",
]
