"""A small natural-image prior that ships with netphys: a DeePSiM-style feature-inversion generator.

:class:`DeePSiMPrior` maps a code -- the activation of one layer of the shipped default network
(``netphys_vgg16``, 64 px, trained on Imagenette), by default ``fc6`` before its ReLU (256 numbers) --
to a 64 x 64 RGB image. It is trained, as Dosovitskiy & Brox (2016), to *invert* that layer: given the
code of a real image it must give back the image, judged by a pixel loss and optionally (DeePSiM) a
feature (perceptual) loss in a comparator network's feature space, a code loss and an adversarial loss
from a discriminator that sees the image and the code. The shipped weights use the pixel loss only (see
:data:`DEFAULT_LOSS_WEIGHTS` for why): their images are smooth, blurred colour layouts, not sharp
objects. Searching its code space with CMA-ES (:func:`netphys.synthesis.evolve`) keeps the images within
what the generator can draw (the XDream recipe of Ponce et al. 2019, at 64 px).

* :func:`load_prior` / :meth:`DeePSiMPrior.pretrained` load the shipped weights
  (``netphys/data/prior``), sha256-checked against ``manifest.json``.
* :meth:`DeePSiMPrior.initial_codes` draws from the empirical distribution of real codes (a Gaussian
  with the codes' mean and full covariance, or per-dimension std), and :attr:`DeePSiMPrior.sigma0` is
  the codes' median per-dimension standard deviation.
* :func:`train_prior` trains one (checkpointing atomically, resuming deterministically) and writes
  weights + manifest; ``bench/train_prior.py`` reproduces the shipped file.
* :class:`CodeEncoder` computes codes (and comparator features) of raw ``[0, 1]`` images;
  :func:`reconstruction_scores` measures how well a prior inverts them.

How good the shipped prior is (measured, with sample figures) is written up in ``docs/prior.md``.

References
----------
Dosovitskiy, A. & Brox, T. (2016). Generating images with perceptual similarity metrics based on deep
networks. NeurIPS 29.
Dosovitskiy, A. & Brox, T. (2016). Inverting visual representations with convolutional networks. CVPR.
Ponce, C. R. et al. (2019). Evolving images for visual neurons using a deep generative network reveals
coding principles and neuronal preferences. Cell 177, 999-1009.
"""
from __future__ import annotations

import copy
import hashlib
import io
import json
import logging
import math
import numbers
import platform
import time
from importlib import resources
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..io import file_sha256
from .._random import torch_generator
from .._validation import NetphysError, check_device, check_int, param_error
from .base import Generator
from .generators import _check_codes

log = logging.getLogger(__name__)

__all__ = ["DeePSiMPrior", "CodeEncoder", "load_prior", "train_prior", "reconstruction_scores",
           "prior_dir", "DEFAULT_LOSS_WEIGHTS", "DEFAULT_COMPARATOR"]

#: file names inside a prior folder (the shipped one and every :func:`train_prior` output)
WEIGHTS_FILE = "weights.pt"
MANIFEST_FILE = "manifest.json"
CHECKPOINT_FILE = "checkpoint.pt"
SCHEMA = "netphys-prior/1"

#: default loss weights of :func:`train_prior` (each term is normalised to about 1 for a blank image): the
#: pixel loss alone, as in the inversion networks of Dosovitskiy & Brox (CVPR 2016), which is what the shipped
#: weights were trained with. The feature, code and adversarial terms of DeePSiM are there to be switched on;
#: within this project's CPU budget they hurt (docs/prior.md shows the runs): the code term (0.1) was met
#: with high-frequency "fooling" patterns (code r 0.96, conv4_3 r 0.36, every reconstruction one template),
#: the feature term (1.0 or 0.1, with adversarial 0.01) filled reconstructions with the comparator's
#: pooling-grid texture.
DEFAULT_LOSS_WEIGHTS = {"pixel": 1.0, "feature": 0.0, "code": 0.0, "adversarial": 0.0}
#: default comparator layers (post-ReLU activations of the encoder network)
DEFAULT_COMPARATOR = ("conv2_2", "conv3_3", "conv4_3")


def prior_dir() -> Path:
    """Folder of the shipped prior (``netphys/data/prior``: ``weights.pt`` and ``manifest.json``)."""
    return Path(str(resources.files("netphys") / "data" / "prior"))


# ---------------------------------------------------------------------------------------------- encoder
def _site(spec: str, default_site: str, func: str, param: str):
    """``"fc6"`` / ``"fc6:pre"`` / ``"conv3_3:post"`` -> (alias, site)."""
    if not isinstance(spec, str) or not spec:
        raise param_error(param, func, "a layer name such as 'fc6' or 'fc6:pre'", spec)
    alias, _, site = spec.partition(":")
    site = site or default_site
    if site not in ("pre", "post"):
        raise param_error(param, func, "a layer name with an optional ':pre' or ':post' site", spec)
    return alias, site


class CodeEncoder(nn.Module):
    """The frozen encoder of a prior: raw ``[0, 1]`` images -> codes and comparator features.

    A copy of a VGG-shaped network (``features`` / ``avgpool`` / ``classifier``, as
    :func:`netphys.models.netphys_vgg16` and torchvision's VGGs) with non-inplace ReLUs, in eval mode,
    run stage by stage and stopped after the last layer needed.

    Parameters
    ----------
    model : nn.Module
        The network (e.g. ``netphys.models.load_model("netphys_vgg16", "default")``); it is copied, not
        changed. Its preprocessing (``model.netphys.preprocess``: mean, std, scale, channel order) is
        applied to the raw images.
    code_layer : str, default "fc6:pre"
        Layer (alias or module name) and site of the code; ``pre`` is the layer's own output (for
        ``fc6`` the linear output before its ReLU), ``post`` the output of its activation.
    comparator : sequence of str, default :data:`DEFAULT_COMPARATOR`
        Layers whose activations (site ``post`` unless given) make the feature loss.

    Raises
    ------
    NetphysError
        A network without the ``features`` / ``avgpool`` / ``classifier`` stages, or an unknown layer.
    """

    def __init__(self, model: nn.Module, code_layer: str = "fc6:pre", comparator=DEFAULT_COMPARATOR):
        super().__init__()
        func = "CodeEncoder"
        from ..models import model_info, parameters_sha256, resolve_layer

        if not isinstance(model, nn.Module) or not all(
                isinstance(getattr(model, k, None), nn.Module) for k in ("features", "avgpool", "classifier")):
            raise param_error("model", func, "a VGG-shaped nn.Module with features, avgpool and classifier "
                              "stages (netphys_vgg16, torchvision VGG)", type(model).__name__)
        info = model_info(model)
        self.model_info = info.to_dict()
        self.parameters_sha256 = parameters_sha256(model)
        net = copy.deepcopy(model).eval()
        for m in net.modules():
            if isinstance(m, nn.ReLU):
                m.inplace = False
        for p in net.parameters():
            p.requires_grad_(False)
        stages: list[tuple[str, nn.Module]] = []
        for name in ("features", "avgpool", "classifier"):
            mod = getattr(net, name)
            if isinstance(mod, nn.Sequential):
                stages += [(f"{name}.{k}", m) for k, m in mod.named_children()]
            else:
                stages.append((name, mod))
            if name == "avgpool":
                stages.append(("flatten", nn.Flatten(1)))
        self._names = [n for n, _ in stages]
        self.stages = nn.ModuleList([m for _, m in stages])

        def site_of(spec, default, param):
            alias, site = _site(spec, default, func, param)
            try:
                li = resolve_layer(model, alias, func)
            except NetphysError as exc:
                raise param_error(param, func, "a layer of the encoder network", spec,
                                  str(exc).split("; ", 1)[-1]) from None
            target = li.module if site == "pre" or li.post is None else li.post.module
            if target not in self._names:
                raise param_error(param, func, "a layer of the features / classifier stages", spec)
            return f"{li.alias}:{site}", target

        self.code_layer, self._code_module = site_of(code_layer, "pre", "code_layer")
        comp = [site_of(c, "post", "comparator") for c in (comparator or ())]
        self.comparator = tuple(c for c, _ in comp)
        self._comp_modules = tuple(m for _, m in comp)
        pre = info.preprocess
        self.register_buffer("mean", torch.tensor(pre.mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(pre.std, dtype=torch.float32).view(1, 3, 1, 1))
        self._scale = float(pre.scale)
        self._bgr = bool(pre.bgr)
        self.input_size = int(info.input_size)

    def identity(self) -> dict:
        """The encoder's provenance: model info, parameters sha256, code layer and comparator."""
        return {"model_info": self.model_info, "parameters_sha256": self.parameters_sha256,
                "code_layer": self.code_layer, "comparator": list(self.comparator)}

    def forward(self, images: torch.Tensor, *, features: bool = True) -> tuple[torch.Tensor, list]:
        """``images (n, 3, S, S) in [0, 1]`` -> ``(codes (n, d), [comparator activations])``.

        With ``features=False`` only the codes are computed (the list is empty).
        """
        x = images * self._scale
        if self._bgr:
            x = x.flip(1)
        x = (x - self.mean) / self.std
        wanted = {self._code_module, *(self._comp_modules if features else ())}
        got = {}
        for name, stage in zip(self._names, self.stages):
            x = stage(x)
            if name in wanted:
                got[name] = x
                if len(got) == len(wanted):
                    break
        code = got[self._code_module].flatten(1)
        return code, ([got[m] for m in self._comp_modules] if features else [])

    def codes(self, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Codes of ``images`` (float in ``[0, 1]`` or uint8 NCHW), in batches, without gradients."""
        out = []
        dev = self.mean.device
        with torch.no_grad():
            for s in range(0, len(images), batch_size):
                x = images[s:s + batch_size].to(dev)
                x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
                out.append(self(x, features=False)[0])
        return torch.cat(out)


def default_encoder(code_layer: str = "fc6:pre", comparator=DEFAULT_COMPARATOR) -> CodeEncoder:
    """:class:`CodeEncoder` over the shipped default model ``netphys_vgg16`` (``"default"`` weights)."""
    from ..models import load_model

    return CodeEncoder(load_model("netphys_vgg16", "default"), code_layer, comparator)


# -------------------------------------------------------------------------------------------- networks
class _GeneratorNet(nn.Module):
    """code -> fc -> (8w, 4, 4) -> x2 stages (nearest upsampling + two 3x3 convs, LeakyReLU; halving the
    channels) -> a last x2 upsampling and 3x3 conv to RGB at full size -> sigmoid.

    Upsampling by interpolation + convolution instead of transposed convolutions avoids their
    checkerboard artefacts (Odena, Dumoulin & Olah 2016), which CMA-ES would otherwise exploit.
    """

    def __init__(self, latent_size: int, width: int, image_size: int = 64):
        super().__init__()
        n_up = int(round(math.log2(image_size / 4)))
        chans = [width * 8 // (2 ** k) for k in range(n_up)]
        self.c0 = chans[0]
        self.fc = nn.Linear(latent_size, chans[0] * 16)
        blocks = []
        for cin, cout in zip(chans[:-1], chans[1:]):
            blocks += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(cin, cout, 3, padding=1),
                       nn.LeakyReLU(0.2), nn.Conv2d(cout, cout, 3, padding=1), nn.LeakyReLU(0.2)]
        self.up = nn.Sequential(*blocks)
        self.out = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(chans[-1], 3, 3, padding=1))

    def forward(self, z):
        h = F.leaky_relu(self.fc(z), 0.2).view(len(z), self.c0, 4, 4)
        return torch.sigmoid(self.out(self.up(h)))


class _Discriminator(nn.Module):
    """Small conditional discriminator: strided convs on the image, a projection of the code."""

    def __init__(self, latent_size: int, width: int = 32):
        super().__init__()
        sn = nn.utils.spectral_norm
        w = width
        self.conv = nn.Sequential(
            sn(nn.Conv2d(3, w, 4, 2, 1)), nn.LeakyReLU(0.2),
            sn(nn.Conv2d(w, 2 * w, 4, 2, 1)), nn.LeakyReLU(0.2),
            sn(nn.Conv2d(2 * w, 4 * w, 4, 2, 1)), nn.LeakyReLU(0.2),
            sn(nn.Conv2d(4 * w, 4 * w, 4, 2, 1)), nn.LeakyReLU(0.2))
        self.head = sn(nn.Linear(4 * w, 1))
        self.embed = sn(nn.Linear(latent_size, 4 * w))

    def forward(self, x, code):
        h = self.conv(x * 2 - 1).mean((2, 3))
        return self.head(h).squeeze(1) + (h * self.embed(code)).sum(1) / math.sqrt(h.shape[1])


# ------------------------------------------------------------------------------------------- generator
class DeePSiMPrior(Generator):
    """DeePSiM-style generator: codes of an encoder layer -> 64-px RGB images in ``[0, 1]``.

    Parameters
    ----------
    latent_size : int, default 256
        Code length (the size of the encoder's code layer; 256 for ``netphys_vgg16`` ``fc6``).
    image_size : int, default 64
    width : int, default 32
        Channel width: ``8 width`` channels at 4 x 4, halving at each of the four x2 stages.
    code_mean, code_std : array of shape (latent_size,), optional
        Empirical mean and standard deviation of real codes (default 0 and 1).
    code_cov_factor : array of shape (latent_size, latent_size), optional
        Lower Cholesky factor of the codes' covariance, for ``initial_codes(..., covariance="full")``.
    mean_image : array of shape (3, image_size, image_size), optional
        Mean training image (the baseline of :func:`reconstruction_scores`).
    code_layer : str
        Provenance: the encoder layer and site the codes come from.

    Attributes
    ----------
    sigma0 : float
        CMA-ES step size suiting the space: the median per-dimension std of real codes.
    manifest : dict
        Provenance of loaded weights (the manifest; empty for an untrained prior).

    Notes
    -----
    ``forward`` is deterministic and acts on each code separately (no batch statistics), so images do
    not depend on the batch a code is in. Images are a sigmoid of the last convolution.

    References
    ----------
    Dosovitskiy & Brox (2016), NeurIPS 29 (the DeePSiM generators); Ponce et al. (2019), Cell 177
    (CMA-ES / genetic search in a DeePSiM fc6 space).
    """

    name = "deepsim-prior"

    def __init__(self, latent_size: int = 256, image_size: int = 64, *, width: int = 32, code_mean=None,
                 code_std=None, code_cov_factor=None, mean_image=None, code_layer: str = "fc6:pre"):
        super().__init__()
        func = "DeePSiMPrior"
        self.latent_size = check_int(latent_size, "latent_size", func, min_value=1)
        self.image_size = check_int(image_size, "image_size", func, min_value=8)
        if self.image_size & (self.image_size - 1):
            raise param_error("image_size", func, "a power of two >= 8", image_size)
        self.width = check_int(width, "width", func, min_value=2)
        self.code_layer = str(code_layer)
        self.net = _GeneratorNet(self.latent_size, self.width, self.image_size)
        d = self.latent_size

        def buf(v, shape, default):
            t = default if v is None else torch.as_tensor(np.asarray(v, dtype=np.float32))
            if tuple(t.shape) != shape:
                raise param_error("code statistics", func, f"an array of shape {shape}", tuple(t.shape))
            return t.float()

        self.register_buffer("code_mean", buf(code_mean, (d,), torch.zeros(d)))
        self.register_buffer("code_std", buf(code_std, (d,), torch.ones(d)))
        self.register_buffer("code_cov_factor", buf(code_cov_factor, (d, d), torch.diag(self.code_std)))
        s = self.image_size
        self.register_buffer("mean_image", buf(mean_image, (3, s, s), torch.full((3, s, s), 0.5)))
        self.sigma0 = float(self.code_std.median())
        self.manifest: dict = {}

    @classmethod
    def pretrained(cls, path=None, *, device=None) -> "DeePSiMPrior":
        """The shipped prior (or one written by :func:`train_prior` in ``path``); see :func:`load_prior`."""
        return load_prior(path, device=device)

    def set_code_statistics(self, codes: torch.Tensor) -> None:
        """Store mean, std and covariance (Cholesky factor) of real ``codes`` (n, latent_size)."""
        c = codes.detach().double().cpu()
        mean, std = c.mean(0), c.std(0).clamp_min(1e-6)
        cov = torch.cov(c.T) + 1e-4 * torch.diag(std ** 2)
        self.code_mean.copy_(mean.float())
        self.code_std.copy_(std.float())
        self.code_cov_factor.copy_(torch.linalg.cholesky(cov).float())
        self.sigma0 = float(self.code_std.median())

    def initial_codes(self, n: int, random_state=0, *, covariance: str = "full") -> torch.Tensor:
        """``n`` codes drawn from the empirical distribution of real codes, ``(n, latent_size)``.

        Parameters
        ----------
        n : int
        random_state : int, SeedSequence, Generator or None
        covariance : {"full", "diagonal"}, default "full"
            A Gaussian with the real codes' mean and full covariance, or with their per-dimension std
            only (independent dimensions).
        """
        func = "DeePSiMPrior.initial_codes"
        n = check_int(n, "n", func, min_value=1)
        if covariance not in ("full", "diagonal"):
            raise param_error("covariance", func, "'full' or 'diagonal'", covariance)
        g = torch_generator(random_state, func)
        z = torch.randn(n, self.latent_size, generator=g, dtype=torch.float32).to(self.device)
        if covariance == "full":
            return self.code_mean + z @ self.code_cov_factor.T
        return self.code_mean + z * self.code_std

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        """``codes (n, latent_size)`` -> images ``(n, 3, image_size, image_size)`` in ``[0, 1]``."""
        if not isinstance(codes, torch.Tensor) or codes.ndim != 2 or codes.shape[1] != self.latent_size:
            got = f"shape {tuple(codes.shape)}" if hasattr(codes, "shape") else type(codes).__name__
            raise param_error("codes", "DeePSiMPrior.forward", f"a tensor of shape (n, {self.latent_size})",
                              got, f"this prior's latent_size is {self.latent_size} "
                              f"(codes of {self.code_layer})")
        if not codes.dtype.is_floating_point:
            raise param_error("codes", "DeePSiMPrior.forward", "a floating-point tensor", str(codes.dtype))
        # the rest (empty batch, non-finite values, dtype and device) as every built-in space checks it
        return self.net(_check_codes(codes, self.latent_size, "DeePSiMPrior.forward", self.device))

    def describe(self) -> dict:
        d = super().describe()
        d.update(width=self.width, code_layer=self.code_layer,
                 weights_sha256=self.manifest.get("weights_sha256"),
                 encoder=self.manifest.get("encoder", {}).get("parameters_sha256"))
        return d

    def encoder(self, *, check: bool = True) -> CodeEncoder:
        """The encoder the prior inverts (the shipped default model), checked against the manifest.

        Raises
        ------
        NetphysError
            With ``check=True``, when the default model's parameters differ from those recorded at
            training time.
        """
        enc_rec = self.manifest.get("encoder", {})
        enc = default_encoder(self.code_layer, enc_rec.get("comparator", DEFAULT_COMPARATOR))
        want = enc_rec.get("parameters_sha256")
        if check and want and want != enc.parameters_sha256:
            raise NetphysError(f"the encoder of prior {self.name!r} (parameters_sha256 {want[:12]}...) is not "
                               f"the installed default model ({enc.parameters_sha256[:12]}...); codes of this "
                               "model are not the prior's codes")
        return enc.to(self.device)


def _state_bytes(prior: DeePSiMPrior, dtype=torch.float16) -> bytes:
    state = {k: v.detach().cpu().to(dtype) if v.is_floating_point() else v.detach().cpu()
             for k, v in prior.state_dict().items()}
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


def load_prior(path=None, *, device=None) -> DeePSiMPrior:
    """Load a prior: the shipped one (``path=None``) or a folder / manifest written by :func:`train_prior`.

    Parameters
    ----------
    path : path, optional
        A folder holding ``manifest.json`` and the weights it names, or the ``manifest.json`` itself.
    device : str or torch.device, optional

    Returns
    -------
    DeePSiMPrior
        In eval mode, ``float32``, with the manifest in ``.manifest``.

    Raises
    ------
    NetphysError
        A missing folder / manifest / weights file, or weights whose sha256 differs from the manifest's.
    """
    func = "load_prior"
    dev = check_device(device, func)
    p = prior_dir() if path is None else Path(path)
    folder = p.parent if p.name == MANIFEST_FILE else p
    mpath = folder / MANIFEST_FILE
    if not mpath.is_file():
        raise param_error("path", func, "a folder with a prior's manifest.json (written by train_prior)",
                          str(p), "pass the 'out' folder of train_prior, or None for the shipped prior")
    manifest = json.loads(mpath.read_text())
    wpath = folder / manifest.get("weights_file", WEIGHTS_FILE)
    if not wpath.is_file():
        raise param_error("path", func, "a prior folder holding its weights file", str(wpath))
    sha = file_sha256(wpath)
    if sha != manifest.get("weights_sha256"):
        raise NetphysError(f"the weights {wpath} have sha256 {sha}, but the manifest records "
                           f"{manifest.get('weights_sha256')}; the file is damaged or not this prior's")
    arch = manifest["architecture"]
    prior = DeePSiMPrior(arch["latent_size"], arch["image_size"], width=arch["width"],
                         code_layer=arch["code_layer"])
    state = torch.load(wpath, map_location="cpu", weights_only=True)
    prior.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    prior.sigma0 = float(manifest.get("sigma0", prior.code_std.median()))
    prior.manifest = manifest
    prior.eval()
    for q in prior.parameters():
        q.requires_grad_(False)
    return prior.to(dev) if dev is not None else prior


# --------------------------------------------------------------------------------------------- scoring
def _rowcorr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a = a.flatten(1).double()
    b = b.flatten(1).double()
    a = a - a.mean(1, keepdim=True)
    b = b - b.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(1e-12)


def reconstruction_scores(prior: DeePSiMPrior, images, encoder: CodeEncoder | None = None, *,
                          batch_size: int = 128) -> dict:
    """How well ``prior`` inverts its encoder on ``images``, against the mean-image baseline.

    Parameters
    ----------
    prior : DeePSiMPrior
    images : tensor (n, 3, S, S) (uint8, or float in [0, 1]) or StimulusSet
    encoder : CodeEncoder, optional
        Default :meth:`DeePSiMPrior.encoder`.
    batch_size : int

    Returns
    -------
    dict
        Per-image Pearson correlations (medians and means over images) between originals and
        reconstructions ``G(E(x))``: ``pixel_corr`` (all pixels and channels), ``feature_corr`` (each
        comparator layer and ``code``), and the same for the baseline ``mean_image`` (the prior's mean
        training image) as ``baseline_*``; ``n``. Also ``reconstructions`` (float tensor, n x 3 x S x S)
        and the per-image ``pixel_corr_each`` / ``baseline_pixel_corr_each`` arrays.

    Notes
    -----
    ``r(x, y) = sum((x - mean x)(y - mean y)) / (|x - mean x| |y - mean y|)`` over one image's values.
    """
    from ..stimuli import StimulusSet

    if isinstance(images, StimulusSet):
        images = torch.from_numpy(np.ascontiguousarray(images.load_images())).permute(0, 3, 1, 2)
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
        raise param_error("images", "reconstruction_scores", "a (n, 3, S, S) tensor or a StimulusSet",
                          getattr(images, "shape", type(images).__name__))
    enc = encoder if encoder is not None else prior.encoder()
    dev = prior.device
    names = [*enc.comparator, "code"]
    recs, pix, pix_b = [], [], []
    feat = {k: [] for k in names}
    feat_b = {k: [] for k in names}
    with torch.no_grad():
        base = prior.mean_image[None]
        bcode, bfeat = enc(base)
        for s in range(0, len(images), batch_size):
            x = images[s:s + batch_size].to(dev)
            x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
            code, fx = enc(x)
            r = prior(code)
            rcode, fr = enc(r)
            recs.append(r.cpu())
            pix.append(_rowcorr(r, x))
            pix_b.append(_rowcorr(base.expand_as(x), x))
            for k, a, b, bb in zip(names, [*fx, code], [*fr, rcode], [*bfeat, bcode]):
                feat[k].append(_rowcorr(b, a))
                feat_b[k].append(_rowcorr(bb.expand_as(a), a))
    cat = lambda v: torch.cat(v).cpu().numpy()  # noqa: E731
    out = {"n": int(len(images))}
    p, pb = cat(pix), cat(pix_b)
    out.update(pixel_corr=float(np.median(p)), pixel_corr_mean=float(p.mean()),
               baseline_pixel_corr=float(np.median(pb)), baseline_pixel_corr_mean=float(pb.mean()),
               pixel_corr_each=p, baseline_pixel_corr_each=pb,
               feature_corr={k: float(np.median(cat(feat[k]))) for k in names},
               baseline_feature_corr={k: float(np.median(cat(feat_b[k]))) for k in names},
               reconstructions=torch.cat(recs))
    return out


# -------------------------------------------------------------------------------------------- training
def _check_weights(loss_weights, func):
    w = dict(DEFAULT_LOSS_WEIGHTS)
    if loss_weights is not None:
        if not isinstance(loss_weights, dict) or set(loss_weights) - set(w):
            raise param_error("loss_weights", func, "a dict with keys among " + ", ".join(map(repr, w)),
                              loss_weights)
        w.update(loss_weights)
    for k, v in w.items():
        if not isinstance(v, numbers.Real) or isinstance(v, bool) or not math.isfinite(v) or v < 0:
            raise param_error("loss_weights", func, f"finite numbers >= 0 (the {k!r} weight)", v)
    return {k: float(v) for k, v in w.items()}


def _positive(value, param, func):
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not math.isfinite(value) or value <= 0:
        raise param_error(param, func, "a finite number > 0", value)
    return float(value)


def _load_folder(root, max_images, func):
    from ..stimuli import StimulusSet

    if not Path(root).is_dir():
        raise param_error("images_root", func, "an existing image folder (ImageFolder layout or flat)",
                          str(root))
    st = StimulusSet.from_folder(root, preprocess=None)
    if max_images is not None and max_images < len(st):
        st = st.subsample(n=max_images, random_state=0)
    u8 = torch.from_numpy(np.ascontiguousarray(st.load_images())).permute(0, 3, 1, 2).contiguous()
    return st, u8


def _seed_int(random_state, func):
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool) and random_state >= 0:
        return int(random_state)
    raise param_error("random_state", func, "a non-negative int seed (recorded in the manifest)", random_state)


def train_prior(images_root, *, code_layer: str = "fc6:pre", comparator=DEFAULT_COMPARATOR,
                steps: int = 1500, batch_size: int = 32, lr: float = 1e-3, lr_disc: float = 2e-4,
                loss_weights: dict | None = None,
                width: int = 32, disc_width: int = 32, pad: int = 4, max_images: int | None = None,
                val_root=None, n_val: int = 500, random_state: int = 0, out=None, device=None,
                progress: bool = False, resume: bool = True, checkpoint_every: int = 100,
                weights_dtype: str = "float16") -> DeePSiMPrior:
    """Train a :class:`DeePSiMPrior` to invert ``code_layer`` of the shipped default network.

    Parameters
    ----------
    images_root : path
        Training images (ImageFolder layout or a flat folder), read with
        :meth:`netphys.stimuli.StimulusSet.from_folder` at the encoder's input size, kept in memory as
        uint8 and used as raw ``[0, 1]`` RGB.
    code_layer : str, default "fc6:pre"
        Encoder layer and site whose activation is the code.
    comparator : sequence of str
        Encoder layers (post-ReLU unless ``":pre"``) of the feature loss.
    steps, batch_size : int
        Optimisation steps and images per step.
    lr, lr_disc : float
        Constant Adam learning rates of the generator (betas 0.9, 0.999) and the discriminator
        (betas 0.5, 0.999).
    loss_weights : dict, optional
        ``pixel``, ``feature``, ``code``, ``adversarial`` (defaults :data:`DEFAULT_LOSS_WEIGHTS`).
    width, disc_width : int
        Channel widths of generator and discriminator.
    pad : int
        Augmentation: reflect-pad by ``pad`` and crop at a random offset, random left-right flip.
    max_images : int, optional
        Use a stratified subset of this many training images.
    val_root : path, optional
        Held-out images: :func:`reconstruction_scores` on ``n_val`` of them (a fixed subset) is
        recorded in the manifest.
    random_state : int
        Seeds the initial weights and every batch and augmentation (step ``t`` draws from
        ``SeedSequence([random_state, t])``), so a resumed run equals an uninterrupted one.
    out : path
        Output folder: ``checkpoint.pt`` (every ``checkpoint_every`` steps and at the end, atomic),
        ``weights.pt`` (the generator and code statistics in ``weights_dtype``) and ``manifest.json``.
    device : str or torch.device, optional
    progress : bool
        A tqdm bar over steps.
    resume : bool, default True
        Continue from ``out/checkpoint.pt`` when it exists (its settings must match; ``steps`` may be
        larger); ``False`` starts afresh.
    checkpoint_every : int
    weights_dtype : {"float16", "float32"}

    Returns
    -------
    DeePSiMPrior
        The trained prior as loaded back from ``out`` (eval mode, ``.manifest`` set).

    Raises
    ------
    NetphysError
        Bad arguments, a missing image folder, or a checkpoint written with other settings.

    Notes
    -----
    With ``x`` an augmented training image, ``c = E(x)`` its code and ``y = G(c)``, the generator
    minimises

    ``w_pix |y - x|^2 / var(x) + w_feat sum_l |phi_l(y) - phi_l(x)|^2 / (L E|phi_l(x)|^2)
    + w_code |E(y) - c|^2 / E|c - mean c|^2 + w_adv softplus(-D(y, c))``

    (means over elements; the normalisers are fixed from the first 256 training images), and the
    discriminator ``D`` (spectral-normalised strided convs + a projection of the code) minimises
    ``softplus(-D(x, c)) + softplus(D(y, c))``, one step each per batch (Dosovitskiy & Brox 2016,
    whose comparator is also the encoder network).
    """
    func = "train_prior"
    from ..io import atomic_write_bytes, atomic_write_text
    from ..training import PadCropFlip

    steps = check_int(steps, "steps", func, min_value=1)
    batch_size = check_int(batch_size, "batch_size", func, min_value=1)
    lr = _positive(lr, "lr", func)
    lr_disc = _positive(lr_disc, "lr_disc", func)
    weights = _check_weights(loss_weights, func)
    width = check_int(width, "width", func, min_value=2)
    disc_width = check_int(disc_width, "disc_width", func, min_value=1)
    pad = check_int(pad, "pad", func, min_value=0)
    checkpoint_every = check_int(checkpoint_every, "checkpoint_every", func, min_value=1)
    n_val = check_int(n_val, "n_val", func, min_value=1)
    if max_images is not None:
        max_images = check_int(max_images, "max_images", func, min_value=1)
    seed = _seed_int(random_state, func)
    if weights_dtype not in ("float16", "float32"):
        raise param_error("weights_dtype", func, "'float16' or 'float32'", weights_dtype)
    if out is None:
        raise param_error("out", func, "an output folder", out)
    dev = check_device(device, func) or torch.device("cpu")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)

    stimuli, data = _load_folder(images_root, max_images, func)
    n_img = len(data)
    enc = default_encoder(code_layer, comparator).to(dev)
    if enc.input_size != data.shape[-1]:
        raise param_error("images_root", func, f"images of the encoder's size {enc.input_size} px",
                          f"{data.shape[-1]} px")
    settings = {"images_root": str(Path(images_root).resolve()), "n_images": n_img, "code_layer": enc.code_layer,
                "comparator": list(enc.comparator), "batch_size": batch_size, "lr": lr, "lr_disc": lr_disc,
                "loss_weights": weights, "width": width, "disc_width": disc_width, "pad": pad,
                "max_images": max_images, "random_state": seed, "encoder_sha256": enc.parameters_sha256}

    # code statistics and loss normalisers from un-augmented images (fixed, not per batch)
    codes_all = enc.codes(data)
    d = codes_all.shape[1]
    ss = np.random.SeedSequence(seed)
    init_seed = int(ss.generate_state(1)[0])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(init_seed)
        prior = DeePSiMPrior(d, data.shape[-1], width=width, code_layer=enc.code_layer)
        disc = _Discriminator(d, disc_width)
    prior.set_code_statistics(codes_all)
    prior.mean_image.copy_(data.float().mean(0) / 255.0)
    ref = data[:256].to(dev).float() / 255.0
    with torch.no_grad():
        rc, rf = enc(ref)
        norms = {"pixel": float(ref.var()), "code": float(((rc - rc.mean(0)) ** 2).mean()),
                 "feature": [float((f ** 2).mean()) for f in rf]}
    prior.to(dev)
    disc.to(dev)
    opt_g = torch.optim.Adam(prior.net.parameters(), lr=lr, betas=(0.9, 0.999))
    opt_d = torch.optim.Adam(disc.parameters(), lr=lr_disc, betas=(0.5, 0.999))
    history: list[dict] = []
    start, elapsed, cpu_elapsed = 0, 0.0, 0.0
    ckpt = out / CHECKPOINT_FILE
    if resume and ckpt.is_file():
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
        if state["settings"] != settings:
            diff = sorted(k for k in settings if state["settings"].get(k) != settings[k])
            raise param_error("resume", func, "False, or the settings of the checkpoint in out", True,
                              f"{ckpt} was written with other settings ({', '.join(diff)}); pass "
                              "resume=False or another out folder")
        prior.load_state_dict(state["prior"])
        disc.load_state_dict(state["disc"])
        opt_g.load_state_dict(state["opt_g"])
        opt_d.load_state_dict(state["opt_d"])
        start, history = int(state["step"]), list(state["history"])
        elapsed, cpu_elapsed = float(state["wall_s"]), float(state["cpu_s"])
        log.info("resuming %s at step %d", ckpt, start)

    def save_checkpoint(step):
        buf = io.BytesIO()
        torch.save({"settings": settings, "step": step, "prior": prior.state_dict(), "disc": disc.state_dict(),
                    "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(), "history": history,
                    "wall_s": elapsed, "cpu_s": cpu_elapsed}, buf)
        atomic_write_bytes(ckpt, buf.getvalue())

    augment = PadCropFlip(pad) if pad > 0 else None
    w = weights
    bar = None
    if progress and start < steps:
        from tqdm.auto import tqdm
        bar = tqdm(total=steps, initial=start, desc="train_prior")
    prior.train()
    disc.train()
    t0, c0 = time.time(), time.process_time()
    running: dict = {}
    for step in range(start, steps):
        rng = np.random.default_rng([seed, step])
        idx = torch.from_numpy(rng.choice(n_img, size=min(batch_size, n_img), replace=False))
        g = torch.Generator()
        g.manual_seed(int(rng.integers(2 ** 62)))
        xb = data[idx]
        x = (augment(xb, g) if augment is not None else xb.float()).to(dev) / 255.0
        with torch.no_grad():
            code, fx = enc(x)
        y = prior(code)
        # discriminator step
        if w["adversarial"] > 0:
            d_loss = F.softplus(-disc(x, code)).mean() + F.softplus(disc(y.detach(), code)).mean()
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
        else:
            d_loss = torch.zeros(())
        # generator step
        need_enc = w["feature"] > 0 or w["code"] > 0
        ycode, fy = enc(y, features=w["feature"] > 0) if need_enc else (None, [])
        terms = {"pixel": ((y - x) ** 2).mean() / norms["pixel"]}
        if w["feature"] > 0:
            terms["feature"] = sum(((a - b) ** 2).mean() / nrm for a, b, nrm in
                                   zip(fy, fx, norms["feature"])) / max(1, len(fx))
        if w["code"] > 0:
            terms["code"] = ((ycode - code) ** 2).mean() / norms["code"]
        if w["adversarial"] > 0:
            terms["adversarial"] = F.softplus(-disc(y, code)).mean()
        loss = sum(w[k] * v for k, v in terms.items())
        opt_g.zero_grad(set_to_none=True)
        loss.backward()
        opt_g.step()
        if not torch.isfinite(loss):
            raise NetphysError(f"train_prior: the loss became {float(loss)} at step {step}; lower lr")
        for k, v in {**terms, "total": loss, "disc": d_loss}.items():
            running.setdefault(k, []).append(float(v.detach()))
        done = step + 1
        if done % checkpoint_every == 0 or done == steps:
            now_w, now_c = time.time(), time.process_time()
            elapsed += now_w - t0
            cpu_elapsed += now_c - c0
            t0, c0 = now_w, now_c
            rec = {"step": done, "wall_s": round(elapsed, 2), "cpu_s": round(cpu_elapsed, 2),
                   **{k: float(np.mean(v)) for k, v in running.items()}}
            history.append(rec)
            running = {}
            log.info("train_prior step %d: %s", done, {k: round(v, 4) for k, v in rec.items()})
            save_checkpoint(done)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{float(loss):.3f}")
    if bar is not None:
        bar.close()
    prior.eval()

    # weights + manifest
    wbytes = _state_bytes(prior, torch.float16 if weights_dtype == "float16" else torch.float32)
    atomic_write_bytes(out / WEIGHTS_FILE, wbytes)
    n_params = sum(p.numel() for p in prior.net.parameters())
    manifest = {
        "schema": SCHEMA, "name": DeePSiMPrior.name,
        "architecture": {"class": "netphys.synthesis.prior.DeePSiMPrior", "latent_size": d,
                         "image_size": int(data.shape[-1]), "width": width, "code_layer": enc.code_layer,
                         "n_parameters": int(n_params)},
        "sigma0": float(prior.code_std.median()),
        "code_statistics": {"mean_of_means": float(prior.code_mean.mean()),
                            "median_std": float(prior.code_std.median()),
                            "fraction_positive": float((codes_all > 0).float().mean()),
                            "n_codes": int(len(codes_all))},
        "encoder": {**enc.identity()},
        "data": {"images_root": settings["images_root"], "n_images": n_img, "max_images": max_images,
                 "augmentation": f"PadCropFlip(pad={pad})" if pad else "none", "pixels": "raw RGB in [0, 1]"},
        "training": {"steps": steps, "batch_size": batch_size, "optimizer": "Adam, generator betas (0.9, 0.999), discriminator (0.5, 0.999)", "lr": lr,
                     "lr_disc": lr_disc,
                     "loss_weights": weights, "loss_normalisers": norms, "disc_width": disc_width,
                     "seed": seed, "wall_s": round(elapsed, 2), "cpu_s": round(cpu_elapsed, 2),
                     "threads": torch.get_num_threads(), "device": str(dev), "history": history},
        "versions": {"torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version(),
                     "netphys": _netphys_version()},
        "weights_file": WEIGHTS_FILE, "weights_dtype": weights_dtype,
        "weights_sha256": hashlib.sha256(wbytes).hexdigest(), "weights_bytes": len(wbytes),
    }
    loaded = _from_state(prior, wbytes, manifest)
    if val_root is not None:
        from ..stimuli import StimulusSet

        val = StimulusSet.from_folder(val_root, preprocess=None)
        if n_val < len(val):
            val = val.subsample(n=n_val, random_state=0)
        sc = reconstruction_scores(loaded, val, enc)
        manifest["validation"] = {"images_root": str(Path(val_root).resolve()), "n": sc["n"],
                                  **{k: v for k, v in sc.items()
                                     if k not in ("n", "reconstructions", "pixel_corr_each",
                                                  "baseline_pixel_corr_each")}}
    loaded.manifest = manifest
    atomic_write_text(out / MANIFEST_FILE, json.dumps(manifest, indent=2))
    return loaded


def _from_state(prior: DeePSiMPrior, wbytes: bytes, manifest: dict) -> DeePSiMPrior:
    """A fresh CPU prior holding the stored (possibly float16-rounded) weights, as load_prior gives."""
    arch = manifest["architecture"]
    p = DeePSiMPrior(arch["latent_size"], arch["image_size"], width=arch["width"], code_layer=arch["code_layer"])
    state = torch.load(io.BytesIO(wbytes), map_location="cpu", weights_only=True)
    p.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    p.sigma0 = manifest["sigma0"]
    p.manifest = manifest
    p.eval()
    for q in p.parameters():
        q.requires_grad_(False)
    return p.to(prior.device)


def _netphys_version() -> str:
    try:
        from importlib.metadata import version

        return version("netphys")
    except Exception:  # noqa: BLE001 - provenance only
        return "unknown"
