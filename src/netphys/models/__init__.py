"""Models: loading by name, layer naming, architectures."""
from .architectures import SmallVGG, netphys_vgg16
from .layers import LayerInfo, default_layers, layer_infos, list_layers, resolve_layer
from .loading import DEFAULT_MODEL, MODEL_NAMES, ModelInfo, load_model, model_info

__all__ = ["load_model", "list_layers", "resolve_layer", "layer_infos", "default_layers", "model_info",
           "ModelInfo", "LayerInfo", "MODEL_NAMES", "DEFAULT_MODEL", "SmallVGG", "netphys_vgg16"]
