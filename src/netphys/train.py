"""Training the netphys default model (`netphys train`).

The recipe: SGD with Nesterov momentum, one-cycle learning-rate schedule, label smoothing, weight decay,
random crops from a reflect-padded image and horizontal flips, all done on batched uint8 tensors in
memory (the whole 64-px Imagenette train split is ~120 MB), so the CPU spends its time in the
network. Everything random is driven by ``random_state``.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ._random import check_random_state
from ._validation import check_int, param_error
from .stimuli import Preprocess, StimulusSet

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """Settings of :func:`train` (defaults reproduce the shipped model)."""

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


def _augment(x: torch.Tensor, pad: int, gen: torch.Generator) -> torch.Tensor:
    """Random crop from a reflect-padded batch + random horizontal flip (uint8 -> float)."""
    n, c, h, w = x.shape
    xp = F.pad(x.float(), (pad, pad, pad, pad), mode="reflect")
    oy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    ox = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    rows = (oy[:, None] + torch.arange(h)[None, :])  # n, h
    cols = (ox[:, None] + torch.arange(w)[None, :])  # n, w
    flip = torch.rand(n, generator=gen) < 0.5
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    b = torch.arange(n)[:, None, None]
    out = xp.permute(0, 2, 3, 1)[b, rows[:, :, None], cols[:, None, :]]  # n,h,w,c
    return out.permute(0, 3, 1, 2)


def evaluate(model, stimuli: StimulusSet, batch_size: int = 256, device=None) -> dict:
    """Top-1 accuracy and mean cross-entropy of ``model`` on a labelled stimulus set."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    correct, loss, n = 0, 0.0, 0
    labels = torch.as_tensor(stimuli.labels.copy())
    try:
        with torch.no_grad():
            for idx, x in stimuli.batches(batch_size, device=device):
                y = labels[idx].to(device)
                out = model(x)
                loss += F.cross_entropy(out, y, reduction="sum").item()
                correct += (out.argmax(1) == y).sum().item()
                n += len(idx)
    finally:
        model.train(was_training)
    return {"top1": correct / n, "loss": loss / n, "n": n}


def train(train_dir, val_dir=None, *, config: TrainConfig = TrainConfig(), out=None, device="cpu",
          progress: bool = True):
    """Train the netphys default VGG-16-shaped network on an image folder.

    Parameters
    ----------
    train_dir, val_dir : path
        Image folders in ImageFolder layout (e.g. ``imagenette-64/train`` and ``/val``).
    config : TrainConfig
    out : path, optional
        Folder to write ``weights.pt`` and ``manifest.json`` into (atomically).
    device : str

    Returns
    -------
    model : torch.nn.Module
    manifest : dict
        Architecture, data, accuracy, seed, timing and sha256 of the weights file.
    """
    dev = torch.device(device)
    # the model's default initialisation and dropout draw from torch's global RNG: seed it inside a
    # fork so that the caller's RNG state is left as it was (the library never seeds globally)
    with torch.random.fork_rng(devices=[dev.index or 0] if dev.type == "cuda" else []):
        return _train(train_dir, val_dir, config=config, out=out, device=device, progress=progress)


def _train(train_dir, val_dir, *, config: TrainConfig, out, device, progress: bool):
    from tqdm.auto import tqdm

    from .models.architectures import DEFAULT_ARCH, netphys_vgg16

    func = "train"
    check_int(config.epochs, "epochs", func, min_value=1)
    check_int(config.batch_size, "batch_size", func, min_value=1)
    if config.threads:
        torch.set_num_threads(config.threads)
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
    x_all = torch.from_numpy(tr.load_images()).permute(0, 3, 1, 2).contiguous()
    y_all = torch.as_tensor(tr.labels.copy())
    t_load = time.time() - t0

    arch = dict(DEFAULT_ARCH, width=config.width, num_classes=len(tr.class_names))
    model = netphys_vgg16(**arch).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum, nesterov=True,
                          weight_decay=config.weight_decay)
    steps = (len(tr) // config.batch_size) * config.epochs
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=steps, pct_start=0.25)
    mean = torch.tensor(pre.mean).view(1, 3, 1, 1) * 255
    std = torch.tensor(pre.std).view(1, 3, 1, 1) * 255
    history = []
    t_train = time.time()
    bar = tqdm(total=steps, desc="train", disable=not progress)
    for epoch in range(config.epochs):
        model.train()
        perm = torch.randperm(len(tr), generator=gen)
        tot, nb = 0.0, 0
        for s in range(0, len(tr) - config.batch_size + 1, config.batch_size):
            idx = perm[s:s + config.batch_size]
            x = (_augment(x_all[idx], config.pad, gen) - mean) / std
            y = y_all[idx]
            x, y = x.to(device), y.to(device)
            loss = F.cross_entropy(model(x), y, label_smoothing=config.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            tot += loss.item()
            nb += 1
            bar.update(1)
        rec = {"epoch": epoch + 1, "train_loss": tot / max(nb, 1), "seconds": time.time() - t_train}
        if va is not None and (epoch + 1 == config.epochs or (epoch + 1) % 5 == 0):
            ev = evaluate(model, va, device=device)
            rec.update(val_top1=ev["top1"], val_loss=ev["loss"])
        history.append(rec)
        bar.set_postfix({k: round(v, 4) for k, v in rec.items() if k not in ("epoch",)})
        log.info("epoch %s", rec)
    bar.close()
    model.eval()
    manifest = {
        "name": "netphys_vgg16",
        "architecture": {"builder": "netphys.models.architectures.netphys_vgg16", **arch},
        "input": {"size": config.size, "preprocess": pre.to_dict()},
        "data": {"train": str(train_dir), "val": str(val_dir) if val_dir else None,
                 "n_train": len(tr), "n_val": len(va) if va is not None else 0,
                 "classes": tr.class_names},
        "config": asdict(config),
        "seed": config.random_state,
        "history": history,
        "val_top1": history[-1].get("val_top1"),
        "val_loss": history[-1].get("val_loss"),
        "train_seconds": time.time() - t_train,
        "load_seconds": t_load,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
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
