"""Built-in image spaces for feature visualisation: pixels, a decorrelated Fourier basis, grey levels.

Every space is a :class:`~netphys.synthesis.base.Generator`: ``codes (n, latent_size) -> images
(n, 3, image_size, image_size)`` in ``[0, 1]``, differentiable with respect to the codes, with no
trainable parameters (only buffers, which follow ``.to(device)``).

Step sizes
----------
The :attr:`sigma0` of every built-in space is chosen so that one CMA-ES step of that size changes a
pixel near mid-grey by about 1/8 of its range (0.125):

* sigmoid spaces (:class:`PixelSpace` default, :class:`FourierSpace`, :class:`GrayscaleSpace`): the
  codes give pre-squash values of unit variance per unit code variance, and ``sigmoid'(0) = 1/4``, so
  ``sigma0 = 0.5``;
* :class:`PixelSpace` with ``squash='clamp'`` (codes are the pixel values themselves): ``sigma0 = 0.125``.

``initial_codes`` draws faint noise around mid-grey (pixel standard deviation about 0.025), seeded by
``random_state``; pass ``sigma0=`` to a constructor to override the step size.
"""
from __future__ import annotations

import math
import numbers

import numpy as np
import torch
import torch.nn.functional as F

from .._random import check_random_state
from .._validation import check_choice, check_int, param_error
from .base import Generator

__all__ = ["PixelSpace", "FourierSpace", "GrayscaleSpace", "COLOR_CORRELATION_SVD_SQRT"]

#: Square root of the colour correlation of ImageNet pixels (from its SVD), as used by Lucid
#: (Olah et al. 2017). Rows are R, G, B; columns the decorrelated components.
COLOR_CORRELATION_SVD_SQRT = np.array([[0.26, 0.09, 0.02],
                                       [0.27, 0.00, -0.05],
                                       [0.27, -0.09, 0.03]], dtype=np.float64)

#: pre-squash standard deviation of ``initial_codes`` in the sigmoid spaces (pixel std ~ 0.025)
_INIT_STD = 0.1


# --------------------------------------------------------------------------------------- helpers

def _check_codes(codes, latent_size: int, func: str, device: torch.device) -> torch.Tensor:
    """``codes`` as a float32 ``(n, latent_size)`` tensor on ``device``, or a templated error.

    Used by every built-in generator (and the GAN adapters): wrong type, ndim, latent size, an empty
    batch or non-finite values raise a :class:`~netphys._validation.NetphysError` naming ``'codes'``.
    NumPy arrays are accepted; tensors on another device are moved (differentiably).
    """
    want = f"a 2-D float tensor of shape (n, {latent_size})"
    if not isinstance(codes, torch.Tensor):
        if isinstance(codes, np.ndarray):
            codes = torch.from_numpy(np.asarray(codes, dtype=np.float32))
        else:
            raise param_error("codes", func, want, type(codes).__name__,
                              "pass a torch.Tensor such as generator.initial_codes(n)")
    if codes.dtype.is_complex or not (codes.dtype.is_floating_point or codes.dtype in
                                      (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)):
        raise param_error("codes", func, want, f"a tensor of dtype {codes.dtype}")
    if codes.ndim != 2 or codes.shape[1] != latent_size:
        fix = ("add a batch dimension: codes[None]" if codes.ndim == 1 and codes.shape[0] == latent_size
               else f"this generator's latent_size is {latent_size}")
        raise param_error("codes", func, want, f"a tensor of shape {tuple(codes.shape)}", fix)
    if codes.shape[0] == 0:
        raise param_error("codes", func, want + " with n >= 1", f"a tensor of shape {tuple(codes.shape)}")
    if codes.dtype != torch.float32:
        codes = codes.to(torch.float32)
    if codes.device != device:
        codes = codes.to(device)
    if codes.device.type != "meta" and not bool(torch.isfinite(codes).all()):
        n_bad = int((~torch.isfinite(codes)).sum())
        raise param_error("codes", func, "finite (no NaN or inf)",
                          f"{n_bad} non-finite value(s) in codes of shape {tuple(codes.shape)}")
    return codes


def _check_image_size(image_size, func: str) -> int:
    return check_int(image_size, "image_size", func, min_value=2)


def _check_positive(value, param: str, func: str, *, allow_zero: bool = False) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value >= 0 if allow_zero else value > 0)
    if not ok:
        raise param_error(param, func, "a finite number " + (">= 0" if allow_zero else "> 0"), value)
    return float(value)


def _sigma0(value, default: float, func: str) -> float:
    return default if value is None else _check_positive(value, "sigma0", func)


def _normal_codes(n, latent_size: int, std: float, mean: float, random_state, func: str,
                  device) -> torch.Tensor:
    n = check_int(n, "n", func, min_value=1)
    rng = check_random_state(random_state, func)
    x = mean + std * rng.standard_normal((n, latent_size))
    return torch.from_numpy(x.astype(np.float32)).to(device)


def gaussian_kernel1d(sigma: float, size_limit: int) -> np.ndarray:
    """Normalised 1-D Gaussian of standard deviation ``sigma`` px, radius ``ceil(3 sigma)`` (capped)."""
    radius = max(1, min(int(math.ceil(3.0 * sigma)), size_limit - 1))
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


class _Blur(torch.nn.Module):
    """Separable Gaussian blur (reflect padding), depthwise over ``channels``; identity when sigma=0."""

    def __init__(self, sigma: float, channels: int, image_size: int):
        super().__init__()
        self.sigma = float(sigma)
        self.channels = channels
        if sigma > 0:
            k = torch.from_numpy(gaussian_kernel1d(sigma, image_size).astype(np.float32))
        else:
            k = torch.ones(1)
        self.register_buffer("kernel", k, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.sigma <= 0:
            return x
        r = (self.kernel.numel() - 1) // 2
        c = self.channels
        kx = self.kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1)
        ky = self.kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1)
        x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="reflect"), kx, groups=c)
        return F.conv2d(F.pad(x, (0, 0, r, r), mode="reflect"), ky, groups=c)


class _PixelField(torch.nn.Module):
    """codes (n, c*S*S) -> blurred fields (n, c, S, S) (pre-squash)."""

    def __init__(self, image_size: int, channels: int, blur: float):
        super().__init__()
        self.image_size, self.channels = image_size, channels
        self.latent_size = channels * image_size * image_size
        self.blur = _Blur(blur, channels, image_size)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        s = self.image_size
        return self.blur(codes.reshape(codes.shape[0], self.channels, s, s))


def rfft2_frequencies(image_size: int) -> np.ndarray:
    """Radial frequency ``|f|`` (cycles/pixel) of each entry of an ``rfft2`` spectrum, shape (S, S//2+1)."""
    fy = np.fft.fftfreq(image_size)[:, None]
    fx = np.fft.rfftfreq(image_size)[None, :]
    return np.sqrt(fy ** 2 + fx ** 2)


class _FourierField(torch.nn.Module):
    """codes -> real fields (n, c, S, S) through the independent coefficients of an rfft2 spectrum.

    The latent holds, per channel, one real number for each self-conjugate coefficient kept (DC and the
    Nyquist entries) and the real and imaginary parts of each other independent coefficient kept; the
    conjugate-symmetric entries of columns 0 and S/2 are filled in, so no latent direction is inert and
    without a cut the latent has exactly ``c * S * S`` entries. Coefficients are weighted by
    ``1 / max(|f|, 1/S) ** decay`` (the pair entries by a further ``1/sqrt(2)``), normalised so that
    standard-normal codes give fields of unit mean variance.
    """

    def __init__(self, image_size: int, channels: int, decay: float, freq_cut: float | None):
        super().__init__()
        s = image_size
        self.image_size, self.channels = s, channels
        wr = s // 2 + 1
        freqs = rfft2_frequencies(s)
        keep = np.ones_like(freqs, dtype=bool) if freq_cut is None else freqs <= freq_cut * 0.5 + 1e-12
        ky, kx = np.meshgrid(np.arange(s), np.arange(wr), indexing="ij")
        edge_col = (kx == 0) | ((s % 2 == 0) & (kx == s // 2))      # columns mirrored onto themselves
        self_conj = edge_col & ((ky == 0) | ((s % 2 == 0) & (ky == s // 2)))
        mirrored = edge_col & (ky > s // 2) if s % 2 == 0 else edge_col & (ky > (s - 1) // 2)
        independent = keep & ~mirrored
        pair = independent & ~self_conj
        flat = np.arange(s * wr).reshape(s, wr)
        re_idx = flat[independent]
        im_idx = flat[pair]
        # mirror entries: (s - ky, col) = conj((ky, col)) for ky in 1..ceil(s/2)-1 on the edge columns
        mir = keep & mirrored
        mir_dst = flat[mir]
        mir_src = flat[(s - ky[mir]) % s, kx[mir]]
        scale = 1.0 / np.maximum(freqs, 1.0 / s) ** decay
        w_re = scale.ravel()[re_idx] * np.where(pair.ravel()[re_idx], 1 / math.sqrt(2), 1.0)
        w_im = scale.ravel()[im_idx] / math.sqrt(2)
        # E||field||^2 / S^2 per channel = (sum_k |X_k|^2 over the full spectrum) / S^2
        full_power = (np.sum(w_re ** 2 * np.where(pair.ravel()[re_idx], 2.0, 1.0)) + 2 * np.sum(w_im ** 2))
        norm = math.sqrt(full_power / (s * s))
        self.n_re, self.n_im = int(re_idx.size), int(im_idx.size)
        self.n_coefficients = int(independent.sum())
        self.latent_per_channel = self.n_re + self.n_im
        self.latent_size = channels * self.latent_per_channel
        self.register_buffer("re_idx", torch.from_numpy(re_idx.astype(np.int64)), persistent=False)
        self.register_buffer("im_idx", torch.from_numpy(im_idx.astype(np.int64)), persistent=False)
        self.register_buffer("mir_dst", torch.from_numpy(mir_dst.astype(np.int64)), persistent=False)
        self.register_buffer("mir_src", torch.from_numpy(mir_src.astype(np.int64)), persistent=False)
        self.register_buffer("w_re", torch.from_numpy((w_re / norm).astype(np.float32)), persistent=False)
        self.register_buffer("w_im", torch.from_numpy((w_im / norm).astype(np.float32)), persistent=False)
        self.wr = wr
        # with a frequency cut the latent is much smaller than the image: the (linear) map is then one
        # matrix product with its basis images, several times faster than scatter + irfft2 per batch
        self.register_buffer("basis", None, persistent=False)
        if self.latent_per_channel * 4 <= s * s:
            eye = torch.eye(self.latent_per_channel * channels, dtype=torch.float32)[: self.latent_per_channel]
            with torch.no_grad():
                b = self._fft_field(eye)[:, 0].reshape(self.latent_per_channel, s * s)
            self.basis = b.contiguous()

    def spectrum(self, codes: torch.Tensor) -> torch.Tensor:
        """The full rfft2 half-spectrum ``(n, c, S, S//2+1)`` (complex) of the fields."""
        n, c, s = codes.shape[0], self.channels, self.image_size
        a = codes.reshape(n, c, self.latent_per_channel)
        zeros = a.new_zeros(n, c, s * self.wr)
        re = zeros.index_copy(-1, self.re_idx, a[..., :self.n_re] * self.w_re)
        im = zeros.index_copy(-1, self.im_idx, a[..., self.n_re:] * self.w_im)
        if self.mir_dst.numel():
            re = re.index_copy(-1, self.mir_dst, re.index_select(-1, self.mir_src))
            im = im.index_copy(-1, self.mir_dst, -im.index_select(-1, self.mir_src))
        return torch.complex(re, im).reshape(n, c, s, self.wr)

    def _fft_field(self, codes: torch.Tensor) -> torch.Tensor:
        s = self.image_size
        return torch.fft.irfft2(self.spectrum(codes), s=(s, s), norm="ortho")

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        if self.basis is None:
            return self._fft_field(codes)
        n, c, s = codes.shape[0], self.channels, self.image_size
        return (codes.reshape(n * c, self.latent_per_channel) @ self.basis).reshape(n, c, s, s)


def _color_matrix() -> np.ndarray:
    """Lucid's colour matrix rescaled so that its largest row has unit norm."""
    m = COLOR_CORRELATION_SVD_SQRT
    return m / np.linalg.norm(m, axis=1).max()


# --------------------------------------------------------------------------------------- spaces

class PixelSpace(Generator):
    """Codes are the pixels themselves (optionally Gaussian-blurred), squashed into ``[0, 1]``.

    Parameters
    ----------
    image_size : int
        Side ``S`` of the square images (>= 2). ``latent_size = 3 * S * S`` (C-order ``(3, S, S)``).
    blur : float, default 0.0
        Standard deviation in pixels of a Gaussian blur applied to the codes *before* the squashing (a
        smoothness prior; reflect padding, radius ``ceil(3 * blur)``). 0 means no blur.
    squash : {'sigmoid', 'clamp'}, default 'sigmoid'
        ``'sigmoid'``: ``image = sigmoid(blur(codes))``; codes are unbounded logits, gradients never
        vanish entirely. ``'clamp'``: ``image = clamp(blur(codes), 0, 1)``; codes are pixel values, the
        gradient is zero where a pixel is clipped.
    sigma0 : float, optional
        CMA-ES step size; default 0.5 for ``'sigmoid'``, 0.125 for ``'clamp'`` (a pixel step of about
        0.125 near mid-grey).

    Notes
    -----
    ``initial_codes`` draws ``N(0, 0.1^2)`` logits (``'sigmoid'``) or ``0.5 + N(0, 0.025^2)`` pixel
    values (``'clamp'``): mid-grey images with faint noise (pixel std about 0.025).
    """

    name = "pixel"

    def __init__(self, image_size: int, *, blur: float = 0.0, squash: str = "sigmoid",
                 sigma0: float | None = None):
        super().__init__()
        func = "PixelSpace"
        self.image_size = _check_image_size(image_size, func)
        self.blur_sigma = _check_positive(blur, "blur", func, allow_zero=True)
        self.squash = check_choice(squash, "squash", func, ("sigmoid", "clamp"))
        self.sigma0 = _sigma0(sigma0, 0.5 if squash == "sigmoid" else 0.125, func)
        self.pixels = _PixelField(self.image_size, 3, self.blur_sigma)
        self.latent_size = self.pixels.latent_size

    def field(self, codes: torch.Tensor) -> torch.Tensor:
        """The pre-squash image ``(n, 3, S, S)``: the blurred codes (linear in codes)."""
        return self.pixels(_check_codes(codes, self.latent_size, "PixelSpace.field", self.device))

    def initial_codes(self, n: int, random_state=0) -> torch.Tensor:
        if self.squash == "sigmoid":
            return _normal_codes(n, self.latent_size, _INIT_STD, 0.0, random_state,
                                 "PixelSpace.initial_codes", self.device)
        return _normal_codes(n, self.latent_size, _INIT_STD / 4, 0.5, random_state,
                             "PixelSpace.initial_codes", self.device)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        codes = _check_codes(codes, self.latent_size, "PixelSpace.forward", self.device)
        x = self.pixels(codes)
        return torch.sigmoid(x) if self.squash == "sigmoid" else x.clamp(0.0, 1.0)

    def describe(self) -> dict:
        return {**super().describe(), "blur": self.blur_sigma, "squash": self.squash}


class FourierSpace(Generator):
    """Lucid-style decorrelated Fourier space: codes are scaled rfft2 coefficients of the image.

    ``image = sigmoid(C @ irfft2(spectrum(codes)))`` per pixel, where the spectrum's independent
    coefficients (real and imaginary parts) are the codes weighted by ``1 / max(|f|, 1/S) ** decay``
    and ``C`` is the ImageNet colour-correlation matrix (:data:`COLOR_CORRELATION_SVD_SQRT`).

    Parameters
    ----------
    image_size : int
        Side ``S`` of the square images (>= 2).
    decorrelate : bool, default True
        Mix the three fields with the colour matrix (rescaled so its largest row has unit norm; Lucid
        divides by the largest column norm instead, which only changes the overall scale). ``False``:
        each field is one RGB channel.
    decay : float, default 1.0
        Spectral fall-off: coefficient amplitudes scale as ``1/f**decay`` (power as ``1/f**(2 decay)``).
    freq_cut : float, optional
        Keep only frequencies ``|f| <= freq_cut * 0.5`` cycles/pixel (a fraction of Nyquist, radially:
        ``1.0`` keeps the inscribed disc and drops the corners). Cut coefficients are *not in the
        latent*, so ``latent_size`` shrinks roughly as ``3 * S**2 * pi/4 * freq_cut**2`` - what makes
        CMA-ES tractable. ``None`` (default) keeps every coefficient: ``latent_size = 3 * S * S``.
    sigma0 : float, optional
        CMA-ES step size, default 0.5.

    Notes
    -----
    Only the independent coefficients of a real image's spectrum are latent: DC and the Nyquist
    entries contribute one real each, every other coefficient a real and an imaginary part, and the
    conjugate-symmetric half of columns 0 and S/2 is filled in. With ``decay=0`` and no cut, the map
    from codes to fields is orthogonal. The weights are normalised so that standard-normal codes give
    pre-squash fields (before colour mixing) of unit mean variance whatever the cut; with the rescaled
    colour matrix each RGB channel then has a pre-squash variance of at most 1.

    All-zero codes give exactly ``0.5`` in every pixel and channel (``sigmoid(0)``).
    ``initial_codes`` draws ``N(0, 0.1^2)`` codes (faint low-frequency blobs on mid-grey).

    References
    ----------
    Olah, Mordvintsev & Schubert (2017), Feature Visualization, Distill (Lucid's ``fft_image`` and
    ``to_valid_rgb``).
    """

    name = "fourier"

    def __init__(self, image_size: int, *, decorrelate: bool = True, decay: float = 1.0,
                 freq_cut: float | None = None, sigma0: float | None = None):
        super().__init__()
        func = "FourierSpace"
        self.image_size = _check_image_size(image_size, func)
        if not isinstance(decorrelate, (bool, np.bool_)):
            raise param_error("decorrelate", func, "True or False", decorrelate)
        self.decorrelate = bool(decorrelate)
        self.decay = _check_positive(decay, "decay", func, allow_zero=True)
        self.freq_cut = _check_freq_cut(freq_cut, self.image_size, func)
        self.sigma0 = _sigma0(sigma0, 0.5, func)
        self.fourier = _FourierField(self.image_size, 3, self.decay, self.freq_cut)
        self.latent_size = self.fourier.latent_size
        m = _color_matrix() if self.decorrelate else np.eye(3)
        self.register_buffer("color", torch.from_numpy(m.astype(np.float32)), persistent=False)

    def field(self, codes: torch.Tensor) -> torch.Tensor:
        """The pre-squash image ``(n, 3, S, S)``: colour-mixed fields before the sigmoid (linear in codes)."""
        codes = _check_codes(codes, self.latent_size, "FourierSpace.field", self.device)
        return self._field(codes)

    def _field(self, codes):
        if self.decorrelate:
            # the field is the same linear map per channel, so mixing the colours of the codes first equals
            # mixing the images' colours after it, at a cost of the latent size instead of the pixels
            n = codes.shape[0]
            k = self.fourier.latent_per_channel
            codes = torch.matmul(self.color, codes.reshape(n, 3, k)).reshape(n, 3 * k)
        return self.fourier(codes)

    def initial_codes(self, n: int, random_state=0) -> torch.Tensor:
        return _normal_codes(n, self.latent_size, _INIT_STD, 0.0, random_state,
                             "FourierSpace.initial_codes", self.device)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        codes = _check_codes(codes, self.latent_size, "FourierSpace.forward", self.device)
        return torch.sigmoid(self._field(codes))

    def describe(self) -> dict:
        return {**super().describe(), "decorrelate": self.decorrelate, "decay": self.decay,
                "freq_cut": self.freq_cut}


def _check_freq_cut(freq_cut, image_size: int, func: str):
    if freq_cut is None:
        return None
    ok = (isinstance(freq_cut, numbers.Real) and not isinstance(freq_cut, bool) and math.isfinite(freq_cut)
          and 0 < freq_cut <= math.sqrt(2))
    if not ok:
        raise param_error("freq_cut", func, "None or a fraction of the Nyquist frequency in (0, sqrt(2)]",
                          freq_cut, "e.g. freq_cut=0.25 keeps |f| <= 0.125 cycles/pixel")
    return float(freq_cut)


class GrayscaleSpace(Generator):
    """One grey-level image repeated in the three channels.

    Parameters
    ----------
    image_size : int
        Side ``S`` of the square images (>= 2).
    basis : {'fourier', 'pixel'}, default 'fourier'
        ``'fourier'``: one field in the Fourier parameterisation of :class:`FourierSpace` (``decay``,
        ``freq_cut``; no colour mixing); ``'pixel'``: one channel of pixels as in :class:`PixelSpace`
        (``blur``). Both are squashed with a sigmoid.
    decay, freq_cut : see :class:`FourierSpace` (``basis='fourier'`` only).
    blur : see :class:`PixelSpace` (``basis='pixel'`` only).
    sigma0 : float, optional
        CMA-ES step size, default 0.5 (a grey-level step of about 0.125 near mid-grey).

    Notes
    -----
    ``latent_size`` is ``S * S`` without a cut (a third of the colour spaces'). The three output
    channels are the same tensor values, so any objective sees a grey image.
    """

    name = "grayscale"

    def __init__(self, image_size: int, *, basis: str = "fourier", decay: float = 1.0,
                 freq_cut: float | None = None, blur: float = 0.0, sigma0: float | None = None):
        super().__init__()
        func = "GrayscaleSpace"
        self.image_size = _check_image_size(image_size, func)
        self.basis = check_choice(basis, "basis", func, ("fourier", "pixel"))
        self.decay = _check_positive(decay, "decay", func, allow_zero=True)
        self.freq_cut = _check_freq_cut(freq_cut, self.image_size, func)
        self.blur_sigma = _check_positive(blur, "blur", func, allow_zero=True)
        if self.basis == "fourier" and self.blur_sigma:
            raise param_error("blur", func, "0 with basis='fourier'", blur, "use freq_cut to smooth instead")
        if self.basis == "pixel" and freq_cut is not None:
            raise param_error("freq_cut", func, "None with basis='pixel'", freq_cut, "use blur instead")
        self.sigma0 = _sigma0(sigma0, 0.5, func)
        if self.basis == "fourier":
            self.inner = _FourierField(self.image_size, 1, self.decay, self.freq_cut)
        else:
            self.inner = _PixelField(self.image_size, 1, self.blur_sigma)
        self.latent_size = self.inner.latent_size

    def field(self, codes: torch.Tensor) -> torch.Tensor:
        """The pre-squash grey image ``(n, 1, S, S)`` (linear in codes)."""
        return self.inner(_check_codes(codes, self.latent_size, "GrayscaleSpace.field", self.device))

    def initial_codes(self, n: int, random_state=0) -> torch.Tensor:
        return _normal_codes(n, self.latent_size, _INIT_STD, 0.0, random_state,
                             "GrayscaleSpace.initial_codes", self.device)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        codes = _check_codes(codes, self.latent_size, "GrayscaleSpace.forward", self.device)
        return torch.sigmoid(self.inner(codes)).expand(-1, 3, -1, -1).contiguous()

    def describe(self) -> dict:
        d = {**super().describe(), "basis": self.basis}
        if self.basis == "fourier":
            d.update(decay=self.decay, freq_cut=self.freq_cut)
        else:
            d.update(blur=self.blur_sigma)
        return d


#: image spaces by name (``make_space``); "prior" is the shipped 64-px DeePSiM-style prior
SPACES = ("fourier", "pixel", "grayscale", "prior", "dcgan_faces")


def make_space(name: str, image_size: int, **options) -> Generator:
    """An image space by name at ``image_size`` px (options go to its constructor).

    ``"fourier"`` :class:`FourierSpace`, ``"pixel"`` :class:`PixelSpace`, ``"grayscale"``
    :class:`GrayscaleSpace`, ``"prior"`` the shipped 64-px DeePSiM-style prior
    (:class:`netphys.synthesis.prior.DeePSiMPrior`, always 64 px: objectives resize images to the model's
    input size), ``"dcgan_faces"`` the
    DCGAN of the ``gan-face-generate`` wheel (:class:`netphys.synthesis.gans.DCGANFaces`).
    """
    func = "make_space"
    if name not in SPACES:
        raise param_error("space", func, f"one of {list(SPACES)}", name,
                          "or pass a netphys.synthesis.Generator instance (a user's GAN) to evolve")
    if name == "fourier":
        return FourierSpace(image_size, **options)
    if name == "pixel":
        return PixelSpace(image_size, **options)
    if name == "grayscale":
        return GrayscaleSpace(image_size, **options)
    if name == "prior":
        from .prior import DeePSiMPrior

        return DeePSiMPrior.pretrained(**options)  # 64 px; objectives resize images to the model's input
    from .gans import DCGANFaces

    return DCGANFaces(image_size=image_size, **options)
