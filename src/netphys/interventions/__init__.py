"""Interventions that change a network for a ``with`` block (ablation), the measures made on the
changed network (shift invariance), effect tables comparing it with the intact one, and CAR filter
pruning (greedy structural compression by classification accuracy reduction)."""
from .ablation import ablate_units, layer_channels, split_by_score
from .effects import ablation_effects, invariance_effects
from .weights import (ALPHAS, SIGNS, SignAblation, readout_scores, readouts_from_weights, sign_ablation,
                      sign_ablation_mask,
                      sign_ablation_readouts, sign_balance)
from .invariance import DIRECTIONS, cv_by_layer, shift_images, shift_invariance, shifted
from .pruning import (METHODS, GreedyPruner, LayerSpec, car_importance, class_dependence, finetune, layer_costs,
                      layer_specs, mask_filters, random_pruning, remove_filters, split_halves)

__all__ = ["ablate_units", "layer_channels", "split_by_score", "shift_images", "shifted",
           "shift_invariance", "cv_by_layer", "DIRECTIONS", "ablation_effects", "invariance_effects",
           "ALPHAS", "SIGNS", "SignAblation", "sign_ablation", "sign_ablation_mask", "sign_ablation_readouts",
           "readout_scores", "readouts_from_weights", "sign_balance",
           "GreedyPruner", "METHODS", "LayerSpec", "car_importance", "class_dependence", "finetune", "layer_costs",
           "layer_specs", "mask_filters", "random_pruning", "remove_filters", "split_halves"]
