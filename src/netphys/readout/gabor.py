"""A V1-like Gabor-wavelet feature bank: the baseline of the V4 encoding models (D3).

:class:`GaborBank` filters grayscale images with Gabor wavelets at several orientations, spatial
frequencies and phases, rectifies (half-wave, or the energy of a quadrature pair), compresses and
averages the maps on a coarse spatial grid, giving features ``(n, channel, row, col)`` that
:class:`netphys.readout.EncodingModel` fits like a CNN layer (weight maps included).

Conventions (those of :mod:`netphys.stimuli.gratings`)
------------------------------------------------------
``x`` is the row index (down), ``y`` the column index (right). Orientation ``theta`` (degrees) is the
direction of the carrier's wave vector, counter-clockwise from the displayed horizontal: ``theta = 0``
filters prefer vertical stripes, like ``grating_images(0, ...)``. Spatial frequency is in cycles per
image at the bank's ``size``; phase (degrees) is that of the cosine carrier at the filter centre.
"""
from __future__ import annotations

import math
import numbers

import numpy as np
import pandas as pd
import torch
import xarray as xr
from torch import nn
from torch.nn import functional as F

from .._validation import check_choice, check_int, param_error

__all__ = ["GaborBank"]

#: ITU-R BT.601 luma weights for RGB -> grayscale
_LUMA = (0.299, 0.587, 0.114)


def _sigma_per_wavelength(bandwidth: float) -> float:
    """Gaussian SD of the envelope per carrier wavelength for a given half-magnitude bandwidth (octaves)."""
    b = 2.0 ** bandwidth
    return math.sqrt(math.log(2.0) / 2.0) / math.pi * (b + 1.0) / (b - 1.0)


def _fast_len(n: int) -> int:
    """The smallest 2^a 3^b 5^c >= n (a fast FFT length)."""
    best = 2 * n
    p2 = 1
    while p2 < 2 * n:
        p3 = p2
        while p3 < 2 * n:
            p5 = p3
            while p5 < 2 * n:
                if p5 >= n:
                    best = min(best, p5)
                p5 *= 5
            p3 *= 3
        p2 *= 2
    return best


def _angles(values, param: str, func: str, *, default_n: bool = False) -> np.ndarray:
    if default_n and isinstance(values, numbers.Integral) and not isinstance(values, bool):
        n = check_int(values, param, func, min_value=1)
        return np.arange(n) * 180.0 / n
    try:
        a = np.atleast_1d(np.asarray(values, dtype=np.float64))
    except (TypeError, ValueError):
        a = np.array([np.nan])
    if a.ndim != 1 or a.size == 0 or not np.all(np.isfinite(a)) or len(np.unique(a)) != a.size:
        what = "an int >= 1 or " if default_n else ""
        raise param_error(param, func, what + "a non-empty sequence of distinct finite angles (degrees)", values)
    return a


class GaborBank(nn.Module):
    """Rectified Gabor-wavelet responses pooled on a coarse grid: a V1-like image representation.

    Parameters
    ----------
    orientations : int or sequence of float, default 8
        Number of orientations evenly spaced over [0, 180) degrees, or the orientations in degrees.
    frequencies : sequence of float, default (2, 4, 8, 16)
        Carrier spatial frequencies in cycles per image (at ``size`` pixels), in (0, size / 2].
    phases : sequence of float, default (0, 90, 180, 270)
        Carrier phases in degrees (``mode="rectified"`` only). The default four phases are
        half-wave rectification of both signs of an even/odd (quadrature) pair.
    mode : {"rectified", "energy"}, default "rectified"
        ``"rectified"``: :math:`\\max(0, g_\\phi * I)` per phase (simple cells); ``"energy"``:
        :math:`\\sqrt{(g_{0} * I)^2 + (g_{90} * I)^2}` (complex cells; ``phases`` is ignored).
    nonlinearity : {"sqrt", "log1p", None}, default "sqrt"
        Compressive nonlinearity applied to the rectified responses before pooling.
    size : int, default 64
        Images are converted to grayscale and resized (bilinear, antialiased) to ``size`` x ``size``.
    grid : int, default 8
        Responses are averaged over ``grid`` x ``grid`` blocks (adaptive average pooling).
    bandwidth : float, default 1.0
        Spatial-frequency bandwidth in octaves (full width at half magnitude); the envelope SD is
        :math:`\\sigma = \\lambda \\sqrt{\\ln 2 / 2} (2^b + 1) / (\\pi (2^b - 1))` (0.56 wavelengths
        for one octave).

    Attributes
    ----------
    channels : pandas.DataFrame
        One row per output channel: ``orientation``, ``sf`` (cycles per image), ``phase`` (NaN in
        energy mode), ``wavelength`` and ``sigma`` in pixels.

    Notes
    -----
    The filters are :math:`g_\\phi(x, y) = e^{-(x^2 + y^2)/2\\sigma^2}\\cos(k y' + \\phi)`,
    :math:`y' = -x\\sin\\theta + y\\cos\\theta`, :math:`k = 2\\pi\\,sf/size`; the even (cosine) filter
    has its DC removed (a multiple of the envelope is subtracted), the even and odd filters are
    scaled to unit L2 norm, and :math:`g_\\phi = \\cos\\phi\\,g_0 - \\sin\\phi\\,g_{90}`. Filtering is
    a cross-correlation computed with FFTs on the mean-subtracted image zero-padded far enough that
    no wrap-around reaches the output window (the border is padded with the image's mean luminance); filters are
    truncated at 3 SD and at twice the image size. Output: ``(n, C, grid, grid)`` with
    ``C = n_orientations * n_frequencies * n_phases`` (``* 1`` in energy mode), channel index
    ``(i_orientation * n_frequencies + i_frequency) * n_phases + i_phase``.

    References
    ----------
    .. [1] K. N. Kay, T. Naselaris, R. J. Prenger, J. L. Gallant, "Identifying natural images from
       human brain activity", Nature 452, 352-355 (2008) (Gabor wavelet pyramid model).
    .. [2] R. Abbasi-Asl, "Structural compression of convolutional neural networks with applications
       in interpretability" (PhD thesis, UC Berkeley), ch. 3: the Gabor wavelet baseline of the V4
       models ("orientations, spatial frequencies and phase, followed by half-wave rectification and a
       compressive nonlinearity").
    .. [3] E. H. Adelson, J. R. Bergen, "Spatiotemporal energy models for the perception of motion",
       J. Opt. Soc. Am. A 2, 284-299 (1985).
    """

    def __init__(self, orientations=8, frequencies=(2, 4, 8, 16), phases=(0, 90, 180, 270), *,
                 mode: str = "rectified", nonlinearity: str | None = "sqrt", size: int = 64, grid: int = 8,
                 bandwidth: float = 1.0):
        super().__init__()
        func = "GaborBank"
        self.size = check_int(size, "size", func, min_value=4)
        self.grid = check_int(grid, "grid", func, min_value=1, max_value=self.size)
        self.mode = check_choice(mode, "mode", func, ("rectified", "energy"))
        self.nonlinearity = check_choice(nonlinearity, "nonlinearity", func, ("sqrt", "log1p", None))
        if isinstance(bandwidth, bool) or not isinstance(bandwidth, numbers.Real) or not 0 < bandwidth <= 4:
            raise param_error("bandwidth", func, "a number of octaves in (0, 4]", bandwidth)
        self.bandwidth = float(bandwidth)
        self.orientations = _angles(orientations, "orientations", func, default_n=True)
        try:
            sf = np.atleast_1d(np.asarray(frequencies, dtype=np.float64))
        except (TypeError, ValueError):
            sf = np.array([np.nan])
        if (sf.ndim != 1 or sf.size == 0 or not np.all(np.isfinite(sf)) or np.any(sf <= 0)
                or np.any(sf > self.size / 2) or len(np.unique(sf)) != sf.size):
            raise param_error("frequencies", func, f"distinct spatial frequencies in (0, {self.size / 2}] "
                              f"cycles per image (Nyquist at size={self.size})", frequencies)
        self.frequencies = sf
        self.phases = _angles(phases, "phases", func) if mode == "rectified" else np.array([np.nan])
        c = _sigma_per_wavelength(self.bandwidth)
        rows = []
        for th in self.orientations:
            for f in self.frequencies:
                for ph in self.phases:
                    lam = self.size / f
                    rows.append({"orientation": float(th), "sf": float(f), "phase": float(ph),
                                 "wavelength": lam, "sigma": c * lam})
        self.channels = pd.DataFrame(rows)
        self.channels.index.name = "channel"
        # quadrature pairs per frequency: (n_orient * 2, K, K) real kernels, flipped for correlation
        self._kernels = []
        for i, f in enumerate(self.frequencies):
            k = self._pair(f, c)
            self.register_buffer(f"kernel_{i}", torch.as_tensor(k, dtype=torch.float32), persistent=False)
            self._kernels.append(f"kernel_{i}")
        ph = np.deg2rad(self.phases) if mode == "rectified" else np.zeros(1)
        self.register_buffer("_mix", torch.as_tensor(np.stack([np.cos(ph), -np.sin(ph)], 1),
                                                     dtype=torch.float32), persistent=False)

    @property
    def n_channels(self) -> int:
        return len(self.channels)

    def _pair(self, sf: float, c: float) -> np.ndarray:
        lam = self.size / sf
        sigma = c * lam
        half = int(min(math.ceil(3 * sigma), self.size - 1))
        u = np.arange(-half, half + 1, dtype=np.float64)
        x, y = np.meshgrid(u, u, indexing="ij")               # x: row offset, y: column offset
        env = np.exp(-(x ** 2 + y ** 2) / (2 * sigma ** 2))
        k = 2 * np.pi / lam
        out = []
        for th in np.deg2rad(self.orientations):
            yp = -x * np.sin(th) + y * np.cos(th)
            even = env * np.cos(k * yp)
            even = even - env * (even.sum() / env.sum())       # zero DC
            odd = env * np.sin(k * yp)
            for g in (even, odd):
                out.append(g / np.linalg.norm(g))
        return np.stack(out)[:, ::-1, ::-1].copy()             # flipped: convolution == correlation

    # --------------------------------------------------------------------------------------- forward
    def _gray(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 3:
            x = x[:, None]
        if x.ndim != 4 or x.shape[1] not in (1, 3):
            raise param_error("x", "GaborBank.forward", "a tensor (n, 3, H, W), (n, 1, H, W) or (n, H, W)",
                              f"shape {tuple(x.shape)}")
        x = x.to(torch.float32)
        if x.shape[1] == 3:
            w = torch.tensor(_LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
            x = (x * w).sum(1, keepdim=True)
        if x.shape[-2:] != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False,
                              antialias=True)
        return x - x.mean(dim=(-2, -1), keepdim=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled rectified responses ``(n, C, grid, grid)`` of images ``x`` (float, any range).

        ``x``: (n, 3, H, W) RGB, (n, 1, H, W) or (n, H, W) grayscale; resized to ``size`` if needed.
        """
        img = self._gray(x)                                    # (n, 1, s, s)
        s = self.size
        n_or, n_ph = len(self.orientations), self.phases.size
        pooled = []
        for name in self._kernels:
            ker = getattr(self, name)                          # (2 n_or, K, K), flipped
            h = (ker.shape[-1] - 1) // 2
            # circular correlation of length N >= s + h equals the linear one on the cropped 'same' window
            N = _fast_len(s + h)
            fi = torch.fft.rfft2(img, s=(N, N))                # (n, 1, N, N//2+1)
            fk = torch.fft.rfft2(ker, s=(N, N))                # (2 n_or, N, N//2+1)
            full = torch.fft.irfft2(fi * fk, s=(N, N))         # (n, 2 n_or, N, N)
            resp = full[..., h:h + s, h:h + s].reshape(len(img), n_or, 2, s, s)
            if self.mode == "energy":
                a = torch.sqrt(resp[:, :, 0] ** 2 + resp[:, :, 1] ** 2)[:, :, None]   # (n, n_or, 1, s, s)
            else:
                a = torch.relu(torch.einsum("pk,nokij->nopij", self._mix, resp))     # (n, n_or, n_ph, s, s)
            if self.nonlinearity == "sqrt":
                a = torch.sqrt(a)
            elif self.nonlinearity == "log1p":
                a = torch.log1p(a)
            pooled.append(F.adaptive_avg_pool2d(a.reshape(len(img), n_or * n_ph, s, s), self.grid)
                          .reshape(len(img), n_or, n_ph, self.grid, self.grid))
        out = torch.stack(pooled, dim=2)                       # (n, n_or, n_sf, n_ph, g, g)
        return out.reshape(len(img), n_or * len(self.frequencies) * n_ph, self.grid, self.grid)

    def transform(self, images, *, batch_size: int = 32) -> xr.DataArray:
        """Features of a stack of images, labelled.

        Parameters
        ----------
        images : array-like or tensor
            (n, H, W, 3) uint8 in [0, 255] (e.g. ``NeuralDataset.images``) or float in [0, 1];
            (n, 3, H, W); or (n, H, W) grayscale.
        batch_size : int, default 32

        Returns
        -------
        xarray.DataArray, dims ("stimulus", "channel", "row", "col"), float32
            Channel coordinates ``orientation``, ``sf``, ``phase``; the bank's settings in ``attrs``.

        Raises
        ------
        NetphysError
            Not a stack of images, non-finite values, a bad ``batch_size``.
        """
        func = "GaborBank.transform"
        batch_size = check_int(batch_size, "batch_size", func, min_value=1)
        if isinstance(images, torch.Tensor):
            images = images.detach().cpu().numpy()
        a = np.asarray(images)
        if a.ndim == 4 and a.shape[-1] in (1, 3):               # channels last (NeuralDataset.images)
            a = np.moveaxis(a, -1, 1)
        if a.ndim not in (3, 4) or a.shape[0] == 0 or (a.ndim == 4 and a.shape[1] not in (1, 3)):
            raise param_error("images", func, "a stack of images (n, H, W, 3), (n, 3, H, W) or (n, H, W)",
                              f"shape {a.shape}")
        if a.dtype == np.uint8:
            a = a.astype(np.float32) / 255.0
        elif a.dtype.kind in "fiu":
            a = a.astype(np.float32)
            if not np.all(np.isfinite(a)):
                raise param_error("images", func, "finite pixel values", "an array containing NaN or inf")
        else:
            raise param_error("images", func, "uint8 or float pixels", str(a.dtype))
        out = []
        device = self._mix.device                              # the bank's device (``bank.to("cuda")``)
        with torch.no_grad():
            for i in range(0, len(a), batch_size):
                x = torch.from_numpy(np.ascontiguousarray(a[i:i + batch_size])).to(device)
                out.append(self(x).cpu().numpy())
        feats = np.concatenate(out)
        coords = {"stimulus": np.arange(len(feats)), "channel": np.arange(self.n_channels),
                  "row": np.arange(self.grid), "col": np.arange(self.grid)}
        for c in ("orientation", "sf", "phase"):
            coords[c] = ("channel", self.channels[c].to_numpy())
        attrs = {"model": "gabor", "layer": "gabor", "mode": self.mode, "nonlinearity": str(self.nonlinearity),
                 "size": self.size, "grid": self.grid, "bandwidth": self.bandwidth}
        return xr.DataArray(feats, dims=("stimulus", "channel", "row", "col"), coords=coords,
                            name="gabor", attrs=attrs)

    def extra_repr(self) -> str:
        return (f"orientations={len(self.orientations)}, frequencies={tuple(self.frequencies.tolist())}, "
                f"phases={len(self.phases) if self.mode == 'rectified' else 'energy'}, size={self.size}, "
                f"grid={self.grid}, nonlinearity={self.nonlinearity}")
