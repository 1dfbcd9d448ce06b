"""Adversarial examples for training and for measuring robustness: L-infinity PGD in pixel space.

Used by :func:`netphys.fit` (``perturb=PGD(...)``) to train the robustness ladder of the functional-
segregation paper's contrast (networks that differ only in how adversarially robust they are), and by
:func:`robust_accuracy` to measure where each network sits on the ladder.

Notes
-----
Projected gradient descent (Madry et al. 2018) on the cross-entropy, in the L-infinity ball of radius
``epsilon`` (in image units, ``epsilon = 2/255`` = two grey levels) around the clean image, clipped to
the valid pixel range: a uniform random start in the ball, then ``steps`` signed-gradient steps of size
``step_size`` (default ``2.5 * epsilon / steps``, Madry's rule), each followed by the projection. The
attack is computed with the network in eval mode (batch-norm running statistics, no dropout) so that
crafting the attack neither updates the running statistics nor depends on the dropout draw; the training
step that follows runs in train mode as usual. ``steps=1`` with the random start and ``step_size =
1.25 * epsilon`` is the "fast" FGSM-RS recipe of Wong, Rice & Kolter (2020).

References
----------
Madry, Makelov, Schmidt, Tsipras & Vladu (2018), Towards deep learning models resistant to adversarial
attacks, ICLR. Wong, Rice & Kolter (2020), Fast is better than free, ICLR.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .._validation import check_int, param_error

__all__ = ["PGD", "robust_accuracy"]


def _eps(value, func: str) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value) and 0 <= value <= 1
    if not ok:
        raise param_error("epsilon", func, "a number in [0, 1] (image units: 2/255 is two grey levels)", value)
    return float(value)


@dataclass(frozen=True)
class PGD:
    """L-infinity projected gradient ascent on the cross-entropy (a ``perturb`` of :func:`netphys.fit`).

    Parameters
    ----------
    epsilon : float in [0, 1]
        Radius of the ball in image units (0-1 range); ``0`` returns the clean batch.
    steps : int >= 1, default 3
    step_size : float, optional
        Default ``2.5 * epsilon / steps``.
    random_start : bool, default True
    scale : float, default 255
        The pixel range of the batches it receives (``fit`` passes 0-255 floats).

    Notes
    -----
    Called as ``pgd(model, x, y, normalise, generator)`` with ``x`` a float batch in ``[0, scale]``;
    returns the adversarial batch in the same range, detached. See the module notes.
    """

    epsilon: float
    steps: int = 3
    step_size: float | None = None
    random_start: bool = True
    scale: float = 255.0

    def __post_init__(self):
        _eps(self.epsilon, "PGD")
        check_int(self.steps, "steps", "PGD", min_value=1)
        if self.step_size is not None and not (isinstance(self.step_size, numbers.Real) and self.step_size > 0):
            raise param_error("step_size", "PGD", "a number > 0 or None (2.5 epsilon / steps)", self.step_size)

    def describe(self) -> dict:
        return {"attack": "pgd_linf", "epsilon": self.epsilon, "steps": self.steps,
                "step_size": self.step_size if self.step_size is not None else 2.5 * self.epsilon / self.steps,
                "random_start": self.random_start, "mode": "eval"}

    def __call__(self, model, x: torch.Tensor, y: torch.Tensor, normalise, generator=None) -> torch.Tensor:
        if self.epsilon == 0:
            return x
        eps = self.epsilon * self.scale
        step = (self.step_size if self.step_size is not None else 2.5 * self.epsilon / self.steps) * self.scale
        was_training = model.training
        model.eval()
        try:
            x = x.detach().float()
            if self.random_start:
                noise = torch.rand(x.shape, generator=generator).to(x.device)  # CPU draw: same on any device
                adv = (x + (2 * noise - 1) * eps).clamp_(0, self.scale)
            else:
                adv = x.clone()
            for _ in range(self.steps):
                adv.requires_grad_(True)
                with torch.enable_grad():
                    loss = F.cross_entropy(model(normalise(adv)), y)
                    (g,) = torch.autograd.grad(loss, adv)
                with torch.no_grad():
                    adv = adv + step * g.sign()
                    adv = torch.minimum(torch.maximum(adv, x - eps), x + eps).clamp_(0, self.scale)
            return adv.detach()
        finally:
            model.train(was_training)


def robust_accuracy(model, stimuli, epsilons, *, steps: int = 10, batch_size: int = 128, n: int | None = None,
                    random_state=0, device=None) -> dict:
    """Top-1 accuracy under an L-infinity PGD attack of each radius (0 = clean accuracy).

    Parameters
    ----------
    model : nn.Module
        A classifier; a model loaded by netphys is normalised with its recorded preprocessing, any
        other module with the stimuli's (as :func:`~netphys.training.evaluate`).
    stimuli : StimulusSet
        Labelled images (e.g. ``imagenette-64/val``), at the model's input size.
    epsilons : sequence of float in [0, 1]
    steps : int, default 10
        PGD-``steps`` with step ``2.5 epsilon / steps`` and a random start.
    n : int, optional
        Use the first ``n`` stimuli of a seeded permutation (all by default).
    random_state : int

    Returns
    -------
    dict
        ``{epsilon: accuracy}``, plus ``"n"`` and ``"attack"`` (the settings).
    """
    from .._random import check_random_state, torch_generator
    from ..models.loading import ModelInfo

    func = "robust_accuracy"
    eps = [_eps(e, func) for e in np.atleast_1d(epsilons).tolist()]
    if stimuli.labels is None or len(stimuli) == 0 or np.asarray(stimuli.labels).min() < 0:
        raise param_error("stimuli", func, "a non-empty, labelled StimulusSet",
                          "no stimuli" if len(stimuli) == 0 else "unlabelled stimuli (label -1)")
    # the model's recorded preprocessing (a model loaded by netphys), else the stimuli's (as evaluate);
    # Preprocess.normalise takes the float 0-255 batch with evaluate's arithmetic, scale and BGR order
    info = getattr(model, "netphys", None)
    pre = info.preprocess if isinstance(info, ModelInfo) else stimuli.preprocess
    dev = torch.device(device) if device is not None else next(model.parameters()).device

    def normalise(x):
        return pre.normalise(x)

    idx = np.arange(len(stimuli))
    if n is not None:
        n = check_int(n, "n", func, min_value=1)
        idx = np.sort(check_random_state(random_state, func).permutation(len(stimuli))[:n])
    # contiguous NCHW (not a channels-last view): the kernels evaluate uses, to the last bit
    images = torch.from_numpy(np.ascontiguousarray(stimuli.load_images(idx))).permute(0, 3, 1, 2)
    images = images.float().contiguous()
    labels = torch.from_numpy(np.asarray(stimuli.labels)[idx].astype(np.int64))
    gen = torch_generator(random_state, func)
    was = model.training
    model.eval()
    out = {}
    try:
        for e in eps:
            attack = PGD(e, steps=steps)
            correct = 0
            for s in range(0, len(idx), batch_size):
                xb, yb = images[s:s + batch_size].to(dev), labels[s:s + batch_size].to(dev)
                adv = attack(model, xb, yb, normalise, gen)
                with torch.no_grad():
                    correct += int((model(normalise(adv)).argmax(1) == yb).sum())
            out[e] = correct / len(idx)
    finally:
        model.train(was)
    out["n"] = len(idx)
    out["attack"] = PGD(eps[-1] if eps else 0.0, steps=steps).describe() | {"epsilon": eps}
    return out
