"""Statistics on recorded activations: single-unit information, and more to come."""
from .information import InformationResult, equal_width_bins, layer_information, mutual_information

__all__ = [
    "InformationResult",
    "equal_width_bins",
    "layer_information",
    "mutual_information",
]
