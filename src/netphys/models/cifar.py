"""The 7-layer reference CNN of Ukita (2019) for CIFAR-10-sized inputs.

Six 3x3 convolutions with 32, 32, 64, 64, 128, 128 filters and strides 1, 2, 1, 2, 1, 2, one fully
connected layer of 512 units and a linear read-out, with batch normalisation and ReLU after every
hidden layer. Modules follow torchvision's naming (``features.N``, ``classifier.N``), so the layer
aliases of :func:`netphys.models.layer_infos` apply: ``conv1`` ... ``conv6``, ``fc7`` (the paper's
"FC 1", 512 units) and ``fc8`` (the read-out).

Layer order and the recording site
----------------------------------
Each hidden layer is ``conv -> BatchNorm -> ReLU``. ``site="post"`` (the ReLU output) is therefore
both non-negative, as gOSI requires, and exactly what the next layer receives, so clamping a unit
there to zero removes it from the rest of the network. The authors' Keras code orders each layer
``conv(+ReLU) -> BatchNorm`` and analyses the batch-norm outputs (which can be negative); the paper's
text only says "ReLU activation and batch normalization were used", and the order chosen here keeps
one well-defined site for selectivity and ablation. Convolutions are unpadded ("valid"), as in the
reference code: a 32-px input gives maps of 30, 14, 12, 5, 3 and 1 px.
"""
from __future__ import annotations

import torch
from torch import nn

from .._validation import check_int, param_error
from ..stimuli.preprocess import Preprocess

__all__ = ["reference_cnn", "ReferenceCNN", "REFERENCE_PLAN", "feature_map_sizes"]

#: (filters, stride) of the six 3x3 convolutions (Ukita 2019, appendix A.1).
REFERENCE_PLAN = ((32, 1), (32, 2), (64, 1), (64, 2), (128, 1), (128, 2))


def feature_map_sizes(in_size: int, plan=REFERENCE_PLAN, kernel: int = 3, padding: int = 0) -> list[int]:
    """Side length of each conv layer's output map for an ``in_size`` input."""
    sizes, s = [], int(in_size)
    for _, stride in plan:
        s = (s + 2 * padding - kernel) // stride + 1
        sizes.append(s)
    return sizes


class ReferenceCNN(nn.Module):
    """The 7-layer CNN (6 conv + 1 FC hidden layers) with torchvision-style module names.

    Parameters
    ----------
    num_classes : int
    in_size : int
        Input image side length (32 for CIFAR-10).
    in_channels : int
    hidden : int
        Width of the fully connected hidden layer (512).
    plan : tuple of (filters, stride)
    padding : int
        Convolution padding (0, "valid", as in the reference code).
    """

    def __init__(self, num_classes: int = 10, in_size: int = 32, in_channels: int = 3,
                 hidden: int = 512, plan=REFERENCE_PLAN, padding: int = 0):
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for filters, stride in plan:
            layers += [nn.Conv2d(c, filters, kernel_size=3, stride=stride, padding=padding),
                       nn.BatchNorm2d(filters), nn.ReLU(inplace=False)]
            c = filters
        self.features = nn.Sequential(*layers)
        side = feature_map_sizes(in_size, plan, padding=padding)[-1]
        self.classifier = nn.Sequential(nn.Linear(c * side * side, hidden), nn.BatchNorm1d(hidden),
                                        nn.ReLU(inplace=False), nn.Linear(hidden, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


def reference_cnn(num_classes: int = 10, in_size: int = 32, *, in_channels: int = 3, hidden: int = 512,
                  padding: int = 0, random_state: int = 0, preprocess: Preprocess | None = None,
                  device="cpu") -> ReferenceCNN:
    """Build the paper's 7-layer reference CNN with seeded default initialisation, in eval mode.

    Parameters
    ----------
    num_classes : int, default 10
    in_size : int, default 32
        Input side length; the smallest that leaves a map after the sixth layer is 29 px with
        ``padding=0``.
    in_channels : int, default 3
        RGB (the reference code feeds grayscale CIFAR-10; gratings are gray in RGB either way).
    hidden : int, default 512
    padding : int, default 0
    random_state : int, default 0
        Seed of PyTorch's default initialisation (the global torch RNG is left untouched).
    preprocess : Preprocess, optional
        Stored with the model for :func:`netphys.recording.record`; default ImageNet mean/std at
        ``in_size``.
    device : str or torch.device

    Returns
    -------
    ReferenceCNN
        With provenance in ``model.netphys`` (name ``"reference_cnn"``, family ``"sequential"``:
        aliases ``conv1`` ... ``conv6``, ``fc7``, ``fc8``).

    Raises
    ------
    NetphysError
        If a size is not a positive int, ``random_state`` is not a non-negative int, or the input
        is too small for six layers.

    References
    ----------
    J. Ukita, "Causal importance of orientation selectivity for generalization in image
    recognition", ICLR 2019 submission, appendix A.1; code github.com/ukky17/ori_selectivity_CNN.
    """
    from .loading import ModelInfo

    func = "reference_cnn"
    num_classes = check_int(num_classes, "num_classes", func, min_value=1)
    in_size = check_int(in_size, "in_size", func, min_value=1)
    in_channels = check_int(in_channels, "in_channels", func, min_value=1)
    hidden = check_int(hidden, "hidden", func, min_value=1)
    padding = check_int(padding, "padding", func, min_value=0)
    if not isinstance(random_state, int) or isinstance(random_state, bool) or random_state < 0:
        raise param_error("random_state", func, "a non-negative int seed", random_state)
    if feature_map_sizes(in_size, padding=padding)[-1] < 1:
        smallest = next(s for s in range(1, 1024) if feature_map_sizes(s, padding=padding)[-1] >= 1)
        raise param_error("in_size", func, f"an int >= {smallest} (six 3x3 layers, three of stride 2, "
                          f"padding {padding})", in_size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(random_state)
        model = ReferenceCNN(num_classes, in_size, in_channels, hidden, padding=padding)
    pre = preprocess or Preprocess(resize=in_size, crop=in_size)
    model.netphys = ModelInfo(name="reference_cnn", weights=f"random(seed={random_state})",
                              family="sequential", input_size=in_size, preprocess=pre,
                              seed=random_state,
                              extra={"num_classes": num_classes, "hidden": hidden, "padding": padding})
    model.eval()
    return model.to(device)
