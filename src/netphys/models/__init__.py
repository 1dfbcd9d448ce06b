"""Models: loading by name, layer naming, architectures."""
from .architectures import SmallVGG, netphys_vgg16
from .layers import LayerInfo, default_layers, layer_infos, list_layers, resolve_layer
from .loading import (DEFAULT_MODEL, MODEL_NAMES, ModelInfo, as_preprocess, load_model, model_info,
                      parameters_sha256)

__all__ = ["load_model", "list_layers", "resolve_layer", "layer_infos", "default_layers", "model_info",
           "ModelInfo", "LayerInfo", "as_preprocess", "parameters_sha256", "MODEL_NAMES", "DEFAULT_MODEL",
           "SmallVGG", "netphys_vgg16"]
