"""Figure functions: they take results, accept ``ax=``, and return a Figure (they never save)."""
from .style import RANDOM, TRAINED, layer_axis, new_axes, plot_layer_curve

__all__ = ["TRAINED", "RANDOM", "layer_axis", "new_axes", "plot_layer_curve"]
