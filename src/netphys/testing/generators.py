"""Conformance check for image generators: a user's GAN passes the same check as the built-ins."""
from __future__ import annotations

import math
import numbers

import numpy as np

from .._random import check_random_state
from .._validation import NetphysError, check_device, check_int, param_error

__all__ = ["check_generator", "GeneratorCheckError"]


class GeneratorCheckError(NetphysError, AssertionError):
    """A generator broke a rule of the protocol (both a NetphysError and an AssertionError)."""


def _fail(name: str, rule: str, detail: str):
    raise GeneratorCheckError(f"check_generator: {name} breaks the rule '{rule}': {detail}")


def check_generator(gen, *, device=None, random_state=0, n: int = 3, atol: float = 1e-5) -> dict:
    """Check that ``gen`` follows the :class:`~netphys.synthesis.base.Generator` protocol.

    Parameters
    ----------
    gen : Generator
        The generator to check (a built-in space, a GAN adapter or a user's plug-in).
    device : str or torch.device, optional
        Where to run the checks; default the generator's own device. The generator is moved there
        (``.to(device)``) and moved back, with its training mode restored, when the check ends.
    random_state : int, default 0
        Seed of the probe codes (``gen.initial_codes(n, random_state)``); a Generator or None is
        resolved once to an int seed. The gradient probe uses a fixed random projection.
    n : int, default 3
        Batch size of the probes (>= 2, for the batch-invariance rule).
    atol : float, default 1e-5
        Absolute tolerance of the determinism and batch-invariance comparisons (float32 convolutions
        may pick different kernels for different batch sizes).

    Returns
    -------
    dict
        ``name``, ``latent_size``, ``image_size``, ``device``, ``checks`` (the rules passed, in order),
        ``max_batch_difference`` (largest |batched - one-at-a-time| pixel difference),
        ``grad_norm`` (norm of the gradient probe w.r.t. the codes), ``image_range`` (min, max) and
        ``describe`` (the generator's own description).

    Raises
    ------
    GeneratorCheckError
        (a :class:`NetphysError` and an ``AssertionError``) naming the first rule broken:

        1. ``attributes``: a ``torch.nn.Module`` with int ``latent_size`` and ``image_size`` >= 1,
           ``channels == 3``, finite ``sigma0 > 0``, str ``name``, and ``describe()`` a dict holding them;
        2. ``initial_codes``: ``(n, latent_size)`` float32, finite, on the device; the same seed gives
           the same codes, another seed other codes;
        3. ``images``: ``gen(codes)`` is ``(n, 3, image_size, image_size)`` float32 on the device,
           finite, within ``[0, 1]``;
        4. ``deterministic``: the same codes give the same images;
        5. ``batch_invariant``: images of a batch equal the images generated one at a time;
        6. ``differentiable``: the gradient of a random projection of the images w.r.t. the codes is
           finite and nonzero;
        7. ``validates_codes``: codes of the wrong latent size, the wrong ndim, or with NaN raise an
           error (ValueError or TypeError, e.g. NetphysError) whose message names ``'codes'``.

    Notes
    -----
    The check only reads the gradient with ``torch.autograd.grad``, so no ``.grad`` of the generator's
    parameters is written.
    """
    import torch

    func = "check_generator"
    if not isinstance(gen, torch.nn.Module):
        raise param_error("gen", func, "a Generator (a torch.nn.Module)", type(gen).__name__)
    n = check_int(n, "n", func, min_value=2)
    if not (isinstance(atol, numbers.Real) and not isinstance(atol, bool) and atol >= 0):
        raise param_error("atol", func, "a number >= 0", atol)
    dev = check_device(device, func)
    if dev is not None and dev.type == "meta":
        raise param_error("device", func, "a device with real memory (not 'meta')", device,
                          "values cannot be checked on the meta device")
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool) and random_state >= 0:
        seed = int(random_state)
    else:   # a Generator is consumed by each call: derive one reusable int seed from it
        seed = int(check_random_state(random_state, func).integers(2**31 - 1))
    name = type(gen).__name__
    checks: list[str] = []

    # 1. attributes -----------------------------------------------------------------------------
    for attr in ("latent_size", "image_size"):
        v = getattr(gen, attr, None)
        if not (isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 1):
            _fail(name, "attributes", f"{attr} must be an int >= 1, got {v!r}")
    latent, size = int(gen.latent_size), int(gen.image_size)
    if getattr(gen, "channels", None) != 3:
        _fail(name, "attributes", f"channels must be 3, got {getattr(gen, 'channels', None)!r}")
    s0 = getattr(gen, "sigma0", None)
    if not (isinstance(s0, numbers.Real) and not isinstance(s0, bool) and math.isfinite(s0) and s0 > 0):
        _fail(name, "attributes", f"sigma0 must be a finite number > 0, got {s0!r}")
    if not isinstance(getattr(gen, "name", None), str) or not gen.name:
        _fail(name, "attributes", f"name must be a non-empty str, got {getattr(gen, 'name', None)!r}")
    desc = gen.describe()
    if not isinstance(desc, dict):
        _fail(name, "attributes", f"describe() must return a dict, got {type(desc).__name__}")
    for key in ("name", "latent_size", "image_size", "sigma0"):
        if key not in desc:
            _fail(name, "attributes", f"describe() lacks the entry {key!r}")
    checks.append("attributes")

    original_device = _module_device(gen)
    was_training = gen.training
    try:
        if dev is not None:
            gen.to(dev)
        dev_now = getattr(gen, "device", None) or _module_device(gen)
        if dev is not None and not _same_device(dev_now, dev):
            _fail(name, "attributes", f"after .to({dev}) its device is {dev_now}")
        dev = torch.device(dev_now) if dev_now is not None else torch.device("cpu")

        # 2. initial codes --------------------------------------------------------------------------
        codes = gen.initial_codes(n, random_state=seed)
        _check_tensor(name, "initial_codes", codes, (n, latent), dev, "initial_codes(n)")
        if not bool(torch.isfinite(codes).all()):
            _fail(name, "initial_codes", "initial_codes(n) has non-finite values")
        again = gen.initial_codes(n, random_state=seed)
        if not torch.equal(codes, again):
            _fail(name, "initial_codes", f"initial_codes(n, random_state={seed}) differs between "
                                         "two calls (draw from a generator seeded by random_state)")
        if torch.equal(codes, gen.initial_codes(n, random_state=seed + 1)):
            _fail(name, "initial_codes", "initial_codes ignores random_state (two seeds gave the same codes)")
        checks.append("initial_codes")

        # 3. images (forward with a gradient probe, reused for rule 6) ------------------------------
        probe_codes = codes.detach().clone().requires_grad_(True)
        images = gen(probe_codes)
        _check_tensor(name, "images", images, (n, 3, size, size), dev, "gen(codes)")
        if not bool(torch.isfinite(images).all()):
            _fail(name, "images", "gen(codes) has non-finite values")
        lo, hi = float(images.detach().min()), float(images.detach().max())
        if lo < 0.0 or hi > 1.0:
            _fail(name, "images", f"images must lie in [0, 1], got values in [{lo:.4g}, {hi:.4g}]")
        checks.append("images")

        # 4. determinism -------------------------------------------------------------------------
        with torch.no_grad():
            repeat = gen(codes)
        diff = float((repeat - images.detach()).abs().max())
        if diff > atol:
            _fail(name, "deterministic", f"the same codes gave images differing by up to {diff:.3g} "
                                         f"(> atol={atol:g}); is there dropout, noise or a train-mode layer?")
        checks.append("deterministic")

        # 5. batch invariance --------------------------------------------------------------------
        with torch.no_grad():
            singles = torch.cat([gen(codes[i:i + 1]) for i in range(n)])
        batch_diff = float((singles - repeat).abs().max())
        if batch_diff > atol:
            _fail(name, "batch_invariant", f"images generated one at a time differ from the batch's by up to "
                                           f"{batch_diff:.3g} (> atol={atol:g}); batch statistics in use?")
        checks.append("batch_invariant")

        # 6. differentiable ----------------------------------------------------------------------
        if not images.requires_grad:
            _fail(name, "differentiable", "gen(codes) is not connected to the codes' autograd graph")
        rng = np.random.default_rng(20240607)   # a fixed random projection of the images
        weights = torch.from_numpy(rng.standard_normal(tuple(images.shape)).astype(np.float32)).to(dev)
        (grad,) = torch.autograd.grad((images * weights).sum(), probe_codes, allow_unused=True)
        if grad is None:
            _fail(name, "differentiable", "the images do not depend on the codes (gradient is None)")
        if not bool(torch.isfinite(grad).all()):
            _fail(name, "differentiable", "the gradient w.r.t. the codes has non-finite values")
        grad_norm = float(grad.norm())
        if grad_norm == 0.0:
            _fail(name, "differentiable", "the gradient w.r.t. the codes is zero everywhere")
        checks.append("differentiable")

        # 7. code validation ---------------------------------------------------------------------
        bad_inputs = {
            "wrong latent size": torch.zeros(n, latent + 1, device=dev),
            "wrong ndim": torch.zeros(latent, device=dev),
            "non-finite codes": codes.detach().clone().index_fill_(1, torch.tensor([0], device=dev),
                                                                   float("nan")),
        }
        for what, bad in bad_inputs.items():
            try:
                with torch.no_grad():
                    gen(bad)
            except (ValueError, TypeError) as exc:
                if "codes" not in str(exc):
                    _fail(name, "validates_codes", f"the error for {what} does not name 'codes': {exc}")
            except Exception as exc:  # noqa: BLE001 - report what was raised instead
                _fail(name, "validates_codes", f"{what} raised {type(exc).__name__} ({exc}) instead of a "
                                               "ValueError/TypeError naming 'codes'")
            else:
                _fail(name, "validates_codes", f"{what} ({tuple(bad.shape)}) was accepted without an error")
        checks.append("validates_codes")
    finally:
        if original_device is not None and dev is not None:
            gen.to(original_device)
        gen.train(was_training)

    return {"name": str(gen.name), "latent_size": latent, "image_size": size, "device": str(dev),
            "checks": checks, "max_batch_difference": batch_diff, "grad_norm": grad_norm,
            "image_range": (lo, hi), "describe": desc}


def _module_device(module):
    for t in list(module.parameters()) + list(module.buffers()):
        return t.device
    return None


def _same_device(a, b) -> bool:
    import torch

    a, b = torch.device(a), torch.device(b)
    if a.type != b.type:
        return False
    if a.type == "cuda":
        idx = lambda d: d.index if d.index is not None else torch.cuda.current_device()  # noqa: E731
        return idx(a) == idx(b)
    return True


def _check_tensor(name, rule, t, shape, dev, what):
    import torch

    if not isinstance(t, torch.Tensor):
        _fail(name, rule, f"{what} must return a torch.Tensor, got {type(t).__name__}")
    if tuple(t.shape) != tuple(shape):
        _fail(name, rule, f"{what} must have shape {tuple(shape)}, got {tuple(t.shape)}")
    if t.dtype != torch.float32:
        _fail(name, rule, f"{what} must be float32, got {t.dtype}")
    if not _same_device(t.device, dev):
        _fail(name, rule, f"{what} must be on the generator's device {dev}, got {t.device}")
