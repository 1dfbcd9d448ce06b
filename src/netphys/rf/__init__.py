"""Receptive fields: analytic geometry of sequential CNNs, gradient support for any model, patches.

``layer_geometry`` composes kernel, stride, padding and dilation along a chain of modules (method A2);
``receptive_fields`` gives per-unit boxes (analytic, gradient or auto); ``gradient_receptive_fields``
measures the RF as the support of the input gradient (ResNets); ``crop_patches`` cuts the patches out.
"""
from .geometry import (AnalyticRFError, RFGeometry, crop_patches, iter_patches, layer_geometry,
                       receptive_fields, rf_table)
from .gradient import DeadUnitsWarning, gradient_receptive_fields

__all__ = ["AnalyticRFError", "DeadUnitsWarning", "RFGeometry", "layer_geometry", "receptive_fields", "gradient_receptive_fields",
           "rf_table", "crop_patches", "iter_patches"]
