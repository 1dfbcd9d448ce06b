"""Adversarial training and robustness: PGD, robust_accuracy, fit(perturb=...), the Tanh twin, the new
TrainConfig options (activation, epsilon, attack_steps, init), `netphys train` flags and shipped variants."""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from netphys import cli
from netphys._validation import NetphysError
from netphys.models import load_model
from netphys.models import loading
from netphys.models.architectures import netphys_vgg16
from netphys.models.layers import list_layers
from netphys.models.loading import ModelInfo, shipped_variants
from netphys.stimuli import Preprocess, StimulusSet
from netphys.train import TrainConfig, _architecture_of, train
from netphys.training import evaluate, fit, split_stimuli
from netphys.training.adversarial import PGD, robust_accuracy

pytestmark = pytest.mark.usefixtures("one_thread")

SIZE = 8
D = 3 * SIZE * SIZE


# ----------------------------------------------------------------------------- helpers
def _splits(n_train=32, n_val=16, size=SIZE, seed=0):
    """Dark (class 0) vs light (class 1) noisy images: separable by mean brightness."""
    rng = np.random.default_rng(seed)

    def make(n):
        y = np.arange(n) % 2
        x = np.clip(np.where(y[:, None, None, None] == 0, 70, 185) + rng.normal(0, 10, (n, size, size, 3)),
                    0, 255).astype(np.uint8)
        return x, y.astype(np.int64)

    (xt, yt), (xv, yv) = make(n_train), make(n_val)
    return {"x_train": xt, "y_train": yt, "x_val": xv, "y_val": yv,
            "preprocess": Preprocess(resize=size, crop=size), "class_names": ["dark", "light"], "source": "toy"}


def _linear(seed=0):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Sequential(nn.Flatten(), nn.Linear(D, 2))


def _conv(seed=0):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.2),
                             nn.Flatten(), nn.Linear(4 * SIZE * SIZE, 2))


def _pixel_norm(pre=Preprocess(resize=SIZE, crop=SIZE)):
    mean = torch.tensor(pre.mean).view(1, 3, 1, 1) * 255
    std = torch.tensor(pre.std).view(1, 3, 1, 1) * 255
    return lambda x: (x - mean) / std


def _state(m):
    return {k: v.detach().clone() for k, v in m.state_dict().items()}


def _same_state(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def trained():
    """A small conv net (BN, dropout) fitted to the toy splits, and the splits."""
    data = _splits()
    m = _conv()
    fit(m, data, epochs=6, batch_size=8, lr=0.01, random_state=0)
    return m, data


def _folder(root, n=4, size=32, classes=("a", "b"), seed=0):
    rng = np.random.default_rng(seed)
    for k, cls in enumerate(classes):
        (root / cls).mkdir(parents=True)
        for i in range(n):
            a = np.clip(60 + 120 * k + rng.normal(0, 10, (size, size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(a).save(root / cls / f"{i}.png")
    return root


TINY = dict(epochs=1, batch_size=4, size=32, width=0.0625, pad=2)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("adv_folders")
    return _folder(root / "tr"), _folder(root / "va", seed=1)


@pytest.fixture(scope="module")
def relu_run(folders, tmp_path_factory):
    """A tiny ReLU `netphys train` output folder (the init of the fine-tuning tests)."""
    out = tmp_path_factory.mktemp("relu_run") / "model"
    model, man = train(*folders, config=TrainConfig(**TINY), out=out, progress=False)
    return out, model, man


# ----------------------------------------------------------------------------- PGD
def test_pgd_stays_in_the_ball_and_the_pixel_range(trained):
    m, data = trained
    x = torch.from_numpy(data["x_train"][:16]).permute(0, 3, 1, 2).float()
    x[0] = 0.0  # saturated images: the projection must also clip to [0, 255]
    x[1] = 255.0
    y = torch.from_numpy(data["y_train"][:16])
    for eps, steps, rs in ((2 / 255, 3, True), (8 / 255, 1, True), (0.1, 5, False), (1.0, 2, True)):
        adv = PGD(eps, steps=steps, random_start=rs)(m, x, y, _pixel_norm(), torch.Generator().manual_seed(0))
        assert adv.shape == x.shape and adv.dtype == torch.float32 and not adv.requires_grad
        assert (adv - x).abs().max() <= eps * 255 + 1e-4
        assert adv.min() >= 0 and adv.max() <= 255
        assert not torch.equal(adv, x)
    # another scale: images in [0, 1]
    x1 = x / 255
    adv = PGD(0.05, steps=2, scale=1.0)(m, x1, y, lambda t: _pixel_norm()(t * 255), torch.Generator().manual_seed(0))
    assert (adv - x1).abs().max() <= 0.05 + 1e-6 and adv.min() >= 0 and adv.max() <= 1


def test_pgd_epsilon_zero_is_the_identity(trained):
    m, data = trained
    x = torch.from_numpy(data["x_train"][:8]).permute(0, 3, 1, 2).float()
    y = torch.from_numpy(data["y_train"][:8])
    g = torch.Generator().manual_seed(3)
    before = g.get_state()
    adv = PGD(0.0, steps=4)(m, x, y, _pixel_norm(), g)
    assert torch.equal(adv, x)
    assert torch.equal(g.get_state(), before)  # no random start drawn
    assert PGD(0).describe()["epsilon"] == 0


def test_pgd_one_step_on_a_linear_classifier_is_the_signed_gradient_closed_form():
    torch.manual_seed(0)  # the test's own data; the library never touches the global RNG
    m = nn.Sequential(nn.Flatten(), nn.Linear(D, 2))
    w = torch.randn(2, D)
    with torch.no_grad():
        m[1].weight.copy_(w * 1e-3)  # small logits: the softmax is not saturated (1 - p_true > 0)
        m[1].bias.zero_()
    n = 6
    x = (torch.rand(n, 3, SIZE, SIZE) * 100 + 80).round()  # in [80, 180]: away from the range ends
    x[0, :, :2] = 0.0     # these pixels are clipped at 0 when the step pushes them down
    x[1, :, :2] = 255.0   # and at 255 when it pushes them up
    y = torch.tensor([0, 1, 0, 1, 1, 0])
    eps = 4 / 255
    adv = PGD(eps, steps=1, random_start=False)(m, x, y, _pixel_norm(), None)
    # dCE/dx for logits W x + b: (1 - p_y) (w_other - w_y) / std (per channel, > 0): sign = sign(w_other - w_y)
    diff = (w[1 - y] - w[y]).view(n, 3, SIZE, SIZE)
    expected = (x + eps * 255 * diff.sign()).clamp(0, 255)
    torch.testing.assert_close(adv, expected, rtol=0, atol=1e-4)
    assert ((adv - x).abs() <= eps * 255 + 1e-4).all()
    # the clipped pixels moved only inwards
    assert (adv[0, :, :2] >= 0).all() and (adv[1, :, :2] <= 255).all()
    # an explicit step smaller than epsilon moves exactly step_size
    adv2 = PGD(eps, steps=1, step_size=1 / 255, random_start=False)(m, x, y, _pixel_norm(), None)
    torch.testing.assert_close(adv2, (x + 1.0 * diff.sign()).clamp(0, 255), rtol=0, atol=1e-4)


def test_pgd_raises_the_loss_restores_mode_and_leaves_parameters_alone(trained):
    m, data = trained
    x = torch.from_numpy(data["x_val"]).permute(0, 3, 1, 2).float()
    y = torch.from_numpy(data["y_val"])
    norm = _pixel_norm()
    state = _state(m)
    for p in m.parameters():
        p.grad = None  # fit leaves the last step's gradients
    m.eval()
    with torch.no_grad():
        clean = F.cross_entropy(m(norm(x)), y).item()
    for rs in (False, True):
        m.train()  # called in train mode (as fit does): the attack runs in eval mode, train mode comes back
        adv = PGD(4 / 255, steps=3, random_start=rs)(m, x, y, norm, torch.Generator().manual_seed(0))
        assert m.training and all(mod.training for mod in m.modules())
        m.eval()
        with torch.no_grad():
            attacked = F.cross_entropy(m(norm(adv)), y).item()
        assert attacked >= clean
        assert _same_state(state, _state(m))  # no parameter or BN running-statistics change
        assert all(p.grad is None for p in m.parameters())  # no gradient left on the parameters
    m.eval()
    PGD(4 / 255, steps=2)(m, x, y, norm, torch.Generator().manual_seed(0))
    assert not m.training
    with torch.no_grad():
        strong = F.cross_entropy(m(norm(PGD(0.3, steps=5)(m, x, y, norm, torch.Generator().manual_seed(0)))), y)
    assert strong.item() > clean + 1.0


def test_pgd_is_deterministic_with_a_seeded_generator(trained):
    m, data = trained
    x = torch.from_numpy(data["x_train"][:8]).permute(0, 3, 1, 2).float()
    y = torch.from_numpy(data["y_train"][:8])
    atk = PGD(8 / 255, steps=2)
    a = atk(m, x, y, _pixel_norm(), torch.Generator().manual_seed(7))
    b = atk(m, x, y, _pixel_norm(), torch.Generator().manual_seed(7))
    c = atk(m, x, y, _pixel_norm(), torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    # the global RNG is not used when a generator is given
    s = torch.random.get_rng_state()
    atk(m, x, y, _pixel_norm(), torch.Generator().manual_seed(7))
    assert torch.equal(s, torch.random.get_rng_state())


@pytest.mark.parametrize("kw, param", [
    ({"epsilon": 1.5}, "epsilon"), ({"epsilon": -0.1}, "epsilon"), ({"epsilon": float("nan")}, "epsilon"),
    ({"epsilon": True}, "epsilon"), ({"epsilon": 0.1, "steps": 0}, "steps"),
    ({"epsilon": 0.1, "step_size": 0.0}, "step_size"), ({"epsilon": 0.1, "step_size": -1}, "step_size"),
])
def test_pgd_validation(kw, param):
    with pytest.raises(NetphysError, match=f"the '{param}' parameter of PGD"):
        PGD(**kw)


def test_pgd_describe():
    d = PGD(2 / 255, steps=4).describe()
    assert d["attack"] == "pgd_linf" and d["steps"] == 4 and d["random_start"] is True and d["mode"] == "eval"
    assert math.isclose(d["epsilon"], 2 / 255) and math.isclose(d["step_size"], 2.5 * 2 / 255 / 4)
    assert PGD(0.1, step_size=0.02).describe()["step_size"] == 0.02
    json.dumps(d)


# ----------------------------------------------------------------------------- fit(perturb=...)
def test_fit_passes_float_pixel_batches_in_train_mode_to_perturb():
    data = _splits()
    seen = []

    def spy(model, x, y, normalise, generator):
        seen.append((model.training, x.dtype, float(x.min()), float(x.max()), tuple(y.shape),
                     isinstance(generator, torch.Generator)))
        return x

    fit(_linear(), data, epochs=1, batch_size=8, perturb=spy, random_state=0)
    assert len(seen) == 4
    for training, dtype, lo, hi, yshape, isgen in seen:
        assert training and dtype == torch.float32 and 0 <= lo and hi <= 255 and hi > 1 and yshape == (8,) and isgen
    with pytest.raises(NetphysError, match="the 'perturb' parameter of fit"):
        fit(_linear(), data, epochs=1, perturb="pgd")


def test_fit_with_pgd_zero_is_clean_training_and_pgd_changes_the_weights():
    data = _splits()
    clean, zero, adv = _linear(), _linear(), _linear()
    fit(clean, data, epochs=2, batch_size=8, lr=0.01, random_state=0)
    fit(zero, data, epochs=2, batch_size=8, lr=0.01, random_state=0, perturb=PGD(0.0))
    assert _same_state(_state(clean), _state(zero))
    res = fit(adv, data, epochs=2, batch_size=8, lr=0.01, random_state=0, perturb=PGD(8 / 255, steps=2))
    assert not _same_state(_state(clean), _state(adv))
    assert all(math.isfinite(h["train_loss"]) for h in res.history) and not adv.training
    again = _linear()
    fit(again, data, epochs=2, batch_size=8, lr=0.01, random_state=0, perturb=PGD(8 / 255, steps=2))
    assert _same_state(_state(adv), _state(again))  # the random starts draw from fit's generator


# ----------------------------------------------------------------------------- robust_accuracy
@pytest.fixture(scope="module")
def linear_fitted():
    data = _splits()
    m = _linear()
    fit(m, data, epochs=8, batch_size=8, lr=0.05, random_state=0)
    return m, data


def test_robust_accuracy_zero_is_clean_accuracy_and_it_falls_with_epsilon(linear_fitted, trained):
    for m, data in (linear_fitted, trained):
        val = split_stimuli(data, "val")
        clean = evaluate(m, val)["top1"]
        m.train()
        eps = [0.0, 0.01, 0.05, 0.2, 0.5]
        r = robust_accuracy(m, val, eps, steps=5)
        assert m.training  # mode restored
        m.eval()
        assert r[0.0] == clean and clean >= 0.9
        accs = [r[e] for e in eps]
        assert all(a >= b for a, b in zip(accs, accs[1:])), accs
        assert r[0.5] < clean and r[0.5] <= 0.5
        assert r["n"] == len(val) and r["attack"]["epsilon"] == eps and r["attack"]["steps"] == 5
        # seeded: the same numbers again; a scalar epsilon is a list of one
        assert robust_accuracy(m, val, eps, steps=5) == r
        assert robust_accuracy(m, val, 0.5, steps=5)[0.5] == r[0.5]


def test_robust_accuracy_subsample(linear_fitted):
    m, data = linear_fitted
    val = split_stimuli(data, "val")
    r = robust_accuracy(m, val, [0.0], n=5)
    assert r["n"] == 5 and r[0.0] in {k / 5 for k in range(6)}
    assert robust_accuracy(m, val, [0.0], n=5, random_state=0) == r
    assert robust_accuracy(m, val, [0.0], n=100)["n"] == len(val)


@pytest.mark.parametrize("bad", [1.5, -0.1, float("nan"), float("inf"), [0.0, 2.0], "x"])
def test_robust_accuracy_bad_epsilon(linear_fitted, bad):
    m, data = linear_fitted
    with pytest.raises(NetphysError, match="the 'epsilon' parameter of robust_accuracy"):
        robust_accuracy(m, split_stimuli(data, "val"), bad)


def test_robust_accuracy_needs_labels_and_a_valid_n(linear_fitted):
    m, data = linear_fitted
    unlabelled = StimulusSet.from_arrays(data["x_val"], preprocess=data["preprocess"])
    with pytest.raises(NetphysError, match="robust_accuracy"):
        robust_accuracy(m, unlabelled, [0.0])
    with pytest.raises(NetphysError, match="the 'n' parameter of robust_accuracy"):
        robust_accuracy(m, split_stimuli(data, "val"), [0.0], n=0)


def test_robust_accuracy_uses_the_models_full_preprocessing():
    """A model recorded with Caffe preprocessing (BGR, 0-255, mean only): epsilon 0 is its clean accuracy."""
    data = _splits()
    pre = Preprocess.caffe(SIZE)
    m = _linear()
    fit(m, dict(data, preprocess=pre), epochs=8, batch_size=8, lr=1e-4, random_state=0)
    m.netphys = ModelInfo(name="toy", weights="user", family="user", input_size=SIZE, preprocess=pre)
    val = StimulusSet.from_arrays(data["x_val"], data["y_val"], preprocess=pre)
    clean = evaluate(m, val)["top1"]
    assert clean >= 0.9
    assert robust_accuracy(m, val, [0.0])[0.0] == clean


# ----------------------------------------------------------------------------- TrainConfig
@pytest.mark.parametrize("kw, param", [
    ({"activation": "gelu"}, "activation"), ({"activation": None}, "activation"), ({"activation": ["relu"]}, "activation"),
    ({"epsilon": -1.0}, "epsilon"), ({"epsilon": 256.0}, "epsilon"), ({"epsilon": float("nan")}, "epsilon"),
    ({"epsilon": "2"}, "epsilon"), ({"attack_steps": 0}, "attack_steps"), ({"attack_steps": 1.5}, "attack_steps"),
    ({"init": 3}, "init"), ({"init": ["a"]}, "init"),
])
def test_train_config_new_fields(kw, param, tmp_path):
    with pytest.raises(NetphysError, match=f"the '{param}' parameter of train"):
        TrainConfig(**kw).validate()
    with pytest.raises(NetphysError, match=f"the '{param}' parameter of train"):
        train(tmp_path / "missing", config=TrainConfig(**kw), out=tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_train_config_accepts_the_documented_values():
    for kw in ({"activation": "tanh"}, {"epsilon": 0}, {"epsilon": 255}, {"epsilon": 2, "attack_steps": 1},
               {"init": "default"}, {"init": Path("/some/folder")}):
        TrainConfig(**kw).validate()


# ----------------------------------------------------------------------------- the Tanh twin
def test_tanh_architecture_and_layer_sites():
    m = netphys_vgg16(activation="tanh", width=0.0625)
    mods = list(m.modules())
    assert any(isinstance(x, nn.Tanh) for x in mods) and not any(isinstance(x, nn.ReLU) for x in mods)
    assert sum(isinstance(x, nn.Tanh) for x in mods) == 15  # 13 conv + fc6 + fc7
    named = dict(m.named_modules())
    df = list_layers(m)
    for _, row in df[df.kind.isin(["conv", "fc"])].iterrows():
        if row.alias == "fc8":
            assert row.post_site is None or (isinstance(row.post_site, float) and math.isnan(row.post_site))
            continue
        assert isinstance(named[row.post_site], nn.Tanh), row.alias
        assert row.post_site == row.activation
    relu = list_layers(netphys_vgg16(width=0.0625))
    assert list(relu.post_site.fillna("")) == list(df.post_site.fillna(""))
    with pytest.raises(NetphysError, match="the 'activation' parameter of netphys_vgg16"):
        netphys_vgg16(activation="sigmoid")
    assert _architecture_of(m)["activation"] == "tanh" and "activation" not in _architecture_of(
        netphys_vgg16(width=0.0625))


@pytest.mark.parametrize("width", [0.0625, 0.25, 0.3, 0.1, 0.01, 0.37, 1.0])
def test_architecture_of_rebuilds_the_same_shapes(width):
    for act in ("relu", "tanh"):
        m = netphys_vgg16(num_classes=3, width=width, hidden=32, dropout=0.1, activation=act)
        arch = _architecture_of(m)
        again = netphys_vgg16(**arch)
        assert {k: v.shape for k, v in again.state_dict().items()} == {k: v.shape for k, v in m.state_dict().items()}
        assert arch["num_classes"] == 3 and arch["hidden"] == 32 and arch["dropout"] == 0.1


def test_tanh_train_output_round_trips(folders, tmp_path):
    out = tmp_path / "tanh"
    model, man = train(*folders, config=TrainConfig(activation="tanh", **TINY), out=out, progress=False)
    assert man["architecture"]["activation"] == "tanh" and man["config"]["activation"] == "tanh"
    assert man["adversarial"] is None and man["init"] is None
    assert any(isinstance(x, nn.Tanh) for x in model.modules())
    assert not any(isinstance(x, nn.ReLU) for x in model.modules())
    loaded = load_model("netphys_vgg16", str(out))
    assert any(isinstance(x, nn.Tanh) for x in loaded.modules())
    assert not any(isinstance(x, nn.ReLU) for x in loaded.modules())
    assert loaded.netphys.input_size == 32 and loaded.netphys.sha256 == man["sha256"]
    x = torch.randn(3, 3, 32, 32)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert man["sha256"] == hashlib.sha256((out / "weights.pt").read_bytes()).hexdigest()


# ----------------------------------------------------------------------------- fine-tuning (init)
def test_fine_tuning_from_a_train_output_with_pgd(relu_run, folders, tmp_path):
    a, a_model, a_man = relu_run
    out = tmp_path / "ft"
    cfg = TrainConfig(init=str(a), epsilon=2, attack_steps=1, **TINY)
    model, man = train(*folders, config=cfg, out=out, progress=False)
    assert man["init"]["weights"] == str(a) and man["init"]["sha256"] == a_man["sha256"]
    assert man["init"]["sha256"] == hashlib.sha256((a / "weights.pt").read_bytes()).hexdigest()
    adv = man["adversarial"]
    assert adv["attack"] == "pgd_linf" and math.isclose(adv["epsilon"], 2 / 255) and adv["steps"] == 1
    assert man["config"]["epsilon"] == 2 and man["config"]["attack_steps"] == 1 and man["config"]["init"] == str(a)
    assert man["architecture"] == a_man["architecture"]
    # the weights moved away from the init, and the output loads with the same outputs
    init = load_model("netphys_vgg16", str(a))
    assert not _same_state(_state(init), _state(model))
    loaded = load_model("netphys_vgg16", str(out))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), loaded(x))
    # the returned model does not carry the init model's provenance
    info = getattr(model, "netphys", None)
    assert info is None or info.sha256 != a_man["sha256"]
    # the manifest is plain JSON (re-read from disk equals the returned one)
    assert json.loads((out / "manifest.json").read_text())["init"] == man["init"]


def test_fine_tuning_init_as_a_path_object(relu_run, folders, tmp_path):
    a, _, a_man = relu_run
    _, man = train(*folders, config=TrainConfig(init=a, **TINY), out=tmp_path / "ft", progress=False)
    assert man["init"]["sha256"] == a_man["sha256"] and man["adversarial"] is None
    assert json.loads((tmp_path / "ft" / "manifest.json").read_text())["config"]["init"] == str(a)


def test_fine_tuning_refuses_another_activation_or_class_count(relu_run, folders, tmp_path):
    a, _, _ = relu_run
    with pytest.raises(NetphysError, match="the 'activation' parameter of train"):
        train(*folders, config=TrainConfig(init=str(a), activation="tanh", **TINY), out=tmp_path / "x",
              progress=False)
    assert not (tmp_path / "x").exists()
    three = _folder(tmp_path / "three", classes=("a", "b", "c"))
    with pytest.raises(NetphysError, match="the 'init' parameter of train"):
        train(three, config=TrainConfig(init=str(a), **TINY), progress=False)
    with pytest.raises(NetphysError, match="weights"):
        train(folders[0], config=TrainConfig(init=str(tmp_path / "nowhere"), **TINY), progress=False)


def test_fine_tuning_a_non_default_width_loads_back(folders, tmp_path):
    """An init whose width is not k/64 (0.3: 19 channels, 77 at 256): the output still loads."""
    a = tmp_path / "w03"
    cfg = dict(TINY, width=0.3)
    train(*folders, config=TrainConfig(**cfg), out=a, progress=False)
    model, man = train(*folders, config=TrainConfig(init=str(a), **cfg), out=tmp_path / "ft", progress=False)
    loaded = load_model("netphys_vgg16", str(tmp_path / "ft"))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), loaded(x))


# ----------------------------------------------------------------------------- CLI
def test_cli_train_adversarial_tanh(folders, tmp_path, capsys):
    out = tmp_path / "cli"
    assert cli.main(["train", str(folders[0]), "--out", str(out), "--epochs", "1", "--activation", "tanh",
                     "--epsilon", "1", "--attack-steps", "1", "--size", "32", "--width", "0.0625",
                     "--batch-size", "8", "--label-smoothing", "0.05", "--no-progress"]) == 0
    assert "written to" in capsys.readouterr().out
    man = json.loads((out / "manifest.json").read_text())
    c = man["config"]
    assert c["activation"] == "tanh" and c["epsilon"] == 1 and c["attack_steps"] == 1 and c["init"] is None
    assert c["label_smoothing"] == 0.05 and c["size"] == 32 and c["width"] == 0.0625 and c["batch_size"] == 8
    assert man["architecture"]["activation"] == "tanh"
    assert math.isclose(man["adversarial"]["epsilon"], 1 / 255) and man["adversarial"]["steps"] == 1
    # fine-tune that output from the command line; a bad setting is a clean error
    out2 = tmp_path / "cli2"
    assert cli.main(["train", str(folders[0]), "--out", str(out2), "--epochs", "1", "--activation", "tanh",
                     "--init", str(out), "--size", "32", "--batch-size", "8", "--no-progress"]) == 0
    assert json.loads((out2 / "manifest.json").read_text())["init"]["sha256"] == man["sha256"]
    capsys.readouterr()
    assert cli.main(["train", str(folders[0]), "--out", str(tmp_path / "bad"), "--epsilon", "-1",
                     "--size", "32", "--no-progress"]) == 2
    assert "the 'epsilon' parameter of train" in capsys.readouterr().err
    assert cli.main(["train", str(folders[0]), "--out", str(tmp_path / "bad"), "--attack-steps", "0",
                     "--size", "32", "--no-progress"]) == 2
    assert "the 'attack_steps' parameter of train" in capsys.readouterr().err


# ----------------------------------------------------------------------------- shipped variants
def test_variant_loading_path(relu_run, monkeypatch, tmp_path):
    """The shipped-variant code path, on a stand-in variants folder holding a `netphys train` output."""
    import shutil

    a, a_model, a_man = relu_run
    root = tmp_path / "variants"
    shutil.copytree(a, root / "pgd9")
    (root / "empty").mkdir()  # no manifest: not a variant
    monkeypatch.setattr(loading, "variants_dir", lambda: root)
    assert shipped_variants() == ["pgd9"]
    m = load_model("netphys_vgg16", "pgd9")
    assert m.netphys.weights == "netphys-variant(pgd9)" and m.netphys.sha256 == a_man["sha256"]
    assert m.netphys.extra["val_top1"] == a_man["val_top1"]
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(m(x), a_model.eval()(x))
    # a tampered weights file is refused
    w = root / "pgd9" / "weights.pt"
    w.write_bytes(w.read_bytes() + b"\0")
    with pytest.raises(NetphysError, match="sha256"):
        load_model("netphys_vgg16", "pgd9")


SHIPPED = shipped_variants()


def test_variants_are_shipped():
    assert set(SHIPPED) == {"tanh", "pgd0", "pgd1", "pgd2", "pgd4", "pgd8"}


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_variant(name):
    mpath = loading.variants_dir() / name / "manifest.json"
    man = json.loads(mpath.read_text())
    wfile = mpath.parent / man["weights_file"]
    assert hashlib.sha256(wfile.read_bytes()).hexdigest() == man["sha256"]
    m = load_model("netphys_vgg16", name)
    assert m.netphys.sha256 == man["sha256"] and not m.training
    assert isinstance(m.netphys.extra.get("val_top1"), float) and 0 <= m.netphys.extra["val_top1"] <= 1
    size = m.netphys.input_size
    with torch.no_grad():
        out = m(torch.zeros(1, 3, size, size))
    assert out.shape == (1, len(man["data"]["classes"])) and torch.isfinite(out).all()
    acts = {type(x) for x in m.modules() if isinstance(x, (nn.ReLU, nn.Tanh))}
    if name == "tanh":
        assert acts == {nn.Tanh}
        assert man["architecture"].get("activation") == "tanh"
    else:
        assert acts == {nn.ReLU}
    if name.startswith("pgd") and name[3:].isdigit():
        e = int(name[3:])
        assert man["config"]["epsilon"] == e
        if e == 0:
            assert man["adversarial"] is None
        else:
            assert math.isclose(man["adversarial"]["epsilon"], e / 255)
