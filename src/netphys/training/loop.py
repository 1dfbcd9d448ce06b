"""The one training loop: minibatch gradient descent of a classifier on in-memory labelled splits.

Both the default model (:func:`netphys.train.train`, SGD + Nesterov, one-cycle schedule, label
smoothing, pad-crop-flip) and the orientation experiments' networks (Adam, Keras-style shift-flip,
early stopping on the validation split) are trained by :func:`fit`.
"""
from __future__ import annotations

import math
import numbers
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .._random import torch_generator
from .._validation import NetphysError, check_choice, check_int, param_error
from ..recording.hooks import restored
from .data import check_splits, split_stimuli
from .evaluate import evaluate

__all__ = ["fit", "FitResult", "OneCycle", "CHECKPOINTS"]

#: Which epoch's weights :func:`fit` leaves in the model.
CHECKPOINTS = ("last", "val_top1", "val_loss")


@dataclass(frozen=True)
class OneCycle:
    """One-cycle learning-rate schedule (Smith & Topin 2019), for ``fit(schedule=...)``.

    Parameters
    ----------
    max_lr : float, optional
        Peak learning rate; default the optimizer's ``lr``.
    pct_start : float, default 0.25
        Fraction of the steps spent increasing the rate.

    Notes
    -----
    Called as ``OneCycle(...)(optimizer, total_steps)``; returns
    ``torch.optim.lr_scheduler.OneCycleLR`` (cosine annealing, stepped once per minibatch).
    """

    max_lr: float | None = None
    pct_start: float = 0.25

    def __call__(self, optimizer, total_steps: int):
        max_lr = self.max_lr if self.max_lr is not None else optimizer.param_groups[0]["lr"]
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=max_lr, total_steps=total_steps,
                                                   pct_start=self.pct_start)


@dataclass(frozen=True)
class FitResult:
    """What :func:`fit` did.

    Attributes
    ----------
    history : list of dict
        One record per epoch (``epoch`` 0 = before training when ``record_initial``): ``train_loss``
        (mean minibatch loss; NaN at epoch 0), ``val_loss`` and ``val_top1`` (on epochs where the
        validation split was evaluated), ``seconds`` since the start, and the callbacks' entries.
    best_epoch : int
        The epoch whose weights the model holds (``checkpoint``).
    seconds : float
        Wall time of the whole call.
    """

    history: list = field(default_factory=list)
    best_epoch: int = 0
    seconds: float = 0.0

    def to_frame(self) -> pd.DataFrame:
        """The history as a DataFrame indexed by epoch."""
        return pd.DataFrame(self.history).set_index("epoch")


def _make_optimizer(optimizer, params, lr, func):
    if isinstance(optimizer, str):
        check_choice(optimizer, "optimizer", func, ("adam", "sgd"))
        if optimizer == "adam":
            return torch.optim.Adam(params, lr=lr)
        return torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True)
    if not callable(optimizer):
        raise param_error("optimizer", func, "'adam', 'sgd' or a callable params -> torch.optim.Optimizer",
                          optimizer)
    opt = optimizer(params)
    if not isinstance(opt, torch.optim.Optimizer):
        raise param_error("optimizer", func, "a callable returning a torch.optim.Optimizer",
                          type(opt).__name__)
    return opt


def _positive(value, param, func, upper=None):
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value) and value > 0
    if ok and upper is not None:
        ok = value < upper
    if not ok:
        what = "a finite number > 0" if upper is None else f"a number in (0, {upper})"
        raise param_error(param, func, what, value)
    return float(value)


def fit(model, data, *, epochs: int, batch_size: int = 32, optimizer="adam", lr: float = 1e-3,
        schedule: Callable | None = None, label_smoothing: float = 0.0, augment: Callable | None = None,
        normalise: Callable | None = None, checkpoint: str = "last", eval_every: int = 1,
        record_initial: bool = False, callbacks: Sequence[Callable] = (), perturb: Callable | None = None,
        random_state=0, device=None,
        eval_batch_size: int = 256, progress: bool = False, desc: str = "train") -> FitResult:
    """Train a classifier in place with cross-entropy on in-memory uint8 images.

    Parameters
    ----------
    model : nn.Module
        Trained in place; on return in eval mode holding the ``checkpoint`` weights.
    data : mapping
        Labelled splits (:mod:`netphys.training.data`): ``x_train``, ``y_train``, ``preprocess``
        and, for validation, ``x_val``, ``y_val``.
    epochs : int >= 1
    batch_size : int >= 1, default 32
        Each epoch is ``n // batch_size`` minibatches of a fresh permutation (the last partial
        batch is dropped); a training split smaller than one batch is one minibatch.
    optimizer : {"adam", "sgd"} or callable, default "adam"
        ``"adam"``: Adam at ``lr``; ``"sgd"``: SGD with Nesterov momentum 0.9 at ``lr``; a callable
        ``params -> torch.optim.Optimizer`` for anything else (weight decay, other momenta).
    lr : float, default 1e-3
        Learning rate of the named optimizers.
    schedule : callable, optional
        ``schedule(optimizer, total_steps) -> LRScheduler`` stepped after every minibatch, e.g.
        :class:`OneCycle`.
    label_smoothing : float in [0, 1), default 0
    augment : callable, optional
        ``augment(uint8 batch (n, C, H, W), generator) -> batch`` applied to every training
        minibatch, e.g. :class:`~netphys.training.augment.ShiftFlip`.
    normalise : callable, optional
        Maps the (augmented) batch, moved to ``device``, to the network input; default
        ``data["preprocess"].normalise``.
    checkpoint : {"last", "val_top1", "val_loss"}, default "last"
        Which evaluated epoch's weights are kept: the last, the highest validation accuracy or
        the lowest validation loss (the first such epoch on ties).
    eval_every : int >= 1, default 1
        Validation every ``eval_every`` epochs and after the last.
    record_initial : bool, default False
        Also evaluate (and run the callbacks) before training, recorded as epoch 0.
    callbacks : sequence of callables
        ``cb(model, epoch) -> dict or None`` after every epoch (and epoch 0), with the model in
        eval mode; its mode and device are restored afterwards. The entries join the epoch's record
        (e.g. mean gOSI per layer).
    perturb : callable, optional
        ``perturb(model, x, y, normalise, generator) -> x_adv`` applied to every training minibatch
        after augmentation (``x`` float in the batch's pixel range, e.g. 0-255), before ``normalise``:
        adversarial training with :class:`~netphys.training.adversarial.PGD`.
    random_state : None, int, SeedSequence, numpy Generator or torch.Generator, default 0
        Seeds the permutations and the augmentation (one ``torch.Generator``; one passed in is
        used as it is). The model's own randomness (initialisation, dropout) draws from torch's
        global RNG: seed that inside ``torch.random.fork_rng`` for bit-reproducible runs.
    device : str or torch.device, optional
        Default: the model's device.
    eval_batch_size : int, default 256
    progress : bool, default False
    desc : str
        Progress-bar label.

    Returns
    -------
    FitResult

    Raises
    ------
    NetphysError
        For invalid options or data, a ``checkpoint`` on validation without a validation split, or
        a non-finite training loss (training diverged: the error names the epoch and step; the
        model keeps the weights before that step).

    Notes
    -----
    Per minibatch: ``x = normalise(augment(x_uint8))``, ``loss = CE(model(x), y)`` (with label
    smoothing), ``zero_grad``, ``backward``, ``optimizer.step()``, ``schedule.step()``.
    """
    from tqdm.auto import tqdm

    func = "fit"
    epochs = check_int(epochs, "epochs", func, min_value=1)
    batch_size = check_int(batch_size, "batch_size", func, min_value=1)
    eval_every = check_int(eval_every, "eval_every", func, min_value=1)
    eval_batch_size = check_int(eval_batch_size, "eval_batch_size", func, min_value=1)
    lr = _positive(lr, "lr", func)
    ok = isinstance(label_smoothing, numbers.Real) and not isinstance(label_smoothing, bool) \
        and 0 <= label_smoothing < 1
    if not ok:
        raise param_error("label_smoothing", func, "a number in [0, 1)", label_smoothing)
    check_choice(checkpoint, "checkpoint", func, CHECKPOINTS)
    for name, fn in (("schedule", schedule), ("augment", augment), ("normalise", normalise),
                     ("perturb", perturb)):
        if fn is not None and not callable(fn):
            raise param_error(name, func, "a callable or None", fn)
    callbacks = list(callbacks)
    if not all(callable(cb) for cb in callbacks):
        raise param_error("callbacks", func, "a sequence of callables cb(model, epoch) -> dict", callbacks)
    check_splits(data, func)
    has_val = "x_val" in data
    if checkpoint != "last" and not has_val:
        raise param_error("checkpoint", func, "'last' when data has no validation split (x_val, y_val)",
                          checkpoint)
    gen = random_state if isinstance(random_state, torch.Generator) else torch_generator(random_state, func)
    normalise = normalise or data["preprocess"].normalise
    x_tr = torch.from_numpy(np.ascontiguousarray(data["x_train"])).permute(0, 3, 1, 2).contiguous()
    y_tr = torch.from_numpy(np.asarray(data["y_train"], dtype=np.int64))
    val = split_stimuli(data, "val") if has_val else None
    device = torch.device(device) if device is not None else next(model.parameters()).device
    opt = _make_optimizer(optimizer, model.parameters(), lr, func)
    n = len(y_tr)
    steps = max(1, n // batch_size)
    sched = schedule(opt, steps * epochs) if schedule is not None else None
    history: list[dict] = []
    best, best_state, best_epoch = None, None, epochs
    t0 = time.time()

    def end_of_epoch(epoch: int, train_loss: float) -> dict:
        model.eval()
        rec = {"epoch": epoch, "train_loss": train_loss}
        if val is not None and (epoch == 0 or epoch % eval_every == 0 or epoch == epochs):
            ev = evaluate(model, val, batch_size=eval_batch_size, device=device)
            rec.update(val_loss=ev["loss"], val_top1=ev["top1"])
        rec["seconds"] = time.time() - t0
        for cb in callbacks:
            with restored(model):
                rec.update(cb(model, epoch) or {})
        history.append(rec)
        return rec

    if record_initial:
        end_of_epoch(0, float("nan"))
    bar = tqdm(total=epochs * steps, desc=desc, disable=not progress)
    try:
        for epoch in range(1, epochs + 1):
            model.train()
            perm = torch.randperm(n, generator=gen)
            tot = 0.0
            for s in range(steps):
                idx = perm[s * batch_size:(s + 1) * batch_size]
                xb = x_tr[idx]
                if augment is not None:
                    xb = augment(xb, gen)
                yb = y_tr[idx].to(device)
                if perturb is not None:
                    xb = perturb(model, xb.to(device).float(), yb, normalise, gen)
                xb = normalise(xb.to(device))
                loss = F.cross_entropy(model(xb), yb, label_smoothing=label_smoothing)
                value = loss.item()
                if not math.isfinite(value):
                    raise NetphysError(f"training diverged: the loss of fit became {value} at epoch {epoch}, "
                                       f"step {s + 1} of {steps}; lower the learning rate (lr={lr:g}) or check "
                                       "the data")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if sched is not None:
                    sched.step()
                tot += value
                bar.update(1)
            rec = end_of_epoch(epoch, tot / steps)
            bar.set_postfix({k: round(v, 4) for k, v in rec.items()
                             if k in ("train_loss", "val_loss", "val_top1")})
            if checkpoint != "last" and "val_loss" in rec:
                score = rec["val_top1"] if checkpoint == "val_top1" else -rec["val_loss"]
                if best is None or score > best:
                    best, best_epoch = score, epoch
                    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    finally:
        bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return FitResult(history=history, best_epoch=best_epoch, seconds=time.time() - t0)
