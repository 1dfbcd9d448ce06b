"""netphys.training: the one training loop (fit), augmentations, splits, evaluate; netphys.train's
validation (issue 14 item 1: NaN learning rate, zero width/threads, unwritable --out, diverged loss)."""
from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from netphys._validation import NetphysError
from netphys.stimuli import Preprocess
from netphys.train import TrainConfig, train
from netphys.training import (OneCycle, PadCropFlip, ShiftFlip, check_splits, corrupt_labels, evaluate, fit,
                              load_splits, save_splits, split_stimuli)

pytestmark = pytest.mark.usefixtures("one_thread")


def _splits(n_train=24, n_val=8, size=8, seed=0):
    """Dark (class 0) vs light (class 1) noisy images: linearly separable by mean brightness."""
    rng = np.random.default_rng(seed)

    def make(n):
        y = np.arange(n) % 2
        x = np.clip(np.where(y[:, None, None, None] == 0, 50, 200) + rng.normal(0, 10, (n, size, size, 3)),
                    0, 255).astype(np.uint8)
        return x, y.astype(np.int64)

    (xt, yt), (xv, yv) = make(n_train), make(n_val)
    return {"x_train": xt, "y_train": yt, "x_val": xv, "y_val": yv, "preprocess": Preprocess(resize=size, crop=size),
            "class_names": ["dark", "light"], "source": "toy"}


def _net(seed=0):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 2))


def _state(m):
    return torch.cat([p.detach().flatten() for p in m.parameters()])


# ----------------------------------------------------------------------------- fit
def test_fit_learns_a_separable_task_and_is_seeded():
    data = _splits()
    m = _net()
    res = fit(m, data, epochs=8, batch_size=8, lr=0.05, random_state=0)
    assert evaluate(m, split_stimuli(data, "val"))["top1"] == 1.0
    assert [h["epoch"] for h in res.history] == list(range(1, 9)) and res.best_epoch == 8
    assert res.history[-1]["train_loss"] < res.history[0]["train_loss"]
    assert not m.training
    again = _net()
    fit(again, data, epochs=8, batch_size=8, lr=0.05, random_state=0)
    assert torch.equal(_state(m), _state(again))
    other = _net()
    fit(other, data, epochs=8, batch_size=8, lr=0.05, random_state=1)
    assert not torch.equal(_state(m), _state(other))
    # a torch.Generator is used as it is: the same stream gives the same weights
    g1, g2 = _net(), _net()
    fit(g1, data, epochs=2, batch_size=8, random_state=torch.Generator().manual_seed(5))
    fit(g2, data, epochs=2, batch_size=8, random_state=torch.Generator().manual_seed(5))
    assert torch.equal(_state(g1), _state(g2))


def test_fit_checkpoint_initial_record_callbacks_and_eval_every():
    data = _splits()
    m0 = _net()
    initial = evaluate(m0, split_stimuli(data, "val"))
    seen = []

    def cb(model, epoch):
        seen.append((epoch, model.training))
        model.train()  # a callback cannot leave the model in another mode
        return {"marker": 10 * epoch}

    m = _net()
    res = fit(m, data, epochs=4, batch_size=8, lr=0.5, checkpoint="val_loss", record_initial=True, callbacks=[cb])
    assert seen == [(e, False) for e in range(5)]
    h = res.to_frame()
    assert list(h.index) == [0, 1, 2, 3, 4] and math.isnan(h.loc[0, "train_loss"])
    assert h.loc[0, "val_loss"] == pytest.approx(initial["loss"], rel=1e-12)
    assert (h["marker"] == 10 * h.index).all()
    # the model holds the weights of the lowest validation loss (first on ties), not the last epoch's
    best = int(h.loc[1:, "val_loss"].idxmin())
    assert res.best_epoch == best
    assert evaluate(m, split_stimuli(data, "val"))["loss"] == pytest.approx(h.loc[best, "val_loss"], rel=1e-9)
    # validation every 2 epochs and after the last
    r2 = fit(_net(), data, epochs=3, batch_size=8, eval_every=2)
    assert ["val_loss" in rec for rec in r2.history] == [False, True, True]


def test_fit_steps_schedule_and_small_split():
    data = _splits(n_train=10)
    seen = {}

    def schedule(opt, total_steps):
        seen["total"] = total_steps
        return OneCycle(pct_start=0.3)(opt, total_steps)

    fit(_net(), data, epochs=3, batch_size=4, optimizer="sgd", lr=0.1, schedule=schedule)
    assert seen["total"] == 3 * (10 // 4)  # the last partial batch is dropped
    sgd = functools.partial(torch.optim.SGD, lr=0.01, weight_decay=1e-3)
    fit(_net(), data, epochs=1, batch_size=64, optimizer=sgd, schedule=schedule)  # smaller than a batch
    assert seen["total"] == 1


@pytest.mark.parametrize("kw, match", [
    ({"epochs": 0}, r"the 'epochs' parameter of fit must be an int >= 1, got 0"),
    ({"lr": float("nan")}, r"the 'lr' parameter of fit must be a finite number > 0, got nan"),
    ({"label_smoothing": 1.0}, r"the 'label_smoothing' parameter of fit must be a number in \[0, 1\), got 1.0"),
    ({"checkpoint": "best"}, r"the 'checkpoint' parameter of fit must be one of 'last', 'val_top1', 'val_loss'"),
    ({"optimizer": "rmsprop"}, r"the 'optimizer' parameter of fit must be one of 'adam', 'sgd', got 'rmsprop'"),
    ({"augment": 3}, r"the 'augment' parameter of fit must be a callable or None, got 3"),
])
def test_fit_errors(kw, match):
    with pytest.raises(NetphysError, match=match):
        fit(_net(), _splits(), **{"epochs": 1, **kw})


def test_fit_checks_data():
    data = {k: v for k, v in _splits().items() if not k.endswith("_val")}
    with pytest.raises(NetphysError, match=r"the 'checkpoint' parameter of fit must be 'last' when data has no "
                                           r"validation split"):
        fit(_net(), data, epochs=1, checkpoint="val_top1")
    bad = {**data, "y_train": data["y_train"] + 5}
    with pytest.raises(NetphysError, match=r"the 'data' parameter of fit must be 'y_train' labels in \[0, 2\)"):
        fit(_net(), bad, epochs=1)
    with pytest.raises(NetphysError, match=r"'x_train' as non-empty uint8 images"):
        check_splits({**data, "x_train": data["x_train"].astype(float)}, "fit")


def test_fit_stops_on_a_non_finite_loss():
    data = _splits()
    m = _net()
    with torch.no_grad():
        m[1].weight[0, 0] = float("nan")
    with pytest.raises(NetphysError, match=r"training diverged: the loss of fit became nan at epoch 1, step 1 of 3"):
        fit(m, data, epochs=1, batch_size=8)


# ----------------------------------------------------------------------------- augment, labels, evaluate
def test_corrupt_labels():
    y = np.arange(1000) % 10
    assert np.array_equal(corrupt_labels(y, 0.0, 10), y)
    changed = np.mean(corrupt_labels(y, 1.0, 10, random_state=1) != y)
    assert 0.85 < changed < 0.95  # a random label keeps the true one 1 time in 10
    assert np.array_equal(corrupt_labels(y, 0.5, 10, 3), corrupt_labels(y, 0.5, 10, 3))
    with pytest.raises(NetphysError, match=r"the 'rate' parameter of corrupt_labels must be a number in \[0, 1\]"):
        corrupt_labels(y, 1.5, 10)


def test_shift_flip_known_answers():
    x = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (8, 3, 10, 10), dtype=np.uint8))
    g = torch.Generator().manual_seed(0)
    flipped = ShiftFlip(shift=0.0, flip=True)(x, g)
    assert all(torch.equal(flipped[i], x[i]) or torch.equal(flipped[i], x[i].flip(-1)) for i in range(8))
    assert any(torch.equal(flipped[i], x[i].flip(-1)) for i in range(8))
    # a column ramp shifted by dx with edge pixels repeated: every row is clamp(j - dx) for one |dx| <= 2
    ramp = torch.arange(10, dtype=torch.uint8).expand(16, 3, 10, 10).contiguous()
    out = ShiftFlip(shift=0.2, flip=False)(ramp, g)
    assert out.dtype == torch.uint8 and out.shape == ramp.shape
    options = [torch.clamp(torch.arange(10) - dx, 0, 9).to(torch.uint8) for dx in range(-2, 3)]
    for img in out:
        row = img[0, 5]
        assert any(torch.equal(row, o) for o in options) and (img == row).all()
    with pytest.raises(NetphysError, match=r"the 'shift' parameter of ShiftFlip must be a fraction in \[0, 0.5\)"):
        ShiftFlip(shift=0.7)


def test_pad_crop_flip_known_answers():
    x = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (6, 3, 8, 8), dtype=np.uint8))
    g = torch.Generator().manual_seed(0)
    out = PadCropFlip(pad=0)(x, g)  # no padding: only flips, as float in 0-255
    assert out.dtype == torch.float32
    assert all(torch.equal(out[i], x[i].float()) or torch.equal(out[i], x[i].float().flip(-1)) for i in range(6))
    out = PadCropFlip(pad=2)(x, g)
    assert out.shape == (6, 3, 8, 8)
    # every crop is a window of the reflect-padded image (up to a flip)
    xp = torch.nn.functional.pad(x.float(), (2, 2, 2, 2), mode="reflect")
    for i in range(6):
        wins = [xp[i, :, r:r + 8, c:c + 8] for r in range(5) for c in range(5)]
        assert any(torch.equal(out[i], w) or torch.equal(out[i], w.flip(-1)) for w in wins)
    with pytest.raises(NetphysError, match=r"the 'pad' parameter of PadCropFlip must be an int < the image side"):
        PadCropFlip(pad=8)(x, g)


class _Fixed(nn.Module):
    """Logits (0, log 3) for every image: p(class 1) = 3/4."""

    def __init__(self):
        super().__init__()
        self.b = nn.Parameter(torch.tensor([0.0, math.log(3.0)]))

    def forward(self, x):
        return self.b.expand(x.shape[0], 2)


def test_evaluate_known_answer_and_errors():
    x = np.zeros((3, 8, 8, 3), dtype=np.uint8)
    pre = Preprocess(resize=8, crop=8)
    ev = evaluate(_Fixed(), x, [0, 1, 1], preprocess=pre, batch_size=2)
    assert ev["n"] == 3 and ev["top1"] == pytest.approx(2 / 3)
    assert ev["loss"] == pytest.approx((-math.log(0.25) - 2 * math.log(0.75)) / 3, rel=1e-6)
    with pytest.raises(NetphysError, match=r"the 'labels' parameter of evaluate must be non-negative integer class "
                                           r"labels.*unlabelled stimuli"):
        evaluate(_Fixed(), x, [0, -1, 1], preprocess=pre)
    with pytest.raises(NetphysError, match=r"the 'labels' parameter of evaluate must be class labels in \[0, 2\)"):
        evaluate(_Fixed(), x, [0, 5, 1], preprocess=pre)
    with pytest.raises(NetphysError, match=r"the 'stimuli' parameter of evaluate must be a labelled StimulusSet"):
        evaluate(_Fixed(), x)


def test_splits_round_trip(tmp_path):
    data = _splits()
    back = load_splits(save_splits(data, tmp_path / "d.npz"))
    assert back["class_names"] == data["class_names"] and back["preprocess"] == data["preprocess"]
    for k in ("x_train", "y_train", "x_val", "y_val"):
        np.testing.assert_array_equal(back[k], data[k])
    st = split_stimuli(back, "val")
    assert len(st) == 8 and list(st.labels) == list(data["y_val"])
    with pytest.raises(NetphysError, match=r"the 'split' parameter of split_stimuli must be a split present"):
        split_stimuli(back, "test")


# ----------------------------------------------------------------------------- netphys.train (issue 14)
@pytest.mark.parametrize("kw, match", [
    ({"lr": float("nan")}, r"the 'lr' parameter of train must be a finite number > 0, got nan"),
    ({"lr": 0.0}, r"the 'lr' parameter of train must be a finite number > 0, got 0.0"),
    ({"width": 0.0}, r"the 'width' parameter of train must be a finite number > 0, got 0.0"),
    ({"threads": 0}, r"the 'threads' parameter of train must be an int >= 1, got 0"),
    ({"size": 16}, r"the 'size' parameter of train must be an int >= 32, got 16"),
    ({"pad": 64}, r"the 'pad' parameter of train must be an int in \[0, 63\], got 64"),
    ({"momentum": 1.0}, r"the 'momentum' parameter of train must be a number in \[0, 1\), got 1.0"),
    ({"weight_decay": -1e-4}, r"the 'weight_decay' parameter of train must be a finite number >= 0"),
    ({"label_smoothing": float("inf")}, r"the 'label_smoothing' parameter of train must be a number in \[0, 1\)"),
    ({"epochs": 0}, r"the 'epochs' parameter of train must be an int >= 1, got 0"),
])
def test_train_config_validate(kw, match, tmp_path):
    with pytest.raises(NetphysError, match=match):
        TrainConfig(**kw).validate()
    with pytest.raises(NetphysError, match=match):  # train() validates before reading any image
        train(tmp_path / "missing", config=TrainConfig(**kw), out=tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()
    assert TrainConfig().validate() == TrainConfig()


def test_train_checks_out_before_training(tmp_path):
    (tmp_path / "file").write_text("in the way")
    # the training folder does not even exist: the error about 'out' proves it comes first
    with pytest.raises(NetphysError, match=r"the 'out' parameter of train must be a folder that can be created and "
                                           r"written to, got '.*file.*model'"):
        train(tmp_path / "missing", config=TrainConfig(size=32, width=0.0625), out=tmp_path / "file" / "model",
              progress=False)


def _folder(root, n=4, size=32):
    rng = np.random.default_rng(0)
    for k, cls in enumerate(["a", "b"]):
        (root / cls).mkdir(parents=True)
        for i in range(n):
            a = np.clip(60 + 120 * k + rng.normal(0, 10, (size, size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(a).save(root / cls / f"{i}.png")
    return root


def test_train_diverged_loss_writes_nothing(tmp_path):
    tr = _folder(tmp_path / "tr")
    out = tmp_path / "model"
    with pytest.raises(NetphysError, match=r"training diverged: the loss of fit became (nan|inf)"):
        train(tr, config=TrainConfig(epochs=3, batch_size=4, lr=1e30, width=0.0625, size=32), out=out,
              progress=False)
    assert not out.exists()  # created for the write check, removed again: no weights, no manifest
