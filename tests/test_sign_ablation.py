"""Sign ablation of input weights (functional-segregation paper, C1): hand-built units with known answers."""
import hashlib

import numpy as np
import pytest
import torch
from torch import nn

from netphys import NetphysError
from netphys.interventions import (ALPHAS, readout_scores, sign_ablation, sign_ablation_mask, sign_ablation_readouts,
                                   sign_balance)
from netphys.models import load_model


def _net(weight, bias=None):
    weight = torch.as_tensor(weight, dtype=torch.float32)
    lin = nn.Linear(weight.shape[1], weight.shape[0], bias=True)
    with torch.no_grad():
        lin.weight.copy_(weight)
        lin.bias.copy_(torch.as_tensor(bias if bias is not None else np.zeros(weight.shape[0]), dtype=torch.float32))
    m = nn.Sequential(nn.Flatten(), nn.Linear(4, weight.shape[1]), nn.ReLU(), lin)
    return m


def _checksum(model):
    h = hashlib.sha256()
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().numpy().tobytes())
    return h.hexdigest()


W = np.array([[4.0, 3.0, 2.0, 1.0, -5.0, -3.0, -2.0, 0.0]])


@pytest.mark.parametrize("sign,alpha,k,share,zeroed", [
    ("positive", 0.0, 0, 0.0, []),
    ("positive", 0.39, 0, 0.0, []),
    ("positive", 0.4, 1, 0.4, [0]),
    ("positive", 0.5, 1, 0.4, [0]),
    ("positive", 0.7, 2, 0.7, [0, 1]),      # cumulative share exactly alpha is included
    ("positive", 0.95, 3, 0.9, [0, 1, 2]),
    ("positive", 1.0, 4, 1.0, [0, 1, 2, 3]),
    ("negative", 0.5, 1, 0.5, [4]),
    ("negative", 0.8, 2, 0.8, [4, 5]),
    ("negative", 1.0, 3, 1.0, [4, 5, 6]),
])
def test_mask_known_answers(sign, alpha, k, share, zeroed):
    mask, kk, sh = sign_ablation_mask(W, sign, alpha)
    assert kk[0] == k and sh[0] == pytest.approx(share)
    assert np.flatnonzero(mask[0]).tolist() == zeroed


def test_mask_alpha_one_removes_all_despite_rounding():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(50, 301)) * 1e-3
    for sign in ("positive", "negative"):
        mask, k, share = sign_ablation_mask(w, sign, 1.0)
        s = 1 if sign == "positive" else -1
        assert (k == (s * w > 0).sum(1)).all() and np.allclose(share, 1)
        assert not ((s * np.where(mask, 0, w)) > 0).any()


def test_mask_share_never_exceeds_alpha_and_is_monotone():
    rng = np.random.default_rng(1)
    w = rng.standard_t(3, size=(20, 100))
    prev = np.zeros(20, dtype=int)
    for a in ALPHAS:
        _, k, share = sign_ablation_mask(w, "positive", a)
        assert (share <= a + 1e-9).all() and (k >= prev).all()
        prev = k


def test_unit_without_weights_of_that_sign():
    mask, k, share = sign_ablation_mask(np.array([[1.0, 2.0]]), "negative", 1.0)
    assert k[0] == 0 and share[0] == 0 and not mask.any()


def test_context_manager_zeroes_and_restores_bit_exactly():
    m = _net(np.vstack([W, -W]), bias=[0.5, -0.5])
    before = _checksum(m)
    lin = m[3]
    with sign_ablation(m, "3", 0, "positive", 0.7) as info:
        assert info.k == 2 and info.share == pytest.approx(0.7) and info.n_sign == 4 and info.total == 10
        assert lin.weight[0, :2].abs().sum() == 0 and lin.weight[0, 2] == 2
        assert torch.equal(lin.weight[1], torch.tensor(-W[0], dtype=torch.float32))  # other unit untouched
        assert lin.bias[0] == 0.5  # bias untouched by default
    assert _checksum(m) == before


def test_restored_after_exception():
    m = _net(W)
    before = _checksum(m)
    with pytest.raises(RuntimeError, match="boom"):
        with sign_ablation(m, "3", 0, "negative", 1.0):
            assert m[3].weight[0, 4:7].abs().sum() == 0
            raise RuntimeError("boom")
    assert _checksum(m) == before


def test_bias_option():
    m = _net(W, bias=[0.5])
    with sign_ablation(m, "3", 0, "positive", 1.0, bias=True) as info:
        assert m[3].bias[0] == 0 and info.bias_removed
    assert m[3].bias[0] == 0.5
    with sign_ablation(m, "3", 0, "negative", 1.0, bias=True) as info:  # positive bias survives
        assert m[3].bias[0] == 0.5 and not info.bias_removed


def test_conv_unit():
    conv = nn.Conv2d(2, 3, 3)
    m = nn.Sequential(conv)
    before = _checksum(m)
    w = conv.weight.detach().clone()
    with sign_ablation(m, "0", 1, "positive", 1.0) as info:
        assert (conv.weight[1] <= 0).all() and info.k == int((w[1] > 0).sum())
        assert torch.equal(conv.weight[0], w[0])
    assert _checksum(m) == before


def test_readouts_equal_context_manager_on_default_model():
    model = load_model("netphys_vgg16")
    ro = sign_ablation_readouts(model, "fc8", [0, 7])
    assert ro.sizes["condition"] == 21 and list(ro["sign"].values[:2]) == ["control", "positive"]
    x = torch.rand(6, 3, 64, 64)
    feats = {}

    def grab(_m, inp):
        feats["x"] = inp[0].detach().clone()
    h = model.classifier[6].register_forward_pre_hook(grab)
    with torch.no_grad():
        model.eval()
        model(x)
    h.remove()
    scores = readout_scores(feats["x"], ro)
    for ui, u in enumerate([0, 7]):
        for c in range(21):
            s, a = str(ro["sign"].values[c]), float(ro["alpha"].values[c])
            with torch.no_grad():
                if s == "control":
                    ref = model(x)[:, u]
                else:
                    with sign_ablation(model, "fc8", u, s, a) as info:
                        ref = model(x)[:, u]
                    assert info.k == ro["k"].values[ui, c]
            np.testing.assert_allclose(scores.values[:, ui, c], ref.numpy(), atol=1e-5, rtol=1e-5)


def test_sign_ablated_objective_matches_readouts():
    from netphys.synthesis import SignAblated
    model = load_model("netphys_vgg16")
    obj = SignAblated(model, "fc8", [2])
    assert len(obj.names) == 21 and obj.names[0] == "fc8[2]|control|0"
    x = torch.rand(3, 3, 64, 64)
    s = obj(x)
    with torch.no_grad(), sign_ablation(model, "fc8", 2, "negative", 0.5):
        from netphys.synthesis import Logit
        ref = Logit(model, [2])(x)[:, 0]
    j = obj.names.index("fc8[2]|negative|0.5")
    np.testing.assert_allclose(s[:, j].detach().numpy(), ref.numpy(), atol=1e-5)


def test_sign_balance_known():
    m = _net(np.vstack([W, [[1.0, 1, 1, 1, 0, 0, 0, 0]]]))
    t = sign_balance(m, "3")
    assert t.loc[0, "total_positive"] == 10 and t.loc[0, "total_negative"] == 10 and t.loc[0, "ratio"] == 1
    assert t.loc[0, "n_positive"] == 4 and t.loc[0, "n_negative"] == 3
    assert np.isinf(t.loc[1, "ratio"])


@pytest.mark.parametrize("kwargs,match", [
    ({"unit": 5}, "unit"),
    ({"unit": -1}, "unit"),
    ({"alpha": 1.5}, "alpha"),
    ({"alpha": -0.1}, "alpha"),
    ({"alpha": float("nan")}, "alpha"),
    ({"sign": "both"}, "sign"),
    ({"layer": "2"}, "layer"),           # a ReLU: no weights
    ({"layer": "nope"}, "nope"),
])
def test_bad_input(kwargs, match):
    m = _net(W)
    before = _checksum(m)
    args = dict(layer="3", unit=0, sign="positive", alpha=0.5) | kwargs
    with pytest.raises(NetphysError, match=match):
        with sign_ablation(m, args["layer"], args["unit"], args["sign"], args["alpha"]):
            pass
    assert _checksum(m) == before


def test_readouts_bad_input():
    conv = nn.Sequential(nn.Conv2d(2, 3, 3))
    with pytest.raises(NetphysError, match="nn.Linear"):
        sign_ablation_readouts(conv, "0", [0])
    m = _net(W)
    with pytest.raises(NetphysError, match="unit"):
        sign_ablation_readouts(m, "3", [0, 1])
    ro = sign_ablation_readouts(m, "3", [0])
    with pytest.raises(NetphysError, match="features"):
        readout_scores(np.full((2, 8), np.nan), ro)
    with pytest.raises(NetphysError, match="features"):
        readout_scores(np.zeros((2, 7)), ro)
