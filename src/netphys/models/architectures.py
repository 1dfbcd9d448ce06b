"""Network architectures built by netphys (torchvision VGG module naming).

The netphys default model is a VGG-16-shaped network (13 conv + 3 FC layers, 5 max-pools,
torchvision's ``features.N`` / ``classifier.N`` naming) at reduced width for 64x64 input. It uses
batch normalisation after every convolution (as torchvision's ``vgg16_bn``) because it makes training
from scratch on a CPU converge in a few tens of epochs; ``pre`` recordings of a conv layer are the
convolution's output (before batch norm and ReLU).
"""
from __future__ import annotations

import torch
from torch import nn

#: Channel plan of VGG-16 ('M' = 2x2 max-pool), as in torchvision ("D" configuration).
VGG16_PLAN = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


def scaled_plan(plan=VGG16_PLAN, width: float = 0.25):
    return tuple(v if v == "M" else max(1, int(round(v * width))) for v in plan)


#: Nonlinearities of :func:`netphys_vgg16` (``"tanh"``: the functional-segregation paper's control).
ACTIVATIONS = {"relu": lambda: nn.ReLU(inplace=True), "tanh": nn.Tanh}


def _activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        from .._validation import param_error

        raise param_error("activation", "netphys_vgg16", f"one of {sorted(ACTIVATIONS)}", name)
    return ACTIVATIONS[name]()


def make_features(plan, batch_norm: bool = True, in_channels: int = 3, activation: str = "relu") -> nn.Sequential:
    layers: list[nn.Module] = []
    c = in_channels
    for v in plan:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers.append(nn.Conv2d(c, v, kernel_size=3, padding=1))
            if batch_norm:
                layers.append(nn.BatchNorm2d(v))
            layers.append(_activation(activation))
            c = v
    return nn.Sequential(*layers)


class SmallVGG(nn.Module):
    """VGG-shaped network for small inputs with torchvision's module naming.

    Parameters
    ----------
    plan : tuple
        Channel plan (ints and ``'M'`` for max-pool), e.g. :data:`VGG16_PLAN` scaled.
    num_classes : int
    hidden : int
        Width of fc6 and fc7.
    pool_size : int
        Output size of the adaptive average pool before the classifier (2 for 64x64 input).
    batch_norm : bool
    dropout : float
    activation : {"relu", "tanh"}
        The nonlinearity after every conv and hidden FC layer.
    """

    def __init__(self, plan, num_classes: int = 10, hidden: int = 256, pool_size: int = 2,
                 batch_norm: bool = True, dropout: float = 0.3, activation: str = "relu"):
        super().__init__()
        self.features = make_features(plan, batch_norm=batch_norm, activation=activation)
        last = [v for v in plan if v != "M"][-1]
        self.avgpool = nn.AdaptiveAvgPool2d((pool_size, pool_size))
        self.classifier = nn.Sequential(
            nn.Linear(last * pool_size * pool_size, hidden),
            _activation(activation),
            nn.Dropout(p=dropout),
            nn.Linear(hidden, hidden),
            _activation(activation),
            nn.Dropout(p=dropout),
            nn.Linear(hidden, num_classes),
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity=activation)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.classifier(x)


#: Architecture of the shipped default model.
DEFAULT_ARCH = dict(width=0.25, hidden=256, pool_size=2, batch_norm=True, dropout=0.3, num_classes=10)


def netphys_vgg16(num_classes: int = 10, *, width: float = DEFAULT_ARCH["width"],
                  hidden: int = DEFAULT_ARCH["hidden"], pool_size: int = DEFAULT_ARCH["pool_size"],
                  batch_norm: bool = DEFAULT_ARCH["batch_norm"],
                  dropout: float = DEFAULT_ARCH["dropout"], activation: str = "relu") -> SmallVGG:
    """The netphys default architecture: VGG-16 shape at ``width`` x channels, for 64x64 input.

    ``activation="tanh"`` builds the Tanh twin (the functional-segregation paper's ReLU-vs-Tanh control).
    """
    return SmallVGG(scaled_plan(VGG16_PLAN, width), num_classes=num_classes, hidden=hidden,
                    pool_size=pool_size, batch_norm=batch_norm, dropout=dropout, activation=activation)
