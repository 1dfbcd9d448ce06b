"""Image priors and transforms for gradient-based stimulus synthesis (DeepTune), batched and differentiable.

* :func:`lp_norm` -- ``R_p``, the p-norm (to the p-th power) of the mean-subtracted image;
* :func:`total_variation` -- ``R_TV``, the finite-difference total variation ``TV^alpha``;
* :func:`jitter` -- random integer (circular) shifts, one per image, from a seeded torch generator;
* :func:`gaussian_blur` -- separable Gaussian blur (reflect padding).

All take images ``(n, C, H, W)`` (or ``(n, H, W)``, read as one channel), work on any device and dtype of
their input and are differentiable with respect to it; :func:`lp_norm` and :func:`total_variation`
return one value per image, shape ``(n,)``.

References
----------
.. [1] Abbasi Asl R. "Interpretable Machine Learning with Applications in Neuroscience", PhD thesis, UC
   Berkeley (2018), chapter 3, "smooth DeepTune" (regularisers ``R_p`` and ``R_TV``, p = 6, alpha = 1).
.. [2] Mahendran A., Vedaldi A. (2015). "Understanding deep image representations by inverting them",
   CVPR (``alpha``-norm and ``TV^beta`` image priors of the same form).
"""
from __future__ import annotations

import math
import numbers

import torch
import torch.nn.functional as F

from .._validation import param_error

__all__ = ["lp_norm", "total_variation", "jitter", "gaussian_blur"]


def _as_images(x, func: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise param_error("x", func, "a float tensor of images (n, C, H, W) or (n, H, W)", type(x).__name__)
    if x.dim() == 3:
        x = x.unsqueeze(1)
    if x.dim() != 4 or not x.is_floating_point():
        raise param_error("x", func, "a float tensor of images (n, C, H, W) or (n, H, W)",
                          f"{x.dtype} tensor of shape {tuple(x.shape)}")
    return x


def _real(value, param: str, func: str, *, low: float, low_open: bool = False) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = value > low if low_open else value >= low
    if not ok:
        raise param_error(param, func, f"a finite number {'>' if low_open else '>='} {low:g}", value)
    return float(value)


def lp_norm(x: torch.Tensor, p: float = 6) -> torch.Tensor:
    """``R_p(z) = ||z - mean(z)||_p^p``: the p-th power of the p-norm of each mean-subtracted image.

    Parameters
    ----------
    x : torch.Tensor, shape (n, C, H, W) or (n, H, W)
        Images (any range; DeepTune uses ``[0, 1]``).
    p : float, default 6
        ``p >= 1`` (6 in [1]_).

    Returns
    -------
    torch.Tensor, shape (n,)
        ``sum_i |z_i - mean(z)|^p`` per image, with the sum and the mean over all ``C H W`` values of
        the image (the flattened image, channels included).

    Raises
    ------
    NetphysError
        ``x`` not a float tensor of images, ``p < 1``.

    Notes
    -----
    [1]_ (section "smooth DeepTune") defines ``R_p(z) = ||z~||_p^p`` where ``z~`` is the image ``z``
    "mean-subtracted and flattened into a vector", i.e.

    .. math:: R_p(z) = \\sum_i |z_i - \\bar z|^p, \\qquad \\bar z = \\frac{1}{N} \\sum_i z_i,

    the p-th *power* of the norm, not its p-th root. Its gradient is ``h_i - mean(h)`` with
    ``h_i = p |z_i - mean|^(p-1) sign(z_i - mean)`` (the mean term vanishes for p = 2, where the
    deviations sum to zero); it is invariant to adding a constant to the image (the mean is free), and
    a large ``p`` leaves moderate pixels almost free and pushes hard on extreme ones:
    "it prevents the solution from taking extreme pixel values". For a colour image the flattened vector
    holds all three channels and one mean is subtracted (the thesis's images are grayscale, ``z in
    R^{s x s}``).

    References
    ----------
    .. [1] Abbasi Asl (2018), "Interpretable Machine Learning with Applications in Neuroscience",
       PhD thesis, UC Berkeley, chapter 3.
    """
    func = "lp_norm"
    x = _as_images(x, func)
    p = _real(p, "p", func, low=1.0)
    flat = x.flatten(1)
    d = flat - flat.mean(dim=1, keepdim=True)
    return d.abs().pow(p).sum(dim=1)


def total_variation(x: torch.Tensor, alpha: float = 1) -> torch.Tensor:
    """``R_TV(z) = sum_(i,j) ((z[i,j+1] - z[i,j])^2 + (z[i+1,j] - z[i,j])^2)^(alpha/2)`` per image.

    Parameters
    ----------
    x : torch.Tensor, shape (n, C, H, W) or (n, H, W)
        Images.
    alpha : float, default 1
        ``alpha > 0`` (1 in [1]_: the isotropic total variation).

    Returns
    -------
    torch.Tensor, shape (n,)
        The sum over ``i in {0..H-2}``, ``j in {0..W-2}`` and over channels, each channel read as a
        grayscale image of its own.

    Raises
    ------
    NetphysError
        ``x`` not a float tensor of images, ``alpha <= 0``.

    Notes
    -----
    The finite-difference total variation of [1]_ on an image ``z in R^{s x s}``:

    .. math:: R_{TV}(z) = \\sum_{(i, j) \\in \\{1, \\dots, s-1\\}^2}
              \\left((z_{i,j+1} - z_{i,j})^2 + (z_{i+1,j} - z_{i,j})^2\\right)^{\\alpha/2},

    i.e. forward differences along columns and rows at every pixel that has both neighbours (the last
    row and column are not summed over as base pixels), and the power ``alpha/2`` of their squared
    magnitude -- not the anisotropic ``|dx| + |dy|``. The thesis treats grayscale images; here the
    ``C`` channels are independent grayscale images whose TVs add (a grayscale image repeated to three
    channels has three times its grayscale TV -- DeepTune's ``grayscale=True`` regularises the single
    channel). Where both differences vanish the term is 0 and, for ``alpha < 2``, its (undefined)
    gradient is taken as 0, a subgradient, so flat images give finite gradients.

    References
    ----------
    .. [1] Abbasi Asl (2018), "Interpretable Machine Learning with Applications in Neuroscience",
       PhD thesis, UC Berkeley, chapter 3.
    .. [2] Rudin L., Osher S., Fatemi E. (1992). "Nonlinear total variation based noise removal
       algorithms", Physica D 60, 259-268.
    """
    func = "total_variation"
    x = _as_images(x, func)
    alpha = _real(alpha, "alpha", func, low=0.0, low_open=True)
    base = x[..., :-1, :-1]
    dx = x[..., :-1, 1:] - base          # z[i, j+1] - z[i, j]
    dy = x[..., 1:, :-1] - base          # z[i+1, j] - z[i, j]
    sq = dx * dx + dy * dy
    if alpha == 2.0:
        val = sq
    else:
        pos = sq > 0
        safe = torch.where(pos, sq, torch.ones_like(sq))   # finite gradient where sq == 0
        val = torch.where(pos, safe.pow(alpha / 2.0), torch.zeros_like(sq))
    return val.flatten(1).sum(dim=1)


def jitter(x: torch.Tensor, max_shift: int, generator: torch.Generator | None = None, *,
           return_shifts: bool = False):
    """Shift each image by its own random integer offset ``(dy, dx)``, circularly (``torch.roll``).

    Parameters
    ----------
    x : torch.Tensor, shape (n, C, H, W) or (n, H, W)
    max_shift : int
        Offsets are drawn uniformly from ``{-max_shift, ..., max_shift}`` along each axis; 0 returns
        ``x`` itself.
    generator : torch.Generator, optional
        A CPU generator (e.g. :func:`netphys._random.torch_generator`); the offsets are drawn on the CPU
        so that they do not depend on the device of ``x``. None uses a fresh generator seeded with 0
        (reproducible; the library never touches the global torch seed).
    return_shifts : bool, default False
        Also return the offsets, an ``(n, 2)`` int64 CPU tensor of ``(dy, dx)``.

    Returns
    -------
    torch.Tensor (same shape as ``x``), or (tensor, shifts)
        ``out[k, :, i, j] = x[k, :, (i - dy_k) mod H, (j - dx_k) mod W]``; differentiable.

    Raises
    ------
    NetphysError
        Bad ``x``, ``max_shift`` not an int >= 0, ``generator`` not a CPU ``torch.Generator``.

    Notes
    -----
    Jitter (Mordvintsev et al. 2015, "Inceptionism") makes the optimised image robust to small
    translations and suppresses the high-frequency patterns a fixed pixel grid invites. DeepTune [1]_
    does not jitter; it is off by default in :func:`netphys.synthesis.deeptune.deeptune`.

    References
    ----------
    .. [1] Abbasi Asl (2018), "Interpretable Machine Learning with Applications in Neuroscience",
       PhD thesis, UC Berkeley, chapter 3.
    """
    func = "jitter"
    squeeze = isinstance(x, torch.Tensor) and x.dim() == 3
    x = _as_images(x, func)
    if not isinstance(max_shift, numbers.Integral) or isinstance(max_shift, bool) or max_shift < 0:
        raise param_error("max_shift", func, "an int >= 0", max_shift)
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    if not isinstance(generator, torch.Generator) or generator.device.type != "cpu":
        raise param_error("generator", func, "a CPU torch.Generator", type(generator).__name__,
                          "use netphys._random.torch_generator(random_state)")
    n, _, h, w = x.shape
    shifts = torch.randint(-int(max_shift), int(max_shift) + 1, (n, 2), generator=generator)
    if max_shift == 0:
        out = x
    else:
        dev = x.device
        rows = (torch.arange(h)[None, :] - shifts[:, :1]) % h            # (n, H)
        cols = (torch.arange(w)[None, :] - shifts[:, 1:]) % w            # (n, W)
        k = torch.arange(n)[:, None, None]
        out = x.permute(0, 2, 3, 1)[k.to(dev), rows[:, :, None].to(dev), cols[:, None, :].to(dev)]
        out = out.permute(0, 3, 1, 2)
    if squeeze:
        out = out[:, 0]
    return (out, shifts) if return_shifts else out


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of each channel (kernel radius ``ceil(3 sigma)``, reflect padding).

    Parameters
    ----------
    x : torch.Tensor, shape (n, C, H, W) or (n, H, W)
    sigma : float
        Standard deviation in pixels, ``>= 0``; 0 returns ``x`` itself.

    Returns
    -------
    torch.Tensor, same shape as ``x``; differentiable. The kernel sums to 1, so the mean intensity of
    a flat region and the ``[0, 1]`` range are preserved.

    Raises
    ------
    NetphysError
        Bad ``x``, negative or non-finite ``sigma``.

    Notes
    -----
    Blurring the image between gradient steps (Yosinski et al. 2015, "Understanding neural networks
    through deep visualization") is an alternative smoothness prior to ``R_TV``; DeepTune [1]_ uses TV
    only, so blur is off by default.

    References
    ----------
    .. [1] Abbasi Asl (2018), "Interpretable Machine Learning with Applications in Neuroscience",
       PhD thesis, UC Berkeley, chapter 3.
    """
    func = "gaussian_blur"
    squeeze = isinstance(x, torch.Tensor) and x.dim() == 3
    x = _as_images(x, func)
    sigma = _real(sigma, "sigma", func, low=0.0)
    if sigma == 0:
        return x[:, 0] if squeeze else x
    n, c, h, w = x.shape
    radius = max(1, int(math.ceil(3.0 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    y = x.reshape(n * c, 1, h, w)
    # reflect padding needs pad < size; fall back to replicate for tiny images
    mode = "reflect" if radius < min(h, w) else "replicate"
    y = F.conv2d(F.pad(y, (radius, radius, 0, 0), mode=mode), k.view(1, 1, 1, -1))
    y = F.conv2d(F.pad(y, (0, 0, radius, radius), mode=mode), k.view(1, 1, -1, 1))
    y = y.reshape(n, c, h, w)
    return y[:, 0] if squeeze else y
