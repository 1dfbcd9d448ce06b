"""Training the netphys default model (``netphys train``): a thin recipe over :func:`netphys.training.fit`.

The recipe of the shipped model: SGD with Nesterov momentum, one-cycle learning-rate schedule, label
smoothing, weight decay, random crops from a reflect-padded image and horizontal flips, all on
batched uint8 tensors in memory (the whole 64-px Imagenette train split is ~120 MB), so the CPU
spends its time in the network. Everything random is driven by ``random_state``.
"""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import numbers
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ._random import check_random_state
from ._validation import check_int, param_error
from .stimuli import Preprocess, StimulusSet
from .training import OneCycle, PadCropFlip, evaluate, fit

log = logging.getLogger(__name__)

__all__ = ["TrainConfig", "train", "evaluate"]


def _number(value, param: str, lo: float, hi: float | None, *, lo_open: bool, hi_open: bool = True):
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value > lo if lo_open else value >= lo) and (hi is None or (value < hi if hi_open else value <= hi))
    if not ok:
        left = "(" if lo_open else "["
        what = (f"a finite number {'>' if lo_open else '>='} {lo:g}" if hi is None else
                f"a number in {left}{lo:g}, {hi:g}{')' if hi_open else ']'}")
        raise param_error(param, "train", what, value)


@dataclass(frozen=True)
class TrainConfig:
    """Settings of :func:`train` (defaults reproduce the shipped model).

    Attributes
    ----------
    epochs, batch_size : int
    lr : float
        Peak learning rate of the one-cycle schedule.
    momentum, weight_decay, label_smoothing : float
    pad : int
        Reflect padding of the random crops.
    size : int
        Input size (images are resized and centre-cropped to it), >= 32 (five 2x2 poolings).
    width : float
        Channel multiplier of the VGG-16 plan (> 0).
    random_state : int
    threads : int or None
        PyTorch intra-op threads (``None``: PyTorch's setting).
    activation : {"relu", "tanh"}
        The network's nonlinearity (``"tanh"``: the Tanh twin of the functional-segregation paper).
    epsilon : float, default 0
        Adversarial training: radius of the L-infinity PGD attack in grey levels (``2`` = 2/255);
        0 trains on clean images.
    attack_steps : int, default 3
        PGD steps per minibatch (step ``2.5 epsilon / attack_steps``, random start; see
        :class:`netphys.training.adversarial.PGD`).
    init : str or None
        Start from these weights instead of a random initialisation (fine-tuning): ``"default"`` (the
        shipped default model) or the path of a ``netphys train`` output; the architecture is then
        that model's (``width``/``activation`` must match it).
    """

    epochs: int = 24
    batch_size: int = 128
    lr: float = 0.2
    momentum: float = 0.9
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    pad: int = 6
    size: int = 64
    width: float = 0.25
    random_state: int = 0
    threads: int | None = None
    activation: str = "relu"
    epsilon: float = 0.0
    attack_steps: int = 3
    init: str | None = None

    def validate(self) -> "TrainConfig":
        """Check every field (errors name :func:`train`, the public entry); returns ``self``.

        Raises
        ------
        NetphysError
            For a non-positive or non-finite ``lr`` or ``width``, ``epochs``/``batch_size``/
            ``threads`` < 1, ``size`` < 32, ``pad`` outside ``[0, size)``, ``momentum`` or
            ``label_smoothing`` outside ``[0, 1)``, a negative ``weight_decay`` or ``random_state``.
        """
        func = "train"
        check_int(self.epochs, "epochs", func, min_value=1)
        check_int(self.batch_size, "batch_size", func, min_value=1)
        _number(self.lr, "lr", 0.0, None, lo_open=True)
        _number(self.momentum, "momentum", 0.0, 1.0, lo_open=False)
        _number(self.weight_decay, "weight_decay", 0.0, None, lo_open=False)
        _number(self.label_smoothing, "label_smoothing", 0.0, 1.0, lo_open=False)
        check_int(self.size, "size", func, min_value=32)
        check_int(self.pad, "pad", func, min_value=0, max_value=self.size - 1)
        _number(self.width, "width", 0.0, None, lo_open=True)
        check_int(self.random_state, "random_state", func, min_value=0)
        if self.threads is not None:
            check_int(self.threads, "threads", func, min_value=1)
        from .models.architectures import ACTIVATIONS

        if not isinstance(self.activation, str) or self.activation not in ACTIVATIONS:
            raise param_error("activation", func, f"one of {sorted(ACTIVATIONS)}", self.activation)
        _number(self.epsilon, "epsilon", 0.0, 255.0, lo_open=False, hi_open=False)
        check_int(self.attack_steps, "attack_steps", func, min_value=1)
        if self.init is not None and not isinstance(self.init, (str, os.PathLike)):
            raise param_error("init", func, "None, 'default' or a path to netphys train output", self.init)
        return self


def _check_out_writable(out) -> Path:
    """Create ``out`` and prove a file can be written there, before any training time is spent."""
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".netphys-write-test-"):
            pass
    except OSError as exc:
        raise param_error("out", "train", "a folder that can be created and written to", str(out),
                          f"{exc.strerror or exc}; pass another --out") from None
    return out


def _pixel_normaliser(pre: Preprocess):
    """``(x - 255 mean) / (255 std)`` on 0-255 float batches: the shipped model's exact arithmetic
    (``Preprocess.normalise`` scales first, which differs in the last bit)."""
    mean = torch.tensor(pre.mean).view(1, 3, 1, 1) * 255
    std = torch.tensor(pre.std).view(1, 3, 1, 1) * 255

    def normalise(x: torch.Tensor) -> torch.Tensor:
        return (x - mean.to(x.device)) / std.to(x.device)

    return normalise


def train(train_dir, val_dir=None, *, config: TrainConfig = TrainConfig(), out=None, device="cpu",
          progress: bool = True):
    """Train the netphys default VGG-16-shaped network on an image folder.

    Parameters
    ----------
    train_dir, val_dir : path
        Image folders in ImageFolder layout (e.g. ``imagenette-64/train`` and ``/val``).
    config : TrainConfig
        Validated first (:meth:`TrainConfig.validate`).
    out : path, optional
        Folder to write ``weights.pt`` and ``manifest.json`` into (atomically). It is created and
        checked to be writable before training starts.
    device : str

    Returns
    -------
    model : torch.nn.Module
    manifest : dict
        Architecture, data, accuracy, seed, timing and sha256 of the weights file.

    Raises
    ------
    NetphysError
        For invalid settings or folders, an unwritable ``out`` (before training), or a training
        loss that is not finite (training diverged; nothing is written).
    """
    if not isinstance(config, TrainConfig):
        raise param_error("config", "train", "a TrainConfig", type(config).__name__)
    config.validate()
    created = out is not None and not Path(out).exists()
    if out is not None:
        out = _check_out_writable(out)
    dev = torch.device(device)
    # the model's default initialisation and dropout draw from torch's global RNG: seed it inside a
    # fork so that the caller's RNG state is left as it was (the library never seeds globally)
    threads = torch.get_num_threads()
    try:
        if config.threads:
            torch.set_num_threads(config.threads)
        with torch.random.fork_rng(devices=[dev.index or 0] if dev.type == "cuda" else []):
            return _train(train_dir, val_dir, config=config, out=out, device=device, progress=progress)
    except BaseException:
        if created:  # leave no empty folder behind a run that wrote nothing
            try:
                out.rmdir()
            except OSError:
                pass
        raise
    finally:
        torch.set_num_threads(threads)


def _architecture_of(model) -> dict:
    """The ``netphys_vgg16`` keyword arguments that rebuild ``model`` (a SmallVGG)."""
    from torch import nn

    from .models.architectures import DEFAULT_ARCH, VGG16_PLAN, SmallVGG, scaled_plan

    if not isinstance(model, SmallVGG):
        raise param_error("init", "train", "weights of a netphys_vgg16 model", type(model).__name__)
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    lins = [m for m in model.classifier if isinstance(m, nn.Linear)]
    acts = [m for m in model.features if isinstance(m, (nn.ReLU, nn.Tanh))]
    # a width whose scaled plan is this model's channel plan: c / 64 is one only when every layer's
    # v * width rounds exactly (0.25, 0.0625); else the middle of the widths that give every layer's count
    chans = tuple(m.out_channels for m in convs)
    plan = [v for v in VGG16_PLAN if v != "M"]
    lo = max(((c - 0.5) / v if c > 1 else 0.0) for c, v in zip(chans, plan))
    hi = min((c + 0.5) / v for c, v in zip(chans, plan))
    width = next((w for w in (chans[0] / 64, (lo + hi) / 2)
                  if tuple(v for v in scaled_plan(VGG16_PLAN, w) if v != "M") == chans), None)
    if width is None or len(chans) != len(plan):
        raise param_error("init", "train", "weights of a netphys_vgg16 model (a VGG-16 plan at one width)",
                          f"channels {chans}")
    arch = dict(DEFAULT_ARCH)
    arch.update(width=width, hidden=lins[0].out_features, num_classes=lins[-1].out_features,
                pool_size=model.avgpool.output_size[0],
                batch_norm=any(isinstance(m, nn.BatchNorm2d) for m in model.features),
                dropout=next(m.p for m in model.classifier if isinstance(m, nn.Dropout)))
    if isinstance(acts[0], nn.Tanh):
        arch["activation"] = "tanh"
    return arch


def _train(train_dir, val_dir, *, config: TrainConfig, out, device, progress: bool):
    from .models.architectures import DEFAULT_ARCH, netphys_vgg16

    func = "train"
    rng = check_random_state(config.random_state, func)
    torch_seed = int(rng.integers(2**62))
    torch.manual_seed(torch_seed)  # inside train's fork_rng: the model's initialisation draws from here
    gen = torch.Generator().manual_seed(torch_seed + 1)

    pre = Preprocess(resize=config.size, crop=config.size)
    tr = StimulusSet.from_folder(train_dir, preprocess=pre)
    if len(tr.class_names) < 2:
        raise param_error("train_dir", func, "a folder with at least 2 class sub-folders", str(train_dir))
    va = StimulusSet.from_folder(val_dir, preprocess=pre) if val_dir else None
    if va is not None and va.class_names != tr.class_names:
        raise param_error("val_dir", func, "the same classes as train_dir", va.class_names)
    if config.batch_size > len(tr):  # the last partial batch is dropped: no step would be taken
        raise param_error("batch_size", func, f"an int <= the number of training images ({len(tr)})",
                          config.batch_size, "pass a smaller batch_size")
    t0 = time.time()
    log.info("decoding %d training images", len(tr))
    data = {"x_train": tr.load_images(), "y_train": tr.labels.astype(np.int64), "preprocess": pre,
            "class_names": list(tr.class_names), "source": str(train_dir)}
    if va is not None:
        data.update(x_val=va.load_images(), y_val=va.labels.astype(np.int64))
    t_load = time.time() - t0

    init_ident = None
    if config.init is None:
        arch = dict(DEFAULT_ARCH, width=config.width, num_classes=len(tr.class_names))
        if config.activation != "relu":
            arch["activation"] = config.activation
        model = netphys_vgg16(**arch).to(device)
    else:  # fine-tuning: the architecture is the initial model's
        from .models import load_model
        from .models.loading import model_info

        init = load_model("netphys_vgg16", str(config.init))
        info = model_info(init)
        del init.netphys  # the fine-tuned model is no longer the init's weights: no stale provenance
        arch = {k: v for k, v in _architecture_of(init).items()}
        if arch.get("activation", "relu") != config.activation:
            raise param_error("activation", func, f"the activation of the init model ({arch.get('activation', 'relu')!r})",
                              config.activation)
        if arch["num_classes"] != len(tr.class_names):
            raise param_error("init", func, f"a model with {len(tr.class_names)} outputs (the classes of train_dir)",
                              f"{arch['num_classes']} outputs")
        model = init.to(device)
        init_ident = {"weights": str(config.init), "identity": info.weights, "sha256": info.sha256}
    perturb = None
    if config.epsilon > 0:
        from .training.adversarial import PGD

        perturb = PGD(config.epsilon / 255.0, steps=config.attack_steps)
    sgd = functools.partial(torch.optim.SGD, lr=config.lr, momentum=config.momentum, nesterov=True,
                            weight_decay=config.weight_decay)
    result = fit(model, data, epochs=config.epochs, batch_size=config.batch_size, optimizer=sgd, lr=config.lr,
                 schedule=OneCycle(max_lr=config.lr, pct_start=0.25), label_smoothing=config.label_smoothing,
                 augment=PadCropFlip(config.pad), normalise=_pixel_normaliser(pre), eval_every=5, perturb=perturb,
                 random_state=gen, device=device, progress=progress, desc="train")
    history = result.history
    manifest = {
        "name": "netphys_vgg16",
        "architecture": {"builder": "netphys.models.architectures.netphys_vgg16", **arch},
        "input": {"size": config.size, "preprocess": pre.to_dict()},
        "data": {"train": str(train_dir), "val": str(val_dir) if val_dir else None,
                 "n_train": len(tr), "n_val": len(va) if va is not None else 0,
                 "classes": tr.class_names},
        "config": {**asdict(config), "init": None if config.init is None else str(config.init)},  # a Path too
        "adversarial": perturb.describe() if perturb is not None else None,
        "init": init_ident,
        "seed": config.random_state,
        "history": history,
        "val_top1": history[-1].get("val_top1"),
        "val_loss": history[-1].get("val_loss"),
        "train_seconds": result.seconds,
        "load_seconds": t_load,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
    if out is not None:
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        tmp = out / "weights.pt.tmp"
        torch.save(state, tmp)
        os.replace(tmp, out / "weights.pt")
        manifest["sha256"] = hashlib.sha256((out / "weights.pt").read_bytes()).hexdigest()
        manifest["weights_file"] = "weights.pt"
        tmpm = out / "manifest.json.tmp"
        tmpm.write_text(json.dumps(manifest, indent=2))
        os.replace(tmpm, out / "manifest.json")
    return model, manifest
