"""Statistics on recorded activations: single-unit information, and more to come."""
from .corner import corner_bins, corner_coordinates
from .information import InformationResult, equal_width_bins, layer_information, mutual_information

__all__ = [
    "InformationResult",
    "corner_bins",
    "corner_coordinates",
    "equal_width_bins",
    "layer_information",
    "mutual_information",
]
